//! Closes conversations in which neither side wrote for the workstream's
//! `autoCloseAfterInactivity`, telling the desk with `conversation.closed` and the customer with
//! ConversationEnded and the survey.

use super::{automated, desk_events};
use crate::gateway::model::conversation::CloseReason;
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{StoreError, Tx};

/// Conversations closed per transaction, so that a large backlog does not hold the writer.
pub const BATCH: usize = 500;

/// Closes up to [`BATCH`] inactive conversations; returns how many.
pub fn sweep(tx: &mut dyn Tx, rt: &Runtime, now: i64) -> Result<usize, StoreError> {
    let account = rt.account_ref();
    let mut closed = 0;
    for ws in &rt.workstreams {
        let Some(limit) = ws.config.distribution.auto_close_after_inactivity_seconds else { continue };
        let limit_ms = i64::try_from(limit.saturating_mul(1000)).unwrap_or(i64::MAX);
        for mut conv in tx.quiet_conversations(&ws.config.name, now.saturating_sub(limit_ms), BATCH - closed)? {
            if conv.inactive(now, limit_ms) && desk_events::close(tx, account.clone(), &mut conv, CloseReason::Inactivity, now)? {
                automated::on_close(tx, rt, ws, &conv, now)?;
                closed += 1;
            }
        }
        if closed >= BATCH {
            break;
        }
    }
    Ok(closed)
}
