//! The configuration file rewritten under load: no webhook fails while configurations are
//! swapped, and conversations started after the last change follow it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Bed, Provider, line_channel, line_user, route_rule, tail, workstream};

const USERS: usize = 200;
const PER_USER: usize = 10;
const TOTAL: usize = USERS * PER_USER;
const CHANGES: usize = 5;
/// Webhooks per second: the sending lasts about 8 s, longer than the five changes take.
const RATE: u64 = 250;

/// Version `v` of the configuration: greeting "Greeting v{v}", and one more queue and rule per
/// version (`topic-k` in the text → queue `q{k}`, for k = 1..=v).
fn version(bed: &Bed, v: usize) -> Value {
    let queues: Vec<String> = std::iter::once("general".to_owned()).chain((1..=v).map(|k| format!("q{k}"))).collect();
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
    let rules: Vec<Value> = (1..=v).map(|k| route_rule(&format!("to-q{k}"), k as i32, &format!("topic-{k}"), &format!("q{k}"))).collect();
    let greeting = format!("Greeting v{v} for {{CustomerName}} in {{QueueName}}");
    bed.config(vec![workstream("support-line", line_channel(), &bed.desk.url(), &queues, Some(&greeting), rules)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configuration_changes_under_load_fail_no_webhook() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    bed.start(&version(&bed, 0)).await;
    assert_eq!(bed.gateway.loads(), 1);

    // Webhooks at a steady rate from a pool of senders; every status is kept.
    let done = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..16 {
        let (rx, done) = (rx.clone(), Arc::clone(&done));
        let (http, sim, url) = (bed.http.clone(), bed.sim.base_url().to_owned(), bed.webhook_url());
        senders.spawn(async move {
            let mut statuses = Vec::new();
            loop {
                // The lock is held only until a job is taken, so senders take jobs in turn.
                let Some(i) = rx.lock().await.recv().await else { break };
                // Customers turn up throughout the load, each writing PER_USER messages, so that
                // conversations start under every version; every version's keyword is in use.
                let user = i / PER_USER;
                let body = json!({"type": "text", "text": format!("u{user} m{} topic-{}", i % PER_USER, user % (CHANGES + 1)), "url": url,
                                  "userId": line_user(user), "displayName": format!("User {user}")});
                let answer: Value = http.post(format!("{sim}/__sim/customer/line")).json(&body).send().await.unwrap().json().await.unwrap();
                statuses.push((i, answer["delivery"]["statusCode"].as_u64(), answer["delivery"]["responseBody"].clone()));
                done.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        });
    }
    let pace = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
        for i in 0..TOTAL {
            tick.tick().await;
            tx.send(i).unwrap();
        }
    });

    // Five rewrites while the load runs, each waited for in the log before the next.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut applied_during_load = 0;
    for v in 1..=CHANGES {
        bed.gateway.write_config(&version(&bed, v));
        let deadline = Instant::now() + Duration::from_secs(15);
        while bed.gateway.loads() < v + 1 {
            assert!(Instant::now() < deadline, "configuration {v} was not loaded within 15 s\n{}", tail(&bed.gateway.log(), 30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if done.load(Ordering::SeqCst) < TOTAL {
            applied_during_load += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pace.await.unwrap();
    let mut statuses = Vec::new();
    while let Some(result) = senders.join_next().await {
        statuses.extend(result.unwrap());
    }
    assert_eq!(statuses.len(), TOTAL);
    let failed: Vec<_> = statuses.iter().filter(|(_, status, _)| *status != Some(200)).collect();
    assert!(failed.is_empty(), "{} of {TOTAL} webhooks failed during configuration changes, e.g. {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(applied_during_load >= 4, "only {applied_during_load} of the {CHANGES} changes happened under load; the load ended too soon");
    let text = bed.metrics().await;
    assert_eq!(crate::harness::metric(&text, r#"switchboard_gateway_config_loads_total{outcome="Applied"}"#), (CHANGES + 1) as f64);
    assert_eq!(crate::harness::metric(&text, r#"switchboard_gateway_config_loads_total{outcome="Rejected"}"#), 0.0);
    let hashes: BTreeSet<String> = bed
        .gateway
        .log()
        .lines()
        .filter(|l| l.contains("configuration loaded"))
        .filter_map(|l| l.split("hash=").nth(1).map(|h| h.split_whitespace().next().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(hashes.len(), CHANGES + 1, "each load was a different document");

    // Every message reached the desk.
    bed.desk.wait_messages(TOTAL, Duration::from_secs(60)).await;

    // New customers after the last change: the new rule's queue and the new greeting.
    for n in 0..3 {
        let user = line_user(10_000 + n);
        let answer = bed.line_text(&user, "Newcomer", "about topic-5, please").await;
        assert_eq!(answer["delivery"]["statusCode"], 200);
        let created = bed
            .desk
            .wait_for(Duration::from_secs(20), "the newcomer's conversation", |events| {
                events.iter().find(|e| e.customer() == user && e.kind() == "conversation.created").cloned()
            })
            .await;
        assert_eq!(created.body["conversation"]["routing"]["queue"], "q5", "{}", created.body);
        assert_eq!(created.body["conversation"]["routing"]["routedBy"], "to-q5");
        let greeting = bed.wait_sent("the newcomer's greeting", |m| m["to"] == user.as_str()).await;
        assert_eq!(greeting["body"], "Greeting v5 for Newcomer in q5");
    }
    // Each conversation of the load was routed and greeted by one whole version: its greeting
    // names version v and the queue routing chose, which is q{k} for a first message about
    // topic-k when version v has that rule (k <= v), else the fallback queue.
    let greetings: BTreeMap<String, String> =
        bed.sim_messages().await.iter().map(|m| (m["to"].as_str().unwrap().to_owned(), m["body"].as_str().unwrap().to_owned())).collect();
    let mut versions = BTreeSet::new();
    for (id, events) in bed.desk.by_conversation() {
        let (created, first) = (&events[0], &events[1]);
        assert_eq!((created.kind(), first.sequence()), ("conversation.created", 2), "conversation {id}");
        let queue = created.body["conversation"]["routing"]["queue"].as_str().unwrap();
        let greeting = greetings.get(created.customer()).unwrap_or_else(|| panic!("no greeting for {}", created.customer()));
        let version: usize = greeting.strip_prefix("Greeting v").and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).expect(greeting);
        assert!(greeting.ends_with(&format!(" in {queue}")), "the greeting {greeting:?} names the queue routing chose, {queue}");
        let after = first.text().unwrap().rsplit("topic-").next().unwrap();
        let topic: usize = after[..after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len())].parse().unwrap();
        let expected = if (1..=version).contains(&topic) { format!("q{topic}") } else { "general".to_owned() };
        assert_eq!(queue, expected, "conversation {id} about topic-{topic}, greeted by version {version}");
        versions.insert(version);
    }
    eprintln!("configuration changes: conversations started under versions {versions:?}; {applied_during_load} changes under load");
    assert!(versions.len() >= 4, "conversations started under versions {versions:?} only");
    eprintln!("configuration_changes_under_load_fail_no_webhook: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_cannot_be_used_is_refused_and_the_last_good_one_stays() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let good = version(&bed, 0);
    bed.start(&good).await;
    let rejected = r#"switchboard_gateway_config_loads_total{outcome="Rejected"}"#;

    // A version this build does not read, not JSON at all, and a desk key whose variable the
    // gateway's environment lacks: each is refused in turn.
    let mut newer = good.clone();
    newer["version"] = json!(2);
    let mut unset = good.clone();
    unset["workstreams"][0]["delivery"]["signingSecret"]["env"] = json!("SWITCHBOARD_SECRET_99");
    let refusals = [newer.to_string(), "{\"version\": 1, \"account\":".to_owned(), unset.to_string()];
    for (i, text) in refusals.iter().enumerate() {
        bed.gateway.write_config_text(text);
        let deadline = Instant::now() + Duration::from_secs(15);
        while bed.metric(rejected).await < (i + 1) as f64 {
            assert!(Instant::now() < deadline, "refusal {i} was not counted\n{}", tail(&bed.gateway.log(), 20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let log = bed.gateway.log();
    assert!(log.contains("configuration rejected; keeping the current one"), "{}", tail(&log, 20));
    assert!(log.contains("SWITCHBOARD_SECRET_99"), "the missing variable is named");
    assert_eq!(bed.gateway.loads(), 1);

    // Still ready, and still running the first configuration.
    assert_eq!(bed.http.get(bed.metrics_url("/readyz")).send().await.unwrap().status(), 200);
    let user = line_user(1);
    let answer = bed.line_text(&user, "Ann", "hello").await;
    assert_eq!(answer["delivery"]["statusCode"], 200);
    let greeting = bed.wait_sent("the greeting", |m| m["to"] == user.as_str()).await;
    assert_eq!(greeting["body"], "Greeting v0 for Ann in general");
    bed.desk.wait_messages(1, Duration::from_secs(20)).await;
    assert_eq!(bed.metric(r#"switchboard_gateway_config_loads_total{outcome="Applied"}"#).await, 1.0);
    eprintln!("a_configuration_that_cannot_be_used_is_refused_and_the_last_good_one_stays: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
