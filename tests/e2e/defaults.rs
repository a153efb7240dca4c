//! What the API server's defaults make of the README's first manifest: an account that says
//! nothing about its gateway runs one replica, and a paused one (`replicas: 0`) is not Ready.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

use crate::cluster;
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN};

/// The first YAML block of the README's resources section, as a reader copies it.
fn readme_first_snippet() -> Vec<Value> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## The resources").expect("the README has a resources section")..];
    let start = section.find("```yaml\n").expect("a YAML block") + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    block.split("\n---\n").map(|doc| serde_yaml::from_str(doc).unwrap()).collect()
}

#[tokio::test]
async fn the_readme_account_runs_one_gateway_and_zero_is_a_pause() {
    let Some(h) = Harness::start("defaults", "", &[]).await else { return };
    let docs = readme_first_snippet();
    let account = docs.iter().find(|d| d["kind"] == "MessagingAccount").expect("the snippet has an account");
    assert!(account["spec"].get("gateway").is_none(), "the README's account leaves spec.gateway out");
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    h.apply(&docs).await;

    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);
    let deployment = cluster::wait_for("the gateway Deployment", || async { deployments.get_opt("contoso-line-gateway").await.ok()? }).await;
    assert_eq!(deployment.spec.replicas, Some(1), "an account without spec.gateway runs one replica");
    let stored = h.accounts().get("contoso-line").await.unwrap();
    assert_eq!(stored.spec.gateway.replicas, 1, "the API server defaulted spec.gateway.replicas to 1");
    let accounts = h.accounts();
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;

    // replicas: 0 pauses the gateway: nothing receives webhooks, so nothing is Ready.
    let mut paused = account.clone();
    paused["spec"]["gateway"] = json!({"replicas": 0});
    h.apply(&[paused]).await;
    h.wait_condition(&accounts, "contoso-line", "GatewayReady", "False", "ScaledToZero").await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "False", "ScaledToZero").await;
    let deployment = deployments.get("contoso-line-gateway").await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(0));
    h.assert_no_secrets().await;
}
