//! The PostgreSQL store on a real server (tests/run.sh starts one and names it in
//! `SWITCHBOARD_TEST_POSTGRES_URL`): jobs undo only themselves, one of several replicas leads and
//! another takes over when it goes, a replica's queued work wakes the leader, a database that
//! cannot be reached fails jobs with a reason that holds no password, and the schema's
//! migrations adopt a database from before them, refuse one a newer build migrated and let
//! replicas starting together take turns. Queue positions and recent waits are checked on both
//! backends.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::gateway::model::conversation::Conversation;
use switchboard::gateway::model::outbound::Status;
use switchboard::gateway::store::{Durability, PostgresTarget, Store, StoreError, TlsSettings, Wake};
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
/// version 1: the first migration is that schema as it was written (a released migration never
/// changes), so it is the fixture.
const UNMIGRATED_SCHEMA: &str = include_str!("../src/gateway/store/migrations/postgres/V1__schema.sql");

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
    // An outgoing message as the builds before receipts stored it: "delivered" meant accepted.
    execute(&url, r#"INSERT INTO messages (conversation_id, direction, body, created_ms) VALUES ('c1', 'out', '{"id":"1","direction":"out","author":"agent","contents":[{"type":"text","text":"hi"}],"status":"delivered","providerMessageIds":["SM1"],"createdAt":"2026-12-01T00:00:00Z"}', 1)"#);
    let store = open(&url);
    assert_eq!(store.run(|tx| tx.contact("ws", "x")).await.unwrap().as_deref(), Some("C"));
    let found = store.read(|tx| Ok(tx.outbound_by_provider_id("SM1")?.map(|(_, id)| tx.outbound(&id)))).await.unwrap();
    let message = found.expect("found by the provider's ID").unwrap().expect("the message");
    assert_eq!(message.status, Status::Accepted, "renamed by the migration");
    assert_eq!(number(&url, "SELECT max(version)::bigint FROM refinery_schema_history"), 3);
    assert_eq!(number(&url, "SELECT count(*) FROM switchboard_schema"), 1);
    assert_eq!(number(&url, "SELECT max(version)::bigint FROM switchboard_schema"), 3, "the builds from before the migrations find a version they refuse");
}

#[tokio::test]
async fn a_database_a_newer_build_migrated_is_refused() {
    let Some(url) = database("a_database_a_newer_build_migrated_is_refused") else { return };
    open(&url).run(|tx| tx.contact("ws", "x")).await.expect("a new database is migrated");
    execute(&url, "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (4, 'later', '2030-01-01T00:00:00Z', '1')");
    let err = open(&url).run(|tx| tx.contact("ws", "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::Newer { found: 4, latest: 3 }), "{err}");
}

#[tokio::test]
async fn stores_opened_at_once_on_an_empty_database_all_migrate_it() {
    let Some(url) = database("stores_opened_at_once_on_an_empty_database_all_migrate_it") else { return };
    let stores: Vec<Store> = (0..4).map(|_| open(&url)).collect();
    let answers = futures::future::join_all(stores.iter().map(|s| s.run(|tx| tx.contact("ws", "x")))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(number(&url, "SELECT count(*) FROM refinery_schema_history"), 3, "each migration applied once");
}

/// A conversation of workstream `ws` that started at `created_ms`, in `state` in queue `general`
/// at `priority`.
fn waiting(id: &str, state: &str, priority: &str, created_ms: i64) -> Conversation {
    serde_json::from_value(json!({
        "id": id, "workstream": "ws", "channel": "LINE", "state": state,
        "customer": {"id": format!("line:{id}"), "isKnown": false},
        "routing": {"queue": "general", "priority": priority, "withinOperatingHours": true},
        "createdMs": created_ms, "lastCustomerMs": created_ms,
    }))
    .expect("a conversation")
}

/// Positions count what is served first (priority, then age) among what waits for an agent in
/// the same queue; recent waits are averaged over the window and the latest few.
async fn positions_and_waits(store: &Store) {
    let conversations = [
        waiting("a", "Open", "Normal", 1_000),
        waiting("b", "Open", "Normal", 2_000),
        waiting("c", "Open", "Urgent", 3_000),
        waiting("taken", "Active", "Urgent", 500),
        waiting("d", "Open", "Low", 100),
    ];
    let mut bot = waiting("bot", "Open", "Urgent", 10);
    bot.handler = switchboard::gateway::model::conversation::Handler::Bot;
    let all: Vec<Conversation> = conversations.iter().cloned().chain([bot.clone()]).collect();
    store.run(move |tx| all.iter().try_for_each(|c| tx.insert_conversation(c))).await.unwrap();
    let probe: Vec<Conversation> = conversations.to_vec();
    let (positions, oldest) = store
        .run(move |tx| Ok((probe.iter().map(|c| tx.position(c)).collect::<Result<Vec<_>, _>>()?, tx.queue_counts("ws")?.into_iter().find(|(q, _, _)| q == "general").map(|(_, _, oldest)| oldest))))
        .await
        .unwrap();
    assert_eq!(positions, [Some(2), Some(3), Some(1), None, Some(4)], "Urgent first, then Normal by age, then Low; neither the taken one nor the bot's count");
    assert_eq!(oldest, Some(100));

    // Taking `c` moves the others up.
    let mut taken = conversations[2].clone();
    taken.state = switchboard::gateway::model::conversation::State::Active;
    let a = conversations[0].clone();
    let position = store.run(move |tx| {
        tx.update_conversation(&taken)?;
        tx.position(&a)
    });
    assert_eq!(position.await.unwrap(), Some(1));

    let means = store
        .run(|tx| {
            for (at, wait) in [(10_000, 600_000), (20_000, 60_000), (30_000, 120_000), (40_000, 180_000)] {
                tx.record_wait("ws", "general", at, wait, 15_000)?;
            }
            // The first was forgotten (before 15 s when the next came); of the rest, the window
            // from 25 s holds two, the latest two of all are the same, one queue has none.
            Ok([tx.mean_wait("ws", "general", 0, 100)?, tx.mean_wait("ws", "general", 25_000, 100)?, tx.mean_wait("ws", "general", 0, 2)?, tx.mean_wait("ws", "vip", 0, 100)?])
        })
        .await
        .unwrap();
    assert_eq!(means, [Some(120_000), Some(150_000), Some(150_000), None]);
}

#[tokio::test]
async fn queue_positions_and_recent_waits_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::sqlite(&dir.path().join("store.db"), Durability::Full, Box::new(|_, _| {})).expect("the SQLite store opens");
    positions_and_waits(&sqlite).await;
    if let Some(url) = database("queue_positions_and_recent_waits_on_both_backends") {
        positions_and_waits(&open(&url)).await;
    }
}
