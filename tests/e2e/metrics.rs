//! The controller's `/metrics` on its probe port, once the examples are Ready: reconciles counted
//! and timed per kind, the credential checks counted per provider operation and outcome, the
//! queue gauges present, and no credential anywhere in the text.

use std::time::Duration;

use kube::Api;
use serde_json::Value;
use switchboard::api::{RoutingRule, Workstream};

use crate::cluster;
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, WRONG_TOKEN, examples, probe_addr};

const KINDS: [&str; 4] = ["MessagingAccount", "MessageTemplate", "Workstream", "RoutingRule"];

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let ours = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ours.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The names of the documents of `kind`.
fn names(docs: &[Value], kind: &str) -> Vec<String> {
    docs.iter().filter(|d| d["kind"] == kind).map(|d| d["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn metrics_count_reconciles_and_provider_calls() {
    let Some(h) = Harness::start("ctl-metrics", "approvals: {receivedFor: 300ms, pendingFor: 700ms}", &["--approval-pending-interval", "1s"]).await
    else {
        return;
    };
    let docs = examples(&["line-quickstart.yaml", "whatsapp-twilio.yaml", "templates.yaml"]);
    h.apply(&docs).await;
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    for name in names(&docs, "MessagingAccount") {
        h.wait_condition(&h.accounts(), &name, "Ready", "True", "Ready").await;
    }
    for name in names(&docs, "MessageTemplate") {
        h.wait_condition(&h.templates(), &name, "Ready", "True", "Ready").await;
    }
    for name in names(&docs, "Workstream") {
        h.wait_condition(&workstreams, &name, "Ready", "True", "Ready").await;
    }
    for name in names(&docs, "RoutingRule") {
        h.wait_condition(&rules, &name, "Ready", "True", "Ready").await;
    }

    let addr = probe_addr(&h.log()).expect("the controller logged its probe address");
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("/metrics answers");
    assert!(response.status().is_success(), "/metrics: {}", response.status());
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/plain"), "content type {content_type:?}");
    let text = response.text().await.unwrap();

    let per_kind: Vec<String> = KINDS.iter().map(|k| format!("{k} {}", sample(&text, "switchboard_controller_reconciles_total", &[("kind", k)]))).collect();
    let calls: Vec<&str> = text.lines().filter(|l| l.starts_with("switchboard_controller_provider_calls_total")).collect();
    eprintln!("ctl-metrics: reconciles: {}; provider calls: {}", per_kind.join(", "), calls.join(", "));
    for kind in KINDS {
        let reconciles = sample(&text, "switchboard_controller_reconciles_total", &[("kind", kind)]);
        assert!(reconciles > 0.0, "no {kind} reconcile counted:\n{text}");
        assert!(sample(&text, "switchboard_controller_reconciles_total", &[("kind", kind), ("outcome", "success")]) > 0.0, "{kind}:\n{text}");
        let timed = sample(&text, "switchboard_controller_reconcile_duration_seconds_count", &[("kind", kind)]);
        assert_eq!(timed, reconciles, "every {kind} reconcile counted is timed");
        for gauge in ["switchboard_controller_reconciles_in_flight", "switchboard_controller_objects_in_backoff"] {
            assert!(text.contains(&format!("{gauge}{{kind=\"{kind}\"}}")), "{gauge} for {kind}:\n{text}");
        }
    }
    assert_eq!(sample(&text, "switchboard_controller_objects_in_backoff", &[]), 0.0, "nothing failed:\n{text}");
    for operation in ["line_bot_info", "twilio_account"] {
        let calls = sample(&text, "switchboard_controller_provider_calls_total", &[("operation", operation), ("outcome", "success")]);
        assert!(calls >= 1.0, "no successful {operation} call counted:\n{text}");
    }
    // The simulator saw the credential checks the metrics counted (none of them failed or was
    // retried here, so each request is one call).
    let checks = sample(&text, "switchboard_controller_provider_calls_total", &[("operation", "line_bot_info")]);
    assert_eq!(checks, h.requests("GET /v2/bot/info").await as f64, "LINE bot info calls against the simulator's count");

    for secret in [LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, WRONG_TOKEN] {
        assert!(!text.contains(secret), "a credential appears in /metrics");
    }
    h.assert_no_secrets().await;

    // A scrape shows reconciles as they happen: a changed rule is counted within a moment.
    let before = sample(&text, "switchboard_controller_reconciles_total", &[("kind", "RoutingRule")]);
    let mut rule = docs.iter().find(|d| d["kind"] == "RoutingRule").unwrap().clone();
    rule["metadata"]["annotations"] = serde_json::json!({"switchboard.dev/e2e": "metrics"});
    h.apply(&[rule]).await;
    let counted = cluster::wait_within(Duration::from_secs(20), || async {
        let text = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
        (sample(&text, "switchboard_controller_reconciles_total", &[("kind", "RoutingRule")]) > before).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the annotated rule's reconcile was not counted");
}
