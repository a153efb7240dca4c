//! Messages to customers — agents', the bot's and the gateway's own — from a durable queue:
//! stored and queued in the transaction that decided to send them, retried until the provider
//! takes them or refuses them for good, and the outcome told to the conversation's handler as
//! `message.delivered` or `message.failed`: no message leaves the queue without one.
//!
//! Refused credentials (401 or 403) are retried for `--credentials-retry-for` from the first
//! refusal of the streak, time for a rotated Secret to reach the pod by a rollout; the streak is
//! logged once, at WARN, and then each message refused fails with `credentials_rejected`.
//!
//! One message per conversation is in flight at a time, oldest first, so the customer reads
//! them in the order they were accepted.
//!
//! LINE: the conversation's reply token while it is fresh (it works once, within a minute),
//! else a push with the message's `X-Line-Retry-Key`, so that a retry after a lost answer cannot
//! send twice. Twilio has no such key: a crash between Twilio accepting a message and the store
//! recording it sends that message again after the restart.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::conversation::{AgentRef, Conversation};
use super::conversation_store::{self as conversations, Pending};
use super::desk_event::{AccountRef, EventType, MessageBody};
use super::metrics::{AttemptOutcome, Metrics};
use super::outbound::{self, Author, CREDENTIALS_REJECTED, OutContent, OutboundMessage, SendError, Status, TWILIO_WINDOW_CLOSED, WINDOW_CLOSED};
use super::processor::now_ms;
use super::runtime::{Provider, Runtime, Workstream};
use super::store::{Store, StoreError};
use crate::backoff::Backoff;
use crate::providers::ProviderError;
use crate::providers::line::{PushOutcome, SendOptions};
use crate::providers::twilio::{MessageSender, OutgoingMessage};

/// Rows taken per round.
const BATCH: usize = 64;
/// Sends at once (each to a different conversation).
const CONCURRENCY: usize = 16;
/// A message the provider has not taken after this long is given up (`expired`): an answer a
/// day late does more harm than good, and WhatsApp's window has closed by then anyway.
const GIVE_UP_AFTER_MS: i64 = 24 * 3600 * 1000;

/// A message to store and send.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Who wrote it.
    pub author: Author,
    /// The agent, when the desk named one.
    pub agent: Option<AgentRef>,
    /// The caller's ID of the message, which makes a repeated request send once.
    pub client_message_id: Option<String>,
    /// A hash of the request, to tell a repeat from a different request reusing the ID.
    pub request_hash: Option<String>,
    /// The automated messages it carries.
    pub triggers: Vec<String>,
    /// What it says.
    pub contents: Vec<OutContent>,
    /// LINE's `X-Line-Retry-Key` for a push.
    pub retry_key: Uuid,
}

/// Stores an outgoing message of `conv` and queues it, in the caller's transaction. On LINE the
/// conversation's fresh reply token, if any, goes with it (and is spent).
pub fn queue(c: &Connection, ws: &Workstream, conv: &Conversation, draft: Draft, now: i64) -> Result<OutboundMessage, StoreError> {
    let message = store_message(c, &conv.id, draft.clone(), Status::Queued, None, now)?;
    let reply = if ws.has_window() { None } else { conversations::take_reply_token(c, &conv.id, now)? };
    c.prepare_cached(
        "INSERT INTO sends (conversation_id, message_id, workstream, recipient, sender, contents, retry_key, reply_token, reply_until_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        conv.id,
        message.id,
        ws.config.name,
        conv.customer.id,
        ws.sender_address(),
        serde_json::to_string(&draft.contents)?,
        draft.retry_key.to_string(),
        reply.as_ref().map(|r| &r.0),
        reply.as_ref().map(|r| r.1),
        now
    ])?;
    Ok(message)
}

/// Stores a message that is not sent, by rule, and tells the conversation's handler with
/// `message.skipped`.
pub fn skip(c: &Connection, account: AccountRef<'_>, conv: &Conversation, draft: Draft, error: SendError, now: i64) -> Result<OutboundMessage, StoreError> {
    let message = store_message(c, &conv.id, draft, Status::Skipped, Some(error), now)?;
    let reason = message.error.as_ref().map(|e| e.code.as_str());
    conversations::enqueue(c, account, conv, Pending { event_type: EventType::MessageSkipped, message: Some(MessageBody::Out(&message)), reason }, now)?;
    Ok(message)
}

fn store_message(c: &Connection, conversation_id: &str, draft: Draft, status: Status, error: Option<SendError>, now: i64) -> Result<OutboundMessage, StoreError> {
    c.prepare_cached("INSERT INTO messages (conversation_id, direction, client_message_id, request_hash, body, created_ms) VALUES (?1, 'out', ?2, ?3, '{}', ?4)")?
        .execute(params![conversation_id, draft.client_message_id, draft.request_hash, now])?;
    let message = OutboundMessage {
        id: c.last_insert_rowid().to_string(),
        direction: "out".to_owned(),
        author: draft.author,
        agent: draft.agent,
        client_message_id: draft.client_message_id,
        triggers: draft.triggers,
        contents: draft.contents,
        status,
        provider_message_ids: Vec::new(),
        error,
        created_at: super::clock::rfc3339(now),
    };
    save_message(c, &message)?;
    Ok(message)
}

fn save_message(c: &Connection, message: &OutboundMessage) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE messages SET body = ?2 WHERE id = ?1")?.execute(params![message.id, serde_json::to_string(message)?])?;
    Ok(())
}

/// An outgoing message by the gateway's ID.
pub fn load_message(c: &Connection, id: &str) -> Result<Option<OutboundMessage>, StoreError> {
    let body: Option<String> =
        c.prepare_cached("SELECT body FROM messages WHERE id = ?1 AND direction = 'out'")?.query_row([id], |r| r.get(0)).optional()?;
    Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
}

/// A queued message.
#[derive(Debug)]
struct Row {
    seq: i64,
    conversation_id: String,
    message_id: i64,
    recipient: String,
    sender: Option<String>,
    contents: Vec<OutContent>,
    retry_key: Uuid,
    reply_token: Option<String>,
    reply_until_ms: i64,
    created_ms: i64,
    attempts: u32,
}

/// How one attempt ended.
enum Outcome {
    /// Accepted, with the provider's IDs.
    Sent(Vec<String>),
    /// Try again later; the reply token, if any, is spent.
    Retry(String, Option<Duration>),
    /// The provider refused it for good.
    Refused(SendError),
}

/// What the provider answered to one attempt.
enum Answer {
    /// An outcome as it is.
    Outcome(Outcome),
    /// The account's credentials were refused: a retry or a refusal, as the account's
    /// [`Streak`] says.
    CredentialsRefused(SendError),
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        Self::Outcome(outcome)
    }
}

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
}

impl Sender {
    /// Sends until the process ends.
    pub async fn run(self) {
        let mut streak = Streak::default();
        loop {
            let rt = self.runtime.borrow().clone();
            let wait = match rt {
                Some(rt) => self.round(&rt, &mut streak).await.unwrap_or_else(|e| {
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
    async fn round(&self, rt: &Arc<Runtime>, streak: &mut Streak) -> Result<Option<Duration>, StoreError> {
        let now = now_ms();
        let rows = self.store.read(move |c| due(c, now)).await?;
        if rows.is_empty() {
            let next: Option<i64> = self.store.read(|c| Ok(c.query_row("SELECT min(next_attempt_ms) FROM sends", [], |r| r.get(0))?)).await?;
            return Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64)));
        }
        let answers: Vec<(Row, Answer)> = futures::stream::iter(rows)
            .map(|row| async move {
                let o = attempt(rt, &row).await;
                (row, o)
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
        let results = self.judge(rt, answers, streak, now_ms());
        let backoff = self.backoff;
        let rt = Arc::clone(rt);
        self.store.run(move |c| settle(c, &rt, &results, backoff, now_ms())).await?;
        self.delivery.notify_one();
        Ok(Some(Duration::ZERO))
    }

    /// Turns refusals of the credentials into retries while the account's streak is younger
    /// than `credentials_retry_for`, and into failures after; logs the streak's start (once, at
    /// WARN) and its end.
    fn judge(&self, rt: &Runtime, answers: Vec<(Row, Answer)>, streak: &mut Streak, now: i64) -> Vec<(Row, Outcome)> {
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

/// The oldest due message of each conversation whose oldest message is due.
fn due(c: &Connection, now: i64) -> Result<Vec<Row>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT s.seq, s.conversation_id, s.message_id, s.recipient, s.sender, s.contents, s.retry_key, s.reply_token, s.reply_until_ms, s.created_ms, s.attempts
         FROM (SELECT min(seq) AS head FROM sends GROUP BY conversation_id) h JOIN sends s ON s.seq = h.head
         WHERE s.next_attempt_ms <= ?1 ORDER BY s.seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, BATCH as i64], |r| {
        Ok((
            (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?),
            (r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, Option<String>>(7)?, r.get::<_, Option<i64>>(8)?),
            (r.get::<_, i64>(9)?, r.get::<_, u32>(10)?),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let ((seq, conversation_id, message_id, recipient, sender), (contents, retry_key, reply_token, reply_until_ms), (created_ms, attempts)) = row?;
        out.push(Row {
            seq,
            conversation_id,
            message_id,
            recipient,
            sender,
            contents: serde_json::from_str(&contents)?,
            retry_key: Uuid::parse_str(&retry_key).unwrap_or_else(|_| Uuid::new_v4()),
            reply_token,
            reply_until_ms: reply_until_ms.unwrap_or(0),
            created_ms,
            attempts,
        });
    }
    Ok(out)
}

fn settle(c: &Connection, rt: &Runtime, results: &[(Row, Outcome)], backoff: Backoff, now: i64) -> Result<(), StoreError> {
    let account = AccountRef { namespace: &rt.config.account.namespace, name: &rt.config.account.name };
    for (row, outcome) in results {
        let finished = match outcome {
            Outcome::Sent(ids) => Some((Status::Delivered, ids.clone(), None)),
            // The streak of refused credentials was logged once, at WARN, when it began.
            Outcome::Refused(error) if error.code == CREDENTIALS_REJECTED => {
                tracing::info!(message = row.message_id, provider_code = ?error.provider_code, "a message failed: the provider refused the credentials for longer than --credentials-retry-for");
                Some((Status::Failed, Vec::new(), Some(error.clone())))
            }
            Outcome::Refused(error) => {
                tracing::warn!(message = row.message_id, code = %error.code, provider_code = ?error.provider_code, "the provider refused a message");
                Some((Status::Failed, Vec::new(), Some(error.clone())))
            }
            Outcome::Retry(error, _) if now - row.created_ms >= GIVE_UP_AFTER_MS => {
                tracing::warn!(message = row.message_id, error = %error, "a message could not be sent within a day; giving up");
                let error = SendError { code: "expired".to_owned(), provider_code: None, message: format!("not accepted by the provider within 24h; last error: {error}") };
                Some((Status::Failed, Vec::new(), Some(error)))
            }
            Outcome::Retry(error, after) => {
                let delay = after.unwrap_or_else(|| retry_delay(row.attempts, backoff));
                c.prepare_cached("UPDATE sends SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3, reply_token = NULL WHERE seq = ?1")?
                    .execute(params![row.seq, now + delay.as_millis() as i64, error])?;
                None
            }
        };
        let Some((status, ids, error)) = finished else { continue };
        c.prepare_cached("DELETE FROM sends WHERE seq = ?1")?.execute([row.seq])?;
        let (Some(mut message), Some(conv)) = (load_message(c, &row.message_id.to_string())?, conversations::load(c, &row.conversation_id)?) else {
            tracing::error!(message = row.message_id, conversation = %row.conversation_id, "a sent or failed message or its conversation is missing from the store; no event tells its outcome");
            continue;
        };
        message.status = status;
        message.provider_message_ids = ids;
        message.error = error;
        save_message(c, &message)?;
        let event_type = if status == Status::Delivered { EventType::MessageDelivered } else { EventType::MessageFailed };
        let reason = message.error.as_ref().map(|e| e.code.as_str());
        conversations::enqueue(c, account.clone(), &conv, Pending { event_type, message: Some(MessageBody::Out(&message)), reason }, now)?;
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`: doubling from the first delay, capped. Retries of
/// one gateway are few, so they need no jitter.
pub fn retry_delay(attempts: u32, backoff: Backoff) -> Duration {
    backoff.delay(attempts.saturating_add(1), 1.0)
}

async fn attempt(rt: &Runtime, row: &Row) -> Answer {
    let result = match &rt.provider {
        Provider::Line { client, .. } => {
            let messages = outbound::line_messages(&row.contents);
            match row.reply_token.as_deref().filter(|_| now_ms() < row.reply_until_ms) {
                Some(token) => match client.reply(token, &messages, SendOptions::default()).await {
                    Ok(sent) => return Outcome::Sent(sent.into_iter().map(|m| m.id).collect()).into(),
                    // A refused or failed reply spends the token; the next attempt pushes at once.
                    Err(e) => return Outcome::Retry(e.to_string(), Some(Duration::ZERO)).into(),
                },
                None => client.push(&row.recipient, &messages, row.retry_key, SendOptions::default()).await.map(|outcome| match outcome {
                    PushOutcome::Sent(sent) | PushOutcome::AlreadyAccepted { sent_messages: sent, .. } => sent.into_iter().map(|m| m.id).collect(),
                }),
            }
        }
        Provider::Twilio { client, .. } => {
            let Some(from) = &row.sender else { return refused("provider_rejected", None, "the workstream has no sending number").into() };
            let content = match outbound::twilio_content(&row.contents) {
                Ok(content) => content,
                Err(detail) => return refused("provider_rejected", None, &detail).into(),
            };
            let message = OutgoingMessage { to: row.recipient.clone(), from: MessageSender::Address(from.clone()), content, status_callback: None };
            match client.send_message(&message).await {
                // Twilio can answer 201 for a message that already failed.
                Ok(sent) if sent.error_code.is_some() || sent.status.as_deref() == Some("failed") => {
                    return provider_refusal(sent.error_code, sent.error_message.unwrap_or_else(|| "failed".to_owned())).into();
                }
                Ok(sent) => Ok(vec![sent.sid]),
                Err(e) => Err(e),
            }
        }
    };
    let outcome = match result {
        Ok(ids) => Outcome::Sent(ids),
        Err(e @ (ProviderError::Unavailable { .. } | ProviderError::InvalidResponse { .. })) => Outcome::Retry(e.to_string(), None),
        // Fixed by rotating the Secret, after which the message should still go out.
        Err(e @ (ProviderError::Unauthorized { code, .. } | ProviderError::Rejected { status: 403, code, .. })) => {
            return Answer::CredentialsRefused(SendError { code: CREDENTIALS_REJECTED.to_owned(), provider_code: code, message: e.to_string() });
        }
        Err(ProviderError::RateLimited { retry_after, operation }) => Outcome::Retry(format!("{operation}: rate limited"), retry_after),
        Err(ProviderError::Rejected { code, message, .. }) => provider_refusal(code, message),
        Err(e) => refused("provider_rejected", None, &e.to_string()),
    };
    outcome.into()
}

/// A refusal with the provider's code; Twilio's "outside the window" is the gateway's own
/// `session_window_closed`, so the desk handles both alike.
fn provider_refusal(code: Option<i64>, message: String) -> Outcome {
    if code == Some(TWILIO_WINDOW_CLOSED) {
        return refused(WINDOW_CLOSED, code, "WhatsApp's 24-hour window is closed (Twilio 63016); send an approved template");
    }
    refused("provider_rejected", code, &message)
}

fn refused(code: &str, provider_code: Option<i64>, message: &str) -> Outcome {
    Outcome::Refused(SendError { code: code.to_owned(), provider_code, message: message.to_owned() })
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

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let b = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(retry_delay(0, b), Duration::from_secs(1));
        assert_eq!(retry_delay(3, b), Duration::from_secs(8));
        assert_eq!(retry_delay(10, b), Duration::from_secs(60));
        assert_eq!(retry_delay(u32::MAX, b), Duration::from_secs(60));
    }
}
