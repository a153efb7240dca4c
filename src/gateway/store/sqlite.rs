//! The SQLite backend: WAL mode on the pod's volume, behind one writer thread.
//!
//! Every access is a job that the writer thread runs on its one connection. Jobs that arrive
//! while a commit is under way are run together in the next transaction (group commit), so a
//! burst of webhooks costs one fsync per batch instead of one per webhook; each job runs in its
//! own savepoint, so one failing job does not undo the others. A job's result is handed back only
//! after its transaction committed: an answer to a webhook can never run ahead of the disk.
//!
//! Why SQLite and not redb: the gateway's data is relational (conversations by customer and by
//! queue, the outbox by conversation), wants secondary indexes and ad-hoc queries for support
//! (`sqlite3` on a copy of the volume), and SQLite's WAL mode with `synchronous = FULL` is the
//! most widely proven crash-safe format there is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::migrations::{self, Migration};
use super::{CommitObserver, ConversationFilter, Durability, StoreError, Tx};
use crate::gateway::model::agent::Agent;
use crate::gateway::model::conversation::{Conversation, CustomerProfile};
use crate::gateway::model::event::{InboundEvent, Message};
use crate::gateway::model::history::StoredMessage;
use crate::gateway::model::outbound::OutboundMessage;
use crate::gateway::model::queue::{InboundState, NewDeskEvent, NewSend, OutboxStats, QueuedEvent, QueuedSend, Recorded, Serialized};
use crate::gateway::model::receipt::Receipt;
use crate::gateway::model::upload::Upload;

/// Most jobs one transaction takes, so that a flood still commits (and answers) steadily.
const MAX_BATCH: usize = 512;

/// How often the write-ahead log is copied into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a job waits for a lock another process holds (e.g. `sqlite3` run by a person).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The migrations, oldest first. The first is version 2: the schema from before the migrations,
/// when `PRAGMA user_version` held the schema's version and stores of other versions were
/// refused (see [`migrate`]).
const MIGRATIONS: &[Migration] =
    &[("V2__schema", include_str!("migrations/sqlite/V2__schema.sql")), ("V3__receipts", include_str!("migrations/sqlite/V3__receipts.sql")),
        ("V4__distribution", include_str!("migrations/sqlite/V4__distribution.sql")),
    ];

/// The version of the schema from before the migrations, the one store of that time this build
/// adopts.
const UNMIGRATED_VERSION: i64 = 2;

/// Migrates the store, refusing one from before the migrations of another version than
/// [`UNMIGRATED_VERSION`] (a new, empty file has no tables) and one a newer build migrated. The
/// version is also kept in `user_version`, where the builds from before the migrations read it:
/// they refuse a store of any version but 2.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tables: Vec<String> = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    if !tables.is_empty() && !tables.iter().any(|t| t == "refinery_schema_history") {
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found != UNMIGRATED_VERSION {
            return Err(StoreError::Schema { found, expected: UNMIGRATED_VERSION });
        }
    }
    // refinery's transactions take the write lock as they begin (in WAL mode EXCLUSIVE is
    // IMMEDIATE): nothing else, such as a person's sqlite3, writes while the schema changes.
    conn.set_transaction_behavior(TransactionBehavior::Exclusive);
    let migrated = migrations::run(conn, MIGRATIONS);
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    conn.pragma_update(None, "user_version", migrated?)?;
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Arc::new(e))
    }
}

/// What a job hands back once its transaction has ended: it gets the commit's outcome.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A unit of work for the writer thread.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// The handle to the SQLite store; cheap to clone.
#[derive(Clone)]
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
    /// A second connection for queries that change nothing: in WAL mode it reads the last
    /// commit without waiting for the writer, so scans of the outbox never hold up intake.
    reader: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path, durability: Durability, observe: CommitObserver) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets a commit be one sequential append; FULL makes that append durable (fsync)
        // before the commit returns, which is what "answered 2xx means recorded" rests on.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Process => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each job's savepoint journal stays in memory instead of a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints run on their own thread (below), not inside the commits that answer
        // webhooks.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&mut conn)?;
        let checkpointer = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT)?;
        let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let writer_done = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&writer_done);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer(conn, queue, observe);
                done.store(true, Ordering::Relaxed);
            })
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoints(checkpointer, writer_done))
            .map_err(|e| StoreError::Thread(Arc::new(e)))?;
        Ok(Self { jobs, reader: Arc::new(Mutex::new(reader)), path: Arc::new(path.to_owned()) })
    }

    /// Runs a query that changes nothing on the reading connection; it sees the last commit.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            // A panic in another read cannot leave the connection in a bad state: reads do not
            // change it, so a poisoned lock is still usable.
            let conn = reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut SqliteTx { c: &conn })
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in the next transaction and returns its result once that transaction committed.
    /// An error from `f` undoes only what `f` did.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = reply.send(committed.and(result));
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&mut dyn Tx) -> Result<R, StoreError>) -> Result<R, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(&mut SqliteTx { c: conn }) {
        Ok(r) => {
            conn.execute_batch("RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// Copies the write-ahead log into the database now and then. PASSIVE never waits for the
/// writer or readers, so it cannot hold up a commit; it ends when the writer has stopped.
fn checkpoints(conn: Connection, writer_done: Arc<AtomicBool>) {
    loop {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if writer_done.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "store checkpoint failed; the next one retries");
        }
    }
}

/// The writer thread: takes every job waiting, runs them in one transaction, commits, and only
/// then completes them.
fn writer(conn: Connection, queue: mpsc::Receiver<Job>, observe: CommitObserver) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = StoreError::from(e);
            tracing::error!(error = %e, "store: cannot begin a transaction");
            batch.into_iter().for_each(|job| job(&conn)(Err(e.clone())));
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "store: commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        observe(size, started.elapsed());
        completions.into_iter().for_each(|c| c(committed.clone()));
    }
}

/// A job's view of the connection: the operations of [`Tx`] as SQL.
struct SqliteTx<'c> {
    c: &'c Connection,
}

impl SqliteTx<'_> {
    /// The JSON document in the first column of the one row `sql` finds, if any.
    fn document<T: serde::de::DeserializeOwned>(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<T>, StoreError> {
        let json: Option<String> = self.c.prepare_cached(sql)?.query_row(params, |r| r.get(0)).optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }
}

/// The SQL form of [`QueuedEvent::endpoint`].
macro_rules! endpoint {
    () => {
        "(o.target || ':' || o.workstream)"
    };
}
/// The columns of a [`QueuedEvent`], in the order [`queued_event`] reads them. Macros rather than
/// constants so that the fixed queries are literals, not strings formatted on every call.
macro_rules! event_columns {
    () => {
        "o.seq, o.event_id, o.workstream, o.target, o.event_type, o.body, o.attempts"
    };
}
/// The columns of a [`QueuedSend`], in the order [`queued_send`] reads them.
macro_rules! send_columns {
    () => {
        "s.seq, s.conversation_id, s.message_id, s.recipient, s.sender, s.contents, s.retry_key, s.reply_token, s.reply_until_ms, s.created_ms, s.attempts"
    };
}

fn queued_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedEvent> {
    Ok(QueuedEvent { seq: r.get(0)?, event_id: r.get(1)?, workstream: r.get(2)?, target: r.get(3)?, event_type: r.get(4)?, body: r.get(5)?, attempts: r.get(6)? })
}

/// A sends row before its JSON is read.
type SendRow = ((i64, String, i64, String, Option<String>), (String, String, Option<String>, Option<i64>), (i64, u32));

fn send_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SendRow> {
    Ok((
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
        (r.get(9)?, r.get(10)?),
    ))
}

fn queued_send(row: SendRow) -> Result<QueuedSend, StoreError> {
    let ((seq, conversation_id, message_id, recipient, sender), (contents, retry_key, reply_token, reply_until_ms), (created_ms, attempts)) = row;
    Ok(QueuedSend {
        seq,
        conversation_id,
        message_id: message_id.to_string(),
        recipient,
        sender,
        contents: serde_json::from_str(&contents)?,
        retry_key: Uuid::parse_str(&retry_key).unwrap_or_else(|_| Uuid::new_v4()),
        reply_token,
        reply_until_ms: reply_until_ms.unwrap_or(0),
        created_ms,
        attempts,
    })
}

impl Tx for SqliteTx<'_> {
    fn record_events(&mut self, events: &[Serialized], received_ms: i64) -> Result<Recorded, StoreError> {
        let mut stmt = self.c.prepare_cached("INSERT OR IGNORE INTO inbound (event_id, received_ms, event) VALUES (?1, ?2, ?3)")?;
        let mut recorded = Recorded::default();
        for event in events {
            if stmt.execute(params![event.id, received_ms, event.json])? == 1 {
                recorded.new += 1;
            } else {
                recorded.duplicate += 1;
            }
        }
        Ok(recorded)
    }

    fn pending_events(&mut self, limit: usize) -> Result<Vec<(i64, InboundEvent)>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT seq, event FROM inbound WHERE state = 0 ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        let mut events = Vec::with_capacity(rows.len());
        for (seq, json) in rows {
            match serde_json::from_str(&json) {
                Ok(event) => events.push((seq, event)),
                Err(e) => {
                    tracing::error!(seq, error = %e, "a recorded event cannot be read; it is kept and skipped");
                    self.mark_event(seq, InboundState::Unreadable)?;
                }
            }
        }
        Ok(events)
    }

    fn mark_event(&mut self, seq: i64, state: InboundState) -> Result<(), StoreError> {
        self.c.prepare_cached("UPDATE inbound SET state = ?2 WHERE seq = ?1")?.execute(params![seq, state as i64])?;
        Ok(())
    }

    fn release_held_events(&mut self) -> Result<usize, StoreError> {
        Ok(self.c.execute("UPDATE inbound SET state = 0 WHERE state = 2", [])?)
    }

    fn forget_events(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.c.execute("DELETE FROM inbound WHERE state = 1 AND received_ms < ?1", [before_ms])?)
    }

    fn stale_profiles(&mut self, customer_ids: &[String], since_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT 1 FROM profiles WHERE customer_id = ?1 AND fetched_ms >= ?2")?;
        let mut stale = Vec::new();
        for id in customer_ids {
            if stmt.query_row(params![id, since_ms], |_| Ok(())).optional()?.is_none() {
                stale.push(id.clone());
            }
        }
        Ok(stale)
    }

    fn save_profile(&mut self, profile: &CustomerProfile, fetched_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT OR REPLACE INTO profiles (customer_id, profile, fetched_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![profile.id, serde_json::to_string(profile)?, fetched_ms])?;
        Ok(())
    }

    fn profile(&mut self, customer_id: &str) -> Result<Option<CustomerProfile>, StoreError> {
        self.document("SELECT profile FROM profiles WHERE customer_id = ?1", [customer_id])
    }

    fn open_conversation(&mut self, workstream: &str, customer_id: &str) -> Result<Option<Conversation>, StoreError> {
        self.document("SELECT data FROM conversations WHERE workstream = ?1 AND customer_id = ?2 AND state != 'Closed'", params![workstream, customer_id])
    }

    fn conversation(&mut self, id: &str) -> Result<Option<Conversation>, StoreError> {
        self.document("SELECT data FROM conversations WHERE id = ?1", [id])
    }

    fn customer_known(&mut self, workstream: &str, customer_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM conversations WHERE workstream = ?1 AND customer_id = ?2)")?
            .query_row(params![workstream, customer_id], |r| r.get(0))?)
    }

    fn insert_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError> {
        self.c
            .prepare_cached(
                "INSERT INTO conversations (id, workstream, customer_id, state, queue, data, created_ms, last_customer_ms, last_activity_ms, closed_ms, agent_id, held_until_ms, waiting_rank)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                conv.id,
                conv.workstream,
                conv.customer.id,
                conv.state.as_str(),
                conv.routing.queue,
                serde_json::to_string(conv)?,
                conv.created_ms,
                conv.last_customer_ms,
                conv.last_activity_ms,
                conv.closed_ms,
                conv.agent.as_ref().map(|a| &a.id),
                conv.held_until_ms,
                conv.waiting_rank()
            ])?;
        Ok(())
    }

    fn update_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError> {
        self.c
            .prepare_cached(
                "UPDATE conversations SET state = ?2, queue = ?3, data = ?4, last_customer_ms = ?5, last_activity_ms = ?6, closed_ms = ?7, agent_id = ?8, held_until_ms = ?9,
                 waiting_rank = ?10 WHERE id = ?1",
            )?
            .execute(params![
                conv.id,
                conv.state.as_str(),
                conv.routing.queue,
                serde_json::to_string(conv)?,
                conv.last_customer_ms,
                conv.last_activity_ms,
                conv.closed_ms,
                conv.agent.as_ref().map(|a| &a.id),
                conv.held_until_ms,
                conv.waiting_rank()
            ])?;
        Ok(())
    }

    fn list_conversations(&mut self, f: &ConversationFilter<'_>) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self.c.prepare_cached(
            "SELECT data FROM conversations WHERE workstream = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR queue = ?3) AND (?4 IS NULL OR agent_id = ?4)
             ORDER BY created_ms, id LIMIT ?5",
        )?;
        let rows = stmt.query_map(params![f.workstream, f.state, f.queue, f.agent_id, f.limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn queued_conversations(&mut self, workstream: &str) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT data FROM conversations WHERE workstream = ?1 AND waiting_rank IS NOT NULL")?;
        let rows = stmt.query_map([workstream], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn holding(&mut self, now_ms: i64) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT data FROM conversations WHERE agent_id IS NOT NULL AND held_until_ms > ?1")?;
        let rows = stmt.query_map([now_ms], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn previous_agent(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
        let previous: Option<Conversation> =
            self.document("SELECT data FROM conversations WHERE workstream = ?1 AND customer_id = ?2 ORDER BY created_ms DESC LIMIT 1", [workstream, customer_id])?;
        Ok(previous.and_then(|c| c.last_agent))
    }

    fn save_agent(&mut self, agent: &Agent) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT INTO agents (id, agent, reported_ms) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, reported_ms = excluded.reported_ms")?
            .execute(params![agent.id, serde_json::to_string(agent)?, agent.reported_ms])?;
        Ok(())
    }

    fn agent(&mut self, id: &str) -> Result<Option<Agent>, StoreError> {
        self.document("SELECT agent FROM agents WHERE id = ?1", [id])
    }

    fn agents(&mut self) -> Result<Vec<Agent>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT agent FROM agents ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn quiet_conversations(&mut self, workstream: &str, before_ms: i64, limit: usize) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self.c.prepare_cached(
            "SELECT data FROM conversations WHERE state != 'Closed' AND last_activity_ms < ?2 AND workstream = ?1 ORDER BY last_activity_ms LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![workstream, before_ms, limit as i64], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn waiting_in(&mut self, workstream: &str, queue: &str) -> Result<i64, StoreError> {
        Ok(self
            .c
            .prepare_cached("SELECT count(*) FROM conversations WHERE workstream = ?1 AND queue = ?2 AND state = 'Open'")?
            .query_row(params![workstream, queue], |r| r.get(0))?)
    }

    fn position(&mut self, conv: &Conversation) -> Result<Option<i64>, StoreError> {
        let (Some(rank), Some(queue)) = (conv.waiting_rank(), &conv.routing.queue) else { return Ok(None) };
        Ok(Some(
            self.c
                .prepare_cached(
                    "SELECT count(*) FROM conversations WHERE workstream = ?1 AND queue = ?2 AND waiting_rank IS NOT NULL
                     AND (waiting_rank, created_ms, id) <= (?3, ?4, ?5)",
                )?
                .query_row(params![conv.workstream, queue, rank, conv.created_ms, conv.id], |r| r.get(0))?,
        ))
    }

    fn queue_counts(&mut self, workstream: &str) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut stmt = self
            .c
            .prepare_cached("SELECT queue, count(*), min(created_ms) FROM conversations WHERE workstream = ?1 AND waiting_rank IS NOT NULL GROUP BY queue")?;
        let rows = stmt.query_map([workstream], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_wait(&mut self, workstream: &str, queue: &str, assigned_ms: i64, wait_ms: i64, keep_since_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("DELETE FROM queue_waits WHERE workstream = ?1 AND queue = ?2 AND assigned_ms < ?3")?
            .execute(params![workstream, queue, keep_since_ms])?;
        self.c
            .prepare_cached("INSERT INTO queue_waits (workstream, queue, assigned_ms, wait_ms) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![workstream, queue, assigned_ms, wait_ms])?;
        Ok(())
    }

    fn mean_wait(&mut self, workstream: &str, queue: &str, since_ms: i64, latest: usize) -> Result<Option<i64>, StoreError> {
        let mean: Option<f64> = self
            .c
            .prepare_cached(
                "SELECT avg(wait_ms) FROM (SELECT wait_ms FROM queue_waits WHERE workstream = ?1 AND queue = ?2 AND assigned_ms >= ?3
                 ORDER BY assigned_ms DESC LIMIT ?4)",
            )?
            .query_row(params![workstream, queue, since_ms, latest as i64], |r| r.get(0))?;
        Ok(mean.map(|m| m.round() as i64))
    }

    fn offer_reply_token(&mut self, conversation_id: &str, token: &str, until_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("UPDATE conversations SET reply_token = ?2, reply_until_ms = ?3 WHERE id = ?1 AND coalesce(reply_until_ms, 0) < ?3")?
            .execute(params![conversation_id, token, until_ms])?;
        Ok(())
    }

    fn take_reply_token(&mut self, conversation_id: &str, now_ms: i64) -> Result<Option<(String, i64)>, StoreError> {
        let taken = self
            .c
            .prepare_cached("SELECT reply_token, reply_until_ms FROM conversations WHERE id = ?1 AND reply_token IS NOT NULL AND reply_until_ms > ?2")?
            .query_row(params![conversation_id, now_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .optional()?;
        if taken.is_some() {
            self.c.prepare_cached("UPDATE conversations SET reply_token = NULL, reply_until_ms = NULL WHERE id = ?1")?.execute([conversation_id])?;
        }
        Ok(taken)
    }

    fn contact(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .c
            .prepare_cached("SELECT contact_id FROM contacts WHERE workstream = ?1 AND customer_id = ?2")?
            .query_row(params![workstream, customer_id], |r| r.get(0))
            .optional()?)
    }

    fn set_contact(&mut self, workstream: &str, customer_id: &str, contact_id: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        match contact_id {
            Some(contact) => {
                self.c
                    .prepare_cached("INSERT OR REPLACE INTO contacts (workstream, customer_id, contact_id, updated_ms) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![workstream, customer_id, contact, now_ms])?;
            }
            None => {
                self.c.prepare_cached("DELETE FROM contacts WHERE workstream = ?1 AND customer_id = ?2")?.execute(params![workstream, customer_id])?;
            }
        }
        Ok(())
    }

    fn record_inbound(&mut self, conversation_id: &str, message: &Message, at_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT INTO messages (conversation_id, direction, provider_id, body, created_ms) VALUES (?1, 'in', ?2, ?3, ?4)")?
            .execute(params![conversation_id, message.id, serde_json::to_string(message)?, at_ms])?;
        Ok(())
    }

    fn latest_inbound(&mut self, conversation_id: &str) -> Result<Option<Message>, StoreError> {
        self.document("SELECT body FROM messages WHERE conversation_id = ?1 AND direction = 'in' ORDER BY id DESC LIMIT 1", [conversation_id])
    }

    fn inbound(&mut self, conversation_id: &str, message_id: &str) -> Result<Option<Message>, StoreError> {
        self.document("SELECT body FROM messages WHERE conversation_id = ?1 AND id = ?2 AND direction = 'in'", params![conversation_id, message_id])
    }

    fn messages(&mut self, conversation_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let mut stmt = self.c.prepare_cached("SELECT id, direction, body, created_ms FROM messages WHERE conversation_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([conversation_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))?;
        let mut messages = Vec::new();
        for row in rows {
            let (id, direction, body, created_ms) = row?;
            messages.push(if direction == "in" {
                StoredMessage::In { id: id.to_string(), created_ms, message: serde_json::from_str(&body)? }
            } else {
                StoredMessage::Out(serde_json::from_str(&body)?)
            });
        }
        Ok(messages)
    }

    fn add_outbound(&mut self, conversation_id: &str, message: &mut OutboundMessage, request_hash: Option<&str>, at_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT INTO messages (conversation_id, direction, client_message_id, request_hash, body, created_ms) VALUES (?1, 'out', ?2, ?3, '{}', ?4)")?
            .execute(params![conversation_id, message.client_message_id, request_hash, at_ms])?;
        message.id = self.c.last_insert_rowid().to_string();
        self.save_outbound(message)
    }

    fn save_outbound(&mut self, message: &OutboundMessage) -> Result<(), StoreError> {
        self.c
            .prepare_cached("UPDATE messages SET body = ?2, provider_id = ?3 WHERE id = ?1")?
            .execute(params![message.id, serde_json::to_string(message)?, message.provider_message_ids.first()])?;
        Ok(())
    }

    fn outbound_by_provider_id(&mut self, provider_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let found: Option<(String, i64)> = self
            .c
            .prepare_cached("SELECT conversation_id, id FROM messages WHERE provider_id = ?1 AND direction = 'out'")?
            .query_row([provider_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(found.map(|(conv, id)| (conv, id.to_string())))
    }

    fn keep_receipt(&mut self, receipt: &Receipt, received_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT OR IGNORE INTO receipts (provider_id, status, receipt, received_ms) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![receipt.provider_message_id, receipt.reported.as_str(), serde_json::to_string(receipt)?, received_ms])?;
        Ok(())
    }

    fn take_receipts(&mut self, provider_id: &str) -> Result<Vec<Receipt>, StoreError> {
        let kept: Vec<String> =
            self.c.prepare_cached("DELETE FROM receipts WHERE provider_id = ?1 RETURNING receipt")?.query_map([provider_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(kept.iter().map(|r| serde_json::from_str(r)).collect::<Result<_, _>>()?)
    }

    fn forget_receipts(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.c.prepare_cached("DELETE FROM receipts WHERE received_ms < ?1")?.execute([before_ms])?)
    }

    fn outbound(&mut self, id: &str) -> Result<Option<OutboundMessage>, StoreError> {
        self.document("SELECT body FROM messages WHERE id = ?1 AND direction = 'out'", [id])
    }

    fn outbound_by_client_id(&mut self, conversation_id: &str, client_message_id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let found: Option<(i64, Option<String>)> = self
            .c
            .prepare_cached("SELECT id, request_hash FROM messages WHERE conversation_id = ?1 AND client_message_id = ?2")?
            .query_row(params![conversation_id, client_message_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(found.map(|(id, hash)| (id.to_string(), hash)))
    }

    fn next_sequence(&mut self, conversation_id: &str) -> Result<i64, StoreError> {
        Ok(self
            .c
            .prepare_cached("UPDATE conversations SET next_sequence = next_sequence + 1 WHERE id = ?1 RETURNING next_sequence - 1")?
            .query_row([conversation_id], |r| r.get(0))?)
    }

    fn restart_sequence(&mut self, conversation_id: &str) -> Result<(), StoreError> {
        self.c.prepare_cached("UPDATE conversations SET next_sequence = 1 WHERE id = ?1")?.execute([conversation_id])?;
        Ok(())
    }

    fn queue_event(&mut self, event: NewDeskEvent<'_>) -> Result<(), StoreError> {
        self.c
            .prepare_cached(
                "INSERT INTO outbox (event_id, workstream, conversation_id, event_type, target, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![event.id, event.workstream, event.conversation_id, event.event_type, event.target, event.body, event.created_ms])?;
        Ok(())
    }

    fn due_events(&mut self, now_ms: i64, excluded: &[String], limit: usize) -> Result<Vec<QueuedEvent>, StoreError> {
        let placeholders = vec!["?"; excluded.len()].join(", ");
        let sql = format!(
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM (SELECT min(seq) AS head FROM outbox GROUP BY conversation_id) h JOIN outbox o ON o.seq = h.head
                 WHERE o.next_attempt_ms <= ? AND ",
                endpoint!(),
                " NOT IN ({placeholders}) ORDER BY o.seq LIMIT {limit}"
            ),
            placeholders = placeholders,
            limit = limit
        );
        let mut stmt = self.c.prepare_cached(&sql)?;
        let params = std::iter::once(&now_ms as &dyn rusqlite::ToSql).chain(excluded.iter().map(|w| w as &dyn rusqlite::ToSql));
        let rows = stmt.query_map(rusqlite::params_from_iter(params), queued_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn oldest_event(&mut self, endpoint: &str) -> Result<Option<QueuedEvent>, StoreError> {
        let sql = concat!("SELECT ", event_columns!(), " FROM outbox o WHERE ", endpoint!(), " = ?1 ORDER BY o.seq LIMIT 1");
        Ok(self.c.prepare_cached(sql)?.query_row([endpoint], queued_event).optional()?)
    }

    fn next_event_due(&mut self, resting: &[String]) -> Result<Option<i64>, StoreError> {
        let placeholders = vec!["?"; resting.len()].join(", ");
        let sql = format!(concat!("SELECT min(o.next_attempt_ms) FROM outbox o WHERE ", endpoint!(), " NOT IN ({placeholders})"), placeholders = placeholders);
        Ok(self.c.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(resting), |r| r.get(0))?)
    }

    fn event_delivered(&mut self, seq: i64) -> Result<(), StoreError> {
        self.c.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?.execute([seq])?;
        Ok(())
    }

    fn event_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.c
            .prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1")?
            .execute(params![seq, next_attempt_ms, error])?;
        Ok(())
    }

    fn outbox_stats(&mut self) -> Result<OutboxStats, StoreError> {
        Ok(self.c.prepare_cached("SELECT count(*), min(created_ms) FROM outbox")?.query_row([], |r| Ok(OutboxStats { depth: r.get(0)?, oldest_ms: r.get(1)? }))?)
    }

    fn queued_events(&mut self) -> Result<Vec<QueuedEvent>, StoreError> {
        let mut stmt = self.c.prepare_cached(concat!("SELECT ", event_columns!(), " FROM outbox o ORDER BY o.seq"))?;
        let rows = stmt.query_map([], queued_event)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn gone_endpoints(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.c.prepare_cached("SELECT endpoint, settings FROM gone_endpoints")?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    fn set_gone(&mut self, endpoint: &str, settings: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        match settings {
            Some(settings) => self
                .c
                .prepare_cached("INSERT INTO gone_endpoints (endpoint, settings, gone_ms) VALUES (?1, ?2, ?3) ON CONFLICT (endpoint) DO UPDATE SET settings = excluded.settings, gone_ms = excluded.gone_ms")?
                .execute(params![endpoint, settings, now_ms])?,
            None => self.c.prepare_cached("DELETE FROM gone_endpoints WHERE endpoint = ?1")?.execute([endpoint])?,
        };
        Ok(())
    }

    fn queue_send(&mut self, send: NewSend<'_>) -> Result<(), StoreError> {
        self.c
            .prepare_cached(
                "INSERT INTO sends (conversation_id, message_id, workstream, recipient, sender, contents, retry_key, reply_token, reply_until_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                send.conversation_id,
                send.message_id,
                send.workstream,
                send.recipient,
                send.sender,
                serde_json::to_string(send.contents)?,
                send.retry_key.to_string(),
                send.reply.map(|r| r.0),
                send.reply.map(|r| r.1),
                send.created_ms
            ])?;
        Ok(())
    }

    fn due_sends(&mut self, now_ms: i64, limit: usize) -> Result<Vec<QueuedSend>, StoreError> {
        let mut stmt = self.c.prepare_cached(concat!(
            "SELECT ",
            send_columns!(),
            " FROM (SELECT min(seq) AS head FROM sends GROUP BY conversation_id) h JOIN sends s ON s.seq = h.head
             WHERE s.next_attempt_ms <= ?1 ORDER BY s.seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit as i64], send_row)?;
        rows.map(|row| queued_send(row?)).collect()
    }

    fn next_send_due(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(self.c.prepare_cached("SELECT min(next_attempt_ms) FROM sends")?.query_row([], |r| r.get(0))?)
    }

    fn send_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.c
            .prepare_cached("UPDATE sends SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3, reply_token = NULL WHERE seq = ?1")?
            .execute(params![seq, next_attempt_ms, error])?;
        Ok(())
    }

    fn send_finished(&mut self, seq: i64) -> Result<(), StoreError> {
        self.c.prepare_cached("DELETE FROM sends WHERE seq = ?1")?.execute([seq])?;
        Ok(())
    }

    fn queued_sends(&mut self) -> Result<Vec<QueuedSend>, StoreError> {
        let mut stmt = self.c.prepare_cached(concat!("SELECT ", send_columns!(), " FROM sends s ORDER BY s.seq"))?;
        let rows = stmt.query_map([], send_row)?;
        rows.map(|row| queued_send(row?)).collect()
    }

    fn store_upload(&mut self, upload: &Upload, workstream: &str, conversation_id: &str, bytes: &[u8], at_ms: i64) -> Result<(), StoreError> {
        self.c
            .prepare_cached("INSERT INTO media (id, workstream, conversation_id, file_name, content_type, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
            .execute(params![upload.id, workstream, conversation_id, upload.file_name, upload.content_type, bytes, at_ms])?;
        Ok(())
    }

    fn upload(&mut self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .c
            .prepare_cached("SELECT content_type, bytes FROM media WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .optional()?)
    }

    fn forget_uploads(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self.c.prepare_cached("DELETE FROM media WHERE created_ms < ?1")?.execute([before_ms])?)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Sqlite {
        Sqlite::open(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).unwrap()
    }

    #[tokio::test]
    async fn a_failing_job_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let link = |customer: &'static str, fail: bool| {
            store.run(move |tx| {
                tx.set_contact("ws", customer, Some("C"), 0)?;
                if fail { Err(StoreError::Closed) } else { Ok(()) }
            })
        };
        let (a, b, c) = tokio::join!(link("a", false), link("b", true), link("c", false));
        assert!(a.is_ok() && b.is_err() && c.is_ok());
        let linked = store.run(|tx| Ok([tx.contact("ws", "a")?, tx.contact("ws", "b")?, tx.contact("ws", "c")?])).await.unwrap();
        assert_eq!(linked, [Some("C".to_owned()), None, Some("C".to_owned())]);
    }

    /// The schema as the builds from before the migrations created it, with `user_version` 2:
    /// the first migration is that schema as it was written (a released migration never
    /// changes), so it is the fixture.
    const UNMIGRATED_SCHEMA: &str = include_str!("migrations/sqlite/V2__schema.sql");
    /// An outgoing message as the builds before receipts stored it.
    const LANDED_MESSAGE: &str = r#"{"id":"1","direction":"out","author":"agent","contents":[{"type":"text","text":"hi"}],"status":"delivered","providerMessageIds":["SM1"],"createdAt":"2026-12-01T00:00:00Z"}"#;

    #[tokio::test]
    async fn a_store_from_before_the_migrations_is_migrated_in_place_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("store.db")).unwrap();
            conn.execute_batch(UNMIGRATED_SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute("INSERT INTO contacts (workstream, customer_id, contact_id, updated_ms) VALUES ('ws', 'x', 'C', 1)", []).unwrap();
            conn.execute("INSERT INTO messages (conversation_id, direction, body, created_ms) VALUES ('c1', 'out', ?1, 1)", [LANDED_MESSAGE]).unwrap();
        }
        let store = open(&dir);
        assert_eq!(store.read(|tx| tx.contact("ws", "x")).await.unwrap().as_deref(), Some("C"));
        // A message the provider accepted, stored as "delivered" then, is "accepted" now and is
        // found by its provider ID, so that its receipts apply.
        let found = store.read(|tx| Ok(tx.outbound_by_provider_id("SM1")?.map(|(_, id)| tx.outbound(&id)))).await.unwrap();
        let message = found.expect("found by the provider's ID").unwrap().expect("the message");
        assert_eq!(message.status, crate::gateway::model::outbound::Status::Accepted);
        let conn = Connection::open(dir.path().join("store.db")).unwrap();
        let applied: i64 = conn.query_row("SELECT max(version) FROM refinery_schema_history", [], |r| r.get(0)).unwrap();
        let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!((applied, user_version), (4, 4));
    }

    #[test]
    fn a_store_from_before_the_migrations_of_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE inbound (seq INTEGER PRIMARY KEY)").unwrap();
        let err = Sqlite::open(&path, Durability::Full, Box::new(|_, _| {})).unwrap_err();
        assert!(matches!(err, StoreError::Schema { found: 0, expected: UNMIGRATED_VERSION }), "{err}");
        drop(open(&dir));
        assert!(Sqlite::open(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).is_ok(), "its own schema opens again");
    }

    #[test]
    fn a_store_a_newer_build_migrated_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir));
        Connection::open(dir.path().join("store.db"))
            .unwrap()
            .execute("INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (5, 'later', '2030-01-01T00:00:00Z', '1')", [])
            .unwrap();
        let err = Sqlite::open(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).unwrap_err();
        assert!(matches!(err, StoreError::Newer { found: 5, latest: 4 }), "{err}");
        assert_eq!(err.to_string(), "store: schema version 5 is newer than this build's 4; run a build that knows it");
    }

    #[tokio::test]
    async fn committed_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store.run(|tx| tx.set_contact("ws", "x", Some("C"), 1)).await.unwrap();
        }
        let store = open(&dir);
        assert_eq!(store.read(|tx| tx.contact("ws", "x")).await.unwrap().as_deref(), Some("C"));
        let mode: String = Connection::open(dir.path().join("store.db")).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
