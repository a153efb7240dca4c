//! The provider-neutral form of what a webhook reported. The webhook parsers produce it, the
//! store keeps it (as JSON) before the webhook is answered, and the processor acts on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::receipt::Receipt;

/// One event a provider reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundEvent {
    /// The provider's ID of the event, unique within the account: LINE's `webhookEventId`,
    /// Twilio's `MessageSid`. A redelivery carries the same ID.
    pub provider_event_id: String,
    /// When the provider says the event happened, in milliseconds since the Unix epoch; the
    /// time it was received when the provider does not say.
    pub timestamp_ms: i64,
    /// Who the event is from; absent for events that have no single customer (a LINE group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    /// The business address the event was sent to: the WhatsApp number in E.164 form. Absent
    /// for LINE, where the channel is the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// LINE's reply token, usable once within a minute of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_token: Option<String>,
    /// What happened.
    pub kind: EventKind,
}

/// The customer an event is from, as far as the webhook tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// The provider's ID: LINE user ID, or the WhatsApp address `whatsapp:+E164`.
    pub id: String,
    /// The name the customer shows (WhatsApp `ProfileName`); LINE's comes from the profile API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The phone number in E.164 form (WhatsApp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

/// What an event is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum EventKind {
    /// The customer sent a message.
    Message(Message),
    /// The customer added the account as a friend or unblocked it (LINE).
    Follow,
    /// The customer blocked the account (LINE).
    Unfollow,
    /// The customer tapped a postback action (LINE).
    Postback {
        /// The action's data.
        data: String,
    },
    /// The provider reported what became of an outgoing message (Twilio's status callback).
    Receipt(Receipt),
    /// Any other event type: kept in the store, not acted on.
    Other {
        /// The provider's name of the event type.
        event_type: String,
        /// The event as received.
        raw: Value,
    },
}

/// A message from the customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The provider's message ID (LINE message ID, Twilio MessageSid).
    pub id: String,
    /// The message type as the provider names it: text, image, video, audio, file, location,
    /// sticker, or a type this build does not know (kept as is).
    pub message_type: String,
    /// The text, or a text form of a location; absent for media without a caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Every attachment, in the order the provider listed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Type-specific fields the gateway does not interpret (a location's coordinates, a
    /// sticker's IDs, an unknown type's fields), passed to the desk as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Attachments the workstream's `fileAttachments` policy kept from the desk, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_attachments: Vec<RejectedAttachment>,
    /// What marks this message, and the customer's earlier ones, as read on the provider
    /// (LINE's `markAsReadToken`); absent where the provider needs none or sent none (LINE with
    /// chat off in the Official Account Manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
}

/// An attachment that was not passed on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedAttachment {
    /// The MIME type, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The file name, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Why: `attachments_not_allowed`, `attachment_too_large` or `blocked_extension`.
    pub reason: String,
}

/// One attachment of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Where the content is fetched from (Twilio `MediaUrl{N}`, or a LINE external content
    /// provider's URL). Absent when the provider hosts it behind its content API (LINE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The MIME type, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The file name, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The size in bytes, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}
