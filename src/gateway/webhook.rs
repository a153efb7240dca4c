//! The webhook endpoint, `POST /switchboard/{namespace}/{account}/webhook`: verify the
//! signature on the raw bytes, parse, record durably, and only then answer 200. The same public
//! port serves agents' uploaded files to the providers ([`super::media`]).
//!
//! Answers: 401 (LINE) / 403 (Twilio) for a missing or wrong signature, 400 for a body that is
//! not a webhook, 413 over the size limit, 404 for another account's path, 405 for another
//! method, 503 while no configuration is loaded or the store fails (the provider retries).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, watch};

use super::event::InboundEvent;
use super::intake;
use super::line_webhook;
use super::metrics::{EventLabels, EventOutcome, Metrics, ProviderLabel, ProviderLabels, RequestOutcome};
use super::processor::now_ms;
use super::runtime::{Provider, Runtime};
use super::signature::{verify_line, verify_twilio};
use super::store::Store;
use super::twilio_webhook;

/// LINE's signature header.
const LINE_SIGNATURE: &str = "x-line-signature";
/// Twilio's signature header.
const TWILIO_SIGNATURE: &str = "x-twilio-signature";
/// The TwiML that tells Twilio not to answer the customer itself.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

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
}

/// The router of the webhook port.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/switchboard/{namespace}/{account}/webhook", post(receive))
        .route("/switchboard/{namespace}/{account}/media/{id}/{name}", get(super::media::serve))
        .with_state(state)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    Path((namespace, account)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(rt) = state.runtime.borrow().clone() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the gateway has no configuration yet\n");
    };
    if namespace != rt.config.account.namespace || account != rt.config.account.name {
        return plain(StatusCode::NOT_FOUND, "no such account on this gateway\n");
    }
    let provider = match rt.provider {
        Provider::Line { .. } => ProviderLabel::Line,
        Provider::Twilio { .. } => ProviderLabel::Twilio,
    };
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
    let received = now_ms();
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let parsed: Result<Vec<InboundEvent>, Response> = match &rt.provider {
        Provider::Line { channel_secret, .. } => match verify_line(channel_secret.expose(), &body, header_value(LINE_SIGNATURE)) {
            Err(_) => Err(plain(StatusCode::UNAUTHORIZED, "invalid or missing x-line-signature\n")),
            Ok(()) => line_webhook::parse(&body, received).map(|w| w.events).map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()),
        },
        Provider::Twilio { auth_token, .. } => {
            let json = header_value(header::CONTENT_TYPE.as_str()).is_some_and(|t| t.trim_start().starts_with("application/json"));
            // Twilio signs the URL it called: the configured public URL, never the Host header.
            let url = match &query {
                Some(q) => format!("{}?{q}", rt.config.account.callback_url),
                None => rt.config.account.callback_url.clone(),
            };
            match verify_twilio(auth_token.expose(), &url, &body, json, header_value(TWILIO_SIGNATURE)) {
                Err(_) => Err(plain(StatusCode::FORBIDDEN, "invalid or missing X-Twilio-Signature\n")),
                Ok(()) => {
                    let event = if json { twilio_webhook::parse_json(&body, received) } else { twilio_webhook::parse_form(&body, received) };
                    event.map(|e| vec![e]).map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response())
                }
            }
        }
    };
    let events = match parsed {
        Ok(events) => events,
        Err(response) => {
            let unauthorized = matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
            if unauthorized {
                state.metrics.signature_failures.get_or_create(&ProviderLabels { provider }).inc();
                count(RequestOutcome::Unauthorized);
            } else {
                count(RequestOutcome::BadRequest);
            }
            return response;
        }
    };
    if !events.is_empty() {
        let recorded = match intake::serialize(&events) {
            Ok(serialized) => state.store.run(move |c| intake::record(c, &serialized, received)).await,
            Err(e) => Err(e),
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
    match provider {
        ProviderLabel::Line => StatusCode::OK.into_response(),
        ProviderLabel::Twilio => (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], EMPTY_TWIML).into_response(),
    }
}
