//! Twilio's Content API (content.twilio.com): templates, their list, their WhatsApp approval
//! and its lifecycle (received, pending, then approved or rejected on a schedule or by an admin
//! call).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::auth::TwilioAccountAuth;
use super::clock;
use super::config::{ApprovalOutcome, ApprovalSchedule, is_prefixed_hex};
use super::errors::TwilioError;
use super::form::Form;
use super::ids;
use super::state::App;

/// WhatsApp template categories.
const CATEGORIES: &[&str] = &["UTILITY", "MARKETING", "AUTHENTICATION"];

/// Content per list page when the request does not say (the document's default).
const DEFAULT_PAGE_SIZE: usize = 50;
/// Most Content per list page (the document's maximum).
const MAX_PAGE_SIZE: usize = 1000;
/// What a page token starts with; the rest is the `seq` of the previous page's last content.
const PAGE_TOKEN_PREFIX: &str = "PA";

/// Approval status values as Twilio returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Not submitted.
    Unsubmitted,
    /// Received by Twilio.
    Received,
    /// Under WhatsApp's review.
    Pending,
    /// Can be sent.
    Approved,
    /// Refused, with a reason.
    Rejected,
    /// Paused after negative feedback.
    Paused,
    /// Disabled.
    Disabled,
}

/// A Content resource.
#[derive(Clone, Debug)]
pub struct Content {
    /// `HX...`.
    pub sid: String,
    /// Its place in the account's creation order (1 for the first). Page tokens name it, so
    /// that content deleted between two pages shifts nothing.
    pub seq: u64,
    /// Friendly name.
    pub friendly_name: String,
    /// Language code.
    pub language: String,
    /// Default variable values.
    pub variables: Map<String, Value>,
    /// Content types, e.g. `twilio/text`.
    pub types: Map<String, Value>,
    /// Creation time.
    pub created: Timestamp,
    /// The WhatsApp approval request, once submitted.
    pub approval: Option<Approval>,
}

/// A WhatsApp approval request.
#[derive(Clone, Debug)]
pub struct Approval {
    /// Template name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Submission time.
    pub submitted: Timestamp,
    /// The schedule in force at submission.
    pub schedule: ApprovalSchedule,
    /// A status set by the admin API, which replaces the schedule.
    pub decided: Option<(ApprovalStatus, String)>,
}

impl Approval {
    /// The status now and its rejection reason (empty unless rejected).
    pub fn status(&self) -> (ApprovalStatus, String) {
        if let Some((status, reason)) = &self.decided {
            return (*status, reason.clone());
        }
        let elapsed = clock::since(self.submitted);
        if elapsed < self.schedule.received_for {
            (ApprovalStatus::Received, String::new())
        } else if elapsed < self.schedule.received_for + self.schedule.pending_for {
            (ApprovalStatus::Pending, String::new())
        } else {
            match self.schedule.outcome {
                ApprovalOutcome::Approved => (ApprovalStatus::Approved, String::new()),
                ApprovalOutcome::Rejected => (ApprovalStatus::Rejected, self.schedule.rejection_reason.clone()),
            }
        }
    }
}

impl Content {
    /// The approval status now.
    pub fn approval_status(&self) -> ApprovalStatus {
        self.approval.as_ref().map_or(ApprovalStatus::Unsubmitted, |a| a.status().0)
    }

    /// The main content type (the first one given).
    fn content_type(&self) -> String {
        self.types.keys().next().cloned().unwrap_or_else(|| "twilio/text".to_owned())
    }

    /// The text a recipient sees: the first type's `body` with `{{name}}` placeholders
    /// replaced by the given variables, or the defaults.
    pub fn render(&self, variables: &Map<String, Value>) -> Option<String> {
        let mut body = self.types.values().find_map(|t| t.get("body").and_then(Value::as_str))?.to_owned();
        let mut merged = self.variables.clone();
        merged.extend(variables.clone());
        for (name, value) in &merged {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            body = body.replace(&format!("{{{{{name}}}}}"), &value);
        }
        Some(body)
    }

    fn to_json(&self, base_url: &str, account_sid: &str) -> Value {
        let url = format!("{base_url}/v1/Content/{}", self.sid);
        json!({
            "sid": self.sid,
            "account_sid": account_sid,
            "friendly_name": self.friendly_name,
            "language": self.language,
            "variables": self.variables,
            "types": self.types,
            "url": url,
            "date_created": clock::rfc3339(self.created),
            "date_updated": clock::rfc3339(self.created),
            "links": {
                "approval_create": format!("{url}/ApprovalRequests/whatsapp"),
                "approval_fetch": format!("{url}/ApprovalRequests"),
            },
        })
    }

    fn approval_json(&self) -> Value {
        let (status, reason) = self.approval.as_ref().map_or((ApprovalStatus::Unsubmitted, String::new()), Approval::status);
        json!({
            "name": self.approval.as_ref().map_or("", |a| a.name.as_str()),
            "category": self.approval.as_ref().map_or("", |a| a.category.as_str()),
            "content_type": self.content_type(),
            "status": status,
            "rejection_reason": reason,
            "allow_category_change": true,
        })
    }
}

/// The Content API routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/Content", get(list).post(create))
        .route("/v1/Content/{sid}", get(fetch).delete(delete))
        .route("/v1/Content/{sid}/ApprovalRequests", get(fetch_approval))
        .route("/v1/Content/{sid}/ApprovalRequests/whatsapp", post(submit))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TwilioError> {
    serde_json::from_slice(body).map_err(|e| TwilioError::invalid_parameter(format!("Invalid request body: {e}")))
}

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    friendly_name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    #[serde(default)]
    types: Option<Map<String, Value>>,
}

async fn create(State(app): State<Arc<App>>, auth: TwilioAccountAuth, body: Bytes) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let request: CreateRequest = parse_body(&body)?;
    let language = request
        .language
        .filter(|l| !l.is_empty())
        .ok_or_else(|| TwilioError::invalid_parameter("Missing required parameter language in the post body"))?;
    let types = request
        .types
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TwilioError::invalid_parameter("Missing required parameter types in the post body"))?;
    let variables = request.variables.unwrap_or_default();
    if variables.values().any(|v| !v.is_string()) {
        return Err(TwilioError::invalid_parameter("Variables must map names to string values"));
    }
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    account.contents_created += 1;
    let content = Content {
        sid: ids::sid("HX"),
        seq: account.contents_created,
        friendly_name: request.friendly_name.unwrap_or_default(),
        language,
        variables,
        types,
        created: clock::now(),
        approval: None,
    };
    let body = content.to_json(&app.base_url, &auth.account_sid);
    tracing::debug!(account = %auth.account_sid, sid = %content.sid, "content created");
    account.contents.push(content);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// An optional query parameter parsed by `parse`, or Twilio's 400 naming what it must be.
fn query_param<T>(query: &Form, key: &str, must_be: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, TwilioError> {
    query
        .get(key)
        .map(|value| parse(value).ok_or_else(|| TwilioError::invalid_parameter(format!("{key} must be {must_be}"))))
        .transpose()
}

/// The account's contents in creation order, `PageSize` per page. A page starts after the
/// content its `PageToken` names (the first page has none); `Page` is only echoed, as Twilio
/// documents it "simply for client state". Only `next_page_url` is given: `previous_page_url`
/// is always null.
async fn list(State(app): State<Arc<App>>, auth: TwilioAccountAuth, RawQuery(query): RawQuery) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let page_size = query_param(&query, "PageSize", &format!("an integer from 1 to {MAX_PAGE_SIZE}"), |v| {
        v.parse().ok().filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
    })?
    .unwrap_or(DEFAULT_PAGE_SIZE);
    let page = query_param(&query, "Page", "a non-negative integer", |v| v.parse::<u64>().ok())?.unwrap_or(0);
    let token = query_param(&query, "PageToken", "a token from a next_page_url", |v| {
        v.strip_prefix(PAGE_TOKEN_PREFIX).and_then(|seq| seq.parse::<u64>().ok())
    })?;
    let page_url = |page: u64, token: Option<u64>| {
        let url = format!("{}/v1/Content?PageSize={page_size}&Page={page}", app.base_url);
        match token {
            Some(seq) => format!("{url}&PageToken={PAGE_TOKEN_PREFIX}{seq}"),
            None => url,
        }
    };
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let mut rest = account.contents.iter().filter(|c| token.is_none_or(|seq| c.seq > seq));
    let listed: Vec<&Content> = rest.by_ref().take(page_size).collect();
    let next_page_url = match (listed.last(), rest.next()) {
        (Some(last), Some(_)) => Some(page_url(page.saturating_add(1), Some(last.seq))),
        _ => None,
    };
    let contents: Vec<Value> = listed.iter().map(|c| c.to_json(&app.base_url, &auth.account_sid)).collect();
    Ok(Json(json!({
        "contents": contents,
        "meta": {
            "page": page,
            "page_size": page_size,
            "first_page_url": page_url(0, None),
            "previous_page_url": null,
            "url": page_url(page, token),
            "next_page_url": next_page_url,
            "key": "contents",
        },
    }))
    .into_response())
}

/// Runs `f` on the account's content with this SID, or answers Twilio's 404.
fn with_content<T>(app: &App, auth: &TwilioAccountAuth, sid: &str, path: &str, f: impl FnOnce(&mut Content) -> T) -> Result<T, TwilioError> {
    auth.require_active()?;
    if !is_prefixed_hex(sid, "HX") {
        return Err(TwilioError::not_found(path));
    }
    let mut state = app.lock();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    account.content(sid).map(f).ok_or_else(|| TwilioError::not_found(path))
}

async fn fetch(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>) -> Result<Response, TwilioError> {
    let path = format!("/Content/{sid}");
    let body = with_content(&app, &auth, &sid, &path, |c| c.to_json(&app.base_url, &auth.account_sid))?;
    Ok(Json(body).into_response())
}

async fn delete(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>) -> Result<Response, TwilioError> {
    let path = format!("/Content/{sid}");
    with_content(&app, &auth, &sid, &path, |_| ())?;
    let mut state = app.lock();
    if let Some(account) = state.twilio_account(&auth.account_sid) {
        account.contents.retain(|c| c.sid != sid);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct SubmitRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

async fn submit(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>, body: Bytes) -> Result<Response, TwilioError> {
    let path = format!("/Content/{sid}/ApprovalRequests/whatsapp");
    let request: SubmitRequest = parse_body(&body)?;
    let name = request.name.ok_or_else(|| TwilioError::invalid_parameter("Missing required parameter name in the post body"))?;
    if name.is_empty() || name.len() > 512 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(TwilioError::invalid_parameter("Template name may only contain lowercase alphanumeric characters and underscores"));
    }
    let category = request
        .category
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| CATEGORIES.contains(&c.as_str()))
        .ok_or_else(|| TwilioError::invalid_parameter("Category must be one of UTILITY, MARKETING or AUTHENTICATION"))?;
    auth.require_active()?;
    if !is_prefixed_hex(&sid, "HX") {
        return Err(TwilioError::not_found(&path));
    }
    let mut state = app.lock();
    let schedule = state.approval_schedule.clone();
    let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
    let language = account.content(&sid).map(|c| c.language.clone()).ok_or_else(|| TwilioError::not_found(&path))?;
    // WhatsApp template names are unique per language: the same name in another language is
    // another localization of the same template.
    let taken = account.contents.iter().any(|c| {
        c.sid != sid && c.language == language && c.approval.as_ref().is_some_and(|a| a.name == name)
    });
    if taken {
        return Err(TwilioError::invalid_parameter(format!("A template named {name} already exists for language {language}")));
    }
    let content = account.content(&sid).ok_or_else(|| TwilioError::not_found(&path))?;
    if content.approval.as_ref().is_some_and(|a| a.status().0 != ApprovalStatus::Rejected) {
        return Err(TwilioError::invalid_parameter("The content was already submitted for WhatsApp approval"));
    }
    content.approval = Some(Approval { name, category, submitted: clock::now(), schedule, decided: None });
    tracing::debug!(account = %auth.account_sid, %sid, "content submitted for approval");
    Ok((StatusCode::CREATED, Json(content.approval_json())).into_response())
}

async fn fetch_approval(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(sid): Path<String>) -> Result<Response, TwilioError> {
    let path = format!("/Content/{sid}/ApprovalRequests");
    let whatsapp = with_content(&app, &auth, &sid, &path, |c| {
        let mut whatsapp = c.approval_json();
        whatsapp["type"] = json!("whatsapp");
        whatsapp
    })?;
    Ok(Json(json!({
        "sid": sid,
        "account_sid": auth.account_sid,
        "whatsapp": whatsapp,
        "url": format!("{}/v1/Content/{sid}/ApprovalRequests", app.base_url),
    }))
    .into_response())
}

/// Sets a content's approval status by hand (admin API); the schedule stops applying to it.
pub fn decide(app: &App, sid: &str, status: ApprovalStatus, rejection_reason: Option<String>) -> Result<(), String> {
    let mut state = app.lock();
    let content = state
        .twilio
        .iter_mut()
        .find_map(|a| a.content(sid))
        .ok_or_else(|| format!("no content {sid}"))?;
    let approval = content.approval.as_mut().ok_or_else(|| format!("content {sid} was not submitted for approval"))?;
    let reason = match status {
        ApprovalStatus::Rejected => rejection_reason.unwrap_or_else(|| "Rejected by the simulator's admin API.".to_owned()),
        _ => String::new(),
    };
    approval.decided = Some((status, reason));
    Ok(())
}
