//! The agent API under load: agents' sends per second through the real `switchboard gateway`
//! binary (release) to the in-process provider simulator, with the latency of the API's answer
//! (202, the send durably queued) and the time until the simulated provider has the message.
//!
//! Each scenario starts a fresh gateway (its own SQLite store under CARGO_TARGET_TMPDIR, on the
//! real disk) with the provider APIs pointed at an in-process simulator and its desk at an
//! in-process server that answers 200 and notes every `conversation.created` and
//! `message.accepted`. Before timing, CONVERSATIONS customers write once through the simulator
//! (which signs the webhooks and, on WhatsApp, opens their 24-hour window), so that every send
//! goes to an open conversation. The timed part is a closed loop of CONNECTIONS agents sending
//! one message after another, spread over the conversations, each with a new clientMessageId.
//! Scenarios:
//! (a) WhatsApp texts (Twilio Messages API);
//! (b) WhatsApp templates (an approved Content SID with two variables, different per message);
//! (c) LINE texts (the first per conversation a reply, the others pushes with a retry key).
//!
//! Time to delivered is taken from the request's start to the simulator's `sentAt` for the
//! message (millisecond clock of the same machine), and to the desk's `message.accepted`.
//! CPU time is read per thread from /proc, so that a run disturbed by other processes says so.
//!
//! Run with `cargo bench --bench agent`; `AGENT_BENCH=whatsapp-text,line-text` runs only those.

#[path = "common.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{
    AGENT_TOKEN, Customers, Gateway, Provider, Result, TWILIO_SID, TWILIO_TOKEN, WHATSAPP_NUMBER, cores, latency_text,
    machine_busy, note_others, thousands, thread_cpu,
};
use serde_json::{Value, json};
use switchboard::config::GatewayConfig;
use switchboard::simulator::SimulatorConfig;

const TEMPLATE_BODY: &str = "Hello {{1}}, your order {{2}} has shipped";
/// The customers' LINE user IDs and WhatsApp numbers.
const CUSTOMER_IDS: Customers = Customers { first_line_user: 0xa9e1_7000_0000_0000, first_whatsapp: 2_000_000 };

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

/// What the agents send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Template,
}

/// What the desk saw: conversations by customer, and when each message.accepted arrived.
#[derive(Default)]
struct DeskLog {
    conversations: HashMap<String, String>,
    delivered: HashMap<String, Instant>,
    failed: usize,
}

/// The simulator and the desk, which notes conversations and deliveries.
type Services = common::Services<Arc<Mutex<DeskLog>>>;

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
        Some("message.accepted") => {
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
    let mut config = common::simulator_json();
    config["webhookTimeout"] = "60s".into();
    let config: SimulatorConfig = serde_json::from_value(config)?;
    common::start_services(config, Arc::default(), Router::new().fallback(desk_event), "/events")
}

/// The configuration the controller would render: one workstream, no automated messages (so
/// that only the agents' sends go out), and on WhatsApp the approved template.
fn gateway_config(provider: Provider, desk_url: &str, webhook_url: &str, content_sid: Option<&str>) -> Result<String> {
    let channel = provider.config().1;
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
        "account": common::account_json(provider, webhook_url),
        "workstreams": [{
            "name": "support", "generation": 1, "channel": channel, "language": "en",
            "distribution": {"mode": "Push", "fallbackQueue": "general", "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
            "queues": [{"name": "general"}],
            "delivery": common::delivery_json(desk_url),
            "rules": {"classification": [], "routeToQueue": []},
        }],
        "templates": templates,
    })
    .to_string();
    GatewayConfig::from_json(&config)?;
    Ok(config)
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
        (0..CONVERSATIONS).map(|i| if provider == Provider::Line { CUSTOMER_IDS.line_user(i) } else { CUSTOMER_IDS.whatsapp(i) }).collect();
    let sim = services.simulator_url.clone();
    let url = gateway.webhook_url.to_string();
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
        let url = format!("http://{}", gateway.listeners.agent_api);
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

/// CPU seconds of (the gateway, this process's load generator, the simulator and desk, the whole
/// machine) so far.
fn cpu_now(gateway: &Gateway) -> (f64, f64, f64, f64) {
    let own = thread_cpu("self");
    let services: f64 = own.iter().filter(|(k, _)| *k == "services").map(|(_, v)| v).sum();
    let load: f64 = own.values().sum::<f64>() - services;
    (thread_cpu(&gateway.pid().to_string()).values().sum(), load, services, machine_busy())
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
        "  desk told (message.accepted): {} ({} failed); time to the event {}; all done {:.1} s after the last answer",
        thousands(desk_told.len() as f64),
        failed,
        latency_text(desk_told),
        caught_up.as_secs_f64()
    );
    let (gateway_cpu, load, services_cpu, machine) =
        (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1, cpu_after.2 - cpu_before.2, cpu_after.3 - cpu_before.3);
    let others = (machine - gateway_cpu - load - services_cpu).max(0.0);
    let cores = cores();
    println!(
        "  cpu while sending ({secs:.2} s): gateway {gateway_cpu:.2} s ({:.0} µs per send), load generator {load:.2} s, simulator + desk \
         {services_cpu:.2} s, other processes {others:.2} s = {:.2} of {cores} cores busy",
        gateway_cpu / accepted.len().max(1) as f64 * 1e6,
        (gateway_cpu + load + services_cpu + others) / secs
    );
    note_others(others, secs);
    Ok(Figures { errors: errors.values().sum(), undelivered: accepted.len() - at_simulator.len() })
}

fn main() -> Result<()> {
    let cores = cores();
    let services = start_services()?;
    let (runtime, client) = common::load_generator(2 * CONNECTIONS)?;
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
            let config = |webhook_url: &str| gateway_config(provider, &services.desk_url, webhook_url, content_sid.as_deref());
            let mut gateway = Gateway::start(provider, &services.simulator_url, name, None, config)?;
            gateway.wait_ready(&client).await?;
            let conversations = Arc::new(open_conversations(&client, &services, &gateway, provider).await?);
            for scenario in chosen {
                let figures = run_scenario(&services, &client, &gateway, Arc::clone(&conversations), scenario).await?;
                errors += figures.errors;
                undelivered += figures.undelivered;
            }
            gateway.print_log_summary();
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
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
