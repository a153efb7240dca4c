//! The gateway configurations the controller wrote, read back from their ConfigMaps (a watch
//! cache), parsed once per ConfigMap version: what the Workstream and RoutingRule reconcilers
//! consult to say whether the gateway configuration holds their current generation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};
use kube::runtime::reflector::{ObjectRef, Store};

use super::gateway_objects;
use crate::config::{self, GatewayConfig};

/// Parsed configurations by (namespace, account), each with the ConfigMap version it came from.
type Parsed = Mutex<HashMap<(String, String), (String, Arc<GatewayConfig>)>>;

/// Parsed gateway configurations by account.
pub struct Configs {
    store: Store<ConfigMap>,
    parsed: Parsed,
}

impl Configs {
    /// Reads from a store of the controller's gateway ConfigMaps.
    pub fn new(store: Store<ConfigMap>) -> Self {
        Self { store, parsed: Mutex::default() }
    }

    /// The configuration of `account` in `namespace`, when its ConfigMap exists and parses.
    pub fn of(&self, namespace: &str, account: &str) -> Option<Arc<GatewayConfig>> {
        let name = gateway_objects::name(account);
        let config_map = self.store.get(&ObjectRef::new(&name).within(namespace))?;
        parse(&self.parsed, &config_map, namespace, account)
    }

    /// The configuration of `account` as the API server has it now: for when the watch cache may
    /// lag behind the ConfigMap change that triggered a reconcile.
    pub async fn fresh(&self, client: &Client, namespace: &str, account: &str) -> Result<Option<Arc<GatewayConfig>>, kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let config_map = api.get_opt(&gateway_objects::name(account)).await?;
        Ok(config_map.and_then(|cm| parse(&self.parsed, &cm, namespace, account)))
    }

    /// The configuration a ConfigMap from the watch holds.
    pub fn parse(&self, config_map: &ConfigMap) -> Option<Arc<GatewayConfig>> {
        let namespace = config_map.namespace()?;
        let account = config_map.labels().get(gateway_objects::INSTANCE_LABEL)?.clone();
        parse(&self.parsed, config_map, &namespace, &account)
    }
}

fn parse(
    parsed: &Parsed,
    config_map: &ConfigMap,
    namespace: &str,
    account: &str,
) -> Option<Arc<GatewayConfig>> {
    let version = config_map.resource_version().unwrap_or_default();
    let key = (namespace.to_owned(), account.to_owned());
    let mut parsed = parsed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((seen, config)) = parsed.get(&key)
        && *seen == version
    {
        return Some(Arc::clone(config));
    }
    let config = Arc::new(GatewayConfig::from_document(config::config_map_document(config_map)?).ok()?);
    parsed.insert(key, (version, Arc::clone(&config)));
    Some(config)
}
