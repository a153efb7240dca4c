//! The simulator's configuration: the LINE channels and Twilio accounts it knows, read from a
//! YAML or JSON file, built from command-line flags, or the built-in demo set.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids;

/// Credentials in the configuration use the providers' redacting secret type.
pub use crate::providers::Secret;

/// Everything the simulator starts from. Field names are camelCase in files.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulatorConfig {
    /// LINE Messaging API channels.
    #[serde(default)]
    pub line: Vec<LineChannelConfig>,
    /// Twilio accounts with their WhatsApp numbers, Messaging Services and senders.
    #[serde(default)]
    pub twilio: Vec<TwilioAccountConfig>,
    /// How WhatsApp template approvals progress after submission.
    #[serde(default)]
    pub approvals: ApprovalSchedule,
    /// How the status callbacks of Twilio messages sent with a `StatusCallback` go.
    #[serde(default)]
    pub receipts: ReceiptSchedule,
    /// How long after a customer's last inbound message free-form WhatsApp messages are allowed.
    #[serde(default = "default_whatsapp_window", with = "duration_text")]
    pub whatsapp_window: Duration,
    /// How long a LINE reply token stays usable.
    #[serde(default = "default_reply_token_ttl", with = "duration_text")]
    pub reply_token_ttl: Duration,
    /// How long the simulator waits for a webhook receiver (webhook test, customer messages).
    #[serde(default = "default_webhook_timeout", with = "duration_text")]
    pub webhook_timeout: Duration,
    /// The base URL others reach the simulator at, for links in answers and customer media
    /// URLs; the bound address when absent.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_whatsapp_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_reply_token_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            line: Vec::new(),
            twilio: Vec::new(),
            approvals: ApprovalSchedule::default(),
            receipts: ReceiptSchedule::default(),
            whatsapp_window: default_whatsapp_window(),
            reply_token_ttl: default_reply_token_ttl(),
            webhook_timeout: default_webhook_timeout(),
            public_url: None,
        }
    }
}

/// One LINE channel (a LINE Official Account's Messaging API channel).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineChannelConfig {
    /// The channel ID (digits).
    pub channel_id: String,
    /// The channel secret that signs webhooks.
    pub channel_secret: Secret,
    /// The channel access token that API calls must carry as a Bearer token.
    pub access_token: Secret,
    /// The bot's user ID (`U` + 32 hex); derived from the channel ID when absent.
    #[serde(default)]
    pub bot_user_id: Option<String>,
    /// The bot's basic ID (`@...`); derived when absent.
    #[serde(default)]
    pub basic_id: Option<String>,
    /// The bot's display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// A webhook endpoint already set when the simulator starts.
    #[serde(default)]
    pub webhook_endpoint: Option<String>,
    /// Users whose profiles the profile API knows from the start.
    #[serde(default)]
    pub users: Vec<LineUserConfig>,
    /// The Official Account Manager's chat setting: with `bot` (chat off), message events carry
    /// no `markAsReadToken`.
    #[serde(default)]
    pub chat_mode: ChatMode,
}

/// A LINE Official Account's chat setting, as `GET /v2/bot/info` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// Chat is on: agents chat, and messages can be marked as read.
    #[default]
    Chat,
    /// Chat is off: the bot answers.
    Bot,
}

impl LineChannelConfig {
    /// A channel with derived bot identity and no users, for quick starts and tests.
    pub fn new(channel_id: impl Into<String>, channel_secret: Secret, access_token: Secret) -> Self {
        Self {
            channel_id: channel_id.into(),
            channel_secret,
            access_token,
            bot_user_id: None,
            basic_id: None,
            display_name: None,
            webhook_endpoint: None,
            users: Vec::new(),
            chat_mode: ChatMode::Chat,
        }
    }

    /// The bot's user ID, configured or derived from the channel ID.
    pub fn bot_user_id(&self) -> String {
        self.bot_user_id.clone().unwrap_or_else(|| format!("U{}", ids::derived_hex(&format!("bot:{}", self.channel_id), 32)))
    }

    /// The bot's basic ID, configured or derived from the channel ID.
    pub fn basic_id(&self) -> String {
        self.basic_id.clone().unwrap_or_else(|| format!("@{}", ids::derived_hex(&format!("basic:{}", self.channel_id), 7)))
    }

    /// The bot's display name, configured or made from the channel ID.
    pub fn display_name(&self) -> String {
        self.display_name.clone().unwrap_or_else(|| format!("Channel {}", self.channel_id))
    }
}

/// A LINE user's profile as the profile API returns it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineUserConfig {
    /// The user ID (`U` + 32 hex).
    pub user_id: String,
    /// The display name.
    pub display_name: String,
    /// BCP 47 language tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// An https picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture_url: Option<String>,
    /// The status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

/// One Twilio account.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TwilioAccountConfig {
    /// The account SID (`AC` + 32 hex).
    pub account_sid: String,
    /// The auth token for HTTP Basic authentication and webhook signatures.
    pub auth_token: Secret,
    /// The account's friendly name.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// The account status the account fetch reports.
    #[serde(default)]
    pub status: AccountStatus,
    /// The account type the account fetch reports.
    #[serde(default, rename = "type")]
    pub account_type: AccountType,
    /// Incoming phone numbers (WhatsApp-enabled).
    #[serde(default)]
    pub numbers: Vec<NumberConfig>,
    /// Messaging Services.
    #[serde(default)]
    pub messaging_services: Vec<MessagingServiceConfig>,
    /// WhatsApp senders; when absent, one online sender per number.
    #[serde(default)]
    pub senders: Option<Vec<SenderConfig>>,
    /// Twilio's "Enforce HTTP Auth on Media URLs": media URLs answer 401 without the account's
    /// credentials, and with them redirect to the simulated CDN, which refuses credentials.
    #[serde(default)]
    pub media_auth: bool,
}

impl TwilioAccountConfig {
    /// An active full account with the given numbers, for quick starts and tests.
    pub fn new(account_sid: impl Into<String>, auth_token: Secret, numbers: &[&str]) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token,
            friendly_name: None,
            status: AccountStatus::Active,
            account_type: AccountType::Full,
            numbers: numbers.iter().map(|n| NumberConfig::new(*n)).collect(),
            messaging_services: Vec::new(),
            senders: None,
            media_auth: false,
        }
    }

    /// The senders, configured or one per number.
    pub fn senders(&self) -> Vec<SenderConfig> {
        match &self.senders {
            Some(senders) => senders.clone(),
            None => self
                .numbers
                .iter()
                .map(|n| SenderConfig { sid: None, phone_number: n.phone_number.clone(), callback_url: None })
                .collect(),
        }
    }
}

/// Twilio account status values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    #[default]
    Active,
    /// Suspended: only the account fetch answers.
    Suspended,
    /// Closed: only the account fetch answers.
    Closed,
}

/// Twilio account type values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountType {
    /// A trial account.
    Trial,
    /// An upgraded account.
    #[default]
    Full,
}

/// An incoming phone number.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NumberConfig {
    /// E.164 number.
    pub phone_number: String,
    /// `PN` + 32 hex; derived from the number when absent.
    #[serde(default)]
    pub sid: Option<String>,
    /// Friendly name; the number when absent.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// An inbound message URL already set when the simulator starts.
    #[serde(default)]
    pub sms_url: Option<String>,
}

impl NumberConfig {
    /// A number with a derived SID and no URL.
    pub fn new(phone_number: impl Into<String>) -> Self {
        Self { phone_number: phone_number.into(), sid: None, friendly_name: None, sms_url: None }
    }

    /// The PN SID, configured or derived from the number.
    pub fn sid(&self) -> String {
        self.sid.clone().unwrap_or_else(|| ids::derived_sid("PN", &self.phone_number))
    }
}

/// A Messaging Service.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagingServiceConfig {
    /// `MG` + 32 hex.
    pub sid: String,
    /// Friendly name.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// An inbound request URL already set when the simulator starts.
    #[serde(default)]
    pub inbound_request_url: Option<String>,
    /// E.164 numbers of this account pooled in the service.
    #[serde(default)]
    pub numbers: Vec<String>,
}

/// A WhatsApp sender of the Senders API.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SenderConfig {
    /// `XE` + 32 hex; derived from the number when absent.
    #[serde(default)]
    pub sid: Option<String>,
    /// E.164 number of the sender.
    pub phone_number: String,
    /// A webhook callback URL already set when the simulator starts.
    #[serde(default)]
    pub callback_url: Option<String>,
}

impl SenderConfig {
    /// The XE SID, configured or derived from the number.
    pub fn sid(&self) -> String {
        self.sid.clone().unwrap_or_else(|| ids::derived_sid("XE", &self.phone_number))
    }
}

/// How the status callbacks of a message go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptSchedule {
    /// The statuses called back, in this order unless shuffled; a failure follows them.
    #[serde(default = "default_statuses")]
    pub statuses: Vec<String>,
    /// The time before each callback.
    #[serde(default = "default_delay", with = "duration_text")]
    pub delay: Duration,
    /// Sends the callbacks in a random order.
    #[serde(default)]
    pub shuffle: bool,
    /// How often each callback is sent.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Sends every callback before answering the request that sent the message.
    #[serde(default)]
    pub before_answer: bool,
    /// The message ends in this failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ReceiptFailure>,
}

/// A failure a message ends in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptFailure {
    /// `failed` or `undelivered`.
    #[serde(default = "undelivered")]
    pub status: String,
    /// Twilio's `ErrorCode`.
    pub error_code: i64,
    /// Twilio's `ErrorMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

fn default_statuses() -> Vec<String> {
    ["sent", "delivered", "read"].map(String::from).to_vec()
}

fn default_delay() -> Duration {
    Duration::from_millis(50)
}

fn one() -> u32 {
    1
}

fn undelivered() -> String {
    "undelivered".to_owned()
}

impl Default for ReceiptSchedule {
    fn default() -> Self {
        Self { statuses: default_statuses(), delay: default_delay(), shuffle: false, repeat: 1, before_answer: false, failure: None }
    }
}

impl ReceiptSchedule {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        const KNOWN: &[&str] = &["queued", "sending", "sent", "delivered", "read", "failed", "undelivered"];
        if let Some(unknown) = self.statuses.iter().find(|s| !KNOWN.contains(&s.as_str())) {
            return Err(format!("statuses: {unknown:?} is not a Twilio message status"));
        }
        if self.repeat == 0 {
            return Err("repeat: must be at least 1".to_owned());
        }
        if let Some(failure) = &self.failure
            && !matches!(failure.status.as_str(), "failed" | "undelivered")
        {
            return Err(format!("failure.status: {:?} is neither failed nor undelivered", failure.status));
        }
        Ok(())
    }
}

/// How a submitted WhatsApp template moves on: `received` for `receivedFor`, then `pending` for
/// `pendingFor`, then `outcome`. Each submission keeps the schedule in force when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSchedule {
    /// Time spent in `received`.
    #[serde(default = "default_received_for", with = "duration_text")]
    pub received_for: Duration,
    /// Time spent in `pending`.
    #[serde(default = "default_pending_for", with = "duration_text")]
    pub pending_for: Duration,
    /// The final status.
    #[serde(default)]
    pub outcome: ApprovalOutcome,
    /// The rejection reason reported when the outcome is `rejected`.
    #[serde(default = "default_rejection_reason")]
    pub rejection_reason: String,
}

fn default_received_for() -> Duration {
    Duration::from_secs(2)
}

fn default_pending_for() -> Duration {
    Duration::from_secs(5)
}

fn default_rejection_reason() -> String {
    "The template was rejected by the simulator's schedule.".to_owned()
}

impl Default for ApprovalSchedule {
    fn default() -> Self {
        Self {
            received_for: default_received_for(),
            pending_for: default_pending_for(),
            outcome: ApprovalOutcome::Approved,
            rejection_reason: default_rejection_reason(),
        }
    }
}

/// Where a scheduled approval ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalOutcome {
    /// The template is approved.
    #[default]
    Approved,
    /// The template is rejected with the schedule's reason.
    Rejected,
}

/// A configuration that cannot be used, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is neither valid YAML nor JSON of the expected shape.
    #[error("cannot parse {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value breaks a rule; the message names the field.
    #[error("invalid simulator configuration: {0}")]
    Invalid(String),
}

impl SimulatorConfig {
    /// Reads a YAML or JSON file (JSON is YAML too) and checks it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let config: Self = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// A ready-made set for demos: one LINE channel and one Twilio account with one WhatsApp
    /// number in a Messaging Service. The credentials are published in the README.
    pub fn demo() -> Self {
        let mut line = LineChannelConfig::new("1657123456", Secret::new(DEMO_LINE_SECRET), Secret::new(DEMO_LINE_TOKEN));
        line.display_name = Some("Contoso Support".to_owned());
        line.users.push(LineUserConfig {
            user_id: DEMO_LINE_USER.to_owned(),
            display_name: "Ann Customer".to_owned(),
            language: Some("en".to_owned()),
            picture_url: None,
            status_message: None,
        });
        let mut twilio = TwilioAccountConfig::new(DEMO_TWILIO_ACCOUNT, Secret::new(DEMO_TWILIO_TOKEN), &["+14155550100"]);
        twilio.friendly_name = Some("Contoso WhatsApp".to_owned());
        twilio.messaging_services.push(MessagingServiceConfig {
            sid: DEMO_TWILIO_SERVICE.to_owned(),
            friendly_name: Some("Contoso support".to_owned()),
            inbound_request_url: None,
            numbers: vec!["+14155550100".to_owned()],
        });
        Self { line: vec![line], twilio: vec![twilio], ..Self::default() }
    }

    /// Checks identifiers and uniqueness; the message names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let Err(e) = self.receipts.validate() {
            return invalid(format!("receipts.{e}"));
        }
        for (i, channel) in self.line.iter().enumerate() {
            let at = format!("line[{i}]");
            if channel.channel_id.is_empty() || !channel.channel_id.bytes().all(|b| b.is_ascii_digit()) {
                return invalid(format!("{at}.channelId must be digits"));
            }
            if channel.channel_secret.expose().is_empty() || channel.access_token.expose().is_empty() {
                return invalid(format!("{at}: channelSecret and accessToken must not be empty"));
            }
            if !is_prefixed_hex(&channel.bot_user_id(), "U") {
                return invalid(format!("{at}.botUserId must be U followed by 32 lowercase hex digits"));
            }
            for (j, user) in channel.users.iter().enumerate() {
                if !is_prefixed_hex(&user.user_id, "U") {
                    return invalid(format!("{at}.users[{j}].userId must be U followed by 32 lowercase hex digits"));
                }
            }
            if self.line[..i].iter().any(|c| c.channel_id == channel.channel_id) {
                return invalid(format!("{at}.channelId {} appears twice", channel.channel_id));
            }
            if self.line[..i].iter().any(|c| c.access_token == channel.access_token) {
                return invalid(format!("{at}.accessToken is used by another channel"));
            }
        }
        for (i, account) in self.twilio.iter().enumerate() {
            let at = format!("twilio[{i}]");
            if !is_prefixed_hex(&account.account_sid, "AC") {
                return invalid(format!("{at}.accountSid must be AC followed by 32 lowercase hex digits"));
            }
            if account.auth_token.expose().is_empty() {
                return invalid(format!("{at}.authToken must not be empty"));
            }
            if self.twilio[..i].iter().any(|a| a.account_sid == account.account_sid) {
                return invalid(format!("{at}.accountSid {} appears twice", account.account_sid));
            }
            for (j, number) in account.numbers.iter().enumerate() {
                if !is_e164(&number.phone_number) {
                    return invalid(format!("{at}.numbers[{j}].phoneNumber must be E.164, like +14155550100"));
                }
                if !is_prefixed_hex(&number.sid(), "PN") {
                    return invalid(format!("{at}.numbers[{j}].sid must be PN followed by 32 lowercase hex digits"));
                }
            }
            for (j, service) in account.messaging_services.iter().enumerate() {
                if !is_prefixed_hex(&service.sid, "MG") {
                    return invalid(format!("{at}.messagingServices[{j}].sid must be MG followed by 32 lowercase hex digits"));
                }
                if let Some(n) = service.numbers.iter().find(|n| !account.numbers.iter().any(|x| &x.phone_number == *n)) {
                    return invalid(format!("{at}.messagingServices[{j}].numbers: {n} is not one of the account's numbers"));
                }
            }
            for (j, sender) in account.senders().iter().enumerate() {
                if !is_e164(&sender.phone_number) || !is_prefixed_hex(&sender.sid(), "XE") {
                    return invalid(format!("{at}.senders[{j}] needs an E.164 phoneNumber and an XE sid"));
                }
            }
        }
        Ok(())
    }
}

/// The demo LINE channel secret.
pub const DEMO_LINE_SECRET: &str = "demo-line-channel-secret";
/// The demo LINE channel access token.
pub const DEMO_LINE_TOKEN: &str = "demo-line-access-token";
/// The demo LINE user known to the profile API.
pub const DEMO_LINE_USER: &str = "U4af4980629a1b2c3d4e5f60718293a4b";
/// The demo Twilio account SID.
pub const DEMO_TWILIO_ACCOUNT: &str = "AC00000000000000000000000000000001";
/// The demo Twilio auth token.
pub const DEMO_TWILIO_TOKEN: &str = "demo-twilio-auth-token";
/// The demo Messaging Service SID.
pub const DEMO_TWILIO_SERVICE: &str = "MG00000000000000000000000000000001";

/// Whether `text` is `prefix` followed by 32 lowercase hex digits.
pub(crate) fn is_prefixed_hex(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Whether `text` is an E.164 number: `+`, a non-zero digit, up to 14 more digits.
pub(crate) fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Serde for durations written like `90s`, `250ms`, `24h`, `1h30m`.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes whole seconds as `Ns`, anything else as `Nms`.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*value))
    }

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::api::duration::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a duration like 500ms, 2s, 5m or 24h")))
    }

    /// The text form of a duration.
    pub fn format(value: Duration) -> String {
        if value.subsec_millis() == 0 { format!("{}s", value.as_secs()) } else { format!("{}ms", value.as_millis()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_format_and_derives_the_rest() {
        let yaml = r#"
line:
  - channelId: "1657123456"
    channelSecret: line-secret
    accessToken: line-token
    users:
      - {userId: U4af4980629a1b2c3d4e5f60718293a4b, displayName: Ann, language: en}
twilio:
  - accountSid: AC0123456789abcdef0123456789abcdef
    authToken: twilio-token
    status: suspended
    type: Trial
    numbers:
      - phoneNumber: "+14155550100"
    messagingServices:
      - sid: MG0123456789abcdef0123456789abcdef
        numbers: ["+14155550100"]
approvals: {receivedFor: 500ms, pendingFor: 1s, outcome: rejected, rejectionReason: Too vague}
whatsappWindow: 1h
"#;
        let config: SimulatorConfig = serde_yaml::from_str(yaml).expect("the documented format parses");
        config.validate().expect("valid");
        assert_eq!(config.approvals.received_for, Duration::from_millis(500));
        assert_eq!(config.approvals.outcome, ApprovalOutcome::Rejected);
        assert_eq!(config.whatsapp_window, Duration::from_secs(3600));
        assert_eq!(config.reply_token_ttl, Duration::from_secs(60));
        let account = &config.twilio[0];
        assert_eq!((account.status, account.account_type), (AccountStatus::Suspended, AccountType::Trial));
        assert!(is_prefixed_hex(&account.numbers[0].sid(), "PN"));
        assert_eq!(account.senders().len(), 1, "one sender per number by default");
        assert!(is_prefixed_hex(&config.line[0].bot_user_id(), "U"));
        assert!(!format!("{config:?}").contains("twilio-token"));
    }

    #[test]
    fn rejects_what_the_providers_would_never_issue() {
        SimulatorConfig::demo().validate().expect("the demo set is valid");
        let mut config = SimulatorConfig::demo();
        config.twilio[0].numbers[0].phone_number = "14155550100".to_owned();
        assert!(matches!(config.validate(), Err(ConfigError::Invalid(m)) if m.contains("numbers[0].phoneNumber")));
        let mut config = SimulatorConfig::demo();
        let duplicate = config.line[0].clone();
        config.line.push(duplicate);
        assert!(config.validate().is_err());
        assert!(serde_yaml::from_str::<SimulatorConfig>("whatsappWindow: forever").is_err());
    }
}
