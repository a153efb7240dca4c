//! One account's gateway: its configuration rendered from the accepted workstreams, rules and
//! templates, the objects that run it server-side applied (which also puts back hand edits), and
//! `GatewayReady` from the Deployment's availability.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::acceptance;
use super::context::Context;
use super::gateway_objects::{self, FIELD_MANAGER, Inputs};
use super::secrets::{self, CredentialError};
use super::status::Notice;
use crate::api::account::{GatewayStatus, PostgresStore};
use crate::api::conditions::{Observation, Status};
use crate::api::{MessageTemplate, MessagingAccount};
use crate::config::{self, MAX_COMPRESSED_BYTES, SecretEnv};
use crate::postgres_env;

/// Condition: the gateway Deployment is available.
pub const GATEWAY_READY: &str = "GatewayReady";
/// Condition: the gateway's store is on a PersistentVolumeClaim (False: an emptyDir, lost with
/// the pod).
pub const STORAGE_PERSISTENT: &str = "StoragePersistent";

/// What applying the gateway found.
pub struct Gateway {
    /// GatewayReady and StoragePersistent.
    pub observations: Vec<Observation>,
    /// The gateway part of the account's status, when the objects were applied.
    pub status: Option<GatewayStatus>,
    /// Events about the objects that could not be applied as asked.
    pub notices: Vec<Notice>,
}

impl Gateway {
    fn invalid(message: String) -> Self {
        Self::not_applied("InvalidConfiguration", message)
    }

    /// Nothing was applied: the running gateway, if any, keeps what it has.
    fn not_applied(reason: &str, message: String) -> Self {
        Self { observations: vec![Observation::new(GATEWAY_READY, Status::False, reason, message)], status: None, notices: Vec::new() }
    }
}

/// Renders and applies the account's gateway.
pub async fn apply(account: &MessagingAccount, ctx: &Context) -> Result<Gateway, kube::Error> {
    let namespace = account.namespace().unwrap_or_default();
    let name = account.name_any();
    // Only the compressed document, its hash and the Secret variables outlive the render: at
    // 10,000 rules the rendered configuration is tens of MiB, not to be held across the API
    // calls below.
    let (document, config_hash, mut secret_env) = {
        let accounts = acceptance::in_namespace(&ctx.accounts.state(), &namespace);
        let workstreams = acceptance::in_namespace(&ctx.workstreams.state(), &namespace);
        let rules = acceptance::in_namespace(&ctx.rules.state(), &namespace);
        let templates = acceptance::in_namespace(&ctx.templates.state(), &namespace);
        ctx.prune_spec_checks();
        let (accepted, accepted_rules) = acceptance::for_account(account, &accounts, &workstreams, &rules, &templates, &ctx.spec_checks);
        let own_templates: Vec<MessageTemplate> = templates.iter().filter(|t| t.spec.account_ref.name == name).map(|t| (**t).clone()).collect();

        let rendered = match config::render(account, &accepted, &accepted_rules, &own_templates) {
            Ok(rendered) => rendered,
            Err(e) => return Ok(Gateway::invalid(e.to_string())),
        };
        let document = rendered.config.to_compressed();
        if document.len() > MAX_COMPRESSED_BYTES {
            let rules: usize = rendered.config.workstreams.iter().map(|w| w.rules.classification.len() + w.rules.route_to_queue.len()).sum();
            return Ok(Gateway::invalid(format!(
                "the gateway configuration ({} workstreams, {rules} rules) is {} bytes compressed, over the {MAX_COMPRESSED_BYTES} a ConfigMap can hold; the gateway keeps its last configuration",
                rendered.config.workstreams.len(),
                document.len()
            )));
        }
        (document, rendered.config.hash(), rendered.secret_env)
    };
    if let Some(store) = gateway_objects::postgres_store(account) {
        match store_env(&ctx.client, &namespace, store).await {
            Ok(env) => secret_env.extend(env),
            Err(e) => return Ok(Gateway::not_applied(e.reason(), e.to_string())),
        }
    }
    let store_secrets: BTreeSet<&str> = account.spec.store_secrets().into_iter().map(|(_, name)| name).collect();
    let secret_versions = secret_versions(&ctx.client, &namespace, &secret_env, &store_secrets).await?;
    let inputs = Inputs {
        account,
        config: &document,
        config_hash: &config_hash,
        secret_env: &secret_env,
        secret_versions: &secret_versions,
        image: &ctx.settings.gateway_image,
        endpoints: ctx.providers.endpoints(),
    };
    let objects = match gateway_objects::render(&inputs) {
        Ok(objects) => objects,
        Err(e) => return Ok(Gateway::invalid(e.to_string())),
    };
    let client = &ctx.client;
    server_side_apply(client, &namespace, &objects.config_map).await?;
    server_side_apply(client, &namespace, &objects.service_account).await?;
    server_side_apply(client, &namespace, &objects.role).await?;
    server_side_apply(client, &namespace, &objects.role_binding).await?;
    server_side_apply(client, &namespace, &objects.service).await?;
    // A PVC that is no longer asked for is kept: deleting it would delete conversations.
    if let Some(pvc) = &objects.pvc {
        server_side_apply(client, &namespace, pvc).await?;
    }
    match &objects.ingress {
        Some(ingress) => {
            server_side_apply(client, &namespace, ingress).await?;
        }
        None => delete_owned::<Ingress>(client, &namespace, &gateway_objects::name(&name), account).await?,
    }
    let deployment = server_side_apply(client, &namespace, &objects.deployment).await?;
    let mut notices = Vec::new();
    let gateway_name = gateway_objects::name(&name);
    match &objects.pdb {
        Some(pdb) => match server_side_apply(client, &namespace, pdb).await {
            Ok(_) => {}
            // API servers before 1.21 have no policy/v1; the gateway runs without the budget.
            Err(kube::Error::Api(status)) if status.code == 404 => notices.push(Notice::warning(
                "PodDisruptionBudgetUnsupported",
                format!("PodDisruptionBudget {gateway_name} was not created: this API server does not serve policy/v1 (Kubernetes 1.21 or later does); node drains may stop every gateway replica at once"),
            )),
            Err(e) => return Err(e),
        },
        None => delete_owned::<PodDisruptionBudget>(client, &namespace, &gateway_name, account).await?,
    }

    let wanted = account.spec.gateway.replicas;
    let ready_replicas = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or_default();
    let storage = if let Some(store) = gateway_objects::postgres_store(account) {
        let message = format!("the store is the PostgreSQL database of Secret {}", store.connection_secret_ref.name);
        Observation::new(STORAGE_PERSISTENT, Status::True, "PostgreSQL", message)
    } else if gateway_objects::uses_persistent_storage(account) {
        Observation::new(STORAGE_PERSISTENT, Status::True, "PersistentVolumeClaim", "the store is on a PersistentVolumeClaim")
    } else {
        let message = "spec.gateway.storage is not set: the store is on an emptyDir, and conversations and undelivered work are lost when the pod goes";
        Observation::new(STORAGE_PERSISTENT, Status::False, "EmptyDir", message)
    };
    Ok(Gateway {
        observations: vec![availability(&deployment, wanted), storage],
        status: Some(GatewayStatus { deployment: deployment.name_any(), ready_replicas, config_usage: Some(gateway_objects::config_usage(document.len())) }),
        notices,
    })
}

/// The gateway's environment variables from the store's connection Secret, once that Secret and
/// the certificate authority's have the keys the gateway needs (a pod missing them would not
/// start, and say less about why).
async fn store_env(client: &Client, namespace: &str, store: &PostgresStore) -> Result<Vec<SecretEnv>, CredentialError> {
    let field = "spec.gateway.store.postgres.connectionSecretRef";
    let name = &store.connection_secret_ref.name;
    let keys = secrets::keys(client, namespace, name, field).await?;
    let env = postgres_env::connection_env(name, &keys.iter().map(String::as_str).collect())
        .map_err(|e| CredentialError::SecretKeyMissing { name: name.clone(), field: field.to_owned(), problem: e.to_string() })?;
    if let Some(ca) = &store.ca_secret_ref {
        let field = "spec.gateway.store.postgres.caSecretRef";
        if !secrets::keys(client, namespace, &ca.name, field).await?.contains(&ca.key) {
            return Err(CredentialError::SecretKeyMissing { name: ca.name.clone(), field: field.to_owned(), problem: format!("has no key {:?}", ca.key) });
        }
    }
    Ok(env)
}

/// `name@resourceVersion` of every Secret the gateway reads, sorted (`name@absent` for a
/// missing one): a pod template annotation, so that a rotated credential rolls the pods.
async fn secret_versions(client: &Client, namespace: &str, secret_env: &[SecretEnv], mounted: &BTreeSet<&str>) -> Result<String, kube::Error> {
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), namespace);
    let names: BTreeSet<&str> = secret_env.iter().map(|e| e.secret.name.as_str()).chain(mounted.iter().copied()).collect();
    let mut versions = Vec::new();
    for name in names {
        let version = api.get_metadata_opt(name).await?.and_then(|m| m.resource_version()).unwrap_or_else(|| "absent".to_owned());
        versions.push(format!("{name}@{version}"));
    }
    Ok(versions.join(","))
}

async fn server_side_apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await
}

/// Deletes an object of ours the spec no longer asks for; someone else's of the same name stays.
async fn delete_owned<K>(client: &Client, namespace: &str, name: &str, account: &MessagingAccount) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Some(existing) = api.get_opt(name).await? else { return Ok(()) };
    let ours = existing.owner_references().iter().any(|o| Some(&o.uid) == account.metadata.uid.as_ref());
    if ours {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}

/// GatewayReady from the Deployment: True while at least one replica of the current generation
/// is available (the message says how many of how many), so that a drained node or a rolling
/// update does not make the account unready; Unknown while a rollout brings up the first one;
/// False when the rollout is stuck, when a rolled-out gateway has no replica available, or when
/// `replicas: 0` pauses the gateway (nothing receives the account's webhooks).
pub fn availability(deployment: &Deployment, wanted: i32) -> Observation {
    let status = deployment.status.clone().unwrap_or_default();
    let rolled_out = status.observed_generation.unwrap_or_default() >= deployment.metadata.generation.unwrap_or_default();
    let stuck = status.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some("Progressing") && c.status.as_deref() == Some("False"));
    if let Some(c) = stuck {
        let reason = c.reason.clone().unwrap_or_else(|| "ProgressDeadlineExceeded".to_owned());
        return Observation::new(GATEWAY_READY, Status::False, &reason, c.message.clone().unwrap_or_default());
    }
    if wanted == 0 {
        return Observation::new(GATEWAY_READY, Status::False, "ScaledToZero", "spec.gateway.replicas is 0: the gateway is paused and no webhook is received");
    }
    let updated = status.updated_replicas.unwrap_or_default();
    let older = (status.replicas.unwrap_or_default() - updated).max(0);
    // The Deployment counts available pods of every template; the older ones may all be among
    // them, so only what exceeds their number is surely current.
    let current = if rolled_out { (status.available_replicas.unwrap_or_default() - older).max(0) } else { 0 };
    let message = format!("{current} of {wanted} gateway replicas available");
    if current > 0 {
        Observation::new(GATEWAY_READY, Status::True, "Available", message)
    } else if !rolled_out || updated < wanted || older > 0 {
        Observation::new(GATEWAY_READY, Status::Unknown, "Progressing", message)
    } else {
        Observation::new(GATEWAY_READY, Status::False, "Unavailable", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "a-gateway", "generation": 2}, "status": status})).unwrap()
    }

    #[test]
    fn available_once_the_current_generation_is_rolled_out() {
        let ready = deployment(json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}));
        let obs = availability(&ready, 1);
        assert_eq!((obs.status, obs.reason.as_str()), (Status::True, "Available"));
        let old = deployment(json!({"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1}));
        assert_eq!(availability(&old, 1).reason, "Progressing");
        let none = deployment(json!({}));
        let obs = availability(&none, 1);
        assert_eq!((obs.status, obs.message.as_str()), (Status::Unknown, "0 of 1 gateway replicas available"));
    }

    #[test]
    fn one_current_replica_of_several_is_enough() {
        let drained = deployment(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}));
        let obs = availability(&drained, 3);
        assert_eq!((obs.status, obs.message.as_str()), (Status::True, "1 of 3 gateway replicas available"));
        let none = availability(&deployment(json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 0})), 3);
        assert_eq!((none.status, none.reason.as_str()), (Status::False, "Unavailable"));
    }

    #[test]
    fn older_replicas_do_not_count_during_a_rollout() {
        // Three old pods available, one new pod started and not yet available.
        let rolling = deployment(json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}));
        let obs = availability(&rolling, 3);
        assert_eq!((obs.status, obs.reason.as_str(), obs.message.as_str()), (Status::Unknown, "Progressing", "0 of 3 gateway replicas available"));
        let first_up = deployment(json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 2, "availableReplicas": 3}));
        assert_eq!(availability(&first_up, 3).message, "1 of 3 gateway replicas available");
    }

    #[test]
    fn a_stuck_rollout_and_zero_replicas_are_false() {
        let stuck = deployment(json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}]}));
        let obs = availability(&stuck, 1);
        assert_eq!((obs.status, obs.reason.as_str()), (Status::False, "ProgressDeadlineExceeded"));
        let paused = availability(&deployment(json!({})), 0);
        assert_eq!((paused.status, paused.reason.as_str()), (Status::False, "ScaledToZero"));
    }
}
