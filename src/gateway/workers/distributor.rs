//! The distribution loop: a round of push distribution ([`distribute::run`]) whenever
//! something may have changed who can take what — a conversation queued, an agent's presence,
//! a conversation closed or put aside — and every [`TICK`] for what changes with time alone
//! (presence running out, wrap-ups ending).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::gateway::clock::Clock;
use crate::gateway::conversations::distribute::{self, Moment};
use crate::gateway::runtime::Runtime;
use crate::gateway::store::Store;

/// Longest a round waits without being woken.
const TICK: Duration = Duration::from_secs(1);

/// The distribution loop.
pub struct Distributor {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Woken when something changed who can take what.
    pub wake: Arc<Notify>,
    /// Woken when assignments queued desk events and messages.
    pub delivery: Arc<Notify>,
    /// Woken when assignments queued messages to customers.
    pub sender: Arc<Notify>,
    /// An agent the desk has not reported for this long is Offline.
    pub presence_ttl: Duration,
    /// The time presence and wrap-ups are judged by.
    pub clock: Clock,
}

impl Distributor {
    /// Distributes until the process ends.
    pub async fn run(self) {
        let ttl_ms = i64::try_from(self.presence_ttl.as_millis()).unwrap_or(i64::MAX);
        loop {
            let rt = self.runtime.borrow().clone();
            if let Some(rt) = rt {
                let at = Moment { now: self.clock.now_ms(), ttl_ms };
                match self.store.run(move |tx| distribute::run(tx, &rt, at)).await {
                    Ok(round) if round.assigned + round.unassigned > 0 => {
                        tracing::debug!(assigned = round.assigned, unassigned = round.unassigned, "distribution round");
                        self.delivery.notify_one();
                        self.sender.notify_one();
                        // Unassigned conversations may go to another agent at once.
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "distributing conversations failed; retrying"),
                }
            }
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }
}
