//! A controller under test: the real `switchboard controller` binary, watching one namespace of
//! the test cluster, calling an in-process provider simulator. It can be stopped (SIGTERM),
//! killed (a crash) and started again; its log is kept for inspection.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{MessageTemplate, MessagingAccount};
use switchboard::simulator::{self, RunningSimulator, SimulatorConfig};

use crate::cluster::{self, MANAGER};

/// The simulated providers' credentials; tests grep every output for them.
pub const LINE_SECRET: &str = "e2e-line-channel-secret-5f1c2a";
pub const LINE_TOKEN: &str = "e2e-line-access-token-8d33b0";
pub const TWILIO_TOKEN: &str = "e2e-twilio-auth-token-a41e97";
pub const WRONG_TOKEN: &str = "e2e-wrong-token-70c2de";

/// The provider accounts of the examples, as the simulator knows them.
fn simulator_yaml(extra: &str) -> String {
    format!(
        r#"
line:
  - channelId: "1657123456"
    channelSecret: {LINE_SECRET}
    accessToken: {LINE_TOKEN}
    displayName: Contoso Support
twilio:
  - accountSid: AC0123456789abcdef0123456789abcdef
    authToken: {TWILIO_TOKEN}
    friendlyName: Contoso WhatsApp
    numbers:
      - phoneNumber: "+14155550100"
      - phoneNumber: "+14155550101"
      - phoneNumber: "+14155550102"
    messagingServices:
      - sid: MG0123456789abcdef0123456789abcdef
        numbers: ["+14155550100", "+14155550101"]
{extra}"#
    )
}

/// The example manifests with the simulator's credentials in their Secrets.
pub fn examples(files: &[&str]) -> Vec<Value> {
    let real: BTreeMap<&str, &str> =
        [("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN), ("auth-token", TWILIO_TOKEN)].into();
    let mut docs = Vec::new();
    for file in files {
        for mut doc in cluster::documents(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(file)) {
            if doc["kind"] == "Secret"
                && let Some(data) = doc["stringData"].as_object_mut()
            {
                for (key, value) in data.iter_mut() {
                    if let Some(real) = real.get(key.as_str()) {
                        *value = json!(real);
                    }
                }
            }
            docs.push(doc);
        }
    }
    docs
}

/// A namespace, a simulator and a controller for one test.
pub struct Harness {
    pub client: Client,
    pub namespace: String,
    pub sim: RunningSimulator,
    http: reqwest::Client,
    controller: Option<Child>,
    rollouts: Option<tokio::task::JoinHandle<()>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    flags: Vec<String>,
}

impl Harness {
    /// Sets up for `test`, or None (after saying why) without a test cluster. `simulator` adds
    /// top-level simulator settings (e.g. an approval schedule); `flags` go to the controller.
    pub async fn start(test: &str, simulator: &str, flags: &[&str]) -> Option<Harness> {
        let client = cluster::client(test).await?;
        cluster::install_crds(&client).await;
        let namespace = format!("{test}-{:04x}", fastrand::u16(..));
        cluster::ensure_namespace(&client, &namespace).await;
        let config: SimulatorConfig = serde_yaml::from_str(&simulator_yaml(simulator)).expect("a valid simulator configuration");
        let sim = simulator::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("the simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let mut harness = Harness {
            client,
            namespace,
            sim,
            http: reqwest::Client::new(),
            controller: None,
            rollouts: None,
            log: dir.path().join("controller.log"),
            _dir: dir,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        harness.start_controller();
        harness.complete_rollouts(true);
        Some(harness)
    }

    /// The test server runs no Deployment controller and no kubelet: while on, every gateway
    /// Deployment of the namespace is reported rolled out and available, as a cluster would
    /// shortly after the controller applied it.
    pub fn complete_rollouts(&mut self, on: bool) {
        if let Some(task) = self.rollouts.take() {
            task.abort();
        }
        if on {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
            self.rollouts = Some(tokio::spawn(async move {
                loop {
                    for deployment in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                        let replicas = deployment.spec.replicas.unwrap_or(1);
                        let generation = deployment.metadata.generation.unwrap_or_default();
                        let current = deployment.status.as_ref().is_some_and(|s| s.observed_generation == Some(generation) && s.available_replicas == Some(replicas));
                        if !current {
                            let _ = mark_available(&api, &deployment.name_any(), generation, replicas).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }));
        }
    }

    /// Reports a gateway Deployment rolled out and available (what the test server cannot do).
    pub async fn mark_gateway_available(&self, account: &str) {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = api.get(&format!("{account}-gateway")).await.unwrap();
        let replicas = deployment.spec.replicas.unwrap_or(1);
        mark_available(&api, &deployment.name_any(), deployment.metadata.generation.unwrap_or_default(), replicas).await.unwrap();
    }

    /// Starts the controller binary; its stderr is appended to the log.
    pub fn start_controller(&mut self) {
        let kubeconfig = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
        let url = self.sim.base_url().to_owned();
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        // Short retry delays and a long re-check, unless the test sets its own.
        let defaults = [("--min-backoff", "1s"), ("--max-backoff", "4s"), ("--recheck-interval", "1h")]
            .into_iter()
            .filter(|(flag, _)| !self.flags.iter().any(|f| f == flag))
            .flat_map(|(flag, value)| [flag, value]);
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["controller", "--kubeconfig", &kubeconfig, "--namespace", &self.namespace, "--probe-addr", "127.0.0.1:0"])
            .args(["--line-api-url", &url, "--line-data-api-url", &url, "--twilio-api-url", &url])
            .args(["--twilio-content-url", &url, "--twilio-messaging-url", &url])
            .args(&self.flags)
            .args(defaults)
            // Debug logging everywhere: the widest net for a leaked credential.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        self.controller = Some(command.spawn().expect("the controller starts"));
    }

    /// Sends SIGTERM and waits for the controller to exit.
    pub fn stop_controller(&mut self) -> ExitStatus {
        let mut child = self.controller.take().expect("a running controller");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().ok();
        panic!("the controller did not stop within 10 s of SIGTERM");
    }

    /// Kills the controller without warning, as a crash would.
    pub fn kill_controller(&mut self) {
        let mut child = self.controller.take().expect("a running controller");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The running controller's process ID (the cluster_rules bench reads its peak memory).
    #[allow(dead_code)]
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().map(Child::id)
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Applies manifest documents in this namespace.
    pub async fn apply(&self, docs: &[Value]) {
        for doc in docs {
            let mut doc = doc.clone();
            doc["metadata"]["namespace"] = json!(self.namespace);
            cluster::apply(&self.client, &doc).await.unwrap_or_else(|e| panic!("applying {}: {e}", doc["metadata"]["name"]));
        }
    }

    /// Applies an Opaque Secret.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": string_data});
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret: Secret = serde_json::from_value(secret).unwrap();
        api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret)).await.unwrap();
    }

    pub fn accounts(&self) -> Api<MessagingAccount> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn templates(&self) -> Api<MessageTemplate> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Deletes an account (its finalizer runs first).
    pub async fn delete_account(&self, name: &str) {
        self.accounts().delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// The condition of `type_` as (status, reason, message), once one exists.
    pub async fn condition<K>(api: &Api<K>, name: &str, type_: &str) -> Option<(String, String, String)>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
    {
        let object = serde_json::to_value(api.get(name).await.ok()?).unwrap();
        let conditions = object["status"]["conditions"].as_array()?.clone();
        let c = conditions.into_iter().find(|c| c["type"] == type_)?;
        Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned(), c["message"].as_str()?.to_owned()))
    }

    /// Waits until the condition has `status` and `reason`; returns its message.
    pub async fn wait_condition<K>(&self, api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str) -> String
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
    {
        let what = format!("{name} {type_}={status} ({reason})");
        let found = cluster::wait_within(Duration::from_secs(60), || async {
            Self::condition(api, name, type_).await.filter(|(s, r, _)| s == status && r == reason).map(|(_, _, m)| m)
        })
        .await;
        match found {
            Some(message) => message,
            None => panic!("timed out waiting for {what}; now {:?}\ncontroller log tail:\n{}", Self::condition(api, name, type_).await, tail(&self.log(), 40)),
        }
    }

    /// Waits until `probe` finds what it wants in a template's status.
    pub async fn wait_for_template<T>(&self, name: &str, probe: impl Fn(&switchboard::api::MessageTemplateStatus) -> Option<T>) -> T {
        let templates = self.templates();
        cluster::wait_within(Duration::from_secs(60), || async { templates.get(name).await.ok()?.status.as_ref().and_then(&probe) })
            .await
            .unwrap_or_else(|| panic!("timed out waiting for template {name}\ncontroller log tail:\n{}", tail(&self.log(), 40)))
    }

    /// GET on the simulator's admin API.
    pub async fn sim_get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.sim.base_url())).send().await.unwrap().json().await.unwrap()
    }

    /// POST on the simulator's admin API; panics unless it succeeds.
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.sim.base_url())).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }

    /// DELETE on the simulator's admin API.
    pub async fn sim_delete(&self, path: &str) {
        self.http.delete(format!("{}{path}", self.sim.base_url())).send().await.unwrap();
    }

    /// How many provider requests the simulator saw on `route` (`METHOD /glob`).
    pub async fn requests(&self, route: &str) -> u64 {
        let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("route", route).finish();
        self.sim_get(&format!("/__sim/requests?{query}")).await["count"].as_u64().unwrap()
    }

    /// The run-time state of the simulated Twilio account.
    pub async fn twilio_state(&self) -> Value {
        self.sim_get("/__sim/accounts").await["twilio"][0].clone()
    }

    /// The simulated LINE channel's webhook endpoint.
    pub async fn line_endpoint(&self) -> Value {
        self.sim_get("/__sim/accounts").await["line"][0]["webhookEndpoint"].clone()
    }

    /// The events of this namespace, as JSON.
    pub async fn events(&self) -> Vec<Value> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&ListParams::default()).await.unwrap().items.into_iter().map(|e| serde_json::to_value(e).unwrap()).collect()
    }

    /// Fails if a credential appears in the controller's log, this namespace's events, or the
    /// statuses of its accounts and templates.
    pub async fn assert_no_secrets(&self) {
        let mut places = vec![("controller log".to_owned(), self.log())];
        for event in self.events().await {
            places.push((format!("event {}", event["metadata"]["name"]), event.to_string()));
        }
        for account in self.accounts().list(&ListParams::default()).await.unwrap() {
            places.push((format!("account {:?}", account.metadata.name), serde_json::to_string(&account.status).unwrap()));
        }
        for template in self.templates().list(&ListParams::default()).await.unwrap() {
            places.push((format!("template {:?}", template.metadata.name), serde_json::to_string(&template.status).unwrap()));
        }
        assert!(self.log().contains("controller starting"), "the log was captured");
        for (place, text) in places {
            for secret in [LINE_SECRET, LINE_TOKEN, TWILIO_TOKEN, WRONG_TOKEN] {
                assert!(!text.contains(secret), "a credential appears in the {place}");
            }
        }
    }
}

async fn mark_available(api: &Api<Deployment>, name: &str, generation: i64, replicas: i32) -> Result<Deployment, kube::Error> {
    let status = json!({"status": {
        "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": replicas, "availableReplicas": replicas,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(task) = self.rollouts.take() {
            task.abort();
        }
        if let Some(mut child) = self.controller.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
