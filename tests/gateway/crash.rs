//! The gateway killed (SIGKILL) in the middle of a flood of webhooks and started again on the
//! same store: every webhook it acknowledged reaches the desk, as exactly one event per message,
//! and every conversation's events keep their sequence without gaps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Bed, Provider, line_channel, line_user, metric, tail, workstream};

const USERS: usize = 400;
const PER_USER: usize = 25;
const TOTAL: usize = USERS * PER_USER;
const CONCURRENCY: usize = 32;
const KILL_AFTER: usize = 3_000;
/// How long the gateway stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_millis(500);

/// What became of one customer message.
#[derive(Debug, Default)]
struct Sent {
    message_id: String,
    /// The status of the first delivery; None when no answer came.
    first_status: Option<u64>,
    /// Whether some delivery (the first or LINE's redelivery) got 2xx.
    acknowledged: bool,
    /// Deliveries it took.
    deliveries: u32,
}

/// Posts one admin call to the simulator.
async fn customer(http: &reqwest::Client, sim: &str, body: Value) -> Value {
    let response = http.post(format!("{sim}/__sim/customer/line")).json(&body).send().await.expect("the simulator answers");
    assert!(response.status().is_success(), "admin call: {}", response.status());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_under_load_loses_and_repeats_no_acknowledged_message() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;

    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, acknowledged, sent) = (Arc::clone(&next), Arc::clone(&acknowledged), Arc::clone(&sent));
        let (http, sim, url) = (bed.http.clone(), bed.sim.base_url().to_owned(), bed.webhook_url());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    return;
                }
                // Job i is user i % USERS's message i / USERS: every user writes throughout.
                let user = i % USERS;
                let text = format!("u{user} m{}", i / USERS);
                let body = json!({"type": "text", "text": text, "url": url, "userId": line_user(user), "displayName": format!("User {user}")});
                let answer = customer(&http, &sim, body).await;
                let event_id = answer["webhookEventId"].as_str().unwrap().to_owned();
                let mut record = Sent {
                    message_id: answer["messageId"].as_str().unwrap().to_owned(),
                    first_status: answer["delivery"]["statusCode"].as_u64(),
                    deliveries: 1,
                    ..Sent::default()
                };
                let mut status = record.first_status;
                // As LINE does, a webhook that got no 2xx is delivered again with the same
                // webhookEventId until one does.
                while !status.is_some_and(|s| (200..300).contains(&s)) {
                    assert!(record.deliveries < 600, "message {} never acknowledged: {status:?}", record.message_id);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let again = customer(&http, &sim, json!({"type": "redelivery", "webhookEventId": event_id, "url": url})).await;
                    status = again["delivery"]["statusCode"].as_u64();
                    record.deliveries += 1;
                }
                record.acknowledged = true;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                sent.lock().unwrap().push(record);
            }
        });
    }

    // Kill the gateway once ~3,000 webhooks were acknowledged, and start it again.
    while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(!workers.is_empty() && started.elapsed() < Duration::from_secs(300), "the load stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_kill = acknowledged.load(Ordering::SeqCst);
    let killed = Instant::now();
    bed.gateway.kill();
    tokio::time::sleep(DOWN_FOR).await;
    bed.gateway.spawn();
    bed.wait_ready().await;
    let down = killed.elapsed();
    while let Some(done) = workers.join_next().await {
        done.expect("a sender panicked");
    }
    let sending = started.elapsed();

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    assert_eq!(sent.len(), TOTAL);
    let first_answered = sent.iter().filter(|s| s.first_status.is_some_and(|c| (200..300).contains(&c))).count();
    let unanswered = sent.iter().filter(|s| s.first_status.is_none()).count();
    let other: Vec<u64> = sent.iter().filter_map(|s| s.first_status.filter(|c| !(200..300).contains(c))).collect();
    assert!(unanswered > 0, "some webhooks met the gateway down: the kill happened under load");
    assert!(other.iter().all(|s| *s == 503), "statuses other than 2xx, 503 (no configuration yet) and no answer: {other:?}");
    let acked: BTreeSet<&str> = sent.iter().filter(|s| s.acknowledged).map(|s| s.message_id.as_str()).collect();
    assert_eq!(acked.len(), TOTAL);

    // Every acknowledged message reaches the desk.
    let waited = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        bed.desk.check();
        let delivered: BTreeSet<String> =
            bed.desk.accepted().iter().filter(|e| e.kind() == "message.received").filter_map(|e| e.message_id().map(str::to_owned)).collect();
        let missing = acked.iter().filter(|m| !delivered.contains(**m)).count();
        if missing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{missing} acknowledged messages never reached the desk\n{}", tail(&bed.gateway.log(), 30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the outbox is empty: whatever repeats there will be have arrived.
    loop {
        let text = bed.metrics().await;
        if metric(&text, "switchboard_gateway_outbox_depth") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox does not drain: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivering = waited.elapsed();

    let accepted = bed.desk.accepted();
    let mut keys_per_message: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in accepted.iter().filter(|e| e.kind() == "message.received") {
        keys_per_message.entry(e.message_id().unwrap()).or_default().insert(e.key.as_str());
    }
    let twice: Vec<(&&str, &BTreeSet<&str>)> = keys_per_message.iter().filter(|(_, keys)| keys.len() != 1).collect();
    assert!(twice.is_empty(), "{} messages reached the desk as more than one event, e.g. {:?}", twice.len(), twice.first());
    let strangers: Vec<&&str> = keys_per_message.keys().filter(|m| !acked.contains(**m)).collect();
    assert!(strangers.is_empty(), "messages nobody sent: {strangers:?}");

    // Per conversation: sequences 1..n without gaps, first arrivals in order, one conversation
    // per customer starting with conversation.created.
    let conversations = bed.desk.by_conversation();
    let mut customers = BTreeSet::new();
    for (id, events) in &conversations {
        let arrived: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
        let expected: Vec<i64> = (1..=events.len() as i64).collect();
        assert_eq!(arrived, expected, "conversation {id}: the desk got sequences {arrived:?}");
        assert_eq!(events[0].kind(), "conversation.created");
        assert_eq!(events.len(), PER_USER + 1, "conversation {id}: one created and {PER_USER} messages");
        assert!(customers.insert(events[0].customer().to_owned()), "two conversations for {}", events[0].customer());
    }
    assert_eq!(conversations.len(), USERS);
    let repeats = bed.desk.repeats();
    let redelivered = sent.iter().filter(|s| s.deliveries > 1).count();
    // Redeliveries the restarted gateway had already recorded: committed, but killed before it
    // could answer.
    let recognised = bed.metric(r#"switchboard_gateway_events_total{outcome="Duplicate"}"#).await;
    assert!(recognised as usize <= redelivered);
    eprintln!(
        "crash test: {TOTAL} webhooks by {USERS} customers, {CONCURRENCY} at once; killed after {at_kill} acknowledged, down {:.2} s \
         (kill to ready); first deliveries: {first_answered} acknowledged, {unanswered} unanswered, {} refused 503; {redelivered} \
         redelivered LINE-style until acknowledged, {recognised} of them already recorded; acknowledged {}; desk: {} distinct events ({} messages), {} deliveries, \
         {repeats} repeated idempotency keys; sending took {:.1} s, delivering the rest {:.1} s, {:.1} s in all",
        down.as_secs_f64(),
        other.len(),
        acked.len(),
        bed.desk.events().len(),
        keys_per_message.len(),
        accepted.len(),
        sending.as_secs_f64(),
        delivering.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    bed.finish().await;
}
