//! Acting as the customer: builds the webhooks LINE and Twilio send when a customer writes,
//! signs them as the providers do, sends them to a receiver (a gateway) and reports its answer.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::signing;
use super::admin::AdminError;
use super::clock;
use super::config::{ChatMode, LineUserConfig, is_e164};
use super::ids;
use super::outbound;
use super::state::{App, Blob, LineChannel, ReadToken, ReplyToken};

/// A 1×1 PNG, the image a simulated customer sends when no content is given.
const DEFAULT_IMAGE: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0xb5, 0x1c, 0x0c, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
    0xda, 0x63, 0x64, 0x60, 0x00, 0x00, 0x00, 0x06, 0x00, 0x02, 0x30, 0x81, 0xd0, 0x2f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];
/// The file a simulated customer sends when no content is given.
const DEFAULT_FILE: &[u8] = b"A file sent by a simulated customer.\n";
/// The customer number used when none is given.
const DEFAULT_CUSTOMER_NUMBER: &str = "+15555550123";

/// A LINE customer action, as the admin API takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineCustomerRequest {
    /// The channel; the first configured one when absent.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Where to send; the channel's webhook endpoint when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// The customer's user ID; the channel's first known user, or a fixed one, when absent.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The customer's display name, which the profile API then returns.
    #[serde(default)]
    pub display_name: Option<String>,
    /// What the customer does.
    #[serde(flatten)]
    pub event: LineCustomerEvent,
}

/// What a LINE customer does (`type`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum LineCustomerEvent {
    /// Sends a text message.
    Text {
        /// The text.
        text: String,
    },
    /// Sends an image; the content API then serves it.
    Image {
        /// Base64 of the image; a 1×1 PNG when absent.
        #[serde(default)]
        content: Option<String>,
        /// Its MIME type.
        #[serde(default)]
        content_type: Option<String>,
    },
    /// Sends a file; the content API then serves it.
    File {
        /// The file name.
        file_name: String,
        /// Base64 of the file; a short text when absent.
        #[serde(default)]
        content: Option<String>,
    },
    /// Adds the account as a friend (or unblocks it).
    Follow {
        /// Whether this is an unblock.
        #[serde(default)]
        is_unblocked: bool,
    },
    /// Taps a postback action.
    Postback {
        /// The postback data.
        data: String,
        /// Date/time picker parameters.
        #[serde(default)]
        params: Option<BTreeMap<String, String>>,
    },
    /// LINE redelivers an event sent before: same body, same `webhookEventId`,
    /// `deliveryContext.isRedelivery: true`.
    Redelivery {
        /// The event to redeliver.
        webhook_event_id: String,
    },
}

fn decode_content(content: Option<&str>, default: &[u8]) -> Result<Vec<u8>, AdminError> {
    match content {
        None => Ok(default.to_vec()),
        Some(text) => STANDARD.decode(text).map_err(|_| AdminError::bad_request("content must be base64")),
    }
}

/// Who the customer is, as the request names them.
struct Customer<'a> {
    user_id: Option<&'a str>,
    display_name: Option<&'a str>,
}

/// A new event from the customer with the fields every event has, a fresh reply token, and
/// `specific` (the event type's own fields) merged in. The customer becomes known to the
/// profile API, and the event is kept for redelivery.
fn new_event(channel: &mut LineChannel, customer: &Customer<'_>, now: Timestamp, kind: &str, specific: Value) -> Value {
    let user_id = customer
        .user_id
        .map(str::to_owned)
        .or_else(|| channel.users.keys().next().cloned())
        .unwrap_or_else(|| format!("U{}", ids::derived_hex(&format!("customer:{}", channel.config.channel_id), 32)));
    let profile = channel.users.entry(user_id.clone()).or_insert_with(|| LineUserConfig {
        user_id: user_id.clone(),
        display_name: "LINE User".to_owned(),
        language: None,
        picture_url: None,
        status_message: None,
    });
    if let Some(name) = customer.display_name {
        profile.display_name = name.to_owned();
    }
    let reply_token = ids::token(32);
    let webhook_event_id = ids::ulid(clock::millis(now));
    let mut event = json!({
        "type": kind,
        "webhookEventId": webhook_event_id,
        "deliveryContext": { "isRedelivery": false },
        "timestamp": clock::millis(now),
        "source": { "type": "user", "userId": user_id },
        "mode": "active",
        "replyToken": reply_token,
    });
    if let (Some(event), Value::Object(specific)) = (event.as_object_mut(), specific) {
        event.extend(specific);
    }
    // LINE hands out a token to mark each message as read, while chat is on.
    if channel.config.chat_mode == ChatMode::Chat
        && let Some(message) = event.get_mut("message").and_then(Value::as_object_mut)
        && let Some(message_id) = message.get("id").and_then(Value::as_str).map(str::to_owned)
    {
        let token = ids::token(40);
        message.insert("markAsReadToken".to_owned(), json!(token));
        channel.read_tokens.insert(token, ReadToken { user_id: user_id.clone(), message_id });
    }
    channel.reply_tokens.insert(reply_token, ReplyToken { user_id, issued: now, used: false });
    channel.events.insert(webhook_event_id, event.clone());
    event
}

/// Builds, signs and sends one LINE webhook event as the customer.
pub async fn send_line(app: &App, request: LineCustomerRequest) -> Result<Value, AdminError> {
    let now = clock::now();
    let (url, payload, body, signature, event) = {
        let mut state = app.lock();
        let channel = match &request.channel_id {
            Some(id) => state.line_channel(id).ok_or_else(|| AdminError::not_found(format!("no LINE channel {id}")))?,
            None => state.line.first_mut().ok_or_else(|| AdminError::not_found("no LINE channel is configured"))?,
        };
        let url = request
            .url
            .clone()
            .or_else(|| channel.webhook_endpoint.clone())
            .ok_or_else(|| AdminError::bad_request("no url given and the channel has no webhook endpoint set"))?;
        let customer = Customer { user_id: request.user_id.as_deref(), display_name: request.display_name.as_deref() };
        let event = match request.event {
            LineCustomerEvent::Redelivery { webhook_event_id } => {
                let mut event = channel
                    .events
                    .get(&webhook_event_id)
                    .cloned()
                    .ok_or_else(|| AdminError::not_found(format!("no event {webhook_event_id} was sent on this channel")))?;
                event["deliveryContext"]["isRedelivery"] = json!(true);
                event
            }
            LineCustomerEvent::Text { text } => {
                let message = json!({ "type": "text", "id": ids::line_message_id(), "quoteToken": ids::token(40), "text": text });
                new_event(channel, &customer, now, "message", json!({ "message": message }))
            }
            LineCustomerEvent::Image { content, content_type } => {
                let message_id = ids::line_message_id();
                let bytes = decode_content(content.as_deref(), DEFAULT_IMAGE)?;
                let content_type = content_type.unwrap_or_else(|| "image/png".to_owned());
                channel.contents.insert(message_id.clone(), Blob { content_type, bytes });
                let message = json!({
                    "type": "image",
                    "id": message_id,
                    "quoteToken": ids::token(40),
                    "contentProvider": { "type": "line" },
                });
                new_event(channel, &customer, now, "message", json!({ "message": message }))
            }
            LineCustomerEvent::File { file_name, content } => {
                let message_id = ids::line_message_id();
                let bytes = decode_content(content.as_deref(), DEFAULT_FILE)?;
                let message = json!({ "type": "file", "id": message_id, "fileName": file_name, "fileSize": bytes.len() });
                channel.contents.insert(message_id, Blob { content_type: "application/octet-stream".to_owned(), bytes });
                new_event(channel, &customer, now, "message", json!({ "message": message }))
            }
            LineCustomerEvent::Follow { is_unblocked } => {
                new_event(channel, &customer, now, "follow", json!({ "follow": { "isUnblocked": is_unblocked } }))
            }
            LineCustomerEvent::Postback { data, params } => {
                let mut postback = json!({ "data": data });
                if let Some(params) = params {
                    postback["params"] = json!(params);
                }
                new_event(channel, &customer, now, "postback", json!({ "postback": postback }))
            }
        };
        let payload = json!({ "destination": channel.bot_user_id, "events": [event] });
        let body = payload.to_string().into_bytes();
        let signature = signing::line_signature(channel.config.channel_secret.expose(), &body);
        (url, payload, body, signature, event)
    };
    let delivery = outbound::post(
        &app.http,
        &url,
        "application/json; charset=utf-8",
        body,
        &[("x-line-signature", signature.clone()), ("user-agent", "LineBotWebhook/2.0".to_owned())],
    )
    .await;
    Ok(json!({
        "url": url,
        "signature": signature,
        "webhookEventId": event["webhookEventId"],
        "userId": event["source"]["userId"],
        "replyToken": event.get("replyToken"),
        "messageId": event.get("message").and_then(|m| m.get("id")),
        "payload": payload,
        "delivery": delivery,
    }))
}

/// A WhatsApp customer message through Twilio, as the admin API takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwilioCustomerRequest {
    /// The account; the first configured one when absent.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// The business number written to (E.164, `whatsapp:` optional); the account's first number
    /// when absent.
    #[serde(default)]
    pub to: Option<String>,
    /// The customer's number (E.164, `whatsapp:` optional).
    #[serde(default)]
    pub from: Option<String>,
    /// The customer's WhatsApp profile name.
    #[serde(default)]
    pub profile_name: Option<String>,
    /// The text.
    #[serde(default)]
    pub body: Option<String>,
    /// Attachments.
    #[serde(default)]
    pub media: Vec<MediaSpec>,
    /// Where to send; by default the Messaging Service's inbound URL, the sender's callback URL
    /// or the number's SmsUrl, in that order.
    #[serde(default)]
    pub url: Option<String>,
    /// Send a JSON body with the `bodySHA256` query parameter instead of a form.
    #[serde(default)]
    pub json: bool,
    /// Reuse a MessageSid, as Twilio does when it retries a webhook.
    #[serde(default)]
    pub message_sid: Option<String>,
}

/// One attachment of a customer message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSpec {
    /// A URL to pass as is; otherwise the simulator hosts the content.
    #[serde(default)]
    pub url: Option<String>,
    /// MIME type; `image/png` by default.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Base64 content to host; a 1×1 PNG when absent.
    #[serde(default)]
    pub content: Option<String>,
}

/// `+1...` from `+1...` or `whatsapp:+1...`, checked to be E.164.
fn e164(address: &str, field: &str) -> Result<String, AdminError> {
    let number = address.strip_prefix("whatsapp:").unwrap_or(address);
    if is_e164(number) { Ok(number.to_owned()) } else { Err(AdminError::bad_request(format!("{field} must be an E.164 number"))) }
}

/// Builds, signs and sends one inbound WhatsApp message webhook as the customer; the message
/// also opens the customer's 24-hour window.
pub async fn send_twilio(app: &App, request: TwilioCustomerRequest) -> Result<Value, AdminError> {
    let now = clock::now();
    let customer = e164(request.from.as_deref().unwrap_or(DEFAULT_CUSTOMER_NUMBER), "from")?;
    let (url, message_sid, params, token) = {
        let mut state = app.lock();
        let account = match &request.account_sid {
            Some(sid) => state.twilio_account(sid).ok_or_else(|| AdminError::not_found(format!("no Twilio account {sid}")))?,
            None => state.twilio.first_mut().ok_or_else(|| AdminError::not_found("no Twilio account is configured"))?,
        };
        let account_sid = account.config.account_sid.clone();
        let business = match &request.to {
            Some(to) => e164(to, "to")?,
            None => account.numbers.first().map(|n| n.phone_number.clone()).ok_or_else(|| AdminError::bad_request("the account has no number"))?,
        };
        let number = account.number(&business).ok_or_else(|| AdminError::not_found(format!("{business} is not a number of {account_sid}")))?;
        let service = account.service_of(&business);
        let url = request
            .url
            .clone()
            .or_else(|| service.filter(|s| !s.use_inbound_webhook_on_number).and_then(|s| s.inbound_request_url.clone()))
            .or_else(|| account.senders.iter().find(|s| s.phone_number == business).and_then(|s| s.webhook.callback_url.clone()))
            .or_else(|| number.sms_url.clone())
            .ok_or_else(|| {
                AdminError::bad_request(format!(
                    "no url given and {business} has no inbound URL (Messaging Service InboundRequestUrl, sender callback_url or SmsUrl)"
                ))
            })?;
        let service_sid = service.map(|s| s.sid.clone());
        let message_sid = request.message_sid.clone().unwrap_or_else(|| ids::sid(if request.media.is_empty() { "SM" } else { "MM" }));
        let mut params: Vec<(String, String)> = vec![
            ("MessageSid".to_owned(), message_sid.clone()),
            ("SmsMessageSid".to_owned(), message_sid.clone()),
            ("SmsSid".to_owned(), message_sid.clone()),
            ("AccountSid".to_owned(), account_sid.clone()),
        ];
        if let Some(sid) = service_sid {
            params.push(("MessagingServiceSid".to_owned(), sid));
        }
        params.extend([
            ("From".to_owned(), format!("whatsapp:{customer}")),
            ("To".to_owned(), format!("whatsapp:{business}")),
            ("Body".to_owned(), request.body.clone().unwrap_or_default()),
            ("NumMedia".to_owned(), request.media.len().to_string()),
            ("NumSegments".to_owned(), "1".to_owned()),
        ]);
        for (i, media) in request.media.iter().enumerate() {
            let content_type = media.content_type.clone().unwrap_or_else(|| "image/png".to_owned());
            let media_url = match &media.url {
                Some(url) => url.clone(),
                None => {
                    let bytes = decode_content(media.content.as_deref(), DEFAULT_IMAGE)?;
                    let media_sid = ids::sid("ME");
                    let url = format!("{}/2010-04-01/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}", app.base_url);
                    account.media.insert(media_sid, Blob { content_type: content_type.clone(), bytes });
                    url
                }
            };
            params.push((format!("MediaUrl{i}"), media_url));
            params.push((format!("MediaContentType{i}"), content_type));
        }
        params.extend([
            ("ProfileName".to_owned(), request.profile_name.clone().unwrap_or_else(|| "WhatsApp User".to_owned())),
            ("WaId".to_owned(), customer.trim_start_matches('+').to_owned()),
            ("SmsStatus".to_owned(), "received".to_owned()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ]);
        account.windows.insert(format!("whatsapp:{customer}"), now);
        account.inbound.insert(message_sid.clone(), format!("whatsapp:{customer}"));
        (url, message_sid, params, account.config.auth_token.clone())
    };

    if request.json {
        // The JSON variant: the body's SHA-256 travels in the URL, and the signature covers the
        // full URL with no parameters appended.
        let payload = Value::Object(params.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
        let body = payload.to_string().into_bytes();
        let separator = if url.contains('?') { '&' } else { '?' };
        let signed_url = format!("{url}{separator}bodySHA256={}", signing::body_sha256_hex(&body));
        let signature = signing::twilio_signature(token.expose(), &signed_url, &[]);
        let delivery = outbound::post(&app.http, &signed_url, "application/json", body, &twilio_headers(&signature)).await;
        return Ok(json!({
            "url": signed_url,
            "messageSid": message_sid,
            "signature": signature,
            "payload": payload,
            "delivery": delivery,
        }));
    }
    let signature = signing::twilio_signature(token.expose(), &url, &params);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
    let delivery = outbound::post(&app.http, &url, "application/x-www-form-urlencoded", body, &twilio_headers(&signature)).await;
    let shown: Map<String, Value> = params.into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(json!({
        "url": url,
        "messageSid": message_sid,
        "signature": signature,
        "params": shown,
        "delivery": delivery,
    }))
}

fn twilio_headers(signature: &str) -> [(&'static str, String); 2] {
    [("x-twilio-signature", signature.to_owned()), ("user-agent", "TwilioProxy/1.1".to_owned())]
}
