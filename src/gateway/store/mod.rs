//! The store: the only place that knows how the gateway's data is kept. The rest of the gateway
//! runs jobs against [`Tx`], one transaction's operations in the gateway's own terms (record
//! events, open a conversation, queue a desk event, take the due sends, …); a backend
//! implements them. [`Store`] is the handle to the backend in use.
//!
//! A job's result is handed back only after its transaction committed: an answer to a webhook
//! can never run ahead of the disk. An error from a job undoes only what that job did.

mod migrations;
pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use super::model::agent::Agent;
use super::model::conversation::{Conversation, CustomerProfile};
use super::model::event::{InboundEvent, Message};
use super::model::history::StoredMessage;
use super::model::outbound::OutboundMessage;
use super::model::receipt::Receipt;
use super::model::queue::{InboundState, NewDeskEvent, NewSend, OutboxStats, QueuedEvent, QueuedSend, Recorded, Serialized};
use super::model::upload::Upload;
pub use postgres::{PostgresParts, PostgresTarget, SslMode, TargetError, TlsSettings};

/// Why the store failed.
#[derive(Clone, Debug, Error)]
pub enum StoreError {
    /// A SQLite store from before the migrations holds another schema version than the one
    /// this build adopts.
    #[error("store: schema version {found} is from before the migrations and cannot be migrated (this build adopts version {expected}); move the file aside to start with an empty store")]
    Schema {
        /// The version found (0: written before versions were recorded).
        found: i64,
        /// The version this build adopts.
        expected: i64,
    },
    /// A newer build migrated the store past the versions this build knows.
    #[error("store: schema version {found} is newer than this build's {latest}; run a build that knows it")]
    Newer {
        /// The store's version.
        found: i64,
        /// The newest version this build knows.
        latest: i64,
    },
    /// The schema could not be migrated; nothing of the migration was kept.
    #[error("store: cannot migrate the schema: {0}")]
    Migration(Arc<migrations::Failure>),
    /// The PostgreSQL connection is set up wrongly: its connection string, or the authorities
    /// its server's certificate is checked against.
    #[error("store: {0}")]
    Target(Arc<TargetError>),
    /// The database refused or failed.
    #[error("store: {0}")]
    Database(Arc<dyn std::error::Error + Send + Sync>),
    /// The database gave this transaction up so that a concurrent one could go on (a deadlock's
    /// victim, a serialization failure): the same change may be tried again.
    #[error("store: {0}")]
    Contended(Arc<dyn std::error::Error + Send + Sync>),
    /// A stored document could not be read or written as JSON.
    #[error("store: stored JSON: {0}")]
    Json(Arc<serde_json::Error>),
    /// The store's thread could not be started.
    #[error("store: cannot start the writer thread: {0}")]
    Thread(Arc<std::io::Error>),
    /// The store has stopped (the process is shutting down, or the disk failed).
    #[error("store is closed")]
    Closed,
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Json(Arc::new(e))
    }
}

/// Writes `e` and its causes, `error: cause: cause`, for clients whose messages leave the
/// causes out.
fn write_chain(f: &mut std::fmt::Formatter<'_>, e: &(dyn std::error::Error + 'static)) -> std::fmt::Result {
    write!(f, "{e}")?;
    let mut cause = e.source();
    while let Some(c) = cause {
        write!(f, ": {c}")?;
        cause = c.source();
    }
    Ok(())
}

/// When a commit counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// On disk: each commit waits for fsync, so an answered webhook survives a power cut.
    #[default]
    Full,
    /// In the operating system: an answered webhook survives the process being killed, not the
    /// machine losing power. Faster on slow disks.
    Process,
}

/// A commit's size and duration, reported to whoever measures them.
pub type CommitObserver = Box<dyn Fn(usize, Duration) + Send + Sync>;

/// A loop that another replica woke through the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Events were recorded.
    Processor,
    /// Desk events were queued.
    Delivery,
    /// Messages to customers were queued.
    Sender,
    /// Who can take which conversation changed (presence, a conversation put aside).
    Distributor,
}

impl Wake {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Wake::Processor => "processor",
            Wake::Delivery => "delivery",
            Wake::Sender => "sender",
            Wake::Distributor => "distributor",
        }
    }

    /// The loop a wake-up names; None for one this build does not know.
    pub fn parse(name: &str) -> Option<Self> {
        [Wake::Processor, Wake::Delivery, Wake::Sender, Wake::Distributor].into_iter().find(|w| w.as_str() == name)
    }
}

/// Which conversations a listing wants.
#[derive(Clone, Copy, Debug)]
pub struct ConversationFilter<'a> {
    /// Their workstream.
    pub workstream: &'a str,
    /// Their state (`Open`, `Active`, `Waiting`, `Closed`), any when None.
    pub state: Option<&'a str>,
    /// Their queue, any when None.
    pub queue: Option<&'a str>,
    /// The agent who holds them, any when None.
    pub agent_id: Option<&'a str>,
    /// The most to return.
    pub limit: usize,
}

/// The operations of one transaction.
pub trait Tx {
    // Recorded webhook events.

    /// Records events once each; a provider ID recorded before counts as a duplicate.
    fn record_events(&mut self, events: &[Serialized], received_ms: i64) -> Result<Recorded, StoreError>;
    /// Up to `limit` pending events in the order they were recorded. Events that cannot be read
    /// back are marked [`InboundState::Unreadable`] on the way.
    fn pending_events(&mut self, limit: usize) -> Result<Vec<(i64, InboundEvent)>, StoreError>;
    /// Sets a recorded event's state.
    fn mark_event(&mut self, seq: i64, state: InboundState) -> Result<(), StoreError>;
    /// Makes held events pending again; returns how many.
    fn release_held_events(&mut self) -> Result<usize, StoreError>;
    /// Forgets processed events recorded before `before_ms`; returns how many.
    fn forget_events(&mut self, before_ms: i64) -> Result<usize, StoreError>;

    // Customer profiles fetched from the provider.

    /// Those of `customer_ids` whose profile is missing or was fetched before `since_ms`.
    fn stale_profiles(&mut self, customer_ids: &[String], since_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Keeps a fetched profile.
    fn save_profile(&mut self, profile: &CustomerProfile, fetched_ms: i64) -> Result<(), StoreError>;
    /// A customer's cached profile.
    fn profile(&mut self, customer_id: &str) -> Result<Option<CustomerProfile>, StoreError>;

    // Conversations.

    /// The customer's conversation in the workstream that is not closed, if any.
    fn open_conversation(&mut self, workstream: &str, customer_id: &str) -> Result<Option<Conversation>, StoreError>;
    /// A conversation by ID, closed or not.
    fn conversation(&mut self, id: &str) -> Result<Option<Conversation>, StoreError>;
    /// Whether the customer had a conversation in the workstream before.
    fn customer_known(&mut self, workstream: &str, customer_id: &str) -> Result<bool, StoreError>;
    /// Stores a new conversation; its event sequence starts at 1.
    fn insert_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    /// Saves a changed conversation.
    fn update_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    /// Up to `filter.limit` conversations of a workstream that match the filter, oldest first.
    fn list_conversations(&mut self, filter: &ConversationFilter<'_>) -> Result<Vec<Conversation>, StoreError>;
    /// The workstream's conversations waiting in a queue for an agent (Open, with the desk).
    fn queued_conversations(&mut self, workstream: &str) -> Result<Vec<Conversation>, StoreError>;
    /// The conversations that take an agent's capacity at `now_ms` (Active, or in wrap-up).
    fn holding(&mut self, now_ms: i64) -> Result<Vec<Conversation>, StoreError>;
    /// The agent who last had the customer's latest conversation in the workstream.
    fn previous_agent(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError>;
    /// Up to `limit` conversations of a workstream, not closed, in which neither side wrote
    /// since `before_ms`; the quietest first.
    fn quiet_conversations(&mut self, workstream: &str, before_ms: i64, limit: usize) -> Result<Vec<Conversation>, StoreError>;
    /// How many conversations wait in a queue for an agent.
    fn waiting_in(&mut self, workstream: &str, queue: &str) -> Result<i64, StoreError>;
    /// Where a conversation waiting for an agent stands in its queue, from 1: those of higher
    /// priority, and then the older ones of its own, are served first. None when it does not
    /// wait in a queue.
    fn position(&mut self, conv: &Conversation) -> Result<Option<i64>, StoreError>;
    /// Per queue of the workstream with conversations waiting for an agent: how many, and when
    /// the oldest started.
    fn queue_counts(&mut self, workstream: &str) -> Result<Vec<(String, i64, i64)>, StoreError>;
    /// Notes that an assignment at `assigned_ms` ended a wait of `wait_ms` in the queue; waits
    /// noted before `keep_since_ms` are forgotten.
    fn record_wait(&mut self, workstream: &str, queue: &str, assigned_ms: i64, wait_ms: i64, keep_since_ms: i64) -> Result<(), StoreError>;
    /// The mean of the `latest` waits noted for the queue since `since_ms`; None when none was.
    fn mean_wait(&mut self, workstream: &str, queue: &str, since_ms: i64, latest: usize) -> Result<Option<i64>, StoreError>;
    /// Keeps a LINE reply token for the conversation's next message, unless a fresher one is kept.
    fn offer_reply_token(&mut self, conversation_id: &str, token: &str, until_ms: i64) -> Result<(), StoreError>;
    /// Takes the conversation's reply token if it is still fresh at `now_ms`; it works once.
    fn take_reply_token(&mut self, conversation_id: &str, now_ms: i64) -> Result<Option<(String, i64)>, StoreError>;
    /// The desk's contact ID of a customer.
    fn contact(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError>;
    /// Links a customer to the desk's contact ID, or unlinks it (None).
    fn set_contact(&mut self, workstream: &str, customer_id: &str, contact_id: Option<&str>, now_ms: i64) -> Result<(), StoreError>;

    // Agents.

    /// Keeps an agent as the desk reported them.
    fn save_agent(&mut self, agent: &Agent) -> Result<(), StoreError>;
    /// An agent by the desk's ID.
    fn agent(&mut self, id: &str) -> Result<Option<Agent>, StoreError>;
    /// Every agent the desk reported, by ID.
    fn agents(&mut self) -> Result<Vec<Agent>, StoreError>;

    // Messages.

    /// Keeps a customer's message.
    fn record_inbound(&mut self, conversation_id: &str, message: &Message, at_ms: i64) -> Result<(), StoreError>;
    /// The customer's latest message in the conversation.
    fn latest_inbound(&mut self, conversation_id: &str) -> Result<Option<Message>, StoreError>;
    /// A customer's message by the gateway's ID.
    fn inbound(&mut self, conversation_id: &str, message_id: &str) -> Result<Option<Message>, StoreError>;
    /// The conversation's messages both ways, oldest first.
    fn messages(&mut self, conversation_id: &str) -> Result<Vec<StoredMessage>, StoreError>;
    /// Stores a new outgoing message and gives it its ID; `request_hash` tells a repeat of the
    /// request from another request with the same client message ID.
    fn add_outbound(&mut self, conversation_id: &str, message: &mut OutboundMessage, request_hash: Option<&str>, at_ms: i64) -> Result<(), StoreError>;
    /// Saves a changed outgoing message.
    fn save_outbound(&mut self, message: &OutboundMessage) -> Result<(), StoreError>;
    /// An outgoing message by the gateway's ID.
    fn outbound(&mut self, id: &str) -> Result<Option<OutboundMessage>, StoreError>;
    /// The ID and request hash of the conversation's message with this client message ID.
    fn outbound_by_client_id(&mut self, conversation_id: &str, client_message_id: &str) -> Result<Option<(String, Option<String>)>, StoreError>;

    /// The conversation and ID of the outgoing message the provider knows by `provider_id`.
    fn outbound_by_provider_id(&mut self, provider_id: &str) -> Result<Option<(String, String)>, StoreError>;

    // Delivery receipts that came before the message's provider ID was recorded.

    /// Keeps a receipt until its message is recorded; a repeat is kept once.
    fn keep_receipt(&mut self, receipt: &Receipt, received_ms: i64) -> Result<(), StoreError>;
    /// Takes the receipts kept for the message the provider knows by `provider_id`.
    fn take_receipts(&mut self, provider_id: &str) -> Result<Vec<Receipt>, StoreError>;
    /// Forgets kept receipts received before `before_ms`; returns how many.
    fn forget_receipts(&mut self, before_ms: i64) -> Result<usize, StoreError>;

    // Desk events (the outbox), in each conversation's order.

    /// The conversation's next event sequence number, counted up.
    fn next_sequence(&mut self, conversation_id: &str) -> Result<i64, StoreError>;
    /// Starts the conversation's event sequence at 1 again.
    fn restart_sequence(&mut self, conversation_id: &str) -> Result<(), StoreError>;
    /// Puts an event in the outbox.
    fn queue_event(&mut self, event: NewDeskEvent<'_>) -> Result<(), StoreError>;
    /// Up to `limit` events due at `now_ms` that head their conversation, leaving out the
    /// `excluded` receivers (see [`QueuedEvent::endpoint`]), oldest first.
    fn due_events(&mut self, now_ms: i64, excluded: &[String], limit: usize) -> Result<Vec<QueuedEvent>, StoreError>;
    /// A receiver's oldest event, which heads its conversation.
    fn oldest_event(&mut self, endpoint: &str) -> Result<Option<QueuedEvent>, StoreError>;
    /// When the next event of a receiver not in `resting` falls due.
    fn next_event_due(&mut self, resting: &[String]) -> Result<Option<i64>, StoreError>;
    /// Removes a delivered event.
    fn event_delivered(&mut self, seq: i64) -> Result<(), StoreError>;
    /// Counts a failed attempt and sets the next.
    fn event_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError>;
    /// The outbox's depth and age.
    fn outbox_stats(&mut self) -> Result<OutboxStats, StoreError>;
    /// Every event in the outbox, oldest first.
    fn queued_events(&mut self) -> Result<Vec<QueuedEvent>, StoreError>;
    /// The receivers that answered 410 Gone, each with the settings it answered under.
    fn gone_endpoints(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// Marks a receiver gone under `settings`, or (None) no longer gone.
    fn set_gone(&mut self, endpoint: &str, settings: Option<&str>, now_ms: i64) -> Result<(), StoreError>;

    // Messages to send.

    /// Queues a message for sending.
    fn queue_send(&mut self, send: NewSend<'_>) -> Result<(), StoreError>;
    /// Up to `limit` due messages that head their conversation, oldest first.
    fn due_sends(&mut self, now_ms: i64, limit: usize) -> Result<Vec<QueuedSend>, StoreError>;
    /// When the next queued message falls due.
    fn next_send_due(&mut self) -> Result<Option<i64>, StoreError>;
    /// Counts a failed attempt, spends the reply token and sets the next attempt.
    fn send_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError>;
    /// Removes a message that was sent or given up.
    fn send_finished(&mut self, seq: i64) -> Result<(), StoreError>;
    /// Every queued message, oldest first.
    fn queued_sends(&mut self) -> Result<Vec<QueuedSend>, StoreError>;

    // Uploaded files.

    /// Keeps an upload.
    fn store_upload(&mut self, upload: &Upload, workstream: &str, conversation_id: &str, bytes: &[u8], at_ms: i64) -> Result<(), StoreError>;
    /// An upload's content type and bytes.
    fn upload(&mut self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError>;
    /// Forgets uploads older than `before_ms`; returns how many.
    fn forget_uploads(&mut self, before_ms: i64) -> Result<usize, StoreError>;
}

/// The handle to the store; cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    /// SQLite on the pod's volume.
    Sqlite(sqlite::Sqlite),
    /// PostgreSQL, shared by the account's replicas.
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path`.
    pub fn sqlite(path: &Path, durability: Durability, observe: CommitObserver) -> Result<Self, StoreError> {
        Ok(Store::Sqlite(sqlite::Sqlite::open(path, durability, observe)?))
    }

    /// Starts the PostgreSQL store for `target`; it connects when first used.
    pub fn postgres(target: &PostgresTarget, observe: CommitObserver) -> Result<Self, StoreError> {
        Ok(Store::Postgres(postgres::Postgres::open(target, observe)?))
    }

    /// Whether this process runs the queue loops, as it changes. A SQLite store has one process,
    /// which always leads; on PostgreSQL one replica at a time does, and `wake` is called when
    /// another replica queued work.
    pub fn lead(&self, wake: Box<dyn Fn(Wake) + Send>) -> Result<watch::Receiver<bool>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(watch::channel(true).1),
            Store::Postgres(p) => p.lead(wake),
        }
    }

    /// Runs `f` in the next transaction and returns its result once that transaction committed.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        match self {
            Store::Sqlite(s) => s.run(f).await,
            Store::Postgres(p) => p.run(f).await,
        }
    }

    /// Runs `f`, which only records arriving webhooks' events (`Tx::record_events`), and returns
    /// once it committed. PostgreSQL gives intake a writer of its own, so that a webhook does not
    /// wait behind processing; SQLite has one writer for everything.
    pub async fn record<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        match self {
            Store::Sqlite(s) => s.run(f).await,
            Store::Postgres(p) => p.record(f).await,
        }
    }

    /// Runs `f`, which changes nothing, beside the writes: it sees the last commit and does not
    /// wait for the transaction under way.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        match self {
            Store::Sqlite(s) => s.read(f).await,
            Store::Postgres(p) => p.read(f).await,
        }
    }
}
