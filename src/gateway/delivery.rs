//! Delivery of desk events from the outbox. Each event is POSTed to its workstream's
//! `delivery.url` — or, while a bot handles the conversation, the bot's `url` with its bearer
//! token — signed, with its ID as the idempotency key, until the receiver answers 2xx. Below,
//! "desk" means either receiver: each is backed off on its own.
//!
//! Order per conversation: only the oldest undelivered event of a conversation is ever in
//! flight, so the desk sees a conversation's events in order. Conversations are independent and
//! are delivered concurrently. When a desk fails (no answer, 5xx, 429), all its events are held
//! back for a doubling, capped delay; then its oldest event alone probes it. A desk that is down
//! for an hour gets one probe per delay, not a flood, and everything once a probe gets through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, watch};

use super::desk_event::{EVENT_TYPE_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature};
use super::metrics::{AttemptOutcome, Metrics};
use super::processor::now_ms;
use super::runtime::Runtime;
use super::sender::retry_delay;
use crate::backoff::Backoff;
use super::store::{Store, StoreError};

/// Events taken per round.
const BATCH: usize = 256;
/// Deliveries at once.
const CONCURRENCY: usize = 32;
/// How often the outbox's depth and age metrics are refreshed (each refresh counts the outbox).
const OUTBOX_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// An event due for delivery: the oldest of its conversation.
#[derive(Debug)]
struct Head {
    seq: i64,
    event_id: String,
    workstream: String,
    /// `desk` or `bot`.
    target: String,
    event_type: String,
    body: String,
    attempts: u32,
}

impl Head {
    /// The receiver this event goes to, as down receivers are remembered: `target:workstream`.
    fn endpoint(&self) -> String {
        format!("{}:{}", self.target, self.workstream)
    }
}

/// The SQL form of [`Head::endpoint`].
const ENDPOINT: &str = "(o.target || ':' || o.workstream)";

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

impl Outcome {
    /// What went wrong, for the outbox row; None when delivered.
    fn error(&self) -> Option<String> {
        match self {
            Outcome::Delivered => None,
            Outcome::Rejected { status, .. } => Some(format!("HTTP {status}")),
            Outcome::Failed(e) => Some(e.clone()),
            Outcome::Unrouted => Some("the workstream is not in the configuration".to_owned()),
        }
    }
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
    pub backoff: Backoff,
}

/// A desk that failed: how often in a row, and until when it is left alone.
#[derive(Clone, Copy, Debug)]
struct Down {
    failures: u32,
    until: Instant,
}

impl Delivery {
    /// Delivers until the process ends.
    pub async fn run(self) {
        // Desks that failed, by workstream. Kept in memory: after a restart a down desk gets
        // one round of attempts before it is backed off again.
        let mut down: HashMap<String, Down> = HashMap::new();
        let mut shown = Instant::now() - OUTBOX_STATS_INTERVAL;
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => self.round(&rt, &mut down).await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "delivering desk events failed; retrying");
                    Some(self.backoff.min)
                }),
                None => Some(self.backoff.min),
            };
            // Busy rounds refresh the gauges once a second; a round that ends in a wait always
            // does, so that an idle gateway never shows a stale backlog.
            if wait != Some(Duration::ZERO) || shown.elapsed() >= OUTBOX_STATS_INTERVAL {
                self.show_outbox().await;
                shown = Instant::now();
            }
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
    ///
    /// A down desk's events are left out until its delay has passed; then only its oldest event
    /// goes, as a probe, and the rest follow once a probe gets through.
    async fn round(&self, rt: &Runtime, down: &mut HashMap<String, Down>) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let clock = Instant::now();
        let resting: Vec<String> = down.iter().filter(|(_, d)| d.until > clock).map(|(ws, _)| ws.clone()).collect();
        let probing: Vec<String> = down.iter().filter(|(_, d)| d.until <= clock).map(|(ws, _)| ws.clone()).collect();
        let excluded: Vec<String> = down.keys().cloned().collect();
        let (mut due, probes) = self.store.read(move |c| Ok((heads(c, now, &excluded)?, probing.iter().map(|ws| oldest(c, ws)).collect::<Result<Vec<_>, _>>()?))).await?;
        due.extend(probes.into_iter().flatten());
        if due.is_empty() {
            let next: Option<i64> = self.store.read(move |c| next_due(c, &resting)).await?;
            let desk_wait = down.values().map(|d| d.until.saturating_duration_since(clock)).min();
            let row_wait = next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64));
            return Ok(match (desk_wait, row_wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        }
        let backoff = self.backoff;
        // Each result is written as soon as it is known, so that a crash repeats at most the
        // deliveries in flight.
        let results: Vec<(Head, Outcome)> = futures::stream::iter(due)
            .map(|head| async move {
                let outcome = self.attempt(rt, &head).await;
                let settled = (head.seq, head.attempts, outcome.error());
                if let Err(e) = self.store.run(move |c| settle(c, settled, backoff, now_ms())).await {
                    tracing::error!(error = %e, "cannot record a delivery's outcome; it will be attempted again");
                }
                (head, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed_desks: Vec<String> = Vec::new();
        for (head, outcome) in &results {
            match outcome {
                Outcome::Delivered => {
                    self.metrics.delivery(AttemptOutcome::Delivered);
                    if down.remove(&head.endpoint()).is_some() {
                        tracing::info!(workstream = %head.workstream, "the desk answers again");
                    }
                }
                Outcome::Rejected { status, desk_down } => {
                    self.metrics.delivery(AttemptOutcome::Rejected);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, status, "the desk refused an event; it will be retried");
                    if *desk_down {
                        failed_desks.push(head.endpoint());
                    }
                }
                Outcome::Failed(error) => {
                    self.metrics.delivery(AttemptOutcome::Failed);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, error = %error, "the desk did not answer; it will be retried");
                    failed_desks.push(head.endpoint());
                }
                Outcome::Unrouted => {}
            }
        }
        failed_desks.sort();
        failed_desks.dedup();
        for endpoint in failed_desks {
            // A desk that answered one event in this round is not down; only one that failed
            // without any success is backed off.
            let answered = results.iter().any(|(h, o)| h.endpoint() == endpoint && matches!(o, Outcome::Delivered));
            if answered {
                continue;
            }
            let failures = down.get(&endpoint).map_or(0, |d| d.failures);
            let delay = retry_delay(failures, backoff);
            down.insert(endpoint, Down { failures: failures.saturating_add(1), until: Instant::now() + delay });
        }
        Ok(Some(Duration::ZERO))
    }

    async fn attempt(&self, rt: &Runtime, head: &Head) -> Outcome {
        let Some(ws) = rt.workstream(&head.workstream) else { return Outcome::Unrouted };
        let (url, token) = match (head.target.as_str(), &ws.config.bot) {
            ("bot", Some(bot)) => (&bot.url, ws.bot_token.as_ref()),
            // A bot removed from the configuration leaves its conversations' events to the desk.
            _ => (&ws.config.delivery.url, None),
        };
        let timestamp = jiff::Timestamp::now().as_second();
        let mut request = self.http.post(url);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        let request = request
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

/// The due events at the head of their conversation, leaving out the `excluded` receivers.
fn heads(c: &Connection, now: i64, excluded: &[String]) -> Result<Vec<Head>, StoreError> {
    let placeholders = vec!["?"; excluded.len()].join(", ");
    let sql = format!(
        "SELECT o.seq, o.event_id, o.workstream, o.target, o.event_type, o.body, o.attempts
         FROM (SELECT min(seq) AS head FROM outbox GROUP BY conversation_id) h JOIN outbox o ON o.seq = h.head
         WHERE o.next_attempt_ms <= ? AND {ENDPOINT} NOT IN ({placeholders}) ORDER BY o.seq LIMIT {BATCH}"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let params = std::iter::once(&now as &dyn rusqlite::ToSql).chain(excluded.iter().map(|w| w as &dyn rusqlite::ToSql));
    let rows = stmt.query_map(rusqlite::params_from_iter(params), head)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A receiver's oldest event, which is the head of its conversation: the probe of a down desk.
fn oldest(c: &Connection, endpoint: &str) -> Result<Option<Head>, StoreError> {
    let sql = format!("SELECT o.seq, o.event_id, o.workstream, o.target, o.event_type, o.body, o.attempts FROM outbox o WHERE {ENDPOINT} = ?1 ORDER BY o.seq LIMIT 1");
    Ok(c.prepare_cached(&sql)?.query_row([endpoint], head).optional()?)
}

/// When the next event of a desk that is not resting falls due.
fn next_due(c: &Connection, resting: &[String]) -> Result<Option<i64>, StoreError> {
    let placeholders = vec!["?"; resting.len()].join(", ");
    let sql = format!("SELECT min(o.next_attempt_ms) FROM outbox o WHERE {ENDPOINT} NOT IN ({placeholders})");
    Ok(c.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(resting), |r| r.get(0))?)
}

fn head(r: &rusqlite::Row<'_>) -> rusqlite::Result<Head> {
    Ok(Head { seq: r.get(0)?, event_id: r.get(1)?, workstream: r.get(2)?, target: r.get(3)?, event_type: r.get(4)?, body: r.get(5)?, attempts: r.get(6)? })
}

/// Records one attempt: a delivered event leaves the outbox; any other waits for its own retry
/// delay (a down desk's events are held back in memory on top of that).
fn settle(c: &Connection, (seq, attempts, error): (i64, u32, Option<String>), backoff: Backoff, now: i64) -> Result<(), StoreError> {
    match error {
        None => {
            c.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?.execute([seq])?;
        }
        Some(error) => {
            let delay = retry_delay(attempts, backoff);
            c.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1")?
                .execute(params![seq, now + delay.as_millis() as i64, error])?;
        }
    }
    Ok(())
}
