//! `switchboard check`: offline validation of manifests before they reach a cluster — the
//! schema, the CEL rules, the semantic checks of the controller, and references within the set.

pub mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::api::channels;
use crate::config;
use crate::api::crds::Kind;
use crate::api::references::{self, Missing, ObjectKey};
use crate::api::field_error::FieldError;
use crate::api::validation::{self, UrlPolicy};
use crate::postgres_env;
use crate::api::{GROUP, MessageTemplate, MessagingAccount, RoutingRule, SecretKeyReference, VERSION, Workstream};
use load::Document;

/// How strict a check is.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Which webhook URLs are acceptable.
    pub policy: UrlPolicy,
    /// Whether references to objects outside the set are problems.
    pub external_refs_allowed: bool,
}

/// One problem found, attributed to a document.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: String,
    /// The document's position in the file, from 1.
    pub document: usize,
    /// The object's kind, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's namespace, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The path of the field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.document)?;
        if let Some(kind) = &self.kind {
            write!(f, " {kind} {}/{}", self.namespace.as_deref().unwrap_or("?"), self.name.as_deref().unwrap_or("?"))?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

/// The outcome of a check.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Documents read.
    pub documents: usize,
    /// Switchboard objects among them.
    pub objects: usize,
    /// Everything wrong, in file and document order.
    pub problems: Vec<Problem>,
    /// Each account's gateway configuration as the set would render it.
    pub configurations: Vec<ConfigurationSize>,
}

/// How large an account's gateway configuration is, from the set's workstreams, rules and
/// templates of the account (all of them: an upper bound of what the controller accepts).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSize {
    /// The account's namespace.
    pub namespace: String,
    /// The account's name.
    pub name: String,
    /// Bytes of the JSON document.
    pub json_bytes: usize,
    /// Bytes of the compressed document the ConfigMap holds.
    pub compressed_bytes: usize,
    /// What the ConfigMap has room for.
    pub limit_bytes: usize,
}

impl fmt::Display for ConfigurationSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessagingAccount {}/{}: gateway configuration {} bytes of JSON, {} compressed; {} of {} left",
            self.namespace,
            self.name,
            self.json_bytes,
            self.compressed_bytes,
            self.limit_bytes.saturating_sub(self.compressed_bytes),
            self.limit_bytes
        )
    }
}

/// Where an object came from, for attributing problems.
#[derive(Clone)]
struct Origin {
    order: usize,
    file: String,
    index: usize,
    kind: String,
    namespace: String,
    name: String,
}

impl Origin {
    fn problem(&self, e: FieldError) -> (usize, Problem) {
        (self.order, Problem {
            file: self.file.clone(),
            document: self.index,
            kind: Some(self.kind.clone()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            field: e.field,
            message: e.message,
        })
    }
}

#[derive(Default)]
struct Set {
    accounts: Vec<(Origin, MessagingAccount)>,
    workstreams: Vec<(Origin, Workstream)>,
    rules: Vec<(Origin, RoutingRule)>,
    templates: Vec<(Origin, MessageTemplate)>,
    /// (namespace, name) of each Secret in the set, with its keys.
    secrets: BTreeMap<(String, String), BTreeSet<String>>,
}

/// The longest MessagingAccount name: `<name>-gateway` names a Service, a DNS label of at most
/// 63 characters.
const MAX_ACCOUNT_NAME: usize = 55;

/// Checks documents as one set.
pub fn check(documents: Vec<Document>, options: Options) -> Report {
    let mut problems = Vec::new();
    let mut set = Set::default();
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    // Objects present but invalid: references to them are not "not found".
    let mut invalid: BTreeSet<ObjectKey> = BTreeSet::new();
    let total = documents.len();
    let mut objects = 0;
    for (order, doc) in documents.into_iter().enumerate() {
        let bare = |field: &str, message: String| {
            (order, Problem {
                file: doc.file.clone(),
                document: doc.index,
                kind: None,
                namespace: None,
                name: None,
                field: field.to_owned(),
                message,
            })
        };
        let value = match doc.content {
            Ok(v) => v,
            Err(message) => {
                problems.push(bare("(document)", message));
                continue;
            }
        };
        let (Some(api_version), Some(kind)) = (value.get("apiVersion").and_then(Value::as_str), value.get("kind").and_then(Value::as_str)) else {
            problems.push(bare("(document)", "not a Kubernetes object: apiVersion and kind are required".to_owned()));
            continue;
        };
        let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
        let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let origin = Origin { order, file: doc.file.clone(), index: doc.index, kind: kind.to_owned(), namespace: namespace.clone(), name: name.clone() };
        if api_version == "v1" && kind == "Secret" {
            if let Some(problem) = duplicate(&mut seen, &origin) {
                problems.push(origin.problem(problem));
            } else {
                set.secrets.insert((namespace, name), secret_keys(&value));
            }
            continue;
        }
        let Some((group, version)) = api_version.split_once('/').filter(|(g, _)| *g == GROUP) else {
            continue;
        };
        let Some(k) = Kind::from_name(kind) else {
            problems.push(origin.problem(FieldError::new("kind", format!("{kind} is not a kind of {GROUP}; known kinds: {}", Kind::ALL.map(|k| k.name()).join(", ")))));
            continue;
        };
        if version != VERSION {
            problems.push(origin.problem(FieldError::new("apiVersion", format!("{group}/{version} is not served; use {GROUP}/{VERSION}"))));
            continue;
        }
        objects += 1;
        let mut errors = metadata_errors(k, &name);
        errors.extend(validation::object_errors(k, &value, options.policy));
        errors.extend(duplicate(&mut seen, &origin));
        if errors.is_empty()
            && let Err(e) = add_typed(&mut set, k, origin.clone(), value)
        {
            errors.push(FieldError::new("metadata", format!("is not valid object metadata: {e}")));
        }
        if !errors.is_empty() {
            invalid.insert((origin.kind.clone(), origin.namespace.clone(), origin.name.clone()));
            problems.extend(errors.into_iter().map(|e| origin.problem(e)));
        }
    }
    let on_missing = if options.external_refs_allowed { Missing::Ignore } else { Missing::ReportExcept(&invalid) };
    problems.extend(cross_checks(&set, on_missing));
    let configurations = configuration_sizes(&set);
    for (size, (origin, _)) in configurations.iter().zip(&set.accounts) {
        if let Some(size) = size
            && size.compressed_bytes > size.limit_bytes
        {
            let message = format!("the gateway configuration is {} bytes compressed, over the {} a ConfigMap holds: fewer or shorter rules and messages, or more accounts", size.compressed_bytes, size.limit_bytes);
            problems.push(origin.problem(FieldError::new("(gateway configuration)", message)));
        }
    }
    // Cross-object problems join their document's own, in document order (the sort is stable).
    problems.sort_by_key(|(order, _)| *order);
    Report { documents: total, objects, problems: problems.into_iter().map(|(_, p)| p).collect(), configurations: configurations.into_iter().flatten().collect() }
}

/// A second object of the same kind, namespace and name replaces the first when applied.
fn duplicate(seen: &mut BTreeMap<ObjectKey, String>, origin: &Origin) -> Option<FieldError> {
    if origin.name.is_empty() {
        return None;
    }
    let key = (origin.kind.clone(), origin.namespace.clone(), origin.name.clone());
    match seen.get(&key) {
        Some(first) => Some(FieldError::new("metadata.name", format!("{} {}/{} is already defined at {first}", origin.kind, origin.namespace, origin.name))),
        None => {
            seen.insert(key, format!("{}#{}", origin.file, origin.index));
            None
        }
    }
}

fn metadata_errors(kind: Kind, name: &str) -> Vec<FieldError> {
    let label = |max: usize| {
        !name.is_empty()
            && name.len() <= max
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    };
    match kind {
        _ if name.is_empty() => vec![FieldError::new("metadata.name", "required field is missing")],
        Kind::MessagingAccount if !label(MAX_ACCOUNT_NAME) => vec![FieldError::new(
            "metadata.name",
            format!("must be a DNS label of at most {MAX_ACCOUNT_NAME} characters: it names the gateway objects <name>-gateway"),
        )],
        _ if !label(253) && !name.contains('.') => vec![FieldError::new("metadata.name", "must be a DNS subdomain name")],
        _ => Vec::new(),
    }
}

fn secret_keys(secret: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .filter_map(|f| secret.get(*f).and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// Adds a valid object to the set. Its spec has been checked already; only metadata (e.g. a
/// label that is not a string) can still fail to parse.
fn add_typed(set: &mut Set, kind: Kind, origin: Origin, mut value: Value) -> Result<(), serde_json::Error> {
    // References resolve within a namespace, so every object gets the one it was checked in.
    value["metadata"]["namespace"] = Value::String(origin.namespace.clone());
    match kind {
        Kind::MessagingAccount => serde_json::from_value(value).map(|o| set.accounts.push((origin, o))),
        Kind::Workstream => serde_json::from_value(value).map(|o| set.workstreams.push((origin, o))),
        Kind::RoutingRule => serde_json::from_value(value).map(|o| set.rules.push((origin, o))),
        Kind::MessageTemplate => serde_json::from_value(value).map(|o| set.templates.push((origin, o))),
    }
}

fn objects<T: Clone>(list: &[(Origin, T)]) -> Vec<T> {
    list.iter().map(|(_, o)| o.clone()).collect()
}

/// The configuration size of each account of the set, in the set's order (None where it does not
/// render: its problems are reported already).
fn configuration_sizes(set: &Set) -> Vec<Option<ConfigurationSize>> {
    set.accounts
        .iter()
        .map(|(origin, account)| {
            let ours = |ns: &str, account_ref: &str| ns == origin.namespace && account_ref == origin.name;
            let workstreams: Vec<Workstream> =
                set.workstreams.iter().filter(|(o, w)| ours(&o.namespace, &w.spec.account_ref.name)).map(|(_, w)| w.clone()).collect();
            let rules: Vec<RoutingRule> = set
                .rules
                .iter()
                .filter(|(o, r)| o.namespace == origin.namespace && workstreams.iter().any(|w| w.metadata.name.as_deref() == Some(r.spec.workstream_ref.name.as_str())))
                .map(|(_, r)| r.clone())
                .collect();
            let templates: Vec<MessageTemplate> =
                set.templates.iter().filter(|(o, t)| ours(&o.namespace, &t.spec.account_ref.name)).map(|(_, t)| t.clone()).collect();
            let config = config::render(account, &workstreams, &rules, &templates).ok()?.config;
            Some(ConfigurationSize {
                namespace: origin.namespace.clone(),
                name: origin.name.clone(),
                json_bytes: config.to_json().len(),
                compressed_bytes: config.to_compressed().len(),
                limit_bytes: config::MAX_COMPRESSED_BYTES,
            })
        })
        .collect()
}

fn cross_checks(set: &Set, on_missing: Missing) -> Vec<(usize, Problem)> {
    let accounts: Vec<MessagingAccount> = objects(&set.accounts);
    let workstreams: Vec<Workstream> = objects(&set.workstreams);
    let templates: Vec<MessageTemplate> = objects(&set.templates);
    let mut problems = Vec::new();
    for (i, (origin, account)) in set.accounts.iter().enumerate() {
        if let Some(store) = &account.spec.gateway.store {
            let name = &store.postgres.connection_secret_ref.name;
            if let Some(keys) = set.secrets.get(&(origin.namespace.clone(), name.clone()))
                && let Err(e) = postgres_env::connection_env(name, &keys.iter().map(String::as_str).collect())
            {
                let field = "spec.gateway.store.postgres.connectionSecretRef";
                problems.push(origin.problem(FieldError::new(field, format!("Secret {}/{name} {e}", origin.namespace))));
            }
        }
        let mut refs = account.spec.secret_refs();
        refs.extend(account.spec.gateway.store.as_ref().and_then(|s| s.postgres.ca_secret_ref.as_ref()).map(|ca| ("spec.gateway.store.postgres.caSecretRef", ca)));
        problems.extend(secret_ref_errors(set, origin, refs).into_iter().map(|e| origin.problem(e)));
        problems.extend(channel_conflict(&set.accounts[..i], account).map(|e| origin.problem(e)));
    }
    for (origin, ws) in &set.workstreams {
        let mut errors = references::workstream_errors(ws, &accounts, &workstreams, &templates, on_missing);
        errors.extend(secret_ref_errors(set, origin, ws.spec.secret_refs()));
        problems.extend(errors.into_iter().map(|e| origin.problem(e)));
    }
    for (origin, rule) in &set.rules {
        problems.extend(references::routing_rule_errors(rule, &workstreams, on_missing).into_iter().map(|e| origin.problem(e)));
    }
    for (origin, tpl) in &set.templates {
        problems.extend(references::template_errors(tpl, &accounts, &templates, on_missing).into_iter().map(|e| origin.problem(e)));
    }
    problems
}

/// A provider channel that an account earlier in the set claims too: on a cluster only the oldest
/// of them would hold it, and the controller would stop the others with ChannelInUse.
fn channel_conflict(earlier: &[(Origin, MessagingAccount)], account: &MessagingAccount) -> Option<FieldError> {
    let conflict = channels::first_conflict(&account.spec, earlier.iter().map(|(o, a)| (o, &a.spec)))?;
    let holder = conflict.holder;
    Some(FieldError::new(
        conflict.claim.field,
        format!(
            "{} is already claimed by MessagingAccount {}/{} ({}#{}): a provider channel belongs to one account",
            conflict.claim.channel, holder.namespace, holder.name, holder.file, holder.index
        ),
    ))
}

/// A Secret that is part of the set must hold the keys objects reference. Secrets outside the
/// set (sealed, external, created by hand) are the controller's to check.
fn secret_ref_errors(set: &Set, origin: &Origin, refs: Vec<(&'static str, &SecretKeyReference)>) -> Vec<FieldError> {
    refs.into_iter()
        .filter_map(|(field, r)| {
            let keys = set.secrets.get(&(origin.namespace.clone(), r.name.clone()))?;
            (!keys.contains(&r.key)).then(|| {
                FieldError::new(format!("{field}.key"), format!("Secret {}/{} has no key {:?} (it has: {})", origin.namespace, r.name, r.key, keys.iter().cloned().collect::<Vec<_>>().join(", ")))
            })
        })
        .collect()
}
