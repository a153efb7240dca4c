//! Leader election against a real API server: two controllers for one namespace, only the holder
//! of the Lease reconciles (the standby makes no provider call and stays ready), and when the
//! leader is killed with SIGKILL the standby takes the Lease over within about the lease duration
//! and reconciles from then on, without registering a webhook twice. A leader that finds its
//! lease taken stops at once and exits non-zero.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cluster;
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, controller_user, examples, probe_addr, terminate};

/// Short leases, so that a take-over is quick to watch.
const LEASE_FLAGS: [&str; 6] = ["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s"];
const LEASE_DURATION: Duration = Duration::from_secs(4);

/// Registering a LINE webhook, and pointing the Twilio Messaging Service at the callback.
const LINE_REGISTRATION: &str = "PUT /v2/bot/channel/webhook/endpoint";
const TWILIO_REGISTRATION: &str = "POST /v1/Services/*";

/// A controller process started beside the harness's; killed when the test ends, however it ends.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (10 s at most) for the process to exit.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running controller");
        terminate(&mut child, &tail(&self.log(), 30))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test]
async fn a_standby_takes_over_from_a_killed_leader() {
    let Some(mut h) = Harness::start("leader", "", &LEASE_FLAGS).await else { return };
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    let lease_name = format!("switchboard-controller-{}", h.namespace);
    let lease = || async { leases.get_opt(&lease_name).await.unwrap().and_then(|l| l.spec) };
    let holder = || async { lease().await.and_then(|s| s.holder_identity).filter(|h| !h.is_empty()) };

    // Controller A (the harness's) campaigns alone and wins; then B starts and stands by.
    let a_pid = h.controller_pid().unwrap();
    let a_identity = cluster::wait_for("controller A to take the lease", || async { holder().await.filter(|h| h.ends_with(&format!("_{a_pid}"))) }).await;
    let dir = tempfile::tempdir().unwrap();
    let b_log = dir.path().join("standby.log");
    let mut b = Process { child: Some(h.spawn_controller(&[], File::create(&b_log).unwrap())), log: b_log };
    let b_pid = b.child.as_ref().unwrap().id();
    cluster::wait_for("controller B to stand by", || async { b.log().contains("standing by").then_some(()) }).await;
    // A standby is ready: a rollout can replace the leader's pod while the new one waits.
    let readyz = format!("http://{}/readyz", probe_addr(&b.log()).expect("B logs its probe address"));
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200, "the standby's /readyz");

    h.apply(&examples(&["line-quickstart.yaml", "whatsapp-twilio.yaml"])).await;
    let accounts = h.accounts();
    for name in ["contoso-line", "contoso-whatsapp"] {
        h.wait_condition(&accounts, name, "Ready", "True", "Ready").await;
    }
    assert_eq!(holder().await.as_deref(), Some(a_identity.as_str()), "A held the lease throughout");
    assert!(h.log().contains("reconciling object"), "the leader reconciles");
    assert!(!b.log().contains("reconciling object"), "the standby reconciled:\n{}", tail(&b.log(), 30));
    assert!(!b.log().contains("became the leader"));
    assert!(!b.log().contains("provider call"), "the standby called a provider");
    // One registration each, by the leader: two active controllers would race to make two.
    assert_eq!(h.requests(LINE_REGISTRATION).await, 1, "LINE webhook registrations");
    assert_eq!(h.requests(TWILIO_REGISTRATION).await, 1, "Twilio Messaging Service updates");

    // A quiet period with both running: the leader has nothing to do, and the standby calls no provider.
    h.sim_delete("/__sim/requests").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.requests("").await, 0, "provider calls in the quiet period with a leader and a standby");

    // kill -9 the leader: B takes over once A's lease has run out, not before.
    let killed = Instant::now();
    h.kill_controller();
    let b_identity = cluster::wait_within(Duration::from_secs(30), || async { holder().await.filter(|h| h.ends_with(&format!("_{b_pid}"))) })
        .await
        .unwrap_or_else(|| panic!("B did not take over within 30 s\n{}", tail(&b.log(), 30)));
    let takeover = killed.elapsed();
    eprintln!("leader: B ({b_identity}) took the lease over {takeover:?} after A was killed (lease duration {LEASE_DURATION:?}, retry period 1s)");
    assert!(takeover >= LEASE_DURATION / 2, "B took over a lease that had not expired: {takeover:?}");
    // Generous on purpose: on two shared cores the standby's retry period and the API server can both lag.
    assert!(takeover <= LEASE_DURATION + Duration::from_secs(6), "take-over took {takeover:?}");
    assert_eq!(lease().await.unwrap().lease_transitions, Some(1), "one change of holder");
    cluster::wait_for("B to reconcile", || async { b.log().contains("reconciling object").then_some(()) }).await;

    // A change only the new leader can act on: a new public base URL moves the LINE webhook.
    let patch = json!({"spec": {"webhook": {"publicBaseUrl": "https://chat2.contoso.example"}}});
    accounts.patch("contoso-line", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let callback = format!("https://chat2.contoso.example/switchboard/{}/contoso-line/webhook", h.namespace);
    let moved = cluster::wait_within(Duration::from_secs(30), || async { (h.line_endpoint().await == json!(callback)).then_some(()) }).await;
    assert!(moved.is_some(), "the new leader did not move the webhook\n{}", tail(&b.log(), 40));
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    // Taking over re-checks every account as a restart does: the LINE webhook is read and set only
    // for the new URL; the Twilio Messaging Service is set again at most once, to the URL it has.
    assert_eq!(h.requests(LINE_REGISTRATION).await, 1, "LINE webhook registrations after the take-over");
    assert!(h.requests(TWILIO_REGISTRATION).await <= 1, "Twilio Messaging Service updates after the take-over");
    let whatsapp = accounts.get("contoso-whatsapp").await.unwrap().status.unwrap().callback_url.unwrap();
    assert_eq!(h.twilio_state().await["messagingServices"][0]["inboundRequestUrl"], json!(whatsapp));

    // A graceful stop hands the lease back at once and exits 0.
    assert!(b.stop().success(), "the leader's SIGTERM exit\n{}", tail(&b.log(), 20));
    assert!(b.log().contains("released the lease"));
    assert_eq!(holder().await, None, "the lease is free after a graceful stop");
    let user = controller_user();
    let refused: Vec<String> = b.log().lines().filter(|l| l.contains(&user) && l.contains(" cannot ")).map(str::to_owned).collect();
    assert!(refused.is_empty(), "the API server refused B: {refused:?}");
    for secret in [LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN] {
        assert!(!b.log().contains(secret), "a credential appears in B's log");
    }
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_exits_non_zero_at_once() {
    let Some(h) = Harness::start("leader-lost", "", &LEASE_FLAGS).await else { return };
    // A controller with a lease of its own, beside the harness's (which keeps its lease).
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("lost.log");
    let mut c = Process { child: Some(h.spawn_controller(&["--leader-election-id", "lost"], File::create(&log).unwrap())), log };
    let suffix = format!("_{}", c.child.as_ref().unwrap().id());
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &h.namespace);
    cluster::wait_for("the controller to take its lease", || async {
        leases.get_opt("lost").await.unwrap()?.spec?.holder_identity.filter(|h| h.ends_with(&suffix))
    })
    .await;

    // Someone else becomes the holder (as a replica that believed the lease expired would).
    let taken = loop {
        let mut lease = leases.get("lost").await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match leases.replace("lost", &PostParams::default(), &lease).await {
            Ok(_) => break Instant::now(),
            // The controller renewed in between; take the newer version.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => panic!("replacing the lease: {e}"),
        }
    };
    let child = c.child.as_mut().unwrap();
    let mut status = None;
    while status.is_none() && taken.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = child.try_wait().unwrap();
    }
    let stopped = taken.elapsed();
    let status = status.unwrap_or_else(|| panic!("the controller kept running without its lease\n{}", tail(&c.log(), 20)));
    c.child = None;
    eprintln!("leader-lost: the controller exited with {status} {stopped:?} after its lease was taken");
    assert_eq!(status.code(), Some(2), "a non-zero exit, so that it restarts and campaigns again");
    assert!(stopped < Duration::from_secs(3), "stopped only after {stopped:?} (retry period 1s)");
    assert!(c.log().contains("lost the leader lease"), "{}", tail(&c.log(), 20));
    assert_eq!(leases.get("lost").await.unwrap().spec.unwrap().holder_identity.as_deref(), Some("intruder"), "left to its holder");
}
