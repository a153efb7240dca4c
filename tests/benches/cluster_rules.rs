//! The controller on a real API server with many rules, against the targets of issue 21:
//! (1) 1,000 RoutingRules (20 workstreams of one Twilio account) in one `kubectl apply`: all Ready
//!     within 3 s after the apply returns;
//! (2) one rule change: Ready within 1 s, at most 2 objects written (the rule and the ConfigMap);
//! (3) a steady state: no writes;
//! (4) a second account with 10,000 rules across 50 workstreams: it renders, fits one ConfigMap
//!     and is Ready;
//! (5) with 11,000 rules, 100 workstreams and 100 templates in all, the controller's peak resident
//!     memory under 100 MiB.
//!
//! Needs the test server and kubectl: `SWITCHBOARD_TEST_KUBECONFIG=$(tests/testbed/start.sh DIR)
//! cargo bench --bench cluster_rules`; without the server it says so and does nothing.

#[path = "../e2e/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{MessagingAccount, RoutingRule, Workstream};

use harness::{Harness, TWILIO_TOKEN};

const WORKSTREAMS: usize = 20;
const RULES_PER_WORKSTREAM: usize = 50;
/// The large account: workstreams, rules per workstream.
const BIG_WORKSTREAMS: usize = 50;
const BIG_RULES_PER_WORKSTREAM: usize = 200;
/// A third account carries workstreams without rules, so that there are 100 or more in all.
const WIDE_WORKSTREAMS: usize = 50;
const TEMPLATES: usize = 100;

fn account(name: &str, numbers: usize, first: usize) -> Value {
    let numbers: Vec<Value> = (0..numbers).map(|i| json!({"name": format!("n{i:02}"), "number": format!("+1415555{:04}", first + i)})).collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount", "metadata": {"name": name},
        "spec": {
            "twilioWhatsApp": {"accountSid": "AC0123456789abcdef0123456789abcdef", "authToken": {"secretKeyRef": {"name": "bench-twilio", "key": "auth-token"}}, "numbers": numbers},
            "webhook": {"publicBaseUrl": "https://chat.bench.example", "registration": "Manual"},
            "dataTransfer": {"acknowledged": true}
        }
    })
}

fn workstream(account: &str, prefix: &str, i: usize) -> Value {
    let queues: Vec<Value> = (0..5).map(|q| json!({"name": format!("q{q}"), "priority": q + 1})).collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Workstream", "metadata": {"name": format!("{prefix}-{i:02}")},
        "spec": {
            "accountRef": {"name": account}, "whatsAppNumber": format!("n{i:02}"), "language": "en-US",
            "distribution": {"mode": "Push", "fallbackQueue": "q0"}, "queues": queues,
            "delivery": {"url": "http://desk.bench.svc/switchboard", "signingSecretRef": {"name": "bench-desk", "key": "signing-secret"},
                         "agentApiTokenSecretRef": {"name": "bench-desk", "key": "api-token"}}
        }
    })
}

fn rule(prefix: &str, ws: usize, r: usize, word: &str) -> Value {
    let name = format!("{prefix}-{ws:02}-r{r:03}");
    let condition = json!({"field": "message.text", "operator": "Contains", "values": [word, format!("topic{r}")], "ignoreCase": true});
    if r.is_multiple_of(2) {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": name},
               "spec": {"workstreamRef": {"name": format!("{prefix}-{ws:02}")}, "stage": "Classification", "order": r,
                        "match": {"all": [condition]}, "set": {"attributes": {"topic": format!("t{r}")}}}})
    } else {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": name},
               "spec": {"workstreamRef": {"name": format!("{prefix}-{ws:02}")}, "stage": "RouteToQueue", "order": r,
                        "match": {"all": [condition]}, "routeTo": {"queue": format!("q{}", r % 5)}}})
    }
}

/// resourceVersion of every object the controller could write in the namespace.
async fn versions(h: &Harness) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    let lp = ListParams::default();
    let ns = &h.namespace;
    let c = &h.client;
    for o in Api::<RoutingRule>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("rule/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<Workstream>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("workstream/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<MessagingAccount>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("account/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<ConfigMap>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("configmap/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("deployment/{}", o.name_any()), o.resource_version().unwrap());
    }
    for o in Api::<Event>::namespaced(c.clone(), ns).list(&lp).await.unwrap() {
        all.insert(format!("event/{}", o.name_any()), o.resource_version().unwrap());
    }
    all
}

/// Whether a rule is Ready for its current generation.
fn is_ready(rule: &RoutingRule) -> bool {
    rule.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == rule.metadata.generation))
}

/// Waits until `total` rules named `prefix…` are Ready (at most `limit`); how many were, and how
/// long it took. It follows a watch: listing 10,000 rules every 100 ms would load the API
/// server the bench measures more than the controller does.
async fn until_ready(rules: &Api<RoutingRule>, prefix: &str, total: usize, limit: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let mut ready = HashSet::new();
    let events = watcher(rules.clone(), watcher::Config::default()).default_backoff().applied_objects();
    futures::pin_mut!(events);
    while ready.len() < total {
        let Ok(Some(event)) = tokio::time::timeout(limit.saturating_sub(start.elapsed()), events.next()).await else { break };
        let Ok(rule) = event else { continue };
        if !rule.name_any().starts_with(prefix) {
            continue;
        }
        if is_ready(&rule) {
            ready.insert(rule.name_any());
        } else {
            ready.remove(&rule.name_any());
        }
    }
    (ready.len(), start.elapsed())
}

fn template(i: usize) -> Value {
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessageTemplate", "metadata": {"name": format!("tpl-{i:03}")},
        "spec": {"accountRef": {"name": "bench"}, "templateName": format!("bench_{i:03}"), "category": "Utility", "defaultLanguage": "en",
                 "localizations": [{"language": "en", "body": format!("Hello {{{{1}}}}, your order {i} shipped.")}], "sampleValues": {"1": "Ann"}}
    })
}

/// `kubectl apply` of `docs` in the test's namespace, as one command (the way people apply a
/// folder); how long the command took.
fn kubectl_apply(h: &Harness, docs: Vec<Value>) -> Duration {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": docs})).unwrap()).unwrap();
    let kubeconfig = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
    let start = Instant::now();
    let out = std::process::Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "apply", "--server-side", "-n", &h.namespace, "-f"])
        .arg(file.path())
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

fn peak_memory_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

#[tokio::main]
async fn main() {
    let Some(h) = Harness::start("bench-rules", "", &[]).await else { return };
    h.secret("bench-twilio", &[("auth-token", TWILIO_TOKEN)]).await;
    h.secret("bench-desk", &[("signing-secret", "bench-signing"), ("api-token", "bench-api")]).await;
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    let accounts = h.accounts();

    // (1) 1,000 rules in one apply.
    let total = WORKSTREAMS * RULES_PER_WORKSTREAM;
    h.apply(&[account("bench", WORKSTREAMS, 2000)]).await;
    h.apply(&(0..WORKSTREAMS).map(|w| workstream("bench", "ws", w)).collect::<Vec<_>>()).await;
    // The rules go to a working account: one whose gateway is still rolling out would report
    // them not Ready first, then Ready.
    h.wait_condition(&accounts, "bench", "Ready", "True", "Ready").await;
    let docs: Vec<Value> = (0..WORKSTREAMS).flat_map(|w| (0..RULES_PER_WORKSTREAM).map(move |r| rule("ws", w, r, "refund"))).collect();
    let applied = kubectl_apply(&h, docs);
    let (ready, after_apply) = until_ready(&rules, "ws-", total, Duration::from_secs(120)).await;
    println!(
        "cluster_rules (1): {total} rules in one kubectl apply ({:.1} s); {ready}/{total} Ready {:.2} s after it returned (target 3 s: {})",
        applied.as_secs_f64(),
        after_apply.as_secs_f64(),
        verdict(ready == total && after_apply <= Duration::from_secs(3))
    );

    // (2) One rule change: how fast, and which objects does the system write?
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = versions(&h).await;
    let changed = Instant::now();
    h.apply(&[rule("ws", 7, 3, "invoice")]).await;
    loop {
        let r = rules.get("ws-07-r003").await.unwrap();
        let done = r.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == Some(2)));
        if done || changed.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let propagated = changed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(&h).await;
    // The rule's own version moves twice (the edit, then its status): count objects, not writes.
    let written: Vec<&String> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    println!(
        "cluster_rules (2): one rule change Ready in {:.2} s (target 1 s: {}); objects written: {} {:?} (target at most 2: {})",
        propagated.as_secs_f64(),
        verdict(propagated <= Duration::from_secs(1)),
        written.len(),
        written,
        verdict(written.len() <= 2)
    );

    // (3) Steady state.
    let quiet = versions(&h).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let moved = versions(&h).await.iter().filter(|(k, v)| quiet.get(*k) != Some(*v)).count();
    println!("cluster_rules (3): objects written in 5 s of steady state: {moved} (target 0: {})", verdict(moved == 0));

    // (4) 10,000 rules on one account, and (5) memory with everything.
    let big_total = BIG_WORKSTREAMS * BIG_RULES_PER_WORKSTREAM;
    h.apply(&[account("big", BIG_WORKSTREAMS, 3000), account("wide", WIDE_WORKSTREAMS, 4000)]).await;
    let mut docs: Vec<Value> = (0..BIG_WORKSTREAMS).map(|w| workstream("big", "big", w)).collect();
    docs.extend((0..WIDE_WORKSTREAMS).map(|w| workstream("wide", "wide", w)));
    docs.extend((0..TEMPLATES).map(template));
    kubectl_apply(&h, docs);
    let docs: Vec<Value> = (0..BIG_WORKSTREAMS).flat_map(|w| (0..BIG_RULES_PER_WORKSTREAM).map(move |r| rule("big", w, r, "refund"))).collect();
    let applied = kubectl_apply(&h, docs);
    let (ready, after_apply) = until_ready(&rules, "big-", big_total, Duration::from_secs(300)).await;
    let big = Api::<ConfigMap>::namespaced(h.client.clone(), &h.namespace).get("big-gateway").await.ok();
    let stored = big.as_ref().and_then(switchboard::config::config_map_document).map(<[u8]>::len).unwrap_or_default();
    let size = big.and_then(|cm| cm.metadata.annotations).and_then(|mut a| a.remove("switchboard.dev/config-size")).unwrap_or_default();
    let account_ready = harness::Harness::condition(&accounts, "big", "Ready").await.map(|c| c.0).unwrap_or_default();
    println!(
        "cluster_rules (4): {big_total} rules across {BIG_WORKSTREAMS} workstreams applied in {:.1} s; {ready}/{big_total} Ready {:.1} s later; ConfigMap {stored} bytes ({size}); account Ready={account_ready} (target: fits and Ready: {})",
        applied.as_secs_f64(),
        after_apply.as_secs_f64(),
        verdict(ready == big_total && stored > 0 && account_ready == "True")
    );
    let workstreams = WORKSTREAMS + BIG_WORKSTREAMS + WIDE_WORKSTREAMS;
    match h.controller_pid().and_then(peak_memory_kib) {
        Some(kib) => println!(
            "cluster_rules (5): controller peak resident memory {:.1} MiB with {} rules, {workstreams} workstreams, {TEMPLATES} templates (target under 100 MiB with 5,000 rules, 100 workstreams, 100 templates: {})",
            kib as f64 / 1024.0,
            total + big_total,
            verdict(kib < 100 * 1024)
        ),
        None => println!("cluster_rules (5): controller peak memory not readable"),
    }
}
