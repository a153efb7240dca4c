//! The agent API on the gateway's internal port: what desks and bots call to answer customers,
//! take, close and escalate conversations, read them, and link customers to contacts. Described
//! by `agent-api.yaml` (served at `/openapi.yaml`).
//!
//! Every `/v1` call carries `Authorization: Bearer <token>`, a workstream's
//! `delivery.agentApiToken` ([`caller::Caller`]); the caller acts on that workstream's
//! conversations only. Another workstream's conversation answers 404, as if it did not exist.
//! Errors are JSON ([`error::ApiError`]): `{"error": "<code>", "message": "...", ...}`.

pub mod body;
pub mod caller;
pub mod distribution;
pub mod error;
pub mod indicators;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use body::JsonBody;
use caller::Caller;
use error::ApiError;
use crate::gateway::clock::Clock;
use crate::gateway::conversations::actions::{self, Refused, SendRequest, Sent};
use crate::gateway::conversations::attachments::{self, Refusal};
use crate::gateway::conversations::templates;
use crate::gateway::metrics::{AssignedBy, Metrics};
use crate::gateway::model::conversation::AgentRef;
use crate::gateway::model::upload::{Upload, public_url};
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{Store, StoreError, Tx};
use crate::gateway::workers::Wakers;

/// Attempts at an action that the database gives up for a concurrent one.
const CONTENDED_ATTEMPTS: u32 = 5;
/// Pause before the next attempt, times the attempts so far.
const CONTENDED_PAUSE: Duration = Duration::from_millis(10);

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
    /// Fetches customers' attachments by URL for a channel that leaves it to a plain GET (a
    /// LINE external content provider's).
    pub http: reqwest::Client,
    /// An agent the desk has not reported for this long is Offline.
    pub presence_ttl: std::time::Duration,
}

/// The router of the agent API port.
pub fn router(state: Arc<AgentApiState>) -> Router {
    let counted = |operation: &'static str, route: MethodRouter<Arc<AgentApiState>>| {
        route.layer(middleware::from_fn_with_state((Arc::clone(&state.metrics), operation), count))
    };
    Router::new()
        .route("/openapi.yaml", get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }))
        .route("/v1/conversations", counted("listConversations", get(list_conversations)))
        .route("/v1/conversations/{id}", counted("getConversation", get(get_conversation)))
        .route("/v1/conversations/{id}/messages", counted("sendMessage", post(send_message)))
        .route("/v1/conversations/{id}/attachments", counted("uploadAttachment", post(upload)))
        .route("/v1/conversations/{id}/messages/{message_id}/attachments/{index}", counted("getCustomerAttachment", get(customer_attachment)))
        .route("/v1/conversations/{id}/assign", counted("assignConversation", post(assign)))
        .route("/v1/conversations/{id}/close", counted("closeConversation", post(close)))
        .route("/v1/conversations/{id}/escalate", counted("escalateConversation", post(escalate)))
        .route("/v1/conversations/{id}/wait", counted("putConversationAside", post(distribution::wait)))
        .route("/v1/conversations/{id}/wrap-up-done", counted("endWrapUp", post(distribution::wrap_up_done)))
        .route("/v1/agents", counted("listAgents", get(distribution::list)))
        .route("/v1/conversations/{id}/pick", counted("pickConversation", post(distribution::pick)))
        .route("/v1/conversations/{id}/transfer", counted("transferConversation", post(distribution::transfer)))
        .route("/v1/workstreams/{workstream}/templates", counted("listTemplates", get(list_templates)))
        .route("/v1/workstreams/{workstream}/queues/{queue}", counted("getQueue", get(distribution::queue)))
        .route("/v1/workstreams/{workstream}/queues/{queue}/pick", counted("pickNextConversation", post(distribution::pick_next)))
        .route("/v1/agents/{agent_id}/presence", counted("reportPresence", put(distribution::presence)))
        .route("/v1/conversations/{id}/read", counted("markConversationRead", post(indicators::read)))
        .route("/v1/conversations/{id}/typing", counted("showTyping", post(indicators::typing)))
        .route(
            "/v1/workstreams/{workstream}/customers/{customer_id}/contact",
            counted("setCustomerContact", put(link_contact)).merge(counted("deleteCustomerContact", axum::routing::delete(unlink_contact))),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see /openapi.yaml") })
        .with_state(state)
}

/// Counts a request by its operation (the OpenAPI operationId) and answer status.
async fn count(State((metrics, operation)): State<(Arc<Metrics>, &'static str)>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    metrics.agent_request(operation, response.status().as_u16());
    response
}

impl AgentApiState {
    /// Runs an action in a store job and wakes the workers it may have given work.
    /// An action the database gave up for a concurrent one (a PostgreSQL deadlock's victim: the
    /// writers' group commit puts several jobs in one transaction, so replicas cannot always take
    /// rows in one order) is tried again, up to [`CONTENDED_ATTEMPTS`] in all; nothing of a
    /// given-up attempt was kept.
    async fn act<R, F>(&self, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, Refused> + Clone + Send + 'static,
    {
        let mut attempt = 1;
        // The action's own refusals leave the transaction unchanged (they come before any
        // write), so they travel inside Ok and only a store failure rolls back.
        let r = loop {
            let f = f.clone();
            match self.store.run(move |tx| Ok(f(tx))).await {
                Err(StoreError::Contended(e)) if attempt < CONTENDED_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "agent API: the database gave the action up for a concurrent one; trying again");
                    tokio::time::sleep(CONTENDED_PAUSE * attempt).await;
                    attempt += 1;
                }
                r => break r,
            }
        }??;
        self.wakers.sender.notify_one();
        self.wakers.delivery.notify_one();
        Ok(r)
    }

    /// Runs a query that changes nothing.
    async fn look<R: Send + 'static>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, Refused> + Send + 'static) -> Result<R, ApiError> {
        Ok(self.store.read(move |tx| Ok(f(tx))).await??)
    }
}

async fn list_conversations(
    State(state): State<Arc<AgentApiState>>,
    caller: Caller,
    query: Result<Query<actions::ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let conversations = state.look(move |tx| actions::list(tx, &caller.workstreams, &query)).await?;
    Ok((StatusCode::OK, axum::Json(json!({ "conversations": conversations }))).into_response())
}

/// The templates the workstream can send, for a desk to offer once the WhatsApp window closed.
async fn list_templates(Path(workstream): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.workstreams.contains(&workstream) {
        return Err(Refused::WorkstreamNotFound.into());
    }
    Ok((StatusCode::OK, axum::Json(json!({ "templates": templates::offered(&caller.rt.config.templates) }))).into_response())
}

async fn get_conversation(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let view = state.look(move |tx| actions::view(tx, &caller.workstreams, &id)).await?;
    Ok((StatusCode::OK, axum::Json(view)).into_response())
}

async fn send_message(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<SendRequest>) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let sent = state.act(move |tx| actions::send(tx, &caller.rt, &caller.workstreams, &id, &request, now)).await?;
    Ok(match sent {
        Sent::New(message) => (StatusCode::ACCEPTED, axum::Json(json!({ "message": message }))).into_response(),
        Sent::Repeat(message) => (StatusCode::OK, axum::Json(json!({ "message": message }))).into_response(),
    })
}

/// Query of an upload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadQuery {
    file_name: Option<String>,
}

async fn upload(
    State(state): State<Arc<AgentApiState>>,
    Path(id): Path<String>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let file_name = query
        .file_name
        .filter(|n| !n.trim().is_empty() && !n.contains('/'))
        .ok_or_else(|| ApiError::invalid("fileName", "fileName: the query parameter fileName (without '/') is required"))?;
    let allowed = caller.workstreams.clone();
    let conv = state.look(move |tx| actions::view(tx, &allowed, &id).map(|v| v.conversation)).await?;
    let ws = caller.rt.workstream(&conv.workstream).ok_or(Refused::ConversationNotFound)?;
    let policy = &ws.config.file_attachments;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    attachments::check_agent(policy, Some(&file_name), None, declared).map_err(Refused::Attachment)?;
    let limit = attachments::max_bytes(policy);
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX)).await.map_err(|e| {
        if crate::serve::body_timed_out(&e) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the file did not arrive within the body read timeout")
        } else {
            Refused::Attachment(Refusal::TooLarge { max_bytes: limit }).into()
        }
    })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid("body", "the file is empty"));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_owned();
    let upload_id = uuid::Uuid::new_v4().to_string();
    let upload = Upload {
        url: public_url(&caller.rt.config.account.callback_url, &upload_id, &file_name),
        id: upload_id,
        file_name,
        content_type,
        size: bytes.len() as u64,
    };
    let stored = upload.clone();
    let now = state.clock.now_ms();
    state.store.run(move |tx| tx.store_upload(&stored, &conv.workstream, &conv.id, &bytes, now)).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "attachment": upload }))).into_response())
}

async fn customer_attachment(
    State(state): State<Arc<AgentApiState>>,
    Path((id, message_id, index)): Path<(String, String, usize)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let allowed = caller.workstreams.clone();
    let (workstream, message) = state.look(move |tx| actions::inbound_message(tx, &allowed, &id, &message_id)).await?;
    let attachment = message.attachments.get(index).ok_or(Refused::AttachmentNotFound)?;
    let limit = caller.rt.workstream(&workstream).map_or(0, |ws| attachments::max_bytes(&ws.config.file_attachments));
    let channel = caller.rt.provider.channel();
    let fetched = match &attachment.url {
        Some(url) => match channel.media(url, limit) {
            Some(media) => media.await,
            None => fetch(&state.http, url, limit).await,
        },
        None => match channel.content(&message, limit) {
            Some(content) => content.await,
            None => return Err(Refused::AttachmentNotFound.into()),
        },
    };
    let (content_type, bytes) =
        fetched.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "provider_unavailable", format!("cannot fetch the attachment: {e}")))?;
    let content_type = content_type.or_else(|| attachment.content_type.clone()).unwrap_or_else(|| "application/octet-stream".to_owned());
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
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
/// Body of an assignment: the agent by `agentId` (and `name`), or as `agent` {id, name}.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AssignRequest {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    agent: Option<AgentRef>,
    /// Assign over the agent's capacity (or while they are Offline).
    #[serde(default)]
    force: bool,
}

async fn assign(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<AssignRequest>) -> Result<Response, ApiError> {
    let at = distribution::moment(&state);
    let agent = match (request.agent_id, request.agent) {
        (Some(id), None) => AgentRef { id, name: request.name },
        (None, Some(agent)) => agent,
        _ => return Err(Refused::Invalid { field: "agentId", message: "give the agent as agentId (or as agent), once".to_owned() }.into()),
    };
    let conv = state.act(move |tx| actions::assign(tx, &caller.rt, &caller.workstreams, &id, agent, request.force, at)).await?;
    state.metrics.assigned(&conv.workstream, AssignedBy::Assign, conv.waited_ms(at.now));
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// Body of a close.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    /// Kept in the gateway's log only; the conversation's reason is `agent`.
    #[serde(default)]
    reason: Option<String>,
}

async fn close(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<CloseRequest>) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let conv_id = id.clone();
    let conv = state.act(move |tx| actions::close(tx, &caller.rt, &caller.workstreams, &conv_id, now)).await?;
    state.wakers.distributor.notify_one();
    tracing::info!(conversation = %id, reason = request.reason.as_deref().unwrap_or(""), "conversation closed through the agent API");
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// Body of an escalation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalateRequest {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

async fn escalate(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<EscalateRequest>) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let conv = state.act(move |tx| actions::escalate(tx, &caller.rt, &caller.workstreams, &id, request.summary, request.attributes, now)).await?;
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// Body of a contact link.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContactRequest {
    contact_id: String,
}

async fn link_contact(
    State(state): State<Arc<AgentApiState>>,
    Path((workstream, customer_id)): Path<(String, String)>,
    caller: Caller,
    JsonBody(request): JsonBody<ContactRequest>,
) -> Result<Response, ApiError> {
    if request.contact_id.trim().is_empty() || request.contact_id.chars().count() > 256 {
        return Err(Refused::Invalid { field: "contactId", message: "must be 1 to 256 characters".to_owned() }.into());
    }
    if !caller.workstreams.contains(&workstream) {
        return Err(Refused::WorkstreamNotFound.into());
    }
    let now = state.clock.now_ms();
    let (ws, customer, contact) = (workstream.clone(), customer_id.clone(), request.contact_id.clone());
    state.act(move |tx| actions::link_contact(tx, &ws, &customer, Some(&contact), now)).await?;
    Ok((StatusCode::OK, axum::Json(json!({ "workstream": workstream, "customerId": customer_id, "contactId": request.contact_id }))).into_response())
}

async fn unlink_contact(State(state): State<Arc<AgentApiState>>, Path((workstream, customer_id)): Path<(String, String)>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.workstreams.contains(&workstream) {
        return Err(Refused::WorkstreamNotFound.into());
    }
    let now = state.clock.now_ms();
    state.act(move |tx| actions::link_contact(tx, &workstream, &customer_id, None, now)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::config::GatewayConfig;
    use crate::gateway::model::conversation::{Conversation, CustomerProfile, Routing, State as ConversationState};
    use crate::gateway::store::Durability;
    use crate::providers::{ClientConfig, ProviderEndpoints, Providers};

    const SUPPORT_TOKEN: &str = "support-agent-token";
    const SALES_TOKEN: &str = "sales-agent-token";
    const T0: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    /// A Twilio account with two WhatsApp workstreams: `support` (attachments up to 1,000
    /// bytes, no .exe; a survey with a template) and `sales` (agents may not attach), each with
    /// its own agent token.
    fn runtime() -> Runtime {
        let workstream = |name: &str, number: &str, token_env: &str, extra: Value| {
            let mut ws = json!({
                "name": name, "generation": 1, "channel": {"type": "WhatsApp", "numberName": name, "number": number},
                "language": "en", "distribution": {"mode": "Push", "fallbackQueue": "general", "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
                "queues": [{"name": "general"}],
                "automatedMessages": [{"trigger": "ConversationEnded", "locale": "en", "text": "Bye {CustomerName}"}],
                "delivery": {"url": "http://desk", "signingSecret": {"env": "DESK"}, "agentApiToken": {"env": token_env}},
            });
            ws.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            ws
        };
        let config: GatewayConfig = serde_json::from_value(json!({
            "version": 1,
            "account": {"namespace": "ns", "name": "acct", "callbackPath": "/switchboard/ns/acct/webhook", "callbackUrl": "https://chat.example/switchboard/ns/acct/webhook",
                        "provider": {"type": "TwilioWhatsApp", "accountSid": "AC1", "numbers": []}},
            "workstreams": [
                workstream("support", "+14155550100", "SUPPORT_TOKEN", json!({
                    "fileAttachments": {"customersCanSend": true, "agentsCanSend": true, "maxBytes": 1000, "blockedExtensions": [".exe"]},
                    "postConversationSurvey": {"enabled": true, "url": "https://survey.example/{ConversationId}", "text": "Rate us: {SurveyUrl}", "templateRef": {"name": "survey"}},
                })),
                workstream("sales", "+14155550101", "SALES_TOKEN", json!({
                    "fileAttachments": {"customersCanSend": true, "agentsCanSend": false, "maxBytes": 1000},
                    "postConversationSurvey": {"enabled": true, "url": "https://survey.example/{ConversationId}", "text": "Rate us: {SurveyUrl}"},
                })),
            ],
            "templates": [
                {"name": "order-update", "templateName": "order_update", "category": "Utility", "defaultLanguage": "en",
                 "localizations": [{"language": "en", "body": "Hi {{1}}, order {{2}} shipped", "contentSid": "HX00000000000000000000000000000001", "variables": {"1": "Ann", "2": "A-1"}}]},
                {"name": "survey", "templateName": "survey", "category": "Utility", "defaultLanguage": "en",
                 "localizations": [{"language": "en", "body": "How did we do? {{1}}", "contentSid": "HX00000000000000000000000000000002", "variables": {"1": "https://x"}}]},
            ],
        }))
        .unwrap();
        let providers = Providers::new(ProviderEndpoints::all_at("http://127.0.0.1:9".parse().unwrap()), ClientConfig::default()).unwrap();
        let env = |name: &str| Some(match name {
            "SUPPORT_TOKEN" => SUPPORT_TOKEN.to_owned(),
            "SALES_TOKEN" => SALES_TOKEN.to_owned(),
            _ => "secret".to_owned(),
        });
        Runtime::build(config, &env, &providers).unwrap()
    }

    struct Api {
        router: Router,
        store: Store,
        time: Arc<AtomicI64>,
        _dir: tempfile::TempDir,
    }

    impl Api {
        fn new() -> Api {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::sqlite(&dir.path().join("s.db"), Durability::Process, Box::new(|_, _| {})).unwrap();
            let (_, runtime) = watch::channel(Some(Arc::new(runtime())));
            let time = Arc::new(AtomicI64::new(T0));
            let state = AgentApiState {
                store: store.clone(),
                runtime,
                clock: Clock::fixed(Arc::clone(&time)),
                wakers: Wakers::default(),
                metrics: Arc::new(Metrics::default()),
                http: reqwest::Client::new(),
                presence_ttl: std::time::Duration::from_secs(60),
            };
            Api { router: router(Arc::new(state)), store, time, _dir: dir }
        }

        /// A conversation of `workstream` whose customer last wrote at `T0`.
        async fn conversation(&self, workstream: &str, customer: &str) -> String {
            let conv = Conversation {
                id: uuid::Uuid::new_v4().to_string(),
                workstream: workstream.into(),
                channel: "WhatsApp".into(),
                state: ConversationState::Open,
                handler: Default::default(),
                customer: CustomerProfile { id: format!("whatsapp:{customer}"), display_name: Some("Ann".into()), ..CustomerProfile::default() },
                routing: Routing { queue: Some("general".into()), ..Routing::default() },
                created_ms: T0,
                last_customer_ms: T0,
                last_activity_ms: T0,
                agent: None,
                held_until_ms: None,
                wrap_up_ms: None,
                last_agent: None,
                bot: None,
                closed_ms: None,
                close_reason: None,
                queued_ms: Some(T0),
            };
            let id = conv.id.clone();
            self.store.run(move |tx| tx.insert_conversation(&conv)).await.unwrap();
            id
        }

        async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
            let mut request = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let response = self.router.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }

        async fn send(&self, conv: &str, body: Value) -> (StatusCode, Value) {
            self.call("POST", &format!("/v1/conversations/{conv}/messages"), Some(SUPPORT_TOKEN), body).await
        }

        /// The contents of the queued messages, as JSON, oldest first.
        async fn queued_contents(&self) -> Vec<String> {
            let sends = self.store.read(|tx| tx.queued_sends()).await.unwrap();
            sends.iter().map(|s| serde_json::to_string(&s.contents).unwrap()).collect()
        }

        async fn outbox(&self) -> Vec<crate::gateway::model::queue::QueuedEvent> {
            self.store.read(|tx| tx.queued_events()).await.unwrap()
        }
    }

    #[tokio::test]
    async fn free_form_messages_need_the_window_and_templates_do_not() {
        let api = Api::new();
        let conv = api.conversation("support", "+905551").await;
        api.time.store(T0 + 23 * HOUR, Ordering::Relaxed);
        let (status, body) = api.send(&conv, json!({"clientMessageId": "m1", "text": "hello"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["message"]["status"], "queued");

        api.time.store(T0 + 24 * HOUR, Ordering::Relaxed);
        let (status, body) = api.send(&conv, json!({"clientMessageId": "m2", "text": "still there?"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"], "session_window_closed");
        assert_eq!(body["windowClosedAt"], "2023-11-15T22:13:20Z");
        assert!(body["hint"].as_str().unwrap().contains("template"));
        let (status, body) = api.send(&conv, json!({"clientMessageId": "m3", "attachment": {"url": "https://files.example/a.png"}})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("session_window_closed")), "attachments are free-form too");

        let template = json!({"clientMessageId": "m4", "template": {"name": "order-update", "variables": {"1": "Ann", "2": "A-7"}}});
        let (status, body) = api.send(&conv, template).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["message"]["contents"][0]["text"], "Hi Ann, order A-7 shipped");
        assert_eq!(body["message"]["contents"][0]["contentSid"], "HX00000000000000000000000000000001");

        let (status, body) = api.send(&conv, json!({"clientMessageId": "m5", "template": {"name": "order-update", "variables": {"1": "Ann"}}})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template_variables")));
        assert_eq!(body["missing"], json!(["2"]));
        let (status, body) = api.send(&conv, json!({"clientMessageId": "m6", "template": {"name": "not-approved"}})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template_not_found")));
        let listed = json!([
            {"name": "order-update", "templateName": "order_update", "languages": ["en"]},
            {"name": "survey", "templateName": "survey", "languages": ["en"]},
        ]);
        assert_eq!(body["templates"], listed, "{body}");
        assert!(body["message"].as_str().unwrap().ends_with("sendable: order-update (order_update: en), survey (survey: en)"), "{body}");
        let by_provider_name = json!({"clientMessageId": "m8", "template": {"name": "order_update", "variables": {"1": "Ann", "2": "A-8"}}});
        let (status, body) = api.send(&conv, by_provider_name).await;
        assert_eq!(status, StatusCode::ACCEPTED, "the WhatsApp templateName is accepted too: {body}");
        assert_eq!(body["message"]["contents"][0]["name"], "order-update");
        let (status, body) = api.send(&conv, json!({"clientMessageId": "m7", "template": {"name": "order-update", "language": "de", "variables": {}}})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("template_language_unavailable")));
        assert_eq!(api.queued_contents().await.len(), 3, "only the accepted messages are queued");
    }

    #[tokio::test]
    async fn the_same_client_message_id_sends_once() {
        let api = Api::new();
        let conv = api.conversation("support", "+905551").await;
        let request = json!({"clientMessageId": "same", "text": "hello"});
        let (first, a) = api.send(&conv, request.clone()).await;
        let (second, b) = api.send(&conv, request).await;
        assert_eq!((first, second), (StatusCode::ACCEPTED, StatusCode::OK));
        assert_eq!(a["message"]["id"], b["message"]["id"]);
        assert_eq!(api.queued_contents().await.len(), 1);
        let (status, body) = api.send(&conv, json!({"clientMessageId": "same", "text": "different"})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("client_message_id_conflict")));
        let other = api.conversation("support", "+905552").await;
        let (status, _) = api.send(&other, json!({"clientMessageId": "same", "text": "hello"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "client message IDs are per conversation");
    }

    #[tokio::test]
    async fn tokens_scope_callers_to_their_workstreams() {
        let api = Api::new();
        let sales = api.conversation("sales", "+905551").await;
        let path = format!("/v1/conversations/{sales}");
        let (status, body) = api.call("GET", &path, None, Value::Null).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
        assert_eq!(api.call("GET", &path, Some("wrong"), Value::Null).await.0, StatusCode::UNAUTHORIZED);
        let (status, body) = api.call("GET", &path, Some(SUPPORT_TOKEN), Value::Null).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("conversation_not_found")), "another workstream's conversation does not exist");
        let (status, body) = api.call("GET", &path, Some(SALES_TOKEN), Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["conversation"]["workstream"], "sales");
        let contact = "/v1/workstreams/sales/customers/whatsapp:+905551/contact";
        assert_eq!(api.call("PUT", contact, Some(SUPPORT_TOKEN), json!({"contactId": "C-1"})).await.1["error"], "workstream_not_found");
        let (status, body) = api.call("PUT", contact, Some(SALES_TOKEN), json!({"contactId": "C-1"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = api.call("GET", &path, Some(SALES_TOKEN), Value::Null).await;
        assert_eq!((body["conversation"]["customer"]["contactId"].as_str(), body["conversation"]["customer"]["isKnown"].as_bool()), (Some("C-1"), Some(true)));
        for (_, body) in [api.call("GET", &path, Some(SALES_TOKEN), Value::Null).await, api.call("GET", &path, None, Value::Null).await] {
            assert!(!body.to_string().contains(SALES_TOKEN) && !body.to_string().contains(SUPPORT_TOKEN));
        }
    }

    #[tokio::test]
    async fn attachments_follow_the_workstream_policy() {
        let api = Api::new();
        let support = api.conversation("support", "+905551").await;
        let sales = api.conversation("sales", "+905552").await;
        let file = |name: &str, size: u64| json!({"clientMessageId": name, "attachment": {"url": format!("https://files.example/{name}"), "size": size}});
        let (status, body) = api.call("POST", &format!("/v1/conversations/{sales}/messages"), Some(SALES_TOKEN), file("a.png", 10)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("attachments_not_allowed")));
        let (status, body) = api.send(&support, file("big.png", 1001)).await;
        assert_eq!((status, body["error"].as_str(), body["maxBytes"].as_u64()), (StatusCode::PAYLOAD_TOO_LARGE, Some("attachment_too_large"), Some(1000)));
        let (status, body) = api.send(&support, file("setup.EXE", 10)).await;
        assert_eq!((status, body["error"].as_str(), body["extension"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("blocked_extension"), Some(".exe")));
        let (status, body) = api.send(&support, json!({"clientMessageId": "x", "attachment": {"url": "ftp://files.example/a.png"}})).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("attachment.url")));
        assert_eq!(api.send(&support, file("ok.png", 1000)).await.0, StatusCode::ACCEPTED);

        let upload = |bytes: usize, name: &str| {
            Request::builder()
                .method("POST")
                .uri(format!("/v1/conversations/{support}/attachments?fileName={name}"))
                .header(header::AUTHORIZATION, format!("Bearer {SUPPORT_TOKEN}"))
                .header(header::CONTENT_TYPE, "application/pdf")
                .body(Body::from(vec![b'x'; bytes]))
                .unwrap()
        };
        let response = api.router.clone().oneshot(upload(1001, "r.pdf")).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let response = api.router.clone().oneshot(upload(10, "run.exe")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let response = api.router.clone().oneshot(upload(10, "r.pdf")).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        let url = body["attachment"]["url"].as_str().unwrap();
        assert!(url.starts_with("https://chat.example/switchboard/ns/acct/media/") && url.ends_with("/r.pdf"), "{url}");
        let id = body["attachment"]["id"].as_str().unwrap().to_owned();
        let stored = api.store.read(move |tx| tx.upload(&id)).await.unwrap();
        assert_eq!(stored, Some(("application/pdf".to_owned(), vec![b'x'; 10])));
    }

    #[tokio::test]
    async fn closing_sends_the_survey_in_the_window_and_its_template_outside() {
        let api = Api::new();
        let inside = api.conversation("support", "+905551").await;
        let (status, body) = api.call("POST", &format!("/v1/conversations/{inside}/close"), Some(SUPPORT_TOKEN), json!({})).await;
        assert_eq!((status, body["conversation"]["state"].as_str(), body["conversation"]["closeReason"].as_str()), (StatusCode::OK, Some("Closed"), Some("agent")));
        assert_eq!(api.queued_contents().await, [format!(r#"[{{"type":"text","text":"Bye Ann"}},{{"type":"text","text":"Rate us: https://survey.example/{inside}"}}]"#)]);
        assert_eq!(api.call("POST", &format!("/v1/conversations/{inside}/close"), Some(SUPPORT_TOKEN), json!({})).await.0, StatusCode::OK);
        assert_eq!(api.queued_contents().await.len(), 1, "closing again sends nothing");
        let (status, body) = api.send(&inside, json!({"clientMessageId": "late", "text": "x"})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("conversation_closed")));

        api.time.store(T0 + 25 * HOUR, Ordering::Relaxed);
        let outside = api.conversation("support", "+905552").await;
        api.call("POST", &format!("/v1/conversations/{outside}/close"), Some(SUPPORT_TOKEN), json!({})).await;
        let contents: Value = serde_json::from_str(api.queued_contents().await.last().unwrap()).unwrap();
        assert_eq!(contents[0]["type"], "template");
        assert_eq!(contents[0]["variables"]["1"], format!("https://survey.example/{outside}"));

        let sales = api.conversation("sales", "+905553").await;
        api.call("POST", &format!("/v1/conversations/{sales}/close"), Some(SALES_TOKEN), json!({})).await;
        let skipped: Vec<String> = api.outbox().await.into_iter().filter(|e| e.event_type == "message.skipped").map(|e| e.body).collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}: ended (twice) and the template-less survey");
        let last: Value = serde_json::from_str(skipped.last().unwrap()).unwrap();
        assert_eq!((last["reason"].as_str(), last["message"]["triggers"][0].as_str()), (Some("session_window_closed"), Some("PostConversationSurvey")));
    }

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: Value = serde_yaml::from_str(OPENAPI).expect("agent-api.yaml is YAML");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/openapi.yaml", "get"),
            ("/v1/conversations", "get"),
            ("/v1/conversations/{id}", "get"),
            ("/v1/conversations/{id}/messages", "post"),
            ("/v1/conversations/{id}/attachments", "post"),
            ("/v1/conversations/{id}/messages/{messageId}/attachments/{index}", "get"),
            ("/v1/conversations/{id}/assign", "post"),
            ("/v1/conversations/{id}/close", "post"),
            ("/v1/conversations/{id}/escalate", "post"),
            ("/v1/conversations/{id}/read", "post"),
            ("/v1/conversations/{id}/typing", "post"),
            ("/v1/conversations/{id}/wait", "post"),
            ("/v1/conversations/{id}/wrap-up-done", "post"),
            ("/v1/agents", "get"),
            ("/v1/conversations/{id}/pick", "post"),
            ("/v1/conversations/{id}/transfer", "post"),
            ("/v1/workstreams/{workstream}/templates", "get"),
            ("/v1/workstreams/{workstream}/queues/{queue}", "get"),
            ("/v1/workstreams/{workstream}/queues/{queue}/pick", "post"),
            ("/v1/agents/{agentId}/presence", "put"),
            ("/v1/workstreams/{workstream}/customers/{customerId}/contact", "put"),
            ("/v1/workstreams/{workstream}/customers/{customerId}/contact", "delete"),
        ] {
            assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not in agent-api.yaml");
        }
        assert_eq!(paths.len(), 21, "agent-api.yaml describes routes the server does not have");
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let api = Api::new();
        let conv = api.conversation("support", "+905551").await;
        for (body, field) in [
            (json!({"clientMessageId": "", "text": "x"}), "clientMessageId"),
            (json!({"clientMessageId": "a"}), "text"),
            (json!({"clientMessageId": "a", "text": "x", "template": {"name": "order-update"}}), "template"),
        ] {
            let (status, answer) = api.send(&conv, body).await;
            assert_eq!((status, answer["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)));
        }
        let (status, body) = api.send(&conv, json!({"clientMessageId": "a", "txt": "typo"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].as_str().unwrap().contains("txt"), "{body}");
        let (status, body) = api.send(&conv, json!({"clientMessageId": "a", "author": "customer", "text": "x"})).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("author")), "{body}");
        let (_, body) = api.send(&conv, json!({"clientMessageId": "a", "template": {"name": "t", "variables": {"1": 2}}})).await;
        assert_eq!(body["field"], "template.variables.1", "{body}");
        let (status, body) = api.call("POST", "/v1/conversations/nope/assign", Some(SUPPORT_TOKEN), json!({"agent": {"id": "a1"}})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("conversation_not_found")));
        assert_eq!(api.call("GET", "/v2/anything", Some(SUPPORT_TOKEN), Value::Null).await.0, StatusCode::NOT_FOUND);
    }
}
