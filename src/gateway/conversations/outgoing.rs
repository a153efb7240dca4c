//! Messages to customers — agents', the bot's and the gateway's own — stored and queued in the
//! transaction that decided to send them, and settled in the transaction that records how an
//! attempt ended: sent, retried later, or failed, each failure and delivery told to the
//! conversation's handler as `message.accepted` or `message.failed`. No message leaves the
//! queue without one; receipts that came before the outcome follow it (see [`receipts`]).

use uuid::Uuid;

use super::desk_events::{self, Pending};
use super::receipts;
use crate::backoff::Backoff;
use crate::gateway::clock::rfc3339;
use crate::gateway::model::conversation::{AgentRef, Conversation};
use crate::gateway::model::desk_event::{AccountRef, EventType, MessageBody};
use crate::gateway::model::outbound::{Author, CREDENTIALS_REJECTED, OutContent, OutboundMessage, Outcome, SendError, Status};
use crate::gateway::model::queue::{NewSend, QueuedSend};
use crate::gateway::runtime::Workstream;
use crate::gateway::store::{StoreError, Tx};

/// A message the provider has not taken after this long is given up (`expired`): an answer a
/// day late does more harm than good, and WhatsApp's window has closed by then anyway.
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;

/// A message to store and send.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Who wrote it.
    pub author: Author,
    /// The agent, when the desk named one.
    pub agent: Option<AgentRef>,
    /// The caller's ID of the message, which makes a repeated request send once.
    pub client_message_id: Option<String>,
    /// A hash of the request, to tell a repeat from a different request reusing the ID.
    pub request_hash: Option<String>,
    /// The automated messages it carries.
    pub triggers: Vec<String>,
    /// What it says.
    pub contents: Vec<OutContent>,
    /// LINE's `X-Line-Retry-Key` for a push.
    pub retry_key: Uuid,
}

/// Stores an outgoing message of `conv` and queues it. On LINE the conversation's fresh reply
/// token, if any, goes with it (and is spent).
pub fn queue(tx: &mut dyn Tx, ws: &Workstream, conv: &Conversation, draft: Draft, now: i64) -> Result<OutboundMessage, StoreError> {
    let retry_key = draft.retry_key;
    let message = store_message(tx, &conv.id, draft, Status::Queued, None, now)?;
    let reply = if ws.has_window() { None } else { tx.take_reply_token(&conv.id, now)? };
    let sender = ws.sender_address();
    tx.queue_send(NewSend {
        conversation_id: &conv.id,
        message_id: &message.id,
        workstream: &ws.config.name,
        recipient: &conv.customer.id,
        sender: sender.as_deref(),
        contents: &message.contents,
        retry_key,
        reply: reply.as_ref().map(|(token, until)| (token.as_str(), *until)),
        created_ms: now,
    })?;
    Ok(message)
}

/// Stores a message that is not sent, by rule, and tells the conversation's handler with
/// `message.skipped`.
pub fn skip(tx: &mut dyn Tx, account: AccountRef<'_>, conv: &Conversation, draft: Draft, error: SendError, now: i64) -> Result<OutboundMessage, StoreError> {
    let message = store_message(tx, &conv.id, draft, Status::Skipped, Some(error), now)?;
    let reason = message.error.as_ref().map(|e| e.code.as_str());
    desk_events::enqueue(tx, account, conv, Pending { event_type: EventType::MessageSkipped, message: Some(MessageBody::Out(&message)), reason }, now)?;
    Ok(message)
}

fn store_message(tx: &mut dyn Tx, conversation_id: &str, draft: Draft, status: Status, error: Option<SendError>, now: i64) -> Result<OutboundMessage, StoreError> {
    let mut message = OutboundMessage {
        id: String::new(),
        direction: "out".to_owned(),
        author: draft.author,
        agent: draft.agent,
        client_message_id: draft.client_message_id,
        triggers: draft.triggers,
        contents: draft.contents,
        status,
        status_at: Some(rfc3339(now)),
        provider_message_ids: Vec::new(),
        error,
        created_at: rfc3339(now),
    };
    tx.add_outbound(conversation_id, &mut message, draft.request_hash.as_deref(), now)?;
    Ok(message)
}

/// Records how attempts ended: a retry waits for its delay (the provider's, else the backoff's);
/// a message sent, refused or older than a day leaves the queue with its event.
pub fn settle(tx: &mut dyn Tx, account: AccountRef<'_>, results: &[(QueuedSend, Outcome)], backoff: Backoff, now: i64) -> Result<(), StoreError> {
    for (row, outcome) in results {
        let finished = match outcome {
            Outcome::Sent(ids) => Some((Status::Accepted, ids.clone(), None)),
            // The streak of refused credentials was logged once, at WARN, when it began.
            Outcome::Refused(error) if error.code == CREDENTIALS_REJECTED => {
                tracing::info!(message = %row.message_id, provider_code = ?error.provider_code, "a message failed: the provider refused the credentials for longer than --credentials-retry-for");
                Some((Status::Failed, Vec::new(), Some(error.clone())))
            }
            Outcome::Refused(error) => {
                tracing::warn!(message = %row.message_id, code = %error.code, provider_code = ?error.provider_code, "the provider refused a message");
                Some((Status::Failed, Vec::new(), Some(error.clone())))
            }
            Outcome::Retry(error, _) if now - row.created_ms >= GIVE_UP_AFTER_MS => {
                tracing::warn!(message = %row.message_id, error = %error, "a message could not be sent within a day; giving up");
                let error = SendError { code: "expired".to_owned(), provider_code: None, message: format!("not accepted by the provider within 24h; last error: {error}") };
                Some((Status::Failed, Vec::new(), Some(error)))
            }
            Outcome::Retry(error, after) => {
                let delay = after.unwrap_or_else(|| backoff.after_attempts(row.attempts));
                tx.send_failed(row.seq, now + delay.as_millis() as i64, error)?;
                None
            }
        };
        let Some((status, ids, error)) = finished else { continue };
        tx.send_finished(row.seq)?;
        // The conversation first: every job that changes both takes them in this order, so that
        // two replicas' transactions cannot wait on each other.
        let (Some(conv), Some(mut message)) = (tx.conversation(&row.conversation_id)?, tx.outbound(&row.message_id)?) else {
            tracing::error!(message = %row.message_id, conversation = %row.conversation_id, "a sent or failed message or its conversation is missing from the store; no event tells its outcome");
            continue;
        };
        message.status = status;
        message.status_at = Some(rfc3339(now));
        message.provider_message_ids = ids;
        message.error = error;
        tx.save_outbound(&message)?;
        let event_type = if status == Status::Accepted { EventType::MessageAccepted } else { EventType::MessageFailed };
        let reason = message.error.as_ref().map(|e| e.code.as_str());
        desk_events::enqueue(tx, account.clone(), &conv, Pending { event_type, message: Some(MessageBody::Out(&message)), reason }, now)?;
        receipts::apply_kept(tx, account.clone(), &conv, &mut message, now)?;
    }
    Ok(())
}
