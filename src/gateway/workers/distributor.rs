//! The distribution loop: a round of push distribution ([`distribute::run`]) whenever
//! something may have changed who can take what — a conversation queued, an agent's presence,
//! a conversation closed or put aside — and every [`TICK`] for what changes with time alone
//! (presence running out, wrap-ups ending). A quiet round refreshes the queue and agent gauges.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::gateway::clock::Clock;
use crate::gateway::metrics::{AssignedBy, Metrics, PresenceLabels, QueueLabels};
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
    /// Counts assignments and shows queues and agents.
    pub metrics: Arc<Metrics>,
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
    /// Refreshes the queue and agent gauges.
    async fn show(&self, rt: Arc<Runtime>, at: Moment) {
        let Ok(stats) = self.store.read(move |tx| distribute::stats(tx, &rt, at)).await else { return };
        for (workstream, queue, waiting, oldest_ms) in stats.queues {
            let labels = QueueLabels { workstream, queue };
            self.metrics.queue_waiting.get_or_create(&labels).set(waiting);
            let oldest = oldest_ms.map_or(0.0, |t| at.now.saturating_sub(t).max(0) as f64 / 1000.0);
            self.metrics.queue_oldest_wait_seconds.get_or_create(&labels).set(oldest);
        }
        for (presence, n) in stats.presence {
            self.metrics.agents.get_or_create(&PresenceLabels { presence: format!("{presence:?}") }).set(n);
        }
    }

    /// Distributes until the process ends.
    pub async fn run(self) {
        let ttl_ms = i64::try_from(self.presence_ttl.as_millis()).unwrap_or(i64::MAX);
        loop {
            let rt = self.runtime.borrow().clone();
            if let Some(rt) = rt {
                let at = Moment { now: self.clock.now_ms(), ttl_ms };
                let round_rt = Arc::clone(&rt);
                match self.store.run(move |tx| distribute::run(tx, &round_rt, at)).await {
                    Ok(round) if !round.assigned.is_empty() || round.unassigned > 0 => {
                        tracing::debug!(assigned = round.assigned.len(), unassigned = round.unassigned, "distribution round");
                        for (workstream, waited_ms) in &round.assigned {
                            self.metrics.assigned(workstream, AssignedBy::Push, *waited_ms);
                        }
                        self.delivery.notify_one();
                        self.sender.notify_one();
                        // Unassigned conversations may go to another agent at once.
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "distributing conversations failed; retrying"),
                }
                self.show(rt, at).await;
            }
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }
}
