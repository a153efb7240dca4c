//! The gateway's Prometheus metrics, served as text on the metrics port's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The provider a webhook came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs)]
pub enum ProviderLabel {
    Line,
    Twilio,
}

/// How a webhook request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RequestOutcome {
    /// Verified and recorded (or already recorded): 200.
    Accepted,
    /// Missing or wrong signature: 401 or 403.
    Unauthorized,
    /// Not a webhook body: 400.
    BadRequest,
    /// Body over the limit: 413.
    TooLarge,
    /// Body not received within `--body-read-timeout`: 408.
    TimedOut,
    /// No configuration or store yet, or the store failed: 503.
    Unavailable,
}

/// Labels of webhook requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The provider.
    pub provider: ProviderLabel,
    /// The outcome.
    pub outcome: RequestOutcome,
}

/// Labels with only a provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider.
    pub provider: ProviderLabel,
}

/// Whether an event was new.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs)]
pub enum EventOutcome {
    Recorded,
    Duplicate,
}

/// Labels of recorded events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// New or redelivered.
    pub outcome: EventOutcome,
}

/// How one attempt to hand something on ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum AttemptOutcome {
    /// Accepted by the receiver.
    Delivered,
    /// The receiver answered with an error status; retried.
    Rejected,
    /// No answer (connection refused, timeout); retried.
    Failed,
}

/// Labels of delivery attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// The outcome.
    pub outcome: AttemptOutcome,
}

/// Whether a configuration was taken.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs)]
pub enum ReloadOutcome {
    Applied,
    Rejected,
}

/// Labels of configuration loads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The outcome.
    pub outcome: ReloadOutcome,
}

/// Every metric of the gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Webhook requests by provider and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Webhooks refused for a missing or wrong signature.
    pub signature_failures: Family<ProviderLabels, Counter>,
    /// Events in verified webhooks, new or redelivered.
    pub events: Family<EventLabels, Counter>,
    /// Time of each store commit.
    pub commit_seconds: Histogram,
    /// Jobs per store commit (the group commit's batch size).
    pub commit_batch: Histogram,
    /// Events waiting in the outbox for the desk.
    pub outbox_depth: Gauge,
    /// Age in seconds of the oldest event waiting in the outbox.
    pub outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Attempts to deliver events to the desk, by outcome.
    pub deliveries: Family<AttemptLabels, Counter>,
    /// Attempts to send messages to customers through the provider, by outcome.
    pub sends: Family<AttemptLabels, Counter>,
    /// 1 for a receiver that answered 410 Gone and gets nothing until its settings change; 0
    /// once resumed.
    pub receivers_gone: Family<ReceiverLabels, Gauge>,
    /// Conversations waiting for an agent, per queue (the leader's view; 0 elsewhere).
    pub queue_waiting: Family<QueueLabels, Gauge>,
    /// How long the oldest waiting conversation of each queue has waited, in seconds.
    pub queue_oldest_wait_seconds: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Conversations given to agents, by workstream and how.
    pub assignments: Family<AssignmentLabels, Counter>,
    /// Time from a conversation's start to its assignment.
    pub assignment_wait_seconds: Histogram,
    /// Reported agents by the presence in force (the leader's view).
    pub agents: Family<PresenceLabels, Gauge>,
    /// Configuration loads by outcome.
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Agent API requests by operation and HTTP status.
    pub agent_requests: Family<AgentRequestLabels, Counter>,
    /// Connections of the webhook, agent API and metrics ports.
    pub connections: crate::metrics::Connections,
}

/// Labels of a receiver of desk events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// Its workstream.
    pub workstream: String,
    /// `desk` or `bot`.
    pub receiver: String,
}

/// Labels of a queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Its workstream.
    pub workstream: String,
    /// Its name.
    pub queue: String,
}

/// How a conversation came to an agent.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs)]
pub enum AssignedBy {
    Push,
    Pick,
    Assign,
    Transfer,
}

/// Labels of assignments.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AssignmentLabels {
    /// The workstream.
    pub workstream: String,
    /// How.
    pub by: AssignedBy,
}

/// Labels with a presence.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PresenceLabels {
    /// Available, Busy, Away or Offline.
    pub presence: String,
}

/// Labels of agent API requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentRequestLabels {
    /// The operation (the OpenAPI operationId).
    pub operation: String,
    /// The HTTP status answered.
    pub status: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard_gateway");
        let requests = Family::default();
        registry.register("webhook_requests", "Webhook requests by provider and outcome", requests.clone());
        let signature_failures = Family::default();
        registry.register("signature_failures", "Webhooks refused for a missing or wrong signature", signature_failures.clone());
        let events = Family::default();
        registry.register("events", "Events in verified webhooks, new or redelivered", events.clone());
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register("store_commit_seconds", "Time of each store commit", commit_seconds.clone());
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("store_commit_batch_size", "Jobs per store commit", commit_batch.clone());
        let outbox_depth = Gauge::default();
        registry.register("outbox_depth", "Events waiting in the outbox for the desk", outbox_depth.clone());
        let outbox_oldest_seconds = Gauge::default();
        registry.register("outbox_oldest_age_seconds", "Age of the oldest event waiting in the outbox", outbox_oldest_seconds.clone());
        let deliveries = Family::default();
        registry.register("delivery_attempts", "Attempts to deliver events to the desk, by outcome", deliveries.clone());
        let sends = Family::default();
        registry.register("provider_send_attempts", "Attempts to send messages to customers through the provider", sends.clone());
        let receivers_gone = Family::default();
        registry.register(
            "delivery_receivers_gone",
            "Receivers of desk events that answered 410 Gone and get nothing until their settings change (1), or were resumed (0)",
            receivers_gone.clone(),
        );
        let queue_waiting = Family::default();
        registry.register("queue_waiting", "Conversations waiting for an agent, per queue", queue_waiting.clone());
        let queue_oldest_wait_seconds = Family::default();
        registry.register("queue_oldest_wait_seconds", "How long the oldest waiting conversation of each queue has waited", queue_oldest_wait_seconds.clone());
        let assignments = Family::default();
        registry.register("assignments", "Conversations given to agents, by workstream and how", assignments.clone());
        let assignment_wait_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register("assignment_wait_seconds", "Time from a conversation's start to its assignment", assignment_wait_seconds.clone());
        let agents = Family::default();
        registry.register("agents", "Reported agents by the presence in force", agents.clone());
        let config_reloads = Family::default();
        registry.register("config_loads", "Configuration loads by outcome", config_reloads.clone());
        let agent_requests = Family::default();
        registry.register("agent_api_requests", "Agent API requests by operation and HTTP status", agent_requests.clone());
        let connections = crate::metrics::Connections::default();
        connections.register(&mut registry);
        Self {
            registry,
            requests,
            signature_failures,
            events,
            commit_seconds,
            commit_batch,
            outbox_depth,
            outbox_oldest_seconds,
            deliveries,
            sends,
            receivers_gone,
            queue_waiting,
            queue_oldest_wait_seconds,
            assignments,
            assignment_wait_seconds,
            agents,
            config_reloads,
            agent_requests,
            connections,
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        crate::metrics::encode(&self.registry)
    }

    /// Counts a webhook request.
    pub fn request(&self, provider: ProviderLabel, outcome: RequestOutcome) {
        self.requests.get_or_create(&RequestLabels { provider, outcome }).inc();
    }

    /// Counts an assignment in `workstream` that ended a wait of `waited_ms`.
    pub fn assigned(&self, workstream: &str, by: AssignedBy, waited_ms: i64) {
        self.assignments.get_or_create(&AssignmentLabels { workstream: workstream.to_owned(), by }).inc();
        self.assignment_wait_seconds.observe(waited_ms.max(0) as f64 / 1000.0);
    }

    /// Records one store commit.
    pub fn commit(&self, jobs: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_batch.observe(jobs as f64);
    }

    /// Counts a delivery attempt to the desk.
    pub fn delivery(&self, outcome: AttemptOutcome) {
        self.deliveries.get_or_create(&AttemptLabels { outcome }).inc();
    }

    /// Counts a send attempt through the provider.
    pub fn send(&self, outcome: AttemptOutcome) {
        self.sends.get_or_create(&AttemptLabels { outcome }).inc();
    }

    /// Counts an agent API request.
    pub fn agent_request(&self, operation: &str, status: u16) {
        self.agent_requests.get_or_create(&AgentRequestLabels { operation: operation.to_owned(), status: status.to_string() }).inc();
    }

    /// Counts a configuration load.
    pub fn config_load(&self, outcome: ReloadOutcome) {
        self.config_reloads.get_or_create(&ReloadLabels { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_every_family() {
        let m = Metrics::default();
        m.request(ProviderLabel::Line, RequestOutcome::Unauthorized);
        m.signature_failures.get_or_create(&ProviderLabels { provider: ProviderLabel::Twilio }).inc();
        m.commit(3, Duration::from_millis(2));
        let text = m.encode();
        assert!(text.contains(r#"switchboard_gateway_webhook_requests_total{provider="Line",outcome="Unauthorized"} 1"#), "{text}");
        assert!(text.contains(r#"switchboard_gateway_signature_failures_total{provider="Twilio"} 1"#), "{text}");
        assert!(text.contains("switchboard_gateway_store_commit_seconds_count 1"), "{text}");
        assert!(text.contains("switchboard_gateway_outbox_depth 0"), "{text}");
    }
}
