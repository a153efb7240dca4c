//! Two gateway replicas on one PostgreSQL database behind a round-robin load balancer, while one
//! is killed, while both are restarted in turn, and while the database itself goes away: every
//! acknowledged message reaches the desk once, each conversation's sequence stays gapless and each
//! customer keeps one conversation. These run in the suite's PostgreSQL pass only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Bed, Gateway, Provider, line_channel, workstream};
use crate::load::{self, Endpoints, Load, TOTAL};

/// Whether this pass keeps the store in PostgreSQL; says so when it does not.
pub fn on_postgres(bed: &Bed) -> bool {
    let on = bed.gateway.postgres_url.is_some();
    if !on {
        eprintln!("skipped: replicas share a PostgreSQL store; this test runs in the PostgreSQL pass (SWITCHBOARD_TEST_STORE=postgres)");
    }
    on
}

/// Starts replica `a` (the bed's gateway) and then replica `b` on the same database.
async fn second_replica(bed: &mut Bed) -> Gateway {
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let mut b = bed.gateway.replica("b");
    b.spawn();
    b.wait_ready(&bed.http).await;
    b
}

fn urls(path: &str, replicas: &[&Gateway]) -> Vec<String> {
    replicas.iter().map(|g| g.webhook_url(path)).collect()
}

/// A round-robin load balancer in front of both replicas, and the load sent through it.
fn balanced_load(bed: &Bed, b: &Gateway) -> (Endpoints, Load) {
    let endpoints = Endpoints::new(urls(&bed.webhook_path(), &[&bed.gateway, b]));
    let load = Load::start(bed, &endpoints);
    (endpoints, load)
}

/// [`load::check_delivered`] with both replicas' outboxes and logs.
async fn delivered_by_both(bed: &Bed, b: &Gateway, sent: &[load::Sent]) -> String {
    let metrics = [&bed.gateway, b].map(|g| g.metrics_url("/metrics"));
    load::check_delivered(bed, sent, &metrics, &|| format!("{}\n{}", bed.gateway.log(), b.log())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_acknowledged_message() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    if !on_postgres(&bed) {
        return;
    }
    let mut b = second_replica(&mut bed).await;
    let (_, load) = balanced_load(&bed, &b);
    // Replica a started first and leads: its death hands the queues to b mid-flight.
    let at_kill = load.wait_acknowledged(3_000).await;
    let killed = Instant::now();
    bed.gateway.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bed.gateway.spawn();
    bed.wait_ready().await;
    let down = killed.elapsed();
    let (sent, sending) = load.finish().await;

    let first = load::first_answers(&sent);
    assert!(first.unanswered > 0, "some webhooks met replica a down: the kill happened under load");
    assert!(first.refused.is_empty(), "the replicas refused {:?}", first.refused);
    let desk = delivered_by_both(&bed, &b, &sent).await;
    eprintln!(
        "replica kill: {TOTAL} webhooks over 2 replicas; a killed after {at_kill} acknowledged, down {:.2} s; first deliveries: {} \
         acknowledged, {} unanswered; {} redelivered until acknowledged; {desk}; sending took {:.1} s, {:.1} s in all",
        down.as_secs_f64(),
        first.acknowledged,
        first.unanswered,
        first.redelivered,
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    b.terminate();
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_refuses_no_webhook() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--drain-delay", "1s"]).await;
    if !on_postgres(&bed) {
        return;
    }
    let mut b = second_replica(&mut bed).await;
    let path = bed.webhook_path();
    let (endpoints, load) = balanced_load(&bed, &b);
    let http = bed.http.clone();
    let mut restarts = Vec::new();
    for (turn, at) in [2_000, 5_000].into_iter().enumerate() {
        load.wait_acknowledged(at).await;
        let (stopping, serving) = if turn == 0 { (&mut bed.gateway, &b) } else { (&mut b, &bed.gateway) };
        let told = Instant::now();
        stopping.signal_stop();
        // The endpoint goes a moment after the pod was told to stop, as the endpoints controller
        // and kube-proxy take it out; the drain delay covers that moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        endpoints.set(urls(&path, &[serving]));
        let status = stopping.wait_exit();
        assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop: {status:?}");
        let stopped = told.elapsed();
        stopping.spawn();
        stopping.wait_ready(&http).await;
        endpoints.set(urls(&path, &[&bed.gateway, &b]));
        restarts.push(format!("{:.2} s to exit, {:.2} s until ready again", stopped.as_secs_f64(), told.elapsed().as_secs_f64()));
    }
    let (sent, sending) = load.finish().await;

    let first = load::first_answers(&sent);
    assert_eq!((first.unanswered, first.refused.len()), (0, 0), "a rolling restart refuses nothing: {:?}", first.refused);
    let desk = delivered_by_both(&bed, &b, &sent).await;
    eprintln!(
        "rolling restart: {TOTAL} webhooks over 2 replicas, each restarted in turn ({}); all first deliveries acknowledged; {desk}; \
         sending took {:.1} s, {:.1} s in all",
        restarts.join("; "),
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    b.terminate();
    bed.finish().await;
}

/// A PostgreSQL server of the test's own, since the test takes it down (the suite's server is
/// shared by the tests running at once).
struct OwnServer {
    dir: tempfile::TempDir,
    url: String,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres").join(name)
}

impl OwnServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script("start.sh")).arg(dir.path()).output().expect("start.sh runs");
        assert!(out.status.success(), "the test's own PostgreSQL did not start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self { dir, url }
    }

    /// Stops the server at once and starts it again `down` later, in the background.
    fn bounce(&self, down: Duration) -> std::process::Child {
        Command::new(script("bounce.sh")).arg(self.dir.path()).arg(format!("{:.1}", down.as_secs_f64())).spawn().expect("bounce.sh runs")
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new(script("stop.sh")).arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_is_refused_with_503_and_recovers_by_itself() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    if !on_postgres(&bed) {
        return;
    }
    let server = OwnServer::start();
    bed.gateway.postgres_url = Some(server.url.clone());
    let mut b = second_replica(&mut bed).await;
    let (_, load) = balanced_load(&bed, &b);
    load.wait_acknowledged(3_000).await;
    let bounced = Instant::now();
    let mut bounce = server.bounce(Duration::from_secs(2));
    // While it is down, both replicas say why they are not ready.
    let reason = loop {
        let answer = bed.http.get(bed.metrics_url("/readyz")).send().await.unwrap();
        if answer.status() == 503 {
            break answer.text().await.unwrap();
        }
        assert!(bounced.elapsed() < Duration::from_secs(10), "/readyz kept answering {} with the database down", answer.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reason.starts_with("the store is not available: "), "{reason}");
    let status = bounce.wait().unwrap();
    assert!(status.success(), "bounce.sh: {status:?}");
    bed.gateway.wait_ready(&bed.http).await;
    b.wait_ready(&bed.http).await;
    let recovered = bounced.elapsed();
    let (sent, sending) = load.finish().await;

    let first = load::first_answers(&sent);
    assert!(!first.refused.is_empty(), "webhooks met the database down: the bounce happened under load");
    assert!(first.refused.iter().all(|s| *s == 503), "refused otherwise than with 503: {:?}", first.refused);
    assert_eq!(first.unanswered, 0, "every webhook was answered");
    let desk = delivered_by_both(&bed, &b, &sent).await;
    eprintln!(
        "database restart: {TOTAL} webhooks over 2 replicas; the database down 2 s, both replicas ready {:.2} s after it went \
         ({reason:?} meanwhile); first deliveries: {} acknowledged, {} refused 503; {desk}; sending took {:.1} s, {:.1} s in all",
        recovered.as_secs_f64(),
        first.acknowledged,
        first.refused.len(),
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    b.terminate();
    bed.finish().await;
}
