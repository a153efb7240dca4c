//! Delivery of desk events from the outbox. Each event is POSTed to its workstream's
//! `delivery.url` — or, while a bot handles the conversation, the bot's `url` with its bearer
//! token — signed, with its ID as the idempotency key, until the receiver answers 2xx. Below,
//! "desk" means either receiver: each is backed off on its own.
//!
//! Order per conversation: only the oldest undelivered event of a conversation is ever in
//! flight, so the desk sees a conversation's events in order. Conversations are independent and
//! are delivered concurrently. When a desk fails (no answer, 5xx, 429), all its events are held
//! back for a doubling, capped delay — or as long as its `Retry-After` asks, when that is longer
//! (up to [`MAX_RETRY_AFTER`]) — then its oldest event alone probes it. A desk that is down for an
//! hour gets one probe per delay, not a flood, and everything once a probe gets through.
//!
//! A receiver that answers 410 Gone (Standard Webhooks: stop sending) is stopped: its events stay
//! queued and nothing is delivered to it, across restarts (the store keeps it), until its
//! settings change or the Workstream's `switchboard.dev/reconcile-requested-at` does (see
//! [`receiver`]). Both are told with a log line, the `delivery_receivers_gone` gauge and a
//! Kubernetes Event on the Workstream; the gateway stays ready, since it works for the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};

use super::POLL;
use crate::backoff::Backoff;
use crate::config::WorkstreamConfig;
use crate::gateway::clock::Clock;
use crate::gateway::kube_events::{Notice, Publisher, Severity};
use crate::gateway::metrics::{AttemptOutcome, Metrics, ReceiverLabels};
use crate::gateway::model::desk_event::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signatures};
use crate::gateway::model::queue::QueuedEvent;
use crate::gateway::model::receiver;
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{Store, StoreError};
use crate::providers::parse_retry_after;

/// Events taken per round.
const BATCH: usize = 256;
/// Deliveries at once.
const CONCURRENCY: usize = 32;
/// The longest a desk's `Retry-After` holds its events back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often the outbox's depth and age metrics are refreshed (each refresh counts the outbox).
const OUTBOX_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Delivered,
    /// The desk answered, but not 2xx; `desk_down` when the status says the desk as a whole is
    /// unwell (5xx, 429) rather than this event being refused, with the wait it asked for.
    Rejected { status: u16, desk_down: bool, retry_after: Option<Duration> },
    /// 410 Gone: the receiver wants no more events.
    Gone,
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
            Outcome::Gone => Some("HTTP 410".to_owned()),
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
    /// The time retries, down desks and signatures go by.
    pub clock: Clock,
    /// Writes Kubernetes Events about receivers stopped and resumed (with the ConfigMap source).
    pub events: Option<Publisher>,
}

/// The receivers that answered 410 Gone, each with the settings it was stopped under, and the
/// configuration they were last checked against.
#[derive(Debug, Default)]
struct Stopped {
    loaded: bool,
    receivers: HashMap<String, String>,
    checked_hash: Option<String>,
}

/// A desk that failed: how often in a row, and until when it is left alone.
#[derive(Clone, Copy, Debug)]
struct Down {
    failures: u32,
    until_ms: i64,
}

impl Delivery {
    /// Delivers until the process ends.
    pub async fn run(self) {
        // Desks that failed, by workstream. Kept in memory: after a restart a down desk gets
        // one round of attempts before it is backed off again.
        let mut down: HashMap<String, Down> = HashMap::new();
        let mut stopped = Stopped::default();
        let mut shown_ms = i64::MIN;
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => self.round(&rt, &mut down, &mut stopped).await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "delivering desk events failed; retrying");
                    Some(self.backoff.min)
                }),
                None => Some(self.backoff.min),
            };
            // Busy rounds refresh the gauges once a second; a round that ends in a wait always
            // does, so that an idle gateway never shows a stale backlog.
            let now = self.clock.now_ms();
            if wait != Some(Duration::ZERO) || now.saturating_sub(shown_ms) >= OUTBOX_STATS_INTERVAL.as_millis() as i64 {
                self.show_outbox().await;
                shown_ms = now;
            }
            match wait {
                Some(Duration::ZERO) => {}
                Some(d) => {
                    let _ = tokio::time::timeout(d, self.wake.notified()).await;
                }
                None => {
                    let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
                }
            }
        }
    }

    async fn show_outbox(&self) {
        let now = self.clock.now_ms();
        if let Ok(stats) = self.store.read(|tx| tx.outbox_stats()).await {
            self.metrics.outbox_depth.set(stats.depth);
            self.metrics.outbox_oldest_seconds.set(stats.oldest_ms.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
        }
    }

    /// Delivers what is due; returns how long to wait before the next round (None: until woken, or
    /// [`POLL`]).
    ///
    /// A down desk's events are left out until its delay has passed; then only its oldest event
    /// goes, as a probe, and the rest follow once a probe gets through.
    async fn round(&self, rt: &Runtime, down: &mut HashMap<String, Down>, stopped: &mut Stopped) -> Result<Option<Duration>, StoreError> {
        self.check_stopped(rt, stopped).await?;
        let now = self.clock.now_ms();
        let mut resting: Vec<String> = down.iter().filter(|(_, d)| d.until_ms > now).map(|(ws, _)| ws.clone()).collect();
        let probing: Vec<String> = down.iter().filter(|(ws, d)| d.until_ms <= now && !stopped.receivers.contains_key(*ws)).map(|(ws, _)| ws.clone()).collect();
        resting.extend(stopped.receivers.keys().cloned());
        let excluded: Vec<String> = down.keys().chain(stopped.receivers.keys()).cloned().collect();
        let (mut due, probes) = self
            .store
            .read(move |tx| Ok((tx.due_events(now, &excluded, BATCH)?, probing.iter().map(|ws| tx.oldest_event(ws)).collect::<Result<Vec<_>, _>>()?)))
            .await?;
        due.extend(probes.into_iter().flatten());
        if due.is_empty() {
            let next = self.store.read(move |tx| tx.next_event_due(&resting)).await?;
            let desk_wait = down.values().map(|d| Duration::from_millis(d.until_ms.saturating_sub(now).max(0) as u64)).min();
            let row_wait = next.map(|at| Duration::from_millis(at.saturating_sub(self.clock.now_ms()).max(0) as u64));
            return Ok(match (desk_wait, row_wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
        }
        let backoff = self.backoff;
        // Each result is written as soon as it is known, so that a crash repeats at most the
        // deliveries in flight.
        let results: Vec<(QueuedEvent, Outcome)> = futures::stream::iter(due)
            .map(|head| async move {
                let outcome = self.attempt(rt, &head).await;
                let (seq, attempts, error) = (head.seq, head.attempts, outcome.error());
                let now = self.clock.now_ms();
                // A delivered event leaves the outbox; one refused with 410 stays as it was, for
                // when its receiver resumes; any other waits for its own retry delay (a down
                // desk's events are held back in memory on top of that).
                let gone = matches!(outcome, Outcome::Gone);
                let settled = self.store.run(move |tx| match error {
                    None => tx.event_delivered(seq),
                    Some(_) if gone => Ok(()),
                    Some(error) => tx.event_failed(seq, now + backoff.after_attempts(attempts).as_millis() as i64, &error),
                });
                if let Err(e) = settled.await {
                    tracing::error!(error = %e, "cannot record a delivery's outcome; it will be attempted again");
                }
                (head, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        // Each failed desk, with the longest wait its answers asked for.
        let mut failed_desks: HashMap<String, Option<Duration>> = HashMap::new();
        for (head, outcome) in &results {
            match outcome {
                Outcome::Delivered => {
                    self.metrics.delivery(AttemptOutcome::Delivered);
                    if down.remove(&head.endpoint()).is_some() {
                        tracing::info!(workstream = %head.workstream, "the desk answers again");
                    }
                }
                Outcome::Rejected { status, desk_down, retry_after } => {
                    self.metrics.delivery(AttemptOutcome::Rejected);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, status, retry_after = ?retry_after, "the desk refused an event; it will be retried");
                    if *desk_down {
                        let wait = failed_desks.entry(head.endpoint()).or_default();
                        *wait = (*wait).max(*retry_after);
                    }
                }
                Outcome::Gone => {
                    self.metrics.delivery(AttemptOutcome::Rejected);
                    if !stopped.receivers.contains_key(&head.endpoint()) {
                        self.stop(rt, &head.endpoint(), stopped).await?;
                    }
                }
                Outcome::Failed(error) => {
                    self.metrics.delivery(AttemptOutcome::Failed);
                    tracing::warn!(workstream = %head.workstream, event = %head.event_id, error = %error, "the desk did not answer; it will be retried");
                    failed_desks.entry(head.endpoint()).or_default();
                }
                Outcome::Unrouted => {}
            }
        }
        for (endpoint, asked) in failed_desks {
            // A desk that answered one event in this round is not down; only one that failed
            // without any success is backed off.
            let answered = results.iter().any(|(h, o)| h.endpoint() == endpoint && matches!(o, Outcome::Delivered));
            if answered {
                continue;
            }
            let failures = down.get(&endpoint).map_or(0, |d| d.failures);
            let delay = backoff.after_attempts(failures).max(asked.unwrap_or_default().min(MAX_RETRY_AFTER));
            down.insert(endpoint, Down { failures: failures.saturating_add(1), until_ms: self.clock.now_ms() + delay.as_millis() as i64 });
        }
        Ok(Some(Duration::ZERO))
    }

    /// Loads the stopped receivers once, and whenever the configuration changed resumes those
    /// whose settings changed.
    async fn check_stopped(&self, rt: &Runtime, stopped: &mut Stopped) -> Result<(), StoreError> {
        if !stopped.loaded {
            stopped.receivers = self.store.read(|tx| tx.gone_endpoints()).await?.into_iter().collect();
            stopped.loaded = true;
            for endpoint in stopped.receivers.keys() {
                self.metrics.receivers_gone.get_or_create(&labels(endpoint)).set(1);
            }
        }
        if stopped.checked_hash.as_deref() == Some(rt.hash.as_str()) {
            return Ok(());
        }
        let resumed: Vec<String> = stopped
            .receivers
            .iter()
            .filter(|(endpoint, under)| {
                receiver::parse(endpoint).is_some_and(|(target, ws)| receiver::resumes(rt.workstream(ws).map(|w| &w.config), target, under))
            })
            .map(|(endpoint, _)| endpoint.clone())
            .collect();
        for endpoint in resumed {
            let now = self.clock.now_ms();
            let key = endpoint.clone();
            self.store.run(move |tx| tx.set_gone(&key, None, now)).await?;
            stopped.receivers.remove(&endpoint);
            self.metrics.receivers_gone.get_or_create(&labels(&endpoint)).set(0);
            let Some((target, name)) = receiver::parse(&endpoint) else { continue };
            tracing::info!(workstream = %name, receiver = %target, "delivery resumes to a receiver that had answered 410 Gone: its settings changed");
            if let (Some(events), Some(ws)) = (&self.events, rt.workstream(name)) {
                let note = format!("Delivery to the {target} resumes: its settings changed since it answered 410 Gone; its queued events follow.");
                publish(events, &ws.config, Notice { severity: Severity::Normal, reason: "ReceiverResumed", action: "Deliver", note }, now).await;
            }
        }
        stopped.checked_hash = Some(rt.hash.clone());
        Ok(())
    }

    /// Stops delivery to a receiver that answered 410 Gone, under its current settings.
    async fn stop(&self, rt: &Runtime, endpoint: &str, stopped: &mut Stopped) -> Result<(), StoreError> {
        let Some((target, name)) = receiver::parse(endpoint) else { return Ok(()) };
        let Some(ws) = rt.workstream(name) else { return Ok(()) };
        let Some(settings) = receiver::settings(&ws.config, target) else { return Ok(()) };
        let now = self.clock.now_ms();
        let (key, under) = (endpoint.to_owned(), settings.clone());
        self.store.run(move |tx| tx.set_gone(&key, Some(&under), now)).await?;
        stopped.receivers.insert(endpoint.to_owned(), settings);
        self.metrics.receivers_gone.get_or_create(&labels(endpoint)).set(1);
        tracing::warn!(
            workstream = %name, receiver = %target,
            "a receiver answered 410 Gone: nothing more is delivered to it, and its events stay queued, until its settings change or the Workstream's switchboard.dev/reconcile-requested-at annotation is set"
        );
        if let Some(events) = &self.events {
            let note = format!(
                "The {target} answered 410 Gone: delivery to it is stopped and its events stay queued. Change its settings or set the switchboard.dev/reconcile-requested-at annotation on the Workstream to resume."
            );
            publish(events, &ws.config, Notice { severity: Severity::Warning, reason: "ReceiverGone", action: "Deliver", note }, now).await;
        }
        Ok(())
    }

    async fn attempt(&self, rt: &Runtime, head: &QueuedEvent) -> Outcome {
        let Some(ws) = rt.workstream(&head.workstream) else { return Outcome::Unrouted };
        let (url, token) = match (head.target.as_str(), &ws.config.bot) {
            ("bot", Some(bot)) => (&bot.url, ws.bot_token.as_ref()),
            // A bot removed from the configuration leaves its conversations' events to the desk.
            _ => (&ws.config.delivery.url, None),
        };
        let timestamp = self.clock.wall_ms().div_euclid(1000);
        let mut request = self.http.post(url);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        let request = request
            .header("content-type", "application/json")
            .header(ID_HEADER, &head.event_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signatures(&ws.signing_keys, &head.event_id, timestamp, &head.body))
            .body(head.body.clone());
        match request.send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) if r.status() == reqwest::StatusCode::GONE => Outcome::Gone,
            Ok(r) => {
                let status = r.status();
                let retry_after = r.headers().get(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
                Outcome::Rejected { status: status.as_u16(), desk_down: status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408, retry_after }
            }
            // reqwest's error names the URL, never the headers, so no secret can be in it.
            Err(e) => Outcome::Failed(e.without_url().to_string()),
        }
    }
}

/// The gauge's labels of a receiver.
fn labels(endpoint: &str) -> ReceiverLabels {
    let (receiver, workstream) = receiver::parse(endpoint).unwrap_or(("desk", endpoint));
    ReceiverLabels { workstream: workstream.to_owned(), receiver: receiver.to_owned() }
}

/// Writes a Kubernetes Event; one that cannot be written is logged, and delivery goes on.
async fn publish(events: &Publisher, ws: &WorkstreamConfig, notice: Notice, now: i64) {
    if let Err(e) = events.publish(ws, &notice, now).await {
        tracing::warn!(workstream = %ws.name, reason = notice.reason, error = %e, "cannot write a Kubernetes Event");
    }
}
