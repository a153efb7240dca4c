//! The events the gateway delivers to the agent desk, and their signature. The README's
//! "Agent desk events" section documents the format for desk implementers.

use serde::Serialize;
use standardwebhooks::Webhook;

use super::conversation::Conversation;
use super::event::Message;
use super::outbound::OutboundMessage;
use crate::providers::credentials::Secret;

/// The event's ID, the same on every attempt: the desk's idempotency key (Standard Webhooks).
pub const ID_HEADER: &str = standardwebhooks::HEADER_WEBHOOK_ID;
/// When this attempt was signed, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = standardwebhooks::HEADER_WEBHOOK_TIMESTAMP;
/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per signing key, space-separated.
pub const SIGNATURE_HEADER: &str = standardwebhooks::HEADER_WEBHOOK_SIGNATURE;

/// The prefix of a Standard Webhooks secret, whose key is the base64 that follows it.
const SECRET_PREFIX: &str = "whsec_";

/// A key deliveries are signed with.
pub struct SigningKey(Webhook);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

/// A `whsec_` secret whose rest is not base64.
#[derive(Debug, thiserror::Error)]
#[error("starts with whsec_ but what follows is not base64")]
pub struct InvalidSigningKey;

impl SigningKey {
    /// The key of a Secret's value: a `whsec_…` value is the base64 after the prefix, as the
    /// Standard Webhooks specification has it; any other value is the key bytes as written.
    pub fn new(secret: &Secret) -> Result<Self, InvalidSigningKey> {
        let text = secret.expose();
        let webhook = if text.starts_with(SECRET_PREFIX) {
            Webhook::new(text).map_err(|_| InvalidSigningKey)?
        } else {
            Webhook::from_bytes(text.as_bytes().to_vec()).map_err(|_| InvalidSigningKey)?
        };
        Ok(Self(webhook))
    }
}

/// The `webhook-signature` value of a delivery of `body` with ID `id` at `timestamp` (Unix
/// seconds): one signature per key, so that a desk that knows either key of a rotation accepts
/// it. The desk rejects old timestamps, so a captured delivery cannot be replayed later.
pub fn signatures(keys: &[SigningKey], id: &str, timestamp: i64, body: &str) -> String {
    // Signing fails only on a body that is not UTF-8, which a str cannot be.
    keys.iter().filter_map(|key| key.0.sign(id, timestamp, body.as_bytes()).ok()).collect::<Vec<_>>().join(" ")
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// A new conversation was routed to a queue.
    #[serde(rename = "conversation.created")]
    ConversationCreated,
    /// The customer wrote to a waiting conversation, which is active again.
    #[serde(rename = "conversation.reopened")]
    ConversationReopened,
    /// The customer sent a message.
    #[serde(rename = "message.received")]
    MessageReceived,
    /// The conversation ended.
    #[serde(rename = "conversation.closed")]
    ConversationClosed,
    /// An agent took the conversation (push distribution, or the supervisor's `assign`).
    #[serde(rename = "conversation.assigned")]
    ConversationAssigned,
    /// The conversation's agent went Offline; it is back in its queue.
    #[serde(rename = "conversation.unassigned")]
    ConversationUnassigned,
    /// The agent put the conversation aside until the customer writes.
    #[serde(rename = "conversation.waiting")]
    ConversationWaiting,
    /// The conversation was moved to another queue or agent.
    #[serde(rename = "conversation.transferred")]
    ConversationTransferred,
    /// The provider accepted an outgoing message.
    #[serde(rename = "message.accepted")]
    MessageAccepted,
    /// An accepted WhatsApp message was passed on to WhatsApp.
    #[serde(rename = "message.sent")]
    MessageSent,
    /// An outgoing WhatsApp message reached the customer's device.
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    /// The customer read an outgoing WhatsApp message.
    #[serde(rename = "message.read")]
    MessageRead,
    /// An outgoing message was refused for good, expired, or could not be delivered.
    #[serde(rename = "message.failed")]
    MessageFailed,
    /// An automated message or the survey was not sent, by rule.
    #[serde(rename = "message.skipped")]
    MessageSkipped,
}

impl EventType {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ConversationCreated => "conversation.created",
            EventType::ConversationReopened => "conversation.reopened",
            EventType::MessageReceived => "message.received",
            EventType::ConversationClosed => "conversation.closed",
            EventType::ConversationAssigned => "conversation.assigned",
            EventType::ConversationUnassigned => "conversation.unassigned",
            EventType::ConversationWaiting => "conversation.waiting",
            EventType::ConversationTransferred => "conversation.transferred",
            EventType::MessageAccepted => "message.accepted",
            EventType::MessageSent => "message.sent",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageRead => "message.read",
            EventType::MessageFailed => "message.failed",
            EventType::MessageSkipped => "message.skipped",
        }
    }
}

/// The account the gateway serves, as events name it.
#[derive(Clone, Debug, Serialize)]
pub struct AccountRef<'a> {
    /// Namespace of the MessagingAccount.
    pub namespace: &'a str,
    /// Name of the MessagingAccount.
    pub name: &'a str,
}

/// One event for the desk.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeskEvent<'a> {
    /// Unique ID of the event; also the `webhook-id` header.
    pub id: &'a str,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened (RFC 3339).
    pub created_at: String,
    /// Position of the event in its conversation, from 1 without gaps: the desk can tell a
    /// missing or repeated event.
    pub sequence: i64,
    /// The account.
    pub account: AccountRef<'a>,
    /// The conversation as it is after the event.
    pub conversation: &'a Conversation,
    /// The message: the customer's for `message.received`, the outgoing one for
    /// `message.accepted`, `message.sent`, `message.delivered`, `message.read`, `message.failed`
    /// and `message.skipped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageBody<'a>>,
    /// Why the conversation closed (`conversation.closed`) or a message was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// A message in an event: a customer's or an outgoing one.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(untagged)]
pub enum MessageBody<'a> {
    /// From the customer.
    In(&'a Message),
    /// To the customer.
    Out(&'a OutboundMessage),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_an_independent_computation() {
        // printf 'msg_1.1700000000.{"a":1}' | openssl dgst -sha256 -hmac desk-secret -binary | base64
        let raw = SigningKey::new(&Secret::new("desk-secret")).unwrap();
        assert_eq!(signatures(&[raw], "msg_1", 1_700_000_000, r#"{"a":1}"#), "v1,4XNOocq3u1LESN8XNAL2M96FfF8dZZd7JiiVsvgXYe8=");
    }

    #[test]
    fn a_whsec_secret_is_its_base64_and_rotation_signs_twice() {
        // "ZGVzay1zZWNyZXQ=" is base64 of "desk-secret": the same key as the raw value.
        let raw = SigningKey::new(&Secret::new("desk-secret")).unwrap();
        let spec = SigningKey::new(&Secret::new("whsec_ZGVzay1zZWNyZXQ=")).unwrap();
        let one = signatures(&[raw], "msg_1", 1_700_000_000, "{}");
        assert_eq!(signatures(&[spec], "msg_1", 1_700_000_000, "{}"), one);
        let other = SigningKey::new(&Secret::new("previous-secret")).unwrap();
        let both = signatures(&[SigningKey::new(&Secret::new("desk-secret")).unwrap(), other], "msg_1", 1_700_000_000, "{}");
        assert!(both.starts_with(&format!("{one} v1,")) && both.split(' ').count() == 2, "{both}");
        assert!(SigningKey::new(&Secret::new("whsec_not base64!")).is_err());
        assert_eq!(format!("{:?}", SigningKey::new(&Secret::new("desk-secret")).unwrap()), "SigningKey(redacted)");
    }
}
