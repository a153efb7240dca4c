//! The webhook endpoint, `POST /switchboard/{namespace}/{account}/webhook`, and beside it the
//! provider's delivery receipts, `POST …/{account}/status`: verify the signature on the raw
//! bytes, parse, record durably, and only then answer 200. The same public port serves agents'
//! uploaded files to the providers ([`super::media`]).
//!
//! Answers: 401 (LINE) / 403 (Twilio) for a missing or wrong signature, 400 for a body that is
//! not a webhook, 413 over the size limit, 404 for another account's path, 405 for another
//! method, 503 while no configuration is loaded or the store fails (the provider retries). The
//! status path answers 404 on a channel without receipts (LINE).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::{Notify, watch};

use crate::gateway::channels::Webhook;
use crate::gateway::clock::Clock;
use crate::gateway::metrics::{EventLabels, EventOutcome, Metrics, ProviderLabels, RequestOutcome};
use crate::gateway::model::queue::serialize;
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{Store, StoreError};

/// What the webhook handler needs.
pub struct WebhookState {
    /// The store events are recorded in.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Counts requests.
    pub metrics: Arc<Metrics>,
    /// Woken when events were recorded.
    pub processor: Arc<Notify>,
    /// Largest body taken, in bytes.
    pub body_limit: usize,
    /// The time events are received at.
    pub clock: Clock,
}

/// The router of the webhook route.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/switchboard/{namespace}/{account}/webhook", post(webhook))
        .route("/switchboard/{namespace}/{account}/status", post(receipt))
        .with_state(state)
}

/// What a request to the account's public path brings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Intake {
    /// Webhook events.
    Events,
    /// A delivery receipt.
    Receipt,
}

async fn webhook(
    State(state): State<Arc<WebhookState>>,
    Path((namespace, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&state, Intake::Events, (namespace, account), query, headers, body).await
}

async fn receipt(
    State(state): State<Arc<WebhookState>>,
    Path((namespace, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&state, Intake::Receipt, (namespace, account), query, headers, body).await
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn receive(state: &WebhookState, intake: Intake, (namespace, account): (String, String), query: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let Some(rt) = state.runtime.borrow().clone() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the gateway has no configuration yet\n");
    };
    if namespace != rt.config.account.namespace || account != rt.config.account.name {
        return plain(StatusCode::NOT_FOUND, "no such account on this gateway\n");
    }
    let channel = rt.provider.channel();
    let receipts = match (intake, channel.receipts()) {
        (Intake::Events, _) => None,
        (Intake::Receipt, Some(receipts)) => Some(receipts),
        (Intake::Receipt, None) => return plain(StatusCode::NOT_FOUND, "this account's channel sends no delivery receipts\n"),
    };
    let provider = channel.label();
    let count = |outcome| state.metrics.request(provider, outcome);
    let body = match axum::body::to_bytes(body, state.body_limit).await {
        Ok(body) => body,
        Err(error) if crate::serve::body_timed_out(&error) => {
            count(RequestOutcome::TimedOut);
            return plain(StatusCode::REQUEST_TIMEOUT, "the body did not arrive within the body read timeout\n");
        }
        Err(_) => {
            count(RequestOutcome::TooLarge);
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is over the size limit\n");
        }
    };
    let received = state.clock.now_ms();
    let webhook = Webhook { headers: &headers, query: query.as_deref(), body: &body };
    let verified = match receipts {
        Some(receipts) => receipts.verify(&webhook),
        None => channel.verify(&webhook),
    };
    if let Err(rejection) = verified {
        state.metrics.signature_failures.get_or_create(&ProviderLabels { provider }).inc();
        count(RequestOutcome::Unauthorized);
        return plain(rejection.status, rejection.text);
    }
    let parsed = match receipts {
        Some(receipts) => receipts.parse(&webhook, received).map(|event| event.into_iter().collect()),
        None => channel.parse(&webhook, received),
    };
    let events = match parsed {
        Ok(events) => events,
        Err(e) => {
            count(RequestOutcome::BadRequest);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    if !events.is_empty() {
        let recorded = match serialize(&events) {
            Ok(serialized) => state.store.record(move |tx| tx.record_events(&serialized, received)).await,
            Err(e) => Err(StoreError::from(e)),
        };
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a webhook; answering 503 so that the provider retries");
                count(RequestOutcome::Unavailable);
                return plain(StatusCode::SERVICE_UNAVAILABLE, "the gateway cannot record events right now\n");
            }
        };
        state.metrics.events.get_or_create(&EventLabels { outcome: EventOutcome::Recorded }).inc_by(recorded.new as u64);
        state.metrics.events.get_or_create(&EventLabels { outcome: EventOutcome::Duplicate }).inc_by(recorded.duplicate as u64);
        if recorded.new > 0 {
            state.processor.notify_one();
        }
    }
    count(RequestOutcome::Accepted);
    channel.acknowledge()
}
