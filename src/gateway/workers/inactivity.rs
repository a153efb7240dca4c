//! The inactivity sweeper: every `--sweep-interval`, closes the conversations that were quiet
//! for their workstream's `autoCloseAfterInactivity` ([`inactive::sweep`]), a batch per
//! transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::gateway::clock::Clock;
use crate::gateway::conversations::inactive::{self, BATCH};
use crate::gateway::runtime::Runtime;
use crate::gateway::store::Store;

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
    /// The time inactivity is judged by.
    pub clock: Clock,
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
                let now = self.clock.now_ms();
                match self.store.run(move |tx| inactive::sweep(tx, &rt, now)).await {
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
