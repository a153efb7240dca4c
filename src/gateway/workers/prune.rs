//! Forgets processed events, uploaded files and unmatched delivery receipts older than
//! `--dedup-retention`, once an hour. A redelivery older than that would be taken as new; an
//! upload older than that is gone; a receipt kept that long is for a message the gateway did not
//! send (another client on the same number), as a send's answer comes within seconds.

use std::time::Duration;

use crate::gateway::clock::Clock;
use crate::gateway::store::Store;

/// How often old processed events, uploads and receipts are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes until the process ends.
pub async fn run(store: Store, retention: Duration, clock: Clock) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tick.tick().await;
        let before = clock.now_ms().saturating_sub(retention.as_millis() as i64);
        match store.run(move |tx| Ok((tx.forget_events(before)?, tx.forget_uploads(before)?, tx.forget_receipts(before)?))).await {
            Ok((0, 0, 0)) => {}
            Ok((events, files, receipts)) => tracing::info!(events, files, receipts, "forgot processed events, uploaded files and unmatched receipts past the retention"),
            Err(e) => tracing::warn!(error = %e, "cannot prune processed events, uploaded files and receipts"),
        }
    }
}
