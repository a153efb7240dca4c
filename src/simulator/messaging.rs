//! Twilio's Messaging API (messaging.twilio.com): a Messaging Service's inbound URL (v1) and a
//! WhatsApp sender's webhook (v2 Senders API).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::auth::TwilioAccountAuth;
use super::clock;
use super::errors::TwilioError;
use super::form::Form;
use super::state::{App, MessagingService, Sender, SenderWebhook, TwilioAccount};

/// The messaging.twilio.com routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/Services/{sid}", get(fetch_service).post(update_service))
        .route("/v1/Services/{sid}/PhoneNumbers", get(list_service_numbers))
        .route("/v1/Services/{sid}/ChannelSenders", get(list_service_senders))
        .route("/v2/Channels/Senders", get(list_senders))
        .route("/v2/Channels/Senders/{sid}", get(fetch_sender).post(update_sender))
}

fn service_json(base_url: &str, account: &TwilioAccount, service: &MessagingService) -> Value {
    let url = format!("{base_url}/v1/Services/{}", service.sid);
    json!({
        "sid": service.sid,
        "account_sid": account.config.account_sid,
        "friendly_name": service.friendly_name,
        "date_created": clock::rfc3339(account.created),
        "date_updated": clock::rfc3339(service.updated),
        "inbound_request_url": service.inbound_request_url,
        "inbound_method": service.inbound_method,
        "fallback_url": service.fallback_url,
        "fallback_method": service.fallback_method,
        "status_callback": service.status_callback,
        "sticky_sender": true,
        "mms_converter": true,
        "smart_encoding": true,
        "scan_message_content": "inherit",
        "fallback_to_long_code": false,
        "area_code_geomatch": true,
        "synchronous_validation": false,
        "validity_period": 14400,
        "url": url,
        "links": {
            "phone_numbers": format!("{url}/PhoneNumbers"),
            "short_codes": format!("{url}/ShortCodes"),
            "alpha_senders": format!("{url}/AlphaSenders"),
        },
        "usecase": "undeclared",
        "us_app_to_person_registered": false,
        "use_inbound_webhook_on_number": service.use_inbound_webhook_on_number,
    })
}

async fn fetch_service(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let service = account.services.iter().find(|s| s.sid == sid).ok_or_else(|| TwilioError::not_found(&format!("/Services/{sid}")))?;
    Ok(Json(service_json(&app.base_url, account, service)).into_response())
}

async fn update_service(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>, body: Bytes) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let form = Form::parse(&body);
    let inbound_request_url = form.url("InboundRequestUrl")?;
    let fallback_url = form.url("FallbackUrl")?;
    let status_callback = form.url("StatusCallback")?;
    let inbound_method = form.method("InboundMethod", &["GET", "POST"])?;
    let fallback_method = form.method("FallbackMethod", &["GET", "POST"])?;
    let use_number_webhook = match form.get("UseInboundWebhookOnNumber") {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => return Err(TwilioError::invalid_parameter("UseInboundWebhookOnNumber must be true or false")),
    };
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let service = account.services.iter_mut().find(|s| s.sid == sid).ok_or_else(|| TwilioError::not_found(&format!("/Services/{sid}")))?;
    if let Some(name) = form.get("FriendlyName") {
        service.friendly_name = name.to_owned();
    }
    if let Some(url) = inbound_request_url {
        service.inbound_request_url = url;
    }
    if let Some(url) = fallback_url {
        service.fallback_url = url;
    }
    if let Some(url) = status_callback {
        service.status_callback = url;
    }
    if let Some(method) = inbound_method {
        service.inbound_method = method;
    }
    if let Some(method) = fallback_method {
        service.fallback_method = method;
    }
    if let Some(flag) = use_number_webhook {
        service.use_inbound_webhook_on_number = flag;
    }
    service.updated = clock::now();
    tracing::debug!(account = %auth.account_sid, service = %sid, "messaging service updated");
    let service = service.clone();
    Ok(Json(service_json(&app.base_url, account, &service)).into_response())
}

/// One page of a messaging.twilio.com list: every item fits (the simulator's lists are short), and
/// `meta` is shaped as Twilio's.
fn list_page(url: String, key: &str, page_size: usize, items: Vec<Value>) -> Response {
    Json(json!({
        key: items,
        "meta": {
            "page": 0,
            "page_size": page_size,
            "first_page_url": url,
            "previous_page_url": null,
            "url": url,
            "next_page_url": null,
            "key": key,
        },
    }))
    .into_response()
}

/// `PageSize` of a list request: 1 to 1000, else `default`.
fn page_size(query: &Form, default: usize) -> Result<usize, TwilioError> {
    match query.get("PageSize") {
        None => Ok(default),
        Some(size) => size.parse::<usize>().ok().filter(|s| (1..=1000).contains(s)).ok_or_else(|| TwilioError::invalid_parameter("PageSize must be an integer from 1 to 1000")),
    }
}

/// What a Messaging Service's pool lists.
#[derive(Clone, Copy)]
enum Pool {
    /// `/PhoneNumbers`: the account's incoming numbers in the pool.
    PhoneNumbers,
    /// `/ChannelSenders`: the account's WhatsApp senders whose number is in the pool.
    ChannelSenders,
}

async fn list_service_numbers(app: State<Arc<App>>, auth: TwilioAccountAuth, sid: Path<String>, query: RawQuery) -> Result<Response, TwilioError> {
    list_pool(app, auth, sid, query, Pool::PhoneNumbers).await
}

async fn list_service_senders(app: State<Arc<App>>, auth: TwilioAccountAuth, sid: Path<String>, query: RawQuery) -> Result<Response, TwilioError> {
    list_pool(app, auth, sid, query, Pool::ChannelSenders).await
}

async fn list_pool(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>, RawQuery(query): RawQuery, pool: Pool) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let size = page_size(&Form::parse(query.unwrap_or_default().as_bytes()), 50)?;
    let (path, key) = match pool {
        Pool::PhoneNumbers => ("PhoneNumbers", "phone_numbers"),
        Pool::ChannelSenders => ("ChannelSenders", "senders"),
    };
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let service = account.services.iter().find(|s| s.sid == sid).ok_or_else(|| TwilioError::not_found(&format!("/Services/{sid}/{path}")))?;
    let url = format!("{}/v1/Services/{sid}/{path}", app.base_url);
    let created = clock::rfc3339(account.created);
    let pooled = |number: &String| service.numbers.contains(number);
    let items: Vec<Value> = match pool {
        Pool::PhoneNumbers => account
            .numbers
            .iter()
            .filter(|n| pooled(&n.phone_number))
            .map(|n| {
                json!({
                    "sid": n.sid, "account_sid": account.config.account_sid, "service_sid": sid,
                    "date_created": created, "date_updated": clock::rfc3339(n.updated),
                    "phone_number": n.phone_number, "country_code": "US", "capabilities": ["SMS", "MMS"],
                    "url": format!("{url}/{}", n.sid),
                })
            })
            .collect(),
        Pool::ChannelSenders => account
            .senders
            .iter()
            .filter(|s| pooled(&s.phone_number))
            .map(|s| {
                json!({
                    "sid": s.sid, "account_sid": account.config.account_sid, "messaging_service_sid": sid,
                    "sender": format!("whatsapp:{}", s.phone_number), "sender_type": "WhatsApp", "country_code": "US",
                    "date_created": created, "date_updated": created,
                    "url": format!("{url}/{}", s.sid),
                })
            })
            .collect(),
    };
    Ok(list_page(format!("{url}?PageSize={size}&Page=0"), key, size, items.into_iter().take(size).collect()))
}

fn sender_json(base_url: &str, sender: &Sender) -> Value {
    let mut body = json!({
        "sid": sender.sid,
        "status": "ONLINE",
        "sender_id": format!("whatsapp:{}", sender.phone_number),
        "webhook": sender.webhook,
        "properties": { "quality_rating": "HIGH", "messaging_limit": "10K Customers/24hr" },
        "url": format!("{base_url}/v2/Channels/Senders/{}", sender.sid),
    });
    if sender.profile.is_object() {
        body["profile"] = sender.profile.clone();
    }
    body
}

async fn list_senders(State(app): State<Arc<App>>, auth: TwilioAccountAuth, RawQuery(query): RawQuery) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    if query.get("Channel").is_some_and(|c| !c.eq_ignore_ascii_case("whatsapp")) {
        return Err(TwilioError::invalid_parameter("Channel must be whatsapp"));
    }
    // Twilio's default for WhatsApp senders.
    let size = page_size(&query, 20)?;
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let senders: Vec<Value> = account.senders.iter().take(size).map(|s| sender_json(&app.base_url, s)).collect();
    let url = format!("{}/v2/Channels/Senders?Channel=whatsapp&PageSize={size}&Page=0", app.base_url);
    Ok(list_page(url, "senders", size, senders))
}

async fn fetch_sender(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let sender = account.senders.iter().find(|s| s.sid == sid).ok_or_else(|| TwilioError::not_found(&format!("/v2/Channels/Senders/{sid}")))?;
    Ok(Json(sender_json(&app.base_url, sender)).into_response())
}

/// Applies the fields present in a `webhook` object; `null` clears a field.
fn apply_webhook(webhook: &mut SenderWebhook, patch: &Map<String, Value>) -> Result<(), TwilioError> {
    for (key, value) in patch {
        let text = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return Err(TwilioError::invalid_parameter(format!("webhook.{key} must be a string"))),
        };
        let is_method = key.ends_with("_method");
        if is_method && text.as_deref().is_some_and(|m| !matches!(m, "POST" | "PUT") && key != "status_callback_method") {
            return Err(TwilioError::invalid_parameter(format!("webhook.{key} must be POST or PUT")));
        }
        if !is_method && text.as_deref().is_some_and(|u| url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))) {
            return Err(TwilioError::invalid_parameter(format!("webhook.{key} is not a valid URL")));
        }
        let field = match key.as_str() {
            "callback_url" => &mut webhook.callback_url,
            "callback_method" => &mut webhook.callback_method,
            "fallback_url" => &mut webhook.fallback_url,
            "fallback_method" => &mut webhook.fallback_method,
            "status_callback_url" => &mut webhook.status_callback_url,
            "status_callback_method" => &mut webhook.status_callback_method,
            _ => return Err(TwilioError::invalid_parameter(format!("webhook.{key} is not a webhook setting"))),
        };
        *field = text;
    }
    Ok(())
}

async fn update_sender(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>, body: Bytes) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let request: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| TwilioError::invalid_parameter(format!("Invalid request body: {e}")))?;
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let sender = account.senders.iter_mut().find(|s| s.sid == sid).ok_or_else(|| TwilioError::not_found(&format!("/v2/Channels/Senders/{sid}")))?;
    // Checked on a copy so that a bad field changes nothing.
    let mut webhook = sender.webhook.clone();
    match request.get("webhook") {
        None | Some(Value::Null) => {}
        Some(Value::Object(patch)) => apply_webhook(&mut webhook, patch)?,
        Some(_) => return Err(TwilioError::invalid_parameter("webhook must be an object")),
    }
    match request.get("profile") {
        None | Some(Value::Null) => {}
        Some(profile @ Value::Object(_)) => sender.profile = profile.clone(),
        Some(_) => return Err(TwilioError::invalid_parameter("profile must be an object")),
    }
    sender.webhook = webhook;
    tracing::debug!(account = %auth.account_sid, sender = %sid, "WhatsApp sender updated");
    Ok((StatusCode::ACCEPTED, Json(sender_json(&app.base_url, sender))).into_response())
}
