//! A flood of LINE customers writing at once, for the tests that break something under it: 400
//! customers write 25 messages each, 32 at a time, spread over the gateway replicas a test names
//! as a load balancer would; a webhook that gets no 2xx is redelivered with the same
//! `webhookEventId` until one does, as LINE does. Afterwards what reached the desk is held
//! against what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Bed, line_user, metric, tail};

pub const USERS: usize = 400;
pub const PER_USER: usize = 25;
pub const TOTAL: usize = USERS * PER_USER;
pub const CONCURRENCY: usize = 32;

/// What became of one customer message.
#[derive(Debug, Default)]
pub struct Sent {
    pub message_id: String,
    /// The status of the first delivery; None when no answer came.
    pub first_status: Option<u64>,
    /// Deliveries it took until one got 2xx.
    pub deliveries: u32,
}

/// The webhook URLs the load is spread over, as a load balancer's endpoints: a test takes a
/// replica out before stopping it and puts it back once it is ready.
#[derive(Clone)]
pub struct Endpoints(Arc<Mutex<Vec<String>>>);

impl Endpoints {
    pub fn new(urls: Vec<String>) -> Self {
        Self(Arc::new(Mutex::new(urls)))
    }

    pub fn set(&self, urls: Vec<String>) {
        *self.0.lock().unwrap() = urls;
    }

    /// Round robin over whatever the endpoints are at the moment of the `n`th delivery.
    fn pick(&self, n: usize) -> String {
        let urls = self.0.lock().unwrap();
        assert!(!urls.is_empty(), "no endpoint to send to");
        urls[n % urls.len()].clone()
    }
}

/// The running load.
pub struct Load {
    acknowledged: Arc<AtomicUsize>,
    sent: Arc<Mutex<Vec<Sent>>>,
    workers: tokio::task::JoinSet<()>,
    started: Instant,
}

/// Posts one admin call to the simulator.
async fn customer(http: &reqwest::Client, sim: &str, body: Value) -> Value {
    let response = http.post(format!("{sim}/__sim/customer/line")).json(&body).send().await.expect("the simulator answers");
    assert!(response.status().is_success(), "admin call: {}", response.status());
    response.json().await.unwrap()
}

impl Load {
    /// Starts sending through the bed's simulator to `endpoints`.
    pub fn start(bed: &Bed, endpoints: &Endpoints) -> Load {
        let next = Arc::new(AtomicUsize::new(0));
        let deliveries = Arc::new(AtomicUsize::new(0));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::with_capacity(TOTAL)));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (next, deliveries, acknowledged, sent) = (Arc::clone(&next), Arc::clone(&deliveries), Arc::clone(&acknowledged), Arc::clone(&sent));
            let (http, sim, endpoints) = (bed.http.clone(), bed.sim.base_url().to_owned(), endpoints.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= TOTAL {
                        return;
                    }
                    // Job i is user i % USERS's message i / USERS: every user writes throughout.
                    let user = i % USERS;
                    let text = format!("u{user} m{}", i / USERS);
                    let url = endpoints.pick(deliveries.fetch_add(1, Ordering::SeqCst));
                    let body = json!({"type": "text", "text": text, "url": url, "userId": line_user(user), "displayName": format!("User {user}")});
                    let answer = customer(&http, &sim, body).await;
                    let event_id = answer["webhookEventId"].as_str().unwrap().to_owned();
                    let mut record = Sent {
                        message_id: answer["messageId"].as_str().unwrap().to_owned(),
                        first_status: answer["delivery"]["statusCode"].as_u64(),
                        deliveries: 1,
                    };
                    let mut status = record.first_status;
                    while !status.is_some_and(|s| (200..300).contains(&s)) {
                        assert!(record.deliveries < 600, "message {} never acknowledged: {status:?}", record.message_id);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let url = endpoints.pick(deliveries.fetch_add(1, Ordering::SeqCst));
                        let again = customer(&http, &sim, json!({"type": "redelivery", "webhookEventId": event_id, "url": url})).await;
                        status = again["delivery"]["statusCode"].as_u64();
                        record.deliveries += 1;
                    }
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    sent.lock().unwrap().push(record);
                }
            });
        }
        Load { acknowledged, sent, workers, started: Instant::now() }
    }

    /// Waits until `n` messages were acknowledged; returns how many were by then.
    pub async fn wait_acknowledged(&self, n: usize) -> usize {
        loop {
            let now = self.acknowledged.load(Ordering::SeqCst);
            if now >= n {
                return now;
            }
            assert!(!self.workers.is_empty() && self.started.elapsed() < Duration::from_secs(300), "the load stalled at {now}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for every message to be acknowledged; returns them and how long sending took.
    pub async fn finish(mut self) -> (Vec<Sent>, Duration) {
        while let Some(done) = self.workers.join_next().await {
            done.expect("a sender panicked");
        }
        let sent = std::mem::take(&mut *self.sent.lock().unwrap());
        assert_eq!(sent.len(), TOTAL);
        (sent, self.started.elapsed())
    }
}

/// How the first deliveries were answered.
pub struct FirstAnswers {
    pub acknowledged: usize,
    pub unanswered: usize,
    /// Statuses other than 2xx.
    pub refused: Vec<u64>,
    pub redelivered: usize,
}

pub fn first_answers(sent: &[Sent]) -> FirstAnswers {
    FirstAnswers {
        acknowledged: sent.iter().filter(|s| s.first_status.is_some_and(|c| (200..300).contains(&c))).count(),
        unanswered: sent.iter().filter(|s| s.first_status.is_none()).count(),
        refused: sent.iter().filter_map(|s| s.first_status.filter(|c| !(200..300).contains(c))).collect(),
        redelivered: sent.iter().filter(|s| s.deliveries > 1).count(),
    }
}

/// Waits until every acknowledged message reached the desk and the outbox is empty on every
/// replica (`metrics`: their metrics URLs), then checks that each message is one event (repeats
/// only under its one idempotency key), that each conversation's sequences run 1..n without
/// gaps, and that each customer has one conversation. Returns a summary for the test's report.
pub async fn check_delivered(bed: &Bed, sent: &[Sent], metrics: &[String], logs: &dyn Fn() -> String) -> String {
    let acked: BTreeSet<&str> = sent.iter().map(|s| s.message_id.as_str()).collect();
    assert_eq!(acked.len(), TOTAL);
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
        assert!(Instant::now() < deadline, "{missing} acknowledged messages never reached the desk\n{}", tail(&logs(), 30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The outbox is empty (only the replica that leads reports it): whatever repeats there will
    // be have arrived.
    loop {
        let mut depth = 0.0;
        for url in metrics {
            let text = bed.http.get(url).send().await.unwrap().text().await.unwrap();
            depth += metric(&text, "switchboard_gateway_outbox_depth");
        }
        if depth == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox does not drain: {depth} left");
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
    format!(
        "desk: {} distinct events ({} messages), {} deliveries, {} repeated idempotency keys; delivering the rest took {:.1} s",
        bed.desk.events().len(),
        keys_per_message.len(),
        accepted.len(),
        bed.desk.repeats(),
        delivering.as_secs_f64()
    )
}
