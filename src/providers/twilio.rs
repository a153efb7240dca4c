//! The Twilio client: the credential check, inbound webhook URLs (phone numbers, Messaging
//! Services, WhatsApp senders), sending messages, and WhatsApp templates through the Content API.
//!
//! Retries: reads, deletes and the updates that set a resource's fields to given values are safe
//! to repeat and are retried; creating a message, creating Content and submitting Content for
//! approval are not, and are sent once.
//!
//! Lists are read to the end, page by page, up to [`MAX_LIST_PAGES`] pages.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use url::Url;

use super::credentials::TwilioCredentials;
use super::endpoints::{ProviderEndpoints, join};
use super::error::{Operation, ProviderError};
use super::http::{Auth, Body, Call, Redirects, Repeat, Reply, Transport, content_type};

/// The REST API version in every 2010 API path.
const API_VERSION: &str = "2010-04-01";

/// Page size asked for when listing phone numbers and senders.
const NUMBERS_PAGE_SIZE: &str = "100";

/// Page size asked for when listing Content. WhatsApp alone allows 6,000 approved templates per
/// account; [`MAX_LIST_PAGES`] pages of this size hold 10,000.
const CONTENT_PAGE_SIZE: &str = "200";

/// Most pages of a list followed, so a paging loop cannot run forever.
pub const MAX_LIST_PAGES: usize = 50;

/// Most media URLs one message may carry.
pub const MAX_MEDIA_URLS: usize = 10;

/// Longest message body Twilio accepts, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// The method Twilio uses to call the gateway: the gateway's webhook route accepts POST only.
const WEBHOOK_METHOD: &str = "POST";

/// A client for one Twilio account. Cheap to create; shares the process's connection pool.
#[derive(Clone, Debug)]
pub struct TwilioClient {
    transport: Transport,
    endpoints: Arc<ProviderEndpoints>,
    credentials: TwilioCredentials,
}

/// A Twilio account (`GET /2010-04-01/Accounts/{Sid}.json`). The response also carries the auth
/// token, which is deliberately not read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Account {
    /// The account SID (`AC…`).
    pub sid: String,
    /// The account's name.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Whether the account can be used.
    pub status: AccountStatus,
    /// Trial or full (upgraded) account.
    #[serde(rename = "type")]
    pub kind: AccountType,
}

/// A Twilio account's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    Active,
    /// Suspended by Twilio or the owner; calls fail.
    Suspended,
    /// Closed for good.
    Closed,
}

/// A Twilio account's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AccountType {
    /// A trial account, with its sending restrictions.
    Trial,
    /// An upgraded account.
    Full,
}

/// An incoming phone number and where its inbound messages go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct IncomingNumber {
    /// The number's SID (`PN…`).
    pub sid: String,
    /// The number in E.164.
    pub phone_number: String,
    /// The URL Twilio calls for an inbound message, when set.
    #[serde(default)]
    pub sms_url: Option<String>,
    /// The method of that call (GET or POST).
    #[serde(default)]
    pub sms_method: Option<String>,
    /// A TwiML application that overrides `sms_url`, when set.
    #[serde(default)]
    pub sms_application_sid: Option<String>,
}

/// One page of a Twilio list.
trait ListPage: DeserializeOwned {
    /// What the list holds.
    type Item;

    /// The page's items, and where the next page is when there is one.
    fn into_parts(self) -> (Vec<Self::Item>, Option<String>);
}

/// One page of `IncomingPhoneNumbers.json`; the 2010 API gives the next page as a path.
#[derive(Deserialize)]
struct NumberPage {
    incoming_phone_numbers: Vec<IncomingNumber>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

impl ListPage for NumberPage {
    type Item = IncomingNumber;

    fn into_parts(self) -> (Vec<IncomingNumber>, Option<String>) {
        (self.incoming_phone_numbers, self.next_page_uri)
    }
}

/// One page of a list of the newer APIs (Content, Messaging, Senders), which give the next page
/// as an absolute URL; each names its items after the list (`meta.key`).
#[derive(Deserialize)]
struct MetaPage<T> {
    #[serde(alias = "contents", alias = "senders", alias = "phone_numbers")]
    items: Vec<T>,
    #[serde(default)]
    meta: Option<PageMeta>,
}

/// The paging links of a newer Twilio API's list.
#[derive(Deserialize)]
struct PageMeta {
    #[serde(default)]
    next_page_url: Option<String>,
}

impl<T: DeserializeOwned> ListPage for MetaPage<T> {
    type Item = T;

    fn into_parts(self) -> (Vec<T>, Option<String>) {
        (self.items, self.meta.and_then(|meta| meta.next_page_url))
    }
}

/// A Messaging Service and where its inbound messages go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MessagingService {
    /// The service SID (`MG…`).
    pub sid: String,
    /// The URL Twilio calls for an inbound message, when set.
    #[serde(default)]
    pub inbound_request_url: Option<String>,
    /// The method of that call.
    #[serde(default)]
    pub inbound_method: Option<String>,
}

/// A WhatsApp sender (`/v2/Channels/Senders/{Sid}`) and its webhook.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WhatsAppSender {
    /// The sender SID (`XE…`).
    pub sid: String,
    /// The sender's status, e.g. ONLINE or PENDING_VERIFICATION.
    #[serde(default)]
    pub status: Option<String>,
    /// The sender address, e.g. `whatsapp:+14155550100`.
    #[serde(default)]
    pub sender_id: Option<String>,
    /// Its webhook settings.
    #[serde(default)]
    pub webhook: Option<SenderWebhook>,
}

/// A WhatsApp sender's webhook settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SenderWebhook {
    /// The URL Twilio calls for an inbound message.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The method of that call (POST or PUT).
    #[serde(default)]
    pub callback_method: Option<String>,
}

/// A number in a Messaging Service's pool (`/v1/Services/{Sid}/PhoneNumbers`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceNumber {
    /// The incoming number's SID (`PN…`).
    pub sid: String,
    /// The number in E.164.
    pub phone_number: String,
}

/// A sender attached to a Messaging Service (`/v1/Services/{Sid}/ChannelSenders`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceSender {
    /// The sender SID (`XE…`).
    pub sid: String,
    /// The sender address, e.g. `whatsapp:+14155550100`.
    #[serde(default)]
    pub sender: Option<String>,
}

/// A message to send (`POST …/Messages.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The recipient as a channel address, e.g. `whatsapp:+905551112233`.
    pub to: String,
    /// Who sends it.
    pub from: MessageSender,
    /// What it says.
    pub content: MessageContent,
    /// Where Twilio reports delivery status, when wanted.
    pub status_callback: Option<Url>,
}

/// The sender of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageSender {
    /// A sender address, e.g. `whatsapp:+14155550100` (`From`).
    Address(String),
    /// A Messaging Service that picks the sender from its pool (`MessagingServiceSid`, `MG…`).
    MessagingService(String),
}

/// The content of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageContent {
    /// Free text (`Body`, up to 1,600 characters); WhatsApp only allows it inside the 24-hour
    /// window (error 63016 otherwise).
    Text(String),
    /// Media by URL (`MediaUrl`, 1 to 10) with an optional caption (`Body`).
    Media {
        /// The caption.
        caption: Option<String>,
        /// Publicly reachable media URLs.
        urls: Vec<Url>,
    },
    /// An approved template (`ContentSid`, `HX…`) with its variables (`ContentVariables`).
    Template {
        /// The Content SID.
        content_sid: String,
        /// Variable values by name, e.g. {"1": "Ann"}.
        variables: BTreeMap<String, String>,
    },
}

/// A message Twilio accepted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    /// The message SID (`SM…` or `MM…`).
    pub sid: String,
    /// Its status, e.g. queued or accepted.
    #[serde(default)]
    pub status: Option<String>,
    /// Twilio's error code, when the message already failed.
    #[serde(default)]
    pub error_code: Option<i64>,
    /// Twilio's error message, when the message already failed.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// A Content resource to create (`POST /v1/Content`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewContent {
    /// A name for people; not shown to recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// The language, e.g. `en`.
    pub language: String,
    /// Default (sample) values of the variables, e.g. {"1": "Ann"}.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// The content in each type.
    pub types: ContentTypes,
}

/// The content types of a Content resource; at least one must be set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContentTypes {
    /// `twilio/text`.
    #[serde(rename = "twilio/text", skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    /// `twilio/media`.
    #[serde(rename = "twilio/media", skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaContent>,
}

/// The `twilio/text` type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TextContent {
    /// The text, with variables `{{1}}`, `{{2}}`, ….
    pub body: String,
}

/// The `twilio/media` type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MediaContent {
    /// A caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Media URLs.
    pub media: Vec<String>,
}

/// A Content resource, as created or listed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Content {
    /// The Content SID (`HX…`).
    pub sid: String,
    /// Its language.
    #[serde(default)]
    pub language: Option<String>,
    /// Its name.
    #[serde(default)]
    pub friendly_name: Option<String>,
}

/// WhatsApp template categories, as the approval request spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WhatsAppCategory {
    /// Transactional updates.
    Utility,
    /// Promotions.
    Marketing,
    /// One-time passcodes.
    Authentication,
}

/// A template's WhatsApp approval (after a submission or read back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Where the review stands.
    pub status: ApprovalStatus,
    /// The template name it was submitted under.
    pub name: Option<String>,
    /// The category as WhatsApp has it; WhatsApp may change the one submitted.
    pub category: Option<String>,
    /// Why it was rejected, when it was.
    pub rejection_reason: Option<String>,
}

/// A WhatsApp approval status. Twilio's documents capitalise the values and its responses
/// lowercase them, so both are read; an unknown value is kept rather than refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalStatus {
    /// Not submitted for approval.
    Unsubmitted,
    /// Received by Twilio.
    Received,
    /// Under review at WhatsApp.
    Pending,
    /// Approved; may be sent.
    Approved,
    /// Rejected; see the reason.
    Rejected,
    /// Paused after negative feedback; cannot be sent.
    Paused,
    /// Disabled; cannot be sent.
    Disabled,
    /// A value this version does not know, as Twilio sent it.
    Other(String),
}

impl ApprovalStatus {
    /// Reads a status in any letter case.
    pub fn parse(value: &str) -> Self {
        match value.trim().to_ascii_lowercase().as_str() {
            "unsubmitted" => Self::Unsubmitted,
            "received" => Self::Received,
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "paused" => Self::Paused,
            "disabled" => Self::Disabled,
            _ => Self::Other(value.to_owned()),
        }
    }
}

impl fmt::Display for ApprovalStatus {
    /// The capitalised form the MessageTemplate status uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsubmitted => "Unsubmitted",
            Self::Received => "Received",
            Self::Pending => "Pending",
            Self::Approved => "Approved",
            Self::Rejected => "Rejected",
            Self::Paused => "Paused",
            Self::Disabled => "Disabled",
            Self::Other(value) => value,
        })
    }
}

impl<'de> Deserialize<'de> for ApprovalStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|value| Self::parse(&value))
    }
}

/// The approval fields both approval responses share; every field is nullable.
#[derive(Default, Deserialize)]
struct ApprovalBody {
    #[serde(default)]
    status: Option<ApprovalStatus>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    rejection_reason: Option<String>,
}

impl From<ApprovalBody> for Approval {
    fn from(body: ApprovalBody) -> Self {
        Self {
            status: body.status.unwrap_or(ApprovalStatus::Unsubmitted),
            name: body.name,
            category: body.category,
            // Twilio sends "" for "no reason".
            rejection_reason: body.rejection_reason.filter(|reason| !reason.is_empty()),
        }
    }
}

/// `GET /v1/Content/{Sid}/ApprovalRequests`: `whatsapp` is absent or null before a submission.
#[derive(Deserialize)]
struct ApprovalFetch {
    #[serde(default)]
    whatsapp: Option<ApprovalBody>,
}

impl TwilioClient {
    pub(crate) fn new(transport: Transport, endpoints: Arc<ProviderEndpoints>, credentials: TwilioCredentials) -> Self {
        Self { transport, endpoints, credentials }
    }

    /// The account; the credential check (401 → [`ProviderError::Unauthorized`]), and its status
    /// tells a suspended or closed account apart.
    pub async fn account(&self) -> Result<Account, ProviderError> {
        let operation = Operation::TwilioAccount;
        let account_file = format!("{}.json", self.credentials.account_sid);
        let url = join(&self.endpoints.twilio_api, &[API_VERSION, "Accounts", &account_file]);
        let call = self.call(operation, Method::GET, url, Repeat::Safe);
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// The account's incoming phone numbers, all pages (at most [`MAX_LIST_PAGES`]), optionally
    /// only those matching `phone_number` (E.164; `*` matches any digit).
    pub async fn incoming_numbers(&self, phone_number: Option<&str>) -> Result<Vec<IncomingNumber>, ProviderError> {
        let mut url = self.account_url(&["IncomingPhoneNumbers.json"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(phone_number) = phone_number {
                query.append_pair("PhoneNumber", phone_number);
            }
            query.append_pair("PageSize", NUMBERS_PAGE_SIZE);
        }
        self.list::<NumberPage>(Operation::TwilioListNumbers, &self.endpoints.twilio_api, url).await
    }

    /// Points a phone number's inbound messages at `url` (`SmsUrl`, `SmsMethod=POST`), or clears
    /// its `SmsUrl` with `None` (sent empty, as Twilio clears a field; the OpenAPI document's
    /// `format: uri` admits no empty value, so validators of the document refuse it). Setting the
    /// same values again changes nothing, so it is retried.
    pub async fn set_number_webhook(
        &self,
        number_sid: &str,
        url: Option<&Url>,
    ) -> Result<IncomingNumber, ProviderError> {
        let operation = Operation::TwilioUpdateNumber;
        let number_file = format!("{number_sid}.json");
        let form = webhook_form("SmsUrl", "SmsMethod", url);
        let call = self
            .call(operation, Method::POST, self.account_url(&["IncomingPhoneNumbers", &number_file]), Repeat::Safe)
            .body(Body::Form(form));
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// Points a Messaging Service's inbound messages at `url` (`InboundRequestUrl`,
    /// `InboundMethod=POST`), or clears its `InboundRequestUrl` with `None` (sent empty, as for
    /// [`Self::set_number_webhook`]). Without the URL, Twilio drops the service's inbound messages
    /// unless the service uses its numbers' own URLs. Idempotent, so retried.
    pub async fn set_service_webhook(
        &self,
        service_sid: &str,
        url: Option<&Url>,
    ) -> Result<MessagingService, ProviderError> {
        let operation = Operation::TwilioUpdateService;
        let form = webhook_form("InboundRequestUrl", "InboundMethod", url);
        let url = join(&self.endpoints.twilio_messaging, &["v1", "Services", service_sid]);
        let call = self.call(operation, Method::POST, url, Repeat::Safe).body(Body::Form(form));
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// Points a WhatsApp sender's inbound messages at `url` (`webhook.callback_url`, method
    /// POST). Idempotent, so retried. Twilio answers 202: the change may take a moment.
    pub async fn set_sender_webhook(&self, sender_sid: &str, url: &Url) -> Result<WhatsAppSender, ProviderError> {
        let operation = Operation::TwilioUpdateSender;
        let body = json!({ "webhook": { "callback_url": url.as_str(), "callback_method": WEBHOOK_METHOD } });
        let url = join(&self.endpoints.twilio_messaging, &["v2", "Channels", "Senders", sender_sid]);
        let call = self.call(operation, Method::POST, url, Repeat::Safe).body(Body::Json(body));
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// The account's WhatsApp senders (Senders API), all pages (at most [`MAX_LIST_PAGES`]).
    pub async fn whatsapp_senders(&self) -> Result<Vec<WhatsAppSender>, ProviderError> {
        let mut url = join(&self.endpoints.twilio_messaging, &["v2", "Channels", "Senders"]);
        url.query_pairs_mut().append_pair("Channel", "whatsapp").append_pair("PageSize", NUMBERS_PAGE_SIZE);
        self.list::<MetaPage<WhatsAppSender>>(Operation::TwilioListSenders, &self.endpoints.twilio_messaging, url).await
    }

    /// The phone numbers in a Messaging Service's pool, all pages.
    pub async fn service_numbers(&self, service_sid: &str) -> Result<Vec<ServiceNumber>, ProviderError> {
        let mut url = join(&self.endpoints.twilio_messaging, &["v1", "Services", service_sid, "PhoneNumbers"]);
        url.query_pairs_mut().append_pair("PageSize", NUMBERS_PAGE_SIZE);
        self.list::<MetaPage<ServiceNumber>>(Operation::TwilioListServiceNumbers, &self.endpoints.twilio_messaging, url).await
    }

    /// The senders (WhatsApp and others) attached to a Messaging Service, all pages.
    pub async fn service_senders(&self, service_sid: &str) -> Result<Vec<ServiceSender>, ProviderError> {
        let mut url = join(&self.endpoints.twilio_messaging, &["v1", "Services", service_sid, "ChannelSenders"]);
        url.query_pairs_mut().append_pair("PageSize", NUMBERS_PAGE_SIZE);
        self.list::<MetaPage<ServiceSender>>(Operation::TwilioListServiceSenders, &self.endpoints.twilio_messaging, url).await
    }

    /// Sends a message. Never retried: Twilio has no idempotency key for messages, so a repeat
    /// after a lost answer could deliver it twice. [`ProviderError::Unavailable`] therefore means
    /// the outcome is unknown (the message may have been accepted).
    pub async fn send_message(&self, message: &OutgoingMessage) -> Result<SentMessage, ProviderError> {
        let operation = Operation::TwilioSendMessage;
        let form = message_form(message).map_err(|detail| ProviderError::InvalidRequest { operation, detail })?;
        let call = self
            .call(operation, Method::POST, self.account_url(&["Messages.json"]), Repeat::Never)
            .body(Body::Form(form));
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// The account's Content resources (templates), all pages (at most [`MAX_LIST_PAGES`]), in
    /// the order Twilio lists them. This is how Content created by a call whose answer was lost
    /// is found again, e.g. by its friendly name.
    pub async fn contents(&self) -> Result<Vec<Content>, ProviderError> {
        let mut url = join(&self.endpoints.twilio_content, &["v1", "Content"]);
        url.query_pairs_mut().append_pair("PageSize", CONTENT_PAGE_SIZE);
        self.list::<MetaPage<Content>>(Operation::TwilioListContent, &self.endpoints.twilio_content, url).await
    }

    /// Creates a Content resource (a template). Never retried: a repeat could create two.
    pub async fn create_content(&self, content: &NewContent) -> Result<Content, ProviderError> {
        let operation = Operation::TwilioCreateContent;
        if content.types.text.is_none() && content.types.media.is_none() {
            return Err(ProviderError::InvalidRequest { operation, detail: "content needs at least one type".into() });
        }
        let body = serde_json::to_value(content)
            .map_err(|err| ProviderError::InvalidRequest { operation, detail: err.to_string() })?;
        let url = join(&self.endpoints.twilio_content, &["v1", "Content"]);
        let call = self.call(operation, Method::POST, url, Repeat::Never).body(Body::Json(body));
        self.send(&call).await?.json(operation, &self.credentials.auth_token)
    }

    /// Submits Content for WhatsApp approval under a template `name` (lowercase letters, digits
    /// and `_`). Never retried: a second submission is refused by Twilio, which would hide
    /// whether the first one went through; read [`Self::approval`] instead.
    pub async fn submit_for_approval(
        &self,
        content_sid: &str,
        name: &str,
        category: WhatsAppCategory,
    ) -> Result<Approval, ProviderError> {
        let operation = Operation::TwilioSubmitApproval;
        let url = join(&self.endpoints.twilio_content, &["v1", "Content", content_sid, "ApprovalRequests", "whatsapp"]);
        let call = self
            .call(operation, Method::POST, url, Repeat::Never)
            .body(Body::Json(json!({ "name": name, "category": category })));
        let body: ApprovalBody = self.send(&call).await?.json(operation, &self.credentials.auth_token)?;
        Ok(body.into())
    }

    /// Content's WhatsApp approval; [`ApprovalStatus::Unsubmitted`] before a submission.
    pub async fn approval(&self, content_sid: &str) -> Result<Approval, ProviderError> {
        let operation = Operation::TwilioApprovalStatus;
        let url = join(&self.endpoints.twilio_content, &["v1", "Content", content_sid, "ApprovalRequests"]);
        let call = self.call(operation, Method::GET, url, Repeat::Safe);
        let fetched: ApprovalFetch = self.send(&call).await?.json(operation, &self.credentials.auth_token)?;
        Ok(fetched.whatsapp.unwrap_or_default().into())
    }

    /// Deletes Content. Retried; Content that is already gone (404, e.g. after a retry whose
    /// first attempt went through) counts as deleted.
    pub async fn delete_content(&self, content_sid: &str) -> Result<(), ProviderError> {
        let operation = Operation::TwilioDeleteContent;
        let url = join(&self.endpoints.twilio_content, &["v1", "Content", content_sid]);
        let call = self.call(operation, Method::DELETE, url, Repeat::Safe);
        match self.send(&call).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A 2010 API URL under this account.
    fn account_url(&self, path: &[&str]) -> Url {
        let account = self.credentials.account_sid.as_str();
        let segments: Vec<&str> = [API_VERSION, "Accounts", account].into_iter().chain(path.iter().copied()).collect();
        join(&self.endpoints.twilio_api, &segments)
    }

    /// Every item of a list on `host`, from the page at `first` on, following the pages' links
    /// (at most [`MAX_LIST_PAGES`] pages).
    async fn list<P: ListPage>(
        &self,
        operation: Operation,
        host: &Url,
        first: Url,
    ) -> Result<Vec<P::Item>, ProviderError> {
        let mut url = first;
        let mut items = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let call = self.call(operation, Method::GET, url, Repeat::Safe);
            let page: P = self.send(&call).await?.json(operation, &self.credentials.auth_token)?;
            let (page_items, next) = page.into_parts();
            items.extend(page_items);
            match next.filter(|next| !next.is_empty()) {
                Some(next) => url = next_page_url(operation, host, &next)?,
                None => return Ok(items),
            }
        }
        Err(ProviderError::InvalidResponse {
            operation,
            detail: format!("the list did not end within {MAX_LIST_PAGES} pages"),
        })
    }

    fn call(&self, operation: Operation, method: Method, url: Url, repeat: Repeat) -> Call {
        Call::new(operation, method, url, repeat, self.transport.config.timeout)
    }

    async fn send(&self, call: &Call) -> Result<Reply, ProviderError> {
        let auth = Auth::Basic { user: &self.credentials.account_sid, password: &self.credentials.auth_token };
        self.transport.execute(&auth, call).await
    }
}

/// The absolute URL of a list's next page on `host`: the 2010 API gives a path and query on the
/// host (`next_page_uri`), the newer APIs an absolute URL (`meta.next_page_url`). Either way it
/// must stay on the configured host: the request carries the account's credentials.
fn next_page_url(operation: Operation, host: &Url, next: &str) -> Result<Url, ProviderError> {
    let invalid =
        || ProviderError::InvalidResponse { operation, detail: "the next page is not on the API host".into() };
    let parsed = if next.starts_with('/') && !next.starts_with("//") {
        Url::parse(&format!("{}{next}", host.as_str().trim_end_matches('/')))
    } else {
        Url::parse(next)
    };
    let url = parsed.map_err(|_| invalid())?;
    if url.origin() != host.origin() {
        return Err(invalid());
    }
    Ok(url)
}

/// The form that points inbound messages at `url` with the gateway's method, or clears the URL
/// (an empty value; the method is left as it is).
fn webhook_form(url_field: &'static str, method_field: &'static str, url: Option<&Url>) -> Vec<(&'static str, String)> {
    match url {
        Some(url) => vec![(url_field, url.to_string()), (method_field, WEBHOOK_METHOD.to_owned())],
        None => vec![(url_field, String::new())],
    }
}

/// The form of `POST …/Messages.json`, or why Twilio would refuse it.
fn message_form(message: &OutgoingMessage) -> Result<Vec<(&'static str, String)>, String> {
    let mut form = vec![("To", message.to.clone())];
    match &message.from {
        MessageSender::Address(from) => form.push(("From", from.clone())),
        MessageSender::MessagingService(sid) => form.push(("MessagingServiceSid", sid.clone())),
    }
    match &message.content {
        MessageContent::Text(body) => {
            check_body(body)?;
            form.push(("Body", body.clone()));
        }
        MessageContent::Media { caption, urls } => {
            if urls.is_empty() || urls.len() > MAX_MEDIA_URLS {
                return Err(format!("{} media URLs; Twilio takes 1 to {MAX_MEDIA_URLS}", urls.len()));
            }
            if let Some(caption) = caption {
                check_body(caption)?;
                form.push(("Body", caption.clone()));
            }
            form.extend(urls.iter().map(|url| ("MediaUrl", url.to_string())));
        }
        MessageContent::Template { content_sid, variables } => {
            form.push(("ContentSid", content_sid.clone()));
            if !variables.is_empty() {
                let json = serde_json::to_string(variables).map_err(|err| err.to_string())?;
                form.push(("ContentVariables", json));
            }
        }
    }
    if let Some(callback) = &message.status_callback {
        form.push(("StatusCallback", callback.to_string()));
    }
    Ok(form)
}

/// Twilio takes bodies of up to 1,600 characters.
fn check_body(body: &str) -> Result<(), String> {
    let length = body.chars().count();
    if length > MAX_BODY_CHARS {
        return Err(format!("body of {length} characters; Twilio takes up to {MAX_BODY_CHARS}"));
    }
    Ok(())
}

/// A customer's media as downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    /// The content type Twilio (or its CDN) gave, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl TwilioClient {
    /// Downloads a customer's media (an inbound message's `MediaUrl{N}`), refusing more than
    /// `max_bytes` ([`ProviderError::TooLarge`]).
    ///
    /// An account can make Twilio require its credentials on media URLs; Twilio then redirects
    /// to its CDN. The credentials go with the first request only, and only when [`media_url`]
    /// finds the URL to be this account's media on the configured API host; any other URL is
    /// refused unfetched ([`ProviderError::InvalidRequest`]), so a forged or unexpected
    /// `MediaUrl` gets neither the credentials nor a request from inside the cluster. Redirects
    /// are followed, at most five, never from https to http, and without the credentials once
    /// they leave the API host's scheme, host and port (reqwest's rule).
    pub async fn media(&self, url: &str, max_bytes: u64) -> Result<Media, ProviderError> {
        let operation = Operation::TwilioMedia;
        let url = media_url(&self.endpoints.twilio_api, &self.credentials.account_sid, url)
            .map_err(|refused| ProviderError::InvalidRequest { operation, detail: refused.to_string() })?;
        let mut call = Call::new(operation, Method::GET, url, Repeat::Safe, self.transport.config.download_timeout);
        call.max_body = max_bytes;
        call.redirects = Redirects::Followed;
        let reply = self.send(&call).await?;
        Ok(Media { content_type: content_type(&reply.headers), bytes: reply.body })
    }
}

/// Why a media URL is not fetched. The messages do not repeat the URL, which came from a
/// webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlRefused {
    /// Not an absolute URL.
    #[error("the media URL is not a valid URL")]
    Invalid,
    /// It names a user or password of its own.
    #[error("the media URL carries user info")]
    UserInfo,
    /// Another scheme, host or port than the configured Twilio API's.
    #[error("the media URL is not on the configured Twilio API host")]
    OtherHost,
    /// On the API host, but not a media resource of this account.
    #[error("the media URL is not a media resource of this account")]
    NotMedia,
}

/// `url` parsed, when it may be fetched with the account's credentials: on the API's origin
/// (scheme, host and port as `api` has them, so an https API never has them sent over http),
/// without user info, and one of this account's media resources
/// (`{api}/2010-04-01/Accounts/{account}/Messages/{sid}/Media/{sid}`), because even on its own
/// host the credentials read everything of the account, the auth token included.
pub fn media_url(api: &Url, account_sid: &str, url: &str) -> Result<Url, MediaUrlRefused> {
    let url = Url::parse(url).map_err(|_| MediaUrlRefused::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MediaUrlRefused::UserInfo);
    }
    // The url crate lowercases hosts, encodes IDNs as punycode and leaves out default ports,
    // so origins compare as the hosts that would be connected to.
    if !matches!(url.scheme(), "http" | "https") || url.origin() != api.origin() {
        return Err(MediaUrlRefused::OtherHost);
    }
    let prefix: Vec<&str> = api.path_segments().map(|s| s.filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
    let sid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    match segments.strip_prefix(prefix.as_slice()) {
        Some([API_VERSION, "Accounts", account, "Messages", message, "Media", media])
            if *account == account_sid && sid(message) && sid(media) =>
        {
            Ok(url)
        }
        _ => Err(MediaUrlRefused::NotMedia),
    }
}

/// The answer of `POST /v2/Indicators/Typing.json`.
#[derive(Deserialize)]
struct TypingAnswer {
    #[serde(default)]
    success: bool,
}

impl TwilioClient {
    /// Shows the WhatsApp customer that a reply is being written, in answer to their message
    /// `message_sid` (`SM…` or `MM…`), which Twilio marks as read too. WhatsApp sets the
    /// duration: until the reply arrives, at most 25 seconds. Never retried: an indicator shown
    /// late, after backoffs, would announce a reply that may already have been sent.
    pub async fn typing_indicator(&self, message_sid: &str) -> Result<(), ProviderError> {
        let operation = Operation::TwilioTyping;
        if !is_message_sid(message_sid) {
            return Err(ProviderError::InvalidRequest { operation, detail: "the message ID is not a Twilio message SID (SM or MM and 32 hex digits)".into() });
        }
        let url = join(&self.endpoints.twilio_messaging, &["v2", "Indicators", "Typing.json"]);
        let form = vec![("channel", "whatsapp".to_owned()), ("messageId", message_sid.to_owned())];
        let call = self.call(operation, Method::POST, url, Repeat::Never).body(Body::Form(form));
        let answer: TypingAnswer = self.send(&call).await?.json(operation, &self.credentials.auth_token)?;
        if !answer.success {
            return Err(ProviderError::InvalidResponse { operation, detail: "Twilio answered success: false".into() });
        }
        Ok(())
    }
}

/// Whether `sid` is a message or media SID, the pattern the typing indicator's `messageId` has.
fn is_message_sid(sid: &str) -> bool {
    (sid.starts_with("SM") || sid.starts_with("MM")) && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content: MessageContent) -> OutgoingMessage {
        OutgoingMessage {
            to: "whatsapp:+905551112233".into(),
            from: MessageSender::Address("whatsapp:+14155550100".into()),
            content,
            status_callback: None,
        }
    }

    #[test]
    fn message_forms() {
        let form = message_form(&message(MessageContent::Text("hi".into()))).unwrap();
        assert_eq!(
            form,
            vec![
                ("To", "whatsapp:+905551112233".into()),
                ("From", "whatsapp:+14155550100".into()),
                ("Body", "hi".into())
            ]
        );

        let urls =
            vec![Url::parse("https://example.com/a.jpg").unwrap(), Url::parse("https://example.com/b.pdf").unwrap()];
        let mut media = message(MessageContent::Media { caption: Some("two".into()), urls });
        media.from = MessageSender::MessagingService("MG0123".into());
        let form = message_form(&media).unwrap();
        assert_eq!(form[1], ("MessagingServiceSid", "MG0123".into()));
        assert_eq!(form.iter().filter(|(key, _)| *key == "MediaUrl").count(), 2);

        let variables = BTreeMap::from([("1".to_owned(), "Ann".to_owned()), ("2".to_owned(), "10:00".to_owned())]);
        let form = message_form(&message(MessageContent::Template { content_sid: "HX1".into(), variables })).unwrap();
        assert_eq!(form[2], ("ContentSid", "HX1".into()));
        assert_eq!(form[3], ("ContentVariables", r#"{"1":"Ann","2":"10:00"}"#.into()));
    }

    #[test]
    fn message_limits() {
        let too_many = (0..11).map(|i| Url::parse(&format!("https://example.com/{i}.jpg")).unwrap()).collect();
        assert!(message_form(&message(MessageContent::Media { caption: None, urls: too_many })).is_err());
        assert!(message_form(&message(MessageContent::Media { caption: None, urls: Vec::new() })).is_err());
        assert!(message_form(&message(MessageContent::Text("x".repeat(1601)))).is_err());
        assert!(message_form(&message(MessageContent::Text("ü".repeat(1600)))).is_ok());
    }

    #[test]
    fn next_pages_stay_on_the_host() {
        let operation = Operation::TwilioListNumbers;
        let host = Url::parse("http://127.0.0.1:9000/twilio").unwrap();
        let next =
            next_page_url(operation, &host, "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json?Page=1").unwrap();
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:9000/twilio/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json?Page=1"
        );
        let next =
            next_page_url(operation, &host, "http://127.0.0.1:9000/v1/Content?PageSize=2&PageToken=PA2").unwrap();
        assert_eq!(next.as_str(), "http://127.0.0.1:9000/v1/Content?PageSize=2&PageToken=PA2");
        for elsewhere in [
            "//evil.example/steal",
            "https://evil.example/v1/Content",
            "http://127.0.0.1:9001/v1/Content",
            "https://127.0.0.1:9000/v1/Content",
            "v1/Content",
        ] {
            let err = next_page_url(operation, &host, elsewhere).unwrap_err();
            assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{elsewhere}: {err:?}");
        }
    }

    #[test]
    fn webhook_forms_set_or_clear() {
        let url = Url::parse("https://chat.example/hook").unwrap();
        assert_eq!(
            webhook_form("SmsUrl", "SmsMethod", Some(&url)),
            [("SmsUrl", "https://chat.example/hook".to_owned()), ("SmsMethod", "POST".to_owned())]
        );
        assert_eq!(webhook_form("InboundRequestUrl", "InboundMethod", None), [("InboundRequestUrl", String::new())]);
    }

    #[test]
    fn content_pages_read_their_next_link() {
        let page: MetaPage<Content> = serde_json::from_value(json!({
            "contents": [{"sid": "HX1", "account_sid": "AC1", "friendly_name": "a", "language": "en", "types": {}}],
            "meta": {"page": 0, "page_size": 1, "next_page_url": "https://content.twilio.com/v1/Content?PageSize=1&Page=1&PageToken=PA1", "key": "contents"}
        }))
        .unwrap();
        let (contents, next) = page.into_parts();
        assert_eq!(contents[0].friendly_name.as_deref(), Some("a"));
        assert_eq!(next.as_deref(), Some("https://content.twilio.com/v1/Content?PageSize=1&Page=1&PageToken=PA1"));
        let last: MetaPage<Content> =
            serde_json::from_value(json!({"contents": [], "meta": {"next_page_url": null}})).unwrap();
        assert_eq!(last.into_parts().1, None);
    }

    #[test]
    fn new_content_serializes_per_spec() {
        let content = NewContent {
            friendly_name: Some("appointment_reminder_en".into()),
            language: "en".into(),
            variables: BTreeMap::from([("1".to_owned(), "Ann".to_owned())]),
            types: ContentTypes {
                text: Some(TextContent { body: "Hi {{1}}".into() }),
                media: Some(MediaContent { body: None, media: vec!["https://example.com/a.jpg".into()] }),
            },
        };
        assert_eq!(
            serde_json::to_value(&content).unwrap(),
            json!({
                "friendly_name": "appointment_reminder_en",
                "language": "en",
                "variables": {"1": "Ann"},
                "types": {"twilio/text": {"body": "Hi {{1}}"}, "twilio/media": {"media": ["https://example.com/a.jpg"]}}
            })
        );
        assert_eq!(serde_json::to_value(WhatsAppCategory::Utility).unwrap(), json!("UTILITY"));
    }

    #[test]
    fn approval_status_reads_any_case() {
        assert_eq!(ApprovalStatus::parse("approved"), ApprovalStatus::Approved);
        assert_eq!(ApprovalStatus::parse("Approved"), ApprovalStatus::Approved);
        assert_eq!(ApprovalStatus::parse("PENDING"), ApprovalStatus::Pending);
        assert_eq!(ApprovalStatus::parse("in_appeal"), ApprovalStatus::Other("in_appeal".into()));
        assert_eq!(ApprovalStatus::Rejected.to_string(), "Rejected");

        let fetched: ApprovalFetch = serde_json::from_value(json!({
            "sid": "HX1", "whatsapp": {"type": "whatsapp", "name": "t", "category": "TRANSPORTATION_UPDATE",
            "status": "rejected", "rejection_reason": "Duplicate"}
        }))
        .unwrap();
        let approval: Approval = fetched.whatsapp.unwrap().into();
        assert_eq!(approval.status, ApprovalStatus::Rejected);
        assert_eq!(approval.category.as_deref(), Some("TRANSPORTATION_UPDATE"));
        assert_eq!(approval.rejection_reason.as_deref(), Some("Duplicate"));

        let unsubmitted: ApprovalFetch = serde_json::from_value(json!({"sid": "HX1", "whatsapp": null})).unwrap();
        let approval: Approval = unsubmitted.whatsapp.unwrap_or_default().into();
        assert_eq!(approval.status, ApprovalStatus::Unsubmitted);
        assert_eq!(approval.rejection_reason, None);
    }

    #[test]
    fn typing_indicators_take_message_and_media_sids() {
        assert!(is_message_sid("SM1234567890abcdef1234567890abcdef"));
        assert!(is_message_sid("MM1234567890ABCDEF1234567890abcdef"));
        for sid in ["", "SM123", "XE1234567890abcdef1234567890abcdef", "SM1234567890abcdef1234567890abcdeg", "SM1234567890abcdef1234567890abcdef0"] {
            assert!(!is_message_sid(sid), "{sid}");
        }
    }
}

#[cfg(test)]
mod media_tests {
    use super::*;

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123/Media/ME0123";

    fn check(api: &str, url: &str) -> Result<Url, MediaUrlRefused> {
        media_url(&Url::parse(api).unwrap(), ACCOUNT, url)
    }

    #[test]
    fn the_accounts_media_on_the_api_host_gets_the_credentials() {
        assert_eq!(check("https://api.twilio.com", &format!("https://api.twilio.com{PATH}")).unwrap().path(), PATH);
        assert!(check("https://api.twilio.com", &format!("https://API.Twilio.COM{PATH}")).is_ok(), "hosts compare without case");
        assert!(check("https://api.twilio.com", &format!("https://api.twilio.com:443{PATH}")).is_ok(), "the default port is the same port");
        assert!(check("http://127.0.0.1:8089/", &format!("http://127.0.0.1:8089{PATH}")).is_ok(), "the simulator");
        let prefixed = check("http://127.0.0.1:9000/twilio", &format!("http://127.0.0.1:9000/twilio{PATH}"));
        assert!(prefixed.is_ok(), "under the base's prefix");
        assert!(check("https://api.twilio.com", &format!("https://api.twilio.com{PATH}?x=1#y")).is_ok());
    }

    #[test]
    fn another_scheme_host_or_port_gets_nothing() {
        let api = "https://api.twilio.com";
        for url in [
            format!("http://api.twilio.com{PATH}"),
            format!("https://api.twilio.com:8443{PATH}"),
            format!("https://media.twiliocdn.com{PATH}"),
            format!("https://api.twilio.com.evil.example{PATH}"),
            format!("https://evil.example/api.twilio.com{PATH}"),
            format!("https://api.twilio.com.{PATH}"),
            // A Cyrillic "а": another host, in punycode.
            format!("https://\u{430}pi.twilio.com{PATH}"),
            format!("ftp://api.twilio.com{PATH}"),
        ] {
            assert_eq!(check(api, &url), Err(MediaUrlRefused::OtherHost), "{url}");
        }
        assert_eq!(check("http://127.0.0.1:8089", &format!("http://127.0.0.1:8090{PATH}")), Err(MediaUrlRefused::OtherHost));
        assert_eq!(check("http://127.0.0.1:8089", &format!("http://localhost:8089{PATH}")), Err(MediaUrlRefused::OtherHost));
    }

    #[test]
    fn user_info_and_garbage_are_refused() {
        let api = "https://api.twilio.com";
        assert_eq!(check(api, &format!("https://AC1:token@api.twilio.com{PATH}")), Err(MediaUrlRefused::UserInfo));
        assert_eq!(check(api, &format!("https://someone@api.twilio.com{PATH}")), Err(MediaUrlRefused::UserInfo));
        assert_eq!(check(api, &format!("https://api.twilio.com@evil.example{PATH}")), Err(MediaUrlRefused::UserInfo));
        assert_eq!(check(api, PATH), Err(MediaUrlRefused::Invalid), "a relative URL");
        assert_eq!(check(api, "not a url"), Err(MediaUrlRefused::Invalid));
    }

    #[test]
    fn only_this_accounts_media_resources() {
        let api = "https://api.twilio.com";
        let on_host = |path: &str| check(api, &format!("https://api.twilio.com{path}"));
        for path in [
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef.json",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123/Media/ME0123.json",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123/Media",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123/Media/ME0123/x",
            "/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Messages/MM0123/Media/ME0123",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM%2F0/Media/ME0123",
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123/Media/ME0123/../../../../../AC0123456789abcdef0123456789abcdef.json",
        ] {
            assert_eq!(on_host(path), Err(MediaUrlRefused::NotMedia), "{path}");
        }
        let prefixed = check("http://127.0.0.1:9000/twilio", &format!("http://127.0.0.1:9000{PATH}"));
        assert_eq!(prefixed, Err(MediaUrlRefused::NotMedia), "outside the base's prefix");
    }
}
