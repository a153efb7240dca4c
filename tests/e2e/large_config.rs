//! An account whose gateway configuration is over 1 MiB of JSON: it is stored compressed in one
//! ConfigMap, and the account, workstream and rules are Ready.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::{Value, json};
use switchboard::api::{RoutingRule, Workstream};
use switchboard::config::{self, GatewayConfig};

use crate::harness::{Harness, examples};

/// Rules whose conditions list many long phrases (up to 100 values each), drawn from a
/// vocabulary as real phrases are, so that the document compresses as a real one would.
fn wordy_rule(index: usize) -> Value {
    const WORDS: [&str; 16] =
        ["refund", "invoice", "order", "delivery", "broken", "late", "payment", "card", "account", "password", "return", "exchange", "warranty", "shipping", "address", "cancel"];
    let mut seed = index as u64 * 7919 + 1;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let values: Vec<String> = (0..100)
        .map(|_| (0..400).map(|_| format!("{}{}", WORDS[next() % WORDS.len()], next() % 1000)).collect::<Vec<_>>().join(" "))
        .collect();
    json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": format!("wordy-{index}")},
        "spec": {"workstreamRef": {"name": "support-line"}, "stage": "RouteToQueue", "order": index,
                 "match": {"any": [{"field": "message.text", "operator": "Contains", "values": values, "ignoreCase": true}]},
                 "routeTo": {"queue": "billing"}}
    })
}

#[tokio::test]
async fn a_configuration_over_a_mebibyte_of_json_fits_compressed() {
    let Some(h) = Harness::start("ctl-large-config", "", &[]).await else { return };
    let mut docs = examples(&["line-quickstart.yaml"]);
    docs.extend((0..3).map(wordy_rule));
    h.apply(&docs).await;
    let accounts = h.accounts();
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    for i in 0..3 {
        h.wait_condition(&rules, &format!("wordy-{i}"), "Ready", "True", "Ready").await;
    }
    h.wait_condition(&workstreams, "support-line", "Ready", "True", "Ready").await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;

    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.namespace);
    let cm = config_maps.get("contoso-line-gateway").await.unwrap();
    assert_eq!(cm.data, None, "only the compressed document is stored");
    let compressed = config::config_map_document(&cm).expect("a document").to_vec();
    let json = config::document_json(&compressed).unwrap();
    let config = GatewayConfig::from_json(&json).unwrap();
    let rule_count: usize = config.workstreams.iter().map(|w| w.rules.route_to_queue.len()).sum();
    eprintln!("ctl-large-config: {} bytes of JSON stored as {} compressed bytes ({rule_count} route rules)", json.len(), compressed.len());
    assert!(json.len() > 1 << 20, "the document is over 1 MiB of JSON: {}", json.len());
    assert!(compressed.len() < config::MAX_COMPRESSED_BYTES);
    assert_eq!(rule_count, 4, "the three wordy rules and the example's own");
    let size = cm.metadata.annotations.unwrap_or_default().remove("switchboard.dev/config-size").unwrap_or_default();
    assert!(size.starts_with(&format!("{} bytes compressed of {}", compressed.len(), config::MAX_COMPRESSED_BYTES)), "{size}");
    let usage = accounts.get("contoso-line").await.unwrap().status.unwrap().gateway.unwrap().config_usage.unwrap();
    assert!(usage.ends_with("% of 1020 KiB"), "{usage}");
    h.assert_no_secrets().await;
}
