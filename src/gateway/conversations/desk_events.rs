//! Desk events about a conversation, queued in the transaction that changed it, so that the
//! change and the events that tell the desk about it commit together.

use crate::gateway::clock::rfc3339;
use crate::gateway::model::conversation::{CloseReason, Conversation};
use crate::gateway::model::desk_event::{AccountRef, DeskEvent, EventType, MessageBody};
use crate::gateway::model::queue::NewDeskEvent;
use crate::gateway::store::{StoreError, Tx};

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
pub fn enqueue(tx: &mut dyn Tx, account: AccountRef<'_>, conv: &Conversation, pending: Pending<'_>, now_ms: i64) -> Result<String, StoreError> {
    let sequence = tx.next_sequence(&conv.id)?;
    let id = uuid::Uuid::new_v4().to_string();
    let event = DeskEvent {
        id: &id,
        event_type: pending.event_type,
        created_at: rfc3339(now_ms),
        sequence,
        account,
        conversation: conv,
        message: pending.message,
        reason: pending.reason,
    };
    tx.queue_event(NewDeskEvent {
        id: &id,
        workstream: &conv.workstream,
        conversation_id: &conv.id,
        event_type: pending.event_type.as_str(),
        target: conv.handler.as_str(),
        body: serde_json::to_string(&event)?,
        created_ms: now_ms,
    })?;
    Ok(id)
}

/// Closes a conversation and queues `conversation.closed`; false when it was closed already.
pub fn close(tx: &mut dyn Tx, account: AccountRef<'_>, conv: &mut Conversation, reason: CloseReason, now_ms: i64) -> Result<bool, StoreError> {
    if !conv.close(now_ms, reason) {
        return Ok(false);
    }
    tx.update_conversation(conv)?;
    enqueue(tx, account, conv, Pending { event_type: EventType::ConversationClosed, message: None, reason: Some(reason.as_str()) }, now_ms)?;
    Ok(true)
}
