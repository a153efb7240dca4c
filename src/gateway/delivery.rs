//! Delivery of desk events from the outbox. Each event is POSTed to its workstream's
//! `delivery.url`, signed, with its ID as the idempotency key, until the desk answers 2xx.
//!
//! Order per conversation: only the oldest undelivered event of a conversation is ever in
//! flight, so the desk sees a conversation's events in order. Conversations are independent and
//! are delivered concurrently. When a desk fails (no answer, 5xx, 429), every event for it waits
//! for a doubling, capped delay instead of each being tried on its own, so a desk that is down
//! for an hour gets a trickle of probes, not a flood, and gets everything once it is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rusqlite::{Connection, params};
use tokio::sync::{Notify, watch};

use super::desk_event::{EVENT_TYPE_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature};
use super::metrics::{AttemptOutcome, Metrics};
use super::processor::now_ms;
use super::runtime::Runtime;
use super::sender::retry_delay;
use super::store::{Store, StoreError};

/// Events taken per round.
const BATCH: usize = 256;
/// Deliveries at once.
const CONCURRENCY: usize = 32;

/// An event due for delivery: the oldest of its conversation.
#[derive(Debug)]
struct Head {
    seq: i64,
    event_id: String,
    workstream: String,
    event_type: String,
    body: String,
    attempts: u32,
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Delivered,
    /// The desk answered, but not 2xx; `desk_down` when the status says the desk as a whole is
    /// unwell (5xx, 429) rather than this event being refused.
    Rejected { status: u16, desk_down: bool },
    /// No answer.
    Failed(String),
    /// The workstream is no longer configured; kept until it is.
    Unrouted,
}

/// The delivery loop.
pub struct Delivery {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Counts attempts and shows the outbox.
    pub metrics: Arc<Metrics>,
    /// Woken when events are queued.
    pub wake: Arc<Notify>,
    /// HTTP client for the desks (with its timeout).
    pub http: reqwest::Client,
    /// Retry delays: first, and the most.
    pub backoff: (Duration, Duration),
}

impl Delivery {
    /// Delivers until the process ends.
    pub async fn run(self) {
        // Consecutive failures per workstream's desk, for the desk-wide delay.
        let mut failures: HashMap<String, u32> = HashMap::new();
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => self.round(&rt, &mut failures).await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "delivering desk events failed; retrying");
                    Some(self.backoff.0)
                }),
                None => Some(self.backoff.0),
            };
            self.show_outbox().await;
            match wait {
                Some(Duration::ZERO) => {}
                Some(d) => {
                    let _ = tokio::time::timeout(d, self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }

    async fn show_outbox(&self) {
        let now = now_ms();
        let stats = self.store.read(|c| Ok(c.query_row("SELECT count(*), min(created_ms) FROM outbox", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)))?)).await;
        if let Ok((depth, oldest)) = stats {
            self.metrics.outbox_depth.set(depth);
            self.metrics.outbox_oldest_seconds.set(oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
        }
    }

    /// Delivers what is due; returns how long to wait before the next round (None: until woken).
    async fn round(&self, rt: &Runtime, failures: &mut HashMap<String, u32>) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let heads = self.store.read(move |c| heads(c, now)).await?;
        if heads.is_empty() {
            let next: Option<i64> = self.store.read(|c| Ok(c.query_row("SELECT min(next_attempt_ms) FROM outbox", [], |r| r.get(0))?)).await?;
            return Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)));
        }
        let results: Vec<(Head, Outcome)> = futures::stream::iter(heads)
            .map(|head| async move {
                let outcome = self.attempt(rt, &head).await;
                (head, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut down: HashMap<String, Duration> = HashMap::new();
        for (head, outcome) in &results {
            match outcome {
                Outcome::Delivered => {
                    self.metrics.delivery(AttemptOutcome::Delivered);
                    failures.remove(&head.workstream);
                }
                Outcome::Rejected { status, desk_down } => {
                    self.metrics.delivery(AttemptOutcome::Rejected);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, status, "the desk refused an event; it will be retried");
                    if *desk_down {
                        down.entry(head.workstream.clone()).or_default();
                    }
                }
                Outcome::Failed(error) => {
                    self.metrics.delivery(AttemptOutcome::Failed);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, error = %error, "the desk did not answer; it will be retried");
                    down.entry(head.workstream.clone()).or_default();
                }
                Outcome::Unrouted => {}
            }
        }
        for (workstream, delay) in down.iter_mut() {
            let n = failures.entry(workstream.clone()).or_default();
            *delay = retry_delay(*n, self.backoff);
            *n = n.saturating_add(1);
        }
        let backoff = self.backoff;
        self.store.run(move |c| settle(c, &results, &down, backoff, now_ms())).await?;
        Ok(Some(Duration::ZERO))
    }

    async fn attempt(&self, rt: &Runtime, head: &Head) -> Outcome {
        let Some(ws) = rt.workstream(&head.workstream) else { return Outcome::Unrouted };
        let timestamp = jiff::Timestamp::now().as_second();
        let request = self
            .http
            .post(&ws.config.delivery.url)
            .header("content-type", "application/json")
            .header(IDEMPOTENCY_HEADER, &head.event_id)
            .header(EVENT_TYPE_HEADER, &head.event_type)
            .header(SIGNATURE_HEADER, signature(ws.signing_secret.expose().as_bytes(), timestamp, head.body.as_bytes()))
            .body(head.body.clone());
        match request.send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let status = r.status();
                Outcome::Rejected { status: status.as_u16(), desk_down: status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 }
            }
            // reqwest's error names the URL, never the headers, so no secret can be in it.
            Err(e) => Outcome::Failed(e.without_url().to_string()),
        }
    }
}

fn heads(c: &Connection, now: i64) -> Result<Vec<Head>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT o.seq, o.event_id, o.workstream, o.body, o.attempts
         FROM (SELECT min(seq) AS head FROM outbox GROUP BY conversation_id) h JOIN outbox o ON o.seq = h.head
         WHERE o.next_attempt_ms <= ?1 ORDER BY o.seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, BATCH as i64], |r| {
        let body: String = r.get(3)?;
        Ok(Head {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            workstream: r.get(2)?,
            event_type: event_type_of(&body),
            body,
            attempts: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The `type` of a stored event body.
fn event_type_of(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_str::<Typed>(body).map(|t| t.event_type).unwrap_or_default()
}

fn settle(c: &Connection, results: &[(Head, Outcome)], down: &HashMap<String, Duration>, backoff: (Duration, Duration), now: i64) -> Result<(), StoreError> {
    for (head, outcome) in results {
        let error = match outcome {
            Outcome::Delivered => {
                c.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?.execute([head.seq])?;
                continue;
            }
            Outcome::Rejected { status, .. } => format!("HTTP {status}"),
            Outcome::Failed(e) => e.clone(),
            Outcome::Unrouted => "the workstream is not in the configuration".to_owned(),
        };
        // A desk that is down delays all its events alike; an event the desk refused on its
        // own backs off on its own.
        let delay = down.get(&head.workstream).copied().unwrap_or_else(|| retry_delay(head.attempts, backoff));
        c.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1")?
            .execute(params![head.seq, now + delay.as_millis() as i64, error])?;
    }
    for (workstream, delay) in down {
        c.prepare_cached("UPDATE outbox SET next_attempt_ms = max(next_attempt_ms, ?2) WHERE workstream = ?1")?
            .execute(params![workstream, now + delay.as_millis() as i64])?;
    }
    Ok(())
}
