//! The API server fills in the schema's `default`s before anyone reads an object; the controller
//! and `check` fill in serde's. Where the two disagree, what the cluster stores is not what the
//! code assumed (an account without `spec.gateway` once got `replicas: 0` from the schema while
//! the code's default was 1). These tests apply the CRDs' defaults the way the server does and
//! compare the result with what serde makes of the same object without them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchboard::api::crds::Kind;
use switchboard::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};

/// Structural defaulting as in apiextensions-apiserver: an absent property with a `default` gets
/// it, then defaulting goes on inside every property, list item and map value.
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    if let (false, Some(default)) = (map.contains_key(name), prop.get("default")) {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(prop, child);
                    }
                }
            }
            if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                map.values_mut().for_each(|v| apply_defaults(values, v));
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                items.iter_mut().for_each(|v| apply_defaults(item, v));
            }
        }
        _ => {}
    }
}

/// The object with every optional object field that has no required fields of its own set to
/// `{}` in turn (one variant each, nested ones too), so that the defaults inside them are
/// compared as well.
fn variants(schema: &Value, value: &Value) -> Vec<Value> {
    let mut out = vec![value.clone()];
    let (Some(props), Some(map)) = (schema.get("properties").and_then(Value::as_object), value.as_object()) else {
        return out;
    };
    for (name, prop) in props {
        let fillable = prop.get("type").and_then(Value::as_str) == Some("object")
            && prop.get("properties").is_some()
            && prop.get("required").and_then(Value::as_array).is_none_or(Vec::is_empty);
        let child = match map.get(name) {
            Some(child) => child.clone(),
            None if fillable => json!({}),
            None => continue,
        };
        for inner in variants(prop, &child) {
            let mut v = value.clone();
            v[name] = inner;
            out.push(v);
        }
    }
    out
}

fn check<T: DeserializeOwned + Serialize>(kind: Kind, object: Value) {
    let schema = kind.schema();
    for variant in variants(&schema, &object) {
        let by_serde: T = serde_json::from_value(variant.clone()).unwrap_or_else(|e| panic!("{}: {e} in {variant}", kind.name()));
        let mut defaulted = variant.clone();
        apply_defaults(&schema, &mut defaulted);
        let by_server: T = serde_json::from_value(defaulted.clone()).unwrap_or_else(|e| panic!("{}: {e} in {defaulted}", kind.name()));
        assert_eq!(
            serde_json::to_value(&by_server).unwrap(),
            serde_json::to_value(&by_serde).unwrap(),
            "{}: the schema's defaults and serde's disagree for {variant}",
            kind.name()
        );
    }
}

fn object(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": kind, "metadata": {"name": "a", "namespace": "n"}, "spec": spec})
}

fn secret() -> Value {
    json!({"secretKeyRef": {"name": "s", "key": "k"}})
}

#[test]
fn messaging_account_defaults_agree() {
    let line = json!({"line": {"channelId": "1", "channelSecret": secret(), "channelAccessToken": secret()},
        "webhook": {"publicBaseUrl": "https://x.example"}, "dataTransfer": {"acknowledged": true}});
    check::<MessagingAccount>(Kind::MessagingAccount, object("MessagingAccount", line));
    let twilio = json!({"twilioWhatsApp": {"accountSid": "AC0123456789abcdef0123456789abcdef", "authToken": secret(),
            "numbers": [{"name": "support", "number": "+14155550100"}]},
        "webhook": {"publicBaseUrl": "https://x.example"}, "dataTransfer": {"acknowledged": true}});
    check::<MessagingAccount>(Kind::MessagingAccount, object("MessagingAccount", twilio));
}

#[test]
fn an_account_without_a_gateway_section_runs_one_replica() {
    let spec = json!({"line": {"channelId": "1", "channelSecret": secret(), "channelAccessToken": secret()},
        "webhook": {"publicBaseUrl": "https://x.example"}, "dataTransfer": {"acknowledged": true}});
    let schema = Kind::MessagingAccount.schema();
    for gateway in [None, Some(json!({}))] {
        let mut object = object("MessagingAccount", spec.clone());
        if let Some(g) = gateway {
            object["spec"]["gateway"] = g;
        }
        apply_defaults(&schema, &mut object);
        assert_eq!(object["spec"]["gateway"]["replicas"], 1, "{object}");
        let account: MessagingAccount = serde_json::from_value(object).unwrap();
        assert_eq!(account.spec.gateway.replicas, 1);
    }
}

#[test]
fn workstream_defaults_agree() {
    let spec = json!({"accountRef": {"name": "a"}, "language": "en", "distribution": {"mode": "Push", "fallbackQueue": "general"},
        "queues": [{"name": "general", "operatingHours": {"timeZone": "UTC", "weekly": [{"days": ["Mon"], "from": "09:00", "to": "17:00"}]},
            "overflow": {"maxWaiting": 5, "action": "Decline"}}],
        "automatedMessages": [{"trigger": "Greeting", "locale": "en", "text": "hi"}],
        "postConversationSurvey": {"url": "https://s.example", "text": "t"},
        "bot": {"url": "http://bot.example", "tokenSecretRef": {"name": "s", "key": "k"}},
        "delivery": {"url": "http://desk.example", "signingSecretRef": {"name": "s", "key": "k"}, "agentApiTokenSecretRef": {"name": "s", "key": "t"}}});
    check::<Workstream>(Kind::Workstream, object("Workstream", spec));
}

#[test]
fn routing_rule_defaults_agree() {
    let classification = json!({"workstreamRef": {"name": "w"}, "stage": "Classification", "set": {"priority": "High"},
        "match": {"all": [{"field": "message.text", "operator": "Contains", "values": ["x"]}], "any": [{"field": "channel", "operator": "Exists"}]}});
    check::<RoutingRule>(Kind::RoutingRule, object("RoutingRule", classification));
    let split = json!({"workstreamRef": {"name": "w"}, "stage": "RouteToQueue", "routeTo": {"split": [{"queue": "a", "percent": 100}]}});
    check::<RoutingRule>(Kind::RoutingRule, object("RoutingRule", split));
}

#[test]
fn message_template_defaults_agree() {
    let spec = json!({"accountRef": {"name": "a"}, "templateName": "t", "category": "Utility", "defaultLanguage": "en",
        "localizations": [{"language": "en", "body": "Hi {{1}}"}], "sampleValues": {"1": "Ann"}});
    check::<MessageTemplate>(Kind::MessageTemplate, object("MessageTemplate", spec));
}

#[test]
fn defaulting_goes_on_inside_a_defaulted_object() {
    let schema = json!({"type": "object", "properties": {"gateway": {"type": "object", "default": {},
        "properties": {"replicas": {"type": "integer", "default": 1}}}}});
    let mut object = json!({});
    apply_defaults(&schema, &mut object);
    assert_eq!(object, json!({"gateway": {"replicas": 1}}));
}
