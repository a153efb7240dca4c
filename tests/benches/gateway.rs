//! The gateway's webhook intake under load: signed webhooks per second verified and durably
//! recorded, and latency at a fixed rate, against the real `switchboard gateway` binary.
//!
//! Each scenario starts a fresh gateway (its own SQLite store under CARGO_TARGET_TMPDIR, so on
//! the real disk and not a tmpfs where fsync is free) with the provider APIs pointed at an
//! in-process simulator and its desk at an in-process server that answers 200. The gateway
//! therefore does everything it does when deployed: besides answering webhooks it turns them
//! into conversations, fetches LINE profiles, sends greetings and delivers every event to the
//! desk, concurrently and on the same cores as the load generator, the simulator and the desk.
//!
//! Every customer writes twice before the timed part (conversations exist, connections are
//! open), so the timed part measures the steady state of ongoing conversations. Bodies are
//! built and signed before timing, and every webhook event ID is new, so nothing is
//! deduplicated. Scenarios:
//! (a) LINE, one event per webhook, 64 connections, closed loop;
//! (b) LINE at a fixed 5,000 webhooks/s (open loop: latency is taken from when a request was due,
//!     not from when it was sent, so a stall counts in full for every request it held up);
//! (c) LINE, ten events per webhook, 64 connections;
//! (d) Twilio (WhatsApp form posts), 64 connections;
//! (e), (f) as (a) and (b) with group messages that carry no user ID: the processor has no
//!     customer to act for and only marks them done, which shows the intake on its own.
//! Two more run only when named (below): (a) and (b) with the desk down, so that the outbox grows
//! while the webhooks keep coming, as during a desk outage.
//!
//! After each run the gateway's /metrics give the store's commits and batch sizes and must count
//! exactly the events sent as recorded; the store itself is counted too. CPU time is read per
//! thread from /proc (the gateway, its store writer, the load generator, the simulator and desk)
//! and for the whole machine, so that a run disturbed by other processes says so. Targets: 10,000
//! LINE webhooks/s, and p99 under 10 ms at 5,000/s.
//!
//! Run with `cargo bench --bench gateway`; `GATEWAY_BENCH=line,line-rate,line-no-desk` (names as
//! in `main`) runs only those scenarios.

#[path = "common.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use common::{
    Customers, Gateway, LINE_SECRET, NAMESPACE, Provider, Result, STORE_FILE, TWILIO_ACCOUNT, TWILIO_SID, TWILIO_TOKEN, WHATSAPP_NUMBER,
    cores, machine_busy, ms, note_others, thousands, thread_cpu,
};
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
/// The fixed-rate run.
const FIXED_RATE: u32 = 5_000;
const FIXED_SECONDS: u32 = 5;
/// The targets.
const TARGET_RATE: f64 = 10_000.0;
const TARGET_P99: Duration = Duration::from_millis(10);
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
    let account = provider.account();
    let (provider_config, channel) = provider.config();
    let config = json!({
        "version": 1,
        "account": {
            "namespace": NAMESPACE,
            "name": account,
            "callbackPath": common::callback_path(account),
            "callbackUrl": callback_url(account),
            "provider": provider_config,
        },
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
            "delivery": {
                "url": desk_url,
                "signingSecret": {"env": "SWITCHBOARD_SECRET_1"},
                "agentApiToken": {"env": "SWITCHBOARD_SECRET_2"},
            },
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

    /// Counts in the store itself, read through a second connection as `sqlite3` would.
    fn store_counts(&self) -> Result<StoreCounts> {
        let c = Connection::open_with_flags(self.dir.join(STORE_FILE), OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        c.busy_timeout(Duration::from_secs(5))?;
        let (inbound, pending) = c.query_row("SELECT count(*), coalesce(sum(state = 0), 0) FROM inbound", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let outbox: i64 = c.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        let sends: i64 = c.query_row("SELECT count(*) FROM sends", [], |r| r.get(0))?;
        Ok(StoreCounts { inbound, pending, outbox, sends })
    }
}

#[derive(Clone, Copy, Debug)]
struct StoreCounts {
    inbound: i64,
    pending: i64,
    outbox: i64,
    sends: i64,
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
    gateway: BTreeMap<String, f64>,
    bench: BTreeMap<String, f64>,
    machine: f64,
}

impl CpuSnapshot {
    fn take(gateway: &Gateway) -> Self {
        Self { gateway: thread_cpu(&gateway.pid().to_string()), bench: thread_cpu("self"), machine: machine_busy() }
    }
}

/// CPU seconds used between two snapshots, split by who used them.
struct CpuUse {
    gateway: f64,
    store_writer: f64,
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
    let gateway = delta(&before.gateway, &after.gateway, &|_| true);
    let load_generator = delta(&before.bench, &after.bench, &|k| k != "services");
    let services = delta(&before.bench, &after.bench, &|k| k == "services");
    let others = (after.machine - before.machine - gateway - load_generator - services).max(0.0);
    CpuUse { gateway, store_writer: delta(&before.gateway, &after.gateway, &|k| k == "store-writer"), load_generator, services, others }
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
async fn closed_loop(
    client: &reqwest::Client,
    url: &reqwest::Url,
    provider: Provider,
    webhooks: Arc<Vec<Prepared>>,
    connections: usize,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, webhooks, next) = (client.clone(), url.clone(), Arc::clone(&webhooks), Arc::clone(&next));
        workers.spawn(async move {
            let mut outcome = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(webhook) = webhooks.get(i) else { break };
                let sent = Instant::now();
                let error = send(&client, &url, provider, webhook).await;
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

/// Sends webhook i at `start + i / rate` whatever happened to the earlier ones, each on its own
/// task; latency runs from when the request was due to when its answer was read.
async fn fixed_rate(client: &reqwest::Client, url: &reqwest::Url, provider: Provider, webhooks: Arc<Vec<Prepared>>, rate: u32) -> Outcome {
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(webhooks.len());
    let mut worst_send_lag = Duration::ZERO;
    for i in 0..webhooks.len() {
        let due = start + Duration::from_secs(i as u64) / rate;
        tokio::time::sleep_until(due).await;
        worst_send_lag = worst_send_lag.max(tokio::time::Instant::now() - due);
        let (client, url, webhooks) = (client.clone(), url.clone(), Arc::clone(&webhooks));
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

struct Scenario {
    /// What GATEWAY_BENCH selects it by.
    name: &'static str,
    label: &'static str,
    provider: Provider,
    load: Load,
    /// Whether the desk answers; when it does not, delivery backs off and stays almost idle.
    desk: bool,
    /// See [`Webhooks::anonymous`].
    anonymous: bool,
}

/// The figures a scenario ends with, for the summary.
struct Figures {
    rate: f64,
    p99: Duration,
    errors: usize,
    counted_right: bool,
}

/// Waits until the processor and delivery have nothing left (or `limit` passed); returns how
/// long that took and the last counts.
async fn catch_up(gateway: &Gateway, desk: bool, limit: Duration) -> Result<(Duration, StoreCounts, bool)> {
    let started = Instant::now();
    loop {
        let counts = gateway.store_counts()?;
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
    name: &str,
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
    let mut gateway = Gateway::start(provider, &services.simulator_url, name, |_| gateway_config(provider, &desk_url))?;
    gateway.wait_ready(client).await?;
    if provider == Provider::Twilio {
        // The simulator refuses free-form WhatsApp messages outside the customer's 24-hour window,
        // which only its own webhooks open; open it so that greetings are sent, not refused.
        for i in 0..CUSTOMERS {
            let body = json!({"accountSid": TWILIO_SID, "customer": CUSTOMER_IDS.whatsapp(i), "lastInboundAgo": "0s"});
            client.post(format!("{}/__sim/twilio/windows", services.simulator_url)).json(&body).send().await?.error_for_status()?;
        }
    }
    // Conversations are created (profiles fetched, greetings sent) and connections opened here.
    let warm = closed_loop(client, &gateway.webhook_url, provider, warmup, CONNECTIONS).await;
    if warm.error_count() > 0 {
        return Err(format!("warm-up: {}; gateway log:\n{}", warm.errors_text(), gateway.log_text()).into());
    }
    let (_, counts, done) = catch_up(&gateway, scenario.desk, Duration::from_secs(20)).await?;
    if !done {
        println!("  (warm-up not fully processed after 20 s: {counts:?})");
    }

    let metrics_before = gateway.metrics(client).await?;
    let desk_before = services.desk.load(Ordering::Relaxed);
    let cpu_before = CpuSnapshot::take(&gateway);
    let outcome = match scenario.load {
        Load::ClosedLoop { .. } => closed_loop(client, &gateway.webhook_url, provider, timed, CONNECTIONS).await,
        Load::FixedRate { rate, .. } => fixed_rate(client, &gateway.webhook_url, provider, timed, rate).await,
    };
    let cpu_after = CpuSnapshot::take(&gateway);
    let metrics_after = gateway.metrics(client).await?;
    let desk_during = services.desk.load(Ordering::Relaxed) - desk_before;
    let at_end = gateway.store_counts()?;

    let secs = outcome.elapsed.as_secs_f64();
    let rate = outcome.requests() as f64 / secs;
    let requests = thousands(outcome.requests() as f64);
    match scenario.load {
        Load::ClosedLoop { .. } => println!(
            "{}: {}/s over {requests} requests ({} events/s); latency {}; {}",
            scenario.label,
            thousands(rate),
            thousands(outcome.events as f64 / secs),
            outcome.latency_text(),
            outcome.errors_text()
        ),
        Load::FixedRate { rate: offered, seconds } => println!(
            "{} at {}/s fixed rate for {seconds} s ({requests} requests): {}, {} (load generator at most {} late)",
            scenario.label,
            thousands(offered as f64),
            outcome.latency_text(),
            outcome.errors_text(),
            ms(outcome.worst_send_lag)
        ),
    }

    let recorded = metrics_after.get(EVENTS_RECORDED) - metrics_before.get(EVENTS_RECORDED);
    let duplicates = metrics_after.get(EVENTS_DUPLICATE) - metrics_before.get(EVENTS_DUPLICATE);
    let in_store = at_end.inbound as usize - CUSTOMERS * WARMUP_PER_CUSTOMER;
    let counted_right = recorded as usize == sent_events && duplicates == 0.0 && in_store == sent_events;
    let commits = commit_stats(&metrics_before, &metrics_after);
    println!(
        "  recorded: {} of {} events sent per /metrics ({} duplicates), {} in the store{}",
        thousands(recorded),
        thousands(sent_events as f64),
        thousands(duplicates),
        thousands(in_store as f64),
        if counted_right { "" } else { "  <-- MISMATCH" }
    );
    println!(
        "  store: {} commits ({}/s), mean {} p99 ≤ {}, {:.1} jobs per commit; the one writer was in a transaction {:.0}% of the time \
         (webhooks and processing share it)",
        thousands(commits.commits),
        thousands(commits.commits / secs),
        ms(commits.mean),
        ms(Duration::from_secs_f64(commits.p99_at_most.min(1e6))),
        commits.jobs_per_commit,
        100.0 * commits.commits * commits.mean.as_secs_f64() / secs
    );
    let cpu = cpu_use(&cpu_before, &cpu_after);
    let cores = cores();
    println!(
        "  cpu in {:.2} s: gateway {:.2} s (store writer {:.2} s), load generator {:.2} s, simulator + desk {:.2} s, \
         other processes {:.2} s \
         = {:.2} of {cores} cores busy; per webhook: gateway {:.0} µs, of it store writer {:.0} µs",
        secs,
        cpu.gateway,
        cpu.store_writer,
        cpu.load_generator,
        cpu.services,
        cpu.others,
        (cpu.gateway + cpu.load_generator + cpu.services + cpu.others) / secs,
        cpu.gateway / outcome.requests().max(1) as f64 * 1e6,
        cpu.store_writer / outcome.requests().max(1) as f64 * 1e6,
    );
    note_others(cpu.others, secs);
    let delivered = metrics_after.get(DELIVERED) - metrics_before.get(DELIVERED);
    let processed_during = sent_events as i64 - at_end.pending;
    let (took, after, done) = catch_up(&gateway, scenario.desk, CATCH_UP_LIMIT).await?;
    let catch_up_text = if done {
        format!("caught up {:.1} s after the last answer", took.as_secs_f64())
    } else {
        format!(
            "{} events still pending and {} desk events queued {:.0} s later; not waited for",
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
    gateway.print_log_summary();
    Ok(Figures { rate, p99: outcome.p99(), errors: outcome.error_count(), counted_right })
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
    let config = simulator_config()?;
    let destination = config.line[0].bot_user_id();
    let services = start_services(config)?;
    let (runtime, client) = common::load_generator(4 * CONNECTIONS)?;
    println!(
        "gateway intake: the release `switchboard gateway` binary, store on {} ({}, --store-durability full: fsync before 200), \
         {cores} cores",
        env!("CARGO_TARGET_TMPDIR"),
        filesystem_of(Path::new(env!("CARGO_TARGET_TMPDIR")))
    );
    println!(
        "the gateway processes what it records (conversations, LINE profiles, greetings, one desk delivery per event) concurrently, \
         against an in-process simulator and desk; the load generator, the gateway, its processing, the simulator and the desk \
         all share the same {cores} cores; {CUSTOMERS} customers, each with an open conversation before timing starts"
    );
    let line = |name, label, load, desk, anonymous| Scenario { name, label, provider: Provider::Line, load, desk, anonymous };
    let closed = Load::ClosedLoop { requests: THROUGHPUT_REQUESTS, events: 1 };
    let fixed = Load::FixedRate { rate: FIXED_RATE, seconds: FIXED_SECONDS };
    let batches = Load::ClosedLoop { requests: BATCH_REQUESTS, events: BATCH_EVENTS };
    let scenarios = [
        line("line", "line webhooks (1 event, 64 connections)", closed, true, false),
        line("line-rate", "line", fixed, true, false),
        line("line-batch", "line webhooks (10 events each, 64 connections)", batches, true, false),
        Scenario {
            name: "twilio",
            label: "twilio webhooks (form, 64 connections)",
            provider: Provider::Twilio,
            load: closed,
            desk: true,
            anonymous: false,
        },
        // Intake alone: group messages without a user ID, which the processor only marks done, so
        // that no conversation, delivery or send work competes with the webhooks.
        line("line-intake", "line webhooks without a customer (intake only; 1 event, 64 connections)", closed, true, true),
        line("line-rate-intake", "line without a customer (intake only),", fixed, true, true),
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
    let started = Instant::now();
    let mut figures: BTreeMap<&str, Figures> = BTreeMap::new();
    for scenario in scenarios.iter().filter(|s| wanted.iter().any(|w| w == s.name)) {
        figures.insert(scenario.name, runtime.block_on(run_scenario(&services, &client, &destination, scenario, scenario.name))?);
    }
    // The targets, for the gateway as deployed and for its intake alone.
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let rate_text =
        |f: &Figures| format!("{}/s ({:.2}× the target) — {}", thousands(f.rate), f.rate / TARGET_RATE, verdict(f.rate >= TARGET_RATE));
    let p99_text = |f: &Figures| {
        let met = f.p99 < TARGET_P99 && f.errors == 0;
        format!("{} ({:.2}× the limit) — {}", ms(f.p99), f.p99.as_secs_f64() / TARGET_P99.as_secs_f64(), verdict(met))
    };
    let both = |deployed: Option<&Figures>, intake: Option<&Figures>, text: &dyn Fn(&Figures) -> String| {
        let mut parts = Vec::new();
        if let Some(f) = deployed {
            parts.push(format!("with processing {}", text(f)));
        }
        if let Some(f) = intake {
            parts.push(format!("intake only {}", text(f)));
        }
        parts.join("; ")
    };
    if figures.contains_key("line") || figures.contains_key("line-intake") {
        let text = both(figures.get("line"), figures.get("line-intake"), &rate_text);
        println!("target ≥ {} LINE webhooks/s: {text}", thousands(TARGET_RATE));
    }
    if figures.contains_key("line-rate") || figures.contains_key("line-rate-intake") {
        println!(
            "target p99 < {} at {}/s: {}",
            ms(TARGET_P99),
            thousands(FIXED_RATE as f64),
            both(figures.get("line-rate"), figures.get("line-rate-intake"), &p99_text)
        );
    }
    let errors: usize = figures.values().map(|f| f.errors).sum();
    let miscounted = figures.values().filter(|f| !f.counted_right).count();
    println!("{errors} non-200 answers, {miscounted} runs with recorded ≠ sent; bench took {:.0} s", started.elapsed().as_secs_f64());
    if errors > 0 || miscounted > 0 {
        return Err("some webhooks were not answered 200 or not recorded exactly once".into());
    }
    Ok(())
}
