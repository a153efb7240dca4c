//! The gateway's three durable queues as the store hands them out: recorded webhook events
//! (intake), desk events (the outbox) and messages to customers (sends). Plain types: the store
//! reads and writes them, the workers act on them.

use uuid::Uuid;

use super::event::InboundEvent;
use super::outbound::OutContent;

/// Where a recorded event is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundState {
    /// Recorded, not yet processed.
    Pending = 0,
    /// Processed (or nothing to do).
    Done = 1,
    /// No workstream takes it under the current configuration; processed again when the
    /// configuration changes.
    Held = 2,
    /// Cannot be read back (a store written by a newer build); kept for a person to look at.
    Unreadable = 3,
}

/// What recording a webhook's events found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Events recorded now.
    pub new: usize,
    /// Events recorded before (redeliveries).
    pub duplicate: usize,
}

/// An event ready to record: its provider ID and its JSON. Made before the store job, so that
/// the single writer only binds strings.
#[derive(Debug)]
pub struct Serialized {
    /// The provider's event ID, which a redelivery repeats.
    pub id: String,
    /// The event as JSON.
    pub json: String,
}

/// Serializes events for recording.
pub fn serialize(events: &[InboundEvent]) -> Result<Vec<Serialized>, serde_json::Error> {
    events.iter().map(|e| Ok(Serialized { id: e.provider_event_id.clone(), json: serde_json::to_string(e)? })).collect()
}

/// A desk event to put in the outbox, rendered.
#[derive(Debug)]
pub struct NewDeskEvent<'a> {
    /// Its ID, the desk's idempotency key.
    pub id: &'a str,
    /// Its conversation's workstream.
    pub workstream: &'a str,
    /// Its conversation.
    pub conversation_id: &'a str,
    /// Its type as the desk sees it (`message.received`, …).
    pub event_type: &'a str,
    /// Who receives it: `desk` or `bot`.
    pub target: &'a str,
    /// The JSON body.
    pub body: String,
    /// When it was queued.
    pub created_ms: i64,
}

/// A desk event in the outbox, as delivery takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Its place in the outbox.
    pub seq: i64,
    /// Its ID, the desk's idempotency key.
    pub event_id: String,
    /// Its conversation's workstream.
    pub workstream: String,
    /// `desk` or `bot`.
    pub target: String,
    /// Its type.
    pub event_type: String,
    /// The JSON body.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl QueuedEvent {
    /// The receiver this event goes to, as down receivers are remembered: `target:workstream`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.target, self.workstream)
    }
}

/// The outbox's depth and its oldest event's age, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events waiting.
    pub depth: i64,
    /// When the oldest was queued.
    pub oldest_ms: Option<i64>,
}

/// A message to queue for sending.
#[derive(Debug)]
pub struct NewSend<'a> {
    /// Its conversation.
    pub conversation_id: &'a str,
    /// The stored outgoing message it sends.
    pub message_id: &'a str,
    /// Its conversation's workstream.
    pub workstream: &'a str,
    /// The customer's address.
    pub recipient: &'a str,
    /// The business address it goes from (WhatsApp), none on LINE.
    pub sender: Option<&'a str>,
    /// What it says.
    pub contents: &'a [OutContent],
    /// LINE's `X-Line-Retry-Key`.
    pub retry_key: Uuid,
    /// A LINE reply token and until when it may be used.
    pub reply: Option<(&'a str, i64)>,
    /// When it was queued.
    pub created_ms: i64,
}

/// A queued message, as the sender takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedSend {
    /// Its place in the queue.
    pub seq: i64,
    /// Its conversation.
    pub conversation_id: String,
    /// The stored outgoing message it sends.
    pub message_id: String,
    /// The customer's address.
    pub recipient: String,
    /// The business address it goes from (WhatsApp).
    pub sender: Option<String>,
    /// What it says.
    pub contents: Vec<OutContent>,
    /// LINE's `X-Line-Retry-Key`.
    pub retry_key: Uuid,
    /// A LINE reply token, spent after one attempt.
    pub reply_token: Option<String>,
    /// Until when the reply token may be used.
    pub reply_until_ms: i64,
    /// When it was queued.
    pub created_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}
