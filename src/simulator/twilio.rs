//! Twilio's 2010 REST API (api.twilio.com): the account fetch, incoming phone numbers, sending
//! messages under WhatsApp's 24-hour rule, and media of simulated customer messages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::auth::TwilioAccountAuth;
use super::clock;
use super::config::{is_e164, is_prefixed_hex};
use super::content::ApprovalStatus;
use super::errors::{Provider, TwilioError};
use super::form::Form;
use super::ids;
use super::receipts::{self, Callbacks};
use super::state::{App, Blob, PhoneNumber, SentMessage, TwilioAccount, Via};

/// Twilio's most media URLs per message.
const MAX_MEDIA: usize = 10;
/// The WhatsApp address prefix.
const WHATSAPP: &str = "whatsapp:";

/// The api.twilio.com routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/2010-04-01/Accounts/{account_file}", get(fetch_account))
        .route("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json", get(list_numbers))
        .route("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{number_file}", get(fetch_number).post(update_number))
        .route("/2010-04-01/Accounts/{account_sid}/Messages.json", post(create_message))
        .route("/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}", get(media))
}

/// The resource SID of a `{sid}.json` path segment; other representations are not served.
fn json_resource<'a>(file: &'a str, path: &str) -> Result<&'a str, TwilioError> {
    file.strip_suffix(".json").ok_or_else(|| TwilioError::not_found(path))
}

fn account_json(account: &TwilioAccount) -> Value {
    let sid = &account.config.account_sid;
    let prefix = format!("/2010-04-01/Accounts/{sid}");
    json!({
        // The real API echoes the auth token here; the simulator never echoes a credential.
        "auth_token": null,
        "date_created": clock::rfc2822(account.created),
        "date_updated": clock::rfc2822(account.created),
        "friendly_name": account.config.friendly_name.clone().unwrap_or_else(|| sid.clone()),
        "owner_account_sid": sid,
        "sid": sid,
        "status": account.status,
        "type": account.config.account_type,
        "subresource_uris": {
            "incoming_phone_numbers": format!("{prefix}/IncomingPhoneNumbers.json"),
            "messages": format!("{prefix}/Messages.json"),
        },
        "uri": format!("{prefix}.json"),
    })
}

async fn fetch_account(State(app): State<Arc<App>>, auth: TwilioAccountAuth, Path(file): Path<String>) -> Result<Response, TwilioError> {
    let path = format!("/2010-04-01/Accounts/{file}");
    let sid = json_resource(&file, &path)?;
    // A suspended or closed account can still be fetched: that is how callers learn its status.
    if sid != auth.account_sid {
        return Err(TwilioError::unauthorized());
    }
    let mut state = app.lock();
    let account = state.twilio_account(sid).ok_or_else(|| TwilioError::not_found(&path))?;
    Ok(Json(account_json(account)).into_response())
}

fn number_json(account_sid: &str, created: jiff::Timestamp, number: &PhoneNumber) -> Value {
    json!({
        "account_sid": account_sid,
        "address_sid": null,
        "address_requirements": "none",
        "api_version": "2010-04-01",
        "beta": false,
        "capabilities": { "voice": true, "sms": true, "mms": true, "fax": false },
        "date_created": clock::rfc2822(created),
        "date_updated": clock::rfc2822(number.updated),
        "friendly_name": number.friendly_name,
        "identity_sid": null,
        "phone_number": number.phone_number,
        "origin": "twilio",
        "sid": number.sid,
        "sms_application_sid": number.sms_application_sid,
        "sms_fallback_method": number.sms_fallback_method,
        "sms_fallback_url": number.sms_fallback_url,
        "sms_method": number.sms_method,
        "sms_url": number.sms_url,
        "status_callback": number.status_callback,
        "status_callback_method": number.status_callback_method,
        "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{}.json", number.sid),
        "voice_receive_mode": "voice",
        "voice_application_sid": null,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": "POST",
        "voice_fallback_url": null,
        "voice_method": "POST",
        "voice_url": null,
        "emergency_status": "Inactive",
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "bundle_sid": null,
        "status": "in-use",
        "type": "local",
    })
}

async fn list_numbers(
    State(app): State<Arc<App>>,
    auth: TwilioAccountAuth,
    Path(account_sid): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, TwilioError> {
    auth.require(&account_sid)?;
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let page_size = query.get("PageSize").and_then(|p| p.parse::<u32>().ok()).filter(|p| (1..=1000).contains(p)).unwrap_or(50);
    let mut state = app.lock();
    let account = state.twilio_account(&account_sid).ok_or_else(TwilioError::unauthorized)?;
    let numbers: Vec<Value> = account
        .numbers
        .iter()
        .filter(|n| query.non_empty("PhoneNumber").is_none_or(|p| p == n.phone_number))
        .filter(|n| query.non_empty("FriendlyName").is_none_or(|f| f == n.friendly_name))
        .take(page_size as usize)
        .map(|n| number_json(&account_sid, account.created, n))
        .collect();
    // The schema declares these page links as absolute URIs.
    let page_uri = format!("{}/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json?PageSize={page_size}&Page=0", app.base_url);
    Ok(Json(json!({
        "end": numbers.len().saturating_sub(1),
        "first_page_uri": page_uri,
        "next_page_uri": null,
        "page": 0,
        "page_size": page_size,
        "previous_page_uri": null,
        "start": 0,
        "uri": page_uri,
        "incoming_phone_numbers": numbers,
    }))
    .into_response())
}

async fn fetch_number(
    State(app): State<Arc<App>>,
    auth: TwilioAccountAuth,
    Path((account_sid, file)): Path<(String, String)>,
) -> Result<Response, TwilioError> {
    auth.require(&account_sid)?;
    let path = format!("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{file}");
    let number_sid = json_resource(&file, &path)?;
    let mut state = app.lock();
    let account = state.twilio_account(&account_sid).ok_or_else(TwilioError::unauthorized)?;
    let number = account.numbers.iter().find(|n| n.sid == number_sid).ok_or_else(|| TwilioError::not_found(&path))?;
    Ok(Json(number_json(&account_sid, account.created, number)).into_response())
}

async fn update_number(
    State(app): State<Arc<App>>,
    auth: TwilioAccountAuth,
    Path((account_sid, file)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, TwilioError> {
    auth.require(&account_sid)?;
    let path = format!("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{file}");
    let number_sid = json_resource(&file, &path)?;
    let form = Form::parse(&body);
    let sms_url = form.url("SmsUrl")?;
    let sms_fallback_url = form.url("SmsFallbackUrl")?;
    let status_callback = form.url("StatusCallback")?;
    let sms_method = form.method("SmsMethod", &["GET", "POST"])?;
    let sms_fallback_method = form.method("SmsFallbackMethod", &["GET", "POST"])?;
    let status_callback_method = form.method("StatusCallbackMethod", &["GET", "POST"])?;
    let sms_application_sid = match form.get("SmsApplicationSid") {
        None => None,
        Some("") => Some(None),
        Some(sid) if is_prefixed_hex(sid, "AP") => Some(Some(sid.to_owned())),
        Some(sid) => return Err(TwilioError::invalid_parameter(format!("SmsApplicationSid {sid} is not an application SID"))),
    };
    let mut state = app.lock();
    let account = state.twilio_account(&account_sid).ok_or_else(TwilioError::unauthorized)?;
    let created = account.created;
    let number = account.numbers.iter_mut().find(|n| n.sid == number_sid).ok_or_else(|| TwilioError::not_found(&path))?;
    if let Some(name) = form.get("FriendlyName") {
        number.friendly_name = name.to_owned();
    }
    if let Some(url) = sms_url {
        number.sms_url = url;
    }
    if let Some(url) = sms_fallback_url {
        number.sms_fallback_url = url;
    }
    if let Some(url) = status_callback {
        number.status_callback = url;
    }
    if let Some(method) = sms_method {
        number.sms_method = method;
    }
    if let Some(method) = sms_fallback_method {
        number.sms_fallback_method = method;
    }
    if let Some(method) = status_callback_method {
        number.status_callback_method = method;
    }
    if let Some(sid) = sms_application_sid {
        number.sms_application_sid = sid;
    }
    number.updated = clock::now();
    tracing::debug!(account = %account_sid, number = %number.sid, "incoming phone number updated");
    Ok(Json(number_json(&account_sid, created, number)).into_response())
}

/// Splits `whatsapp:+1415...` into (`Some("whatsapp")`, `+1415...`); plain numbers have no
/// channel.
fn split_address(address: &str) -> (Option<&str>, &str) {
    match address.split_once(':') {
        Some((channel, number)) => (Some(channel), number),
        None => (None, address),
    }
}

/// The checked parameters of a message to send.
struct Outgoing {
    to: String,
    whatsapp: bool,
    from: Option<String>,
    service_sid: Option<String>,
    body: Option<String>,
    media_urls: Vec<String>,
    content_sid: Option<String>,
    content_variables: Option<String>,
    variables: Map<String, Value>,
    status_callback: Option<String>,
}

/// Checks what does not depend on the account's state.
fn parse_outgoing(form: &Form) -> Result<Outgoing, TwilioError> {
    let to = form.non_empty("To").ok_or_else(|| TwilioError::bad_request(21604, "A 'To' phone number is required."))?;
    let (channel, to_number) = split_address(to);
    if !is_e164(to_number) || channel.is_some_and(|c| c != "whatsapp") {
        return Err(TwilioError::bad_request(21211, format!("Invalid 'To' Phone Number: {to}")));
    }
    let from = form.non_empty("From").map(str::to_owned);
    let service_sid = form.non_empty("MessagingServiceSid").map(str::to_owned);
    if from.is_none() && service_sid.is_none() {
        return Err(TwilioError::bad_request(21603, "A 'From' phone number is required."));
    }
    let body = form.non_empty("Body").map(str::to_owned);
    let media_urls = form.all("MediaUrl");
    let content_sid = form.non_empty("ContentSid").map(str::to_owned);
    if body.is_none() && media_urls.is_empty() && content_sid.is_none() {
        return Err(TwilioError::bad_request(21602, "Message body is required."));
    }
    if body.as_ref().is_some_and(|b| b.chars().count() > 1600) {
        return Err(TwilioError::bad_request(21617, "The concatenated message body exceeds the 1600 character limit."));
    }
    if media_urls.len() > MAX_MEDIA {
        return Err(TwilioError::invalid_parameter("MediaUrl can be given at most 10 times"));
    }
    if media_urls.iter().any(|u| url::Url::parse(u).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))) {
        return Err(TwilioError::bad_request(21620, "Invalid media URL(s)"));
    }
    if content_sid.is_some() && !media_urls.is_empty() {
        return Err(TwilioError::bad_request(63030, "Media is not allowed with a Content template"));
    }
    let content_variables = form.non_empty("ContentVariables").map(str::to_owned);
    let variables = match &content_variables {
        None => Map::new(),
        Some(text) => serde_json::from_str::<Map<String, Value>>(text)
            .map_err(|_| TwilioError::bad_request(21656, "The ContentVariables Parameter is invalid"))?,
    };
    let status_callback = form.url("StatusCallback")?.flatten();
    Ok(Outgoing { to: to.to_owned(), whatsapp: channel.is_some(), from, service_sid, body, media_urls, content_sid, content_variables, variables, status_callback })
}

async fn create_message(
    State(app): State<Arc<App>>,
    auth: TwilioAccountAuth,
    Path(account_sid): Path<String>,
    body: Bytes,
) -> Result<Response, TwilioError> {
    auth.require(&account_sid)?;
    let outgoing = parse_outgoing(&Form::parse(&body))?;
    let (answer, callbacks) = accept(&app, account_sid, outgoing)?;
    match callbacks {
        Some(callbacks) if callbacks.schedule.before_answer => receipts::send(Arc::clone(&app), callbacks).await,
        Some(callbacks) => {
            tokio::spawn(receipts::send(Arc::clone(&app), callbacks));
        }
        None => {}
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Sends a message: its answer, and the status callbacks to make when it asked for them.
fn accept(app: &App, account_sid: String, outgoing: Outgoing) -> Result<(Value, Option<Callbacks>), TwilioError> {
    let window = app.config.whatsapp_window;
    let mut state = app.lock();
    let account = state.twilio_account(&account_sid).ok_or_else(TwilioError::unauthorized)?;
    let channel_prefix = if outgoing.whatsapp { WHATSAPP } else { "" };

    // The sender: the given From, which must be one of the account's numbers on the same
    // channel, or a number of the Messaging Service.
    if let Some(service_sid) = &outgoing.service_sid
        && !account.services.iter().any(|s| &s.sid == service_sid)
    {
        return Err(TwilioError::bad_request(21701, format!("The Messaging Service Sid {service_sid} is invalid.")));
    }
    let from = match &outgoing.from {
        Some(from) => {
            let (channel, number) = split_address(from);
            if channel.is_some() != outgoing.whatsapp || account.number(number).is_none() {
                return Err(if outgoing.whatsapp {
                    TwilioError::bad_request(63007, "Twilio could not find a Channel with the specified From address")
                } else {
                    TwilioError::bad_request(21606, format!("The From phone number {from} is not a valid, message-capable Twilio phone number for this account."))
                });
            }
            from.clone()
        }
        None => {
            let service = outgoing.service_sid.as_ref().and_then(|sid| account.services.iter().find(|s| &s.sid == sid));
            let number = service.and_then(|s| s.numbers.first()).or_else(|| account.numbers.first().map(|n| &n.phone_number));
            let number = number.ok_or_else(|| TwilioError::bad_request(21606, "The Messaging Service has no sender to send from."))?;
            format!("{channel_prefix}{number}")
        }
    };

    let mut rendered = outgoing.body.clone();
    let mut template_approved = false;
    if let Some(content_sid) = &outgoing.content_sid {
        let content = is_prefixed_hex(content_sid, "HX")
            .then(|| account.content(content_sid))
            .flatten()
            .ok_or_else(|| TwilioError::bad_request(21655, "The ContentSid is Invalid"))?;
        rendered = content.render(&outgoing.variables).or(rendered);
        template_approved = content.approval_status() == ApprovalStatus::Approved;
    }

    // WhatsApp's rule: free-form messages only within the window after the customer's last
    // message; outside it only an approved template may open the conversation.
    if outgoing.whatsapp {
        let open = account.windows.get(&outgoing.to).is_some_and(|last| clock::since(*last) < window);
        if !open && !template_approved {
            return Err(TwilioError::bad_request(
                63016,
                "Failed to send freeform message because you are outside the allowed window. If you are using WhatsApp, please use a Message Template.",
            ));
        }
    }

    let sid = ids::sid(if outgoing.media_urls.is_empty() { "SM" } else { "MM" });
    let now = clock::now();
    let from_in_answer = outgoing.from.clone();
    let status = if from_in_answer.is_some() { "queued" } else { "accepted" };
    let answer = json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": rendered.clone().unwrap_or_default(),
        "date_created": clock::rfc2822(now),
        "date_sent": null,
        "date_updated": clock::rfc2822(now),
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from_in_answer,
        "messaging_service_sid": outgoing.service_sid,
        "num_media": outgoing.media_urls.len().to_string(),
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": { "media": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json") },
        "to": outgoing.to,
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    tracing::debug!(account = %account_sid, %sid, "Twilio message sent");
    let auth_token = account.config.auth_token.clone();
    let schedule = state.receipt_schedule.clone();
    let callbacks = outgoing.status_callback.map(|url| Callbacks {
        url,
        auth_token,
        message: vec![
            ("MessageSid".to_owned(), sid.clone()),
            ("SmsSid".to_owned(), sid.clone()),
            ("AccountSid".to_owned(), account_sid.clone()),
            ("From".to_owned(), from.clone()),
            ("To".to_owned(), outgoing.to.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ],
        schedule,
    });
    state.sent.push(SentMessage {
        id: sid,
        provider: Provider::Twilio,
        account: account_sid,
        via: Via::Message,
        to: outgoing.to,
        from: Some(from),
        messaging_service_sid: outgoing.service_sid,
        body: rendered,
        media_urls: outgoing.media_urls,
        content_sid: outgoing.content_sid,
        content_variables: outgoing.content_variables,
        line_message: None,
        retry_key: None,
        sent_at: clock::rfc3339_millis(now),
    });
    Ok((answer, callbacks))
}

/// Media of a simulated customer message. Twilio serves media without authentication unless an
/// account turns that on (`mediaAuth`); then it asks for the account's credentials and answers
/// with a redirect to its CDN ([`cdn_media`]).
async fn media(
    State(app): State<Arc<App>>,
    Path((account_sid, message_sid, media_sid)): Path<(String, String, String)>,
    auth: Result<TwilioAccountAuth, TwilioError>,
) -> Result<Response, TwilioError> {
    let path = format!("/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}");
    if app.config.twilio.iter().any(|a| a.account_sid == account_sid && a.media_auth) {
        return media_redirect(&app, auth?, &account_sid, &media_sid, &path);
    }
    let mut state = app.lock();
    let blob = state
        .twilio_account(&account_sid)
        .and_then(|a| a.media.get(&media_sid))
        .ok_or_else(|| TwilioError::not_found(&path))?;
    Ok(blob_answer(blob))
}

/// A blob with its content type.
fn blob_answer(blob: &Blob) -> Response {
    let content_type = HeaderValue::from_str(&blob.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type)], blob.bytes.clone()).into_response()
}

/// The routes of the host standing in for Twilio's media CDN, served on a port of its own so
/// that it is another origin than the API's.
pub fn cdn_routes() -> Router<Arc<App>> {
    Router::new().route("/cdn/{account_sid}/{media_sid}", get(cdn_media))
}

/// An authenticated request for media under `mediaAuth`: a temporary redirect to the CDN.
fn media_redirect(app: &App, auth: TwilioAccountAuth, account_sid: &str, media_sid: &str, path: &str) -> Result<Response, TwilioError> {
    auth.require(account_sid)?;
    let mut state = app.lock();
    if !state.twilio_account(account_sid).is_some_and(|a| a.media.contains_key(media_sid)) {
        return Err(TwilioError::not_found(path));
    }
    Ok(Redirect::temporary(&format!("{}/cdn/{account_sid}/{media_sid}", app.cdn_url)).into_response())
}

/// Media on the CDN. Its URLs stand for Twilio's signed CDN links, which are the credential; like
/// S3 it refuses a request that brings another one, so tests see that none followed the redirect.
async fn cdn_media(State(app): State<Arc<App>>, Path((account_sid, media_sid)): Path<(String, String)>, headers: HeaderMap) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return (StatusCode::BAD_REQUEST, "Only one auth mechanism allowed: the CDN URL is the credential\n").into_response();
    }
    let mut state = app.lock();
    match state.twilio_account(&account_sid).and_then(|a| a.media.get(&media_sid)) {
        Some(blob) => blob_answer(blob),
        None => (StatusCode::NOT_FOUND, "no such media\n").into_response(),
    }
}
