//! The admin API under `/__sim`: JSON in and out, for tests and demos. It inspects and changes
//! the simulator's state (messages sent, requests received, faults, approvals, windows) and
//! plays the customer. It is never subject to faults and never logged as provider traffic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::clock;
use super::config::{AccountStatus, ApprovalSchedule, ReceiptSchedule, duration_text};
use super::content::{self, ApprovalStatus};
use super::customer;
use super::faults::FaultRequest;
use super::form::Form;
use super::pattern::RoutePattern;
use super::state::App;

/// Where the admin API lives; no provider path starts with it.
pub const PREFIX: &str = "/__sim";

/// An admin API error: `{"error": "..."}`.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    message: String,
}

impl AdminError {
    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
}

/// The admin routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/__sim/health", get(health))
        .route("/__sim/accounts", get(accounts))
        .route("/__sim/reset", post(reset))
        .route("/__sim/messages", get(list_messages).delete(clear_messages))
        .route("/__sim/requests", get(list_requests).delete(clear_requests))
        .route("/__sim/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/__sim/faults/{id}", delete(remove_fault))
        .route("/__sim/approvals/schedule", get(get_schedule).put(set_schedule))
        .route("/__sim/twilio/receipts", get(get_receipts).put(set_receipts))
        .route("/__sim/content/{sid}/approval", post(decide_approval))
        .route("/__sim/twilio/accounts/{sid}/status", put(set_account_status))
        .route("/__sim/twilio/windows", post(set_window))
        .route("/__sim/customer/line", post(customer_line))
        .route("/__sim/customer/twilio", post(customer_twilio))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The run-time state of every channel and account, without credentials.
async fn accounts(State(app): State<Arc<App>>) -> Json<Value> {
    let state = app.lock();
    let line: Vec<Value> = state
        .line
        .iter()
        .map(|c| {
            json!({
                "channelId": c.config.channel_id,
                "botUserId": c.bot_user_id,
                "basicId": c.config.basic_id(),
                "displayName": c.config.display_name(),
                "webhookEndpoint": c.webhook_endpoint,
                "users": c.users.values().collect::<Vec<_>>(),
            })
        })
        .collect();
    let twilio: Vec<Value> = state
        .twilio
        .iter()
        .map(|a| {
            json!({
                "accountSid": a.config.account_sid,
                "status": a.status,
                "type": a.config.account_type,
                "numbers": a.numbers.iter().map(|n| json!({
                    "sid": n.sid,
                    "phoneNumber": n.phone_number,
                    "smsUrl": n.sms_url,
                    "smsMethod": n.sms_method,
                })).collect::<Vec<_>>(),
                "messagingServices": a.services.iter().map(|s| json!({
                    "sid": s.sid,
                    "inboundRequestUrl": s.inbound_request_url,
                    "inboundMethod": s.inbound_method,
                    "useInboundWebhookOnNumber": s.use_inbound_webhook_on_number,
                    "numbers": s.numbers,
                })).collect::<Vec<_>>(),
                "senders": a.senders.iter().map(|s| json!({
                    "sid": s.sid,
                    "senderId": format!("whatsapp:{}", s.phone_number),
                    "webhook": s.webhook,
                })).collect::<Vec<_>>(),
                "contents": a.contents.iter().map(|c| {
                    let approval = c.approval.as_ref().map(|ap| {
                        let (status, reason) = ap.status();
                        json!({ "name": ap.name, "category": ap.category, "status": status, "rejectionReason": reason })
                    });
                    json!({ "sid": c.sid, "friendlyName": c.friendly_name, "language": c.language, "approval": approval })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "line": line, "twilio": twilio }))
}

async fn reset(State(app): State<Arc<App>>) -> StatusCode {
    app.reset();
    tracing::info!("simulator state reset to its configuration");
    StatusCode::NO_CONTENT
}

async fn list_messages(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Json<Value> {
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let state = app.lock();
    let messages: Vec<_> = state
        .sent
        .iter()
        .filter(|m| query.non_empty("provider").is_none_or(|p| p == m.provider.name()))
        .filter(|m| query.non_empty("account").is_none_or(|a| a == m.account))
        .filter(|m| query.non_empty("to").is_none_or(|t| t == m.to))
        .collect();
    Json(json!({ "count": messages.len(), "messages": messages }))
}

async fn clear_messages(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().sent.clear();
    StatusCode::NO_CONTENT
}

async fn list_requests(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Result<Json<Value>, AdminError> {
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let route = query.non_empty("route").map(RoutePattern::parse).transpose().map_err(AdminError::bad_request)?;
    let requests = app.lock().requests.list(route.as_ref());
    Ok(Json(json!({ "count": requests.len(), "requests": requests })))
}

async fn clear_requests(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().requests.clear();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "faults": app.lock().faults.list() }))
}

async fn add_fault(State(app): State<Arc<App>>, body: Bytes) -> Result<Response, AdminError> {
    let request: FaultRequest = parse(&body)?;
    let rule = app.lock().faults.add(request).map_err(AdminError::bad_request)?;
    tracing::info!(id = rule.id, route = %rule.route, "fault added");
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

async fn clear_faults(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<StatusCode, AdminError> {
    let id: u64 = id.parse().map_err(|_| AdminError::bad_request("the fault ID is a number"))?;
    if app.lock().faults.remove(id) { Ok(StatusCode::NO_CONTENT) } else { Err(AdminError::not_found(format!("no fault {id}"))) }
}

async fn get_receipts(State(app): State<Arc<App>>) -> Json<ReceiptSchedule> {
    Json(app.lock().receipt_schedule.clone())
}

async fn set_receipts(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<ReceiptSchedule>, AdminError> {
    let schedule: ReceiptSchedule = parse(&body)?;
    schedule.validate().map_err(AdminError::bad_request)?;
    app.lock().receipt_schedule = schedule.clone();
    Ok(Json(schedule))
}

async fn get_schedule(State(app): State<Arc<App>>) -> Json<ApprovalSchedule> {
    Json(app.lock().approval_schedule.clone())
}

async fn set_schedule(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<ApprovalSchedule>, AdminError> {
    let schedule: ApprovalSchedule = parse(&body)?;
    app.lock().approval_schedule = schedule.clone();
    Ok(Json(schedule))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DecideRequest {
    status: ApprovalStatus,
    #[serde(default)]
    rejection_reason: Option<String>,
}

async fn decide_approval(State(app): State<Arc<App>>, Path(sid): Path<String>, body: Bytes) -> Result<StatusCode, AdminError> {
    let request: DecideRequest = parse(&body)?;
    if request.status == ApprovalStatus::Unsubmitted {
        return Err(AdminError::bad_request("a submitted content cannot become unsubmitted"));
    }
    content::decide(&app, &sid, request.status, request.rejection_reason).map_err(AdminError::not_found)?;
    tracing::info!(%sid, status = ?request.status, "approval decided");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: AccountStatus,
}

async fn set_account_status(State(app): State<Arc<App>>, Path(sid): Path<String>, body: Bytes) -> Result<StatusCode, AdminError> {
    let request: StatusRequest = parse(&body)?;
    let mut state = app.lock();
    let account = state.twilio_account(&sid).ok_or_else(|| AdminError::not_found(format!("no Twilio account {sid}")))?;
    account.status = request.status;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WindowRequest {
    #[serde(default)]
    account_sid: Option<String>,
    customer: String,
    #[serde(with = "duration_text")]
    last_inbound_ago: Duration,
}

/// Sets when a customer last wrote, to open or (with an age beyond the window) close their
/// WhatsApp 24-hour window without sending a webhook.
async fn set_window(State(app): State<Arc<App>>, body: Bytes) -> Result<StatusCode, AdminError> {
    let request: WindowRequest = parse(&body)?;
    let customer = if request.customer.starts_with("whatsapp:") { request.customer } else { format!("whatsapp:{}", request.customer) };
    let mut state = app.lock();
    let account = match &request.account_sid {
        Some(sid) => state.twilio_account(sid).ok_or_else(|| AdminError::not_found(format!("no Twilio account {sid}")))?,
        None => state.twilio.first_mut().ok_or_else(|| AdminError::not_found("no Twilio account is configured"))?,
    };
    account.windows.insert(customer, clock::before_now(request.last_inbound_ago));
    Ok(StatusCode::NO_CONTENT)
}

async fn customer_line(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, AdminError> {
    let request: customer::LineCustomerRequest = parse(&body)?;
    customer::send_line(&app, request).await.map(Json)
}

async fn customer_twilio(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, AdminError> {
    let request: customer::TwilioCustomerRequest = parse(&body)?;
    customer::send_twilio(&app, request).await.map(Json)
}
