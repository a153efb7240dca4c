//! The gateway killed (SIGKILL) in the middle of a flood of webhooks and started again on the
//! same store: every webhook it acknowledged reaches the desk, as exactly one event per message,
//! and every conversation's events keep their sequence without gaps.

use std::time::{Duration, Instant};

use crate::harness::{Bed, Provider, line_channel, workstream};
use crate::load::{self, CONCURRENCY, Endpoints, Load, TOTAL, USERS};

const KILL_AFTER: usize = 3_000;
/// How long the gateway stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_under_load_loses_and_repeats_no_acknowledged_message() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;

    let load = Load::start(&bed, &Endpoints::new(vec![bed.webhook_url()]));
    // Kill the gateway once ~3,000 webhooks were acknowledged, and start it again.
    let at_kill = load.wait_acknowledged(KILL_AFTER).await;
    let killed = Instant::now();
    bed.gateway.kill();
    tokio::time::sleep(DOWN_FOR).await;
    bed.gateway.spawn();
    bed.wait_ready().await;
    let down = killed.elapsed();
    let (sent, sending) = load.finish().await;

    let first = load::first_answers(&sent);
    assert!(first.unanswered > 0, "some webhooks met the gateway down: the kill happened under load");
    assert!(first.refused.iter().all(|s| *s == 503), "statuses other than 2xx, 503 (no configuration yet) and no answer: {:?}", first.refused);
    let desk = load::check_delivered(&bed, &sent, &[bed.metrics_url("/metrics")], &|| bed.gateway.log()).await;
    // Redeliveries the restarted gateway had already recorded: committed, but killed before it
    // could answer.
    let recognised = bed.metric(r#"switchboard_gateway_events_total{outcome="Duplicate"}"#).await;
    assert!(recognised as usize <= first.redelivered);
    eprintln!(
        "crash test: {TOTAL} webhooks by {USERS} customers, {CONCURRENCY} at once; killed after {at_kill} acknowledged, down {:.2} s \
         (kill to ready); first deliveries: {} acknowledged, {} unanswered, {} refused 503; {} redelivered LINE-style until \
         acknowledged, {recognised} of them already recorded; {desk}; sending took {:.1} s, {:.1} s in all",
        down.as_secs_f64(),
        first.acknowledged,
        first.unanswered,
        first.refused.len(),
        first.redelivered,
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    bed.finish().await;
}
