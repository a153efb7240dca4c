//! Read receipts and typing indicators: LINE's mark-as-read (`POST /v2/bot/chat/markAsRead`)
//! and loading animation (`POST /v2/bot/chat/loading/start`), and Twilio's WhatsApp typing
//! indicator (`POST /v2/Indicators/Typing.json` on messaging.twilio.com). Each is checked as the
//! provider documents it and recorded; the admin API lists them at `/__sim/indicators`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::auth::{LineChannelAuth, TwilioAccountAuth};
use super::clock;
use super::errors::{LineError, Provider, TwilioError};
use super::form::Form;
use super::line::reject_retry_key;
use super::state::{App, Indicator};

/// LINE's default duration of the loading animation, when the request names none.
const DEFAULT_LOADING_SECONDS: u32 = 20;

/// The routes, provider and admin.
pub fn routes() -> Router<Arc<App>> {
    let line = Router::new()
        .route("/v2/bot/chat/markAsRead", post(mark_as_read))
        .route("/v2/bot/chat/loading/start", post(loading))
        .route_layer(middleware::from_fn(reject_retry_key));
    Router::new()
        .merge(line)
        .route("/v2/Indicators/Typing.json", post(typing))
        .route("/__sim/indicators", get(list).delete(clear))
}

fn line_body(body: &[u8]) -> Result<Map<String, Value>, LineError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(LineError::new(StatusCode::BAD_REQUEST, "The request body has 1 error(s)")),
        Err(e) => Err(LineError::invalid_json(&e)),
    }
}

fn record(app: &App, indicator: Indicator) {
    tracing::debug!(provider = indicator.provider.name(), account = %indicator.account, kind = indicator.kind, "indicator shown");
    app.lock().indicators.push(indicator);
}

/// Marks the messages up to the token's as read. A token works only on the channel whose
/// webhook carried it; using it again is harmless, as on LINE.
async fn mark_as_read(State(app): State<Arc<App>>, auth: LineChannelAuth, body: Bytes) -> Result<Response, LineError> {
    let fields = line_body(&body)?;
    let token = match fields.get("markAsReadToken") {
        Some(Value::String(token)) if !token.is_empty() => token.clone(),
        _ => return Err(LineError::invalid_field("markAsReadToken", "Must be specified")),
    };
    let issued = {
        let mut state = app.lock();
        let channel = state.line_channel(&auth.channel_id).ok_or_else(LineError::unauthorized)?;
        channel.read_tokens.get(&token).cloned()
    };
    let issued = issued.ok_or_else(|| LineError::new(StatusCode::BAD_REQUEST, "Invalid markAsReadToken"))?;
    record(&app, Indicator {
        provider: Provider::Line,
        account: auth.channel_id,
        kind: "markAsRead",
        customer: issued.user_id,
        message_id: Some(issued.message_id),
        seconds: None,
        at: clock::rfc3339(clock::now()),
    });
    Ok(Json(json!({})).into_response())
}

/// `loadingSeconds`: absent for LINE's default, else a multiple of 5 from 5 to 60.
fn loading_seconds(value: Option<&Value>) -> Result<u32, LineError> {
    let Some(value) = value else { return Ok(DEFAULT_LOADING_SECONDS) };
    value
        .as_u64()
        .and_then(|s| u32::try_from(s).ok())
        .filter(|s| (5..=60).contains(s) && s.is_multiple_of(5))
        .ok_or_else(|| LineError::invalid_field("loadingSeconds", "Must be a multiple of 5 between 5 and 60"))
}

/// Starts the loading animation in a one-to-one chat with a user the channel knows.
async fn loading(State(app): State<Arc<App>>, auth: LineChannelAuth, body: Bytes) -> Result<Response, LineError> {
    let fields = line_body(&body)?;
    let chat_id = match fields.get("chatId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(LineError::invalid_field("chatId", "Must be specified")),
    };
    let seconds = loading_seconds(fields.get("loadingSeconds"))?;
    let known = {
        let mut state = app.lock();
        let channel = state.line_channel(&auth.channel_id).ok_or_else(LineError::unauthorized)?;
        channel.users.contains_key(&chat_id)
    };
    if !known {
        return Err(LineError::invalid_field("chatId", "Invalid chat ID"));
    }
    record(&app, Indicator {
        provider: Provider::Line,
        account: auth.channel_id,
        kind: "loading",
        customer: chat_id,
        message_id: None,
        seconds: Some(seconds),
        at: clock::rfc3339(clock::now()),
    });
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

/// Whether `sid` is a message or media SID (`^(SM|MM)[0-9a-fA-F]{32}$`).
fn is_message_sid(sid: &str) -> bool {
    (sid.starts_with("SM") || sid.starts_with("MM")) && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Twilio's typing indicator: `channel=whatsapp` and the `messageId` of a message the
/// account received, which it marks as read.
async fn typing(State(app): State<Arc<App>>, auth: TwilioAccountAuth, body: Bytes) -> Result<Response, TwilioError> {
    auth.require_active()?;
    let form = Form::parse(&body);
    match form.non_empty("channel") {
        Some("whatsapp") => {}
        Some(_) => return Err(TwilioError::invalid_parameter("channel must be whatsapp")),
        None => return Err(TwilioError::invalid_parameter("Missing required parameter channel in the post body")),
    }
    let message_id = form.non_empty("messageId").ok_or_else(|| TwilioError::invalid_parameter("Missing required parameter messageId in the post body"))?;
    if !is_message_sid(message_id) {
        return Err(TwilioError::invalid_parameter("messageId must be a Message SID (SM...) or Media SID (MM...)"));
    }
    let customer = {
        let mut state = app.lock();
        let account = state.twilio_account(&auth.account_sid).ok_or_else(TwilioError::unauthorized)?;
        account.inbound.get(message_id).cloned()
    };
    let customer = customer.ok_or_else(|| TwilioError::invalid_parameter("messageId is not a message of an existing WhatsApp conversation"))?;
    record(&app, Indicator {
        provider: Provider::Twilio,
        account: auth.account_sid,
        kind: "typing",
        customer,
        message_id: Some(message_id.to_owned()),
        seconds: None,
        at: clock::rfc3339(clock::now()),
    });
    Ok(Json(json!({ "success": true })).into_response())
}

/// The indicators shown, oldest first, optionally only one `provider`'s or `account`'s.
async fn list(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Json<Value> {
    let query = Form::parse(query.unwrap_or_default().as_bytes());
    let state = app.lock();
    let shown: Vec<&Indicator> = state
        .indicators
        .iter()
        .filter(|i| query.non_empty("provider").is_none_or(|p| p == i.provider.name()))
        .filter(|i| query.non_empty("account").is_none_or(|a| a == i.account))
        .collect();
    Json(json!({ "count": shown.len(), "indicators": shown }))
}

async fn clear(State(app): State<Arc<App>>) -> StatusCode {
    app.lock().indicators.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_seconds_follow_line() {
        assert_eq!(loading_seconds(None).unwrap(), 20);
        for ok in [5, 10, 55, 60] {
            assert_eq!(loading_seconds(Some(&json!(ok))).unwrap(), ok);
        }
        for bad in [json!(0), json!(4), json!(7), json!(65), json!(-5), json!("10"), json!(10.5)] {
            assert!(loading_seconds(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn typing_takes_message_and_media_sids() {
        assert!(is_message_sid("SM1234567890abcdef1234567890abcdef"));
        assert!(is_message_sid("MM1234567890abcdef1234567890ABCDEF"));
        assert!(!is_message_sid("ME1234567890abcdef1234567890abcdef"));
        assert!(!is_message_sid("SM1234"));
    }
}
