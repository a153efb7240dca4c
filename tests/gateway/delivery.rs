//! The desk down for a while: the gateway backs off desk-wide instead of hammering it, and
//! delivers everything, in order per conversation, once it is back. And a signing key rotated:
//! both keys sign every delivery until the previous one is removed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::desk::{BUSY_RETRY_AFTER, Desk, Mode};
use crate::harness::{Bed, PREVIOUS_DESK_SECRET, PREVIOUS_SIGNING_ENV, Provider, line_channel, line_user, run_concurrently, workstream};

const CUSTOMERS: usize = 20;
const PER_CUSTOMER: usize = 10;
const OUTAGE: Duration = Duration::from_secs(6);
/// A new customer turns up this often during the outage.
const ARRIVAL: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_outage_is_backed_off_and_everything_arrives_in_order_afterwards() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--retry-min", "200ms", "--retry-max", "2s"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;

    bed.desk.set_mode(Mode::Down);
    let outage_start = Instant::now();
    // Customers turn up one every 200 ms, throughout the outage, and each writes their
    // messages one after another.
    let bed_ref = &bed;
    let statuses = run_concurrently(CUSTOMERS, CUSTOMERS, |c| async move {
        tokio::time::sleep(ARRIVAL * c as u32).await;
        let mut statuses = Vec::new();
        for m in 0..PER_CUSTOMER {
            let answer = bed_ref.line_text(&line_user(c), &format!("Customer {c}"), &format!("c{c} m{m}")).await;
            statuses.push(answer["delivery"]["statusCode"].as_u64());
        }
        statuses
    })
    .await;
    let sent_in = outage_start.elapsed();
    assert!(statuses.iter().flatten().all(|s| *s == Some(200)), "every webhook is taken while the desk is down: {statuses:?}");
    assert!(sent_in < OUTAGE, "the {} webhooks took {sent_in:?}, longer than the outage", CUSTOMERS * PER_CUSTOMER);
    tokio::time::sleep(OUTAGE.saturating_sub(outage_start.elapsed())).await;
    let outage = outage_start.elapsed();
    let during: Vec<_> = bed.desk.attempts();
    bed.desk.set_mode(Mode::Up);
    let recovered = Instant::now();

    // The bound. The README: when a desk fails, all its events wait for a doubling delay (here
    // from --retry-min 200 ms, capped at --retry-max 2 s), so a desk that is down gets a probe per
    // delay, not a flood. From the first failure, probes are then due at 0, 0.2, 0.6, 1.4, 3.0 and
    // 5.0 s: six in a 6 s outage, eight with slack for timing ("bursts" below: attempts less than
    // 100 ms apart count as one). Counting attempts: eight probes, plus up to one first attempt
    // per conversation if a new conversation's first event were tried once as it arrives before
    // joining the wait (20), stays under 8 + 20 = 28; 40 leaves room for jitter. Retrying every
    // conversation at each delay instead gives some 20 per burst, and trying each new
    // conversation at once while the desk is known to be down gives a burst per arrival.
    let refused = during.iter().filter(|r| r.status == 503).count();
    let mut bursts: Vec<(u128, usize)> = Vec::new();
    for r in &during {
        let at = r.at.duration_since(outage_start).as_millis();
        match bursts.last_mut() {
            Some((first, n)) if at - *first < 100 => *n += 1,
            _ => bursts.push((at, 1)),
        }
    }
    let outage = outage.as_secs_f64();
    eprintln!("desk outage: {refused} attempts in {outage:.1} s, in {} bursts (ms from the outage's start, attempts): {bursts:?}", bursts.len());

    // Once the desk is back, every event arrives (the next probe is at most 2 s away).
    let expected = CUSTOMERS * PER_CUSTOMER;
    bed.desk.wait_messages(expected, Duration::from_secs(30)).await;
    let caught_up = recovered.elapsed();
    eprintln!("desk outage: all {expected} messages delivered {:.1} s after the desk recovered", caught_up.as_secs_f64());
    let conversations = bed.desk.by_conversation();
    assert_eq!(conversations.len(), CUSTOMERS);
    for (id, events) in &conversations {
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
        assert_eq!(sequences, (1..=(PER_CUSTOMER as i64 + 1)).collect::<Vec<_>>(), "conversation {id} arrived in order without gaps");
        let customer = events[0].body["conversation"]["customer"]["displayName"].as_str().unwrap().trim_start_matches("Customer ").to_owned();
        let texts: Vec<&str> = events[1..].iter().map(|e| e.text().unwrap()).collect();
        let written: Vec<String> = (0..PER_CUSTOMER).map(|m| format!("c{customer} m{m}")).collect();
        assert_eq!(texts, written, "the customer's messages in the order written");
    }
    assert!(caught_up < Duration::from_secs(10), "caught up only {caught_up:?} after the desk recovered");
    assert!(refused > 0, "the desk was tried during the outage");
    let n = bursts.len();
    assert!(n <= 8, "{n} bursts of attempts during a {outage:.1} s outage, at most 8 expected: the desk-wide delay is not kept ({bursts:?})");
    assert!(refused < 40, "{refused} attempts during a {outage:.1} s outage, fewer than 40 expected: no desk-wide backoff ({bursts:?})");
    eprintln!("a_desk_outage_is_backed_off_and_everything_arrives_in_order_afterwards: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_key_rotation_a_desk_with_either_key_verifies_every_delivery() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    // A desk that still knows only the previous key, given in the specification's whsec_ form.
    let behind = Desk::start(PREVIOUS_DESK_SECRET).await;
    let mut rotating = workstream("support-line", line_channel(), &behind.url(), &["general"], None, vec![]);
    rotating["delivery"]["previousSigningSecret"] = json!({"env": PREVIOUS_SIGNING_ENV});
    bed.start(&bed.config(vec![rotating.clone()])).await;
    let ann = line_user(1);
    bed.line_text(&ann, "Ann", "during the rotation").await;
    let first = behind.wait_messages(1, Duration::from_secs(20)).await;
    let signatures = first[0].header("webhook-signature").unwrap_or_default().to_owned();
    assert_eq!(signatures.split(' ').filter(|s| s.starts_with("v1,")).count(), 2, "one signature per key: {signatures}");
    assert!(first[0].header("webhook-timestamp").is_some_and(|t| t.parse::<i64>().is_ok()));

    // The desk that knows the new key verifies the same deliveries.
    rotating["delivery"]["url"] = json!(bed.desk.url());
    bed.gateway.write_config(&bed.config(vec![rotating]));
    wait_for_loads(&bed, 2).await;
    bed.line_text(&ann, "Ann", "after the desk moved on").await;
    let current = bed.desk.wait_messages(1, Duration::from_secs(20)).await;
    assert_eq!(current[0].header("webhook-signature").unwrap_or_default().split(' ').count(), 2);

    // The rotation ends: one signature, which the desk behind no longer accepts.
    let done = workstream("support-line", line_channel(), &behind.url(), &["general"], None, vec![]);
    bed.gateway.write_config(&bed.config(vec![done]));
    wait_for_loads(&bed, 3).await;
    bed.line_text(&ann, "Ann", "after the rotation").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        if let Some(r) = behind.attempts().into_iter().find(|r| r.status == 401) {
            break r;
        }
        assert!(Instant::now() < deadline, "the desk behind still accepts deliveries after the rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.header("webhook-signature").unwrap_or_default().split(' ').count(), 1);
    assert!(behind.problems().iter().all(|p| p.starts_with("the delivery does not verify (signature invalid")), "{:?}", behind.problems());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_that_asks_to_retry_after_a_while_is_left_alone_that_long() {
    // Without Retry-After the next probe would come within --retry-max.
    let mut bed = Bed::new(Provider::Line, &["--retry-min", "200ms", "--retry-max", "1s"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    bed.desk.set_mode(Mode::Busy);
    bed.line_text(&line_user(1), "Ann", "while the desk sheds load").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused_at = loop {
        if let Some(first) = bed.desk.attempts().first() {
            break first.at;
        }
        assert!(Instant::now() < deadline, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    bed.desk.set_mode(Mode::Up);
    let delivered = bed.desk.wait_messages(1, Duration::from_secs(20)).await;
    let waited = delivered[0].at.duration_since(refused_at);
    assert_eq!(bed.desk.attempts().iter().filter(|a| a.status == 429).count(), 1, "one refused attempt, then the wait");
    assert!(waited >= BUSY_RETRY_AFTER - Duration::from_millis(100), "retried {waited:?} after a Retry-After of {BUSY_RETRY_AFTER:?}");
    eprintln!("retry-after: delivered {waited:?} after the 429");
    bed.finish().await;
}

/// Waits until the gateway's log says it loaded `n` configurations.
async fn wait_for_loads(bed: &Bed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while bed.gateway.loads() < n {
        assert!(Instant::now() < deadline, "the gateway did not load configuration {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `config` and waits until the gateway has loaded it.
async fn reload(bed: &Bed, config: &serde_json::Value) {
    let loads = bed.gateway.loads();
    bed.gateway.write_config(config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bed.gateway.loads() == loads {
        assert!(Instant::now() < deadline, "the new configuration was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_that_answers_410_gets_nothing_more_across_restarts_until_the_workstream_asks_again() {
    let mut bed = Bed::new(Provider::Line, &["--retry-min", "100ms", "--retry-max", "500ms"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    let mut config = bed.config(vec![ws]);
    bed.start(&config).await;
    bed.desk.set_mode(Mode::Gone);
    let gone = r#"switchboard_gateway_delivery_receivers_gone{workstream="support-line",receiver="desk"}"#;

    // The first event is refused with 410; the desk gets nothing after it, while the customer
    // goes on writing and the gateway stays ready.
    for m in 0..3 {
        let answer = bed.line_text(&line_user(1), "Ann", &format!("m{m}")).await;
        assert_eq!(answer["delivery"]["statusCode"], 200, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while bed.metric(gone).await != 1.0 {
        assert!(Instant::now() < deadline, "the desk was not stopped: {}", bed.metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = bed.desk.attempts();
    assert_eq!(attempts.len(), 1, "one attempt, answered 410, and nothing after it");
    assert_eq!(attempts[0].status, 410);
    let ready = bed.http.get(bed.metrics_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "a stopped desk does not make the gateway unready");
    assert!(bed.gateway.log().contains("a receiver answered 410 Gone"), "the operator is told in the log");
    assert!(bed.metric(r#"switchboard_gateway_outbox_depth"#).await >= 4.0, "the events stay queued");

    // Stopped across a restart, although the desk would take events again now.
    bed.desk.set_mode(Mode::Up);
    bed.gateway.terminate();
    bed.restart().await;
    bed.line_text(&line_user(1), "Ann", "after the restart").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bed.desk.attempts().len(), 1, "still stopped after the restart");
    assert_eq!(bed.metric(gone).await, 1.0, "the restarted gateway shows it");

    // Another change of the configuration does not resume it; the Workstream's
    // reconcile-requested-at annotation does, and every queued event follows, in order.
    config["workstreams"][0]["language"] = json!("ja");
    reload(&bed, &config).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bed.desk.attempts().len(), 1, "an unrelated change does not resume it");
    config["workstreams"][0]["reconcileRequestedAt"] = json!("2026-12-04T10:00:00Z");
    reload(&bed, &config).await;
    let events = bed.desk.wait_for(Duration::from_secs(20), "the queued events", |events| (events.len() >= 5).then(|| events.to_vec())).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds[..2], ["conversation.created", "message.received"], "{kinds:?}");
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>(), "in order, from the event refused with 410");
    assert_eq!(bed.metric(gone).await, 0.0);
    assert!(bed.gateway.log().contains("delivery resumes to a receiver that had answered 410 Gone"));
    bed.desk.check();
}
