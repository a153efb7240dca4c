//! Validation of one object: what the API server checks with the schema, what the CEL rules
//! say, and the semantic checks only code can make. `check` runs all three; the controller runs
//! the last two (the API server has already applied the schema, but clusters older than 1.25
//! ignore CEL rules).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use regex::Regex;
use serde_json::Value;

use super::field_error::FieldError;
use super::account::MessagingAccountSpec;
use super::crds::Kind;
use super::duration;
use super::routing_rule::RoutingRuleSpec;
use super::template::MessageTemplateSpec;
use super::workstream::WorkstreamSpec;
use crate::routing::compile::compile_match;

/// Which public URLs are acceptable for webhooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Accept plain http when the host is a loopback address (local development).
    pub allow_http_loopback: bool,
}

struct KindSchema {
    json: jsonschema::Validator,
    cel: CompiledSchema,
    raw: Value,
}

fn kind_schema(kind: Kind) -> &'static KindSchema {
    static SCHEMAS: OnceLock<BTreeMap<Kind, KindSchema>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let raw = k.schema();
                let json = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(&raw)
                    .expect("the generated CRD schema is a valid JSON schema");
                (k, KindSchema { cel: compile_schema(&raw), json, raw })
            })
            .collect()
    });
    &all[&kind]
}

/// Checks a whole object (apiVersion, kind, metadata, spec) of `kind` against its CRD schema as
/// the API server would: types, required fields, patterns, enums, bounds and list-map keys,
/// plus fields the schema does not know (the server would silently drop them).
pub fn schema_errors(kind: Kind, object: &Value) -> Vec<FieldError> {
    let schema = kind_schema(kind);
    // The API server prunes nulls of non-nullable fields before validating.
    let object = without_nulls(object);
    let mut errors: Vec<FieldError> = schema.json.iter_errors(&object).map(|e| json_schema_error(&e)).collect();
    structural_errors(&schema.raw, &object, String::new(), &mut errors);
    errors.sort();
    errors.dedup();
    errors
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Plain words for the patterns of the schema, which people should not have to read.
const PATTERN_MEANINGS: [(&str, &str); 12] = [
    (r"^\+[1-9][0-9]{6,14}$", "must be an E.164 number such as +14155550100"),
    (r"^AC[0-9a-f]{32}$", "must be a Twilio Account SID: AC followed by 32 lowercase hex digits"),
    (r"^MG[0-9a-f]{32}$", "must be a Messaging Service SID: MG followed by 32 lowercase hex digits"),
    (r"^XE[0-9a-f]{32}$", "must be a WhatsApp Sender SID: XE followed by 32 lowercase hex digits"),
    (r"^[0-9]{1,20}$", "must be the numeric channel ID"),
    (r"^[a-z0-9_]+$", "must use only lowercase letters, digits and underscores"),
    (r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "must be a DNS label: lowercase letters, digits and '-'"),
    (r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", "must be a BCP 47 language tag such as en-US"),
    (r"^([0-9]+(ms|s|m|h))+$", "must be a duration such as 90s, 15m or 24h"),
    (r"^(Always|None|([0-9]+(ms|s|m|h))+)$", "must be Always, None or a duration such as 60s"),
    (r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "must be a time of day as HH:MM"),
    (
        r"^(channel|customer\.(id|displayName|language|phoneNumber|isKnown)|message\.(text|type)|attributes\.[A-Za-z0-9_-]{1,63}|time\.withinOperatingHours)$",
        "is not a field rules can test; use channel, customer.id, customer.displayName, customer.language, customer.phoneNumber, customer.isKnown, message.text, message.type, attributes.<name> or time.withinOperatingHours",
    ),
];

fn json_schema_error(e: &jsonschema::ValidationError<'_>) -> FieldError {
    let path = pointer_to_path(&e.instance_path().to_string());
    match e.kind() {
        ValidationErrorKind::Pattern { pattern } if PATTERN_MEANINGS.iter().any(|(p, _)| p == pattern) => {
            let meaning = PATTERN_MEANINGS.iter().find(|(p, _)| p == pattern).map(|(_, m)| *m).unwrap_or_default();
            FieldError::new(path, format!("{} {meaning}", e.instance()))
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
            FieldError::new(join(&path, &name), "required field is missing")
        }
        _ => FieldError::new(if path.is_empty() { "(root)".to_owned() } else { path }, e.to_string()),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// `/spec/queues/0/name` becomes `spec.queues[0].name`.
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// Walks object and schema together for what JSON Schema cannot say: unknown fields and
/// duplicate keys in list-maps.
fn structural_errors(schema: &Value, value: &Value, path: String, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                if let Some(inner) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                    for (k, v) in map {
                        structural_errors(inner, v, format!("{path}[{k:?}]"), errors);
                    }
                }
                return;
            };
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool).unwrap_or(false);
            for (k, v) in map {
                let child = join(&path, k);
                match properties.get(k) {
                    // The type meta and metadata are the API server's own.
                    _ if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    Some(s) => structural_errors(s, v, child, errors),
                    None if !preserve => errors.push(FieldError::new(child, "unknown field")),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys.iter().map(|k| item.get(*k).map(Value::to_string).unwrap_or_default()).collect();
                    if !seen.insert(key.clone()) {
                        errors.push(FieldError::new(format!("{path}[{i}]"), format!("duplicate entry for {}", describe_key(&keys, &key))));
                    }
                }
            }
            for (i, item) in items.iter().enumerate() {
                structural_errors(item_schema, item, format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn describe_key(keys: &[&str], values: &[String]) -> String {
    keys.iter().zip(values).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Evaluates the kind's CEL rules (`x-kubernetes-validations`) on an object. `old` is the
/// previous state for transition rules such as immutability.
pub fn cel_errors(kind: Kind, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let schema = kind_schema(kind);
    let validator = cel_validator();
    match validator.validate_compiled(&schema.cel, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| FieldError::new(e.field_path, e.message)).collect(),
    }
}

fn cel_validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(Validator::new)
}

/// Semantic checks of a MessagingAccount.
pub fn account_errors(spec: &MessagingAccountSpec, policy: UrlPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(message) = check_public_base_url(&spec.webhook.public_base_url, policy) {
        errors.push(FieldError::new("spec.webhook.publicBaseUrl", message));
    }
    if let Some(delay) = &spec.gateway.drain_delay
        && duration::parse(delay).is_none_or(|d| d > super::account::MAX_DRAIN_DELAY)
    {
        errors.push(FieldError::new("spec.gateway.drainDelay", "must be a duration of at most 5m, such as 5s or 30s"));
    }
    if let Some(twilio) = &spec.twilio_whatsapp {
        let mut seen = BTreeMap::new();
        for (i, n) in twilio.numbers.iter().enumerate() {
            if let Some(first) = seen.insert(n.number.as_str(), &n.name) {
                errors.push(FieldError::new(format!("spec.twilioWhatsApp.numbers[{i}].number"), format!("{} is already listed as {first}", n.number)));
            }
        }
    }
    errors
}

fn check_public_base_url(text: &str, policy: UrlPolicy) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if policy.allow_http_loopback && is_loopback(&url) => Ok(()),
        "http" if is_loopback(&url) => Err("must use https (http on loopback only when the controller allows it)".to_owned()),
        _ => Err("must use https".to_owned()),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The placeholders automated messages and surveys may use.
pub const PLACEHOLDERS: [&str; 7] = ["CustomerName", "QueueName", "Position", "AverageWaitTime", "AgentName", "ConversationId", "SurveyUrl"];

fn placeholder_errors(field: &str, text: &str, allowed: &[&str], errors: &mut Vec<FieldError>) {
    static PLACEHOLDER: OnceLock<Regex> = OnceLock::new();
    let re = PLACEHOLDER.get_or_init(|| Regex::new(r"\{([A-Za-z0-9_]*)\}").expect("static regex"));
    for cap in re.captures_iter(text) {
        let name = &cap[1];
        if !allowed.contains(&name) {
            errors.push(FieldError::new(field, format!("unknown placeholder {{{name}}}; known: {}", allowed.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(" "))));
        }
    }
}

/// Semantic checks of a Workstream.
pub fn workstream_errors(spec: &WorkstreamSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(d) = &spec.distribution.auto_close_after_inactivity
        && duration::parse(d).is_none_or(|d| d.is_zero())
    {
        errors.push(FieldError::new("spec.distribution.autoCloseAfterInactivity", "must be a positive duration such as 24h"));
    }
    let wrap_up = spec.distribution.wrap_up.as_str();
    if wrap_up != "Always" && wrap_up != "None" && duration::parse(wrap_up).is_none() {
        errors.push(FieldError::new("spec.distribution.wrapUp", "must be Always, None or a duration such as 60s"));
    }
    for (i, q) in spec.queues.iter().enumerate() {
        if let Some(hours) = &q.operating_hours
            && jiff::tz::TimeZone::get(&hours.time_zone).is_err()
        {
            errors.push(FieldError::new(format!("spec.queues[{i}].operatingHours.timeZone"), format!("unknown time zone {:?}", hours.time_zone)));
        }
    }
    for (i, m) in spec.automated_messages.iter().enumerate() {
        placeholder_errors(&format!("spec.automatedMessages[{i}].text"), &m.text, &PLACEHOLDERS, &mut errors);
    }
    if let Some(survey) = &spec.post_conversation_survey {
        placeholder_errors("spec.postConversationSurvey.url", &survey.url, &["ConversationId"], &mut errors);
        placeholder_errors("spec.postConversationSurvey.text", &survey.text, &PLACEHOLDERS, &mut errors);
        if let Err(e) = check_http_url(&survey.url.replace("{ConversationId}", "c")) {
            errors.push(FieldError::new("spec.postConversationSurvey.url", e));
        }
    }
    if let Err(e) = check_http_url(&spec.delivery.url) {
        errors.push(FieldError::new("spec.delivery.url", e));
    }
    if let Some(bot) = &spec.bot
        && let Err(e) = check_http_url(&bot.url)
    {
        errors.push(FieldError::new("spec.bot.url", e));
    }
    errors
}

fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL with a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information; use a Secret reference".to_owned());
    }
    Ok(())
}

/// Semantic checks of a RoutingRule: its conditions must compile.
pub fn routing_rule_errors(spec: &RoutingRuleSpec) -> Vec<FieldError> {
    compile_match(spec).err().unwrap_or_default()
}

/// Semantic checks of a MessageTemplate: variables numbered 1..n in each body, each with a
/// sample value, and adopted SIDs that look like Content SIDs.
pub fn template_errors(spec: &MessageTemplateSpec) -> Vec<FieldError> {
    static VARIABLE: OnceLock<Regex> = OnceLock::new();
    static CONTENT_SID: OnceLock<Regex> = OnceLock::new();
    let variable = VARIABLE.get_or_init(|| Regex::new(r"\{\{\s*([^{}]*?)\s*\}\}").expect("static regex"));
    let content_sid = CONTENT_SID.get_or_init(|| Regex::new(r"^HX[0-9a-f]{32}$").expect("static regex"));
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for (i, l) in spec.localizations.iter().enumerate() {
        let field = format!("spec.localizations[{i}].body");
        let mut numbers = BTreeSet::new();
        for cap in variable.captures_iter(&l.body) {
            match cap[1].parse::<u32>() {
                Ok(n) if n >= 1 => {
                    numbers.insert(n);
                }
                _ => errors.push(FieldError::new(&field, format!("variable {{{{{}}}}} must be a number from 1", &cap[1]))),
            }
        }
        let highest = numbers.last().copied().unwrap_or(0);
        if let Some(gap) = (1..highest).find(|n| !numbers.contains(n)) {
            errors.push(FieldError::new(&field, format!("variables must be numbered from {{{{1}}}} without gaps; {{{{{gap}}}}} is missing")));
        }
        used.extend(numbers);
    }
    for n in &used {
        if !spec.sample_values.contains_key(&n.to_string()) {
            errors.push(FieldError::new("spec.sampleValues", format!("variable {{{{{n}}}}} has no sample value (WhatsApp review needs one)")));
        }
    }
    for key in spec.sample_values.keys() {
        if !key.parse::<u32>().is_ok_and(|n| used.contains(&n)) {
            errors.push(FieldError::new(format!("spec.sampleValues[{key:?}]"), "no localization uses this variable"));
        }
    }
    for (language, sid) in spec.adopt.iter().flatten() {
        if !content_sid.is_match(sid) {
            errors.push(FieldError::new(format!("spec.adopt[{language:?}]"), format!("{sid:?} is not a Content SID (HX followed by 32 hex digits)")));
        }
    }
    errors
}

/// Every single-object check of `check`: the schema first, and when the object fits it, the
/// CEL rules and the semantic checks.
pub fn object_errors(kind: Kind, object: &Value, policy: UrlPolicy) -> Vec<FieldError> {
    let errors = schema_errors(kind, object);
    if !errors.is_empty() {
        return errors;
    }
    let mut errors = cel_errors(kind, object, None);
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let semantic = match kind {
        Kind::MessagingAccount => serde_json::from_value(spec).map(|s| account_errors(&s, policy)),
        Kind::Workstream => serde_json::from_value(spec).map(|s| workstream_errors(&s)),
        Kind::RoutingRule => serde_json::from_value(spec).map(|s| routing_rule_errors(&s)),
        Kind::MessageTemplate => serde_json::from_value(spec).map(|s| template_errors(&s)),
    };
    match semantic {
        Ok(found) => errors.extend(found),
        Err(e) => errors.push(FieldError::new("spec", format!("does not fit the {} type: {e}", kind.name()))),
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn account(spec: Value) -> Value {
        json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "MessagingAccount", "metadata": {"name": "a"}, "spec": spec})
    }

    fn line_spec() -> Value {
        json!({
            "line": {"channelId": "1657123456",
                     "channelSecret": {"secretKeyRef": {"name": "s", "key": "secret"}},
                     "channelAccessToken": {"secretKeyRef": {"name": "s", "key": "token"}}},
            "webhook": {"publicBaseUrl": "https://chat.example.com"},
            "dataTransfer": {"acknowledged": true}
        })
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_account_has_no_errors() {
        assert_eq!(messages(&object_errors(Kind::MessagingAccount, &account(line_spec()), UrlPolicy::default())), Vec::<String>::new());
    }

    #[test]
    fn schema_errors_name_the_field() {
        let mut spec = line_spec();
        spec["line"]["channelId"] = json!("16571x");
        spec["webhook"]["registrations"] = json!("Manual");
        spec["line"].as_object_mut().unwrap().remove("channelSecret");
        let errors = messages(&schema_errors(Kind::MessagingAccount, &account(spec)));
        assert_eq!(errors, vec![
            "spec.line.channelId: \"16571x\" must be the numeric channel ID",
            "spec.line.channelSecret: required field is missing",
            "spec.webhook.registrations: unknown field",
        ]);
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let mut spec = line_spec();
        spec["twilioWhatsApp"] = json!({"accountSid": "AC0123456789abcdef0123456789abcdef",
            "authToken": {"secretKeyRef": {"name": "t", "key": "k"}}, "numbers": [{"name": "n", "number": "+14155550100"}]});
        spec["dataTransfer"]["acknowledged"] = json!(false);
        let mut errors = messages(&object_errors(Kind::MessagingAccount, &account(spec), UrlPolicy::default()));
        errors.sort();
        assert_eq!(errors, vec![
            "spec.dataTransfer.acknowledged: must be true: conversation data leaves the cluster for the provider",
            "spec: exactly one of line or twilioWhatsApp must be set",
        ]);
    }

    #[test]
    fn several_replicas_need_the_postgres_store() {
        let errors = |gateway: Value| {
            let mut spec = line_spec();
            spec["gateway"] = gateway;
            messages(&object_errors(Kind::MessagingAccount, &account(spec), UrlPolicy::default()))
        };
        let postgres = json!({"postgres": {"connectionSecretRef": {"name": "chat-db-app"}, "sslMode": "verify-ca"}});
        assert_eq!(errors(json!({"replicas": 1})), Vec::<String>::new());
        assert_eq!(errors(json!({"replicas": 3, "store": postgres})), Vec::<String>::new());
        assert_eq!(errors(json!({"replicas": 2})), ["spec.gateway.replicas: at most 1 without store.postgres: the embedded SQLite store has one writer"]);
        assert_eq!(
            errors(json!({"replicas": 1, "store": postgres, "storage": {"size": "1Gi"}})),
            ["spec.gateway.storage: storage is the SQLite store's volume; store.postgres keeps nothing on the pod, so set one or the other"]
        );
        let too_many = errors(json!({"replicas": 11, "store": postgres}));
        assert!(too_many.len() == 1 && too_many[0].starts_with("spec.gateway.replicas: "), "{too_many:?}");
        assert_eq!(errors(json!({"drainDelay": "5m"})), Vec::<String>::new());
        assert_eq!(errors(json!({"drainDelay": "5m1s"})), ["spec.gateway.drainDelay: must be a duration of at most 5m, such as 5s or 30s"]);
        let bad_mode = errors(json!({"store": {"postgres": {"connectionSecretRef": {"name": "db"}, "sslMode": "prefer"}}}));
        assert!(bad_mode.len() == 1 && bad_mode[0].starts_with("spec.gateway.store.postgres.sslMode: "), "{bad_mode:?}");
    }

    #[test]
    fn immutable_mode_is_a_transition_rule() {
        let ws = |mode: &str| {
            json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": "Workstream", "metadata": {"name": "w"}, "spec": {
                "accountRef": {"name": "a"}, "language": "en", "queues": [{"name": "q"}],
                "distribution": {"mode": mode, "fallbackQueue": "q"},
                "delivery": {"url": "http://desk", "signingSecretRef": {"name": "d", "key": "s"}, "agentApiTokenSecretRef": {"name": "d", "key": "t"}}}})
        };
        assert!(cel_errors(Kind::Workstream, &ws("Push"), Some(&ws("Push"))).is_empty());
        assert_eq!(messages(&cel_errors(Kind::Workstream, &ws("Pick"), Some(&ws("Push")))), vec![
            "spec.distribution.mode: distribution.mode is immutable"
        ]);
    }

    #[test]
    fn webhook_url_policy() {
        let check = |url: &str, allow: bool| check_public_base_url(url, UrlPolicy { allow_http_loopback: allow });
        assert!(check("https://chat.example.com", false).is_ok());
        assert!(check("http://chat.example.com", true).is_err());
        assert!(check("http://127.0.0.1:8080", true).is_ok());
        assert!(check("http://localhost:8080", false).is_err());
        assert!(check("https://user:pw@chat.example.com", false).unwrap_err().contains("user information"));
        // The message must not echo the credentials it refuses.
        assert!(!check("https://user:pw@chat.example.com", false).unwrap_err().contains("pw"));
    }

    proptest! {
        // Whatever a manifest holds, validation reports problems and never panics.
        #[test]
        fn validation_never_panics(spec in arbitrary_json(4), kind in 0usize..4) {
            let kind = Kind::ALL[kind];
            let object = json!({"apiVersion": "switchboard.dev/v1alpha1", "kind": kind.name(), "metadata": {"name": "x"}, "spec": spec});
            let _ = object_errors(kind, &object, UrlPolicy::default());
        }
    }

    fn arbitrary_json(depth: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 .:/+{}-]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(depth, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("line".to_owned()), Just("twilioWhatsApp".to_owned()), Just("queues".to_owned()),
                Just("routeTo".to_owned()), Just("split".to_owned()), Just("name".to_owned()), "[a-z]{1,8}"
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
