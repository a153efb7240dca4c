//! What differs between the messaging channels, one module each behind [`Channel`]: how a
//! webhook is verified, parsed and acknowledged, how a message goes out, how a customer's file is
//! fetched, how the customer is shown that an agent read or is writing. The rest of the gateway
//! asks the account's channel and never names a provider.

pub mod indicators;
pub mod line;
pub mod twilio;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use thiserror::Error;

use super::metrics::ProviderLabel;
use super::model::conversation::CustomerProfile;
use super::model::event::{InboundEvent, Message};
use super::model::outbound::{CREDENTIALS_REJECTED, Outcome, SendError};
use super::model::queue::QueuedSend;
use crate::providers::ProviderError;
use indicators::{Chat, IndicatorError, Shown};

/// A webhook request as received: what the signature covers and what is parsed.
#[derive(Clone, Copy, Debug)]
pub struct Webhook<'a> {
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its raw query string.
    pub query: Option<&'a str>,
    /// Its raw body.
    pub body: &'a [u8],
}

impl Webhook<'_> {
    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A webhook refused before it is recorded: the status and the plain-text answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 401 or 403.
    pub status: StatusCode,
    /// The answer's text.
    pub text: &'static str,
}

/// What the provider answered to one attempt to send.
#[derive(Debug)]
pub enum Answer {
    /// An outcome as it is.
    Outcome(Outcome),
    /// The account's credentials were refused: a retry or a failure, depending on how long
    /// the provider has been refusing them.
    CredentialsRefused(SendError),
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        Self::Outcome(outcome)
    }
}

/// A file fetched from the provider: its content type, if the provider said, and its bytes.
pub type Fetched = (Option<String>, Vec<u8>);

/// One messaging channel.
pub trait Channel: Send + Sync {
    /// The channel as metrics name it.
    fn label(&self) -> ProviderLabel;
    /// Checks the webhook's signature on the raw bytes, before anything reads them.
    fn verify(&self, webhook: &Webhook<'_>) -> Result<(), Rejection>;
    /// The webhook's events; an error says what is wrong with the body (answered with 400).
    /// `received_ms` stands in for an event's time when the provider gives none.
    fn parse(&self, webhook: &Webhook<'_>, received_ms: i64) -> Result<Vec<InboundEvent>, String>;
    /// The answer to a webhook whose events are recorded.
    fn acknowledge(&self) -> Response;
    /// Sends a queued message once.
    fn send<'a>(&'a self, message: &'a QueuedSend, now_ms: i64) -> BoxFuture<'a, Answer>;
    /// Fetches the content of a customer's message whose attachment has no URL (LINE keeps
    /// it behind its content API); None when the channel has no such content.
    fn content<'a>(&'a self, message: &'a Message, limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>>;
    /// Fetches an attachment the provider serves by URL, when the channel fetches such URLs
    /// itself (Twilio, with the account's credentials); None when a plain GET is what it takes.
    fn media<'a>(&'a self, url: &'a str, limit: u64) -> Option<BoxFuture<'a, Result<Fetched, String>>>;
    /// Where customers' profiles come from, on a channel that has them.
    fn profiles(&self) -> Option<&dyn Profiles>;
    /// Marks the customer's messages as read, up to their latest.
    fn mark_read<'a>(&'a self, chat: Chat<'a>) -> BoxFuture<'a, Result<Shown, IndicatorError>>;
    /// Shows the customer that an agent is writing, for `seconds` (5 to 60, a multiple of 5)
    /// where the channel takes a duration.
    fn typing<'a>(&'a self, chat: Chat<'a>, seconds: u32) -> BoxFuture<'a, Result<Shown, IndicatorError>>;
    /// The provider's delivery receipts, on a channel that sends them.
    fn receipts(&self) -> Option<&dyn Receipts>;
}

/// A channel's delivery receipts, which the provider sends to the account's status URL.
pub trait Receipts: Send + Sync {
    /// Checks the callback's signature on the raw bytes, before anything reads them.
    fn verify(&self, callback: &Webhook<'_>) -> Result<(), Rejection>;
    /// The callback's receipt event, None for a status the gateway does not track; an error says
    /// what is wrong with the body (answered with 400).
    fn parse(&self, callback: &Webhook<'_>, received_ms: i64) -> Result<Option<InboundEvent>, String>;
}

/// A channel's customer profiles.
pub trait Profiles: Send + Sync {
    /// The customer's profile as the provider has it.
    fn profile<'a>(&'a self, customer_id: &'a str) -> BoxFuture<'a, Result<CustomerProfile, ProviderError>>;
}

/// Why a webhook's signature was refused. The messages name neither the secret nor the
/// signature that was expected, so they are safe to log and to answer with.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The request carries no signature header (or an empty one).
    #[error("the request carries no signature")]
    Missing,
    /// The signature is not valid Base64, or does not match the request.
    #[error("the request's signature does not match")]
    Invalid,
}

/// A signature header's bytes; an empty header is treated as absent, as a proxy may leave one
/// behind.
fn decode_signature(header: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(SignatureError::Missing)?;
    STANDARD.decode(header).map_err(|_| SignatureError::Invalid)
}

/// The outcome of a provider call that sends: accepted with the provider's IDs, retried when
/// the provider is unavailable or limits the rate, failed when it refuses the message.
fn answer(result: Result<Vec<String>, ProviderError>) -> Answer {
    let outcome = match result {
        Ok(ids) => Outcome::Sent(ids),
        Err(e @ (ProviderError::Unavailable { .. } | ProviderError::InvalidResponse { .. })) => Outcome::Retry(e.to_string(), None),
        // Fixed by rotating the Secret, after which the message should still go out.
        Err(e @ (ProviderError::Unauthorized { code, .. } | ProviderError::Rejected { status: 403, code, .. })) => {
            return Answer::CredentialsRefused(SendError { code: CREDENTIALS_REJECTED.to_owned(), provider_code: code, message: e.to_string() });
        }
        Err(ProviderError::RateLimited { retry_after, operation }) => Outcome::Retry(format!("{operation}: rate limited"), retry_after),
        Err(ProviderError::Rejected { code, message, .. }) => refused("provider_rejected", code, &message),
        Err(e) => refused("provider_rejected", None, &e.to_string()),
    };
    outcome.into()
}

/// A refusal for good.
fn refused(code: &str, provider_code: Option<i64>, message: &str) -> Outcome {
    Outcome::Refused(SendError { code: code.to_owned(), provider_code, message: message.to_owned() })
}

/// Outgoing contents the channels' tests map.
#[cfg(test)]
mod test_contents {
    use crate::gateway::model::outbound::OutContent;

    pub fn text(t: &str) -> OutContent {
        OutContent::Text { text: t.into() }
    }

    /// A file with the caption `here`.
    pub fn attachment(url: &str, name: Option<&str>, content_type: Option<&str>) -> OutContent {
        OutContent::Attachment { url: url.into(), file_name: name.map(Into::into), content_type: content_type.map(Into::into), caption: Some("here".into()) }
    }
}
