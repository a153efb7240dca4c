//! The gateway configurations the controller wrote, read back from their ConfigMaps (a watch
//! cache), once per ConfigMap version, as an index of what they hold: the generation of each
//! workstream and rule, which is all the Workstream and RoutingRule reconcilers consult to say
//! whether the gateway has their current generation. Only that index is kept: a configuration of
//! 10,000 rules parsed whole would hold tens of megabytes per account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;

use super::gateway_objects;
use crate::config::{self, CONFIG_VERSION};

/// Indexes by (namespace, account), each with the ConfigMap version it came from.
type Parsed = Mutex<HashMap<(String, String), (String, Arc<Held>)>>;

/// What a configuration holds, by name: each workstream's generation and its rules'.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// The account the configuration is for.
    pub account: String,
    workstreams: HashMap<String, (i64, HashMap<String, i64>)>,
}

impl Held {
    /// The generation of Workstream `name` the configuration holds.
    pub fn workstream_generation(&self, name: &str) -> Option<i64> {
        self.workstreams.get(name).map(|(generation, _)| *generation)
    }

    /// The generation of RoutingRule `rule` of Workstream `workstream` the configuration holds.
    pub fn rule_generation(&self, workstream: &str, rule: &str) -> Option<i64> {
        self.workstreams.get(workstream)?.1.get(rule).copied()
    }

    /// Whether the configuration holds Workstream `name`.
    pub fn has_workstream(&self, name: &str) -> bool {
        self.workstreams.contains_key(name)
    }

    /// Reads the index from a stored document (see [`config::document_json`]); fields the index
    /// does not need are skipped, not built.
    fn from_document(document: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Document {
            version: u32,
            account: Named,
            #[serde(default)]
            workstreams: Vec<Workstream>,
        }
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Workstream {
            name: String,
            generation: i64,
            #[serde(default)]
            rules: Rules,
        }
        #[derive(Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Rules {
            #[serde(default)]
            classification: Vec<Rule>,
            #[serde(default)]
            route_to_queue: Vec<Rule>,
        }
        #[derive(Deserialize)]
        struct Rule {
            name: String,
            generation: i64,
        }
        let document: Document = serde_json::from_str(&config::document_json(document).ok()?).ok()?;
        if document.version != CONFIG_VERSION {
            return None;
        }
        let workstreams = document
            .workstreams
            .into_iter()
            .map(|ws| {
                let rules = ws.rules.classification.into_iter().chain(ws.rules.route_to_queue).map(|r| (r.name, r.generation)).collect();
                (ws.name, (ws.generation, rules))
            })
            .collect();
        Some(Self { account: document.account.name, workstreams })
    }
}

/// The indexes of the gateway configurations, by account.
pub struct Configs {
    store: Store<ConfigMap>,
    parsed: Parsed,
}

impl Configs {
    /// Reads from a store of the controller's gateway ConfigMaps.
    pub fn new(store: Store<ConfigMap>) -> Self {
        Self { store, parsed: Mutex::default() }
    }

    /// What the configuration of `account` in `namespace` holds, when its ConfigMap exists and
    /// parses.
    pub fn of(&self, namespace: &str, account: &str) -> Option<Arc<Held>> {
        let name = gateway_objects::name(account);
        let config_map = self.store.get(&ObjectRef::new(&name).within(namespace))?;
        parse(&self.parsed, &config_map, namespace, account)
    }

    /// What a ConfigMap from the watch holds.
    pub fn parse(&self, config_map: &ConfigMap) -> Option<Arc<Held>> {
        let namespace = config_map.namespace()?;
        let account = config_map.labels().get(gateway_objects::INSTANCE_LABEL)?.clone();
        parse(&self.parsed, config_map, &namespace, &account)
    }
}

fn parse(parsed: &Parsed, config_map: &ConfigMap, namespace: &str, account: &str) -> Option<Arc<Held>> {
    let version = config_map.resource_version().unwrap_or_default();
    let key = (namespace.to_owned(), account.to_owned());
    let mut parsed = parsed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((seen, held)) = parsed.get(&key)
        && *seen == version
    {
        return Some(Arc::clone(held));
    }
    let held = Arc::new(Held::from_document(config::config_map_document(config_map)?)?);
    parsed.insert(key, (version, Arc::clone(&held)));
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_holds_the_generations_of_a_compressed_or_plain_document() {
        let json = r#"{"version":1,"account":{"name":"contoso-line","namespace":"support","extra":[1,2]},
            "workstreams":[{"name":"support-line","generation":3,"queues":[{"name":"q"}],
              "rules":{"classification":[{"name":"a","generation":2,"match":{}}],"routeToQueue":[{"name":"b","generation":5}]}}]}"#;
        let plain = Held::from_document(json.as_bytes()).unwrap();
        assert_eq!(plain.account, "contoso-line");
        assert_eq!((plain.workstream_generation("support-line"), plain.rule_generation("support-line", "a"), plain.rule_generation("support-line", "b")), (Some(3), Some(2), Some(5)));
        assert_eq!((plain.rule_generation("support-line", "c"), plain.workstream_generation("other"), plain.has_workstream("support-line")), (None, None, true));
        assert!(Held::from_document(json.replace("\"version\":1", "\"version\":2").as_bytes()).is_none(), "another version is not read");
        assert!(Held::from_document(b"{").is_none());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, json.as_bytes()).unwrap();
        assert_eq!(Held::from_document(&gz.finish().unwrap()).unwrap(), plain);
    }
}
