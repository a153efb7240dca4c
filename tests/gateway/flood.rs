//! A flood of idle connections on the public webhook port, with the gateway's open-file limit at
//! 1,024: more connections than that send a request line and one header and then nothing, and
//! reconnect when closed. Meanwhile signed webhooks from another client get 200 (retrying a
//! refused or reset connection, as providers do), `/readyz` and the agent API answer, and a new
//! configuration is read; after the header timeout the idle connections are closed, and the log
//! never says "Too many open files".

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use switchboard::signing::line_signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Bed, LINE_SECRET, Provider, line_channel, line_user, metric, tail, workstream};

/// The gateway's open-file limit.
const OPEN_FILE_LIMIT: u64 = 1024;
/// The webhook port's cap at that limit: a quarter kept back, half of the rest.
const WEBHOOK_CAP: f64 = 384.0;
/// Idle connections the flood holds open (reopening each one the gateway closes).
const FLOOD: usize = 1500;
/// The gateway's default `--header-read-timeout`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Signed webhooks sent during the flood, one every [`WEBHOOK_EVERY`].
const WEBHOOKS: usize = 40;
const WEBHOOK_EVERY: Duration = Duration::from_millis(250);
/// How long a webhook may keep retrying, as providers do.
const WEBHOOK_PATIENCE: Duration = Duration::from_secs(30);

/// What the flood's connections saw.
#[derive(Default)]
struct Flood {
    stop: AtomicBool,
    opened: AtomicUsize,
    held: AtomicUsize,
    most_held: AtomicUsize,
}

/// One idle connection after another: connect, send a request line and one header, wait for the
/// gateway to close it; again after a pause until the flood stops.
async fn idle_connection(addr: SocketAddr, path: String, flood: Arc<Flood>) {
    while !flood.stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        flood.opened.fetch_add(1, Ordering::Relaxed);
        let held = flood.held.fetch_add(1, Ordering::Relaxed) + 1;
        flood.most_held.fetch_max(held, Ordering::Relaxed);
        let _ = stream.write_all(format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").as_bytes()).await;
        let mut buffer = [0u8; 512];
        while let Ok(n) = stream.read(&mut buffer).await
            && n > 0
        {}
        flood.held.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends a signed webhook on a new connection until it is answered; returns the status, the
/// time from the first try and the number of tries.
async fn webhook(http: &reqwest::Client, url: &str, body: String) -> (u16, Duration, u32) {
    let started = Instant::now();
    let signature = line_signature(LINE_SECRET, body.as_bytes());
    let mut tries = 0;
    loop {
        tries += 1;
        let sent = http.post(url).header("content-type", "application/json").header("x-line-signature", &signature).body(body.clone()).send().await;
        match sent {
            Ok(response) => return (response.status().as_u16(), started.elapsed(), tries),
            Err(error) => {
                assert!(started.elapsed() < WEBHOOK_PATIENCE, "a webhook was not answered within {WEBHOOK_PATIENCE:?}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn raise_own_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }).expect("the test raises its soft open-file limit");
    let raised = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(raised > FLOOD as u64 + 512, "the test can hold the flood: its open-file limit is {raised}");
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_on_the_webhook_port_leaves_webhooks_probes_and_the_agent_api_working() {
    let started = Instant::now();
    raise_own_open_file_limit();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    bed.gateway.open_file_limit = Some(OPEN_FILE_LIMIT);
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws.clone()])).await;
    let metrics = bed.metrics().await;
    assert_eq!(metric(&metrics, r#"switchboard_gateway_connections_limit{port="webhook"}"#), WEBHOOK_CAP, "the cap follows the open-file limit");

    // A genuine webhook: its conversation, and the payload the flood-time webhooks are made from.
    let user = line_user(11);
    let real = bed.line_text(&user, "Ann", "before the flood").await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == real["messageId"].as_str()).await.conversation().to_owned();
    let payload = real["payload"].clone();

    let flood = Arc::new(Flood::default());
    let addr: SocketAddr = format!("127.0.0.1:{}", bed.gateway.webhook_port).parse().unwrap();
    let mut idle = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        idle.spawn(idle_connection(addr, bed.webhook_path(), Arc::clone(&flood)));
    }
    let ramp = Instant::now();
    while flood.opened.load(Ordering::Relaxed) < FLOOD {
        assert!(ramp.elapsed() < Duration::from_secs(20), "the flood opened only {} connections", flood.opened.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp = ramp.elapsed();

    // During the flood: probes, the agent API and a new configuration, beside the webhooks.
    let probing = AtomicBool::new(true);
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
    let probes = async {
        let mut answers = Vec::new();
        while probing.load(Ordering::Relaxed) {
            let ready = fresh.get(bed.metrics_url("/readyz")).send().await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
            let (agent, _) = bed.agent(Method::GET, &format!("/v1/conversations/{id}"), None).await;
            let open = metric(&bed.metrics().await, r#"switchboard_gateway_connections_open{port="webhook"}"#);
            answers.push((ready, agent.as_u16(), open));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        answers
    };
    let reload = async {
        let loads = bed.gateway.loads();
        let mut changed = ws.clone();
        changed["automatedMessages"] = serde_json::json!([{"trigger": "Greeting", "locale": "en", "text": "Hello during the flood"}]);
        bed.gateway.write_config(&bed.config(vec![changed]));
        let deadline = Instant::now() + Duration::from_secs(15);
        while bed.gateway.loads() == loads {
            assert!(Instant::now() < deadline, "the new configuration was not read during the flood\n{}", tail(&bed.gateway.log(), 30));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let url = bed.webhook_url();
    let webhooks = async {
        let mut results = Vec::new();
        for i in 0..WEBHOOKS {
            let mut body: Value = payload.clone();
            body["events"][0]["webhookEventId"] = Value::String(format!("01FLOOD{i:019}"));
            body["events"][0]["message"]["id"] = Value::String(format!("7{i:017}"));
            body["events"][0]["message"]["text"] = Value::String(format!("during the flood {i}"));
            results.push(webhook(&fresh, &url, body.to_string()).await);
            tokio::time::sleep(WEBHOOK_EVERY).await;
        }
        probing.store(false, Ordering::Relaxed);
        results
    };
    let (answers, (), results) = tokio::join!(probes, reload, webhooks);
    let during = bed.metrics().await;

    // The flood stops reconnecting: what it holds is closed within the header timeout.
    flood.stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    while flood.held.load(Ordering::Relaxed) > 0 {
        assert!(
            stopped.elapsed() < HEADER_TIMEOUT + Duration::from_secs(3),
            "{} idle connections still open {:?} after the flood stopped",
            flood.held.load(Ordering::Relaxed),
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_closed = stopped.elapsed();
    while idle.join_next().await.is_some() {}

    for (i, (status, _, _)) in results.iter().enumerate() {
        assert_eq!(*status, 200, "webhook {i} during the flood");
    }
    let failures: Vec<_> = answers.iter().filter(|(ready, agent, _)| *ready != Ok(200) || *agent != 200).collect();
    assert!(failures.is_empty(), "/readyz and the agent API answer 200 during the flood: {failures:?}");
    assert!(answers.len() >= 20, "probed throughout: {} rounds", answers.len());
    let most_open = answers.iter().map(|(_, _, open)| *open).fold(0.0, f64::max);
    assert!(most_open <= WEBHOOK_CAP, "the webhook port stays within its cap: {most_open}");
    let evicted = metric(&during, r#"switchboard_gateway_connections_evicted_total{port="webhook"}"#);
    assert!(evicted > 0.0, "idle connections were closed to make room");
    let timed_out = metric(&bed.metrics().await, r#"switchboard_gateway_connections_timed_out_total{port="webhook"}"#);
    assert!(timed_out > 0.0, "idle connections were closed by the header timeout");
    bed.desk.wait_messages(WEBHOOKS + 1, Duration::from_secs(30)).await;
    let log = bed.gateway.log();
    assert!(!log.contains("Too many open files"), "the gateway ran out of file descriptors:\n{}", tail(&log, 30));
    assert!(log.contains("the port is at its cap of open connections"), "the cap is logged");

    let mut latencies: Vec<Duration> = results.iter().map(|(_, took, _)| *took).collect();
    latencies.sort();
    let retried = results.iter().filter(|(_, _, tries)| *tries > 1).count();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "flood: {FLOOD} idle connections opened in {:.1} s, {} in all, at most {} open at once on the client; gateway cap {WEBHOOK_CAP}, \
         at most {most_open} open; {evicted} evicted, {timed_out} timed out; the rest closed {:.1} s after the flood stopped",
        ramp.as_secs_f64(),
        flood.opened.load(Ordering::Relaxed),
        flood.most_held.load(Ordering::Relaxed),
        all_closed.as_secs_f64()
    );
    eprintln!(
        "flood: {WEBHOOKS} signed webhooks, all 200; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {retried} needed a retry; {} probe rounds all 200",
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies[latencies.len() - 1]),
        answers.len()
    );
    eprintln!("a_flood_of_idle_connections_on_the_webhook_port_leaves_webhooks_probes_and_the_agent_api_working: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
