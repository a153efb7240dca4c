//! An account whose gateway keeps its store in PostgreSQL, on a real API server: the connection
//! Secret checked for its keys before anything is rendered, the pods reading it by reference,
//! several replicas rolling without downtime, GatewayReady counting replicas, and the limit of
//! one replica on the embedded store.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster;
use crate::harness::{Harness, examples};

/// The connection password: it must reach no object the controller writes, no event and no log.
const DB_PASSWORD: &str = "e2e-postgres-password-93b7e1";

fn env_names(deployment: &Deployment) -> Vec<String> {
    let spec = deployment.spec.template.spec.as_ref().unwrap();
    spec.containers[0].env.iter().flatten().map(|e| e.name.clone()).collect()
}

#[tokio::test]
async fn a_gateway_on_postgres_reads_its_connection_secret_and_runs_several_replicas() {
    let Some(mut h) = Harness::start("gw-postgres", "", &[]).await else {
        return;
    };
    h.complete_rollouts(false);
    let mut docs = examples(&["line-quickstart.yaml"]);
    let account = docs.iter_mut().find(|d| d["kind"] == "MessagingAccount").unwrap();
    account["spec"]["gateway"] = json!({
        "replicas": 3,
        "store": {"postgres": {"connectionSecretRef": {"name": "chat-db-app"}, "caSecretRef": {"name": "chat-db-ca", "key": "ca.crt"}}}
    });
    h.apply(&docs).await;
    let accounts = h.accounts();
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);

    // No Secret, then one without the keys: a condition that names what is missing, no pods.
    let message = h.wait_condition(&accounts, "contoso-line", "GatewayReady", "False", "SecretNotFound").await;
    assert_eq!(message, "Secret chat-db-app (named by spec.gateway.store.postgres.connectionSecretRef) not found");
    assert!(deployments.get_opt("contoso-line-gateway").await.unwrap().is_none(), "nothing that cannot start is rendered");
    h.secret("chat-db-app", &[("host", "chat-db-rw"), ("username", "app")]).await;
    let message = h.wait_condition(&accounts, "contoso-line", "GatewayReady", "False", "SecretKeyMissing").await;
    assert!(message.ends_with("(missing: dbname, password)"), "{message}");
    h.secret("chat-db-app", &[("host", "chat-db-rw"), ("username", "app"), ("dbname", "app"), ("password", DB_PASSWORD), ("port", "5432")]).await;
    let message = h.wait_condition(&accounts, "contoso-line", "GatewayReady", "False", "SecretNotFound").await;
    assert!(message.contains("spec.gateway.store.postgres.caSecretRef"), "{message}");
    h.secret("chat-db-ca", &[("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")]).await;

    // The Deployment: rolling, the connection by reference, nothing of the store on the pod.
    let deployment = cluster::wait_for("the gateway Deployment", || async { deployments.get_opt("contoso-line-gateway").await.ok()? }).await;
    assert_eq!(deployment.spec.replicas, Some(3));
    let template = serde_json::to_value(&deployment.spec.template).unwrap();
    assert_eq!(deployment.spec.strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));
    let env = env_names(&deployment);
    for var in ["SWITCHBOARD_POSTGRES_HOST", "SWITCHBOARD_POSTGRES_PORT", "SWITCHBOARD_POSTGRES_DBNAME", "SWITCHBOARD_POSTGRES_USER", "SWITCHBOARD_POSTGRES_PASSWORD"] {
        assert!(env.iter().any(|e| e == var), "{var} in {env:?}");
    }
    assert!(!template.to_string().contains(DB_PASSWORD), "the password is referenced, not copied");
    let volumes: Vec<&str> = template["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["postgres-ca", "tmp"]);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), &h.namespace);
    assert!(pvcs.get_opt("contoso-line-gateway").await.unwrap().is_none());
    h.wait_condition(&accounts, "contoso-line", "StoragePersistent", "True", "PostgreSQL").await;
    // This API server (1.20) has no policy/v1: the budget is an event, not a failure.
    cluster::wait_for("the PodDisruptionBudget warning", || async {
        h.events().await.into_iter().find(|e| e["reason"] == "PodDisruptionBudgetUnsupported").map(|_| ())
    })
    .await;

    // One replica of three is enough to serve.
    let generation = deployments.get("contoso-line-gateway").await.unwrap().metadata.generation.unwrap();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 1}});
    deployments.patch_status("contoso-line-gateway", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let message = h.wait_condition(&accounts, "contoso-line", "GatewayReady", "True", "Available").await;
    assert_eq!(message, "1 of 3 gateway replicas available");

    // A `uri` key wins over the parts.
    h.secret("chat-db-app", &[("uri", &format!("postgresql://app:{DB_PASSWORD}@chat-db-rw:5432/app")), ("host", "chat-db-rw"), ("username", "app"), ("dbname", "app"), ("password", DB_PASSWORD)]).await;
    let deployment = cluster::wait_for("the URL variable", || async {
        let d = deployments.get("contoso-line-gateway").await.ok()?;
        env_names(&d).iter().any(|e| e == "SWITCHBOARD_POSTGRES_URL").then_some(d)
    })
    .await;
    assert!(!env_names(&deployment).iter().any(|e| e == "SWITCHBOARD_POSTGRES_PASSWORD"), "{:?}", env_names(&deployment));

    // Back on the embedded store, several replicas are refused by name (this server has no CEL:
    // the controller's own check).
    let patch = json!({"spec": {"gateway": {"replicas": 2, "store": null}}});
    accounts.patch("contoso-line", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let message = h.wait_condition(&accounts, "contoso-line", "Ready", "False", "InvalidSpec").await;
    assert!(message.contains("spec.gateway.replicas: at most 1 without store.postgres"), "{message}");
    let patch = json!({"spec": {"gateway": {"replicas": 1}}});
    accounts.patch("contoso-line", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    cluster::wait_for("the SQLite gateway to roll out with Recreate", || async {
        let d = deployments.get("contoso-line-gateway").await.ok()?;
        let strategy: Value = serde_json::to_value(&d.spec.strategy).ok()?;
        (strategy == json!({"type": "Recreate"})).then_some(())
    })
    .await;

    let texts: Vec<String> = h.events().await.iter().map(Value::to_string).chain([h.log()]).collect();
    for text in texts {
        assert!(!text.contains(DB_PASSWORD), "the database password leaked");
    }
    let statuses = serde_json::to_string(&accounts.get("contoso-line").await.unwrap().status).unwrap();
    assert!(!statuses.contains(DB_PASSWORD));
    h.assert_no_secrets().await;
}
