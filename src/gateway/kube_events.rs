//! Kubernetes Events the gateway writes about its Workstreams, so that an operator sees what a
//! receiver did without looking at it (`kubectl describe workstream`, `kubectl get events`).
//! Events are only created, never read or patched: the gateway's Role grants `create` on
//! events.k8s.io events and nothing more, so each occurrence is an Event of its own (they are
//! rare: a receiver stopped or resumed).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::api::{GROUP, VERSION};
use crate::config::WorkstreamConfig;

/// Whether an Event reports something to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// All is well again.
    Normal,
    /// An operator should look.
    Warning,
}

/// One Event about a Workstream.
#[derive(Clone, Debug)]
pub struct Notice {
    /// Normal or Warning.
    pub severity: Severity,
    /// A CamelCase reason, e.g. `ReceiverGone`.
    pub reason: &'static str,
    /// What the gateway did (`action` of the Event).
    pub action: &'static str,
    /// For people; never a secret.
    pub note: String,
}

/// Writes Events in the gateway's namespace.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    namespace: String,
    instance: String,
}

/// The Event's `reportingController`.
const REPORTER: &str = "switchboard.dev/gateway";
/// The longest note the API server takes.
const MAX_NOTE: usize = 1024;

impl Publisher {
    /// Events in `namespace` (the pod's), reported by `instance` (the pod's name).
    pub fn new(client: Client, namespace: String, instance: String) -> Self {
        Self { client, namespace, instance }
    }

    /// Writes `notice` about `ws` at `now_ms`.
    pub async fn publish(&self, ws: &WorkstreamConfig, notice: &Notice, now_ms: i64) -> Result<(), kube::Error> {
        let event = event(&self.namespace, &self.instance, ws, notice, now_ms);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&PostParams::default(), &event).await.map(drop)
    }
}

/// The Event of `notice`, named after the Workstream with a unique suffix.
fn event(namespace: &str, instance: &str, ws: &WorkstreamConfig, notice: &Notice, now_ms: i64) -> Event {
    let mut note = notice.note.clone();
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{}", ws.name, uuid::Uuid::new_v4().simple())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH))),
        reporting_controller: Some(REPORTER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        action: Some(notice.action.to_owned()),
        reason: Some(notice.reason.to_owned()),
        note: Some(note),
        type_: Some(match notice.severity {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
        .to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some(format!("{GROUP}/{VERSION}")),
            kind: Some("Workstream".to_owned()),
            name: Some(ws.name.clone()),
            namespace: Some(namespace.to_owned()),
            uid: ws.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::runtime::sample_workstream;

    #[test]
    fn an_event_regards_the_workstream_and_keeps_its_note_short() {
        let mut ws = sample_workstream(serde_json::json!({})).config;
        ws.uid = Some("0a1b".into());
        let notice = Notice { severity: Severity::Warning, reason: "ReceiverGone", action: "Deliver", note: "é".repeat(600) };
        let e = event("support", "gw-0", &ws, &notice, 1_700_000_000_123);
        let regarding = e.regarding.unwrap();
        assert_eq!((regarding.kind.as_deref(), regarding.name.as_deref(), regarding.uid.as_deref()), (Some("Workstream"), Some("support"), Some("0a1b")));
        assert_eq!(regarding.api_version.as_deref(), Some("switchboard.dev/v1alpha1"));
        assert_eq!((e.type_.as_deref(), e.reason.as_deref(), e.reporting_instance.as_deref()), (Some("Warning"), Some("ReceiverGone"), Some("gw-0")));
        assert!(e.note.unwrap().len() <= MAX_NOTE);
        assert!(e.metadata.name.unwrap().starts_with("support."));
        assert_eq!(e.event_time.unwrap().0.as_millisecond(), 1_700_000_000_123);
    }
}
