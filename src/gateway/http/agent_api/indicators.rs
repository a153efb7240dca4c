//! `POST /v1/conversations/{id}/read` and `/typing`: read receipts and typing indicators in the
//! customer's chat. Both call the provider while the desk waits and keep nothing: a failure is
//! answered at once (502 or 503), and the desk calls again when it still matters.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AgentApiState;
use super::body::JsonBody;
use super::caller::Caller;
use super::error::ApiError;
use crate::gateway::channels::indicators::{Chat, IndicatorError, Shown, typing_seconds};
use crate::gateway::conversations::actions::{self, ChatTarget, Refused};
use crate::providers::ProviderError;

/// Body of a typing call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingRequest {
    /// How long to show the indicator.
    seconds: i64,
}

/// Marks the customer's messages as read, up to their latest.
pub async fn read(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller) -> Result<Response, Failure> {
    let allowed = caller.workstreams.clone();
    let conv_id = id.clone();
    let target = state.look(move |tx| actions::chat_target(tx, &allowed, &conv_id)).await?;
    let shown = caller.rt.provider.channel().mark_read(chat(&target)).await.map_err(|e| failure(&id, "read", e))?;
    Ok(answer(&id, &target, shown, false))
}

/// Shows the customer that an agent is writing.
pub async fn typing(
    State(state): State<Arc<AgentApiState>>,
    Path(id): Path<String>,
    caller: Caller,
    JsonBody(request): JsonBody<TypingRequest>,
) -> Result<Response, Failure> {
    let seconds = typing_seconds(request.seconds).map_err(|message| ApiError::invalid("seconds", message))?;
    let allowed = caller.workstreams.clone();
    let conv_id = id.clone();
    let target = state.look(move |tx| actions::chat_target(tx, &allowed, &conv_id)).await?;
    let shown = caller.rt.provider.channel().typing(chat(&target), seconds).await.map_err(|e| failure(&id, "typing", e))?;
    Ok(answer(&id, &target, shown, true))
}

fn chat(target: &ChatTarget) -> Chat<'_> {
    Chat { customer_id: &target.customer_id, last_inbound: target.last_inbound.as_ref().map(|(_, message)| message) }
}

/// `{"conversationId", "readUpTo"?, "typingSeconds"?}`: the typing answer always has
/// `typingSeconds`, null where the channel sets the duration itself.
fn answer(id: &str, target: &ChatTarget, shown: Shown, typing: bool) -> Response {
    let mut body = json!({ "conversationId": id });
    if typing {
        body["typingSeconds"] = json!(shown.typing_seconds);
    }
    if let Some((message_id, _)) = target.last_inbound.as_ref().filter(|_| shown.marked_read) {
        body["readUpTo"] = json!(message_id);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// An error answer, with `Retry-After` when the provider asked for a wait.
#[derive(Debug)]
pub struct Failure {
    error: ApiError,
    retry_after: Option<Duration>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self { error, retry_after: None }
    }
}

impl From<Refused> for Failure {
    fn from(refused: Refused) -> Self {
        ApiError::from(refused).into()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The answer to an indicator that was not shown. Provider errors carry no credential (see
/// [`ProviderError`]), so their text is safe to log and to answer with.
fn failure(id: &str, call: &'static str, error: IndicatorError) -> Failure {
    let message = error.to_string();
    let provider = match error {
        IndicatorError::NotSupported(_) => return ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported_by_channel", message).into(),
        IndicatorError::NoInboundMessage => return ApiError::new(StatusCode::CONFLICT, "no_inbound_message", message).into(),
        IndicatorError::NoReadToken(_) => return ApiError::new(StatusCode::CONFLICT, "read_token_unavailable", message).into(),
        IndicatorError::Provider(e) => e,
    };
    tracing::warn!(conversation = %id, call, error = %provider, "agent API: the provider did not show the indicator");
    match provider {
        ProviderError::RateLimited { retry_after, .. } => Failure {
            error: ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "provider_rate_limited", message),
            retry_after,
        },
        ProviderError::Unavailable { .. } | ProviderError::InvalidResponse { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_unavailable", message).into()
        }
        ProviderError::Unauthorized { code, .. } | ProviderError::Rejected { status: 403, code, .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_credentials_rejected", message).with(json!({ "providerCode": code })).into()
        }
        ProviderError::Rejected { code, .. } => ApiError::new(StatusCode::BAD_GATEWAY, "provider_rejected", message).with(json!({ "providerCode": code })).into(),
        ProviderError::NotFound { .. } | ProviderError::InvalidRequest { .. } | ProviderError::TooLarge { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_rejected", message).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;

    async fn answered(failure: Failure) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = failure.into_response();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn provider_failures_become_gateway_errors() {
        let operation = Operation::LineLoading;
        let cases = [
            (ProviderError::RateLimited { operation, retry_after: Some(Duration::from_millis(2500)) }, StatusCode::SERVICE_UNAVAILABLE, "provider_rate_limited", Some("3")),
            (ProviderError::Unavailable { operation, detail: "HTTP 503".into() }, StatusCode::BAD_GATEWAY, "provider_unavailable", None),
            (ProviderError::Unavailable { operation, detail: "timed out after 10s".into() }, StatusCode::BAD_GATEWAY, "provider_unavailable", None),
            (ProviderError::Unauthorized { operation, code: None, message: "Authentication failed".into() }, StatusCode::BAD_GATEWAY, "provider_credentials_rejected", None),
            (ProviderError::Rejected { operation, status: 400, code: None, message: "Invalid chatId".into() }, StatusCode::BAD_GATEWAY, "provider_rejected", None),
        ];
        for (error, status, code, retry_after) in cases {
            let (got, header, body) = answered(failure("c1", "typing", IndicatorError::Provider(error))).await;
            assert_eq!((got, body["error"].as_str(), header.as_deref()), (status, Some(code), retry_after), "{body}");
            assert!(body["message"].as_str().unwrap().starts_with("LINE loading animation: "), "{body}");
        }
    }

    #[tokio::test]
    async fn what_the_channel_cannot_do_is_said() {
        let (status, _, body) = answered(failure("c1", "read", IndicatorError::NotSupported("no read receipt"))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_IMPLEMENTED, Some("not_supported_by_channel")));
        let (status, _, body) = answered(failure("c1", "read", IndicatorError::NoReadToken("no token"))).await;
        assert_eq!((status, body["error"].as_str(), body["message"].as_str()), (StatusCode::CONFLICT, Some("read_token_unavailable"), Some("no token")));
        let (status, _, body) = answered(failure("c1", "typing", IndicatorError::NoInboundMessage)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("no_inbound_message")));
    }
}
