//! The PostgreSQL backend: one database that every replica of an account's gateway shares.
//!
//! Jobs run on the store's own threads, each with one connection: [`WRITERS`] threads take the
//! waiting jobs together into one transaction (group commit, one savepoint per job, as in the
//! SQLite backend), so that a burst of webhooks costs one commit per batch; one more writer takes
//! only the webhooks' recording ([`Postgres::record`]), so that intake never waits behind the
//! leader's processing; [`READERS`] threads run the jobs that change nothing outside any
//! transaction. Commits are synchronous, so a webhook answered 200 is on the server's disk.
//!
//! Across replicas, the writing jobs lock what they read to change: a conversation, an outgoing
//! message (`FOR UPDATE`), so two replicas acting on one conversation take turns. A job that a
//! deadlock picks as its victim fails alone (its savepoint is rolled back), never the batch, with
//! [`StoreError::Contended`]: the agent API tries such an action again.
//!
//! The loops that take work from the queues (processing, delivery, sending, the inactivity
//! sweep, pruning) run on one replica at a time: the one whose lead connection holds the
//! database advisory lock [`LEAD_KEY`] ([`Postgres::lead`]). The lock is the connection's, so a
//! replica that dies gives it up as soon as the server notices: at once when the process is
//! killed, within [`KEEPALIVE`] when its node vanishes. The other replicas try for it every
//! [`HEARTBEAT`]. The lead connection also `LISTEN`s: a replica that records events or queues
//! work `NOTIFY`s in the same transaction, so the leader acts without polling.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use tokio::sync::{oneshot, watch};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

pub use target::{PostgresParts, PostgresTarget, SslMode, TargetError, TlsSettings};

use super::migrations::{self, Migration};
use super::{CommitObserver, ConversationFilter, StoreError, Tx, Wake};
use crate::gateway::model::agent::Agent;
use crate::gateway::model::conversation::{Conversation, CustomerProfile};
use crate::gateway::model::event::{InboundEvent, Message};
use crate::gateway::model::history::StoredMessage;
use crate::gateway::model::outbound::OutboundMessage;
use crate::gateway::model::queue::{InboundState, NewDeskEvent, NewSend, OutboxStats, QueuedEvent, QueuedSend, Recorded, Serialized};
use crate::gateway::model::receipt::Receipt;
use crate::gateway::model::upload::Upload;

mod target;
mod tls;

/// Connections that run writing jobs: one, so that the jobs of one replica never wait on each
/// other's locks (two batched transactions of independent jobs could deadlock); replicas can,
/// and the job a deadlock picks fails alone.
const WRITERS: usize = 1;
/// Connections that run jobs that change nothing.
const READERS: usize = 2;
/// Most jobs one transaction takes.
const MAX_BATCH: usize = 256;
/// After a failed connection attempt, jobs fail at once for this long instead of each trying
/// to connect again; then the next job tries.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the lead connection is checked, and how often a replica that does not lead tries
/// for the lead.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the server takes at most to notice that a replica's node is gone (TCP keepalive:
/// idle 10 s, then 3 probes 5 s apart), and so to release its lead.
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// The advisory lock held by the replica that runs the queue loops.
const LEAD_KEY: i64 = 0x5357_4254_4c45_4144; // "SWBTLEAD"
/// The advisory lock under which the schema is migrated, so that replicas starting together do
/// not race.
const SCHEMA_KEY: i64 = 0x5357_4254_5343_484d; // "SWBTSCHM"
/// The channel the replicas wake each other on; the payload names the loop ([`Wake`]).
macro_rules! channel {
    () => {
        "switchboard"
    };
}

/// The migrations, oldest first. Version 1 is the schema from before the migrations, which
/// kept its version in `switchboard_schema` (see [`ensure_schema`]).
const MIGRATIONS: &[Migration] =
    &[("V1__schema", include_str!("migrations/postgres/V1__schema.sql")), ("V2__receipts", include_str!("migrations/postgres/V2__receipts.sql")),
        ("V3__distribution", include_str!("migrations/postgres/V3__distribution.sql")),
    ];

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let contended = e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE);
        let e = Arc::new(ClientError(e));
        if contended { StoreError::Contended(e) } else { StoreError::Database(e) }
    }
}

impl From<TargetError> for StoreError {
    fn from(e: TargetError) -> Self {
        StoreError::Target(Arc::new(e))
    }
}

/// A client error that prints its causes: the client's own message names only the step that
/// failed ("db error", "error performing TLS handshake"), its causes say why (the server's
/// message, the certificate's fault). No cause holds the password.
#[derive(Debug)]
pub struct ClientError(postgres::Error);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::write_chain(f, &self.0)
    }
}

impl std::error::Error for ClientError {}

/// What a job hands back once its transaction has ended: it gets the commit's outcome.
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A unit of work for a store thread; it is given the connection, or why there is none.
type Job = Box<dyn FnOnce(Result<&mut Conn, StoreError>) -> Completion + Send>;
/// A queue the store's threads of one kind take jobs from.
type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// How the store's threads reach the database; the configuration may hold a password and is
/// never printed.
struct Target {
    config: postgres::Config,
    /// None: the connection does not use TLS.
    tls: Option<MakeRustlsConnect>,
    /// The schema was checked by one of this process's connections.
    schema_ready: AtomicBool,
}

impl Target {
    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        // The server notices a vanished peer within KEEPALIVE instead of the system's two hours,
        // so a dead replica's lead is released. A webhook is answered once its commit is durable,
        // whatever the database's default says.
        client.batch_execute("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; SET synchronous_commit = on")?;
        if !self.schema_ready.load(Ordering::Acquire) {
            ensure_schema(&mut client)?;
            self.schema_ready.store(true, Ordering::Release);
        }
        Ok(client)
    }
}

/// Migrates the schema under [`SCHEMA_KEY`], so that replicas starting together take turns,
/// and refuses a database that a newer build migrated. The version is also kept in
/// `switchboard_schema`, where the builds from before the migrations read it: they refuse a
/// database of any version but 1.
fn ensure_schema(client: &mut Client) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_KEY])?;
    let result = migrations::run(client, MIGRATIONS).and_then(|version| {
        let mut tx = client.transaction()?;
        tx.execute("DELETE FROM switchboard_schema WHERE version <> $1", &[&version])?;
        tx.execute("INSERT INTO switchboard_schema (version) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM switchboard_schema)", &[&version])?;
        tx.commit().map_err(StoreError::from)
    });
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_KEY]);
    result?;
    unlocked?;
    Ok(())
}

/// One thread's connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// The first statement of the running job that failed. A failed statement aborts the
    /// transaction up to the job's savepoint even when the job goes on and ends well (it may
    /// have turned the error into an answer), so the job is undone and fails with it.
    failed: Option<StoreError>,
    /// The last job's savepoint is still open: the next job releases it in the same round trip
    /// as it opens its own, and COMMIT keeps it.
    savepoint_open: bool,
    /// The leader's loops to wake once the transaction commits, sent together (each once)
    /// before COMMIT.
    wakes: Vec<Wake>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Self { client, statements: HashMap::new(), failed: None, savepoint_open: false, wakes: Vec::new() }
    }

    /// Sends the wakes the transaction's jobs asked for (one NOTIFY per loop, however many jobs
    /// asked): the server delivers them when the transaction commits, and drops them with it.
    fn send_wakes(&mut self) -> Result<(), StoreError> {
        if self.wakes.is_empty() {
            return Ok(());
        }
        self.wakes.sort();
        self.wakes.dedup();
        let wakes: Vec<&str> = self.wakes.drain(..).map(Wake::as_str).collect();
        self.client.execute(concat!("SELECT pg_notify('", channel!(), "', w) FROM unnest($1::text[]) AS w"), &[&wakes])?;
        Ok(())
    }
}

/// The handle to the PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct Postgres {
    writes: mpsc::Sender<Job>,
    intake: mpsc::Sender<Job>,
    reads: mpsc::Sender<Job>,
    target: Arc<Target>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Postgres {
    /// Starts the store's threads for `target`, whose CA file is read now. It does not wait for
    /// the database: until it answers, every job fails with the reason (the gateway reports not
    /// ready and refuses webhooks with 503).
    pub fn open(target: &PostgresTarget, observe: CommitObserver) -> Result<Self, StoreError> {
        let tls = tls::connector(target)?;
        let mut config = target.config.clone();
        config.connect_timeout(CONNECT_TIMEOUT).keepalives(true).keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("switchboard-gateway");
        }
        tracing::info!(tls = ?target.mode, "the store is in PostgreSQL");
        let target = Arc::new(Target { config, tls, schema_ready: AtomicBool::new(false) });
        let observe: Arc<CommitObserver> = Arc::new(observe);
        let (writes, write_queue) = mpsc::channel::<Job>();
        let (intake, intake_queue) = mpsc::channel::<Job>();
        let (reads, read_queue) = mpsc::channel::<Job>();
        let (write_queue, read_queue): (Queue, Queue) = (Arc::new(Mutex::new(write_queue)), Arc::new(Mutex::new(read_queue)));
        for n in 0..WRITERS {
            let (target, queue, observe) = (Arc::clone(&target), Arc::clone(&write_queue), Arc::clone(&observe));
            spawn(format!("store-writer-{n}"), move || worker(&target, &queue, Some(&*observe)))?;
        }
        let (intake_target, intake_queue) = (Arc::clone(&target), Arc::new(Mutex::new(intake_queue)));
        spawn("store-intake".into(), move || worker(&intake_target, &intake_queue, Some(&*observe)))?;
        for n in 0..READERS {
            let (target, queue) = (Arc::clone(&target), Arc::clone(&read_queue));
            spawn(format!("store-reader-{n}"), move || worker(&target, &queue, None))?;
        }
        Ok(Self { writes, intake, reads, target })
    }

    /// Runs `f` in the next transaction and returns its result once that transaction committed.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        submit(&self.writes, f, true).await
    }

    /// Runs `f`, which records what arrived and touches nothing the processing changes, on the
    /// intake writer; returns once it committed.
    pub async fn record<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        submit(&self.intake, f, true).await
    }

    /// Runs `f`, which changes nothing, on a reading connection; it sees the last commit.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
    {
        submit(&self.reads, f, false).await
    }

    /// Competes for the lead; the answer is true while this replica holds it. `wake` is called
    /// with the loop another replica woke ([`Wake`]).
    pub fn lead(&self, wake: Box<dyn Fn(Wake) + Send>) -> Result<watch::Receiver<bool>, StoreError> {
        let (leading, answer) = watch::channel(false);
        let target = Arc::clone(&self.target);
        spawn("store-lead".into(), move || lead(&target, &leading, &*wake))?;
        Ok(answer)
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new().name(name).spawn(f).map(drop).map_err(|e| StoreError::Thread(Arc::new(e)))
}

async fn submit<R, F>(queue: &mpsc::Sender<Job>, f: F, write: bool) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let result = conn.and_then(|conn| if write { in_savepoint(conn, f) } else { f(&mut PgTx { c: conn, lock: false }) });
        Box::new(move |committed: Result<(), StoreError>| {
            let _ = reply.send(committed.and(result));
        })
    });
    queue.send(job).map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

fn in_savepoint<R>(conn: &mut Conn, f: impl FnOnce(&mut dyn Tx) -> Result<R, StoreError>) -> Result<R, StoreError> {
    // The previous job's savepoint is released in the same round trip, which keeps its work.
    conn.client.batch_execute(if conn.savepoint_open { "RELEASE job; SAVEPOINT job" } else { "SAVEPOINT job" })?;
    conn.savepoint_open = true;
    conn.failed = None;
    let wakes_before = conn.wakes.len();
    let result = f(&mut PgTx { c: conn, lock: true });
    let result = match conn.failed.take() {
        Some(e) => Err(e),
        None => result,
    };
    if result.is_err() {
        conn.wakes.truncate(wakes_before);
        conn.savepoint_open = false;
        conn.client.batch_execute("ROLLBACK TO job; RELEASE job")?;
    }
    result
}

/// A store thread: takes every job waiting (up to [`MAX_BATCH`]) and runs them, in one
/// transaction when `observe` is given (a writer), else each on its own. The connection is made
/// again when it was lost.
fn worker(target: &Target, queue: &Mutex<mpsc::Receiver<Job>>, observe: Option<&CommitObserver>) {
    let mut conn: Option<Conn> = None;
    let mut failed_at: Option<(Instant, StoreError)> = None;
    loop {
        let batch = {
            let queue = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Ok(first) = queue.recv() else { return };
            let mut batch = vec![first];
            let most = if observe.is_some() { MAX_BATCH } else { 1 };
            while batch.len() < most {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            match &failed_at {
                Some((at, e)) if at.elapsed() < RECONNECT_AFTER => {
                    let e = e.clone();
                    batch.into_iter().for_each(|job| job(Err(e.clone()))(Err(e.clone())));
                    continue;
                }
                _ => match target.connect() {
                    Ok(client) => {
                        if failed_at.take().is_some() {
                            tracing::info!("the database answers again");
                        }
                        conn = Some(Conn::new(client));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot connect to the database; jobs fail until it answers");
                        failed_at = Some((Instant::now(), e.clone()));
                        batch.into_iter().for_each(|job| job(Err(e.clone()))(Err(e.clone())));
                        continue;
                    }
                },
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match observe {
            Some(observe) => {
                let started = Instant::now();
                let size = batch.len();
                if let Err(e) = c.client.batch_execute("BEGIN") {
                    let e = StoreError::from(e);
                    tracing::error!(error = %e, "store: cannot begin a transaction");
                    batch.into_iter().for_each(|job| job(Err(e.clone()))(Err(e.clone())));
                    continue;
                }
                let completions: Vec<Completion> = batch.into_iter().map(|job| job(Ok(&mut *c))).collect();
                c.savepoint_open = false;
                let committed = c.send_wakes().and_then(|()| c.client.batch_execute("COMMIT").map_err(StoreError::from));
                if let Err(e) = &committed {
                    tracing::error!(error = %e, "store: commit failed");
                    let _ = c.client.batch_execute("ROLLBACK");
                }
                observe(size, started.elapsed());
                completions.into_iter().for_each(|done| done(committed.clone()));
            }
            // Outside a transaction each statement commits by itself, and so would a wake.
            None => batch.into_iter().for_each(|job| {
                let done = job(Ok(&mut *c));
                done(c.send_wakes());
            }),
        }
    }
}

/// The lead thread: holds [`LEAD_KEY`] when it can, listens for the other replicas' wake-ups, and checks its
/// connection every [`HEARTBEAT`]. A lost connection ends the lead at once (the loops stop
/// before another replica can have taken it), and the thread connects again.
fn lead(target: &Target, leading: &watch::Sender<bool>, wake: &dyn Fn(Wake)) {
    loop {
        if let Err(e) = lead_on(target, leading, wake) {
            if leading.send_replace(false) {
                tracing::warn!(error = %e, "lost the lead connection; the queue loops stop until the lead is held again");
            } else {
                tracing::debug!(error = %e, "cannot compete for the lead");
            }
        }
        if leading.is_closed() {
            return;
        }
        std::thread::sleep(HEARTBEAT);
    }
}

fn lead_on(target: &Target, leading: &watch::Sender<bool>, wake: &dyn Fn(Wake)) -> Result<(), StoreError> {
    let mut client = target.connect()?;
    client.batch_execute(concat!("LISTEN ", channel!()))?;
    loop {
        if leading.is_closed() {
            return Ok(());
        }
        if !*leading.borrow() {
            let got: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEAD_KEY])?.try_get(0)?;
            if got {
                tracing::info!("this replica leads: it runs the queue loops");
                leading.send_replace(true);
            }
        }
        let until = Instant::now() + HEARTBEAT;
        {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(HEARTBEAT);
            while let Some(note) = waiting.next()? {
                if let Some(which) = Wake::parse(note.payload()) {
                    wake(which);
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
        client.batch_execute("SELECT 1")?;
    }
}

/// A job's view of its connection: the operations of [`Tx`] as SQL.
struct PgTx<'c> {
    c: &'c mut Conn,
    /// In a writing transaction: rows read to be changed are locked until it commits.
    lock: bool,
}

impl PgTx<'_> {
    /// Runs `sql` through `call` with its prepared statement, noting a failure in the job.
    fn on<T>(&mut self, sql: &'static str, call: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error>) -> Result<T, StoreError> {
        let result = match self.c.statements.get(sql) {
            Some(s) => Ok(s.clone()),
            None => self.c.client.prepare(sql).inspect(|s| {
                self.c.statements.insert(sql, s.clone());
            }),
        }
        .and_then(|s| call(&mut self.c.client, &s))
        .map_err(StoreError::from);
        if let Err(e) = &result {
            self.c.failed.get_or_insert_with(|| e.clone());
        }
        result
    }

    fn rows(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.on(sql, |c, s| c.query(s, params))
    }

    fn row(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, StoreError> {
        self.on(sql, |c, s| c.query_opt(s, params))
    }

    fn one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, StoreError> {
        self.on(sql, |c, s| c.query_one(s, params))
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<usize, StoreError> {
        self.on(sql, |c, s| c.execute(s, params).map(|n| n as usize))
    }

    /// The JSON document in the first column of the one row `sql` finds, if any.
    fn document<T: serde::de::DeserializeOwned>(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<T>, StoreError> {
        match self.row(sql, params)? {
            Some(row) => Ok(Some(serde_json::from_str(row.try_get::<_, &str>(0)?)?)),
            None => Ok(None),
        }
    }

    /// Wakes the leader's loop `which` once this transaction commits.
    fn notify(&mut self, which: Wake) -> Result<(), StoreError> {
        self.c.wakes.push(which);
        Ok(())
    }
}

/// The gateway's message IDs are the rows' numbers; another ID names no row.
fn message_key(id: &str) -> Option<i64> {
    id.parse().ok()
}

/// The SQL form of [`QueuedEvent::endpoint`].
macro_rules! endpoint {
    () => {
        "(o.target || ':' || o.workstream)"
    };
}
/// The columns of a [`QueuedEvent`], in the order [`queued_event`] reads them.
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
/// A query as it is in a transaction that changes what it reads (`FOR UPDATE`) or not.
macro_rules! locking {
    ($self:ident, $sql:literal) => {
        if $self.lock { concat!($sql, " FOR UPDATE") } else { $sql }
    };
}

fn queued_event(r: &Row) -> Result<QueuedEvent, StoreError> {
    Ok(QueuedEvent {
        seq: r.try_get(0)?,
        event_id: r.try_get(1)?,
        workstream: r.try_get(2)?,
        target: r.try_get(3)?,
        event_type: r.try_get(4)?,
        body: r.try_get(5)?,
        attempts: r.try_get::<_, i32>(6)?.max(0) as u32,
    })
}

fn queued_send(r: &Row) -> Result<QueuedSend, StoreError> {
    Ok(QueuedSend {
        seq: r.try_get(0)?,
        conversation_id: r.try_get(1)?,
        message_id: r.try_get(2)?,
        recipient: r.try_get(3)?,
        sender: r.try_get(4)?,
        contents: serde_json::from_str(r.try_get::<_, &str>(5)?)?,
        retry_key: Uuid::parse_str(r.try_get::<_, &str>(6)?).unwrap_or_else(|_| Uuid::new_v4()),
        reply_token: r.try_get(7)?,
        reply_until_ms: r.try_get::<_, Option<i64>>(8)?.unwrap_or(0),
        created_ms: r.try_get(9)?,
        attempts: r.try_get::<_, i32>(10)?.max(0) as u32,
    })
}

impl Tx for PgTx<'_> {
    fn record_events(&mut self, events: &[Serialized], received_ms: i64) -> Result<Recorded, StoreError> {
        let mut recorded = Recorded::default();
        for event in events {
            let inserted = self.execute(
                "INSERT INTO inbound (event_id, received_ms, event) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
                &[&event.id, &received_ms, &event.json],
            )?;
            if inserted == 1 {
                recorded.new += 1;
            } else {
                recorded.duplicate += 1;
            }
        }
        if recorded.new > 0 {
            self.notify(Wake::Processor)?;
        }
        Ok(recorded)
    }

    fn pending_events(&mut self, limit: usize) -> Result<Vec<(i64, InboundEvent)>, StoreError> {
        let rows = self.rows("SELECT seq, event FROM inbound WHERE state = 0 ORDER BY seq LIMIT $1", &[&(limit as i64)])?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            match serde_json::from_str(row.try_get::<_, &str>(1)?) {
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
        self.execute("UPDATE inbound SET state = $2 WHERE seq = $1", &[&seq, &(state as i32)])?;
        Ok(())
    }

    fn release_held_events(&mut self) -> Result<usize, StoreError> {
        self.execute("UPDATE inbound SET state = 0 WHERE state = 2", &[])
    }

    fn forget_events(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        self.execute("DELETE FROM inbound WHERE state = 1 AND received_ms < $1", &[&before_ms])
    }

    fn stale_profiles(&mut self, customer_ids: &[String], since_ms: i64) -> Result<Vec<String>, StoreError> {
        let fresh: HashSet<String> = self
            .rows("SELECT customer_id FROM profiles WHERE customer_id = ANY($1) AND fetched_ms >= $2", &[&customer_ids, &since_ms])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(customer_ids.iter().filter(|id| !fresh.contains(*id)).cloned().collect())
    }

    fn save_profile(&mut self, profile: &CustomerProfile, fetched_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO profiles (customer_id, profile, fetched_ms) VALUES ($1, $2, $3)
             ON CONFLICT (customer_id) DO UPDATE SET profile = excluded.profile, fetched_ms = excluded.fetched_ms",
            &[&profile.id, &serde_json::to_string(profile)?, &fetched_ms],
        )?;
        Ok(())
    }

    fn profile(&mut self, customer_id: &str) -> Result<Option<CustomerProfile>, StoreError> {
        self.document("SELECT profile FROM profiles WHERE customer_id = $1", &[&customer_id])
    }

    fn open_conversation(&mut self, workstream: &str, customer_id: &str) -> Result<Option<Conversation>, StoreError> {
        let sql = locking!(self, "SELECT data FROM conversations WHERE workstream = $1 AND customer_id = $2 AND state <> 'Closed'");
        self.document(sql, &[&workstream, &customer_id])
    }

    fn conversation(&mut self, id: &str) -> Result<Option<Conversation>, StoreError> {
        let sql = locking!(self, "SELECT data FROM conversations WHERE id = $1");
        self.document(sql, &[&id])
    }

    fn customer_known(&mut self, workstream: &str, customer_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .one("SELECT EXISTS (SELECT 1 FROM conversations WHERE workstream = $1 AND customer_id = $2)", &[&workstream, &customer_id])?
            .try_get(0)?)
    }

    fn insert_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO conversations (id, workstream, customer_id, state, queue, data, created_ms, last_customer_ms, last_activity_ms, closed_ms, agent_id, held_until_ms, waiting_rank)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &conv.id,
                &conv.workstream,
                &conv.customer.id,
                &conv.state.as_str(),
                &conv.routing.queue,
                &serde_json::to_string(conv)?,
                &conv.created_ms,
                &conv.last_customer_ms,
                &conv.last_activity_ms,
                &conv.closed_ms,
                &conv.agent.as_ref().map(|a| &a.id),
                &conv.held_until_ms,
                &conv.waiting_rank(),
            ],
        )?;
        Ok(())
    }

    fn update_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError> {
        self.execute(
            "UPDATE conversations SET state = $2, queue = $3, data = $4, last_customer_ms = $5, last_activity_ms = $6, closed_ms = $7, agent_id = $8, held_until_ms = $9,
             waiting_rank = $10 WHERE id = $1",
            &[
                &conv.id,
                &conv.state.as_str(),
                &conv.routing.queue,
                &serde_json::to_string(conv)?,
                &conv.last_customer_ms,
                &conv.last_activity_ms,
                &conv.closed_ms,
                &conv.agent.as_ref().map(|a| &a.id),
                &conv.held_until_ms,
                &conv.waiting_rank(),
            ],
        )?;
        Ok(())
    }

    fn list_conversations(&mut self, f: &ConversationFilter<'_>) -> Result<Vec<Conversation>, StoreError> {
        let sql = "SELECT data FROM conversations WHERE workstream = $1 AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR queue = $3)
                   AND ($4::text IS NULL OR agent_id = $4) ORDER BY created_ms, id LIMIT $5";
        self.rows(sql, &[&f.workstream, &f.state, &f.queue, &f.agent_id, &(f.limit as i64)])?.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn queued_conversations(&mut self, workstream: &str) -> Result<Vec<Conversation>, StoreError> {
        let sql = locking!(self, "SELECT data FROM conversations WHERE workstream = $1 AND waiting_rank IS NOT NULL");
        self.rows(sql, &[&workstream])?.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn holding(&mut self, now_ms: i64) -> Result<Vec<Conversation>, StoreError> {
        let sql = locking!(self, "SELECT data FROM conversations WHERE agent_id IS NOT NULL AND held_until_ms > $1");
        self.rows(sql, &[&now_ms])?.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn previous_agent(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
        let previous: Option<Conversation> =
            self.document("SELECT data FROM conversations WHERE workstream = $1 AND customer_id = $2 ORDER BY created_ms DESC LIMIT 1", &[&workstream, &customer_id])?;
        Ok(previous.and_then(|c| c.last_agent))
    }

    fn save_agent(&mut self, agent: &Agent) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO agents (id, agent, reported_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, reported_ms = excluded.reported_ms",
            &[&agent.id, &serde_json::to_string(agent)?, &agent.reported_ms],
        )?;
        // Presence reported to another replica may change what the leader can assign.
        self.notify(Wake::Distributor)
    }

    fn agent(&mut self, id: &str) -> Result<Option<Agent>, StoreError> {
        let sql = locking!(self, "SELECT agent FROM agents WHERE id = $1");
        self.document(sql, &[&id])
    }

    fn agents(&mut self) -> Result<Vec<Agent>, StoreError> {
        // Locked (on the writer) in ID order, before any conversation: a decision counts loads
        // no other replica's pick or assignment can change until it commits.
        let sql = locking!(self, "SELECT agent FROM agents ORDER BY id");
        self.rows(sql, &[])?.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn quiet_conversations(&mut self, workstream: &str, before_ms: i64, limit: usize) -> Result<Vec<Conversation>, StoreError> {
        let sql = locking!(
            self,
            "SELECT data FROM conversations WHERE state <> 'Closed' AND last_activity_ms < $2 AND workstream = $1 ORDER BY last_activity_ms LIMIT $3"
        );
        self.rows(sql, &[&workstream, &before_ms, &(limit as i64)])?.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn waiting_in(&mut self, workstream: &str, queue: &str) -> Result<i64, StoreError> {
        Ok(self.one("SELECT count(*) FROM conversations WHERE workstream = $1 AND queue = $2 AND state = 'Open'", &[&workstream, &queue])?.try_get(0)?)
    }

    fn position(&mut self, conv: &Conversation) -> Result<Option<i64>, StoreError> {
        let (Some(rank), Some(queue)) = (conv.waiting_rank(), &conv.routing.queue) else { return Ok(None) };
        let sql = "SELECT count(*) FROM conversations WHERE workstream = $1 AND queue = $2 AND waiting_rank IS NOT NULL
                   AND (waiting_rank, created_ms, id) <= ($3, $4, $5)";
        Ok(Some(self.one(sql, &[&conv.workstream, queue, &rank, &conv.created_ms, &conv.id])?.try_get(0)?))
    }

    fn queue_counts(&mut self, workstream: &str) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let sql = "SELECT queue, count(*), min(created_ms) FROM conversations WHERE workstream = $1 AND waiting_rank IS NOT NULL GROUP BY queue";
        self.rows(sql, &[&workstream])?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    fn record_wait(&mut self, workstream: &str, queue: &str, assigned_ms: i64, wait_ms: i64, keep_since_ms: i64) -> Result<(), StoreError> {
        self.execute("DELETE FROM queue_waits WHERE workstream = $1 AND queue = $2 AND assigned_ms < $3", &[&workstream, &queue, &keep_since_ms])?;
        self.execute("INSERT INTO queue_waits (workstream, queue, assigned_ms, wait_ms) VALUES ($1, $2, $3, $4)", &[&workstream, &queue, &assigned_ms, &wait_ms])?;
        Ok(())
    }

    fn mean_wait(&mut self, workstream: &str, queue: &str, since_ms: i64, latest: usize) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT round(avg(wait_ms))::bigint FROM (SELECT wait_ms FROM queue_waits WHERE workstream = $1 AND queue = $2 AND assigned_ms >= $3
                   ORDER BY assigned_ms DESC LIMIT $4) AS latest";
        Ok(self.one(sql, &[&workstream, &queue, &since_ms, &(latest as i64)])?.try_get(0)?)
    }

    fn offer_reply_token(&mut self, conversation_id: &str, token: &str, until_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE conversations SET reply_token = $2, reply_until_ms = $3 WHERE id = $1 AND coalesce(reply_until_ms, 0) < $3",
            &[&conversation_id, &token, &until_ms],
        )?;
        Ok(())
    }

    fn take_reply_token(&mut self, conversation_id: &str, now_ms: i64) -> Result<Option<(String, i64)>, StoreError> {
        let taken = self.row(
            "UPDATE conversations c SET reply_token = NULL, reply_until_ms = NULL
             FROM (SELECT id, reply_token, reply_until_ms FROM conversations
                   WHERE id = $1 AND reply_token IS NOT NULL AND reply_until_ms > $2 FOR UPDATE) old
             WHERE c.id = old.id RETURNING old.reply_token, old.reply_until_ms",
            &[&conversation_id, &now_ms],
        )?;
        Ok(match taken {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        })
    }

    fn contact(&mut self, workstream: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
        Ok(match self.row("SELECT contact_id FROM contacts WHERE workstream = $1 AND customer_id = $2", &[&workstream, &customer_id])? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    fn set_contact(&mut self, workstream: &str, customer_id: &str, contact_id: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        match contact_id {
            Some(contact) => self.execute(
                "INSERT INTO contacts (workstream, customer_id, contact_id, updated_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workstream, customer_id) DO UPDATE SET contact_id = excluded.contact_id, updated_ms = excluded.updated_ms",
                &[&workstream, &customer_id, &contact, &now_ms],
            )?,
            None => self.execute("DELETE FROM contacts WHERE workstream = $1 AND customer_id = $2", &[&workstream, &customer_id])?,
        };
        Ok(())
    }

    fn record_inbound(&mut self, conversation_id: &str, message: &Message, at_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO messages (conversation_id, direction, provider_id, body, created_ms) VALUES ($1, 'in', $2, $3, $4)",
            &[&conversation_id, &message.id, &serde_json::to_string(message)?, &at_ms],
        )?;
        Ok(())
    }

    fn latest_inbound(&mut self, conversation_id: &str) -> Result<Option<Message>, StoreError> {
        self.document("SELECT body FROM messages WHERE conversation_id = $1 AND direction = 'in' ORDER BY id DESC LIMIT 1", &[&conversation_id])
    }

    fn inbound(&mut self, conversation_id: &str, message_id: &str) -> Result<Option<Message>, StoreError> {
        let Some(id) = message_key(message_id) else { return Ok(None) };
        self.document("SELECT body FROM messages WHERE conversation_id = $1 AND id = $2 AND direction = 'in'", &[&conversation_id, &id])
    }

    fn messages(&mut self, conversation_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = self.rows("SELECT id, direction, body, created_ms FROM messages WHERE conversation_id = $1 ORDER BY id", &[&conversation_id])?;
        rows.iter()
            .map(|r| {
                let body: &str = r.try_get(2)?;
                Ok(if r.try_get::<_, &str>(1)? == "in" {
                    StoredMessage::In { id: r.try_get::<_, i64>(0)?.to_string(), created_ms: r.try_get(3)?, message: serde_json::from_str(body)? }
                } else {
                    StoredMessage::Out(serde_json::from_str(body)?)
                })
            })
            .collect()
    }

    fn add_outbound(&mut self, conversation_id: &str, message: &mut OutboundMessage, request_hash: Option<&str>, at_ms: i64) -> Result<(), StoreError> {
        let id: i64 = self
            .one(
                "INSERT INTO messages (conversation_id, direction, client_message_id, request_hash, body, created_ms) VALUES ($1, 'out', $2, $3, '{}', $4) RETURNING id",
                &[&conversation_id, &message.client_message_id, &request_hash, &at_ms],
            )?
            .try_get(0)?;
        message.id = id.to_string();
        self.save_outbound(message)
    }

    fn save_outbound(&mut self, message: &OutboundMessage) -> Result<(), StoreError> {
        let Some(id) = message_key(&message.id) else { return Ok(()) };
        self.execute("UPDATE messages SET body = $2, provider_id = $3 WHERE id = $1", &[&id, &serde_json::to_string(message)?, &message.provider_message_ids.first()])?;
        Ok(())
    }

    fn outbound_by_provider_id(&mut self, provider_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(match self.row("SELECT conversation_id, id FROM messages WHERE provider_id = $1 AND direction = 'out'", &[&provider_id])? {
            Some(row) => Some((row.try_get(0)?, row.try_get::<_, i64>(1)?.to_string())),
            None => None,
        })
    }

    fn keep_receipt(&mut self, receipt: &Receipt, received_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO receipts (provider_id, status, receipt, received_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&receipt.provider_message_id, &receipt.reported.as_str(), &serde_json::to_string(receipt)?, &received_ms],
        )?;
        Ok(())
    }

    fn take_receipts(&mut self, provider_id: &str) -> Result<Vec<Receipt>, StoreError> {
        let rows = self.rows("DELETE FROM receipts WHERE provider_id = $1 RETURNING receipt", &[&provider_id])?;
        rows.iter().map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?)).collect()
    }

    fn forget_receipts(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        self.execute("DELETE FROM receipts WHERE received_ms < $1", &[&before_ms])
    }

    fn outbound(&mut self, id: &str) -> Result<Option<OutboundMessage>, StoreError> {
        let Some(id) = message_key(id) else { return Ok(None) };
        let sql = locking!(self, "SELECT body FROM messages WHERE id = $1 AND direction = 'out'");
        self.document(sql, &[&id])
    }

    fn outbound_by_client_id(&mut self, conversation_id: &str, client_message_id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let found = self.row("SELECT id, request_hash FROM messages WHERE conversation_id = $1 AND client_message_id = $2", &[&conversation_id, &client_message_id])?;
        Ok(match found {
            Some(row) => Some((row.try_get::<_, i64>(0)?.to_string(), row.try_get(1)?)),
            None => None,
        })
    }

    fn next_sequence(&mut self, conversation_id: &str) -> Result<i64, StoreError> {
        Ok(self.one("UPDATE conversations SET next_sequence = next_sequence + 1 WHERE id = $1 RETURNING next_sequence - 1", &[&conversation_id])?.try_get(0)?)
    }

    fn restart_sequence(&mut self, conversation_id: &str) -> Result<(), StoreError> {
        self.execute("UPDATE conversations SET next_sequence = 1 WHERE id = $1", &[&conversation_id])?;
        Ok(())
    }

    fn queue_event(&mut self, event: NewDeskEvent<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO outbox (event_id, workstream, conversation_id, event_type, target, body, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&event.id, &event.workstream, &event.conversation_id, &event.event_type, &event.target, &event.body, &event.created_ms],
        )?;
        self.notify(Wake::Delivery)
    }

    fn due_events(&mut self, now_ms: i64, excluded: &[String], limit: usize) -> Result<Vec<QueuedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM (SELECT min(seq) AS head FROM outbox GROUP BY conversation_id) h JOIN outbox o ON o.seq = h.head
             WHERE o.next_attempt_ms <= $1 AND NOT ",
            endpoint!(),
            " = ANY($2) ORDER BY o.seq LIMIT $3"
        );
        self.rows(sql, &[&now_ms, &excluded, &(limit as i64)])?.iter().map(queued_event).collect()
    }

    fn oldest_event(&mut self, endpoint: &str) -> Result<Option<QueuedEvent>, StoreError> {
        let sql = concat!("SELECT ", event_columns!(), " FROM outbox o WHERE ", endpoint!(), " = $1 ORDER BY o.seq LIMIT 1");
        self.row(sql, &[&endpoint])?.as_ref().map(queued_event).transpose()
    }

    fn next_event_due(&mut self, resting: &[String]) -> Result<Option<i64>, StoreError> {
        let sql = concat!("SELECT min(o.next_attempt_ms) FROM outbox o WHERE NOT ", endpoint!(), " = ANY($1)");
        Ok(self.one(sql, &[&resting])?.try_get(0)?)
    }

    fn event_delivered(&mut self, seq: i64) -> Result<(), StoreError> {
        self.execute("DELETE FROM outbox WHERE seq = $1", &[&seq])?;
        Ok(())
    }

    fn event_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3 WHERE seq = $1", &[&seq, &next_attempt_ms, &error])?;
        Ok(())
    }

    fn outbox_stats(&mut self) -> Result<OutboxStats, StoreError> {
        let row = self.one("SELECT count(*), min(created_ms) FROM outbox", &[])?;
        Ok(OutboxStats { depth: row.try_get(0)?, oldest_ms: row.try_get(1)? })
    }

    fn queued_events(&mut self) -> Result<Vec<QueuedEvent>, StoreError> {
        self.rows(concat!("SELECT ", event_columns!(), " FROM outbox o ORDER BY o.seq"), &[])?.iter().map(queued_event).collect()
    }

    fn gone_endpoints(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.rows("SELECT endpoint, settings FROM gone_endpoints", &[])?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    fn set_gone(&mut self, endpoint: &str, settings: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        match settings {
            Some(settings) => self.execute(
                "INSERT INTO gone_endpoints (endpoint, settings, gone_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (endpoint) DO UPDATE SET settings = excluded.settings, gone_ms = excluded.gone_ms",
                &[&endpoint, &settings, &now_ms],
            )?,
            None => self.execute("DELETE FROM gone_endpoints WHERE endpoint = $1", &[&endpoint])?,
        };
        Ok(())
    }

    fn queue_send(&mut self, send: NewSend<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sends (conversation_id, message_id, workstream, recipient, sender, contents, retry_key, reply_token, reply_until_ms, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &send.conversation_id,
                &send.message_id,
                &send.workstream,
                &send.recipient,
                &send.sender,
                &serde_json::to_string(send.contents)?,
                &send.retry_key.to_string(),
                &send.reply.map(|r| r.0),
                &send.reply.map(|r| r.1),
                &send.created_ms,
            ],
        )?;
        self.notify(Wake::Sender)
    }

    fn due_sends(&mut self, now_ms: i64, limit: usize) -> Result<Vec<QueuedSend>, StoreError> {
        let sql = concat!(
            "SELECT ",
            send_columns!(),
            " FROM (SELECT min(seq) AS head FROM sends GROUP BY conversation_id) h JOIN sends s ON s.seq = h.head
             WHERE s.next_attempt_ms <= $1 ORDER BY s.seq LIMIT $2"
        );
        self.rows(sql, &[&now_ms, &(limit as i64)])?.iter().map(queued_send).collect()
    }

    fn next_send_due(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(self.one("SELECT min(next_attempt_ms) FROM sends", &[])?.try_get(0)?)
    }

    fn send_failed(&mut self, seq: i64, next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sends SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3, reply_token = NULL WHERE seq = $1",
            &[&seq, &next_attempt_ms, &error],
        )?;
        Ok(())
    }

    fn send_finished(&mut self, seq: i64) -> Result<(), StoreError> {
        self.execute("DELETE FROM sends WHERE seq = $1", &[&seq])?;
        Ok(())
    }

    fn queued_sends(&mut self) -> Result<Vec<QueuedSend>, StoreError> {
        self.rows(concat!("SELECT ", send_columns!(), " FROM sends s ORDER BY s.seq"), &[])?.iter().map(queued_send).collect()
    }

    fn store_upload(&mut self, upload: &Upload, workstream: &str, conversation_id: &str, bytes: &[u8], at_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO media (id, workstream, conversation_id, file_name, content_type, bytes, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&upload.id, &workstream, &conversation_id, &upload.file_name, &upload.content_type, &bytes, &at_ms],
        )?;
        Ok(())
    }

    fn upload(&mut self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(match self.row("SELECT content_type, bytes FROM media WHERE id = $1", &[&id])? {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        })
    }

    fn forget_uploads(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        self.execute("DELETE FROM media WHERE created_ms < $1", &[&before_ms])
    }
}
