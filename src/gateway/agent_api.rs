//! The agent API on the gateway's internal port: what desks and bots call to answer customers,
//! take, close and escalate conversations, read them, and link customers to contacts. Described
//! by `agent-api.yaml` (served at `/openapi.yaml`).
//!
//! Every `/v1` call carries `Authorization: Bearer <token>`, a workstream's
//! `delivery.agentApiToken`; the caller acts on that workstream's conversations only. Another
//! workstream's conversation answers 404, as if it did not exist. Errors are JSON:
//! `{"error": "<code>", "message": "...", ...}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::actions::{self, Refused, SendRequest, Sent};
use super::attachments::{self, Refusal};
use super::clock::Clock;
use super::conversation::AgentRef;
use super::media::{self, Upload};
use super::metrics::Metrics;
use super::processor::Wakers;
use super::runtime::{Provider, Runtime};
use super::store::{Store, StoreError};
use super::templates::TemplateError;
use crate::signing::constant_time_eq;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("agent-api.yaml");

/// What the handlers need.
pub struct AgentApiState {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// The time the WhatsApp window is judged by.
    pub clock: Clock,
    /// Wakes the sender and delivery after an action.
    pub wakers: Wakers,
    /// Counts requests.
    pub metrics: Arc<Metrics>,
    /// Fetches customers' attachments that the provider serves by URL (Twilio).
    pub http: reqwest::Client,
}

/// The router of the agent API port.
pub fn router(state: Arc<AgentApiState>) -> Router {
    Router::new()
        .route("/openapi.yaml", get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }))
        .route("/v1/conversations/{id}", get(get_conversation))
        .route("/v1/conversations/{id}/messages", post(send_message))
        .route("/v1/conversations/{id}/attachments", post(upload))
        .route("/v1/conversations/{id}/messages/{message_id}/attachments/{index}", get(customer_attachment))
        .route("/v1/conversations/{id}/assign", post(assign))
        .route("/v1/conversations/{id}/close", post(close))
        .route("/v1/conversations/{id}/escalate", post(escalate))
        .route("/v1/workstreams/{workstream}/customers/{customer_id}/contact", put(link_contact).delete(unlink_contact))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /openapi.yaml", json!({})) })
        .with_state(state)
}

/// An error answer.
fn error(status: StatusCode, code: &str, message: &str, extra: Value) -> Response {
    let mut body = json!({ "error": code, "message": message });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

fn refused(r: Refused) -> Response {
    let message = r.to_string();
    let (status, code, extra) = match &r {
        Refused::Invalid { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request", json!({ "field": field })),
        Refused::ConversationNotFound => (StatusCode::NOT_FOUND, "conversation_not_found", json!({})),
        Refused::WorkstreamNotFound => (StatusCode::NOT_FOUND, "workstream_not_found", json!({})),
        Refused::AttachmentNotFound => (StatusCode::NOT_FOUND, "attachment_not_found", json!({})),
        Refused::ConversationClosed => (StatusCode::CONFLICT, "conversation_closed", json!({})),
        Refused::ClientMessageIdConflict => (StatusCode::CONFLICT, "client_message_id_conflict", json!({})),
        Refused::NotWithBot => (StatusCode::CONFLICT, "not_with_bot", json!({})),
        Refused::Attachment(refusal) => match refusal {
            Refusal::NotAllowed => (StatusCode::FORBIDDEN, refusal.code(), json!({})),
            Refusal::TooLarge { max_bytes } => (StatusCode::PAYLOAD_TOO_LARGE, refusal.code(), json!({ "maxBytes": max_bytes })),
            Refusal::BlockedExtension { extension } => (StatusCode::UNPROCESSABLE_ENTITY, refusal.code(), json!({ "extension": extension })),
        },
        Refused::WindowClosed { closed_at_ms } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "session_window_closed",
            json!({
                "windowClosedAt": jiff::Timestamp::from_millisecond(*closed_at_ms).map(|t| t.to_string()).unwrap_or_default(),
                "hint": "more than 24 hours passed since the customer's last message: send an approved template (\"template\": {\"name\": ...})",
            }),
        ),
        Refused::Template(e) => match e {
            TemplateError::NotFound => (StatusCode::UNPROCESSABLE_ENTITY, "template_not_found", json!({})),
            TemplateError::LanguageUnavailable { languages } => (StatusCode::UNPROCESSABLE_ENTITY, "template_language_unavailable", json!({ "languages": languages })),
            TemplateError::Variables { expected, missing, unexpected } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "template_variables",
                json!({ "expected": expected, "missing": missing, "unexpected": unexpected }),
            ),
        },
        Refused::Store(e) => return unavailable(e),
    };
    error(status, code, &message, extra)
}

fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "agent API: the store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the gateway cannot reach its store right now; retry", json!({}))
}

/// The caller: the current configuration and the workstreams its token is for.
struct Caller {
    rt: Arc<Runtime>,
    workstreams: Vec<String>,
}

/// Checks the bearer token against every workstream's (in constant time, all of them, so the
/// answer's timing does not tell which matched).
fn authenticate(state: &AgentApiState, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(rt) = state.runtime.borrow().clone() else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the gateway has no configuration yet", json!({})));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "an Authorization: Bearer <agent API token> header is required", json!({})));
    };
    let matches: Vec<bool> = rt.workstreams.iter().map(|ws| constant_time_eq(ws.agent_api_token.expose().as_bytes(), token.as_bytes())).collect();
    let workstreams: Vec<String> = rt.workstreams.iter().zip(matches).filter(|(_, m)| *m).map(|(ws, _)| ws.config.name.clone()).collect();
    if workstreams.is_empty() {
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "the token is not any workstream's agent API token", json!({})));
    }
    Ok(Caller { rt, workstreams })
}

/// Parses a JSON body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_request", &format!("the body is not a valid request: {e}"), json!({})))
}

impl AgentApiState {
    fn count(&self, operation: &'static str, response: &Response) {
        self.metrics.agent_request(operation, response.status().as_u16());
    }

    fn wake(&self) {
        self.wakers.sender.notify_one();
        self.wakers.delivery.notify_one();
    }

    /// Runs an action in a store job and wakes the workers it may have given work.
    async fn act<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<R, Refused> + Send + 'static,
    ) -> Result<R, Response> {
        // The action's own refusals leave the transaction unchanged (they come before any
        // write), so they travel inside Ok and only a store failure rolls back.
        let outcome = self.store.run(move |c| Ok(f(c))).await.map_err(|e| unavailable(&e))?;
        let r = outcome.map_err(refused)?;
        self.wake();
        Ok(r)
    }
}

fn answer(state: &AgentApiState, operation: &'static str, response: Result<Response, Response>) -> Response {
    let response = response.unwrap_or_else(|e| e);
    state.count(operation, &response);
    response
}

async fn get_conversation(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let view = state.store.read(move |c| Ok(actions::view(c, &caller.workstreams, &id))).await.map_err(|e| unavailable(&e))?.map_err(refused)?;
        Ok((StatusCode::OK, axum::Json(view)).into_response())
    }
    .await;
    answer(&state, "getConversation", result)
}

async fn send_message(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let request: SendRequest = parse(&body)?;
        let now = state.clock.now_ms();
        let sent = state.act(move |c| actions::send(c, &caller.rt, &caller.workstreams, &id, &request, now)).await?;
        Ok(match sent {
            Sent::New(message) => (StatusCode::ACCEPTED, axum::Json(json!({ "message": message }))).into_response(),
            Sent::Repeat(message) => (StatusCode::OK, axum::Json(json!({ "message": message }))).into_response(),
        })
    }
    .await;
    answer(&state, "sendMessage", result)
}

/// Query of an upload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadQuery {
    file_name: Option<String>,
}

async fn upload(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, Query(query): Query<UploadQuery>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let file_name = query.file_name.filter(|n| !n.trim().is_empty() && !n.contains('/')).ok_or_else(|| {
            error(StatusCode::BAD_REQUEST, "invalid_request", "fileName: the query parameter fileName (without '/') is required", json!({ "field": "fileName" }))
        })?;
        let conv_id = id.clone();
        let allowed = caller.workstreams.clone();
        let conv = state.store.read(move |c| Ok(actions::view(c, &allowed, &conv_id).map(|v| v.conversation))).await.map_err(|e| unavailable(&e))?.map_err(refused)?;
        let ws = caller.rt.workstream(&conv.workstream).ok_or_else(|| refused(Refused::ConversationNotFound))?;
        let policy = &ws.config.file_attachments;
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        attachments::check_agent(policy, Some(&file_name), None, declared).map_err(|r| refused(Refused::Attachment(r)))?;
        let limit = attachments::max_bytes(policy);
        let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(|_| refused(Refused::Attachment(Refusal::TooLarge { max_bytes: limit })))?;
        if bytes.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "invalid_request", "the file is empty", json!({ "field": "body" })));
        }
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_owned();
        let upload_id = uuid::Uuid::new_v4().to_string();
        let upload = Upload {
            url: media::public_url(&caller.rt.config.account.callback_url, &upload_id, &file_name),
            id: upload_id,
            file_name,
            content_type,
            size: bytes.len() as u64,
        };
        let stored = upload.clone();
        let now = state.clock.now_ms();
        let workstream = conv.workstream.clone();
        state.store.run(move |c| media::store(c, &stored, &workstream, &conv.id, &bytes, now)).await.map_err(|e| unavailable(&e))?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "attachment": upload }))).into_response())
    }
    .await;
    answer(&state, "uploadAttachment", result)
}

async fn customer_attachment(
    State(state): State<Arc<AgentApiState>>,
    Path((id, message_id, index)): Path<(String, String, usize)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let allowed = caller.workstreams.clone();
        let (workstream, message) =
            state.store.read(move |c| Ok(actions::inbound_message(c, &allowed, &id, &message_id))).await.map_err(|e| unavailable(&e))?.map_err(refused)?;
        let attachment = message.attachments.get(index).ok_or_else(|| refused(Refused::AttachmentNotFound))?;
        let limit = caller.rt.workstream(&workstream).map_or(0, |ws| attachments::max_bytes(&ws.config.file_attachments));
        let fetched = match (&caller.rt.provider, &attachment.url) {
            (_, Some(url)) => fetch(&state.http, url, limit).await,
            (Provider::Line { client, .. }, None) => {
                client.message_content(&message.id, limit).await.map(|c| (c.content_type, c.bytes)).map_err(|e| e.to_string())
            }
            (Provider::Twilio { .. }, None) => return Err(refused(Refused::AttachmentNotFound)),
        };
        let (content_type, bytes) = fetched.map_err(|e| error(StatusCode::BAD_GATEWAY, "provider_unavailable", &format!("cannot fetch the attachment: {e}"), json!({})))?;
        let content_type = content_type.or_else(|| attachment.content_type.clone()).unwrap_or_else(|| "application/octet-stream".to_owned());
        Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
    }
    .await;
    answer(&state, "getCustomerAttachment", result)
}

/// Fetches a file by URL, refusing more than `limit` bytes.
async fn fetch(http: &reqwest::Client, url: &str, limit: u64) -> Result<(Option<String>, Vec<u8>), String> {
    let mut response = http.get(url).send().await.map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > limit {
            return Err(format!("larger than fileAttachments.maxBytes ({limit} bytes)"));
        }
    }
    Ok((content_type, bytes))
}

/// Body of an assignment.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRequest {
    agent: AgentRef,
}

async fn assign(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let request: AssignRequest = parse(&body)?;
        let now = state.clock.now_ms();
        let conv = state.act(move |c| actions::assign(c, &caller.rt, &caller.workstreams, &id, request.agent, now)).await?;
        Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
    }
    .await;
    answer(&state, "assignConversation", result)
}

/// Body of a close.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    /// Kept in the gateway's log only; the conversation's reason is `agent`.
    #[serde(default)]
    reason: Option<String>,
}

async fn close(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let request: CloseRequest = parse(&body)?;
        let now = state.clock.now_ms();
        let conv_id = id.clone();
        let conv = state.act(move |c| actions::close(c, &caller.rt, &caller.workstreams, &conv_id, now)).await?;
        tracing::info!(conversation = %id, reason = request.reason.as_deref().unwrap_or(""), "conversation closed through the agent API");
        Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
    }
    .await;
    answer(&state, "closeConversation", result)
}

/// Body of an escalation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateRequest {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

async fn escalate(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let request: EscalateRequest = parse(&body)?;
        let now = state.clock.now_ms();
        let conv = state.act(move |c| actions::escalate(c, &caller.rt, &caller.workstreams, &id, request.summary, request.attributes, now)).await?;
        Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
    }
    .await;
    answer(&state, "escalateConversation", result)
}

/// Body of a contact link.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContactRequest {
    contact_id: String,
}

async fn link_contact(State(state): State<Arc<AgentApiState>>, Path((workstream, customer_id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        let request: ContactRequest = parse(&body)?;
        if request.contact_id.trim().is_empty() || request.contact_id.chars().count() > 256 {
            return Err(refused(Refused::Invalid { field: "contactId", message: "must be 1 to 256 characters".to_owned() }));
        }
        if !caller.workstreams.contains(&workstream) {
            return Err(refused(Refused::WorkstreamNotFound));
        }
        let now = state.clock.now_ms();
        let (ws, customer, contact) = (workstream.clone(), customer_id.clone(), request.contact_id.clone());
        state.act(move |c| actions::link_contact(c, &ws, &customer, Some(&contact), now)).await?;
        Ok((StatusCode::OK, axum::Json(json!({ "workstream": workstream, "customerId": customer_id, "contactId": request.contact_id }))).into_response())
    }
    .await;
    answer(&state, "setCustomerContact", result)
}

async fn unlink_contact(State(state): State<Arc<AgentApiState>>, Path((workstream, customer_id)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = authenticate(&state, &headers)?;
        if !caller.workstreams.contains(&workstream) {
            return Err(refused(Refused::WorkstreamNotFound));
        }
        let now = state.clock.now_ms();
        state.act(move |c| actions::link_contact(c, &workstream, &customer_id, None, now)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    answer(&state, "deleteCustomerContact", result)
}
