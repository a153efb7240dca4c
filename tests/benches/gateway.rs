//! The gateway's webhook intake under load: signed webhooks per second verified and durably
//! recorded, and latency at a fixed rate, against the real `switchboard gateway` binary, with its
//! store in SQLite and in PostgreSQL side by side.
//!
//! Each scenario starts fresh gateways with the provider APIs pointed at an in-process simulator
//! and their desk at an in-process server that answers 200. On SQLite there is one gateway, its
//! store under CARGO_TARGET_TMPDIR (so on the real disk and not a tmpfs where fsync is free). On
//! PostgreSQL, replicas share a new database on a throwaway server that the bench starts with
//! tests/postgres/start.sh, its data also under CARGO_TARGET_TMPDIR, and stops at the end
//! (`SWITCHBOARD_TEST_POSTGRES_URL`, a superuser's connection string, names an existing server
//! instead; each scenario's database is then left on it). The load generator sends to the
//! replicas in turn; each records what it is sent, and the replica that leads processes it. The
//! gateways therefore do everything they do when deployed: besides answering webhooks they turn
//! them into conversations, fetch LINE profiles, send greetings and deliver every event to the
//! desk, concurrently and on the same cores as the load generator, the simulator, the desk and
//! the database.
//!
//! Every customer writes twice before the timed part (conversations exist, connections are
//! open), so the timed part measures the steady state of ongoing conversations. Bodies are
//! built and signed before timing, and every webhook event ID is new, so nothing is
//! deduplicated. Scenarios, on SQLite:
//! (a) LINE, one event per webhook, 64 connections, closed loop;
//! (b) LINE at a fixed 5,000 webhooks/s (open loop: latency is taken from when a request was due,
//!     not from when it was sent, so a stall counts in full for every request it held up);
//! (c) LINE, ten events per webhook, 64 connections;
//! (d) Twilio (WhatsApp form posts), 64 connections;
//! (e), (f) as (a) and (b) with group messages that carry no user ID: the processor has no
//!     customer to act for and only marks them done, which shows the intake on its own;
//! on PostgreSQL:
//! (g) as (a) with two replicas;
//! (h) as (b) with two replicas, at 4,000 webhooks/s;
//! (i) as (a) with one replica, which shows what the shared store costs by itself.
//! Two more run only when named (below): (a) and (b) with the desk down, so that the outbox grows
//! while the webhooks keep coming, as during a desk outage.
//!
//! After each run the gateways' /metrics give the store's commits and batch sizes and must count
//! exactly the events sent as recorded; the store itself is counted too, and processing must
//! catch up within a limit. CPU time is read per thread from /proc (the gateways, their store
//! writers, the load generator, the simulator and desk), for the PostgreSQL server's processes
//! and for the whole machine, so that a run disturbed by other processes says so. Targets, from
//! the issue: on SQLite not slower than before PostgreSQL came (11,000 LINE webhooks/s) and p99
//! under 10 ms at 5,000/s; two replicas on PostgreSQL 8,000 webhooks/s and p99 under 20 ms at
//! 4,000/s.
//!
//! Run with `cargo bench --bench gateway`; `GATEWAY_BENCH=line,line-rate,line-no-desk` (names as
//! in `main`) runs only those scenarios, `GATEWAY_BENCH=pg-line,pg-line-rate,pg-line-1` only the
//! PostgreSQL ones (the server is started only for them).

#[path = "common.rs"]
mod common;
#[path = "../postgres/database.rs"]
mod database;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use common::{
    Customers, Gateway, LINE_SECRET, Provider, Result, STORE_FILE, TWILIO_ACCOUNT, TWILIO_SID, TWILIO_TOKEN, WHATSAPP_NUMBER,
    cores, cpu_seconds, machine_busy, ms, note_others, stat_fields, thousands, thread_cpu,
};
use postgres::NoTls;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use switchboard::config::GatewayConfig;
use switchboard::signing::{line_signature, twilio_signature};
use switchboard::simulator::SimulatorConfig;

const PUBLIC_BASE_URL: &str = "https://chat.contoso.example";
/// The customers' LINE user IDs and WhatsApp numbers.
const CUSTOMER_IDS: Customers = Customers { first_line_user: 0x5b1e_c0de_0000_0000, first_whatsapp: 1_000_000 };

/// Distinct customers; each has one conversation, so the processor's per-conversation work and
/// the desk's per-conversation ordering are exercised as with real traffic.
const CUSTOMERS: usize = 300;
/// Webhooks each customer sends before timing starts.
const WARMUP_PER_CUSTOMER: usize = 2;
/// Concurrent connections of the closed-loop runs.
const CONNECTIONS: usize = 64;
/// Requests of a closed-loop run.
const THROUGHPUT_REQUESTS: usize = 20_000;
/// Events per webhook in the batch run.
const BATCH_EVENTS: usize = 10;
/// Requests of the batch run (20,000 events).
const BATCH_REQUESTS: usize = 2_000;
/// How long a fixed-rate run sends.
const FIXED_SECONDS: u32 = 5;
/// Gateways sharing one database in the PostgreSQL scenarios that the targets are for.
const PG_REPLICAS: usize = 2;
/// The targets on SQLite: not slower than before the PostgreSQL store came.
const SQLITE_TARGETS: Targets = Targets { rate: 11_000.0, fixed_rate: 5_000, p99: Duration::from_millis(10) };
/// The targets for [`PG_REPLICAS`] replicas on PostgreSQL.
const PG_TARGETS: Targets = Targets { rate: 8_000.0, fixed_rate: 4_000, p99: Duration::from_millis(20) };
/// Names a PostgreSQL server to use instead of starting one (a superuser's connection string).
const POSTGRES_SERVER_ENV: &str = "SWITCHBOARD_TEST_POSTGRES_URL";
/// How long processing may take to catch up after a run before the bench moves on.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(12);

/// A signed webhook, ready to send.
struct Prepared {
    body: Vec<u8>,
    signature: String,
    events: usize,
}

/// Builds signed webhooks with IDs never used before.
struct Webhooks {
    next_id: u64,
    next_customer: usize,
    destination: String,
    /// LINE group messages without a user ID: recorded like any other, but the processor has no
    /// customer to act for and only marks them done (a variant that leaves out processing).
    anonymous: bool,
}

impl Webhooks {
    fn new(destination: String, anonymous: bool) -> Self {
        Self { next_id: 1, next_customer: 0, destination, anonymous }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Customers write in turn, so every conversation keeps getting messages.
    fn customer(&mut self) -> usize {
        let c = self.next_customer;
        self.next_customer = (c + 1) % CUSTOMERS;
        c
    }

    fn line(&mut self, events: usize) -> Prepared {
        let now = jiff::Timestamp::now().as_millisecond();
        let events: Vec<Value> = (0..events)
            .map(|_| {
                let id = self.id();
                let user = CUSTOMER_IDS.line_user(self.customer());
                let source = if self.anonymous {
                    json!({"type": "group", "groupId": format!("C{}", &user[1..])})
                } else {
                    json!({"type": "user", "userId": user})
                };
                json!({
                    "type": "message",
                    // ULID-shaped (26 Crockford characters), unique per event.
                    "webhookEventId": format!("01JBENCH{id:018}"),
                    "deliveryContext": {"isRedelivery": false},
                    "timestamp": now,
                    "source": source,
                    "replyToken": format!("{:016x}{:016x}", id.wrapping_mul(0x2545_f491_4f6c_dd1d), id),
                    "mode": "active",
                    "message": {
                        "type": "text",
                        "id": format!("{}", 540_000_000_000_000u64 + id),
                        "quoteToken": format!("q{:x}Ab-{id}", id.wrapping_mul(0x9e37_79b9)),
                        "text": format!("Hello, I have a question about my order #{id}; it has not arrived yet."),
                    },
                })
            })
            .collect();
        let body = serde_json::to_vec(&json!({"destination": self.destination, "events": events})).expect("JSON");
        let signature = line_signature(LINE_SECRET, &body);
        Prepared { body, signature, events: events.len() }
    }

    fn twilio(&mut self) -> Prepared {
        let id = self.id();
        let customer = CUSTOMER_IDS.whatsapp(self.customer());
        let sid = format!("SM{:016x}{:016x}", id.wrapping_mul(0x2545_f491_4f6c_dd1d), id);
        let params: Vec<(String, String)> = [
            ("SmsMessageSid", sid.as_str()),
            ("NumMedia", "0"),
            ("ProfileName", "Ayşe Yılmaz"),
            ("MessageType", "text"),
            ("SmsSid", sid.as_str()),
            ("WaId", customer.trim_start_matches('+')),
            ("SmsStatus", "received"),
            ("Body", &format!("Merhaba, siparişim #{id} hâlâ gelmedi.")),
            ("To", &format!("whatsapp:{WHATSAPP_NUMBER}")),
            ("NumSegments", "1"),
            ("ReferralNumMedia", "0"),
            ("MessageSid", sid.as_str()),
            ("AccountSid", TWILIO_SID),
            ("From", &format!("whatsapp:{customer}")),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
        // Twilio signs the public URL it posts to, which the gateway takes from its configuration.
        let signature = twilio_signature(TWILIO_TOKEN, &callback_url(TWILIO_ACCOUNT), &params);
        Prepared { body, signature, events: 1 }
    }

    fn make(&mut self, provider: Provider, events: usize) -> Prepared {
        match provider {
            Provider::Line => self.line(events),
            Provider::Twilio => self.twilio(),
        }
    }
}

fn callback_url(account: &str) -> String {
    format!("{PUBLIC_BASE_URL}{}", common::callback_path(account))
}

/// The compiled configuration the controller would render for a one-workstream account.
fn gateway_config(provider: Provider, desk_url: &str) -> Result<String> {
    let channel = provider.config().1;
    let config = json!({
        "version": 1,
        "account": common::account_json(provider, &callback_url(provider.account())),
        "workstreams": [{
            "name": "support",
            "generation": 1,
            "channel": channel,
            "language": "en-US",
            "distribution": {
                "mode": "Push",
                "fallbackQueue": "general",
                "capacityPerConversation": 1,
                "keepSameAgent": true,
                "autoCloseAfterInactivitySeconds": 86_400,
                "wrapUp": {"type": "After", "seconds": 60},
            },
            "queues": [
                {"name": "billing", "priority": 1, "overflow": {"maxWaiting": 1000, "action": "FallbackQueue"}},
                {"name": "general", "priority": 2},
            ],
            "automatedMessages": [
                {"trigger": "Greeting", "locale": "en-US", "text": "Thanks for writing to Contoso, {CustomerName}. An agent will answer."},
                {"trigger": "Greeting", "locale": "tr-TR", "text": "Contoso'ya yazdığınız için teşekkürler."},
            ],
            "delivery": common::delivery_json(desk_url),
            "rules": {
                "classification": [{
                    "name": "refunds-are-billing", "generation": 1, "order": 10,
                    "match": {"all": [
                        {"field": "message.text", "operator": "Contains", "values": ["refund", "iade", "invoice"], "ignoreCase": true},
                    ]},
                    "set": {"attributes": {"topic": "billing"}, "priority": "High"},
                }],
                "routeToQueue": [{
                    "name": "billing-queue", "generation": 1, "order": 10,
                    "match": {"all": [{"field": "attributes.topic", "operator": "Equals", "values": ["billing"]}]},
                    "routeTo": {"queue": "billing"},
                }],
            },
        }],
        "templates": [],
    })
    .to_string();
    // Fail here, with the reason, rather than as a gateway that never becomes ready.
    GatewayConfig::from_json(&config)?;
    Ok(config)
}

/// The simulated providers: one LINE channel that knows every customer's profile, one Twilio
/// account with the workstream's number.
fn simulator_config() -> Result<SimulatorConfig> {
    let users: Vec<Value> = (0..CUSTOMERS)
        .map(|i| {
            let language = if i % 3 == 0 { "tr-TR" } else { "en-US" };
            json!({"userId": CUSTOMER_IDS.line_user(i), "displayName": format!("Customer {i}"), "language": language})
        })
        .collect();
    let mut config = common::simulator_json();
    config["line"][0]["users"] = users.into();
    Ok(serde_json::from_value(config)?)
}

/// The simulator and the desk; the desk counts what it is sent.
type Services = common::Services<Arc<AtomicU64>>;

fn start_services(config: SimulatorConfig) -> Result<Services> {
    let desk = Router::new().fallback(|State(hits): State<Arc<AtomicU64>>| async move {
        hits.fetch_add(1, Ordering::Relaxed);
        StatusCode::OK
    });
    common::start_services(config, Arc::new(AtomicU64::new(0)), desk, "/switchboard/events")
}

/// What only this bench asks of a gateway.
impl Gateway {
    async fn metrics(&self, client: &reqwest::Client) -> Result<Metrics> {
        let text = client.get(format!("http://{}/metrics", self.listeners.metrics)).send().await?.error_for_status()?.text().await?;
        Ok(Metrics::parse(&text))
    }
}

/// Where a scenario's gateways keep their store.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    /// This many replicas on one PostgreSQL database.
    Postgres { replicas: usize },
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite => write!(f, "SQLite"),
            Backend::Postgres { replicas: 1 } => write!(f, "PostgreSQL, 1 replica"),
            Backend::Postgres { replicas } => write!(f, "PostgreSQL, {replicas} replicas"),
        }
    }
}

/// The PostgreSQL server of the PostgreSQL scenarios.
struct PostgresServer {
    /// A superuser's connection string.
    admin: String,
    /// Its postmaster, when the server runs on this machine and its data directory can be read:
    /// then the server's CPU time is read from its processes.
    postmaster: Option<u32>,
    /// What the bench's header says of it.
    description: String,
    /// The server this bench started, stopped when this is dropped.
    _started: Option<Throwaway>,
}

/// A server tests/postgres/start.sh started in this folder: stopped, and the folder removed,
/// when dropped, so also when a scenario fails.
struct Throwaway(tempfile::TempDir);

impl Drop for Throwaway {
    fn drop(&mut self) {
        match Command::new(postgres_script("stop.sh")).arg(self.0.path()).status() {
            Ok(status) if status.success() => {}
            outcome => eprintln!("tests/postgres/stop.sh {}: {outcome:?}", self.0.path().display()),
        }
    }
}

fn postgres_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres").join(name)
}

impl PostgresServer {
    /// The server `SWITCHBOARD_TEST_POSTGRES_URL` names, else a throwaway one.
    fn start() -> Result<Self> {
        let (admin, started, origin) = match std::env::var(POSTGRES_SERVER_ENV) {
            Ok(admin) => (admin, None, format!("the server {POSTGRES_SERVER_ENV} names")),
            Err(_) => {
                // Beside the SQLite stores, so that both backends fsync to the same disk.
                let dir = Throwaway(tempfile::Builder::new().prefix("postgres-").tempdir_in(env!("CARGO_TARGET_TMPDIR"))?);
                let output = Command::new(postgres_script("start.sh")).arg(dir.0.path()).stderr(Stdio::inherit()).output()?;
                if !output.status.success() {
                    return Err(format!("tests/postgres/start.sh: {}", output.status).into());
                }
                (String::from_utf8(output.stdout)?.trim().to_owned(), Some(dir), "started by the bench".to_owned())
            }
        };
        let mut c = postgres::Client::connect(&admin, NoTls)?;
        let mut show = |setting: &str| -> Result<String> { Ok(c.query_one(&format!("SHOW {setting}"), &[])?.try_get(0)?) };
        let data = PathBuf::from(show("data_directory")?);
        let postmaster = std::fs::read_to_string(data.join("postmaster.pid")).ok().and_then(|p| p.lines().next()?.parse().ok());
        let description = format!(
            "PostgreSQL {} ({origin}; data in {}, {}; fsync {}, synchronous_commit {})",
            show("server_version")?,
            data.display(),
            if postmaster.is_some() { filesystem_of(&data) } else { "not readable here".to_owned() },
            show("fsync")?,
            show("synchronous_commit")?,
        );
        Ok(Self { admin, postmaster, description, _started: started })
    }
}

/// CPU seconds of the PostgreSQL server: the postmaster, its children that ended (it waits for
/// them, so their time is added to its own), and those running (each connection's backend, the
/// WAL writer, the checkpointer…).
fn server_cpu(postmaster: u32) -> f64 {
    let postmaster = postmaster.to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else { return 0.0 };
    processes
        .flatten()
        .filter_map(|p| Some((p.file_name(), std::fs::read_to_string(p.path().join("stat")).ok()?)))
        .map(|(pid, stat)| match stat_fields(&stat) {
            Some((_, fields)) if *pid == *postmaster => cpu_seconds(&fields, 11..15),
            Some((_, fields)) if fields.get(1) == Some(&postmaster.as_str()) => cpu_seconds(&fields, 11..13),
            _ => 0.0,
        })
        .sum()
}

/// The store's rows: events recorded, events not yet processed, desk events not yet delivered,
/// messages not yet sent. The same SQL on both backends.
const STORE_COUNTS: &str = "SELECT (SELECT count(*) FROM inbound), (SELECT count(*) FROM inbound WHERE state = 0), \
                            (SELECT count(*) FROM outbox), (SELECT count(*) FROM sends)";

#[derive(Clone, Copy, Debug)]
struct StoreCounts {
    inbound: i64,
    pending: i64,
    outbox: i64,
    sends: i64,
}

/// A scenario's gateways and the store they share.
struct Deployment {
    backend: Backend,
    replicas: Vec<Gateway>,
    /// The PostgreSQL database's connection string.
    database: Option<String>,
    /// See [`PostgresServer::postmaster`].
    postmaster: Option<u32>,
}

impl Deployment {
    /// Starts the scenario's gateways (on PostgreSQL, on a new database of `server`) and waits
    /// until each is ready.
    async fn start(
        services: &Services,
        client: &reqwest::Client,
        scenario: &Scenario,
        server: Option<&PostgresServer>,
        desk_url: &str,
    ) -> Result<Self> {
        let provider = scenario.provider;
        let (count, database, postmaster) = match scenario.backend {
            Backend::Sqlite => (1, None, None),
            Backend::Postgres { replicas } => {
                let server = server.expect("the server is started when a PostgreSQL scenario is wanted");
                (replicas, Some(database::create(&server.admin, "switchboard_bench")), server.postmaster)
            }
        };
        let mut replicas = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{}-{i}", scenario.name);
            let config = |_: &str| gateway_config(provider, desk_url);
            replicas.push(Gateway::start(provider, &services.simulator_url, &name, database.as_deref(), config)?);
        }
        for gateway in &mut replicas {
            gateway.wait_ready(client).await?;
        }
        Ok(Self { backend: scenario.backend, replicas, database, postmaster })
    }

    fn webhook_urls(&self) -> Vec<reqwest::Url> {
        self.replicas.iter().map(|g| g.webhook_url.clone()).collect()
    }

    /// Each replica's /metrics.
    async fn metrics(&self, client: &reqwest::Client) -> Result<Vec<Metrics>> {
        let mut all = Vec::with_capacity(self.replicas.len());
        for gateway in &self.replicas {
            all.push(gateway.metrics(client).await?);
        }
        Ok(all)
    }

    /// Counts in the store itself, read through a connection of its own as `sqlite3` or `psql`
    /// would.
    fn store_counts(&self) -> Result<StoreCounts> {
        let n: Vec<i64> = match &self.database {
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let c = Connection::open_with_flags(self.replicas[0].dir.join(STORE_FILE), flags)?;
                c.busy_timeout(Duration::from_secs(5))?;
                c.query_row(STORE_COUNTS, [], |r| (0..4).map(|i| r.get(i)).collect())?
            }
            // The synchronous client brings its own runtime, which may neither block nor be
            // dropped on a runtime thread: hence outside it, and a connection per count (a
            // count is rare, and outside the timed part).
            Some(url) => tokio::task::block_in_place(|| -> Result<Vec<i64>> {
                let row = postgres::Client::connect(url, NoTls)?.query_one(STORE_COUNTS, &[])?;
                Ok((0..4).map(|i| row.try_get(i)).collect::<std::result::Result<_, _>>()?)
            })?,
        };
        Ok(StoreCounts { inbound: n[0], pending: n[1], outbox: n[2], sends: n[3] })
    }

    /// The replicas' logs so far, each under its number.
    fn log_text(&self) -> String {
        self.replicas.iter().enumerate().map(|(i, g)| format!("replica {i}:\n{}", g.log_text())).collect()
    }
}

/// One scrape of /metrics, by series (`name{labels}`).
#[derive(Default)]
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k.to_owned(), v)))
            .collect();
        Self(series)
    }

    /// The replicas' figures added up: counters, and histograms bucket by bucket.
    fn sum(replicas: &[Metrics]) -> Self {
        let mut total = HashMap::new();
        for (series, value) in replicas.iter().flat_map(|m| &m.0) {
            *total.entry(series.clone()).or_insert(0.0) += value;
        }
        Self(total)
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The histogram's buckets as (upper bound, cumulative count).
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).and_then(|le| le.strip_suffix("\"}")).map(|le| (le, *v)))
            .map(|(le, v)| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) }, v))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

const EVENTS_RECORDED: &str = "switchboard_gateway_events_total{outcome=\"Recorded\"}";
const EVENTS_DUPLICATE: &str = "switchboard_gateway_events_total{outcome=\"Duplicate\"}";
const COMMIT_SECONDS: &str = "switchboard_gateway_store_commit_seconds";
const COMMIT_BATCH: &str = "switchboard_gateway_store_commit_batch_size";
const DELIVERED: &str = "switchboard_gateway_delivery_attempts_total{outcome=\"Delivered\"}";

/// What the store did between two scrapes.
struct CommitStats {
    commits: f64,
    mean: Duration,
    p99_at_most: f64,
    jobs_per_commit: f64,
}

fn commit_stats(before: &Metrics, after: &Metrics) -> CommitStats {
    let delta = |s: &str| after.get(s) - before.get(s);
    let commits = delta(&format!("{COMMIT_SECONDS}_count"));
    let seconds = delta(&format!("{COMMIT_SECONDS}_sum"));
    let jobs = delta(&format!("{COMMIT_BATCH}_sum"));
    let (b0, b1) = (before.buckets(COMMIT_SECONDS), after.buckets(COMMIT_SECONDS));
    // The histogram only knows bucket bounds, so the 99th percentile is given as "at most".
    let p99_at_most = b1
        .iter()
        .zip(b0.iter().map(|b| b.1).chain(std::iter::repeat(0.0)))
        .find(|((_, n), n0)| n - n0 >= commits * 0.99)
        .map_or(f64::NAN, |((le, _), _)| *le);
    CommitStats {
        commits,
        mean: Duration::from_secs_f64(if commits > 0.0 { seconds / commits } else { 0.0 }),
        p99_at_most,
        jobs_per_commit: if commits > 0.0 { jobs / commits } else { 0.0 },
    }
}

struct CpuSnapshot {
    replicas: Vec<BTreeMap<String, f64>>,
    bench: BTreeMap<String, f64>,
    database: Option<f64>,
    machine: f64,
}

impl CpuSnapshot {
    fn take(deployment: &Deployment) -> Self {
        Self {
            replicas: deployment.replicas.iter().map(|g| thread_cpu(&g.pid().to_string())).collect(),
            bench: thread_cpu("self"),
            database: deployment.postmaster.map(server_cpu),
            machine: machine_busy(),
        }
    }
}

/// CPU seconds used between two snapshots, split by who used them.
struct CpuUse {
    /// Each gateway's.
    replicas: Vec<f64>,
    gateway: f64,
    store_writer: f64,
    /// The PostgreSQL server's, when it can be read.
    database: Option<f64>,
    load_generator: f64,
    services: f64,
    /// Everything else the machine did meanwhile: other processes (this machine may be shared),
    /// the kernel's own threads.
    others: f64,
}

fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuUse {
    let delta = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, pick: &dyn Fn(&str) -> bool| -> f64 {
        b.iter().filter(|(k, _)| pick(k)).map(|(k, v)| v - a.get(k).copied().unwrap_or(0.0)).sum::<f64>().max(0.0)
    };
    let replicas: Vec<f64> = before.replicas.iter().zip(&after.replicas).map(|(a, b)| delta(a, b, &|_| true)).collect();
    let gateway: f64 = replicas.iter().sum();
    // "store-writer" on SQLite; "store-writer-0" and the webhooks' "store-intake" on PostgreSQL.
    let writer = |k: &str| k.starts_with("store-writer") || k == "store-intake";
    let store_writer: f64 = before.replicas.iter().zip(&after.replicas).map(|(a, b)| delta(a, b, &writer)).sum();
    let database = before.database.zip(after.database).map(|(a, b)| (b - a).max(0.0));
    let load_generator = delta(&before.bench, &after.bench, &|k| k != "services");
    let services = delta(&before.bench, &after.bench, &|k| k == "services");
    let others = (after.machine - before.machine - gateway - database.unwrap_or(0.0) - load_generator - services).max(0.0);
    CpuUse { replicas, gateway, store_writer, database, load_generator, services, others }
}

/// The answers of one run.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
    events: usize,
    elapsed: Duration,
    /// Open loop only: how late the load generator sent the latest request after it was due.
    worst_send_lag: Duration,
}

impl Outcome {
    fn requests(&self) -> usize {
        self.latencies.len()
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    fn latency_text(&self) -> String {
        common::latency_text(self.latencies.clone())
    }

    fn p99(&self) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        common::percentile(&sorted, 0.99)
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0 errors".into();
        }
        let kinds: Vec<String> = self.errors.iter().map(|(k, n)| format!("{} × {k}", thousands(*n as f64))).collect();
        format!("{} ERRORS ({})", thousands(self.error_count() as f64), kinds.join(", "))
    }
}

/// Sends one webhook; None when it was answered 200.
async fn send(client: &reqwest::Client, url: &reqwest::Url, provider: Provider, webhook: &Prepared) -> Option<String> {
    let request = match provider {
        Provider::Line => {
            client.post(url.clone()).header("content-type", "application/json").header("x-line-signature", &webhook.signature)
        }
        Provider::Twilio => client
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &webhook.signature),
    };
    match request.body(webhook.body.clone()).send().await {
        Ok(response) => {
            let status = response.status();
            // Read the answer whole, so that the connection goes back to the pool.
            let read = response.bytes().await;
            match (status, read) {
                (StatusCode::OK, Ok(_)) => None,
                (StatusCode::OK, Err(e)) => Some(format!("reading the answer: {e}")),
                (status, _) => Some(format!("HTTP {}", status.as_u16())),
            }
        }
        Err(e) => Some(format!("request failed: {e}")),
    }
}

/// `connections` workers, each sending its next webhook as soon as the previous one is answered.
/// Webhook i goes to `urls[i % urls.len()]`.
async fn closed_loop(
    client: &reqwest::Client,
    urls: &[reqwest::Url],
    provider: Provider,
    webhooks: Arc<Vec<Prepared>>,
    connections: usize,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, urls, webhooks, next) = (client.clone(), urls.to_vec(), Arc::clone(&webhooks), Arc::clone(&next));
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(webhook) = webhooks.get(i) else { break };
                let sent = Instant::now();
                let error = send(&client, &urls[i % urls.len()], provider, webhook).await;
                outcome.latencies.push(sent.elapsed());
                outcome.events += webhook.events;
                if let Some(e) = error {
                    *outcome.errors.entry(e).or_default() += 1;
                }
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    while let Some(worker) = workers.join_next().await {
        let outcome = worker.expect("a load worker panicked");
        total.latencies.extend(outcome.latencies);
        total.events += outcome.events;
        for (e, n) in outcome.errors {
            *total.errors.entry(e).or_default() += n;
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Sends webhook i at `start + i / rate` to `urls[i % urls.len()]` whatever happened to the
/// earlier ones, each on its own task; latency runs from when the request was due to when its
/// answer was read.
async fn fixed_rate(
    client: &reqwest::Client,
    urls: &[reqwest::Url],
    provider: Provider,
    webhooks: Arc<Vec<Prepared>>,
    rate: u32,
) -> Outcome {
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(webhooks.len());
    let mut worst_send_lag = Duration::ZERO;
    for i in 0..webhooks.len() {
        let due = start + Duration::from_secs(i as u64) / rate;
        tokio::time::sleep_until(due).await;
        worst_send_lag = worst_send_lag.max(tokio::time::Instant::now() - due);
        let (client, url, webhooks) = (client.clone(), urls[i % urls.len()].clone(), Arc::clone(&webhooks));
        tasks.push(tokio::spawn(async move {
            let error = send(&client, &url, provider, &webhooks[i]).await;
            (due.elapsed(), webhooks[i].events, error)
        }));
    }
    let mut total = Outcome { worst_send_lag, ..Outcome::default() };
    for task in tasks {
        let (latency, events, error) = task.await.expect("a request task panicked");
        total.latencies.push(latency);
        total.events += events;
        if let Some(e) = error {
            *total.errors.entry(e).or_default() += 1;
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// How one scenario drives the gateway.
#[derive(Clone, Copy)]
enum Load {
    ClosedLoop { requests: usize, events: usize },
    FixedRate { rate: u32, seconds: u32 },
}

/// What a backend is to reach: webhooks per second in the closed loop, and the 99th percentile
/// latency at a fixed rate.
struct Targets {
    rate: f64,
    fixed_rate: u32,
    p99: Duration,
}

struct Scenario {
    /// What GATEWAY_BENCH selects it by.
    name: &'static str,
    label: &'static str,
    provider: Provider,
    backend: Backend,
    load: Load,
    /// Whether the desk answers; when it does not, delivery backs off and stays almost idle.
    desk: bool,
    /// See [`Webhooks::anonymous`].
    anonymous: bool,
}

/// The figures a scenario ends with, for the summary.
struct Figures {
    backend: Backend,
    rate: f64,
    p99: Duration,
    errors: usize,
    counted_right: bool,
    caught_up: bool,
    /// CPU time per webhook of the gateways, and of the database when it can be read.
    gateway_cpu: Duration,
    database_cpu: Option<Duration>,
}

impl Figures {
    fn cpu_text(&self) -> String {
        match (self.backend, self.database_cpu) {
            (Backend::Sqlite, _) => format!("gateway {}", micros(self.gateway_cpu)),
            (Backend::Postgres { .. }, Some(database)) => {
                format!("gateway {} + database {} = {}", micros(self.gateway_cpu), micros(database), micros(self.gateway_cpu + database))
            }
            (Backend::Postgres { .. }, None) => format!("gateway {} + database (not measured)", micros(self.gateway_cpu)),
        }
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Waits until the processor and delivery have nothing left (or `limit` passed); returns how
/// long that took and the last counts.
async fn catch_up(deployment: &Deployment, desk: bool, limit: Duration) -> Result<(Duration, StoreCounts, bool)> {
    let started = Instant::now();
    loop {
        let counts = deployment.store_counts()?;
        if counts.pending == 0 && (counts.outbox == 0 || !desk) {
            return Ok((started.elapsed(), counts, true));
        }
        if started.elapsed() > limit {
            return Ok((started.elapsed(), counts, false));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_scenario(
    services: &Services,
    client: &reqwest::Client,
    destination: &str,
    scenario: &Scenario,
    server: Option<&PostgresServer>,
) -> Result<Figures> {
    let provider = scenario.provider;
    let mut webhooks = Webhooks::new(destination.to_owned(), scenario.anonymous);
    let warmup: Arc<Vec<Prepared>> = Arc::new((0..CUSTOMERS * WARMUP_PER_CUSTOMER).map(|_| webhooks.make(provider, 1)).collect());
    let timed: Arc<Vec<Prepared>> = Arc::new(match scenario.load {
        Load::ClosedLoop { requests, events } => (0..requests).map(|_| webhooks.make(provider, events)).collect(),
        Load::FixedRate { rate, seconds } => (0..(rate * seconds) as usize).map(|_| webhooks.make(provider, 1)).collect(),
    });
    let sent_events: usize = timed.iter().map(|w| w.events).sum();

    // Nothing listens on the discard port: the delivery fails at once and then waits.
    let desk_url = if scenario.desk { services.desk_url.clone() } else { "http://127.0.0.1:9/switchboard/events".to_owned() };
    let deployment = Deployment::start(services, client, scenario, server, &desk_url).await?;
    let urls = deployment.webhook_urls();
    if provider == Provider::Twilio {
        // The simulator refuses free-form WhatsApp messages outside the customer's 24-hour window,
        // which only its own webhooks open; open it so that greetings are sent, not refused.
        for i in 0..CUSTOMERS {
            let body = json!({"accountSid": TWILIO_SID, "customer": CUSTOMER_IDS.whatsapp(i), "lastInboundAgo": "0s"});
            client.post(format!("{}/__sim/twilio/windows", services.simulator_url)).json(&body).send().await?.error_for_status()?;
        }
    }
    // Conversations are created (profiles fetched, greetings sent) and connections opened here.
    let warm = closed_loop(client, &urls, provider, warmup, CONNECTIONS).await;
    if warm.error_count() > 0 {
        return Err(format!("warm-up: {}; gateway log:\n{}", warm.errors_text(), deployment.log_text()).into());
    }
    let (_, counts, done) = catch_up(&deployment, scenario.desk, Duration::from_secs(20)).await?;
    if !done {
        println!("  (warm-up not fully processed after 20 s: {counts:?})");
    }

    let metrics_before = deployment.metrics(client).await?;
    let desk_before = services.desk.load(Ordering::Relaxed);
    let cpu_before = CpuSnapshot::take(&deployment);
    let outcome = match scenario.load {
        Load::ClosedLoop { .. } => closed_loop(client, &urls, provider, timed, CONNECTIONS).await,
        Load::FixedRate { rate, .. } => fixed_rate(client, &urls, provider, timed, rate).await,
    };
    let cpu_after = CpuSnapshot::take(&deployment);
    let metrics_after = deployment.metrics(client).await?;
    let desk_during = services.desk.load(Ordering::Relaxed) - desk_before;
    let at_end = deployment.store_counts()?;

    let secs = outcome.elapsed.as_secs_f64();
    let rate = outcome.requests() as f64 / secs;
    let requests = thousands(outcome.requests() as f64);
    match scenario.load {
        Load::ClosedLoop { .. } => println!(
            "[{}] {}: {}/s over {requests} requests ({} events/s); latency {}; {}",
            scenario.backend,
            scenario.label,
            thousands(rate),
            thousands(outcome.events as f64 / secs),
            outcome.latency_text(),
            outcome.errors_text()
        ),
        Load::FixedRate { rate: offered, seconds } => println!(
            "[{}] {} at {}/s fixed rate for {seconds} s ({requests} requests): {}, {} (load generator at most {} late)",
            scenario.backend,
            scenario.label,
            thousands(offered as f64),
            outcome.latency_text(),
            outcome.errors_text(),
            ms(outcome.worst_send_lag)
        ),
    }

    let delivered_by: Vec<f64> = metrics_before.iter().zip(&metrics_after).map(|(a, b)| b.get(DELIVERED) - a.get(DELIVERED)).collect();
    let (metrics_before, metrics_after) = (Metrics::sum(&metrics_before), Metrics::sum(&metrics_after));
    let recorded = metrics_after.get(EVENTS_RECORDED) - metrics_before.get(EVENTS_RECORDED);
    let duplicates = metrics_after.get(EVENTS_DUPLICATE) - metrics_before.get(EVENTS_DUPLICATE);
    let in_store = at_end.inbound as usize - CUSTOMERS * WARMUP_PER_CUSTOMER;
    let counted_right = recorded as usize == sent_events && duplicates == 0.0 && in_store == sent_events;
    let commits = commit_stats(&metrics_before, &metrics_after);
    let replicas = deployment.replicas.len();
    println!(
        "  recorded: {} of {} events sent per /metrics{} ({} duplicates), {} in the store{}",
        thousands(recorded),
        thousands(sent_events as f64),
        if replicas > 1 { " of all replicas" } else { "" },
        thousands(duplicates),
        thousands(in_store as f64),
        if counted_right { "" } else { "  <-- MISMATCH" }
    );
    // PostgreSQL gives each replica a writer for webhooks beside the one for the rest.
    let (writers, writers_text) = match deployment.backend {
        Backend::Postgres { .. } => (2 * replicas, format!("the {} writers ({replicas} replicas × intake and the rest) were on average", 2 * replicas)),
        Backend::Sqlite => (1, "the one writer was".to_owned()),
    };
    println!(
        "  store: {} commits ({}/s), mean {} p99 ≤ {}, {:.1} jobs per commit; {writers_text} in a transaction {:.0}% of the time \
         ({})",
        thousands(commits.commits),
        thousands(commits.commits / secs),
        ms(commits.mean),
        ms(Duration::from_secs_f64(commits.p99_at_most.min(1e6))),
        commits.jobs_per_commit,
        100.0 * commits.commits * commits.mean.as_secs_f64() / secs / writers as f64,
        if writers > 1 { "processing runs on the leader's other writer" } else { "webhooks and processing share it" }
    );
    let cpu = cpu_use(&cpu_before, &cpu_after);
    let cores = cores();
    let per_webhook = |seconds: f64| Duration::from_secs_f64(seconds / outcome.requests().max(1) as f64);
    let gateway_text = if replicas > 1 {
        // The leader is the replica that delivered to the desk.
        let leader = (0..replicas).max_by(|&a, &b| delivered_by[a].total_cmp(&delivered_by[b])).unwrap_or(0);
        let each: Vec<String> =
            cpu.replicas.iter().enumerate().map(|(i, s)| format!("{s:.2} s{}", if i == leader { " leading" } else { "" })).collect();
        format!("gateways {:.2} s ({}; store writers {:.2} s)", cpu.gateway, each.join(" + "), cpu.store_writer)
    } else {
        format!("gateway {:.2} s (store writer {:.2} s)", cpu.gateway, cpu.store_writer)
    };
    let (database_text, database_per_webhook) = match (deployment.backend, cpu.database) {
        (Backend::Sqlite, _) => (String::new(), String::new()),
        (Backend::Postgres { .. }, Some(s)) => (format!(", database {s:.2} s"), format!(", database {}", micros(per_webhook(s)))),
        (Backend::Postgres { .. }, None) => {
            (", database not measured (not on this machine, or its processes cannot be read)".into(), String::new())
        }
    };
    println!(
        "  cpu in {secs:.2} s: {gateway_text}{database_text}, load generator {:.2} s, simulator + desk {:.2} s, other processes {:.2} s \
         = {:.2} of {cores} cores busy; per webhook: gateway {}, of it store writer {}{database_per_webhook}",
        cpu.load_generator,
        cpu.services,
        cpu.others,
        (cpu.gateway + cpu.database.unwrap_or(0.0) + cpu.load_generator + cpu.services + cpu.others) / secs,
        micros(per_webhook(cpu.gateway)),
        micros(per_webhook(cpu.store_writer)),
    );
    note_others(cpu.others, secs);
    let delivered = metrics_after.get(DELIVERED) - metrics_before.get(DELIVERED);
    let processed_during = sent_events as i64 - at_end.pending;
    let (took, after, caught_up) = catch_up(&deployment, scenario.desk, CATCH_UP_LIMIT).await?;
    let catch_up_text = if caught_up {
        format!("caught up {:.1} s after the last answer", took.as_secs_f64())
    } else {
        format!(
            "NOT caught up: {} events still pending and {} desk events queued {:.0} s later; not waited for",
            thousands(after.pending as f64),
            thousands(after.outbox as f64),
            took.as_secs_f64()
        )
    };
    println!(
        "  processing (concurrent): {} of {} events processed and {} desk deliveries ({} seen by the desk) by the last answer; {}",
        thousands(processed_during as f64),
        thousands(sent_events as f64),
        thousands(delivered),
        thousands(desk_during as f64),
        catch_up_text
    );
    if after.sends > 0 {
        println!("  ({} greetings still queued)", after.sends);
    }
    for gateway in &deployment.replicas {
        gateway.print_log_summary();
    }
    Ok(Figures {
        backend: scenario.backend,
        rate,
        p99: outcome.p99(),
        errors: outcome.error_count(),
        counted_right,
        caught_up,
        gateway_cpu: per_webhook(cpu.gateway),
        database_cpu: cpu.database.map(per_webhook),
    })
}

/// The filesystem the store is on, as /proc/mounts names it: fsync costs depend on it.
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

fn main() -> Result<()> {
    let cores = cores();
    let line = |name, label, load, desk, anonymous| {
        Scenario { name, label, provider: Provider::Line, backend: Backend::Sqlite, load, desk, anonymous }
    };
    let on_postgres = |replicas, scenario| Scenario { backend: Backend::Postgres { replicas }, ..scenario };
    let closed = Load::ClosedLoop { requests: THROUGHPUT_REQUESTS, events: 1 };
    let fixed = Load::FixedRate { rate: SQLITE_TARGETS.fixed_rate, seconds: FIXED_SECONDS };
    let pg_fixed = Load::FixedRate { rate: PG_TARGETS.fixed_rate, seconds: FIXED_SECONDS };
    let batches = Load::ClosedLoop { requests: BATCH_REQUESTS, events: BATCH_EVENTS };
    let scenarios = [
        line("line", "line webhooks (1 event, 64 connections)", closed, true, false),
        line("line-rate", "line", fixed, true, false),
        line("line-batch", "line webhooks (10 events each, 64 connections)", batches, true, false),
        Scenario {
            name: "twilio",
            label: "twilio webhooks (form, 64 connections)",
            provider: Provider::Twilio,
            backend: Backend::Sqlite,
            load: closed,
            desk: true,
            anonymous: false,
        },
        // Intake alone: group messages without a user ID, which the processor only marks done, so
        // that no conversation, delivery or send work competes with the webhooks.
        line("line-intake", "line webhooks without a customer (intake only; 1 event, 64 connections)", closed, true, true),
        line("line-rate-intake", "line without a customer (intake only),", fixed, true, true),
        on_postgres(PG_REPLICAS, line("pg-line", "line webhooks (1 event, 64 connections)", closed, true, false)),
        on_postgres(PG_REPLICAS, line("pg-line-rate", "line", pg_fixed, true, false)),
        on_postgres(1, line("pg-line-1", "line webhooks (1 event, 64 connections)", closed, true, false)),
        // Only when GATEWAY_BENCH names them: the desk down, so that the outbox grows and delivery
        // only retries now and then.
        line("line-no-desk", "line webhooks, desk down (1 event, 64 connections)", closed, false, false),
        line("line-rate-no-desk", "line, desk down,", fixed, false, false),
    ];
    // GATEWAY_BENCH=name,name,… picks scenarios by name; all but the desk-down ones run by default.
    let wanted: Vec<String> = std::env::var("GATEWAY_BENCH")
        .map(|v| v.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect())
        .unwrap_or_else(|_| scenarios.iter().filter(|s| s.desk).map(|s| s.name.to_owned()).collect());
    if let Some(unknown) = wanted.iter().find(|w| !scenarios.iter().any(|s| s.name == w.as_str())) {
        let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
        return Err(format!("GATEWAY_BENCH: no scenario {unknown:?}; there are {}", names.join(", ")).into());
    }
    let selected: Vec<&Scenario> = scenarios.iter().filter(|s| wanted.iter().any(|w| w == s.name)).collect();

    let config = simulator_config()?;
    let destination = config.line[0].bot_user_id();
    let services = start_services(config)?;
    let (runtime, client) = common::load_generator(4 * CONNECTIONS)?;
    let server = if selected.iter().any(|s| matches!(s.backend, Backend::Postgres { .. })) { Some(PostgresServer::start()?) } else { None };
    println!(
        "gateway intake: the release `switchboard gateway` binary, {cores} cores; SQLite store on {} ({}, --store-durability full: \
         fsync before 200)",
        env!("CARGO_TARGET_TMPDIR"),
        filesystem_of(Path::new(env!("CARGO_TARGET_TMPDIR")))
    );
    if let Some(server) = &server {
        println!("PostgreSQL store: {}; a new database for each scenario, its replicas sharing it", server.description);
    }
    println!(
        "the gateway processes what it records (conversations, LINE profiles, greetings, one desk delivery per event) concurrently, \
         against an in-process simulator and desk; the load generator, the gateways, their processing, the database, the simulator \
         and the desk all share the same {cores} cores; {CUSTOMERS} customers, each with an open conversation before timing starts"
    );
    let started = Instant::now();
    let mut figures: BTreeMap<&str, Figures> = BTreeMap::new();
    for scenario in selected {
        figures.insert(scenario.name, runtime.block_on(run_scenario(&services, &client, &destination, scenario, server.as_ref()))?);
    }
    summarize(&figures);
    let errors: usize = figures.values().map(|f| f.errors).sum();
    let miscounted = figures.values().filter(|f| !f.counted_right).count();
    let behind = figures.values().filter(|f| !f.caught_up).count();
    println!(
        "{errors} non-200 answers, {miscounted} runs with recorded ≠ sent, {behind} runs whose processing did not catch up within {} s; \
         bench took {:.0} s",
        CATCH_UP_LIMIT.as_secs(),
        started.elapsed().as_secs_f64()
    );
    if errors > 0 || miscounted > 0 {
        return Err("some webhooks were not answered 200 or not recorded exactly once".into());
    }
    Ok(())
}

/// The targets, for the gateway as deployed and for its intake alone, and PostgreSQL beside
/// SQLite.
fn summarize(figures: &BTreeMap<&str, Figures>) {
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let rate_text = |t: &Targets, f: &Figures| {
        format!("{}/s ({:.2}× the target) — {}", thousands(f.rate), f.rate / t.rate, verdict(f.rate >= t.rate))
    };
    let p99_text = |t: &Targets, f: &Figures| {
        let met = f.p99 < t.p99 && f.errors == 0;
        format!("{} ({:.2}× the limit) — {}", ms(f.p99), f.p99.as_secs_f64() / t.p99.as_secs_f64(), verdict(met))
    };
    // The runs of these scenarios that ran, each after what it is; None when none ran.
    let runs = |text: &dyn Fn(&Figures) -> String, names: &[(&str, &str)]| {
        let parts: Vec<String> = names.iter().filter_map(|(name, what)| figures.get(name).map(|f| format!("{what} {}", text(f)))).collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    };
    let (sqlite, pg) = (&SQLITE_TARGETS, &PG_TARGETS);
    if let Some(text) = runs(&|f| rate_text(sqlite, f), &[("line", "with processing"), ("line-intake", "intake only")]) {
        println!("target ≥ {} LINE webhooks/s on SQLite (not slower than before): {text}", thousands(sqlite.rate));
    }
    if let Some(text) = runs(&|f| p99_text(sqlite, f), &[("line-rate", "with processing"), ("line-rate-intake", "intake only")]) {
        println!("target p99 < {} at {}/s on SQLite: {text}", ms(sqlite.p99), thousands(sqlite.fixed_rate as f64));
    }
    if let Some(text) = runs(&|f| rate_text(pg, f), &[("pg-line", "with processing")]) {
        println!("target ≥ {} LINE webhooks/s with {PG_REPLICAS} replicas on PostgreSQL: {text}", thousands(pg.rate));
    }
    if let Some(text) = runs(&|f| p99_text(pg, f), &[("pg-line-rate", "with processing")]) {
        println!("target p99 < {} at {}/s with {PG_REPLICAS} replicas on PostgreSQL: {text}", ms(pg.p99), thousands(pg.fixed_rate as f64));
    }
    let beside = |f: &Figures| format!("{}/s, CPU per webhook {}", thousands(f.rate), f.cpu_text());
    let Some(line) = figures.get("line") else { return };
    let relative = |f: &Figures| {
        let ratio = |cpu: Duration| cpu.as_secs_f64() / line.gateway_cpu.as_secs_f64();
        let cpu = f.database_cpu.map_or_else(String::new, |db| format!(", {:.2}× the CPU", ratio(f.gateway_cpu + db)));
        format!("{} ({:.2}× the rate{cpu})", beside(f), f.rate / line.rate)
    };
    let postgres: Vec<String> =
        ["pg-line", "pg-line-1"].iter().filter_map(|n| figures.get(n)).map(|f| format!("{} {}", f.backend, relative(f))).collect();
    if !postgres.is_empty() {
        println!("beside SQLite (same run, same cores; closed loop with processing): SQLite {}; {}", beside(line), postgres.join("; "));
    }
}
