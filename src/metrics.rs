//! What the gateway's and the controller's `/metrics` share: the text encoding and its content
//! type, and the count of provider calls, a [`CallObserver`] that either process hands its
//! provider clients ([`Providers::with_observer`](crate::providers::Providers::with_observer)).

use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
