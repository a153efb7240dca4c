//! The agent API's error answer: one type that every handler and extractor returns, and that
//! turns into `{"error": "<code>", "message": "...", ...}` with its status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::gateway::clock::rfc3339;
use crate::gateway::conversations::actions::Refused;
use crate::gateway::conversations::attachments::Refusal;
use crate::gateway::conversations::templates::TemplateError;
use crate::gateway::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Fields beside `error` and `message` (an object).
    extra: Value,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra: json!({}) }
    }

    /// A 400 that names the field at fault.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with(json!({ "field": field }))
    }

    /// Adds fields to the answer.
    pub fn with(mut self, extra: Value) -> Self {
        self.extra = extra;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), self.extra) {
            body.extend(extra);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "agent API: the store failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the gateway cannot reach its store right now; retry")
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let message = r.to_string();
        let (status, code, extra) = match &r {
            Refused::Invalid { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request", json!({ "field": field })),
            Refused::ConversationNotFound => (StatusCode::NOT_FOUND, "conversation_not_found", json!({})),
            Refused::WorkstreamNotFound => (StatusCode::NOT_FOUND, "workstream_not_found", json!({})),
            Refused::AttachmentNotFound => (StatusCode::NOT_FOUND, "attachment_not_found", json!({})),
            Refused::ConversationClosed => (StatusCode::CONFLICT, "conversation_closed", json!({})),
            Refused::ClientMessageIdConflict => (StatusCode::CONFLICT, "client_message_id_conflict", json!({})),
            Refused::NotWithBot => (StatusCode::CONFLICT, "not_with_bot", json!({})),
            Refused::NotActive => (StatusCode::CONFLICT, "not_active", json!({})),
            Refused::NoWrapUp => (StatusCode::CONFLICT, "no_wrap_up", json!({})),
            Refused::QueueNotFound => (StatusCode::NOT_FOUND, "queue_not_found", json!({})),
            Refused::AgentUnknown => (StatusCode::CONFLICT, "agent_unknown", json!({})),
            Refused::AgentOffline => (StatusCode::CONFLICT, "agent_offline", json!({})),
            Refused::NotAMember => (StatusCode::CONFLICT, "not_a_member", json!({})),
            Refused::NotQualified => (StatusCode::CONFLICT, "not_qualified", json!({})),
            Refused::NoCapacity => (StatusCode::CONFLICT, "no_capacity", json!({})),
            Refused::AlreadyAssigned => (StatusCode::CONFLICT, "already_assigned", json!({})),
            Refused::WithBot => (StatusCode::CONFLICT, "with_bot", json!({})),
            Refused::NothingToPick => (StatusCode::NOT_FOUND, "nothing_to_pick", json!({})),
            Refused::Attachment(refusal) => match refusal {
                Refusal::NotAllowed => (StatusCode::FORBIDDEN, refusal.code(), json!({})),
                Refusal::TooLarge { max_bytes } => (StatusCode::PAYLOAD_TOO_LARGE, refusal.code(), json!({ "maxBytes": max_bytes })),
                Refusal::BlockedExtension { extension } => (StatusCode::UNPROCESSABLE_ENTITY, refusal.code(), json!({ "extension": extension })),
            },
            Refused::WindowClosed { closed_at_ms } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "session_window_closed",
                json!({
                    "windowClosedAt": rfc3339(*closed_at_ms),
                    "hint": "more than 24 hours passed since the customer's last message: send an approved template (\"template\": {\"name\": ...})",
                }),
            ),
            Refused::Template(e) => match e {
                TemplateError::NotFound { sendable } => (StatusCode::UNPROCESSABLE_ENTITY, "template_not_found", json!({ "templates": sendable })),
                TemplateError::LanguageUnavailable { languages } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "template_language_unavailable", json!({ "languages": languages }))
                }
                TemplateError::Variables { expected, missing, unexpected } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "template_variables",
                    json!({ "expected": expected, "missing": missing, "unexpected": unexpected }),
                ),
            },
            Refused::Store(e) => return ApiError::from(e.clone()),
        };
        ApiError::new(status, code, message).with(extra)
    }
}
