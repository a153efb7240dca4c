//! The controller on a real API server with many rules: one Twilio account, 20 workstreams (one
//! per number), 1,000 RoutingRules. Prints how long until every rule is Ready, how many objects
//! one rule change writes, and the controller's peak memory.
//!
//! Needs the test server: `SWITCHBOARD_TEST_KUBECONFIG=$(tests/testbed/start.sh DIR) cargo bench
//! --bench cluster_rules`; without it, it says so and does nothing.

#[path = "../e2e/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{MessagingAccount, RoutingRule, Workstream};

use harness::{Harness, TWILIO_TOKEN};

const WORKSTREAMS: usize = 20;
const RULES_PER_WORKSTREAM: usize = 50;

fn account() -> Value {
    let numbers: Vec<Value> = (0..WORKSTREAMS).map(|i| json!({"name": format!("n{i:02}"), "number": format!("+1415555{:04}", 2000 + i)})).collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount", "metadata": {"name": "bench"},
        "spec": {
            "twilioWhatsApp": {"accountSid": "AC0123456789abcdef0123456789abcdef", "authToken": {"secretKeyRef": {"name": "bench-twilio", "key": "auth-token"}}, "numbers": numbers},
            "webhook": {"publicBaseUrl": "https://chat.bench.example", "registration": "Manual"},
            "dataTransfer": {"acknowledged": true}
        }
    })
}

fn workstream(i: usize) -> Value {
    let queues: Vec<Value> = (0..5).map(|q| json!({"name": format!("q{q}"), "priority": q + 1})).collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "Workstream", "metadata": {"name": format!("ws-{i:02}")},
        "spec": {
            "accountRef": {"name": "bench"}, "whatsAppNumber": format!("n{i:02}"), "language": "en-US",
            "distribution": {"mode": "Push", "fallbackQueue": "q0"}, "queues": queues,
            "delivery": {"url": "http://desk.bench.svc/switchboard", "signingSecretRef": {"name": "bench-desk", "key": "signing-secret"},
                         "agentApiTokenSecretRef": {"name": "bench-desk", "key": "api-token"}}
        }
    })
}

fn rule(ws: usize, r: usize, word: &str) -> Value {
    let name = format!("ws-{ws:02}-r{r:02}");
    let condition = json!({"field": "message.text", "operator": "Contains", "values": [word, format!("topic{r}")], "ignoreCase": true});
    if r.is_multiple_of(2) {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": name},
               "spec": {"workstreamRef": {"name": format!("ws-{ws:02}")}, "stage": "Classification", "order": r,
                        "match": {"all": [condition]}, "set": {"attributes": {"topic": format!("t{r}")}}}})
    } else {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": name},
               "spec": {"workstreamRef": {"name": format!("ws-{ws:02}")}, "stage": "RouteToQueue", "order": r,
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

async fn ready_rules(rules: &Api<RoutingRule>) -> usize {
    rules
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == r.metadata.generation))
        })
        .count()
}

fn peak_memory_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let Some(h) = Harness::start("bench-rules", "", &[]).await else { return };
    h.secret("bench-twilio", &[("auth-token", TWILIO_TOKEN)]).await;
    h.secret("bench-desk", &[("signing-secret", "bench-signing"), ("api-token", "bench-api")]).await;
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    let total = WORKSTREAMS * RULES_PER_WORKSTREAM;

    let start = Instant::now();
    let mut docs = vec![account()];
    docs.extend((0..WORKSTREAMS).map(workstream));
    docs.extend((0..WORKSTREAMS).flat_map(|w| (0..RULES_PER_WORKSTREAM).map(move |r| rule(w, r, "refund"))));
    h.apply(&docs).await;
    let applied = start.elapsed();
    let mut ready = 0;
    while start.elapsed() < Duration::from_secs(600) {
        ready = ready_rules(&rules).await;
        if ready == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_ready = start.elapsed();
    println!("cluster_rules: {WORKSTREAMS} workstreams, {total} rules applied one by one in {:.1} s; {ready}/{total} Ready after {:.1} s", applied.as_secs_f64(), all_ready.as_secs_f64());

    // One rule change: which objects does the system write?
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = versions(&h).await;
    let changed = Instant::now();
    h.apply(&[rule(7, 3, "invoice")]).await;
    loop {
        let r = rules.get("ws-07-r03").await.unwrap();
        let done = r.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == Some(2)));
        if done || changed.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let propagated = changed.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(&h).await;
    let written: Vec<&String> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    println!(
        "cluster_rules: one rule change was Ready in {:.2} s; objects whose resourceVersion moved (the rule's own includes the user's edit): {} {:?}",
        propagated.as_secs_f64(),
        written.len(),
        written
    );
    let config_size = Api::<ConfigMap>::namespaced(h.client.clone(), &h.namespace)
        .get("bench-gateway")
        .await
        .ok()
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("config.json").map(String::len))
        .unwrap_or_default();
    println!("cluster_rules: gateway configuration {config_size} bytes");
    match h.controller_pid().and_then(peak_memory_kib) {
        Some(kib) => println!("cluster_rules: controller peak resident memory {:.1} MiB", kib as f64 / 1024.0),
        None => println!("cluster_rules: controller peak memory not readable"),
    }
}
