//! The embedded store: SQLite in WAL mode on the pod's volume, behind one writer thread.
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

use rusqlite::{Connection, OpenFlags};
use thiserror::Error;
use tokio::sync::oneshot;

/// Most jobs one transaction takes, so that a flood still commits (and answers) steadily.
const MAX_BATCH: usize = 512;

/// How often the write-ahead log is copied into the database.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a job waits for a lock another process holds (e.g. `sqlite3` run by a person).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema. Each statement is idempotent, so opening an existing store applies nothing twice.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbound (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    received_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbound_by_state ON inbound (state, seq);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    workstream TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    queue TEXT,
    data TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_customer_ms INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    next_sequence INTEGER NOT NULL DEFAULT 1,
    reply_token TEXT,
    reply_until_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_open ON conversations (workstream, customer_id) WHERE state != 'Closed';
CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations (workstream, customer_id, created_ms);
CREATE INDEX IF NOT EXISTS conversations_by_queue ON conversations (workstream, queue, state);
CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (state, last_activity_ms);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    provider_id TEXT,
    client_message_id TEXT,
    request_hash TEXT,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (conversation_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_conversation ON outbox (conversation_id, seq);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (next_attempt_ms);
CREATE TABLE IF NOT EXISTS sends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    workstream TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT,
    contents TEXT NOT NULL,
    retry_key TEXT NOT NULL,
    reply_token TEXT,
    reply_until_ms INTEGER,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sends_due ON sends (next_attempt_ms);
CREATE INDEX IF NOT EXISTS sends_by_conversation ON sends (conversation_id, seq);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    fetched_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    workstream TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (workstream, customer_id)
);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_by_age ON media (created_ms);
";

/// The version of [`SCHEMA`], kept in SQLite's `user_version`. A store written by a build with
/// another schema is refused rather than misread; there are no migrations yet (none was needed
/// before the first release), so such a store is moved aside and the gateway starts empty.
const SCHEMA_VERSION: i64 = 2;

/// Refuses a store made by a build with another schema. A new, empty file has no tables.
fn check_schema(conn: &Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))?;
    if tables > 0 && found != SCHEMA_VERSION {
        return Err(StoreError::Schema { found, expected: SCHEMA_VERSION });
    }
    Ok(())
}

/// Why the store failed.
#[derive(Clone, Debug, Error)]
pub enum StoreError {
    /// The file holds a store of another schema version.
    #[error("store: schema version {found}, this build reads version {expected}; move the file aside to start with an empty store")]
    Schema {
        /// The version in the file (0: written before versions were recorded).
        found: i64,
        /// The version this build reads.
        expected: i64,
    },
    /// SQLite refused or failed.
    #[error("store: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// A stored document could not be read or written as JSON.
    #[error("store: stored JSON: {0}")]
    Json(Arc<serde_json::Error>),
    /// The writer thread could not be started.
    #[error("store: cannot start the writer thread: {0}")]
    Thread(Arc<std::io::Error>),
    /// The writer thread has stopped (the process is shutting down, or the disk failed).
    #[error("store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Json(Arc::new(e))
    }
}

/// What a job hands back once its transaction has ended: it gets the commit's outcome.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A unit of work for the writer thread.
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// When a commit counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// On disk: each commit waits for fsync, so an answered webhook survives a power cut.
    #[default]
    Full,
    /// In the operating system: an answered webhook survives the process being killed, not the
    /// machine losing power (SQLite `synchronous=NORMAL` in WAL mode). Faster on slow disks.
    Process,
}

/// A commit's size and duration, reported to whoever measures them.
pub type CommitObserver = Box<dyn Fn(usize, Duration) + Send>;

/// The handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    /// A second connection for queries that change nothing: in WAL mode it reads the last
    /// commit without waiting for the writer, so scans of the outbox never hold up intake.
    reader: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path, durability: Durability, observe: CommitObserver) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
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
        check_schema(&conn)?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            // A panic in another read cannot leave the connection in a bad state: reads do not
            // change it, so a poisoned lock is still usable.
            let conn = reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in the next transaction and returns its result once that transaction committed.
    /// An error from `f` undoes only what `f` did.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
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

fn in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).unwrap()
    }

    #[tokio::test]
    async fn a_failing_job_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let insert = |id: &'static str, fail: bool| {
            store.run(move |c| {
                c.execute("INSERT INTO inbound (event_id, received_ms, event) VALUES (?1, 0, '{}')", [id])?;
                if fail { Err(StoreError::Closed) } else { Ok(()) }
            })
        };
        let (a, b, c) = tokio::join!(insert("a", false), insert("b", true), insert("c", false));
        assert!(a.is_ok() && b.is_err() && c.is_ok());
        let ids: Vec<String> = store
            .run(|c| {
                let mut s = c.prepare("SELECT event_id FROM inbound ORDER BY event_id")?;
                let rows = s.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(ids, vec!["a", "c"]);
    }

    #[test]
    fn a_store_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE inbound (seq INTEGER PRIMARY KEY)").unwrap();
        let err = Store::open(&path, Durability::Full, Box::new(|_, _| {})).unwrap_err();
        assert!(matches!(err, StoreError::Schema { found: 0, expected: SCHEMA_VERSION }), "{err}");
        drop(open(&dir));
        assert!(Store::open(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).is_ok(), "its own schema opens again");
    }

    #[tokio::test]
    async fn committed_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store.run(|c| Ok(c.execute("INSERT INTO inbound (event_id, received_ms, event) VALUES ('x', 1, '{}')", [])?)).await.unwrap();
        }
        let store = open(&dir);
        let n: i64 = store.run(|c| Ok(c.query_row("SELECT count(*) FROM inbound", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(n, 1);
        let mode: String = store.run(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(mode, "wal");
    }
}
