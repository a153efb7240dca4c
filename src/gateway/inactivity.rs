//! Closes conversations in which neither side wrote for the workstream's
//! `autoCloseAfterInactivity`, telling the desk with `conversation.closed` and the customer with
//! ConversationEnded and the survey.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::automated;
use super::conversation::CloseReason;
use super::conversation_store as conversations;
use super::desk_event::AccountRef;
use super::processor::now_ms;
use super::runtime::Runtime;
use super::store::Store;

/// Conversations closed per transaction, so that a large backlog does not hold the writer.
const BATCH: usize = 500;

/// The sweeping loop.
pub struct Sweeper {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Woken when desk events were queued.
    pub delivery: Arc<Notify>,
    /// Woken when messages to customers were queued.
    pub sender: Arc<Notify>,
    /// Time between sweeps.
    pub interval: Duration,
}

impl Sweeper {
    /// Sweeps until the process ends.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(rt) = self.runtime.borrow().clone() else { continue };
            loop {
                let rt = Arc::clone(&rt);
                match self.store.run(move |c| sweep(c, &rt, now_ms())).await {
                    Ok(0) => break,
                    Ok(closed) => {
                        tracing::info!(conversations = closed, "closed inactive conversations");
                        self.delivery.notify_one();
                        self.sender.notify_one();
                        if closed < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "closing inactive conversations failed; retrying at the next sweep");
                        break;
                    }
                }
            }
        }
    }
}

/// Closes up to [`BATCH`] inactive conversations; returns how many.
fn sweep(c: &rusqlite::Connection, rt: &Runtime, now: i64) -> Result<usize, super::store::StoreError> {
    let account = AccountRef { namespace: &rt.config.account.namespace, name: &rt.config.account.name };
    let mut closed = 0;
    for ws in &rt.workstreams {
        let Some(limit) = ws.config.distribution.auto_close_after_inactivity_seconds else { continue };
        let limit_ms = i64::try_from(limit.saturating_mul(1000)).unwrap_or(i64::MAX);
        for mut conv in conversations::quiet_since(c, &ws.config.name, now.saturating_sub(limit_ms), BATCH - closed)? {
            if conv.inactive(now, limit_ms) && conversations::close(c, account.clone(), &mut conv, CloseReason::Inactivity, now)? {
                automated::on_close(c, rt, ws, &conv, now)?;
                closed += 1;
            }
        }
        if closed >= BATCH {
            break;
        }
    }
    Ok(closed)
}
