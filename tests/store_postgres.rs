//! The PostgreSQL store on a real server (tests/run.sh starts one and names it in
//! `SWITCHBOARD_TEST_POSTGRES_URL`): jobs undo only themselves, one of several replicas leads and
//! another takes over when it goes, a replica's queued work wakes the leader, a database that
//! cannot be reached fails jobs with a reason that holds no password, and the schema's
//! migrations adopt a database from before them, refuse one a newer build migrated and let
//! replicas starting together take turns.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::gateway::store::{PostgresTarget, Store, StoreError, TlsSettings, Wake};
use switchboard::providers::credentials::Secret;

#[path = "postgres/database.rs"]
mod database;

/// A new database on the test server, or None (after saying why) when no server is named.
fn database(test: &str) -> Option<Secret> {
    let Ok(admin) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
        let _ = writeln!(std::io::stderr(), "skipped {test}: SWITCHBOARD_TEST_POSTGRES_URL is not set (tests/run.sh starts a PostgreSQL server and sets it)");
        return None;
    };
    Some(Secret::new(database::create(&admin, "switchboard_store")))
}

fn open(url: &Secret) -> Store {
    let target = PostgresTarget::from_url(url, TlsSettings::default()).expect("the connection string is valid");
    Store::postgres(&target, Box::new(|_, _| {})).expect("the store starts")
}

/// Runs `sql` on the database `url` names with a client of the test's own.
fn execute(url: &Secret, sql: &str) {
    let (url, sql) = (url.expose().to_owned(), sql.to_owned());
    // The synchronous client runs its own runtime, so not on a test's runtime thread.
    std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls).and_then(|mut c| c.batch_execute(&sql)))
        .join()
        .expect("the statements ran")
        .expect("the test server answers");
}

/// Runs `sql`, a query of one integer, on the database `url` names.
fn number(url: &Secret, sql: &str) -> i64 {
    let (url, sql) = (url.expose().to_owned(), sql.to_owned());
    std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls).and_then(|mut c| c.query_one(&sql, &[])).map(|row| row.get(0)))
        .join()
        .expect("the query ran")
        .expect("the test server answers")
}

/// The schema as the builds from before the migrations created it, with `switchboard_schema`
/// version 1: a fixture, never to change with the migrations.
const UNMIGRATED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS switchboard_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbound (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    received_ms BIGINT NOT NULL,
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
    created_ms BIGINT NOT NULL,
    last_customer_ms BIGINT NOT NULL,
    last_activity_ms BIGINT NOT NULL,
    closed_ms BIGINT,
    next_sequence BIGINT NOT NULL DEFAULT 1,
    reply_token TEXT,
    reply_until_ms BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_open ON conversations (workstream, customer_id) WHERE state <> 'Closed';
CREATE INDEX IF NOT EXISTS conversations_by_customer ON conversations (workstream, customer_id, created_ms);
CREATE INDEX IF NOT EXISTS conversations_by_queue ON conversations (workstream, queue, state);
CREATE INDEX IF NOT EXISTS conversations_by_activity ON conversations (state, last_activity_ms);
CREATE TABLE IF NOT EXISTS messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    provider_id TEXT,
    client_message_id TEXT,
    request_hash TEXT,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (conversation_id, client_message_id) WHERE client_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    target TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_conversation ON outbox (conversation_id, seq);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (next_attempt_ms);
CREATE TABLE IF NOT EXISTS sends (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    workstream TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT,
    contents TEXT NOT NULL,
    retry_key TEXT NOT NULL,
    reply_token TEXT,
    reply_until_ms BIGINT,
    created_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sends_due ON sends (next_attempt_ms);
CREATE INDEX IF NOT EXISTS sends_by_conversation ON sends (conversation_id, seq);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    fetched_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    workstream TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (workstream, customer_id)
);
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    workstream TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS media_by_age ON media (created_ms);
";

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failing_job_undoes_only_itself_and_replicas_see_each_others_commits() {
    let Some(url) = database("a_failing_job_undoes_only_itself_and_replicas_see_each_others_commits") else { return };
    let (a, b) = (open(&url), open(&url));
    let link = |store: Store, customer: &'static str, fail: bool| async move {
        store.run(move |tx| {
            tx.set_contact("ws", customer, Some("C"), 0)?;
            if fail { Err(StoreError::Closed) } else { Ok(()) }
        })
        .await
    };
    let (x, y, z) = tokio::join!(link(a.clone(), "a", false), link(a.clone(), "b", true), link(b.clone(), "c", false));
    assert!(x.is_ok() && y.is_err() && z.is_ok(), "{x:?} {y:?} {z:?}");
    for store in [&a, &b] {
        let linked = store.read(|tx| Ok([tx.contact("ws", "a")?, tx.contact("ws", "b")?, tx.contact("ws", "c")?])).await.unwrap();
        assert_eq!(linked, [Some("C".to_owned()), None, Some("C".to_owned())]);
    }
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_goes() {
    let Some(url) = database("one_replica_leads_and_another_takes_over_when_it_goes") else { return };
    let woken: Arc<Mutex<Vec<Wake>>> = Arc::default();
    let (a, b) = (open(&url), open(&url));
    let first = a.lead(Box::new(|_| {})).unwrap();
    until("a replica leads", || *first.borrow()).await;
    let seen = Arc::clone(&woken);
    let second = b.lead(Box::new(move |w| seen.lock().unwrap().push(w))).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(*first.borrow() && !*second.borrow(), "exactly one replica leads");

    // Work a replica records wakes the others' loops (here: the one that will lead next).
    let events = vec![switchboard::gateway::model::queue::Serialized { id: "e-1".into(), json: "{}".into() }];
    let recorded = a.run(move |tx| tx.record_events(&events, 1)).await.unwrap();
    assert_eq!(recorded.new, 1);
    until("the other replica is woken for the processor", || woken.lock().unwrap().contains(&Wake::Processor)).await;

    // The leader goes (its lead connection closes with it): the other takes over.
    drop(first);
    drop(a);
    until("the second replica leads", || *second.borrow()).await;
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_fails_jobs_with_a_reason_and_no_password() {
    // No server listens in a folder that does not exist.
    let url = Secret::new("host=/nonexistent/switchboard port=5432 user=gateway password=hunter2-secret dbname=chat");
    let store = open(&url);
    let err = store.run(|tx| tx.contact("ws", "x")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Database(_)), "{text}");
    assert!(!text.contains("hunter2"), "the password is not in the error: {text}");
    // Until the next attempt, jobs fail at once rather than each waiting on a connection.
    let started = Instant::now();
    assert!(store.read(|tx| tx.contact("ws", "x")).await.is_err());
    assert!(store.run(|tx| tx.contact("ws", "x")).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_database_from_before_the_migrations_is_adopted_and_keeps_its_data() {
    let Some(url) = database("a_database_from_before_the_migrations_is_adopted_and_keeps_its_data") else { return };
    execute(&url, UNMIGRATED_SCHEMA);
    execute(&url, "INSERT INTO switchboard_schema (version) VALUES (1); INSERT INTO contacts (workstream, customer_id, contact_id, updated_ms) VALUES ('ws', 'x', 'C', 1)");
    let store = open(&url);
    assert_eq!(store.run(|tx| tx.contact("ws", "x")).await.unwrap().as_deref(), Some("C"));
    assert_eq!(number(&url, "SELECT max(version)::bigint FROM refinery_schema_history"), 1);
    assert_eq!(number(&url, "SELECT count(*) FROM switchboard_schema WHERE version = 1"), 1, "the builds from before the migrations still find version 1");
}

#[tokio::test]
async fn a_database_a_newer_build_migrated_is_refused() {
    let Some(url) = database("a_database_a_newer_build_migrated_is_refused") else { return };
    open(&url).run(|tx| tx.contact("ws", "x")).await.expect("a new database is migrated");
    execute(&url, "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (2, 'later', '2030-01-01T00:00:00Z', '1')");
    let err = open(&url).run(|tx| tx.contact("ws", "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Newer { found: 2, latest: 1 }), "{err}");
}

#[tokio::test]
async fn stores_opened_at_once_on_an_empty_database_all_migrate_it() {
    let Some(url) = database("stores_opened_at_once_on_an_empty_database_all_migrate_it") else { return };
    let stores: Vec<Store> = (0..4).map(|_| open(&url)).collect();
    let answers = futures::future::join_all(stores.iter().map(|s| s.run(|tx| tx.contact("ws", "x")))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(number(&url, "SELECT count(*) FROM refinery_schema_history"), 1);
}
