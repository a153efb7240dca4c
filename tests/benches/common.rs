//! What the gateway and agent benches share: the accounts and secrets, the simulator and desk they run against, the release
//! `switchboard gateway` they start, and the helpers that measure and print.
//!
//! Included by each bench with `#[path = "common.rs"] mod common;`; not a bench of its own (Cargo.toml names the benches).

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard::config::POSTGRES_URL_ENV;
use switchboard::simulator::{self, RunningSimulator, SimulatorConfig};

/// The benches' result: any error, sendable between threads.
pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The namespace of the gateway's account.
pub const NAMESPACE: &str = "support";
/// The LINE account's name.
pub const LINE_ACCOUNT: &str = "contoso-line";
/// The Twilio WhatsApp account's name.
pub const TWILIO_ACCOUNT: &str = "contoso-whatsapp";
/// The LINE channel, at the gateway and the simulator.
pub const LINE_CHANNEL_ID: &str = "1657123456";
/// The LINE channel's secret (webhook signatures).
pub const LINE_SECRET: &str = "bench-line-channel-secret-3c91d7";
/// The LINE channel's access token.
pub const LINE_TOKEN: &str = "bench-line-access-token-0a6f42";
/// The Twilio account.
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The Twilio account's auth token (API and webhook signatures).
pub const TWILIO_TOKEN: &str = "bench-twilio-auth-token-e27b15";
/// The workstream's WhatsApp number.
pub const WHATSAPP_NUMBER: &str = "+14155550100";
/// What the gateway signs its desk deliveries with.
pub const DESK_SIGNING_SECRET: &str = "bench-desk-signing-secret";
/// The bearer token of the gateway's agent API.
pub const AGENT_TOKEN: &str = "bench-desk-agent-token";
/// The gateway's SQLite store, in its directory.
pub const STORE_FILE: &str = "gateway.db";
/// Linux reports thread CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// The provider of the account a gateway serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Line,
    Twilio,
}

impl Provider {
    /// The account's name.
    pub fn account(self) -> &'static str {
        match self {
            Provider::Line => LINE_ACCOUNT,
            Provider::Twilio => TWILIO_ACCOUNT,
        }
    }

    /// The account's `provider` and the workstream's `channel` in the gateway configuration.
    pub fn config(self) -> (Value, Value) {
        match self {
            Provider::Line => (json!({"type": "Line", "channelId": LINE_CHANNEL_ID}), json!({"type": "Line"})),
            Provider::Twilio => (
                json!({"type": "TwilioWhatsApp", "accountSid": TWILIO_SID, "numbers": [{"name": "main", "number": WHATSAPP_NUMBER}]}),
                json!({"type": "WhatsApp", "numberName": "main", "number": WHATSAPP_NUMBER}),
            ),
        }
    }
}

/// Where a bench's customer IDs start (each bench has its own).
#[derive(Clone, Copy)]
pub struct Customers {
    /// The first LINE user ID's leading 64 bits.
    pub first_line_user: u64,
    /// The first WhatsApp number's last seven digits.
    pub first_whatsapp: usize,
}

impl Customers {
    /// The LINE user ID of customer `i`.
    pub fn line_user(self, i: usize) -> String {
        format!("U{:016x}{:016x}", self.first_line_user + i as u64, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The WhatsApp number of customer `i`.
    pub fn whatsapp(self, i: usize) -> String {
        format!("+90555{:07}", self.first_whatsapp + i)
    }
}

/// The path the account's webhooks are posted to.
pub fn callback_path(account: &str) -> String {
    format!("/switchboard/{NAMESPACE}/{account}/webhook")
}

/// The `account` of a gateway configuration for `provider`, with its webhooks at `webhook_url`.
pub fn account_json(provider: Provider, webhook_url: &str) -> Value {
    let account = provider.account();
    json!({
        "namespace": NAMESPACE, "name": account, "callbackPath": callback_path(account), "callbackUrl": webhook_url,
        "provider": provider.config().0,
    })
}

/// A workstream's `delivery`: events to `desk_url`, signed with [`DESK_SIGNING_SECRET`], the agent API guarded by
/// [`AGENT_TOKEN`] (the variables [`Gateway::start`] sets).
pub fn delivery_json(desk_url: &str) -> Value {
    json!({"url": desk_url, "signingSecret": {"env": "SWITCHBOARD_SECRET_1"}, "agentApiToken": {"env": "SWITCHBOARD_SECRET_2"}})
}

/// The simulated providers: one LINE channel and one Twilio account with the workstream's number.
pub fn simulator_json() -> Value {
    json!({
        "line": [{"channelId": LINE_CHANNEL_ID, "channelSecret": LINE_SECRET, "accessToken": LINE_TOKEN, "displayName": "Contoso"}],
        "twilio": [{"accountSid": TWILIO_SID, "authToken": TWILIO_TOKEN, "numbers": [{"phoneNumber": WHATSAPP_NUMBER}]}],
    })
}

/// A local address nothing listens on yet.
pub fn free_port() -> Result<SocketAddr> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What stays up for the whole bench: the simulator and the desk, on their own runtime thread ("services") so that their
/// CPU time can be told apart from the load generator's.
pub struct Services<D> {
    _runtime: tokio::runtime::Runtime,
    _simulator: RunningSimulator,
    /// The simulator's base URL, for the gateway's provider APIs and the bench's `__sim` calls.
    pub simulator_url: String,
    /// Where the gateway delivers desk events.
    pub desk_url: String,
    /// What the desk keeps of the events it is sent.
    pub desk: D,
}

/// Starts the simulator with `config` and a desk that serves `app` with the state `desk`, at `desk_path`.
pub fn start_services<D: Clone + Send + Sync + 'static>(
    config: SimulatorConfig,
    desk: D,
    app: Router<D>,
    desk_path: &str,
) -> Result<Services<D>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("services").enable_all().build()?;
    let app = app.with_state(desk.clone());
    let (simulator, desk_addr) = runtime.block_on(async move {
        let simulator = simulator::start(config, "127.0.0.1:0".parse().expect("an address")).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let desk_addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok::<_, Box<dyn Error + Send + Sync>>((simulator, desk_addr))
    })?;
    Ok(Services {
        simulator_url: simulator.base_url().to_owned(),
        _simulator: simulator,
        _runtime: runtime,
        desk_url: format!("http://{desk_addr}{desk_path}"),
        desk,
    })
}

/// The addresses a gateway listens on.
#[derive(Clone, Copy)]
pub struct Listeners {
    /// The providers' webhooks.
    pub webhook: SocketAddr,
    /// /metrics and /readyz.
    pub metrics: SocketAddr,
    /// The agent API.
    pub agent_api: SocketAddr,
}

/// A running `switchboard gateway` in a directory of its own, killed and the directory removed when dropped.
pub struct Gateway {
    child: Child,
    /// Its directory: the configuration, the SQLite store ([`STORE_FILE`]) and the log.
    pub dir: PathBuf,
    log: PathBuf,
    /// Where it listens.
    pub listeners: Listeners,
    /// Where the provider's webhooks go.
    pub webhook_url: reqwest::Url,
}

impl Gateway {
    /// Starts the release binary for `provider` with the configuration that `config` renders for the webhook URL, its
    /// provider APIs at the simulator, its store in the PostgreSQL database `postgres_url` names, else in SQLite.
    pub fn start(
        provider: Provider,
        simulator_url: &str,
        name: &str,
        postgres_url: Option<&str>,
        config: impl FnOnce(&str) -> Result<String>,
    ) -> Result<Self> {
        // Named after the bench ("gateway", "agent") and this process, so that runs do not share a store.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-bench-{}-{name}", env!("CARGO_CRATE_NAME"), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let listeners = Listeners { webhook: free_port()?, metrics: free_port()?, agent_api: free_port()? };
        let webhook_url = format!("http://{}{}", listeners.webhook, callback_path(provider.account()));
        let config_path = dir.join("gateway.json");
        std::fs::write(&config_path, config(&webhook_url)?)?;
        let log = dir.join("gateway.log");
        let sim = simulator_url;
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("gateway")
            .arg("--config")
            .arg(&config_path)
            .args(["--webhook-addr", &listeners.webhook.to_string(), "--metrics-addr", &listeners.metrics.to_string()])
            .args(["--agent-api-addr", &listeners.agent_api.to_string()])
            .args(["--line-api-url", sim, "--line-data-api-url", sim, "--twilio-api-url", sim])
            .args(["--twilio-content-url", sim, "--twilio-messaging-url", sim])
            .env("RUST_LOG", "warn")
            .env("SWITCHBOARD_SECRET_1", DESK_SIGNING_SECRET)
            .env("SWITCHBOARD_SECRET_2", AGENT_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        match postgres_url {
            // Through the environment, as the controller passes it (a URL may hold a password).
            Some(url) => command.env(POSTGRES_URL_ENV, url),
            // Said explicitly: the targets are for answers that wait for fsync.
            None => command.arg("--store").arg(dir.join(STORE_FILE)).args(["--store-durability", "full"]).env_remove(POSTGRES_URL_ENV),
        };
        match provider {
            Provider::Line => {
                command.env("SWITCHBOARD_LINE_CHANNEL_SECRET", LINE_SECRET).env("SWITCHBOARD_LINE_CHANNEL_ACCESS_TOKEN", LINE_TOKEN)
            }
            Provider::Twilio => command.env("SWITCHBOARD_TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        };
        let child = command.spawn()?;
        Ok(Self { child, dir, log, listeners, webhook_url: webhook_url.parse()? })
    }

    /// Waits up to 20 s for /readyz to answer 200; fails with the log if the gateway exits or does not get there.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<()> {
        let ready_url = format!("http://{}/readyz", self.listeners.metrics);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(&ready_url).send().await
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

    /// What it has logged (warnings and errors) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints how many lines it logged and the first, if it logged any.
    pub fn print_log_summary(&self) {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            println!("  gateway log: {} warnings/errors, first: {}", lines.len(), lines[0].chars().take(300).collect::<String>());
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The load generator: its own runtime ("loadgen", so that its CPU time is told apart from the services'; two workers, as
/// many as there are cores) and an HTTP client keeping up to `idle_per_host` connections.
pub fn load_generator(idle_per_host: usize) -> Result<(tokio::runtime::Runtime, reqwest::Client)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("loadgen").enable_all().build()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(idle_per_host)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok((runtime, client))
}

/// The cores this process may use (0 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The `q` quantile (0 to 1) of sorted durations, zero when there are none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// p50, p90, p99 and max of the durations.
pub fn latency_text(mut values: Vec<Duration>) -> String {
    values.sort_unstable();
    format!(
        "p50 {} p90 {} p99 {} max {}",
        ms(percentile(&values, 0.50)),
        ms(percentile(&values, 0.90)),
        ms(percentile(&values, 0.99)),
        ms(values.last().copied().unwrap_or_default())
    )
}

/// A duration in milliseconds, with two decimals below 10 ms and one above.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

/// A count rounded to a whole number, with thousands separated by commas.
pub fn thousands(n: f64) -> String {
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

/// CPU seconds per thread name of a process (threads that ended in between are not counted).
pub fn thread_cpu(pid: &str) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by_name };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let Some((name, fields)) = stat_fields(&stat) else { continue };
        *by_name.entry(name.to_owned()).or_insert(0.0) += cpu_seconds(&fields, 11..13);
    }
    by_name
}

/// A /proc `stat` line split into the command name and the fields after it, from the state (field 0) on; the name is
/// taken apart first because it may hold spaces and parentheses.
pub fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    Some((&stat[open + 1..close], stat.get(close + 2..)?.split_whitespace().collect()))
}

/// The CPU seconds in `ticks` of [`stat_fields`]: 11..13 is the user and system time of the process or thread itself,
/// 13..15 that of its children that ended and were waited for.
pub fn cpu_seconds(fields: &[&str], ticks: std::ops::Range<usize>) -> f64 {
    fields.get(ticks).unwrap_or_default().iter().filter_map(|t| t.parse::<f64>().ok()).sum::<f64>() / TICKS_PER_SECOND
}

/// CPU seconds the whole machine was busy (every process, the kernel's interrupt work and time the hypervisor took), from
/// the first line of /proc/stat.
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user, nice, system, (idle, iowait), irq, softirq, steal; guest time is already in user.
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum::<f64>() / TICKS_PER_SECOND
}

/// Notes a run that other processes took more than a tenth of a core from (`others` CPU seconds in `secs`).
pub fn note_others(others: f64, secs: f64) {
    if others > 0.1 * secs {
        println!("  NOTE: other processes used {:.2} cores meanwhile; these figures are lower than on an idle machine", others / secs);
    }
}
