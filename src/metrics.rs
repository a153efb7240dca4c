//! What the gateway's and the controller's `/metrics` share: the text encoding and its content
//! type, the count of provider calls, a [`CallObserver`] that either process hands its
//! provider clients ([`Providers::with_observer`](crate::providers::Providers::with_observer)),
//! and the listening ports' connections ([`crate::serve`]).

use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::providers::{CallObserver, CallOutcome, Operation};

/// The content type `/metrics` answers with: the Prometheus text format, which every scraper
/// reads.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry's metrics as text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// The `/metrics` response carrying `text`.
pub fn response(text: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// Labels of provider calls: [`Operation::label`] and [`CallOutcome::label`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The API call, e.g. `line_bot_info`.
    pub operation: &'static str,
    /// How it ended, e.g. `success` or `rate_limited`.
    pub outcome: &'static str,
}

/// Provider API calls by operation and outcome, each counted once however often it was retried.
#[derive(Clone, Debug, Default)]
pub struct ProviderCalls(Family<CallLabels, Counter>);

impl ProviderCalls {
    /// Registers the family as `<prefix>_provider_calls_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("provider_calls", "Provider API calls (each once, after its retries) by operation and outcome", self.0.clone());
    }
}

impl CallObserver for ProviderCalls {
    fn observe(&self, operation: Operation, outcome: CallOutcome) {
        self.0.get_or_create(&CallLabels { operation: operation.label(), outcome: outcome.label() }).inc();
    }
}

/// Labels of a listening port's connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    /// The port's name, e.g. `webhook`.
    pub port: &'static str,
}

/// The listening ports' connections, by port.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    /// Open now.
    pub open: Family<PortLabels, Gauge>,
    /// The cap on open connections (a share of the open-file limit).
    pub limit: Family<PortLabels, Gauge>,
    /// New connections closed at once: the port was at its cap and every connection was serving
    /// a request.
    pub refused: Family<PortLabels, Counter>,
    /// Connections closed to make room at the cap: each the one that had waited longest for its
    /// headers.
    pub evicted: Family<PortLabels, Counter>,
    /// Connections closed for sending no request headers within the header read timeout (idle
    /// keep-alive connections included).
    pub timed_out: Family<PortLabels, Counter>,
}

impl Connections {
    /// Registers the families as `<prefix>_connections_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("connections_open", "Open connections by listening port", self.open.clone());
        registry.register("connections_limit", "Cap on open connections by listening port (a share of the open-file limit)", self.limit.clone());
        registry.register("connections_refused", "Connections closed at once because the port was at its cap with every connection serving a request", self.refused.clone());
        registry.register("connections_evicted", "Connections closed to make room at the cap: the one waiting longest for its headers", self.evicted.clone());
        registry.register("connections_timed_out", "Connections closed for sending no request headers within --header-read-timeout (idle keep-alive ones included)", self.timed_out.clone());
    }
}
