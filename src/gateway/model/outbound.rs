//! Messages to customers — from agents, the bot, or the gateway itself — as stored and shown to
//! the desk. Each channel turns them into its provider's request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::conversation::AgentRef;
use crate::api::workstream::Trigger;

/// One part of an outgoing message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum OutContent {
    /// Free text.
    Text {
        /// The text.
        text: String,
    },
    /// A file by URL, which the provider fetches.
    Attachment {
        /// Where the provider fetches it.
        url: String,
        /// Its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_name: Option<String>,
        /// Its MIME type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        /// A text sent with it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// An approved template.
    Template {
        /// The MessageTemplate's name.
        name: String,
        /// The localization sent.
        language: String,
        /// The variables' values.
        variables: BTreeMap<String, String>,
        /// The body with the variables filled in.
        text: String,
        /// The approved Twilio Content SID (WhatsApp).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_sid: Option<String>,
    },
}

/// Who wrote an outgoing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Author {
    /// An agent, through the agent API.
    Agent,
    /// The workstream's bot, through the agent API.
    Bot,
    /// The gateway, for an automated message or the survey.
    Automated,
}

/// Where an outgoing message is. After `accepted`, WhatsApp messages move on as Twilio's
/// status callbacks report (`sent`, `delivered`, `read`, or `failed`); LINE reports nothing
/// more, so its messages stay `accepted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Stored; being sent (and retried).
    Queued,
    /// The provider accepted it.
    Accepted,
    /// The provider passed it on to the customer's messaging app.
    Sent,
    /// It reached the customer's device.
    Delivered,
    /// The customer read it.
    Read,
    /// The provider refused it for good, could not deliver it, or it could not be sent in time.
    Failed,
    /// Not sent, by rule (e.g. outside the WhatsApp window); `error` says why.
    Skipped,
}

/// Why a message was not delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendError {
    /// `session_window_closed`, `provider_rejected`, `credentials_rejected`, `expired`, or
    /// what a receipt's failure maps to (see the README's delivery receipts).
    pub code: String,
    /// The provider's own error code (e.g. Twilio 63016).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_code: Option<i64>,
    /// What happened, for people.
    pub message: String,
}

/// The error code of a message refused because the WhatsApp window is closed.
pub const WINDOW_CLOSED: &str = "session_window_closed";
/// The error code of a message that failed because the provider refused the account's
/// credentials (401 or 403) for longer than `--credentials-retry-for`.
pub const CREDENTIALS_REJECTED: &str = "credentials_rejected";
/// Twilio's code for a free-form message outside the window.
pub const TWILIO_WINDOW_CLOSED: i64 = 63016;

/// An outgoing message as stored and as the desk sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundMessage {
    /// The gateway's ID of the message.
    pub id: String,
    /// Always `out`.
    pub direction: String,
    /// Who wrote it.
    pub author: Author,
    /// The agent, when the desk named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// The caller's ID of the message (agent and bot messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// The automated messages it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// What it says.
    pub contents: Vec<OutContent>,
    /// Where it is.
    pub status: Status,
    /// When it got there (RFC 3339); absent on messages stored before receipts were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_at: Option<String>,
    /// The provider's IDs of what it sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_message_ids: Vec<String>,
    /// Why it was not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
}

/// The name of a trigger as messages list it; the survey is `PostConversationSurvey`.
pub fn trigger_name(trigger: Option<Trigger>) -> String {
    match trigger {
        Some(t) => format!("{t:?}"),
        None => "PostConversationSurvey".to_owned(),
    }
}

/// How one attempt to send a message ended.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted, with the provider's IDs.
    Sent(Vec<String>),
    /// Try again later (after the delay, when the provider named one); the reply token, if
    /// any, is spent.
    Retry(String, Option<Duration>),
    /// The provider refused it for good.
    Refused(SendError),
}
