//! What the controller accepts: the spec checks the API server may have skipped (CEL rules need
//! Kubernetes 1.25+), the checks only code can make, and the references between objects. Pure:
//! callers pass the objects their caches hold. The Workstream and RoutingRule reconcilers report
//! these verdicts; the account's gateway configuration holds exactly the accepted objects.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::api::crds::Kind;
use crate::api::references::{self, Missing};
use crate::api::field_error::FieldError;
use crate::api::validation;
use crate::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};

/// Why an object is not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The condition reason: InvalidSpec or InvalidReference.
    pub reason: &'static str,
    /// Every problem, each naming its field.
    pub errors: Vec<FieldError>,
}

impl Refusal {
    /// The problems as one condition message.
    pub fn message(&self) -> String {
        describe(&self.errors)
    }
}

/// Field errors as one condition message.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The CEL rules of `kind` evaluated on `object`, followed by the `semantic` checks.
pub fn spec_errors<K: Serialize>(kind: Kind, object: &K, semantic: Vec<FieldError>) -> Vec<FieldError> {
    let mut errors = match serde_json::to_value(object) {
        Ok(value) => validation::cel_errors(kind, &value, None),
        Err(e) => vec![FieldError::new("spec", e.to_string())],
    };
    errors.extend(semantic);
    errors
}

/// The spec checks of each object, remembered by UID and generation: they depend on the spec
/// alone (CEL rules, regular expressions compiled), and an account's render and every
/// workstream's and rule's reconcile would otherwise repeat them for every rule.
#[derive(Default)]
pub struct SpecChecks {
    seen: Mutex<HashMap<String, (Option<i64>, Arc<Vec<FieldError>>)>>,
}

impl SpecChecks {
    /// `check`'s verdict on `object`, computed once per generation (every time for an object
    /// without a UID, which only tests build).
    pub fn of<K: Resource>(&self, object: &K, check: impl FnOnce() -> Vec<FieldError>) -> Arc<Vec<FieldError>> {
        let meta = object.meta();
        let Some(uid) = &meta.uid else { return Arc::new(check()) };
        if let Some((generation, errors)) = self.lock().get(uid)
            && *generation == meta.generation
        {
            return Arc::clone(errors);
        }
        let errors = Arc::new(check());
        self.lock().insert(uid.clone(), (meta.generation, Arc::clone(&errors)));
        errors
    }

    /// Forgets the objects that `live` does not know any more.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| live(uid));
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<i64>, Arc<Vec<FieldError>>)>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The objects of one namespace in precedence order: the oldest holds a contested channel or
/// name; ties go by name. The objects are shared with the cache, not copied: reconcilers of
/// thousands of rules call this for every rule.
pub fn in_namespace<K: Resource>(objects: &[Arc<K>], namespace: &str) -> Vec<Arc<K>> {
    let mut sorted: Vec<Arc<K>> = objects.iter().filter(|o| o.meta().namespace.as_deref() == Some(namespace)).cloned().collect();
    fn key<K: Resource>(o: &K) -> (Option<k8s_openapi::jiff::Timestamp>, Option<&str>) {
        (o.meta().creation_timestamp.as_ref().map(|t| t.0), o.meta().name.as_deref())
    }
    sorted.sort_by(|a, b| key(&**a).cmp(&key(&**b)));
    sorted
}

fn verdict(spec: &[FieldError], references: Vec<FieldError>) -> Option<Refusal> {
    if !spec.is_empty() {
        Some(Refusal { reason: "InvalidSpec", errors: spec.to_vec() })
    } else if !references.is_empty() {
        Some(Refusal { reason: "InvalidReference", errors: references })
    } else {
        None
    }
}

/// Whether a Workstream is accepted: a valid spec, its account and number exist, its survey
/// template belongs to the same account, and no older workstream serves the same channel.
/// `workstreams` must be in precedence order ([`in_namespace`]).
pub fn workstream(
    ws: &Workstream,
    accounts: &[impl Borrow<MessagingAccount>],
    workstreams: &[impl Borrow<Workstream>],
    templates: &[impl Borrow<MessageTemplate>],
    checks: &SpecChecks,
) -> Option<Refusal> {
    let spec = checks.of(ws, || spec_errors(Kind::Workstream, ws, validation::workstream_errors(&ws.spec)));
    verdict(&spec, references::workstream_errors(ws, accounts, workstreams, templates, Missing::Report))
}

/// Whether a RoutingRule is accepted: a valid spec whose conditions compile, its workstream
/// exists, and it routes only to that workstream's queues.
pub fn rule(rule: &RoutingRule, workstreams: &[impl Borrow<Workstream>], checks: &SpecChecks) -> Option<Refusal> {
    let spec = checks.of(rule, || spec_errors(Kind::RoutingRule, rule, validation::routing_rule_errors(&rule.spec)));
    verdict(&spec, references::routing_rule_errors(rule, workstreams, Missing::Report))
}

/// The accepted workstreams of `account` and the accepted rules of those workstreams, from one
/// namespace's objects (workstreams in precedence order); the rules are not copied.
pub fn for_account<'a>(
    account: &MessagingAccount,
    accounts: &[impl Borrow<MessagingAccount>],
    workstreams: &[impl Borrow<Workstream>],
    rules: &'a [impl Borrow<RoutingRule>],
    templates: &[impl Borrow<MessageTemplate>],
    checks: &SpecChecks,
) -> (Vec<Workstream>, Vec<&'a RoutingRule>) {
    let namespace = account.namespace();
    let name = account.name_any();
    let accepted: Vec<Workstream> = workstreams
        .iter()
        .map(Borrow::borrow)
        .filter(|ws: &&Workstream| ws.namespace() == namespace && ws.spec.account_ref.name == name)
        .filter(|ws| workstream(ws, accounts, workstreams, templates, checks).is_none())
        .cloned()
        .collect();
    let accepted_rules = rules
        .iter()
        .map(Borrow::borrow)
        .filter(|r: &&RoutingRule| r.namespace() == namespace && accepted.iter().any(|ws| ws.name_any() == r.spec.workstream_ref.name))
        .filter(|r| rule(r, workstreams, checks).is_none())
        .collect();
    (accepted, accepted_rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const NO_TEMPLATES: [MessageTemplate; 0] = [];
    const NO_RULES: [RoutingRule; 0] = [];

    fn objects(text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text).map(|d| serde::Deserialize::deserialize(d).unwrap()).filter(|v: &Value| !v.is_null()).collect()
    }

    fn of_kind<K: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<K> {
        docs.iter().filter(|d| d["kind"] == kind).map(|d| serde_json::from_value(d.clone()).unwrap()).collect()
    }

    fn example() -> (Vec<MessagingAccount>, Vec<Workstream>, Vec<RoutingRule>) {
        let docs = objects(include_str!("../../examples/line-quickstart.yaml"));
        (of_kind(&docs, "MessagingAccount"), of_kind(&docs, "Workstream"), of_kind(&docs, "RoutingRule"))
    }

    #[test]
    fn spec_checks_run_once_per_generation() {
        let mut rule: RoutingRule = serde_json::from_value(serde_json::json!({
            "apiVersion": "switchboard.dev/v1alpha1", "kind": "RoutingRule",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"workstreamRef": {"name": "ws"}, "stage": "RouteToQueue", "order": 1, "routeTo": {"queue": "q"}}
        }))
        .unwrap();
        let checks = SpecChecks::default();
        let runs = std::cell::Cell::new(0);
        let check = || {
            runs.set(runs.get() + 1);
            vec![FieldError::new("spec", format!("run {}", runs.get()))]
        };
        assert_eq!(checks.of(&rule, check)[0].message, "run 1");
        assert_eq!(checks.of(&rule, check)[0].message, "run 1", "the same generation is not checked again");
        rule.metadata.generation = Some(2);
        assert_eq!(checks.of(&rule, check)[0].message, "run 2");
        checks.retain(|uid| uid != "u1");
        assert_eq!(checks.len(), 0);
        rule.metadata.uid = None;
        checks.of(&rule, check);
        checks.of(&rule, check);
        assert_eq!((runs.get(), checks.len()), (4, 0), "an object without a UID is checked every time and not remembered");
    }

    #[test]
    fn the_example_is_accepted_whole() {
        let (accounts, workstreams, rules) = example();
        let (ws, rs) = for_account(&accounts[0], &accounts, &workstreams, &rules, &NO_TEMPLATES, &SpecChecks::default());
        assert_eq!(ws.len(), 1);
        assert_eq!(rs.len(), rules.len());
        assert_eq!(workstream(&workstreams[0], &accounts, &workstreams, &NO_TEMPLATES, &SpecChecks::default()), None);
    }

    #[test]
    fn a_second_claimant_is_refused_naming_the_holder() {
        let (accounts, mut workstreams, _) = example();
        let mut second = workstreams[0].clone();
        second.metadata.name = Some("zz-second".into());
        workstreams.push(second.clone());
        let refusal = workstream(&second, &accounts, &workstreams, &NO_TEMPLATES, &SpecChecks::default()).unwrap();
        assert_eq!(refusal.reason, "InvalidReference");
        assert!(refusal.message().contains("already served by Workstream support-line"), "{}", refusal.message());
        let (ws, _) = for_account(&accounts[0], &accounts, &workstreams, &NO_RULES, &NO_TEMPLATES, &SpecChecks::default());
        assert_eq!(ws.iter().map(|w| w.name_any()).collect::<Vec<_>>(), ["support-line"]);
    }

    #[test]
    fn a_bad_rule_is_left_out_and_the_others_stay() {
        let (accounts, workstreams, mut rules) = example();
        rules[0].spec.match_.all[0].operator = crate::api::routing_rule::Operator::Matches;
        rules[0].spec.match_.all[0].values = vec!["(unclosed".into()];
        let refusal = rule(&rules[0], &workstreams, &SpecChecks::default()).unwrap();
        assert_eq!(refusal.reason, "InvalidSpec");
        assert!(refusal.message().starts_with("spec.match.all[0].values"), "{}", refusal.message());
        let (_, accepted) = for_account(&accounts[0], &accounts, &workstreams, &rules, &NO_TEMPLATES, &SpecChecks::default());
        assert_eq!(accepted.len(), rules.len() - 1);
    }

    #[test]
    fn a_rule_routing_to_an_unknown_queue_is_a_reference_problem() {
        let (_, workstreams, mut rules) = example();
        let route = rules.iter_mut().find(|r| r.spec.route_to.is_some()).unwrap();
        route.spec.route_to.as_mut().unwrap().queue = Some("nowhere".into());
        let refusal = rule(route, &workstreams, &SpecChecks::default()).unwrap();
        assert_eq!(refusal.reason, "InvalidReference");
        assert!(refusal.message().starts_with("spec.routeTo.queue"));
    }

    #[test]
    fn a_namespace_s_objects_come_oldest_first() {
        let (_, workstreams, _) = example();
        let mut young = workstreams[0].clone();
        young.metadata.namespace = Some("support".into());
        young.metadata.name = Some("aaa".into());
        young.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::from_second(200).unwrap()));
        let mut elsewhere = workstreams[0].clone();
        elsewhere.metadata.namespace = Some("other".into());
        let mut old = workstreams[0].clone();
        old.metadata.namespace = Some("support".into());
        old.metadata.name = Some("zzz".into());
        old.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap()));
        let sorted = in_namespace(&[Arc::new(young), Arc::new(elsewhere), Arc::new(old)], "support");
        assert_eq!(sorted.iter().map(|w| w.name_any()).collect::<Vec<_>>(), ["zzz", "aaa"]);
    }
}
