//! Delivery receipts applied to outgoing messages: each moves its message on (see
//! [`crate::gateway::model::receipt::steps`]) and tells the conversation's handler every
//! status on the way. A receipt for a message whose provider ID is not recorded yet — the
//! provider called back before its answer to the send was settled — is kept, and applied when
//! the send is.

use super::desk_events::{self, Pending};
use crate::gateway::clock::rfc3339;
use crate::gateway::model::conversation::Conversation;
use crate::gateway::model::desk_event::{AccountRef, EventType, MessageBody};
use crate::gateway::model::outbound::{OutboundMessage, Status};
use crate::gateway::model::receipt::{Receipt, Reported, steps};
use crate::gateway::store::{StoreError, Tx};

/// Applies a receipt the provider sent, or keeps it until its message is recorded.
pub fn apply(tx: &mut dyn Tx, account: AccountRef<'_>, receipt: &Receipt, now: i64) -> Result<(), StoreError> {
    let Some((conversation_id, message_id)) = tx.outbound_by_provider_id(&receipt.provider_message_id)? else {
        return tx.keep_receipt(receipt, now);
    };
    // The conversation first, as every job that changes both takes them.
    let (Some(conv), Some(mut message)) = (tx.conversation(&conversation_id)?, tx.outbound(&message_id)?) else { return Ok(()) };
    advance(tx, account, &conv, &mut message, receipt, now)
}

/// Applies the receipts kept for a message the provider has just accepted, oldest status first.
pub fn apply_kept(tx: &mut dyn Tx, account: AccountRef<'_>, conv: &Conversation, message: &mut OutboundMessage, now: i64) -> Result<(), StoreError> {
    let mut kept = Vec::new();
    for id in &message.provider_message_ids {
        kept.extend(tx.take_receipts(id)?);
    }
    kept.sort_by_key(|r| [Reported::Sent, Reported::Delivered, Reported::Read, Reported::Failed].iter().position(|s| *s == r.reported));
    for receipt in &kept {
        advance(tx, account.clone(), conv, message, receipt, now)?;
    }
    Ok(())
}

fn advance(tx: &mut dyn Tx, account: AccountRef<'_>, conv: &Conversation, message: &mut OutboundMessage, receipt: &Receipt, now: i64) -> Result<(), StoreError> {
    let moved = steps(message.status, receipt.reported);
    if moved.is_empty() {
        return Ok(());
    }
    for status in moved {
        message.status = status;
        message.status_at = Some(rfc3339(now));
        let event_type = match status {
            Status::Sent => EventType::MessageSent,
            Status::Delivered => EventType::MessageDelivered,
            Status::Read => EventType::MessageRead,
            _ => {
                message.error = receipt.error.clone();
                let code = message.error.as_ref().map(|e| (e.code.as_str(), e.provider_code));
                tracing::info!(message = %message.id, ?code, "the provider could not deliver a message");
                EventType::MessageFailed
            }
        };
        let reason = message.error.as_ref().filter(|_| status == Status::Failed).map(|e| e.code.as_str());
        desk_events::enqueue(tx, account.clone(), conv, Pending { event_type, message: Some(MessageBody::Out(message)), reason }, now)?;
    }
    tx.save_outbound(message)
}
