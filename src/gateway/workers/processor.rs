//! The processing loop: takes recorded events in the order they were recorded, fetches the
//! LINE profiles they need (outside the transaction; nothing waits for LINE), and has
//! [`inbound::apply`] act on them in one transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::{POLL, Wakers};
use crate::gateway::clock::Clock;
use crate::gateway::conversations::inbound;
use crate::gateway::model::conversation::CustomerProfile;
use crate::gateway::model::event::{EventKind, InboundEvent};
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{Store, StoreError};

/// Events taken per transaction: enough to amortise the commit, few enough that the webhooks
/// committing behind one batch are not held up for long.
const BATCH: usize = 64;
/// LINE profiles are fetched again after a day.
const PROFILE_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Profile fetches at once.
const PROFILE_CONCURRENCY: usize = 8;
/// How long the processor waits after a store failure.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The processing loop.
pub struct Processor {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Wakers of this and the other workers.
    pub wakers: Wakers,
    /// The time events are processed at.
    pub clock: Clock,
}

impl Processor {
    /// Processes events until the process ends.
    pub async fn run(mut self) {
        let mut applied: Option<String> = None;
        loop {
            let current = self.runtime.borrow_and_update().clone();
            let Some(rt) = current else {
                let _ = self.runtime.changed().await;
                continue;
            };
            if applied.as_ref() != Some(&rt.hash) {
                // Events no workstream took may belong to one the new configuration has.
                match self.store.run(|tx| tx.release_held_events()).await {
                    Ok(n) if n > 0 => tracing::info!(events = n, "configuration changed; processing held events again"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot release held events"),
                }
                applied = Some(rt.hash.clone());
            }
            match self.step(&rt).await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.wakers.processor.notified() => {}
                        _ = self.runtime.changed() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "processing recorded events failed; retrying");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
    }

    /// Processes one batch; returns how many events it took.
    async fn step(&self, rt: &Arc<Runtime>) -> Result<usize, StoreError> {
        let batch = self.store.run(|tx| tx.pending_events(BATCH)).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let profiles = self.fetch_profiles(rt, &batch).await?;
        let taken = batch.len();
        let rt = Arc::clone(rt);
        let now = self.clock.now_ms();
        self.store.run(move |tx| inbound::apply(tx, &rt, &batch, &profiles, now)).await?;
        // Nearly every batch leaves desk events and many leave messages to send; a wake-up that
        // finds nothing costs one query.
        self.wakers.delivery.notify_one();
        self.wakers.sender.notify_one();
        self.wakers.distributor.notify_one();
        Ok(taken)
    }

    /// LINE profiles of the batch's customers that are not cached or are old. A customer whose
    /// profile cannot be fetched is routed without it; nothing waits for LINE.
    async fn fetch_profiles(&self, rt: &Runtime, batch: &[(i64, InboundEvent)]) -> Result<HashMap<String, CustomerProfile>, StoreError> {
        let Some(profiles) = rt.provider.channel().profiles() else { return Ok(HashMap::new()) };
        let mut wanted: Vec<String> = batch
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::Message(_) | EventKind::Postback { .. }))
            .filter_map(|(_, e)| e.customer.as_ref().map(|c| c.id.clone()))
            .collect();
        wanted.sort();
        wanted.dedup();
        let since = self.clock.now_ms() - PROFILE_MAX_AGE_MS;
        let missing = self.store.read(move |tx| tx.stale_profiles(&wanted, since)).await?;
        let fetched = futures::stream::iter(missing)
            .map(|id| async move {
                match profiles.profile(&id).await {
                    Ok(profile) => Some((id, profile)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fetch a LINE profile; routing without it");
                        None
                    }
                }
            })
            .buffer_unordered(PROFILE_CONCURRENCY)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        Ok(fetched)
    }
}
