//! Messages the gateway sends to customers on its own (the greeting), from a durable queue:
//! queued in the transaction that decided to send them, retried until the provider takes them
//! or refuses them for good.
//!
//! LINE: the event's reply token while it is fresh (it works once, within a minute), else a
//! push with the row's `X-Line-Retry-Key`, so that a retry after a lost answer cannot send
//! twice. Twilio has no such key: a crash between Twilio accepting a message and the store
//! recording it sends that message again after the restart.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rusqlite::{Connection, params};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::metrics::{AttemptOutcome, Metrics};
use super::processor::now_ms;
use super::runtime::{Provider, Runtime};
use super::store::{Store, StoreError};
use crate::controller::backoff::Backoff;
use crate::providers::ProviderError;
use crate::providers::line::{LineMessage, SendOptions};
use crate::providers::twilio::{MessageContent, MessageSender, OutgoingMessage};

/// Rows taken per round.
const BATCH: usize = 32;
/// Sends at once.
const CONCURRENCY: usize = 8;

/// A message to queue.
#[derive(Debug)]
pub struct NewSend<'a> {
    /// The conversation it belongs to.
    pub conversation_id: &'a str,
    /// The workstream.
    pub workstream: &'a str,
    /// The customer: LINE user ID or `whatsapp:+E164`.
    pub recipient: &'a str,
    /// The sending address (`whatsapp:+E164`); absent on LINE.
    pub sender: Option<&'a str>,
    /// The texts, sent together.
    pub texts: &'a [String],
    /// The reply token of the event that caused the send (LINE).
    pub reply_token: Option<&'a str>,
    /// Until when the reply token may be used.
    pub reply_until_ms: i64,
}

/// Queues a message in the caller's transaction.
pub fn enqueue(c: &Connection, send: &NewSend<'_>, now_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO sends (conversation_id, workstream, recipient, sender, messages, retry_key, reply_token, reply_until_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        send.conversation_id,
        send.workstream,
        send.recipient,
        send.sender,
        serde_json::to_string(send.texts)?,
        Uuid::new_v4().to_string(),
        send.reply_token,
        send.reply_until_ms,
        now_ms
    ])?;
    Ok(())
}

/// A queued message.
#[derive(Debug)]
struct Row {
    seq: i64,
    recipient: String,
    sender: Option<String>,
    texts: Vec<String>,
    retry_key: Uuid,
    reply_token: Option<String>,
    reply_until_ms: i64,
    attempts: u32,
}

/// How one attempt ended.
enum Outcome {
    Sent,
    /// Try again later; the reply token, if any, is spent.
    Retry(String, Option<Duration>),
    /// The provider refused it for good.
    Refused(String),
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
    /// Retry delays: first, and the most.
    pub backoff: Backoff,
}

impl Sender {
    /// Sends until the process ends.
    pub async fn run(self) {
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => self.round(&rt).await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "sending queued messages failed; retrying");
                    Some(self.backoff.min)
                }),
                None => Some(self.backoff.min),
            };
            match wait {
                Some(Duration::ZERO) => {}
                Some(d) => {
                    let _ = tokio::time::timeout(d, self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Sends what is due; returns how long to wait before the next round (None: until woken).
    async fn round(&self, rt: &Runtime) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let rows = self.store.read(move |c| due(c, now)).await?;
        if rows.is_empty() {
            let next: Option<i64> = self.store.read(|c| Ok(c.query_row("SELECT min(next_attempt_ms) FROM sends", [], |r| r.get(0))?)).await?;
            return Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)));
        }
        let results: Vec<(Row, Outcome)> =
            futures::stream::iter(rows).map(|row| async move { let o = attempt(rt, &row).await; (row, o) }).buffer_unordered(CONCURRENCY).collect().await;
        for (_, outcome) in &results {
            self.metrics.send(match outcome {
                Outcome::Sent => AttemptOutcome::Delivered,
                Outcome::Retry(..) => AttemptOutcome::Failed,
                Outcome::Refused(_) => AttemptOutcome::Rejected,
            });
        }
        let backoff = self.backoff;
        self.store.run(move |c| settle(c, &results, backoff, now_ms())).await?;
        Ok(Some(Duration::ZERO))
    }
}

fn due(c: &Connection, now: i64) -> Result<Vec<Row>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, recipient, sender, messages, retry_key, reply_token, reply_until_ms, attempts FROM sends
         WHERE next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, BATCH as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, u32>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, recipient, sender, texts, retry_key, reply_token, reply_until_ms, attempts) = row?;
        out.push(Row {
            seq,
            recipient,
            sender,
            texts: serde_json::from_str(&texts)?,
            retry_key: Uuid::parse_str(&retry_key).unwrap_or_else(|_| Uuid::new_v4()),
            reply_token,
            reply_until_ms: reply_until_ms.unwrap_or(0),
            attempts,
        });
    }
    Ok(out)
}

fn settle(c: &Connection, results: &[(Row, Outcome)], backoff: Backoff, now: i64) -> Result<(), StoreError> {
    for (row, outcome) in results {
        match outcome {
            Outcome::Sent => {
                c.prepare_cached("DELETE FROM sends WHERE seq = ?1")?.execute([row.seq])?;
            }
            Outcome::Refused(error) => {
                tracing::warn!(seq = row.seq, error = %error, "the provider refused an automated message; it is dropped");
                c.prepare_cached("DELETE FROM sends WHERE seq = ?1")?.execute([row.seq])?;
            }
            Outcome::Retry(error, after) => {
                let delay = after.unwrap_or_else(|| retry_delay(row.attempts, backoff));
                c.prepare_cached("UPDATE sends SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3, reply_token = NULL WHERE seq = ?1")?
                    .execute(params![row.seq, now + delay.as_millis() as i64, error])?;
            }
        }
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`: doubling from the first delay, capped. Retries of
/// one gateway are few, so they need no jitter.
pub fn retry_delay(attempts: u32, backoff: Backoff) -> Duration {
    backoff.delay(attempts.saturating_add(1), 1.0)
}

async fn attempt(rt: &Runtime, row: &Row) -> Outcome {
    let result = match &rt.provider {
        Provider::Line { client, .. } => {
            let messages: Vec<LineMessage> = row.texts.iter().map(|t| LineMessage::Text { text: t.clone() }).collect();
            match row.reply_token.as_deref().filter(|_| now_ms() < row.reply_until_ms) {
                Some(token) => match client.reply(token, &messages, SendOptions::default()).await {
                    Ok(_) => Ok(()),
                    // A refused or failed reply spends the token; the next attempt pushes at once.
                    Err(e) => return Outcome::Retry(e.to_string(), Some(Duration::ZERO)),
                },
                None => client.push(&row.recipient, &messages, row.retry_key, SendOptions::default()).await.map(|_| ()),
            }
        }
        Provider::Twilio { client, .. } => {
            let Some(from) = &row.sender else { return Outcome::Refused("no sending number".into()) };
            let message = OutgoingMessage {
                to: row.recipient.clone(),
                from: MessageSender::Address(from.clone()),
                content: MessageContent::Text(row.texts.join("\n\n")),
                status_callback: None,
            };
            client.send_message(&message).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Outcome::Sent,
        // Refused credentials are retried too: they are fixed by rotating the Secret, after which
        // the message should still go out.
        Err(e @ (ProviderError::Unavailable { .. } | ProviderError::InvalidResponse { .. } | ProviderError::Unauthorized { .. })) => {
            Outcome::Retry(e.to_string(), None)
        }
        Err(ProviderError::RateLimited { retry_after, operation }) => Outcome::Retry(format!("{operation}: rate limited"), retry_after),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let b = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(retry_delay(0, b), Duration::from_secs(1));
        assert_eq!(retry_delay(3, b), Duration::from_secs(8));
        assert_eq!(retry_delay(10, b), Duration::from_secs(60));
        assert_eq!(retry_delay(u32::MAX, b), Duration::from_secs(60));
    }
}
