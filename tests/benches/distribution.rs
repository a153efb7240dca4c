//! Work distribution at a contact centre's size, against the targets:
//! (1) the decision ([`switchboard::gateway::model::assignment`]): AGENTS agents (capacities 1–5,
//!     three of ten queues each, two of five skills) and WAITING conversations (ten queues of
//!     three priority levels, every priority, a quarter needing a skill, some with a last
//!     agent), served in order; every decision is timed, and so is the whole plan a push round
//!     makes of them (more waiting than capacity, so the later decisions find nobody: the
//!     slowest kind, a scan of every agent);
//! (2) the real `switchboard gateway` (release, SQLite store on the real disk, the in-process
//!     simulator and a desk that answers 200): WAITING customers write once while nobody is
//!     there, then AGENTS agents report Available with twice the room needed, and the time until
//!     the gateway's `assignments_total` counts them all gives assignments per second; the desk's
//!     `conversation.assigned` events are counted too.
//!
//! Part (2) runs again on PostgreSQL when `SWITCHBOARD_TEST_POSTGRES_URL` names a server (a
//! superuser's connection string; a new database is made on it).
//!
//! Run with `cargo bench --bench distribution`; `DISTRIBUTION_BENCH=decision` or `=gateway` runs
//! one part.

// Shared by the benches; this one uses only the LINE side of it.
#[allow(dead_code)]
#[path = "common.rs"]
mod common;
#[path = "../postgres/database.rs"]
mod database;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{AGENT_TOKEN, Customers, Gateway, Provider, Result, cores, machine_busy, note_others, thousands, thread_cpu};
use serde_json::{Value, json};
use switchboard::api::routing_rule::Priority;
use switchboard::config::GatewayConfig;
use switchboard::gateway::model::agent::{Agent, Presence, QueueRef};
use switchboard::gateway::model::assignment::{Candidate, Waiting, choose, order, plan};
use switchboard::simulator::SimulatorConfig;

const AGENTS: usize = 1_000;
const WAITING: usize = 10_000;
const QUEUES: usize = 10;
const SKILLS: [&str; 5] = ["turkish", "german", "billing", "vip", "tech"];
/// Decision p99 target.
const DECISION_TARGET: Duration = Duration::from_millis(1);
/// Assignments per second target.
const RATE_TARGET: f64 = 1_000.0;
const CUSTOMER_IDS: Customers = Customers { first_line_user: 0xd157_0000_0000_0000, first_whatsapp: 3_000_000 };
/// How long the gateway may take to assign everything.
const ASSIGN_LIMIT: Duration = Duration::from_secs(120);

fn queue_name(q: usize) -> String {
    format!("q{q}")
}

fn agents() -> Vec<Candidate> {
    (0..AGENTS)
        .map(|i| Candidate {
            agent: Agent {
                id: format!("agent-{i:04}"),
                name: None,
                status: Presence::Available,
                capacity: 1 + (i % 5) as u32,
                queues: [i % QUEUES, (i + 3) % QUEUES, (i + 7) % QUEUES].map(|q| QueueRef { workstream: "support".into(), queue: queue_name(q) }).into(),
                skills: vec![SKILLS[i % 5].to_owned(), SKILLS[(i / 5) % 5].to_owned()],
                reported_ms: 0,
                idle_since_ms: (i * 7919 % AGENTS) as i64,
            },
            presence: Presence::Available,
            load: 0,
        })
        .collect()
}

fn waiting() -> Vec<Waiting> {
    let priorities = [Priority::Low, Priority::Normal, Priority::Normal, Priority::High, Priority::Urgent];
    (0..WAITING)
        .map(|j| Waiting {
            conversation_id: format!("c-{j:05}"),
            workstream: "support".into(),
            queue: queue_name(j % QUEUES),
            queue_priority: (j % QUEUES / 4) as i32,
            priority: priorities[j % priorities.len()],
            since_ms: j as i64,
            skills: if j % 4 == 0 { vec![SKILLS[j % 5].to_owned()] } else { Vec::new() },
            units: 1,
            preferred_agent: (j % 7 == 0).then(|| format!("agent-{:04}", j * 13 % AGENTS)),
        })
        .collect()
}

fn decision() {
    println!("decision: {AGENTS} agents, {WAITING} waiting conversations");
    let capacity: u32 = agents().iter().map(|c| c.agent.capacity).sum();
    // Every decision timed, in the order a round makes them.
    let mut candidates = agents();
    let mut work = waiting();
    let sorted_at = Instant::now();
    order(&mut work);
    let sorting = sorted_at.elapsed();
    let mut times = Vec::with_capacity(WAITING);
    let mut taken = 0;
    for w in &work {
        let at = Instant::now();
        let chosen = choose(w, &candidates);
        times.push(at.elapsed());
        if let Some(i) = chosen {
            candidates[i].load += w.units;
            taken += 1;
        }
    }
    let over = candidates.iter().filter(|c| c.load > c.agent.capacity).count();
    let mut sorted = times;
    sorted.sort_unstable();
    let p99 = common::percentile(&sorted, 0.99);
    println!("  decisions: {} ({taken} assigned, {capacity} units of capacity; {over} agents over capacity)", thousands(WAITING as f64));
    let at = |q: f64| micros(common::percentile(&sorted, q));
    println!(
        "  decision: p50 {} p90 {} p99 {} max {}  — target p99 < {} ({})",
        at(0.5),
        at(0.9),
        at(0.99),
        micros(sorted.last().copied().unwrap_or_default()),
        micros(DECISION_TARGET),
        verdict(p99 <= DECISION_TARGET)
    );
    println!("  ordering {WAITING} conversations: {}", common::ms(sorting));
    // The plan a push round makes, as the gateway calls it (it stops once nobody has room).
    let runs: Vec<Duration> = (0..5)
        .map(|_| {
            let mut candidates = agents();
            let at = Instant::now();
            let planned = plan(waiting(), &mut candidates, 1);
            assert_eq!(planned.len(), taken, "the plan takes what the decisions took");
            at.elapsed()
        })
        .collect();
    let best = runs.iter().min().copied().unwrap_or_default();
    println!("  a round's plan (5 runs): best {}, {} decisions/s", common::ms(best), thousands(WAITING as f64 / best.as_secs_f64()));
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// What the desk saw.
#[derive(Default)]
struct DeskLog {
    created: HashSet<String>,
    assigned: HashSet<String>,
    last_assigned: Option<Instant>,
}

type Services = common::Services<Arc<Mutex<DeskLog>>>;

async fn desk_event(State(log): State<Arc<Mutex<DeskLog>>>, body: Bytes) -> StatusCode {
    let Ok(event) = serde_json::from_slice::<Value>(&body) else { return StatusCode::BAD_REQUEST };
    let id = event["conversation"]["id"].as_str().unwrap_or_default().to_owned();
    let mut log = log.lock().unwrap();
    match event["type"].as_str() {
        Some("conversation.created") => {
            log.created.insert(id);
        }
        Some("conversation.assigned") => {
            log.assigned.insert(id);
            log.last_assigned = Some(Instant::now());
        }
        _ => {}
    }
    StatusCode::OK
}

/// One LINE workstream in Push mode with QUEUES queues; routing by a rule per queue on the
/// message text, no automated messages (only assignment is measured).
fn gateway_config(desk_url: &str, webhook_url: &str) -> Result<String> {
    let channel = Provider::Line.config().1;
    let rules: Vec<Value> = (0..QUEUES)
        .map(|q| {
            json!({
                "name": format!("to-{}", queue_name(q)), "generation": 1, "order": q,
                "match": {"all": [{"field": "message.text", "operator": "Contains", "values": [format!("about {}", queue_name(q))]}]},
                "routeTo": {"queue": queue_name(q)},
            })
        })
        .collect();
    let config = json!({
        "version": 1,
        "account": common::account_json(Provider::Line, webhook_url),
        "workstreams": [{
            "name": "support", "generation": 1, "channel": channel, "language": "en",
            "distribution": {"mode": "Push", "fallbackQueue": queue_name(0), "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
            "queues": (0..QUEUES).map(|q| json!({"name": queue_name(q), "priority": q / 4})).collect::<Vec<_>>(),
            "delivery": common::delivery_json(desk_url),
            "rules": {"classification": [], "routeToQueue": rules},
        }],
        "templates": [],
    })
    .to_string();
    GatewayConfig::from_json(&config)?;
    Ok(config)
}

/// Runs `jobs` calls of `call` with at most `concurrency` at once.
async fn concurrently<F, Fut>(jobs: usize, concurrency: usize, call: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::StreamExt;
    let results: Vec<Result<()>> = futures::stream::iter((0..jobs).map(call)).buffer_unordered(concurrency).collect().await;
    results.into_iter().collect()
}

async fn assignments(client: &reqwest::Client, gateway: &Gateway) -> Result<f64> {
    let text = client.get(format!("http://{}/metrics", gateway.listeners.metrics)).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("switchboard_gateway_assignments_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn gateway_part(services: &Services, client: &reqwest::Client, postgres_url: Option<&str>) -> Result<()> {
    let store = if postgres_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("gateway ({store}): {WAITING} waiting conversations in {QUEUES} queues, then {AGENTS} agents Available with twice the room needed");
    *services.desk.lock().unwrap() = DeskLog::default();
    let sim = services.simulator_url.clone();
    let mut gateway = Gateway::start(Provider::Line, &sim, "distribution", postgres_url, |url| gateway_config(&services.desk_url, url))?;
    gateway.wait_ready(client).await?;
    let url = gateway.webhook_url.to_string();
    let opened = Instant::now();
    concurrently(WAITING, 16, |i| {
        let (client, sim, url) = (client.clone(), sim.clone(), url.clone());
        async move {
            let body = json!({"type": "text", "text": format!("about {}", queue_name(i % QUEUES)), "url": url, "userId": CUSTOMER_IDS.line_user(i), "displayName": format!("Customer {i}")});
            let answer: Value = client.post(format!("{sim}/__sim/customer/line")).json(&body).send().await?.error_for_status()?.json().await?;
            if answer["delivery"]["statusCode"] != 200 {
                return Err(format!("the gateway did not take a webhook: {answer}").into());
            }
            Ok(())
        }
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while services.desk.lock().unwrap().created.len() < WAITING {
        if Instant::now() > deadline {
            return Err("the conversations did not all reach the desk in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("  {WAITING} conversations waiting after {:.1} s", opened.elapsed().as_secs_f64());

    let agent_api = format!("http://{}", gateway.listeners.agent_api);
    // Twice the room needed: each queue is served by three tenths of the agents, whose units the
    // queues served first would otherwise use up before the last ones get any.
    let per_agent = 2 * WAITING.div_ceil(AGENTS) as u32;
    let cpu_now = || (thread_cpu(&gateway.pid().to_string()).values().sum::<f64>(), thread_cpu("self").values().sum::<f64>(), machine_busy());
    let cpu_before = cpu_now();
    let started = Instant::now();
    concurrently(AGENTS, 32, |i| {
        let (client, agent_api) = (client.clone(), agent_api.clone());
        async move {
            // Every queue is served by someone: agent i serves three of them.
            let queues: Vec<Value> = [i % QUEUES, (i + 3) % QUEUES, (i + 7) % QUEUES].iter().map(|q| json!({"workstream": "support", "queue": queue_name(*q)})).collect();
            let body = json!({"name": format!("Agent {i}"), "status": "Available", "capacity": per_agent, "queues": queues, "skills": [SKILLS[i % 5]]});
            client.put(format!("{agent_api}/v1/agents/agent-{i:04}/presence")).bearer_auth(AGENT_TOKEN).json(&body).send().await?.error_for_status()?;
            Ok(())
        }
    })
    .await?;
    let reported = started.elapsed();
    let deadline = started + ASSIGN_LIMIT;
    let mut done = assignments(client, &gateway).await?;
    while done < WAITING as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        done = assignments(client, &gateway).await?;
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_now();
    let (cpu, own, busy) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1, cpu_after.2 - cpu_before.2);
    let rate = done / elapsed.as_secs_f64();
    println!("  {AGENTS} presences reported in {:.2} s; {} assignments in {:.2} s after the first", reported.as_secs_f64(), thousands(done), elapsed.as_secs_f64());
    // The agents' presences arrive one call at a time and each brings room for a few: the rate is
    // at most how fast they come, so it is a lower bound of what the gateway can assign.
    println!(
        "  assignments: {}/s (at least: bounded by the presences' arrival)  — target ≥ {}/s ({})",
        thousands(rate),
        thousands(RATE_TARGET),
        verdict(rate >= RATE_TARGET && done >= WAITING as f64)
    );
    println!("  gateway CPU {:.2} s ({:.0} µs per assignment, presence calls included)", cpu, cpu / done.max(1.0) * 1e6);
    let desk_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (assigned, last) = {
            let log = services.desk.lock().unwrap();
            (log.assigned.len(), log.last_assigned)
        };
        if assigned >= WAITING || Instant::now() > desk_deadline {
            let at = last.map_or(0.0, |t| t.duration_since(started).as_secs_f64());
            println!("  desk: {assigned} conversation.assigned, the last {at:.2} s after the first presence");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    note_others(busy - cpu - own, elapsed.as_secs_f64());
    gateway.print_log_summary();
    Ok(())
}

fn main() -> Result<()> {
    let only = std::env::var("DISTRIBUTION_BENCH").unwrap_or_default();
    println!("distribution bench on {} cores", cores());
    if only.is_empty() || only == "decision" {
        decision();
    }
    if only.is_empty() || only == "gateway" {
        let mut config = common::simulator_json();
        config["webhookTimeout"] = "60s".into();
        let config: SimulatorConfig = serde_json::from_value(config)?;
        let services = common::start_services(config, Arc::default(), Router::new().fallback(desk_event), "/events")?;
        let (runtime, client) = common::load_generator(64)?;
        runtime.block_on(gateway_part(&services, &client, None))?;
        if let Ok(admin) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") {
            let url = database::create(&admin, "switchboard_distribution_bench");
            runtime.block_on(gateway_part(&services, &client, Some(&url)))?;
        }
    }
    Ok(())
}
