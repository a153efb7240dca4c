//! The gateway binary reading its configuration from a ConfigMap on a real API server, as the
//! controller deploys it: not ready until the ConfigMap exists, a changed ConfigMap taken
//! without a restart, and an invalid one refused while the last good one keeps serving.
//!
//! The simulator, desk and gateway process come from the gateway suite's harness.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cluster;

#[allow(dead_code)]
#[path = "../gateway/desk.rs"]
mod desk;
#[allow(dead_code)]
#[path = "../gateway/harness.rs"]
mod harness;

use harness::{Bed, Provider, Source, line_channel, line_user, metric, route_rule, tail, workstream};

const CONFIG_MAP: &str = "contoso-line-gateway";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_its_config_map_and_keeps_the_last_good_one() {
    let Some(client) = cluster::client("gateway_configmap").await else { return };
    let started = Instant::now();
    let namespace = format!("gw-configmap-{:04x}", fastrand::u16(..));
    cluster::ensure_namespace(&client, &namespace).await;
    let kubeconfig = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
    let source = Source::ConfigMap { name: CONFIG_MAP.into(), namespace: namespace.clone(), kubeconfig };
    let mut bed = Bed::with_source(Provider::Line, source, &[]).await;
    let config = |bed: &Bed, greeting: &str| {
        let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], Some(greeting), vec![]);
        serde_json::to_string_pretty(&bed.config(vec![ws])).unwrap()
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let set = |text: String| {
        let config_maps = config_maps.clone();
        async move {
            let patch = json!({"data": {"config.json": text}});
            config_maps.patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("the ConfigMap is updated");
        }
    };

    // Started before its ConfigMap exists: alive, not ready, webhooks answered 503.
    bed.gateway.spawn();
    let healthz = bed.metrics_url("/healthz");
    cluster::wait_for("/healthz", || async { bed.http.get(&healthz).send().await.ok().filter(|r| r.status() == 200).map(|_| ()) }).await;
    assert_eq!(bed.http.get(bed.metrics_url("/readyz")).send().await.unwrap().status(), 503, "not ready without a configuration");
    let early = bed.line_text(&line_user(9), "Early", "too soon").await;
    assert_eq!(early["delivery"]["statusCode"], 503, "{early}");

    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": CONFIG_MAP},
        "data": {"config.json": config(&bed, "Hello v1, {CustomerName}")},
    }))
    .unwrap();
    config_maps.create(&PostParams::default(), &cm).await.expect("the ConfigMap is created");
    bed.wait_ready().await;
    let pid = bed.gateway.pid();
    let ann = line_user(1);
    assert_eq!(bed.line_text(&ann, "Ann", "hello").await["delivery"]["statusCode"], 200);
    let greeting = bed.wait_sent("Ann's greeting", |m| m["to"] == ann.as_str()).await;
    assert_eq!(greeting["body"], "Hello v1, Ann");

    // A changed ConfigMap is taken without a restart.
    set(config(&bed, "Hello v2, {CustomerName}")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.gateway.loads() < 2 {
        assert!(Instant::now() < deadline, "the changed ConfigMap was not loaded\n{}", tail(&bed.gateway.log(), 30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hashes: Vec<String> = bed
        .gateway
        .log()
        .lines()
        .filter(|l| l.contains("configuration loaded"))
        .map(|l| l.split("hash=").nth(1).unwrap_or_default().split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1], "a different document was loaded");
    assert!(bed.gateway.log().contains(&format!("ConfigMap {namespace}/{CONFIG_MAP}")), "the log names the ConfigMap");
    let bob = line_user(2);
    assert_eq!(bed.line_text(&bob, "Bob", "hello").await["delivery"]["statusCode"], 200);
    let greeting = bed.wait_sent("Bob's greeting", |m| m["to"] == bob.as_str()).await;
    assert_eq!(greeting["body"], "Hello v2, Bob", "the new greeting is in use");
    assert!(bed.gateway.running() && bed.gateway.pid() == pid, "the same process");

    // Invalid JSON: refused and counted; the last good configuration keeps serving.
    set("{\"version\": 1, \"account\": ".to_owned()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.metric(r#"switchboard_gateway_config_loads_total{outcome="Rejected"}"#).await < 1.0 {
        assert!(Instant::now() < deadline, "the invalid ConfigMap was not refused\n{}", tail(&bed.gateway.log(), 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bed.gateway.log().contains("configuration rejected; keeping the current one"));
    assert_eq!(bed.http.get(bed.metrics_url("/readyz")).send().await.unwrap().status(), 200, "still ready");
    let cem = line_user(3);
    assert_eq!(bed.line_text(&cem, "Cem", "hello").await["delivery"]["statusCode"], 200, "webhooks are still taken");
    let greeting = bed.wait_sent("Cem's greeting", |m| m["to"] == cem.as_str()).await;
    assert_eq!(greeting["body"], "Hello v2, Cem", "the last good configuration is in use");
    let text = bed.metrics().await;
    assert_eq!(metric(&text, r#"switchboard_gateway_config_loads_total{outcome="Applied"}"#), 2.0);
    assert!(bed.gateway.running() && bed.gateway.pid() == pid, "the same process");

    // The desk got all three customers' messages, and only them.
    let messages = bed.desk.wait_messages(3, Duration::from_secs(20)).await;
    let mut names: Vec<&str> = messages.iter().map(|m| m.body["conversation"]["customer"]["displayName"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["Ann", "Bob", "Cem"]);
    // The document as the controller stores it: gzip-compressed under binaryData, here over
    // 1 MiB of JSON (10,000 rules); it is taken live, and a rule deep in the list routes.
    let rules: Vec<_> = (0..10_000).map(|i| route_rule(&format!("rule-{i:05}"), i, &format!("topic-{i:05}"), "billing")).collect();
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general", "billing"], Some("Hello v3, {CustomerName}"), rules);
    let large: switchboard::config::GatewayConfig = serde_json::from_value(bed.config(vec![ws])).unwrap();
    let compressed = large.to_compressed();
    assert!(large.to_json().len() > 1 << 20 && compressed.len() < switchboard::config::MAX_COMPRESSED_BYTES, "{} → {}", large.to_json().len(), compressed.len());
    let patch = json!({"data": null, "binaryData": {"config.json.gz": k8s_openapi::ByteString(compressed)}});
    config_maps.patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("the ConfigMap is updated");
    let deadline = Instant::now() + Duration::from_secs(30);
    while bed.metric(r#"switchboard_gateway_config_loads_total{outcome="Applied"}"#).await < 3.0 {
        assert!(Instant::now() < deadline, "the compressed ConfigMap was not loaded\n{}", tail(&bed.gateway.log(), 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dan = line_user(4);
    assert_eq!(bed.line_text(&dan, "Dan", "about topic-09999").await["delivery"]["statusCode"], 200);
    let greeting = bed.wait_sent("Dan's greeting", |m| m["to"] == dan.as_str()).await;
    assert_eq!(greeting["body"], "Hello v3, Dan", "the compressed configuration is in use");
    let routed = bed.desk.wait_messages(4, Duration::from_secs(20)).await;
    let dans = routed.iter().find(|m| m.body["conversation"]["customer"]["displayName"] == "Dan").expect("Dan's conversation at the desk");
    assert_eq!((&dans.body["conversation"]["routing"]["queue"], &dans.body["conversation"]["routing"]["routedBy"]), (&json!("billing"), &json!("rule-09999")), "{}", dans.body);
    assert!(bed.gateway.running() && bed.gateway.pid() == pid, "the same process");
    eprintln!("the_gateway_follows_its_config_map_and_keeps_the_last_good_one: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
