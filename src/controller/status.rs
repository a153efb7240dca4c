//! Status writes and events: a status is patched only when it says something new (condition
//! transition times and order do not count), and each condition transition a person should see
//! becomes an event.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::conditions::READY;

/// Longest event note the API accepts.
const MAX_NOTE_BYTES: usize = 1024;

/// Longest event action the API accepts.
const MAX_ACTION_BYTES: usize = 128;

/// The action of events about the object as a whole.
const ACTION: &str = "Reconcile";

/// Something to tell people through an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason.
    pub reason: String,
    /// What happened, for people.
    pub note: String,
    /// The part of the object the fact is about (a condition, a language, a number), when one
    /// object can have several facts of the same reason; the note starts with it.
    pub about: Option<String>,
}

impl Notice {
    /// A Normal event.
    pub fn normal(reason: &str, note: impl Into<String>) -> Self {
        Self { type_: EventType::Normal, reason: reason.to_owned(), note: note.into(), about: None }
    }

    /// A Warning event.
    pub fn warning(reason: &str, note: impl Into<String>) -> Self {
        Self { type_: EventType::Warning, reason: reason.to_owned(), note: note.into(), about: None }
    }

    /// The same fact about one part of the object.
    pub fn about(mut self, part: impl Into<String>) -> Self {
        self.about = Some(part.into());
        self
    }

    /// The event. kube's Recorder folds an event into an earlier one of the same object,
    /// reason and action (a series: `(x2)` with the first note only), whatever the notes say,
    /// so the part goes into the action: facts about different parts stay separate events,
    /// and only a fact repeated about the same part becomes a series.
    fn event(&self) -> Event {
        let action = match &self.about {
            Some(part) => truncate(&format!("{ACTION} {part}"), MAX_ACTION_BYTES),
            None => ACTION.to_owned(),
        };
        Event { type_: self.type_, reason: self.reason.clone(), note: Some(truncate(&self.note, MAX_NOTE_BYTES)), action, secondary: None }
    }
}

/// The events for the conditions that changed status or reason between `old` and `new`, each
/// about its condition: True is Normal, False is Warning, Unknown (work in progress) says nothing. A False Ready repeats
/// the cause another condition reports, so it has its own event only when no other condition
/// changed (an invalid spec, say).
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Notice> {
    let changed: Vec<&Condition> = new
        .iter()
        .filter(|c| c.status != "Unknown")
        .filter(|c| !old.iter().any(|o| o.type_ == c.type_ && o.status == c.status && o.reason == c.reason))
        .collect();
    let others = changed.iter().any(|c| c.type_ != READY);
    changed
        .into_iter()
        .filter(|c| c.type_ != READY || c.status == "True" || !others)
        .map(|c| {
            let note = format!("{} is {}: {}", c.type_, c.status, c.message);
            let notice = if c.status == "True" { Notice::normal(&c.reason, note) } else { Notice::warning(&c.reason, note) };
            notice.about(&c.type_)
        })
        .collect()
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: changed and added members, and
/// null for removed ones.
pub fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous) => {
                        patch.insert(key.clone(), merge_patch(previous, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// Whether two statuses say different things, ignoring condition transition times and order.
pub fn changed(old: &Value, new: &Value) -> bool {
    comparable(old) != comparable(new)
}

fn comparable(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(Value::Array(conditions)) = status.get_mut("conditions") {
        for condition in conditions.iter_mut() {
            if let Value::Object(c) = condition {
                c.remove("lastTransitionTime");
            }
        }
        conditions.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    }
    status
}

/// Patches the status subresource when `new` differs from `old`; returns whether it wrote.
pub async fn write<K, S>(api: &Api<K>, name: &str, old: Option<&S>, new: &S) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let old = old.map(serde_json::to_value).transpose().map_err(kube::Error::SerdeError)?.unwrap_or(Value::Null);
    let new = serde_json::to_value(new).map_err(kube::Error::SerdeError)?;
    if !changed(&old, &new) {
        return Ok(false);
    }
    let patch = serde_json::json!({ "status": merge_patch(&old, &new) });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(true)
}

/// Publishes events about one object. An event that cannot be written is logged, not fatal:
/// the status already says the same.
pub async fn publish(recorder: &Recorder, regarding: &ObjectReference, notices: &[Notice]) {
    for notice in notices {
        if let Err(error) = recorder.publish(&notice.event(), regarding).await {
            tracing::warn!(%error, reason = %notice.reason, "cannot publish an event");
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn cond(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} {reason}"),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(at).unwrap()),
        }
    }

    #[test]
    fn merge_patch_sets_changes_and_nulls_removals() {
        let old = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2], "gone": true});
        let new = json!({"a": 1, "b": {"x": 1, "y": 3}, "c": [1], "added": "v"});
        assert_eq!(merge_patch(&old, &new), json!({"b": {"y": 3}, "c": [1], "added": "v", "gone": null}));
        assert_eq!(merge_patch(&Value::Null, &new), new);
    }

    #[test]
    fn timestamps_and_order_do_not_count_as_change() {
        let a = json!({"observedGeneration": 1, "conditions": [
            serde_json::to_value(cond("Ready", "True", "Ready", 10)).unwrap(),
            serde_json::to_value(cond("CredentialsValid", "True", "Valid", 10)).unwrap(),
        ]});
        let b = json!({"observedGeneration": 1, "conditions": [
            serde_json::to_value(cond("CredentialsValid", "True", "Valid", 99)).unwrap(),
            serde_json::to_value(cond("Ready", "True", "Ready", 50)).unwrap(),
        ]});
        assert!(!changed(&a, &b));
        let mut c = b.clone();
        c["conditions"][0]["reason"] = json!("Unauthorized");
        assert!(changed(&a, &c));
        let mut d = b;
        d["observedGeneration"] = json!(2);
        assert!(changed(&a, &d));
    }

    #[test]
    fn transitions_announce_changes_once() {
        let old = vec![cond("CredentialsValid", "True", "Valid", 1), cond("Ready", "True", "Ready", 1)];
        let new = vec![cond("CredentialsValid", "False", "Unauthorized", 2), cond("Ready", "False", "Unauthorized", 2)];
        let notices = transitions(&old, &new);
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].type_, EventType::Warning);
        assert_eq!(notices[0].reason, "Unauthorized");
        assert!(notices[0].note.starts_with("CredentialsValid is False: "));

        assert!(transitions(&new, &new).is_empty());

        let back = transitions(&new, &old);
        assert_eq!(back.iter().map(|n| n.reason.as_str()).collect::<Vec<_>>(), ["Valid", "Ready"]);
        assert!(back.iter().all(|n| n.type_ == EventType::Normal));
    }

    #[test]
    fn a_ready_only_failure_has_its_own_event_and_unknown_has_none() {
        let invalid = vec![cond("CredentialsValid", "Unknown", "InvalidSpec", 1), cond("Ready", "False", "InvalidSpec", 1)];
        let notices = transitions(&[], &invalid);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].reason, "InvalidSpec");
    }

    /// What kube's Recorder folds events by (besides the object and the reporter).
    fn key(notice: &Notice) -> (String, String) {
        let event = notice.event();
        (event.reason, event.action)
    }

    #[test]
    fn facts_about_different_parts_are_different_events() {
        let en = Notice::normal("ContentCreated", "en: created Content HX1").about("en");
        let tr = Notice::normal("ContentCreated", "tr: created Content HX2").about("tr");
        assert_ne!(key(&en), key(&tr), "en would hide tr in a series");
        assert_eq!(key(&en), key(&Notice::normal("ContentCreated", "en: created Content HX3").about("en")), "the same fact again is a series");
        assert_eq!(tr.event().note.as_deref(), Some("tr: created Content HX2"));
        assert_eq!(Notice::warning("CleanupAbandoned", "x").event().action, "Reconcile");
        let long = Notice::normal("R", "n").about("x".repeat(200));
        assert!(long.event().action.len() <= MAX_ACTION_BYTES);

        // On LINE, Synced and Approved both turn True for NotRequired: two events, each
        // starting with its condition.
        let line = vec![cond("Synced", "True", "NotRequired", 1), cond("Approved", "True", "NotRequired", 1)];
        let notices = transitions(&[], &line);
        assert_eq!(notices.len(), 2);
        assert_ne!(key(&notices[0]), key(&notices[1]));
        for notice in &notices {
            assert!(notice.note.starts_with(notice.about.as_deref().unwrap()), "{notice:?}");
        }
    }

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(&text, MAX_NOTE_BYTES);
        assert!(cut.len() <= MAX_NOTE_BYTES && cut.ends_with('…'));
        assert_eq!(truncate("short", MAX_NOTE_BYTES), "short");
    }
}
