//! Conversations, their messages and their desk events in the store. Functions take the
//! connection of a store job, so that a caller can change a conversation and queue the events
//! that tell the desk about it in one transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::conversation::{CloseReason, Conversation};
use super::desk_event::{AccountRef, DeskEvent, EventType, MessageBody};
use super::event::Message;
use super::store::StoreError;

/// Reads a conversation's stored document.
fn decode(data: String) -> Result<Conversation, StoreError> {
    Ok(serde_json::from_str(&data)?)
}

/// The conversation of a customer in a workstream that is not closed, if any.
pub fn load_open(c: &Connection, workstream: &str, customer_id: &str) -> Result<Option<Conversation>, StoreError> {
    let data: Option<String> = c
        .prepare_cached("SELECT data FROM conversations WHERE workstream = ?1 AND customer_id = ?2 AND state != 'Closed'")?
        .query_row(params![workstream, customer_id], |r| r.get(0))
        .optional()?;
    data.map(decode).transpose()
}

/// A conversation by ID, closed or not.
pub fn load(c: &Connection, id: &str) -> Result<Option<Conversation>, StoreError> {
    let data: Option<String> = c.prepare_cached("SELECT data FROM conversations WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
    data.map(decode).transpose()
}

/// Whether the customer had a conversation in the workstream before.
pub fn customer_known(c: &Connection, workstream: &str, customer_id: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE workstream = ?1 AND customer_id = ?2)")?
        .query_row(params![workstream, customer_id], |r| r.get(0))?)
}

/// The contact ID the desk linked a customer to, if any.
pub fn contact(c: &Connection, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached("SELECT contact_id FROM contacts WHERE workstream = ?1 AND customer_id = ?2")?
        .query_row(params![workstream, customer_id], |r| r.get(0))
        .optional()?)
}

/// Keeps a LINE event's reply token for the next message to the customer, replacing an older one.
pub fn offer_reply_token(c: &Connection, id: &str, token: &str, until_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE conversations SET reply_token = ?2, reply_until_ms = ?3 WHERE id = ?1 AND coalesce(reply_until_ms, 0) < ?3")?
        .execute(params![id, token, until_ms])?;
    Ok(())
}

/// Takes the conversation's reply token if it is still fresh at `now_ms`: it works once, so it is
/// handed to one message only.
pub fn take_reply_token(c: &Connection, id: &str, now_ms: i64) -> Result<Option<(String, i64)>, StoreError> {
    let taken = c
        .prepare_cached("SELECT reply_token, reply_until_ms FROM conversations WHERE id = ?1 AND reply_token IS NOT NULL AND reply_until_ms > ?2")?
        .query_row(params![id, now_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .optional()?;
    if taken.is_some() {
        c.prepare_cached("UPDATE conversations SET reply_token = NULL, reply_until_ms = NULL WHERE id = ?1")?.execute([id])?;
    }
    Ok(taken)
}

/// How many conversations wait in a queue for an agent.
pub fn waiting_in(c: &Connection, workstream: &str, queue: &str) -> Result<i64, StoreError> {
    Ok(c.prepare_cached("SELECT count(*) FROM conversations WHERE workstream = ?1 AND queue = ?2 AND state = 'Open'")?
        .query_row(params![workstream, queue], |r| r.get(0))?)
}

/// Stores a new conversation.
pub fn insert(c: &Connection, conv: &Conversation) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO conversations (id, workstream, customer_id, state, queue, data, created_ms, last_customer_ms, last_activity_ms, closed_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        conv.id,
        conv.workstream,
        conv.customer.id,
        conv.state.as_str(),
        conv.routing.queue,
        serde_json::to_string(conv)?,
        conv.created_ms,
        conv.last_customer_ms,
        conv.last_activity_ms,
        conv.closed_ms
    ])?;
    Ok(())
}

/// Saves a changed conversation.
pub fn update(c: &Connection, conv: &Conversation) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE conversations SET state = ?2, queue = ?3, data = ?4, last_customer_ms = ?5, last_activity_ms = ?6, closed_ms = ?7 WHERE id = ?1",
    )?
    .execute(params![
        conv.id,
        conv.state.as_str(),
        conv.routing.queue,
        serde_json::to_string(conv)?,
        conv.last_customer_ms,
        conv.last_activity_ms,
        conv.closed_ms
    ])?;
    Ok(())
}

/// Conversations of a workstream that are not closed and where neither side wrote since
/// `before_ms`, oldest first.
pub fn quiet_since(c: &Connection, workstream: &str, before_ms: i64, limit: usize) -> Result<Vec<Conversation>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT data FROM conversations WHERE state != 'Closed' AND last_activity_ms < ?2 AND workstream = ?1 ORDER BY last_activity_ms LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![workstream, before_ms, limit as i64], |r| r.get::<_, String>(0))?;
    rows.map(|r| decode(r?)).collect()
}

/// Keeps a customer's message of a conversation.
pub fn record_message(c: &Connection, conversation_id: &str, message: &Message, at_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO messages (conversation_id, direction, provider_id, body, created_ms) VALUES (?1, 'in', ?2, ?3, ?4)")?
        .execute(params![conversation_id, message.id, serde_json::to_string(message)?, at_ms])?;
    Ok(())
}

/// An event for the desk about a conversation, before it is queued.
pub struct Pending<'a> {
    /// What happened.
    pub event_type: EventType,
    /// The message it is about.
    pub message: Option<MessageBody<'a>>,
    /// Why: a conversation closed, a message was skipped.
    pub reason: Option<&'a str>,
}

/// Queues an event for whoever handles the conversation (the desk, or the bot), in the
/// conversation's order, and returns its ID.
pub fn enqueue(c: &Connection, account: AccountRef<'_>, conv: &Conversation, pending: Pending<'_>, now_ms: i64) -> Result<String, StoreError> {
    let sequence: i64 = c
        .prepare_cached("UPDATE conversations SET next_sequence = next_sequence + 1 WHERE id = ?1 RETURNING next_sequence - 1")?
        .query_row([&conv.id], |r| r.get(0))?;
    let id = uuid::Uuid::new_v4().to_string();
    let created_at = super::clock::rfc3339(now_ms);
    let event = DeskEvent {
        id: &id,
        event_type: pending.event_type,
        created_at,
        sequence,
        account,
        conversation: conv,
        message: pending.message,
        reason: pending.reason,
    };
    c.prepare_cached(
        "INSERT INTO outbox (event_id, workstream, conversation_id, event_type, target, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![id, conv.workstream, conv.id, pending.event_type.as_str(), conv.handler.as_str(), serde_json::to_string(&event)?, now_ms])?;
    Ok(id)
}

/// Starts the conversation's event sequence again at 1: it goes to a new receiver (the desk,
/// after the bot), which counts its events from the start.
pub fn restart_sequence(c: &Connection, id: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE conversations SET next_sequence = 1 WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Closes a conversation and queues `conversation.closed`; false when it was closed already.
pub fn close(c: &Connection, account: AccountRef<'_>, conv: &mut Conversation, reason: CloseReason, now_ms: i64) -> Result<bool, StoreError> {
    if !conv.close(now_ms, reason) {
        return Ok(false);
    }
    update(c, conv)?;
    enqueue(c, account, conv, Pending { event_type: EventType::ConversationClosed, message: None, reason: Some(reason.as_str()) }, now_ms)?;
    Ok(true)
}
