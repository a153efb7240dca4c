//! The events the gateway delivers to the agent desk, and their signature. The README's
//! "Agent desk events" section documents the format for desk implementers.

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::conversation::Conversation;
use super::event::Message;
use super::outbound::OutboundMessage;

/// Header with the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "switchboard-signature";
/// Header with the event's ID, the same on every attempt: the desk's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header with the event type.
pub const EVENT_TYPE_HEADER: &str = "switchboard-event";

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
    /// The provider accepted an outgoing message.
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    /// An outgoing message was refused for good or expired.
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
            EventType::MessageDelivered => "message.delivered",
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
    /// Unique ID of the event; also the `Idempotency-Key` header.
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
    /// `message.delivered`, `message.failed` and `message.skipped`.
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

/// The signature header's value for a body sent at `timestamp` (Unix seconds): the desk
/// recomputes the HMAC over `"{timestamp}.{body}"` and rejects old timestamps, so a captured
/// delivery cannot be replayed later.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_computation() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac desk-secret
        assert_eq!(
            signature(b"desk-secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=4fe8db78eed95148d2af76f219e61cdf773ab40407b0c22fff9f6d32b62d3f24"
        );
    }
}
