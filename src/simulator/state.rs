//! The simulator's shared state: what each channel and account holds at run time, the messages
//! sent, the faults in force and the request log, behind one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::clock;
use super::config::{AccountStatus, ApprovalSchedule, LineChannelConfig, ReceiptSchedule, LineUserConfig, SimulatorConfig, TwilioAccountConfig};
use super::content::Content;
use super::errors::Provider;
use super::faults::FaultTable;
use super::requests::RequestLog;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The configuration the simulator started from (settings, and the state `reset` restores).
    pub config: SimulatorConfig,
    /// The simulator's own base URL, for absolute links in answers.
    pub base_url: String,
    /// The base URL of the simulated media CDN, another origin than `base_url`.
    pub cdn_url: String,
    /// The client for outgoing webhooks.
    pub http: reqwest::Client,
    state: Mutex<State>,
}

impl App {
    /// The state built from `config`.
    pub fn new(config: SimulatorConfig, base_url: String, cdn_url: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.webhook_timeout).build()?;
        let state = Mutex::new(State::from_config(&config));
        Ok(Self { config, base_url, cdn_url, http, state })
    }

    /// Puts the state back to what the configuration starts with, faults and request log too.
    pub fn reset(&self) {
        *self.lock() = State::from_config(&self.config);
    }

    /// Locks the state. A handler that panicked cannot leave it half-updated in a way that
    /// matters to a simulator, so a poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The mutable state.
#[derive(Debug)]
pub struct State {
    /// LINE channels.
    pub line: Vec<LineChannel>,
    /// Twilio accounts.
    pub twilio: Vec<TwilioAccount>,
    /// Messages sent through the provider APIs, oldest first.
    pub sent: Vec<SentMessage>,
    /// Faults in force.
    pub faults: FaultTable,
    /// Requests received.
    pub requests: RequestLog,
    /// The schedule new approval submissions follow.
    pub approval_schedule: ApprovalSchedule,
    /// How the status callbacks of messages sent from now on go.
    pub receipt_schedule: ReceiptSchedule,
    /// Read receipts and typing indicators shown, oldest first.
    pub indicators: Vec<Indicator>,
}

impl State {
    /// The state a configuration starts with.
    pub fn from_config(config: &SimulatorConfig) -> Self {
        let now = clock::now();
        Self {
            line: config.line.iter().map(LineChannel::new).collect(),
            twilio: config.twilio.iter().map(|a| TwilioAccount::new(a, now)).collect(),
            sent: Vec::new(),
            faults: FaultTable::default(),
            requests: RequestLog::default(),
            approval_schedule: config.approvals.clone(),
            receipt_schedule: config.receipts.clone(),
            indicators: Vec::new(),
        }
    }

    /// The LINE channel with this ID.
    pub fn line_channel(&mut self, channel_id: &str) -> Option<&mut LineChannel> {
        self.line.iter_mut().find(|c| c.config.channel_id == channel_id)
    }

    /// The Twilio account with this SID.
    pub fn twilio_account(&mut self, account_sid: &str) -> Option<&mut TwilioAccount> {
        self.twilio.iter_mut().find(|a| a.config.account_sid == account_sid)
    }
}

/// A LINE channel at run time.
#[derive(Debug)]
pub struct LineChannel {
    /// The configured channel.
    pub config: LineChannelConfig,
    /// The bot's user ID (the `destination` of webhooks).
    pub bot_user_id: String,
    /// The webhook endpoint set through the API.
    pub webhook_endpoint: Option<String>,
    /// Profiles the profile API knows: configured users and customers the simulator played.
    pub users: BTreeMap<String, LineUserConfig>,
    /// Accepted push retry keys.
    pub retry_keys: HashMap<String, AcceptedPush>,
    /// Reply tokens handed out in webhooks.
    pub reply_tokens: HashMap<String, ReplyToken>,
    /// Events sent as the customer, by `webhookEventId`, for redelivery.
    pub events: HashMap<String, Value>,
    /// Content of customer messages (images, files), by message ID.
    pub contents: HashMap<String, Blob>,
    /// `markAsReadToken`s handed out in message events.
    pub read_tokens: HashMap<String, ReadToken>,
}

impl LineChannel {
    fn new(config: &LineChannelConfig) -> Self {
        Self {
            bot_user_id: config.bot_user_id(),
            webhook_endpoint: config.webhook_endpoint.clone(),
            users: config.users.iter().map(|u| (u.user_id.clone(), u.clone())).collect(),
            retry_keys: HashMap::new(),
            reply_tokens: HashMap::new(),
            events: HashMap::new(),
            contents: HashMap::new(),
            read_tokens: HashMap::new(),
            config: config.clone(),
        }
    }
}

/// A push accepted under a retry key: what a retry with the same key is told.
#[derive(Clone, Debug)]
pub struct AcceptedPush {
    /// The `x-line-request-id` of the accepted request.
    pub request_id: String,
    /// Its `sentMessages`.
    pub sent_messages: Vec<Value>,
}

/// A reply token handed to the bot with an event.
#[derive(Clone, Debug)]
pub struct ReplyToken {
    /// The user the reply goes to.
    pub user_id: String,
    /// When the event was sent.
    pub issued: Timestamp,
    /// Whether a reply used it.
    pub used: bool,
}

/// A `markAsReadToken` handed to the bot with a message event.
#[derive(Clone, Debug)]
pub struct ReadToken {
    /// The user who sent the message.
    pub user_id: String,
    /// The message.
    pub message_id: String,
}

/// A read receipt or typing indicator the simulator showed a customer, as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    /// `line` or `twilio`.
    pub provider: Provider,
    /// The LINE channel ID or Twilio account SID.
    pub account: String,
    /// `markAsRead`, `loading` (LINE) or `typing` (Twilio).
    pub kind: &'static str,
    /// The customer: LINE user ID or `whatsapp:+...`.
    pub customer: String,
    /// The message marked as read (LINE's token's message, Twilio's `messageId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The loading animation's duration (LINE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// When it was shown (RFC 3339).
    pub at: String,
}

/// Binary content served to the bot (LINE message content, Twilio media).
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its MIME type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A Twilio account at run time.
#[derive(Debug)]
pub struct TwilioAccount {
    /// The configured account.
    pub config: TwilioAccountConfig,
    /// The status the account fetch reports; the admin API can change it.
    pub status: AccountStatus,
    /// When the simulator created the account.
    pub created: Timestamp,
    /// Incoming phone numbers.
    pub numbers: Vec<PhoneNumber>,
    /// Messaging Services.
    pub services: Vec<MessagingService>,
    /// WhatsApp senders.
    pub senders: Vec<Sender>,
    /// Content resources, oldest first.
    pub contents: Vec<Content>,
    /// How many Content resources were created: the `seq` of the last one.
    pub contents_created: u64,
    /// The last inbound message time per customer address (`whatsapp:+...`).
    pub windows: HashMap<String, Timestamp>,
    /// Media of customer messages, by media SID.
    pub media: HashMap<String, Blob>,
    /// The customer (`whatsapp:+...`) of each inbound message, by MessageSid.
    pub inbound: HashMap<String, String>,
}

impl TwilioAccount {
    fn new(config: &TwilioAccountConfig, now: Timestamp) -> Self {
        let numbers = config
            .numbers
            .iter()
            .map(|n| PhoneNumber {
                sid: n.sid(),
                phone_number: n.phone_number.clone(),
                friendly_name: n.friendly_name.clone().unwrap_or_else(|| n.phone_number.clone()),
                sms_url: n.sms_url.clone(),
                sms_method: "POST".to_owned(),
                sms_fallback_url: None,
                sms_fallback_method: "POST".to_owned(),
                sms_application_sid: None,
                status_callback: None,
                status_callback_method: "POST".to_owned(),
                updated: now,
            })
            .collect();
        let services = config
            .messaging_services
            .iter()
            .map(|s| MessagingService {
                sid: s.sid.clone(),
                friendly_name: s.friendly_name.clone().unwrap_or_else(|| s.sid.clone()),
                inbound_request_url: s.inbound_request_url.clone(),
                inbound_method: "POST".to_owned(),
                fallback_url: None,
                fallback_method: "POST".to_owned(),
                status_callback: None,
                use_inbound_webhook_on_number: false,
                numbers: s.numbers.clone(),
                updated: now,
            })
            .collect();
        let senders = config
            .senders()
            .iter()
            .map(|s| Sender {
                sid: s.sid(),
                phone_number: s.phone_number.clone(),
                webhook: SenderWebhook { callback_url: s.callback_url.clone(), ..SenderWebhook::default() },
                profile: Value::Null,
            })
            .collect();
        Self {
            config: config.clone(),
            status: config.status,
            created: now,
            numbers,
            services,
            senders,
            contents: Vec::new(),
            contents_created: 0,
            windows: HashMap::new(),
            media: HashMap::new(),
            inbound: HashMap::new(),
        }
    }

    /// The number with this E.164 value.
    pub fn number(&self, phone_number: &str) -> Option<&PhoneNumber> {
        self.numbers.iter().find(|n| n.phone_number == phone_number)
    }

    /// The Messaging Service a number is pooled in.
    pub fn service_of(&self, phone_number: &str) -> Option<&MessagingService> {
        self.services.iter().find(|s| s.numbers.iter().any(|n| n == phone_number))
    }

    /// The content with this SID.
    pub fn content(&mut self, sid: &str) -> Option<&mut Content> {
        self.contents.iter_mut().find(|c| c.sid == sid)
    }
}

/// An incoming phone number's settings.
#[derive(Clone, Debug)]
pub struct PhoneNumber {
    /// `PN...`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Friendly name.
    pub friendly_name: String,
    /// Inbound message URL.
    pub sms_url: Option<String>,
    /// GET or POST.
    pub sms_method: String,
    /// Fallback URL.
    pub sms_fallback_url: Option<String>,
    /// GET or POST.
    pub sms_fallback_method: String,
    /// Application handling messages instead of the URLs.
    pub sms_application_sid: Option<String>,
    /// Status callback URL.
    pub status_callback: Option<String>,
    /// GET or POST.
    pub status_callback_method: String,
    /// Last change.
    pub updated: Timestamp,
}

/// A Messaging Service's settings.
#[derive(Clone, Debug)]
pub struct MessagingService {
    /// `MG...`.
    pub sid: String,
    /// Friendly name.
    pub friendly_name: String,
    /// Inbound request URL; none means inbound messages are dropped.
    pub inbound_request_url: Option<String>,
    /// GET or POST.
    pub inbound_method: String,
    /// Fallback URL.
    pub fallback_url: Option<String>,
    /// GET or POST.
    pub fallback_method: String,
    /// Status callback URL.
    pub status_callback: Option<String>,
    /// Whether each number's own URL is used instead of the service's.
    pub use_inbound_webhook_on_number: bool,
    /// E.164 numbers pooled in the service.
    pub numbers: Vec<String>,
    /// Last change.
    pub updated: Timestamp,
}

/// A WhatsApp sender.
#[derive(Clone, Debug)]
pub struct Sender {
    /// `XE...`.
    pub sid: String,
    /// E.164.
    pub phone_number: String,
    /// Webhook settings.
    pub webhook: SenderWebhook,
    /// The profile last set, as sent.
    pub profile: Value,
}

/// A sender's webhook settings (Senders API `webhook`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct SenderWebhook {
    /// Inbound message URL.
    pub callback_url: Option<String>,
    /// POST or PUT.
    pub callback_method: Option<String>,
    /// Fallback URL.
    pub fallback_url: Option<String>,
    /// POST or PUT.
    pub fallback_method: Option<String>,
    /// Status callback URL.
    pub status_callback_url: Option<String>,
    /// Status callback method.
    pub status_callback_method: Option<String>,
}

/// The API a message was sent through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// LINE reply.
    Reply,
    /// LINE push.
    Push,
    /// Twilio Messages.
    Message,
}

/// A message sent through a provider API: what the customer got.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    /// LINE sent-message ID or Twilio message SID.
    pub id: String,
    /// The provider.
    pub provider: Provider,
    /// LINE channel ID or Twilio account SID.
    pub account: String,
    /// The API that sent it.
    pub via: Via,
    /// Recipient: LINE user ID or `whatsapp:+...`.
    pub to: String,
    /// Twilio sender address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Twilio Messaging Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
    /// The text: a LINE text message's text, Twilio's Body, or a template rendered with its
    /// variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Media URLs (Twilio MediaUrl, LINE originalContentUrl).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media_urls: Vec<String>,
    /// Twilio Content SID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
    /// Twilio ContentVariables as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_variables: Option<String>,
    /// The LINE message object as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_message: Option<Value>,
    /// The LINE retry key of the push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_key: Option<String>,
    /// When it was sent (RFC 3339, milliseconds).
    pub sent_at: String,
}
