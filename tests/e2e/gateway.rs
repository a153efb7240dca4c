//! The gateway the controller runs per account, on a real API server: the compiled
//! configuration in its ConfigMap, the Deployment, Service, PVC and Ingress, live configuration
//! changes, drift repair, and the Ready chain from the Deployment to the rules.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{RoutingRule, Workstream};
use switchboard::config::GatewayConfig;

use crate::cluster;
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, examples};

async fn config(h: &Harness, account: &str) -> Option<(GatewayConfig, String)> {
    let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.namespace);
    let cm = api.get_opt(&format!("{account}-gateway")).await.ok()??;
    let text = switchboard::config::document_json(switchboard::config::config_map_document(&cm)?).ok()?;
    Some((GatewayConfig::from_json(&text).ok()?, text))
}

fn pod_template(deployment: &Deployment) -> Value {
    serde_json::to_value(&deployment.spec.template).unwrap()
}

#[tokio::test]
async fn the_gateway_follows_its_account() {
    let Some(mut h) = Harness::start("gw-follow", "approvals: {receivedFor: 200ms, pendingFor: 300ms}", &["--approval-pending-interval", "1s"]).await else {
        return;
    };
    h.complete_rollouts(false);
    h.apply(&examples(&["line-quickstart.yaml", "whatsapp-twilio.yaml", "templates.yaml"])).await;
    let accounts = h.accounts();
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);

    // Without a rollout the gateway is progressing, and so is everything that needs it.
    h.wait_condition(&accounts, "contoso-line", "GatewayReady", "Unknown", "Progressing").await;
    h.wait_condition(&workstreams, "support-line", "Accepted", "True", "Accepted").await;
    h.wait_condition(&workstreams, "support-line", "Ready", "False", "AccountNotReady").await;
    let (line_config, text) = config(&h, "contoso-line").await.expect("the configuration");
    assert_eq!(line_config.account.name, "contoso-line");
    assert_eq!(line_config.workstreams.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["support-line"]);
    assert_eq!(line_config.rule_generation("support-line", "refunds-are-billing"), Some(1));
    assert!(text.contains("\"env\":\"SWITCHBOARD_SECRET_"), "the desk credentials are named by variable: {text}");

    let deployment = deployments.get("contoso-line-gateway").await.unwrap();
    let spec = deployment.spec.template.spec.as_ref().unwrap();
    let container = &spec.containers[0];
    assert_eq!(container.args.as_ref().unwrap()[0], "gateway");
    let env = container.env.as_ref().unwrap();
    let token = env.iter().find(|e| e.name == "SWITCHBOARD_LINE_CHANNEL_ACCESS_TOKEN").expect("the token variable");
    assert!(token.value.is_none());
    assert_eq!(token.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "contoso-line");
    assert_eq!(deployment.owner_references()[0].kind, "MessagingAccount");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), &h.namespace);
    assert!(pvcs.get_opt("contoso-line-gateway").await.unwrap().is_some(), "storage asks for a PVC");
    let services: Api<Service> = Api::namespaced(h.client.clone(), &h.namespace);
    let ports: Vec<String> =
        services.get("contoso-line-gateway").await.unwrap().spec.unwrap().ports.unwrap().into_iter().filter_map(|p| p.name).collect();
    assert_eq!(ports, ["webhook", "agent-api", "metrics"]);
    let ingresses: Api<Ingress> = Api::namespaced(h.client.clone(), &h.namespace);
    assert!(ingresses.get_opt("contoso-line-gateway").await.unwrap().is_none(), "no ingress asked for");
    let ingress = cluster::wait_for("the WhatsApp gateway's Ingress", || async { ingresses.get_opt("contoso-whatsapp-gateway").await.ok()? }).await;
    let ingress_rules = ingress.spec.unwrap().rules.unwrap();
    let path = ingress_rules[0].http.as_ref().unwrap().paths[0].path.clone();
    assert_eq!(path, Some(format!("/switchboard/{}/contoso-whatsapp", h.namespace)), "the account's whole public prefix");

    // The rollout completes: GatewayReady, then the account, its workstream and rules are Ready.
    h.mark_gateway_available("contoso-line").await;
    h.wait_condition(&accounts, "contoso-line", "GatewayReady", "True", "Available").await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    h.wait_condition(&workstreams, "support-line", "Ready", "True", "Ready").await;
    h.wait_condition(&rules, "refunds-are-billing", "Ready", "True", "Ready").await;
    h.complete_rollouts(true);

    // A rule change reaches the configuration; the pods are not restarted for it.
    let before = pod_template(&deployments.get("contoso-line-gateway").await.unwrap());
    let patch = json!({"spec": {"match": {"all": [{"field": "message.text", "operator": "Contains", "values": ["refund", "money back"], "ignoreCase": true}]}}});
    rules.patch("refunds-are-billing", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let changed = std::time::Instant::now();
    cluster::wait_for("the configuration to hold the rule's generation 2", || async {
        (config(&h, "contoso-line").await?.0.rule_generation("support-line", "refunds-are-billing") == Some(2)).then_some(())
    })
    .await;
    eprintln!("gw-follow: a rule change reached the ConfigMap in {:.2} s", changed.elapsed().as_secs_f64());
    h.wait_condition(&rules, "refunds-are-billing", "Ready", "True", "Ready").await;
    assert_eq!(pod_template(&deployments.get("contoso-line-gateway").await.unwrap()), before, "the pod template did not change");

    // An invalid rule is refused by name and left out; the others keep working.
    let bad = json!({
        "apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule", "metadata": {"name": "broken"},
        "spec": {"workstreamRef": {"name": "support-line"}, "stage": "Classification", "order": 5,
                 "match": {"all": [{"field": "message.text", "operator": "Matches", "values": ["(unclosed"]}]},
                 "set": {"attributes": {"x": "y"}}}
    });
    h.apply(&[bad]).await;
    let message = h.wait_condition(&rules, "broken", "Accepted", "False", "InvalidSpec").await;
    assert!(message.starts_with("spec.match.all[0].values"), "{message}");
    assert_eq!(config(&h, "contoso-line").await.unwrap().0.rule_generation("support-line", "broken"), None);
    assert_eq!(Harness::condition(&rules, "billing-queue", "Ready").await.map(|c| c.0).as_deref(), Some("True"));
    let ws = workstreams.get("support-line").await.unwrap();
    assert_eq!(ws.status.unwrap().routing_rules, Some(2));

    // Drift: a deleted Deployment comes back; replicas changed by hand are put back.
    let uid = deployments.get("contoso-line-gateway").await.unwrap().uid();
    deployments.delete("contoso-line-gateway", &DeleteParams::default()).await.unwrap();
    cluster::wait_for("the Deployment to come back", || async {
        deployments.get_opt("contoso-line-gateway").await.unwrap().filter(|d| d.uid() != uid).map(|_| ())
    })
    .await;
    deployments.patch("contoso-line-gateway", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}}))).await.unwrap();
    cluster::wait_for("the replicas to be put back", || async {
        (deployments.get("contoso-line-gateway").await.ok()?.spec.replicas == Some(1)).then_some(())
    })
    .await;

    // The gateway's Role is put back too.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(h.client.clone(), &h.namespace);
    roles.delete("contoso-line-gateway", &DeleteParams::default()).await.unwrap();
    cluster::wait_for("the Role to come back", || async { roles.get_opt("contoso-line-gateway").await.unwrap().map(|_| ()) }).await;

    // A rotated credential rolls the pods.
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN), ("spare", "x")]).await;
    let before = pod_template(&deployments.get("contoso-line-gateway").await.unwrap());
    cluster::wait_for("the pod template to change", || async {
        (pod_template(&deployments.get("contoso-line-gateway").await.ok()?) != before).then_some(())
    })
    .await;

    // No credential in any ConfigMap of the namespace.
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.namespace);
    for cm in config_maps.list(&ListParams::default()).await.unwrap() {
        let document = switchboard::config::config_map_document(&cm).map(|d| switchboard::config::document_json(d).unwrap());
        let text = format!("{} {}", serde_json::to_string(&cm.data).unwrap(), document.unwrap_or_default());
        for secret in [LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN] {
            assert!(!text.contains(secret), "a credential in ConfigMap {}", cm.name_any());
        }
    }
    h.assert_no_secrets().await;
}
