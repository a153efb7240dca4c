//! The sending loop: takes the due messages, one per conversation and oldest first (so the
//! customer reads them in the order they were accepted), sends them through the account's
//! channel, and settles the outcomes in one transaction.
//!
//! Refused credentials (401 or 403) are retried for `--credentials-retry-for` from the first
//! refusal of the streak, time for a rotated Secret to reach the pod by a rollout; the streak is
//! logged once, at WARN, and then each message refused fails with `credentials_rejected`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};

use super::POLL;
use crate::backoff::Backoff;
use crate::gateway::channels::Answer;
use crate::gateway::clock::Clock;
use crate::gateway::conversations::outgoing;
use crate::gateway::metrics::{AttemptOutcome, Metrics};
use crate::gateway::model::outbound::Outcome;
use crate::gateway::model::queue::QueuedSend;
use crate::gateway::runtime::Runtime;
use crate::gateway::store::{Store, StoreError};

/// Rows taken per round.
const BATCH: usize = 64;
/// Sends at once (each to a different conversation).
const CONCURRENCY: usize = 16;

/// The provider's refusals of the account's credentials since it last accepted them. In memory:
/// a restarted gateway (as after a Secret's rotation) gives queued messages the whole time again.
#[derive(Debug, Default)]
struct Streak {
    since_ms: Option<i64>,
}

/// What a refusal of the credentials means for its message.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// The refusal begins a streak (the one to log).
    first: bool,
    /// The streak is older than the retry time: the message fails.
    give_up: bool,
}

impl Streak {
    /// A refusal at `now`.
    fn refused(&mut self, now: i64, retry_for: Duration) -> Verdict {
        let first = self.since_ms.is_none();
        let since = *self.since_ms.get_or_insert(now);
        Verdict { first, give_up: now.saturating_sub(since) >= retry_for.as_millis() as i64 }
    }

    /// The provider accepted a message; returns when the streak it ends began.
    fn accepted(&mut self) -> Option<i64> {
        self.since_ms.take()
    }
}

/// The sending loop.
pub struct Sender {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Counts attempts.
    pub metrics: Arc<Metrics>,
    /// Woken when messages are queued.
    pub wake: Arc<Notify>,
    /// Woken when outcomes were queued for the desk.
    pub delivery: Arc<Notify>,
    /// Retry delays: first, and the most.
    pub backoff: Backoff,
    /// How long refused credentials are retried, from the first refusal of the streak.
    pub credentials_retry_for: Duration,
    /// The time attempts are judged by.
    pub clock: Clock,
    /// Held through each round, from taking messages to recording their outcomes: shutdown
    /// takes it before stopping the loop, so that a message the provider accepted is never sent
    /// again because its outcome was not recorded.
    pub in_flight: Arc<tokio::sync::Mutex<()>>,
}

impl Sender {
    /// Sends until the process ends.
    pub async fn run(self) {
        let mut streak = Streak::default();
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => {
                    let _round = self.in_flight.lock().await;
                    self.round(&rt, &mut streak).await.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "sending queued messages failed; retrying");
                        Some(self.backoff.min)
                    })
                }
                None => Some(self.backoff.min),
            };
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

    /// Sends what is due; returns how long to wait before the next round (None: until woken, or
    /// [`POLL`]).
    async fn round(&self, rt: &Arc<Runtime>, streak: &mut Streak) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now_ms();
        let rows = self.store.read(move |tx| tx.due_sends(now, BATCH)).await?;
        if rows.is_empty() {
            let next = self.store.read(|tx| tx.next_send_due()).await?;
            return Ok(next.map(|at| Duration::from_millis(at.saturating_sub(self.clock.now_ms()).max(0) as u64)));
        }
        let channel = rt.provider.channel();
        let answers: Vec<(QueuedSend, Answer)> = futures::stream::iter(rows)
            .map(|row| async move {
                let answer = channel.send(&row, self.clock.now_ms()).await;
                (row, answer)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (_, answer) in &answers {
            self.metrics.send(match answer {
                Answer::Outcome(Outcome::Sent(_)) => AttemptOutcome::Delivered,
                Answer::Outcome(Outcome::Retry(..)) => AttemptOutcome::Failed,
                Answer::Outcome(Outcome::Refused(_)) | Answer::CredentialsRefused(_) => AttemptOutcome::Rejected,
            });
        }
        let results = self.judge(rt, answers, streak, self.clock.now_ms());
        let backoff = self.backoff;
        let rt = Arc::clone(rt);
        let now = self.clock.now_ms();
        self.store.run(move |tx| outgoing::settle(tx, rt.account_ref(), &results, backoff, now)).await?;
        self.delivery.notify_one();
        Ok(Some(Duration::ZERO))
    }

    /// Turns refusals of the credentials into retries while the account's streak is younger
    /// than `credentials_retry_for`, and into failures after; logs the streak's start (once, at
    /// WARN) and its end.
    fn judge(&self, rt: &Runtime, answers: Vec<(QueuedSend, Answer)>, streak: &mut Streak, now: i64) -> Vec<(QueuedSend, Outcome)> {
        let account = format!("{}/{}", rt.config.account.namespace, rt.config.account.name);
        if answers.iter().any(|(_, a)| matches!(a, Answer::Outcome(Outcome::Sent(_))))
            && let Some(since) = streak.accepted()
        {
            tracing::info!(%account, refused_for_ms = now.saturating_sub(since), "the provider accepts the account's credentials again");
        }
        answers
            .into_iter()
            .map(|(row, answer)| {
                let error = match answer {
                    Answer::Outcome(outcome) => return (row, outcome),
                    Answer::CredentialsRefused(error) => error,
                };
                let verdict = streak.refused(now, self.credentials_retry_for);
                if verdict.first {
                    tracing::warn!(
                        %account,
                        provider_code = ?error.provider_code,
                        error = %error.message,
                        retry_for = ?self.credentials_retry_for,
                        "the provider refuses the account's credentials; messages are retried for --credentials-retry-for, then fail with credentials_rejected: check the account's Secret"
                    );
                }
                if verdict.give_up { (row, Outcome::Refused(error)) } else { (row, Outcome::Retry(error.message, None)) }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_of_refused_credentials_gives_up_after_the_retry_time_and_ends_when_accepted() {
        let retry_for = Duration::from_secs(600);
        let mut streak = Streak::default();
        assert_eq!(streak.accepted(), None, "no streak to end");
        assert_eq!(streak.refused(1_000, retry_for), Verdict { first: true, give_up: false });
        assert_eq!(streak.refused(1_000, retry_for), Verdict { first: false, give_up: false }, "the same instant is the same streak");
        assert_eq!(streak.refused(600_999, retry_for), Verdict { first: false, give_up: false });
        assert_eq!(streak.refused(601_000, retry_for), Verdict { first: false, give_up: true });
        assert_eq!(streak.accepted(), Some(1_000));
        assert_eq!(streak.refused(700_000, retry_for), Verdict { first: true, give_up: false }, "a new streak has the whole time again");
        assert_eq!(Streak::default().refused(5, Duration::ZERO), Verdict { first: true, give_up: true }, "no retry time: the first refusal fails");
    }
}
