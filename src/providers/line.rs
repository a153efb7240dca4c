//! The LINE Messaging API client: the credential check, webhook settings, profiles, sending
//! (reply and push) and downloading what customers sent.

use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::credentials::LineCredentials;
use super::endpoints::{ProviderEndpoints, join};
use super::error::{Operation, ProviderError};
use super::http::{Auth, Body, Call, Repeat, Reply, Transport, content_type};

/// Most messages one reply or push may carry.
pub const MAX_MESSAGES_PER_SEND: usize = 5;

/// Longest webhook URL LINE accepts.
pub const MAX_WEBHOOK_URL_CHARS: usize = 500;

/// The loading animation's shortest and longest duration, in seconds; LINE takes multiples of
/// [`LOADING_STEP_SECONDS`] in between.
pub const LOADING_SECONDS: std::ops::RangeInclusive<u32> = 5..=60;

/// The step of the loading animation's duration, in seconds.
pub const LOADING_STEP_SECONDS: u32 = 5;

/// The header that makes a push safe to repeat.
const RETRY_KEY: HeaderName = HeaderName::from_static("x-line-retry-key");

/// LINE's request id of the push that was accepted earlier with the same retry key.
const ACCEPTED_REQUEST_ID: &str = "x-line-accepted-request-id";

/// A client for one LINE channel. Cheap to create; shares the process's connection pool.
#[derive(Clone, Debug)]
pub struct LineClient {
    transport: Transport,
    endpoints: Arc<ProviderEndpoints>,
    credentials: LineCredentials,
}

/// The bot behind a channel access token (`GET /v2/bot/info`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotInfo {
    /// The bot's user ID (`U…`).
    pub user_id: String,
    /// The bot's basic ID (`@…`).
    pub basic_id: String,
    /// The bot's premium ID, when set.
    #[serde(default)]
    pub premium_id: Option<String>,
    /// The bot's display name.
    pub display_name: String,
    /// The bot's profile image, when set.
    #[serde(default)]
    pub picture_url: Option<String>,
    /// Whether chat is on in the LINE Official Account Manager.
    pub chat_mode: ChatMode,
    /// Whether messages are marked as read automatically.
    pub mark_as_read_mode: MarkAsReadMode,
}

/// The account's chat setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// Chat is on.
    Chat,
    /// Chat is off; the bot answers.
    Bot,
}

/// The account's read-receipt setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkAsReadMode {
    /// Messages are marked as read automatically.
    Auto,
    /// Messages are marked as read by an API call.
    Manual,
}

/// The channel's webhook setting (`GET /v2/bot/channel/webhook/endpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WebhookEndpoint {
    /// The webhook URL.
    pub endpoint: String,
    /// Whether LINE sends webhooks at all ("Use webhook" in the console).
    pub active: bool,
}

/// What LINE saw when it called a webhook URL (`POST /v2/bot/channel/webhook/test`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTest {
    /// Whether the endpoint answered with success.
    #[serde(default)]
    pub success: bool,
    /// When the test ran (RFC 3339).
    pub timestamp: String,
    /// The endpoint's HTTP status; 0 or negative when it did not answer.
    pub status_code: i32,
    /// LINE's reason, e.g. "OK" or "COULD_NOT_CONNECT".
    pub reason: String,
    /// LINE's detail.
    pub detail: String,
}

/// A LINE user's profile (`GET /v2/bot/profile/{userId}`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    /// The user ID (`U…`).
    pub user_id: String,
    /// The display name.
    pub display_name: String,
    /// The profile image, when the user has one.
    #[serde(default)]
    pub picture_url: Option<String>,
    /// The status message, when the user has one.
    #[serde(default)]
    pub status_message: Option<String>,
    /// The user's language (BCP 47), once they consented to LINE's privacy policy.
    #[serde(default)]
    pub language: Option<String>,
}

/// A message the bot sends, serialized as LINE's message object (`type` plus its fields).
/// LINE has no message type for arbitrary files; a file goes out as a link in a text message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum LineMessage {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (https; JPEG or PNG).
    Image {
        /// The image.
        original_content_url: String,
        /// A smaller preview of it.
        preview_image_url: String,
    },
    /// A video by URL (https; mp4).
    Video {
        /// The video.
        original_content_url: String,
        /// A preview image.
        preview_image_url: String,
    },
    /// An audio clip by URL (https; mp3 or m4a).
    Audio {
        /// The audio file.
        original_content_url: String,
        /// Its length in milliseconds.
        duration: u64,
    },
    /// A LINE sticker.
    Sticker {
        /// The sticker package.
        package_id: String,
        /// The sticker in the package.
        sticker_id: String,
    },
}

/// Options of a reply or push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Deliver without a push notification on the user's device.
    pub notification_disabled: bool,
}

/// One message LINE accepted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// LINE's message ID.
    pub id: String,
    /// A token to quote the message later, for message types that can be quoted.
    #[serde(default)]
    pub quote_token: Option<String>,
}

/// The outcome of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// LINE accepted this request.
    Sent(Vec<SentMessage>),
    /// LINE had already accepted a request with the same retry key (its answer was lost, or the
    /// caller sent the key again): the messages went out once, and must not be sent again.
    AlreadyAccepted {
        /// LINE's request id of the accepted request, when it says.
        accepted_request_id: Option<String>,
        /// The messages it sent then, when LINE says.
        sent_messages: Vec<SentMessage>,
    },
}

/// Downloaded message content (an image, video, audio or file a customer sent).
#[derive(Clone, PartialEq, Eq)]
pub struct MessageContent {
    /// The `Content-Type` LINE gave, when it gave one.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for MessageContent {
    // The bytes are a customer's data and can be large: only their size is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageContent")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The body of a reply or push response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentMessages {
    #[serde(default)]
    sent_messages: Vec<SentMessage>,
}

impl LineClient {
    pub(crate) fn new(transport: Transport, endpoints: Arc<ProviderEndpoints>, credentials: LineCredentials) -> Self {
        Self { transport, endpoints, credentials }
    }

    /// The bot behind the token; the credential check (401 → [`ProviderError::Unauthorized`]).
    pub async fn bot_info(&self) -> Result<BotInfo, ProviderError> {
        let operation = Operation::LineBotInfo;
        let call = self.call(operation, Method::GET, &["v2", "bot", "info"], Repeat::Safe);
        self.send(&call).await?.json(operation, &self.credentials.channel_access_token)
    }

    /// The channel's webhook URL and whether webhooks are on.
    pub async fn webhook_endpoint(&self) -> Result<WebhookEndpoint, ProviderError> {
        let operation = Operation::LineGetWebhook;
        let call = self.call(operation, Method::GET, &["v2", "bot", "channel", "webhook", "endpoint"], Repeat::Safe);
        self.send(&call).await?.json(operation, &self.credentials.channel_access_token)
    }

    /// Sets the channel's webhook URL, or clears it with `None`. A PUT of a value, so safe to
    /// repeat.
    ///
    /// Clearing sends `{"endpoint": ""}`: LINE's OpenAPI document gives `endpoint` a
    /// `minLength` of 0, but also `format: uri`, which an empty string is not, so validators of
    /// the document refuse it. How the real LINE treats an empty endpoint is unconfirmed.
    pub async fn set_webhook_endpoint(&self, endpoint: Option<&Url>) -> Result<(), ProviderError> {
        let operation = Operation::LineSetWebhook;
        let value = match endpoint {
            Some(endpoint) => {
                check_webhook_url(operation, endpoint)?;
                endpoint.as_str()
            }
            None => "",
        };
        let call = self
            .call(operation, Method::PUT, &["v2", "bot", "channel", "webhook", "endpoint"], Repeat::Safe)
            .body(Body::Json(json!({ "endpoint": value })));
        self.send(&call).await.map(drop)
    }

    /// Has LINE call a webhook URL (the channel's own when `None`) and report what it answered.
    /// Repeating the test only sends another empty event list, so it is retried like a read.
    pub async fn test_webhook_endpoint(&self, endpoint: Option<&Url>) -> Result<WebhookTest, ProviderError> {
        let operation = Operation::LineTestWebhook;
        let body = match endpoint {
            Some(endpoint) => {
                check_webhook_url(operation, endpoint)?;
                json!({ "endpoint": endpoint.as_str() })
            }
            None => json!({}),
        };
        let call = self
            .call(operation, Method::POST, &["v2", "bot", "channel", "webhook", "test"], Repeat::Safe)
            .body(Body::Json(body));
        self.send(&call).await?.json(operation, &self.credentials.channel_access_token)
    }

    /// A user's profile.
    pub async fn profile(&self, user_id: &str) -> Result<UserProfile, ProviderError> {
        let operation = Operation::LineProfile;
        let call = self.call(operation, Method::GET, &["v2", "bot", "profile", user_id], Repeat::Safe);
        self.send(&call).await?.json(operation, &self.credentials.channel_access_token)
    }

    /// Replies with a webhook event's reply token. Never retried: the token works once, and a
    /// repeated reply after a lost answer would be refused or sent twice.
    pub async fn reply(
        &self,
        reply_token: &str,
        messages: &[LineMessage],
        options: SendOptions,
    ) -> Result<Vec<SentMessage>, ProviderError> {
        let operation = Operation::LineReply;
        check_messages(operation, messages)?;
        let mut body = json!({ "replyToken": reply_token, "messages": messages });
        if options.notification_disabled {
            body["notificationDisabled"] = json!(true);
        }
        let call = self
            .call(operation, Method::POST, &["v2", "bot", "message", "reply"], Repeat::Never)
            .body(Body::Json(body));
        let sent: SentMessages = self.send(&call).await?.json(operation, &self.credentials.channel_access_token)?;
        Ok(sent.sent_messages)
    }

    /// Pushes messages to a user, group or room with `X-Line-Retry-Key: retry_key`. The key makes
    /// the push safe to repeat, so it is retried; LINE answers a repeat of an accepted push with
    /// 409, which is [`PushOutcome::AlreadyAccepted`]. Use one key per logical send and keep it
    /// with the message, so that a later retry (even from another process) reuses it.
    pub async fn push(
        &self,
        to: &str,
        messages: &[LineMessage],
        retry_key: Uuid,
        options: SendOptions,
    ) -> Result<PushOutcome, ProviderError> {
        let operation = Operation::LinePush;
        check_messages(operation, messages)?;
        let mut body = json!({ "to": to, "messages": messages });
        if options.notification_disabled {
            body["notificationDisabled"] = json!(true);
        }
        let key = HeaderValue::from_str(&retry_key.hyphenated().to_string()).expect("a UUID is a valid header value");
        let mut call =
            self.call(operation, Method::POST, &["v2", "bot", "message", "push"], Repeat::Safe).body(Body::Json(body));
        call.headers.push((RETRY_KEY, key));
        call.pass_through = &[StatusCode::CONFLICT];
        let reply = self.send(&call).await?;
        let token = &self.credentials.channel_access_token;
        if reply.status == StatusCode::CONFLICT {
            // The 409 body is LINE's error response, which may carry the earlier sentMessages.
            let earlier: SentMessages =
                reply.json(operation, token).unwrap_or(SentMessages { sent_messages: Vec::new() });
            tracing::debug!(%operation, %retry_key, "push was already accepted under this retry key");
            return Ok(PushOutcome::AlreadyAccepted {
                accepted_request_id: reply.header(ACCEPTED_REQUEST_ID),
                sent_messages: earlier.sent_messages,
            });
        }
        let sent: SentMessages = reply.json(operation, token)?;
        Ok(PushOutcome::Sent(sent.sent_messages))
    }

    /// Downloads what a customer sent in a message (from the content host), refusing more than
    /// `max_bytes` ([`ProviderError::TooLarge`]).
    pub async fn message_content(&self, message_id: &str, max_bytes: u64) -> Result<MessageContent, ProviderError> {
        let operation = Operation::LineContent;
        let url = join(&self.endpoints.line_data_api, &["v2", "bot", "message", message_id, "content"]);
        let mut call = Call::new(operation, Method::GET, url, Repeat::Safe, self.transport.config.download_timeout);
        call.max_body = max_bytes;
        let reply = self.send(&call).await?;
        Ok(MessageContent { content_type: content_type(&reply.headers), bytes: reply.body })
    }

    /// Marks the user's messages as read, up to the one whose webhook carried `mark_as_read_token`
    /// (LINE marks the earlier ones with it). Setting a mark again changes nothing, so retried.
    pub async fn mark_as_read(&self, mark_as_read_token: &str) -> Result<(), ProviderError> {
        let operation = Operation::LineMarkAsRead;
        let call = self
            .call(operation, Method::POST, &["v2", "bot", "chat", "markAsRead"], Repeat::Safe)
            .body(Body::Json(json!({ "markAsReadToken": mark_as_read_token })));
        self.send(&call).await.map(drop)
    }

    /// Shows the loading animation in a one-to-one chat with the user `chat_id` for `seconds`
    /// (5 to 60, a multiple of 5; LINE answers 202). Never retried: an animation started late,
    /// after backoffs, would show an agent writing who may already have answered.
    pub async fn show_loading(&self, chat_id: &str, seconds: u32) -> Result<(), ProviderError> {
        let operation = Operation::LineLoading;
        if !LOADING_SECONDS.contains(&seconds) || !seconds.is_multiple_of(LOADING_STEP_SECONDS) {
            return Err(ProviderError::InvalidRequest {
                operation,
                detail: format!("{seconds} seconds; LINE takes multiples of {LOADING_STEP_SECONDS} from {} to {}", LOADING_SECONDS.start(), LOADING_SECONDS.end()),
            });
        }
        let call = self
            .call(operation, Method::POST, &["v2", "bot", "chat", "loading", "start"], Repeat::Never)
            .body(Body::Json(json!({ "chatId": chat_id, "loadingSeconds": seconds })));
        self.send(&call).await.map(drop)
    }

    fn call(&self, operation: Operation, method: Method, path: &[&str], repeat: Repeat) -> Call {
        let url = join(&self.endpoints.line_api, path);
        Call::new(operation, method, url, repeat, self.transport.config.timeout)
    }

    async fn send(&self, call: &Call) -> Result<Reply, ProviderError> {
        self.transport.execute(&Auth::Bearer(&self.credentials.channel_access_token), call).await
    }
}

/// LINE takes 1 to 5 messages per request.
fn check_messages(operation: Operation, messages: &[LineMessage]) -> Result<(), ProviderError> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES_PER_SEND {
        return Err(ProviderError::InvalidRequest {
            operation,
            detail: format!("{} messages; LINE takes 1 to {MAX_MESSAGES_PER_SEND}", messages.len()),
        });
    }
    Ok(())
}

/// LINE takes webhook URLs of up to 500 characters.
fn check_webhook_url(operation: Operation, endpoint: &Url) -> Result<(), ProviderError> {
    let length = endpoint.as_str().chars().count();
    if length > MAX_WEBHOOK_URL_CHARS {
        return Err(ProviderError::InvalidRequest {
            operation,
            detail: format!("webhook URL of {length} characters; LINE takes up to {MAX_WEBHOOK_URL_CHARS}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_serialize_as_line_message_objects() {
        let messages = vec![
            LineMessage::Text { text: "hi".into() },
            LineMessage::Image {
                original_content_url: "https://example.com/a.jpg".into(),
                preview_image_url: "https://example.com/a-small.jpg".into(),
            },
            LineMessage::Video {
                original_content_url: "https://example.com/v.mp4".into(),
                preview_image_url: "https://example.com/v.jpg".into(),
            },
            LineMessage::Audio { original_content_url: "https://example.com/a.m4a".into(), duration: 60000 },
            LineMessage::Sticker { package_id: "446".into(), sticker_id: "1988".into() },
        ];
        assert_eq!(
            serde_json::to_value(&messages).unwrap(),
            json!([
                {"type": "text", "text": "hi"},
                {"type": "image", "originalContentUrl": "https://example.com/a.jpg", "previewImageUrl": "https://example.com/a-small.jpg"},
                {"type": "video", "originalContentUrl": "https://example.com/v.mp4", "previewImageUrl": "https://example.com/v.jpg"},
                {"type": "audio", "originalContentUrl": "https://example.com/a.m4a", "duration": 60000},
                {"type": "sticker", "packageId": "446", "stickerId": "1988"},
            ])
        );
    }

    #[test]
    fn message_count_is_checked() {
        let text = LineMessage::Text { text: "x".into() };
        assert!(check_messages(Operation::LinePush, &[]).is_err());
        assert!(check_messages(Operation::LinePush, &vec![text.clone(); 5]).is_ok());
        let err = check_messages(Operation::LineReply, &vec![text; 6]).unwrap_err();
        assert_eq!(err.to_string(), "LINE reply: invalid request: 6 messages; LINE takes 1 to 5");
    }

    #[test]
    fn bot_info_parses_the_documented_shape() {
        let info: BotInfo = serde_json::from_value(json!({
            "userId": "Ub9952f8", "basicId": "@216ru", "displayName": "Example name",
            "pictureUrl": "https://obs.line-apps.com/x", "chatMode": "chat", "markAsReadMode": "manual"
        }))
        .unwrap();
        assert_eq!(info.chat_mode, ChatMode::Chat);
        assert_eq!(info.mark_as_read_mode, MarkAsReadMode::Manual);
        assert_eq!(info.premium_id, None);
    }
}
