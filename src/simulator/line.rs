//! The LINE Messaging API (api.line.me and api-data.line.me): bot info, webhook endpoint
//! settings and test, profiles, reply, push with retry keys, and message content.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::signing;
use super::auth::LineChannelAuth;
use super::clock;
use super::errors::{LineError, LineErrorDetail, Provider};
use super::ids;
use super::outbound::{self, Failure};
use super::state::{AcceptedPush, App, LineChannel, SentMessage, State as SimState, Via};

/// The request header that carries a push's retry key.
pub const RETRY_KEY_HEADER: &str = "x-line-retry-key";
/// The response header that carries LINE's request ID.
pub const REQUEST_ID_HEADER: &str = "x-line-request-id";
/// The header of a 409 that names the request that was accepted with the same retry key.
pub const ACCEPTED_REQUEST_ID_HEADER: &str = "x-line-accepted-request-id";

/// Message types the push and reply APIs take.
const MESSAGE_TYPES: &[&str] =
    &["text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template", "flex", "coupon"];
/// Message types whose sent message gets a quote token.
const QUOTABLE_TYPES: &[&str] = &["text", "textV2", "sticker", "image", "video"];
/// LINE's length limit of a text message.
const MAX_TEXT_LENGTH: usize = 5000;

/// The LINE routes.
pub fn routes() -> Router<Arc<App>> {
    // Only push takes a retry key; LINE answers 400 when another API gets one.
    let without_retry_key = Router::new()
        .route("/v2/bot/info", get(bot_info))
        .route("/v2/bot/channel/webhook/endpoint", get(get_endpoint).put(set_endpoint))
        .route("/v2/bot/channel/webhook/test", post(test_endpoint))
        .route("/v2/bot/profile/{user_id}", get(profile))
        .route("/v2/bot/message/reply", post(reply))
        .route("/v2/bot/message/{message_id}/content", get(content))
        .route_layer(middleware::from_fn(reject_retry_key));
    Router::new().route("/v2/bot/message/push", post(push)).merge(without_retry_key)
}

/// Refuses `X-Line-Retry-Key` on every API but push, as LINE does.
pub(super) async fn reject_retry_key(request: Request, next: Next) -> Response {
    if request.headers().contains_key(RETRY_KEY_HEADER) {
        return LineError::invalid_field("X-Line-Retry-Key", "The retry key is not supported by this API").into_response();
    }
    next.run(request).await
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, LineError> {
    serde_json::from_slice(body).map_err(|e| LineError::invalid_json(&e))
}

fn channel<'a>(state: &'a mut SimState, auth: &LineChannelAuth) -> Result<&'a mut LineChannel, LineError> {
    // The token matched a configured channel, and the state always holds every configured one.
    state.line_channel(&auth.channel_id).ok_or_else(LineError::unauthorized)
}

async fn bot_info(State(app): State<Arc<App>>, auth: LineChannelAuth) -> Result<Response, LineError> {
    let config = app.config.line.iter().find(|c| c.channel_id == auth.channel_id).ok_or_else(LineError::unauthorized)?;
    Ok(Json(json!({
        "userId": config.bot_user_id(),
        "basicId": config.basic_id(),
        "displayName": config.display_name(),
        "chatMode": config.chat_mode,
        "markAsReadMode": "manual",
    }))
    .into_response())
}

#[derive(Deserialize)]
struct SetEndpointRequest {
    endpoint: String,
}

/// Checks a webhook URL as LINE's schema does (a URI of at most 500 characters); plain http is
/// accepted so that a gateway on loopback can be registered.
fn check_endpoint(endpoint: &str) -> Result<(), LineError> {
    if endpoint.len() > 500 {
        return Err(LineError::invalid_field("endpoint", "Size must be between 0 and 500"));
    }
    match url::Url::parse(endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(LineError::invalid_field("endpoint", "Invalid webhook endpoint URL")),
    }
}

/// Stores the webhook URL; an empty `endpoint` (LINE's schema allows a length of 0) clears it.
async fn set_endpoint(State(app): State<Arc<App>>, auth: LineChannelAuth, body: Bytes) -> Result<Response, LineError> {
    let request: SetEndpointRequest = parse_body(&body)?;
    let endpoint = if request.endpoint.is_empty() {
        None
    } else {
        check_endpoint(&request.endpoint)?;
        Some(request.endpoint)
    };
    let mut state = app.lock();
    channel(&mut state, &auth)?.webhook_endpoint = endpoint;
    Ok(Json(json!({})).into_response())
}

async fn get_endpoint(State(app): State<Arc<App>>, auth: LineChannelAuth) -> Result<Response, LineError> {
    let mut state = app.lock();
    match &channel(&mut state, &auth)?.webhook_endpoint {
        Some(endpoint) => Ok(Json(json!({ "endpoint": endpoint, "active": true })).into_response()),
        None => Err(LineError::new(StatusCode::NOT_FOUND, "Not found")),
    }
}

#[derive(Deserialize, Default)]
struct TestEndpointRequest {
    #[serde(default)]
    endpoint: Option<String>,
}

async fn test_endpoint(State(app): State<Arc<App>>, auth: LineChannelAuth, body: Bytes) -> Result<Response, LineError> {
    let request: TestEndpointRequest = if body.is_empty() { TestEndpointRequest::default() } else { parse_body(&body)? };
    let (endpoint, destination, secret) = {
        let mut state = app.lock();
        let channel = channel(&mut state, &auth)?;
        let endpoint = request
            .endpoint
            .or_else(|| channel.webhook_endpoint.clone())
            .ok_or_else(|| LineError::invalid_field("endpoint", "The webhook URL has not been set"))?;
        (endpoint, channel.bot_user_id.clone(), channel.config.channel_secret.clone())
    };
    check_endpoint(&endpoint)?;
    let payload = json!({ "destination": destination, "events": [] }).to_string().into_bytes();
    let signature = signing::line_signature(secret.expose(), &payload);
    let timestamp = clock::rfc3339_millis(clock::now());
    let delivery = outbound::post(
        &app.http,
        &endpoint,
        "application/json; charset=utf-8",
        payload,
        &[("x-line-signature", signature), ("user-agent", "LineBotWebhook/2.0".to_owned())],
    )
    .await;
    // LINE reports 0 as the status when no answer came, with a reason naming why.
    let (success, status_code, reason, detail) = match (delivery.status_code, delivery.failure) {
        (Some(status), _) if delivery.succeeded() => (true, i32::from(status), "OK", status.to_string()),
        (Some(status), _) => (false, i32::from(status), "ERROR_STATUS_CODE", status.to_string()),
        (None, Some(Failure::Timeout)) => (false, 0, "REQUEST_TIMEOUT", "Request timeout".to_owned()),
        (None, Some(Failure::Connect)) => (false, 0, "COULD_NOT_CONNECT", delivery.error.unwrap_or_default()),
        (None, _) => (false, 0, "UNCLASSIFIED", delivery.error.unwrap_or_default()),
    };
    Ok(Json(json!({
        "success": success,
        "timestamp": timestamp,
        "statusCode": status_code,
        "reason": reason,
        "detail": detail,
    }))
    .into_response())
}

async fn profile(State(app): State<Arc<App>>, auth: LineChannelAuth, Path(user_id): Path<String>) -> Result<Response, LineError> {
    let mut state = app.lock();
    let channel = channel(&mut state, &auth)?;
    let user = channel.users.get(&user_id).ok_or_else(|| LineError::new(StatusCode::NOT_FOUND, "Not found"))?;
    Ok(Json(user.clone()).into_response())
}

async fn content(State(app): State<Arc<App>>, auth: LineChannelAuth, Path(message_id): Path<String>) -> Result<Response, LineError> {
    let mut state = app.lock();
    let channel = channel(&mut state, &auth)?;
    let blob = channel.contents.get(&message_id).ok_or_else(|| LineError::new(StatusCode::NOT_FOUND, "Not found"))?;
    let content_type = HeaderValue::from_str(&blob.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, content_type)], blob.bytes.clone()).into_response())
}

/// Checks messages as LINE does before sending anything; every problem becomes one detail.
fn check_messages(messages: &[Value]) -> Result<(), LineError> {
    let mut details = Vec::new();
    let mut problem = |property: String, message: &str| details.push(LineErrorDetail { message: message.to_owned(), property: Some(property) });
    if messages.is_empty() || messages.len() > 5 {
        problem("messages".to_owned(), "Size must be between 1 and 5");
    }
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        if !MESSAGE_TYPES.contains(&kind) {
            problem(at("type"), "Must be one of the following values: [text, textV2, sticker, image, video, audio, location, imagemap, template, flex, coupon]");
            continue;
        }
        let text_field = |name: &str| message.get(name).and_then(Value::as_str);
        match kind {
            "text" | "textV2" => match text_field("text") {
                Some(t) if !t.is_empty() && t.chars().count() <= MAX_TEXT_LENGTH => {}
                Some(t) if !t.is_empty() => problem(at("text"), "Length must be between 0 and 5000"),
                _ => problem(at("text"), "Must be specified"),
            },
            "image" | "video" | "audio" => {
                let fields: &[&str] = if kind == "audio" { &["originalContentUrl"] } else { &["originalContentUrl", "previewImageUrl"] };
                for field in fields {
                    if !text_field(field).is_some_and(|u| u.starts_with("https://")) {
                        problem(at(field), "Must be a valid HTTPS URL");
                    }
                }
            }
            "sticker" => {
                for field in ["packageId", "stickerId"] {
                    if text_field(field).is_none() {
                        problem(at(field), "Must be specified");
                    }
                }
            }
            _ => {}
        }
    }
    if details.is_empty() { Ok(()) } else { Err(LineError::invalid_body(details)) }
}

/// Records the messages as sent and returns LINE's `sentMessages`.
fn send(channel_id: &str, via: Via, to: &str, messages: Vec<Value>, retry_key: Option<&str>) -> (Vec<Value>, Vec<SentMessage>) {
    let sent_at = clock::rfc3339_millis(clock::now());
    let mut sent_messages = Vec::with_capacity(messages.len());
    let mut records = Vec::with_capacity(messages.len());
    for message in messages {
        let id = ids::line_message_id();
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        let mut sent = json!({ "id": id });
        if QUOTABLE_TYPES.contains(&kind) {
            sent["quoteToken"] = json!(ids::token(40));
        }
        sent_messages.push(sent);
        let body = message.get("text").and_then(Value::as_str).map(str::to_owned);
        let media_urls = message.get("originalContentUrl").and_then(Value::as_str).map(str::to_owned).into_iter().collect();
        records.push(SentMessage {
            id,
            provider: Provider::Line,
            account: channel_id.to_owned(),
            via,
            to: to.to_owned(),
            from: None,
            messaging_service_sid: None,
            body,
            media_urls,
            content_sid: None,
            content_variables: None,
            line_message: Some(message),
            retry_key: retry_key.map(str::to_owned),
            sent_at: sent_at.clone(),
        });
    }
    tracing::debug!(channel = channel_id, ?via, count = records.len(), "LINE messages sent");
    (sent_messages, records)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyRequest {
    reply_token: String,
    messages: Vec<Value>,
}

async fn reply(State(app): State<Arc<App>>, auth: LineChannelAuth, body: Bytes) -> Result<Response, LineError> {
    let request: ReplyRequest = parse_body(&body)?;
    check_messages(&request.messages)?;
    let ttl = app.config.reply_token_ttl;
    let mut state = app.lock();
    let channel = channel(&mut state, &auth)?;
    // A reply token works once, within its lifetime, and only on the channel that issued it.
    let token = channel
        .reply_tokens
        .get_mut(&request.reply_token)
        .filter(|t| !t.used && clock::since(t.issued) <= ttl)
        .ok_or_else(|| LineError::new(StatusCode::BAD_REQUEST, "Invalid reply token"))?;
    token.used = true;
    let to = token.user_id.clone();
    let (sent_messages, records) = send(&auth.channel_id, Via::Reply, &to, request.messages, None);
    state.sent.extend(records);
    Ok(Json(json!({ "sentMessages": sent_messages })).into_response())
}

#[derive(Deserialize)]
struct PushRequest {
    to: String,
    messages: Vec<Value>,
}

async fn push(State(app): State<Arc<App>>, auth: LineChannelAuth, headers: HeaderMap, body: Bytes) -> Result<Response, LineError> {
    let retry_key = match headers.get(RETRY_KEY_HEADER) {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().and_then(|v| uuid::Uuid::parse_str(v.trim()).ok());
            Some(key.ok_or_else(|| LineError::invalid_field("X-Line-Retry-Key", "The retry key must be a UUID"))?.to_string())
        }
    };
    let request: PushRequest = parse_body(&body)?;
    if request.to.is_empty() {
        return Err(LineError::invalid_field("to", "Must be specified"));
    }
    check_messages(&request.messages)?;
    let request_id = ids::request_id();
    let mut state = app.lock();
    let channel = channel(&mut state, &auth)?;
    if let Some(key) = &retry_key
        && let Some(accepted) = channel.retry_keys.get(key)
    {
        // Once a key was accepted, LINE refuses every retry with it and names the request that
        // was accepted, so that the caller knows the push went out.
        let mut response =
            (StatusCode::CONFLICT, Json(json!({ "message": "The retry key is already accepted", "sentMessages": accepted.sent_messages })))
                .into_response();
        if let Ok(value) = HeaderValue::from_str(&accepted.request_id) {
            response.headers_mut().insert(ACCEPTED_REQUEST_ID_HEADER, value);
        }
        return Ok(response);
    }
    let (sent_messages, records) = send(&auth.channel_id, Via::Push, &request.to, request.messages, retry_key.as_deref());
    if let Some(key) = retry_key {
        channel.retry_keys.insert(key, AcceptedPush { request_id: request_id.clone(), sent_messages: sent_messages.clone() });
    }
    state.sent.extend(records);
    let mut response = Json(json!({ "sentMessages": sent_messages })).into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}
