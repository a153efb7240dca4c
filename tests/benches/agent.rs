//! The agent API under load: agents' sends per second through the real `switchboard gateway`
//! binary (release) to the in-process provider simulator, with the latency of the API's answer
//! (202, the send durably queued) and the time until the simulated provider has the message.
//!
//! Each scenario starts a fresh gateway (its own SQLite store under CARGO_TARGET_TMPDIR, on the
//! real disk) with the provider APIs pointed at an in-process simulator and its desk at an
//! in-process server that answers 200 and notes every `conversation.created` and
//! `message.delivered`. Before timing, CONVERSATIONS customers write once through the simulator
//! (which signs the webhooks and, on WhatsApp, opens their 24-hour window), so that every send
//! goes to an open conversation. The timed part is a closed loop of CONNECTIONS agents sending
//! one message after another, spread over the conversations, each with a new clientMessageId.
//! Scenarios:
//! (a) WhatsApp texts (Twilio Messages API);
//! (b) WhatsApp templates (an approved Content SID with two variables, different per message);
//! (c) LINE texts (the first per conversation a reply, the others pushes with a retry key).
//!
//! Time to delivered is taken from the request's start to the simulator's `sentAt` for the
//! message (millisecond clock of the same machine), and to the desk's `message.delivered`.
//! CPU time is read per thread from /proc, so that a run disturbed by other processes says so.
//!
//! Run with `cargo bench --bench agent`; `AGENT_BENCH=whatsapp-text,line-text` runs only those.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard::config::GatewayConfig;
use switchboard::simulator::{self, RunningSimulator, SimulatorConfig};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const NAMESPACE: &str = "support";
const LINE_ACCOUNT: &str = "contoso-line";
const TWILIO_ACCOUNT: &str = "contoso-whatsapp";
const LINE_CHANNEL_ID: &str = "1657123456";
const LINE_SECRET: &str = "bench-line-channel-secret-3c91d7";
const LINE_TOKEN: &str = "bench-line-access-token-0a6f42";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "bench-twilio-auth-token-e27b15";
const WHATSAPP_NUMBER: &str = "+14155550100";
const DESK_SIGNING_SECRET: &str = "bench-desk-signing-secret";
const AGENT_TOKEN: &str = "bench-desk-agent-token";
const TEMPLATE_BODY: &str = "Hello {{1}}, your order {{2}} has shipped";

/// Open conversations the sends are spread over.
const CONVERSATIONS: usize = 200;
/// Agents sending at once (closed loop).
const CONNECTIONS: usize = 32;
/// Sends of one scenario, unless its time is up first.
const SENDS: usize = 10_000;
/// The most a scenario's timed part may take.
const SEND_TIME_LIMIT: Duration = Duration::from_secs(10);
/// How long the gateway may take to deliver what it accepted, after the last answer.
const DELIVERY_LIMIT: Duration = Duration::from_secs(15);
/// Linux reports thread CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Line,
    Twilio,
}

/// What the agents send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Template,
}

fn line_user(i: usize) -> String {
    format!("U{:016x}{:016x}", 0xa9e1_7000_0000_0000u64 + i as u64, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn whatsapp_customer(i: usize) -> String {
    format!("+90555{:07}", 2_000_000 + i)
}

fn callback_path(account: &str) -> String {
    format!("/switchboard/{NAMESPACE}/{account}/webhook")
}

/// What the desk saw: conversations by customer, and when each message.delivered arrived.
#[derive(Default)]
struct DeskLog {
    conversations: HashMap<String, String>,
    delivered: HashMap<String, Instant>,
    failed: usize,
}

/// The simulator and the desk, on their own runtime thread ("services") so that their CPU time
/// can be told apart from the load generator's.
struct Services {
    _runtime: tokio::runtime::Runtime,
    _simulator: RunningSimulator,
    simulator_url: String,
    desk_url: String,
    desk: Arc<Mutex<DeskLog>>,
}

async fn desk_event(State(log): State<Arc<Mutex<DeskLog>>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let Ok(event) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    let mut log = log.lock().unwrap();
    match event["type"].as_str() {
        Some("conversation.created") => {
            let customer = event["conversation"]["customer"]["id"].as_str().unwrap_or_default().to_owned();
            let id = event["conversation"]["id"].as_str().unwrap_or_default().to_owned();
            log.conversations.insert(customer, id);
        }
        Some("message.delivered") => {
            if let Some(client_id) = event["message"]["clientMessageId"].as_str() {
                log.delivered.entry(client_id.to_owned()).or_insert(at);
            }
        }
        Some("message.failed") => log.failed += 1,
        _ => {}
    }
    StatusCode::OK
}

fn start_services() -> Result<Services> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("services").enable_all().build()?;
    let config: SimulatorConfig = serde_json::from_value(json!({
        "line": [{"channelId": LINE_CHANNEL_ID, "channelSecret": LINE_SECRET, "accessToken": LINE_TOKEN, "displayName": "Contoso"}],
        "twilio": [{"accountSid": TWILIO_SID, "authToken": TWILIO_TOKEN, "numbers": [{"phoneNumber": WHATSAPP_NUMBER}]}],
        "webhookTimeout": "60s",
    }))?;
    let desk = Arc::new(Mutex::new(DeskLog::default()));
    let log = Arc::clone(&desk);
    let (simulator, desk_addr) = runtime.block_on(async move {
        let simulator = simulator::start(config, "127.0.0.1:0".parse().expect("an address")).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let desk_addr = listener.local_addr()?;
        let app = Router::new().fallback(desk_event).with_state(log);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok::<_, Box<dyn Error + Send + Sync>>((simulator, desk_addr))
    })?;
    Ok(Services {
        simulator_url: simulator.base_url().to_owned(),
        _simulator: simulator,
        _runtime: runtime,
        desk_url: format!("http://{desk_addr}/events"),
        desk,
    })
}

fn free_port() -> Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The configuration the controller would render: one workstream, no automated messages (so
/// that only the agents' sends go out), and on WhatsApp the approved template.
fn gateway_config(provider: Provider, desk_url: &str, webhook_url: &str, content_sid: Option<&str>) -> Result<String> {
    let (account, provider_config, channel) = match provider {
        Provider::Line => (LINE_ACCOUNT, json!({"type": "Line", "channelId": LINE_CHANNEL_ID}), json!({"type": "Line"})),
        Provider::Twilio => (
            TWILIO_ACCOUNT,
            json!({"type": "TwilioWhatsApp", "accountSid": TWILIO_SID, "numbers": [{"name": "main", "number": WHATSAPP_NUMBER}]}),
            json!({"type": "WhatsApp", "numberName": "main", "number": WHATSAPP_NUMBER}),
        ),
    };
    let templates: Vec<Value> = content_sid
        .map(|sid| {
            json!({
                "name": "order-update", "templateName": "order_update", "category": "Utility", "defaultLanguage": "en",
                "localizations": [{"language": "en", "body": TEMPLATE_BODY, "contentSid": sid, "variables": {"1": "Ann", "2": "A-1"}}],
            })
        })
        .into_iter()
        .collect();
    let config = json!({
        "version": 1,
        "account": {
            "namespace": NAMESPACE, "name": account, "callbackPath": callback_path(account), "callbackUrl": webhook_url,
            "provider": provider_config,
        },
        "workstreams": [{
            "name": "support", "generation": 1, "channel": channel, "language": "en",
            "distribution": {"mode": "Push", "fallbackQueue": "general", "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
            "queues": [{"name": "general"}],
            "delivery": {
                "url": desk_url, "signingSecret": {"env": "SWITCHBOARD_SECRET_1"}, "agentApiToken": {"env": "SWITCHBOARD_SECRET_2"},
            },
            "rules": {"classification": [], "routeToQueue": []},
        }],
        "templates": templates,
    })
    .to_string();
    GatewayConfig::from_json(&config)?;
    Ok(config)
}

/// A running `switchboard gateway`, killed when dropped.
struct Gateway {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    webhook_url: String,
    agent_url: String,
    ready_url: String,
}

impl Gateway {
    fn start(provider: Provider, services: &Services, content_sid: Option<&str>, name: &str) -> Result<Self> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (webhook, metrics, agent) = (free_port()?, free_port()?, free_port()?);
        let account = if provider == Provider::Line { LINE_ACCOUNT } else { TWILIO_ACCOUNT };
        let webhook_url = format!("http://{webhook}{}", callback_path(account));
        let config = dir.join("gateway.json");
        std::fs::write(&config, gateway_config(provider, &services.desk_url, &webhook_url, content_sid)?)?;
        let log = dir.join("gateway.log");
        let sim = &services.simulator_url;
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("gateway")
            .arg("--config")
            .arg(&config)
            .arg("--store")
            .arg(dir.join("gateway.db"))
            .args(["--store-durability", "full"])
            .args(["--webhook-addr", &webhook.to_string(), "--metrics-addr", &metrics.to_string()])
            .args(["--agent-api-addr", &agent.to_string()])
            .args(["--line-api-url", sim, "--line-data-api-url", sim, "--twilio-api-url", sim])
            .args(["--twilio-content-url", sim, "--twilio-messaging-url", sim])
            .env("RUST_LOG", "warn")
            .env("SWITCHBOARD_SECRET_1", DESK_SIGNING_SECRET)
            .env("SWITCHBOARD_SECRET_2", AGENT_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        match provider {
            Provider::Line => {
                command.env("SWITCHBOARD_LINE_CHANNEL_SECRET", LINE_SECRET).env("SWITCHBOARD_LINE_CHANNEL_ACCESS_TOKEN", LINE_TOKEN)
            }
            Provider::Twilio => command.env("SWITCHBOARD_TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        };
        let child = command.spawn()?;
        Ok(Self { child, dir, log, webhook_url, agent_url: format!("http://{agent}"), ready_url: format!("http://{metrics}/readyz") })
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(&self.ready_url).send().await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the gateway exited ({status}); its log:\n{}", self.log_text()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("the gateway did not become ready in 20 s; its log:\n{}", self.log_text()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates the template's Content at the simulated Twilio and approves it; returns its SID.
async fn approved_content(client: &reqwest::Client, sim: &str) -> Result<String> {
    let body = json!({
        "friendly_name": "order_update", "language": "en", "variables": {"1": "Ann", "2": "A-1"},
        "types": {"twilio/text": {"body": TEMPLATE_BODY}},
    });
    let created: Value = client
        .post(format!("{sim}/v1/Content"))
        .basic_auth(TWILIO_SID, Some(TWILIO_TOKEN))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let sid = created["sid"].as_str().ok_or("no content SID")?.to_owned();
    client
        .post(format!("{sim}/v1/Content/{sid}/ApprovalRequests/whatsapp"))
        .basic_auth(TWILIO_SID, Some(TWILIO_TOKEN))
        .json(&json!({"name": "order_update", "category": "UTILITY"}))
        .send()
        .await?
        .error_for_status()?;
    client.post(format!("{sim}/__sim/content/{sid}/approval")).json(&json!({"status": "approved"})).send().await?.error_for_status()?;
    Ok(sid)
}

/// Every customer writes once, through the simulator; returns the conversation IDs once the desk
/// has them all.
async fn open_conversations(client: &reqwest::Client, services: &Services, gateway: &Gateway, provider: Provider) -> Result<Vec<String>> {
    let customers: Vec<String> =
        (0..CONVERSATIONS).map(|i| if provider == Provider::Line { line_user(i) } else { whatsapp_customer(i) }).collect();
    let sim = services.simulator_url.clone();
    let url = gateway.webhook_url.clone();
    let results: Vec<Result<()>> = futures::future::join_all(customers.chunks(CONVERSATIONS / 8).map(|chunk| {
        let (client, sim, url) = (client.clone(), sim.clone(), url.clone());
        let chunk = chunk.to_vec();
        async move {
            for (i, customer) in chunk.iter().enumerate() {
                let (path, body) = match provider {
                    Provider::Line => {
                        let name = format!("Customer {i}");
                        ("line", json!({"type": "text", "text": "Hello, a question", "url": url, "userId": customer, "displayName": name}))
                    }
                    Provider::Twilio => {
                        ("twilio", json!({"to": WHATSAPP_NUMBER, "from": customer, "profileName": "Ayşe", "body": "Merhaba", "url": url}))
                    }
                };
                let response = client.post(format!("{sim}/__sim/customer/{path}")).json(&body).send().await?;
                let answer: Value = response.error_for_status()?.json().await?;
                if answer["delivery"]["statusCode"] != 200 {
                    return Err(format!("the gateway did not take a webhook: {answer}").into());
                }
            }
            Ok(())
        }
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        {
            let log = services.desk.lock().unwrap();
            let ids: Vec<String> = customers
                .iter()
                .filter_map(|c| {
                    log.conversations.get(&format!("{}{c}", if provider == Provider::Twilio { "whatsapp:" } else { "" })).cloned()
                })
                .collect();
            if ids.len() == CONVERSATIONS {
                return Ok(ids);
            }
            if Instant::now() > deadline {
                return Err(format!("only {} of {CONVERSATIONS} conversations reached the desk in 30 s", ids.len()).into());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One send: when it started (both clocks), how long the answer took, what it was.
struct Sent {
    client_id: String,
    text: String,
    started: Instant,
    started_wall: SystemTime,
    latency: Duration,
    error: Option<String>,
}

/// CONNECTIONS agents send one message after another until SENDS were sent or the time is up.
async fn send_loop(
    client: &reqwest::Client,
    gateway: &Gateway,
    conversations: Arc<Vec<String>>,
    kind: Kind,
    name: &str,
) -> (Vec<Sent>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, next, conversations) = (client.clone(), Arc::clone(&next), Arc::clone(&conversations));
        let url = gateway.agent_url.clone();
        let name = name.to_owned();
        workers.spawn(async move {
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SENDS || started.elapsed() > SEND_TIME_LIMIT {
                    break;
                }
                let conversation = &conversations[i % conversations.len()];
                let client_id = format!("{name}-{i}");
                let (body, text) = match kind {
                    Kind::Text => {
                        let text = format!("Thanks for waiting; your case {i} is with the warehouse now.");
                        (json!({"clientMessageId": client_id, "text": text}), text)
                    }
                    Kind::Template => {
                        let (customer, order) = (format!("Customer {}", i % conversations.len()), format!("B-{i:06}"));
                        let text = TEMPLATE_BODY.replace("{{1}}", &customer).replace("{{2}}", &order);
                        let template = json!({"name": "order-update", "variables": {"1": customer, "2": order}});
                        (json!({"clientMessageId": client_id, "template": template}), text)
                    }
                };
                let (at, at_wall) = (Instant::now(), SystemTime::now());
                let request = client.post(format!("{url}/v1/conversations/{conversation}/messages")).bearer_auth(AGENT_TOKEN).json(&body);
                let error = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let read = response.bytes().await;
                        match (status.as_u16(), read) {
                            (202, Ok(_)) => None,
                            (code, Ok(body)) => {
                                Some(format!("HTTP {code} {}", String::from_utf8_lossy(&body).chars().take(120).collect::<String>()))
                            }
                            (_, Err(e)) => Some(format!("reading the answer: {e}")),
                        }
                    }
                    Err(e) => Some(format!("request failed: {e}")),
                };
                sent.push(Sent { client_id, text, started: at, started_wall: at_wall, latency: at.elapsed(), error });
            }
            sent
        });
    }
    let mut all = Vec::new();
    while let Some(worker) = workers.join_next().await {
        all.extend(worker.expect("a send worker panicked"));
    }
    (all, started.elapsed())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn latency_text(mut values: Vec<Duration>) -> String {
    values.sort_unstable();
    format!(
        "p50 {} p90 {} p99 {} max {}",
        ms(percentile(&values, 0.50)),
        ms(percentile(&values, 0.90)),
        ms(percentile(&values, 0.99)),
        ms(values.last().copied().unwrap_or_default())
    )
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU seconds per thread name of a process.
fn thread_cpu(pid: &str) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        *by_name.entry(name).or_insert(0.0) += ticks / TICKS_PER_SECOND;
    }
    by_name
}

/// CPU seconds the whole machine was busy, from the first line of /proc/stat.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum::<f64>() / TICKS_PER_SECOND
}

/// CPU seconds of (the gateway, this process's load generator, the simulator and desk, the whole
/// machine) so far.
fn cpu_now(gateway: &Gateway) -> (f64, f64, f64, f64) {
    let own = thread_cpu("self");
    let services: f64 = own.iter().filter(|(k, _)| *k == "services").map(|(_, v)| v).sum();
    let load: f64 = own.values().sum::<f64>() - services;
    (thread_cpu(&gateway.child.id().to_string()).values().sum(), load, services, machine_busy())
}

struct Scenario {
    name: &'static str,
    label: &'static str,
    provider: Provider,
    kind: Kind,
}

/// The figures a scenario ends with, for the summary.
struct Figures {
    errors: usize,
    undelivered: usize,
}

async fn run_scenario(
    services: &Services,
    client: &reqwest::Client,
    gateway: &Gateway,
    conversations: Arc<Vec<String>>,
    scenario: &Scenario,
) -> Result<Figures> {
    let sim = &services.simulator_url;
    client.delete(format!("{sim}/__sim/messages")).send().await?.error_for_status()?;
    let cpu_before = cpu_now(gateway);
    let (sent, elapsed) = send_loop(client, gateway, conversations, scenario.kind, scenario.name).await;
    let cpu_after = cpu_now(gateway);
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.error.is_none()).collect();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in &sent {
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "{}: {}/s accepted over {} sends ({CONNECTIONS} agents at once, {CONVERSATIONS} conversations); API answer {}; {}",
        scenario.label,
        thousands(accepted.len() as f64 / secs),
        thousands(sent.len() as f64),
        latency_text(sent.iter().map(|s| s.latency).collect()),
        if errors.is_empty() {
            "0 errors".to_owned()
        } else {
            let kinds: Vec<String> = errors.iter().take(3).map(|(k, n)| format!("{n} × {k}")).collect();
            format!("{} ERRORS ({})", errors.values().sum::<usize>(), kinds.join(", "))
        }
    );

    // Until the desk was told of every accepted send (or the limit).
    let last_answer = Instant::now();
    let wanted: Vec<String> = accepted.iter().map(|s| s.client_id.clone()).collect();
    let (desk_times, failed) = loop {
        let (times, failed) = {
            let log = services.desk.lock().unwrap();
            (wanted.iter().map(|id| log.delivered.get(id).copied()).collect::<Vec<_>>(), log.failed)
        };
        let done = times.iter().filter(|t| t.is_some()).count() + failed;
        if done >= wanted.len() || last_answer.elapsed() > DELIVERY_LIMIT {
            break (times, failed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let caught_up = last_answer.elapsed();
    let messages: Value = client.get(format!("{sim}/__sim/messages")).send().await?.error_for_status()?.json().await?;
    let sent_at: HashMap<&str, SystemTime> = messages["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let at: jiff::Timestamp = m["sentAt"].as_str()?.parse().ok()?;
            Some((m["body"].as_str()?, SystemTime::from(at)))
        })
        .collect();
    let mut at_simulator = Vec::new();
    let mut last_at_simulator = Instant::now() - caught_up;
    for s in &accepted {
        if let Some(at) = sent_at.get(s.text.as_str()) {
            let took = at.duration_since(s.started_wall).unwrap_or_default();
            at_simulator.push(took);
            last_at_simulator = last_at_simulator.max(s.started + took);
        }
    }
    let desk_told: Vec<Duration> = accepted.iter().zip(&desk_times).filter_map(|(s, t)| t.map(|t| t.duration_since(s.started))).collect();
    let first_start = sent.iter().map(|s| s.started).min().unwrap_or(last_answer);
    let through = last_at_simulator.saturating_duration_since(first_start).as_secs_f64().max(1e-3);
    println!(
        "  delivered to the simulated provider: {} of {} ({}/s from the first request to the last one there); time to delivered {}",
        thousands(at_simulator.len() as f64),
        thousands(accepted.len() as f64),
        thousands(at_simulator.len() as f64 / through),
        latency_text(at_simulator.clone())
    );
    println!(
        "  desk told (message.delivered): {} ({} failed); time to the event {}; all done {:.1} s after the last answer",
        thousands(desk_told.len() as f64),
        failed,
        latency_text(desk_told),
        caught_up.as_secs_f64()
    );
    let (gateway_cpu, load, services_cpu, machine) =
        (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1, cpu_after.2 - cpu_before.2, cpu_after.3 - cpu_before.3);
    let others = (machine - gateway_cpu - load - services_cpu).max(0.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "  cpu while sending ({secs:.2} s): gateway {gateway_cpu:.2} s ({:.0} µs per send), load generator {load:.2} s, simulator + desk \
         {services_cpu:.2} s, other processes {others:.2} s = {:.2} of {cores} cores busy",
        gateway_cpu / accepted.len().max(1) as f64 * 1e6,
        (gateway_cpu + load + services_cpu + others) / secs
    );
    if others > 0.1 * secs {
        println!("  NOTE: other processes used {:.2} cores meanwhile; these figures are lower than on an idle machine", others / secs);
    }
    Ok(Figures { errors: errors.values().sum(), undelivered: accepted.len() - at_simulator.len() })
}

fn main() -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let services = start_services()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("loadgen").enable_all().build()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(2 * CONNECTIONS)
        .timeout(Duration::from_secs(30))
        .build()?;
    println!(
        "agent API: the release `switchboard gateway` binary, store on {} (--store-durability full), {cores} cores shared by the gateway, \
         the load generator, the simulator and the desk",
        env!("CARGO_TARGET_TMPDIR")
    );
    let scenarios = [
        Scenario { name: "whatsapp-text", label: "WhatsApp texts", provider: Provider::Twilio, kind: Kind::Text },
        Scenario { name: "whatsapp-template", label: "WhatsApp templates", provider: Provider::Twilio, kind: Kind::Template },
        Scenario { name: "line-text", label: "LINE texts", provider: Provider::Line, kind: Kind::Text },
    ];
    let wanted: Vec<String> = std::env::var("AGENT_BENCH")
        .map(|v| v.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect())
        .unwrap_or_else(|_| scenarios.iter().map(|s| s.name.to_owned()).collect());
    if let Some(unknown) = wanted.iter().find(|w| !scenarios.iter().any(|s| s.name == w.as_str())) {
        return Err(format!("AGENT_BENCH: no scenario {unknown:?}").into());
    }
    let started = Instant::now();
    let (mut errors, mut undelivered) = (0, 0);
    for provider in [Provider::Twilio, Provider::Line] {
        let chosen: Vec<&Scenario> = scenarios.iter().filter(|s| s.provider == provider && wanted.iter().any(|w| w == s.name)).collect();
        if chosen.is_empty() {
            continue;
        }
        runtime.block_on(async {
            let content_sid = match provider {
                Provider::Twilio => Some(approved_content(&client, &services.simulator_url).await?),
                Provider::Line => None,
            };
            let name = if provider == Provider::Line { "line" } else { "whatsapp" };
            let mut gateway = Gateway::start(provider, &services, content_sid.as_deref(), name)?;
            gateway.wait_ready(&client).await?;
            let conversations = Arc::new(open_conversations(&client, &services, &gateway, provider).await?);
            for scenario in chosen {
                let figures = run_scenario(&services, &client, &gateway, Arc::clone(&conversations), scenario).await?;
                errors += figures.errors;
                undelivered += figures.undelivered;
            }
            let log = gateway.log_text();
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            if !lines.is_empty() {
                println!("  gateway log: {} warnings/errors, first: {}", lines.len(), lines[0].chars().take(300).collect::<String>());
            }
            Ok::<(), Box<dyn Error + Send + Sync>>(())
        })?;
    }
    println!(
        "{errors} sends not answered 202, {undelivered} accepted but not at the simulator; bench took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if errors > 0 || undelivered > 0 {
        return Err("some sends were refused or not delivered".into());
    }
    Ok(())
}
