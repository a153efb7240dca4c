//! One test's world: a temp dir, an in-process provider simulator playing the customers, a test
//! desk, and the real `switchboard gateway` binary between them, started on a configuration
//! file (or a ConfigMap, in the e2e suite) and a store in the temp dir. The gateway can be
//! killed (SIGKILL, a crash), stopped (SIGTERM) and started again on the same store and ports.
//!
//! Every test ends with [`Bed::finish`], which fails if a credential appears in the gateway's
//! log, its metrics or anything the desk received, or if the desk got a bad delivery.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::config::GatewayConfig;
use switchboard::gateway::store::{Durability, PostgresTarget, Store, TlsSettings};
use switchboard::providers::credentials::Secret;

#[path = "../postgres/database.rs"]
mod database;
use switchboard::simulator::{self, RunningSimulator, SimulatorConfig};

use super::desk::Desk;

/// The account's namespace and names.
pub const NAMESPACE: &str = "support";
pub const LINE_ACCOUNT: &str = "contoso-line";
pub const TWILIO_ACCOUNT: &str = "contoso-wa";
pub const LINE_CHANNEL_ID: &str = "1657123456";
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const SALES_NUMBER: &str = "+14155550100";
pub const SUPPORT_NUMBER: &str = "+14155550101";

/// Credentials; every test looks for them where they must never be.
pub const LINE_SECRET: &str = "gwtest-line-channel-secret-3c9e1f";
pub const LINE_TOKEN: &str = "gwtest-line-access-token-b7d420";
pub const TWILIO_TOKEN: &str = "gwtest-twilio-auth-token-e5a913";
pub const DESK_SECRET: &str = "gwtest-desk-signing-secret-71f0aa";
pub const AGENT_TOKEN: &str = "gwtest-agent-api-token-2b6d58";
/// The agent API token of a second desk (a workstream that names [`OTHER_AGENT_ENV`]).
pub const OTHER_AGENT_TOKEN: &str = "gwtest-other-agent-token-9d14c2";
/// The token the gateway presents to a bot (a workstream's `bot.token` names [`BOT_ENV`]).
pub const BOT_TOKEN: &str = "gwtest-bot-bearer-token-5e82b9";
/// The desk's previous signing key during a rotation, in the Standard Webhooks `whsec_` form (a
/// workstream's `delivery.previousSigningSecret` names [`PREVIOUS_SIGNING_ENV`]).
pub const PREVIOUS_DESK_SECRET: &str = "whsec_Z3d0ZXN0LXByZXZpb3VzLWRlc2sta2V5LTRhOWMwMQ==";
const CREDENTIALS: [&str; 8] = [LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, DESK_SECRET, AGENT_TOKEN, OTHER_AGENT_TOKEN, BOT_TOKEN, PREVIOUS_DESK_SECRET];

/// The variables the configuration names for the desk's keys.
const SIGNING_ENV: &str = "SWITCHBOARD_SECRET_1";
const AGENT_ENV: &str = "SWITCHBOARD_SECRET_2";
pub const OTHER_AGENT_ENV: &str = "SWITCHBOARD_SECRET_3";
pub const BOT_ENV: &str = "SWITCHBOARD_SECRET_4";
pub const PREVIOUS_SIGNING_ENV: &str = "SWITCHBOARD_SECRET_5";

/// Which provider the account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Line,
    Twilio,
}

impl Provider {
    fn account(self) -> &'static str {
        match self {
            Provider::Line => LINE_ACCOUNT,
            Provider::Twilio => TWILIO_ACCOUNT,
        }
    }
}

/// A LINE user ID (`U` + 32 hex) made from a number.
pub fn line_user(n: usize) -> String {
    format!("U{n:032x}")
}

/// Where the gateway reads its configuration.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub enum Source {
    /// `--config FILE`.
    File,
    /// `--config-map NAME --namespace NS --kubeconfig PATH`.
    ConfigMap { name: String, namespace: String, kubeconfig: String },
}

/// The gateway process.
pub struct Gateway {
    child: Option<Child>,
    provider: Provider,
    source: Source,
    pub webhook_port: u16,
    pub metrics_port: u16,
    /// The agent API's port (`--agent-api-addr`).
    pub agent_port: u16,
    pub config_path: PathBuf,
    /// The SQLite store's file; unused on PostgreSQL.
    pub store: PathBuf,
    /// The PostgreSQL database the gateway keeps its store in (`SWITCHBOARD_TEST_STORE=postgres`).
    pub postgres_url: Option<String>,
    pub log_path: PathBuf,
    /// The process's open-file limit (soft and hard), set through `prlimit`; the test's own
    /// otherwise.
    pub open_file_limit: Option<u64>,
    args: Vec<String>,
    sim_url: String,
    starts: u32,
}

/// Selects the store the suite's gateways use: SQLite, or with `SWITCHBOARD_TEST_STORE=postgres`
/// a new database for each test on the server `SWITCHBOARD_TEST_POSTGRES_URL` names (a
/// superuser's connection string; tests/run.sh starts a throwaway server).
pub fn test_database() -> Option<String> {
    match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
        Ok("postgres") => {}
        Ok("sqlite") | Err(_) => return None,
        Ok(other) => panic!("SWITCHBOARD_TEST_STORE={other}: sqlite or postgres"),
    }
    let admin = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").expect("SWITCHBOARD_TEST_STORE=postgres needs SWITCHBOARD_TEST_POSTGRES_URL");
    Some(database::create(&admin, "switchboard_test"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[allow(dead_code)]
impl Gateway {
    /// Starts the binary (it may still be loading its configuration; see [`Bed::wait_ready`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the gateway is already running");
        self.starts += 1;
        let mut log = File::options().create(true).append(true).open(&self.log_path).unwrap();
        writeln!(log, "===== test harness: gateway start {} =====", self.starts).unwrap();
        let sim = self.sim_url.as_str();
        let source: Vec<String> = match &self.source {
            Source::File => vec!["--config".into(), self.config_path.display().to_string()],
            Source::ConfigMap { name, namespace, kubeconfig } => {
                ["--config-map", name, "--namespace", namespace, "--kubeconfig", kubeconfig].iter().map(|s| (*s).to_owned()).collect()
            }
        };
        // Short delays unless the test sets its own (clap refuses a flag given twice).
        // No drain delay: a test that stops the gateway has nothing to drain it from.
        let defaults = [("--sweep-interval", "1s"), ("--retry-min", "200ms"), ("--retry-max", "2s"), ("--drain-delay", "0s")]
            .into_iter()
            .filter(|(flag, _)| !self.args.iter().any(|a| a == flag))
            .flat_map(|(flag, value)| [flag, value]);
        let store: Vec<String> = match &self.postgres_url {
            // Through the environment, as the controller passes it (a URL may hold a password).
            Some(_) => Vec::new(),
            None => vec!["--store".into(), self.store.display().to_string()],
        };
        let binary = env!("CARGO_BIN_EXE_switchboard");
        let mut command = match self.open_file_limit {
            // prlimit sets the limit and then executes the gateway, which keeps its process ID.
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={limit}:{limit}")).arg("--").arg(binary);
                prlimit
            }
            None => Command::new(binary),
        };
        command
            .arg("gateway")
            .args(source)
            .args(store)
            .args(["--webhook-addr", &format!("127.0.0.1:{}", self.webhook_port)])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", self.metrics_port)])
            .args(["--agent-api-addr", &format!("127.0.0.1:{}", self.agent_port)])
            .args(["--line-api-url", sim, "--line-data-api-url", sim, "--twilio-api-url", sim])
            .args(["--twilio-content-url", sim, "--twilio-messaging-url", sim])
            .args(defaults)
            .args(&self.args)
            .env_remove("SWITCHBOARD_LOG_FORMAT")
            .env_remove("POD_NAMESPACE")
            .env(SIGNING_ENV, DESK_SECRET)
            .env(AGENT_ENV, AGENT_TOKEN)
            .env(OTHER_AGENT_ENV, OTHER_AGENT_TOKEN)
            .env(BOT_ENV, BOT_TOKEN)
            .env(PREVIOUS_SIGNING_ENV, PREVIOUS_DESK_SECRET)
            // Debug logging everywhere: the widest net for a leaked credential.
            .env("RUST_LOG", "debug")
            // Plain text, so that the log can be searched for credentials and lines.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        match &self.postgres_url {
            Some(url) => command.env("SWITCHBOARD_POSTGRES_URL", url),
            None => command.env_remove("SWITCHBOARD_POSTGRES_URL"),
        };
        match self.provider {
            Provider::Line => {
                command.env("SWITCHBOARD_LINE_CHANNEL_SECRET", LINE_SECRET).env("SWITCHBOARD_LINE_CHANNEL_ACCESS_TOKEN", LINE_TOKEN);
            }
            Provider::Twilio => {
                command.env("SWITCHBOARD_TWILIO_AUTH_TOKEN", TWILIO_TOKEN);
            }
        }
        self.child = Some(command.spawn().expect("the gateway starts"));
    }

    /// Another replica of this gateway: the same configuration file, database and flags, its
    /// own ports and log (`gateway-<name>.log`). Not started.
    pub fn replica(&self, name: &str) -> Gateway {
        assert!(self.postgres_url.is_some(), "replicas share a PostgreSQL store; a SQLite file has one writer");
        Gateway {
            child: None,
            webhook_port: free_port(),
            metrics_port: free_port(),
            agent_port: free_port(),
            log_path: self.log_path.with_file_name(format!("gateway-{name}.log")),
            args: self.args.clone(),
            source: self.source.clone(),
            config_path: self.config_path.clone(),
            store: self.store.clone(),
            postgres_url: self.postgres_url.clone(),
            sim_url: self.sim_url.clone(),
            starts: 0,
            ..*self
        }
    }

    /// The webhook URL of this process (`path`: the account's webhook path).
    pub fn webhook_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.webhook_port)
    }

    /// A URL on this process's metrics port.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics_port)
    }

    /// Waits until `/readyz` answers 200; fails if the process exits first.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.metrics_url("/readyz");
        loop {
            if !self.running() {
                panic!("the gateway exited before it was ready\n{}", tail(&self.log(), 40));
            }
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway was not ready within 60 s\n{}", tail(&self.log(), 40));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The running process's ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running gateway").id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running gateway");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, as Kubernetes stops a pod; waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal_stop();
        self.wait_exit()
    }

    /// SIGTERM, without waiting.
    pub fn signal_stop(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to 15 s for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running gateway");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the gateway did not stop within 15 s of SIGTERM\n{}", tail(&self.log(), 30));
    }

    /// The log of every start so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many times the log says a configuration was loaded.
    pub fn loads(&self) -> usize {
        self.log().lines().filter(|l| l.contains("configuration loaded")).count()
    }

    /// Writes the configuration file at once (write and rename), so that the gateway, which
    /// polls it, can never read half a file.
    pub fn write_config(&self, config: &Value) {
        let text = serde_json::to_string_pretty(config).unwrap();
        if let Err(e) = GatewayConfig::from_json(&text) {
            panic!("the test wrote an invalid configuration: {e}\n{text}");
        }
        self.write_config_text(&text);
    }

    /// Writes any text as the configuration file, at once (write and rename).
    pub fn write_config_text(&self, text: &str) {
        let temporary = self.config_path.with_extension("json.new");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &self.config_path).unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One test's simulator, desk and gateway.
pub struct Bed {
    pub sim: RunningSimulator,
    pub desk: Desk,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    pub provider: Provider,
    /// Every answer read from the agent API or the media URLs, searched for credentials by
    /// [`Bed::finish`].
    answers: Mutex<Vec<String>>,
    /// Desks other than [`Bed::desk`] (bots), checked by [`Bed::finish`] too.
    other_desks: Vec<Desk>,
    /// Kept when the test fails, for its gateway log and store.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("the failed test's gateway log and store are kept in {}", dir.keep().display());
        }
    }
}

#[allow(dead_code)]
impl Bed {
    /// Sets up for `provider` with extra gateway flags; the gateway is not started yet (write a
    /// configuration first).
    pub async fn new(provider: Provider, args: &[&str]) -> Bed {
        Self::with_source(provider, Source::File, args).await
    }

    /// As [`Bed::new`], with the configuration read from `source`.
    pub async fn with_source(provider: Provider, source: Source, args: &[&str]) -> Bed {
        Self::build(provider, source, args, false).await
    }

    /// As [`Bed::new`] for the Twilio account, which makes its media URLs ask for the account's
    /// credentials and redirect to the simulated CDN (the simulator's `mediaAuth`).
    pub async fn with_media_auth(args: &[&str]) -> Bed {
        Self::build(Provider::Twilio, Source::File, args, true).await
    }

    async fn build(provider: Provider, source: Source, args: &[&str], media_auth: bool) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"
line:
  - channelId: "{LINE_CHANNEL_ID}"
    channelSecret: {LINE_SECRET}
    accessToken: {LINE_TOKEN}
    displayName: Contoso Support
twilio:
  - accountSid: {TWILIO_SID}
    authToken: {TWILIO_TOKEN}
    numbers:
      - phoneNumber: "{SALES_NUMBER}"
      - phoneNumber: "{SUPPORT_NUMBER}"
    mediaAuth: {media_auth}
# A loaded debug-build gateway can take a while to answer; a timeout would count as a failure.
webhookTimeout: 60s
"#
        );
        let config: SimulatorConfig = serde_yaml::from_str(&yaml).expect("a valid simulator configuration");
        let sim = simulator::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("the simulator starts");
        let desk = Desk::start(DESK_SECRET).await;
        let gateway = Gateway {
            child: None,
            provider,
            source,
            webhook_port: free_port(),
            metrics_port: free_port(),
            agent_port: free_port(),
            config_path: dir.path().join("gateway.json"),
            store: dir.path().join("gateway.db"),
            postgres_url: test_database(),
            log_path: dir.path().join("gateway.log"),
            open_file_limit: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            sim_url: sim.base_url().to_owned(),
            starts: 0,
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        Bed { sim, desk, gateway, http, provider, answers: Mutex::new(Vec::new()), other_desks: Vec::new(), dir: Some(dir) }
    }

    /// The path webhooks are served on.
    pub fn webhook_path(&self) -> String {
        format!("/switchboard/{NAMESPACE}/{}/webhook", self.provider.account())
    }

    /// The gateway's webhook URL (also the configured public callback URL).
    pub fn webhook_url(&self) -> String {
        self.gateway.webhook_url(&self.webhook_path())
    }

    /// A URL on the metrics port.
    pub fn metrics_url(&self, path: &str) -> String {
        self.gateway.metrics_url(path)
    }

    /// The account part of a configuration for this bed's provider.
    pub fn config(&self, workstreams: Vec<Value>) -> Value {
        let provider = match self.provider {
            Provider::Line => json!({"type": "Line", "channelId": LINE_CHANNEL_ID}),
            Provider::Twilio => json!({
                "type": "TwilioWhatsApp", "accountSid": TWILIO_SID,
                "numbers": [{"name": "sales", "number": SALES_NUMBER}, {"name": "support", "number": SUPPORT_NUMBER}],
            }),
        };
        json!({
            "version": 1,
            "account": {
                "namespace": NAMESPACE, "name": self.provider.account(), "displayName": "Contoso",
                "callbackPath": self.webhook_path(), "callbackUrl": self.webhook_url(), "provider": provider,
            },
            "workstreams": workstreams,
        })
    }

    /// Writes `config` and starts the gateway on it; returns once it is ready.
    pub async fn start(&mut self, config: &Value) {
        self.gateway.write_config(config);
        self.gateway.spawn();
        self.wait_ready().await;
    }

    /// Waits until `/readyz` answers 200; fails if the process exits first.
    pub async fn wait_ready(&mut self) {
        self.gateway.wait_ready(&self.http).await;
    }

    /// Restarts a stopped gateway on the same store and ports, and waits until it is ready.
    pub async fn restart(&mut self) {
        self.gateway.spawn();
        self.wait_ready().await;
    }

    /// Makes a conversation look `by` older to the gateway, as if its customer had last written
    /// that long ago: the gateway is stopped, the conversation changed through the store's own
    /// interface, and the gateway started again. The binary's clock cannot be moved; its data can.
    pub async fn age_conversation(&mut self, id: &str, by: Duration) {
        let status = self.gateway.terminate();
        assert!(status.success(), "the gateway stopped cleanly: {status:?}");
        {
            let store = match &self.gateway.postgres_url {
                Some(url) => {
                    let target = PostgresTarget::from_url(&Secret::new(url.as_str()), TlsSettings::default()).expect("the connection string is valid");
                    Store::postgres(&target, Box::new(|_, _| {}))
                }
                None => Store::sqlite(&self.gateway.store, Durability::Full, Box::new(|_, _| {})),
            }
            .expect("the store opens");
            let (id, by) = (id.to_owned(), by.as_millis() as i64);
            store
                .run(move |tx| {
                    let mut conv = tx.conversation(&id)?.unwrap_or_else(|| panic!("conversation {id} is in the store"));
                    conv.last_customer_ms -= by;
                    tx.update_conversation(&conv)
                })
                .await
                .expect("the conversation is aged");
        }
        self.restart().await;
    }

    /// The gateway's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http.get(self.metrics_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// One series of `/metrics` (name with labels as the gateway writes them); 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }

    /// POSTs to the simulator's admin API and returns its answer; fails unless the admin call
    /// itself succeeded.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.sim.base_url())).json(&body).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// A LINE customer sends a text to the gateway; returns the simulator's report.
    pub async fn line_text(&self, user: &str, name: &str, text: &str) -> Value {
        let body = json!({"type": "text", "text": text, "url": self.webhook_url(), "userId": user, "displayName": name});
        self.sim_post("/__sim/customer/line", body).await
    }

    /// LINE redelivers an event it sent before.
    pub async fn line_redeliver(&self, webhook_event_id: &str) -> Value {
        self.sim_post("/__sim/customer/line", json!({"type": "redelivery", "webhookEventId": webhook_event_id, "url": self.webhook_url()})).await
    }

    /// A WhatsApp customer writes to `to` through Twilio.
    pub async fn twilio_message(&self, to: &str, from: &str, profile: &str, body: &str, media: Vec<Value>, json_variant: bool) -> Value {
        let request = json!({
            "to": to, "from": from, "profileName": profile, "body": body, "media": media,
            "url": self.webhook_url(), "json": json_variant,
        });
        self.sim_post("/__sim/customer/twilio", request).await
    }

    /// What the gateway sent to customers through the simulated provider.
    pub async fn sim_messages(&self) -> Vec<Value> {
        let answer: Value = self.http.get(format!("{}/__sim/messages", self.sim.base_url())).send().await.unwrap().json().await.unwrap();
        answer["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the simulator holds a sent message that `probe` accepts.
    pub async fn wait_sent(&self, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.sim_messages().await;
            if let Some(m) = messages.iter().find(|m| probe(m)) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; sent so far: {messages:#?}\n{}", tail(&self.gateway.log(), 30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The simulator's request log for one route pattern (`POST /v2/bot/message/push`).
    pub async fn sim_requests(&self, route: &str) -> Vec<Value> {
        let url = format!("{}/__sim/requests", self.sim.base_url());
        let answer: Value = self.http.get(url).query(&[("route", route)]).send().await.unwrap().json().await.unwrap();
        answer["requests"].as_array().cloned().unwrap_or_default()
    }

    /// A URL on the agent API's port.
    pub fn agent_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway.agent_port)
    }

    /// Calls the agent API with the workstreams' token; returns the status and the JSON body
    /// (`Null` when empty). An error answer must be `{"error": code, "message": text}`.
    pub async fn agent(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.agent_as(Some(AGENT_TOKEN), method, path, body).await
    }

    /// As [`Bed::agent`], with another token or none.
    pub async fn agent_as(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let what = format!("{method} {path}");
        let mut request = self.http.request(method, self.agent_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, _, bytes) = self.read_answer(&what, request).await;
        let text = String::from_utf8_lossy(&bytes);
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what} answered {status} with a body that is not JSON ({e}): {text}"))
        };
        if !status.is_success() {
            assert!(
                value["error"].as_str().is_some_and(|c| !c.is_empty()) && value["message"].is_string(),
                "{what}: the error answer {status} is not {{\"error\", \"message\"}}: {value}"
            );
        }
        (status, value)
    }

    /// Sends a request and reads its whole answer, which [`Bed::finish`] then searches for
    /// credentials.
    pub async fn read_answer(&self, what: &str, request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}\n{}", tail(&self.gateway.log(), 30)));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap().to_vec();
        let shown: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default())).collect();
        self.answers.lock().unwrap().push(format!("{what} → {status}\n{}\n{}", shown.join("\n"), String::from_utf8_lossy(&bytes)));
        (status, headers, bytes)
    }

    /// `GET /v1/conversations/{id}`: the conversation and its messages; fails unless 200.
    pub async fn conversation(&self, id: &str) -> Value {
        let (status, body) = self.agent(Method::GET, &format!("/v1/conversations/{id}"), None).await;
        assert_eq!(status, 200, "GET conversation {id}: {body}");
        body
    }

    /// `POST /v1/conversations/{id}/messages`.
    pub async fn send(&self, conversation: &str, body: Value) -> (StatusCode, Value) {
        self.agent(Method::POST, &format!("/v1/conversations/{conversation}/messages"), Some(body)).await
    }

    /// An agent's text; fails unless it is queued (202). Returns the message view.
    pub async fn send_text(&self, conversation: &str, client_message_id: &str, text: &str) -> Value {
        let (status, body) = self.send(conversation, json!({"clientMessageId": client_message_id, "text": text})).await;
        assert_eq!(status, 202, "sending {client_message_id:?}: {body}");
        assert_eq!(body["message"]["status"], "queued", "{body}");
        assert_eq!(body["message"]["direction"], "out", "{body}");
        assert_eq!(body["message"]["clientMessageId"], client_message_id, "{body}");
        body["message"].clone()
    }

    /// `POST /v1/conversations/{id}/{action}` (assign, close, escalate); fails unless 200.
    /// Returns the conversation.
    pub async fn act(&self, conversation: &str, action: &str, body: Value) -> Value {
        let (status, answer) = self.agent(Method::POST, &format!("/v1/conversations/{conversation}/{action}"), Some(body)).await;
        assert_eq!(status, 200, "{action} {conversation}: {answer}");
        assert_eq!(answer["conversation"]["id"], conversation, "{answer}");
        answer["conversation"].clone()
    }

    /// Uploads a file for a conversation (`POST .../attachments?fileName=`).
    pub async fn upload(&self, conversation: &str, file_name: &str, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let path = format!("/v1/conversations/{conversation}/attachments");
        let request = self
            .http
            .post(self.agent_url(&path))
            .query(&[("fileName", file_name)])
            .bearer_auth(AGENT_TOKEN)
            .header("content-type", content_type)
            .body(bytes);
        let (status, _, answer) = self.read_answer(&format!("POST {path}"), request).await;
        let value: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("upload answered {status} with no JSON ({e})"));
        if !status.is_success() {
            let shaped = value["error"].is_string() && value["message"].is_string();
            assert!(shaped, "the error answer {status} is not {{error, message}}: {value}");
        }
        (status, value)
    }

    /// GETs any URL (a media URL, a customer attachment) as the desk would; returns status,
    /// content type and bytes.
    pub async fn fetch(&self, url: &str, token: Option<&str>) -> (StatusCode, String, Vec<u8>) {
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, headers, bytes) = self.read_answer(&format!("GET {url}"), request).await;
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (status, content_type, bytes)
    }

    /// Starts another desk that expects the workstreams' signatures (a bot); [`Bed::finish`]
    /// checks it too.
    pub async fn other_desk(&mut self) -> Desk {
        let desk = Desk::start(DESK_SECRET).await;
        self.other_desks.push(desk.clone());
        desk
    }

    /// Ends a test: the desk got only well-signed deliveries, and no credential appears in the
    /// gateway's log, its metrics, anything the desk received or any answer of the agent API.
    pub async fn finish(mut self) {
        self.desk.check();
        let mut places = vec![("gateway log".to_owned(), self.gateway.log())];
        if self.gateway.child.is_some() {
            places.push(("/metrics".to_owned(), self.metrics().await));
        }
        for (i, r) in self.desk.attempts().iter().enumerate() {
            places.push((format!("desk delivery {i}"), format!("{}\n{}", r.headers, r.raw)));
        }
        for (i, answer) in self.answers.lock().unwrap().iter().enumerate() {
            places.push((format!("agent API answer {i}"), answer.clone()));
        }
        for desk in &self.other_desks {
            desk.check();
            for (i, r) in desk.attempts().iter().enumerate() {
                // The bot's own token is in its Authorization header, by design, and only there.
                let headers: Vec<&str> = r.headers.lines().filter(|l| !l.starts_with("authorization:")).collect();
                places.push((format!("bot delivery {i}"), format!("{}\n{}", headers.join("\n"), r.raw)));
            }
        }
        let log = &places[0].1;
        assert!(log.contains("gateway listening"), "the gateway's log was captured:\n{}", tail(log, 20));
        assert!(log.contains("DEBUG"), "debug logging was on");
        assert!(!log.contains("tokio_postgres"), "the PostgreSQL client's statement log (customers' messages as parameters) stays off at debug");
        for (place, text) in &places {
            for secret in CREDENTIALS {
                assert!(!text.contains(secret), "a credential appears in the {place}");
            }
        }
        if self.gateway.child.is_some() {
            self.gateway.kill();
        }
    }
}

/// One series of a Prometheus text; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.trim().parse().unwrap_or_else(|_| panic!("{series} has value {value:?}")))
        .unwrap_or(0.0)
}

/// The last lines of a text.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A queue.
pub fn queue(name: &str) -> Value {
    json!({"name": name})
}

/// A RouteToQueue rule: `message.text` contains `text` (any case) → `queue`.
pub fn route_rule(name: &str, order: i32, text: &str, queue: &str) -> Value {
    json!({
        "name": name, "generation": 1, "order": order,
        "match": {"all": [{"field": "message.text", "operator": "Contains", "values": [text], "ignoreCase": true}]},
        "routeTo": {"queue": queue},
    })
}

/// A workstream delivering to `desk`. `queues[0]` is the fallback queue.
pub fn workstream(name: &str, channel: Value, desk: &str, queues: &[&str], greeting: Option<&str>, rules: Vec<Value>) -> Value {
    let messages: Vec<Value> = greeting.iter().map(|text| json!({"trigger": "Greeting", "locale": "en", "text": text})).collect();
    json!({
        "name": name, "generation": 1, "channel": channel, "language": "en",
        "distribution": {"mode": "Push", "fallbackQueue": queues[0], "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
        "queues": queues.iter().map(|q| queue(q)).collect::<Vec<_>>(),
        "automatedMessages": messages,
        "delivery": {"url": desk, "signingSecret": {"env": SIGNING_ENV}, "agentApiToken": {"env": AGENT_ENV}},
        "rules": {"classification": [], "routeToQueue": rules},
    })
}

/// The LINE channel of a workstream.
pub fn line_channel() -> Value {
    json!({"type": "Line"})
}

/// A WhatsApp number's channel.
pub fn whatsapp_channel(name: &str, number: &str) -> Value {
    json!({"type": "WhatsApp", "numberName": name, "number": number})
}

/// Runs `jobs` with at most `concurrency` at once, in order of index; returns their results by
/// index.
pub async fn run_concurrently<T, F, Fut>(count: usize, concurrency: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures::StreamExt;
    let mut results: Vec<(usize, T)> =
        futures::stream::iter(0..count).map(|i| { let f = job(i); async move { (i, f.await) } }).buffer_unordered(concurrency).collect().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
