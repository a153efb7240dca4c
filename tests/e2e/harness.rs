//! A controller under test: the real `switchboard controller` binary, watching one namespace of
//! the test cluster, calling an in-process provider simulator. It can be stopped (SIGTERM),
//! killed (a crash) and started again; its log is kept for inspection.
//!
//! It runs with the permissions an install gives it, not the test's admin credentials: as the
//! ServiceAccount `switchboard-controller` (by impersonation), bound to the ClusterRole read from
//! `deploy/overlays/cluster-wide/rbac.yaml` itself. A request the API server refuses it fails
//! the test (see [`Harness`]'s `Drop`), so the shipped role cannot lack a permission the
//! controller uses.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{MessageTemplate, MessagingAccount};
use switchboard::simulator::{self, RunningSimulator, SimulatorConfig};

use crate::cluster::{self, MANAGER};

/// Where the controller's ServiceAccount lives in the test cluster (`switchboard-system` in an
/// install).
pub const CONTROLLER_NAMESPACE: &str = "switchboard-e2e";

/// The controller's ServiceAccount, as `deploy/base/serviceaccount.yaml` names it.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "switchboard-controller";

/// The user name the controller runs as.
pub fn controller_user() -> String {
    format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}")
}

/// Where the ServiceAccount of controllers started with [`Harness::start_namespaced`] lives: the
/// same name as [`CONTROLLER_SERVICE_ACCOUNT`], in a namespace no ClusterRoleBinding names.
pub const NAMESPACED_CONTROLLER_NAMESPACE: &str = "switchboard-e2e-namespaced";

/// Which of deploy/'s two overlays the controller gets its permissions from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `deploy/overlays/cluster-wide`: the ClusterRole, bound to [`controller_user`].
    ClusterWide,
    /// `deploy/overlays/namespaced`: its Role and the leader-election Role in the test's
    /// namespace only, bound to a ServiceAccount in [`NAMESPACED_CONTROLLER_NAMESPACE`]; the
    /// controller is started with `--watch-namespace`.
    Namespaced,
}

impl Grant {
    /// The user name the controller runs as under this grant.
    pub fn user(self) -> String {
        match self {
            Grant::ClusterWide => controller_user(),
            Grant::Namespaced => format!("system:serviceaccount:{NAMESPACED_CONTROLLER_NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}"),
        }
    }
}

/// The ClusterRole and ClusterRoleBinding that give the test ServiceAccount the leader-election
/// rules of `deploy/base/leader-election-rbac.yaml` in every namespace (see
/// [`install_controller_rbac`]).
const LEADER_ELECTION_GRANT: &str = "switchboard-e2e-leader-election";

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
    /// The test cluster's kubeconfig, acting as the controller's ServiceAccount.
    kubeconfig: PathBuf,
    grant: Grant,
    _dir: tempfile::TempDir,
    flags: Vec<String>,
}

impl Harness {
    /// Sets up for `test`, or None (after saying why) without a test cluster. `simulator` adds
    /// top-level simulator settings (e.g. an approval schedule); `flags` go to the controller.
    pub async fn start(test: &str, simulator: &str, flags: &[&str]) -> Option<Harness> {
        Self::start_with(test, simulator, flags, Grant::ClusterWide).await
    }

    /// Like [`Harness::start`], with the controller under the namespaced overlay's Role (see
    /// [`Grant::Namespaced`]) instead of the ClusterRole.
    #[allow(dead_code)]
    pub async fn start_namespaced(test: &str, simulator: &str, flags: &[&str]) -> Option<Harness> {
        Self::start_with(test, simulator, flags, Grant::Namespaced).await
    }

    async fn start_with(test: &str, simulator: &str, flags: &[&str], grant: Grant) -> Option<Harness> {
        let client = cluster::client(test).await?;
        cluster::install_crds(&client).await;
        install_controller_rbac(&client).await;
        let namespace = format!("{test}-{:04x}", fastrand::u16(..));
        cluster::ensure_namespace(&client, &namespace).await;
        if grant == Grant::Namespaced {
            install_namespaced_rbac(&client, &namespace).await;
        }
        let config: SimulatorConfig = serde_yaml::from_str(&simulator_yaml(simulator)).expect("a valid simulator configuration");
        let sim = simulator::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("the simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("controller.kubeconfig");
        let admin = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
        write_impersonating_kubeconfig(Path::new(&admin), &grant.user(), &kubeconfig);
        let mut harness = Harness {
            client,
            namespace,
            sim,
            http: reqwest::Client::new(),
            controller: None,
            rollouts: None,
            log: dir.path().join("controller.log"),
            kubeconfig,
            grant,
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

    /// Starts the controller binary, as its ServiceAccount; its stderr is appended to the log.
    pub fn start_controller(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        self.controller = Some(self.spawn_controller(&[], log));
    }

    /// Starts one more controller process like [`Harness::start_controller`]'s, with `extra` flags
    /// and its own `log` (the leader-election test runs two side by side); the caller owns it.
    pub fn spawn_controller(&self, extra: &[&str], log: File) -> Child {
        let kubeconfig = self.kubeconfig.to_str().expect("a UTF-8 temporary path").to_owned();
        let url = self.sim.base_url().to_owned();
        // Short retry delays and a long re-check, unless the test sets its own.
        let defaults = [("--min-backoff", "1s"), ("--max-backoff", "4s"), ("--recheck-interval", "1h")]
            .into_iter()
            .filter(|(flag, _)| !self.flags.iter().any(|f| f == flag))
            .flat_map(|(flag, value)| [flag, value]);
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["controller", "--kubeconfig", &kubeconfig, self.namespace_flag(), &self.namespace, "--probe-addr", "127.0.0.1:0"])
            .args(["--line-api-url", &url, "--line-data-api-url", &url, "--twilio-api-url", &url])
            .args(["--twilio-content-url", &url, "--twilio-messaging-url", &url])
            .args(&self.flags)
            .args(defaults)
            .args(extra)
            // Debug logging everywhere: the widest net for a leaked credential.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        command.spawn().expect("the controller starts")
    }

    /// Sends SIGTERM and waits for the controller to exit.
    pub fn stop_controller(&mut self) -> ExitStatus {
        terminate(self.controller.as_mut().expect("a running controller"), "")
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

    /// `--namespace`, or its alias `--watch-namespace` that the namespaced overlay passes.
    fn namespace_flag(&self) -> &'static str {
        match self.grant {
            Grant::ClusterWide => "--namespace",
            Grant::Namespaced => "--watch-namespace",
        }
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The lines of the controller's log in which the API server refused it a request: RBAC's
    /// `<resource> "<name>" is forbidden: User "system:serviceaccount:..." cannot <verb> ...`,
    /// and the bare `is forbidden: ` of a server-side apply that would create an object without
    /// `create` (the Status has code 403 either way).
    pub fn forbidden(&self) -> Vec<String> {
        let refused = |l: &&str| l.contains(" is forbidden: ") || (l.contains("Status {") && l.contains("code: 403"));
        self.log().lines().filter(refused).map(str::to_owned).collect()
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

/// Installs, once per test process (and idempotently across processes), what an install of
/// `deploy/overlays/cluster-wide` gives the controller, read from the shipped files: the
/// ServiceAccount, the ClusterRole and its ClusterRoleBinding, with the subject in
/// [`CONTROLLER_NAMESPACE`] as kustomize's `namespace:` would put it. The leader-election
/// Role's rules are granted as a ClusterRole instead: each test's controller keeps its Lease
/// where the test puts it, not in one fixed namespace.
pub async fn install_controller_rbac(client: &Client) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            cluster::ensure_namespace(client, CONTROLLER_NAMESPACE).await;
            let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
            let shipped = cluster::documents(&deploy.join("base/serviceaccount.yaml"))
                .into_iter()
                .chain(cluster::documents(&deploy.join("overlays/cluster-wide/rbac.yaml")));
            for mut doc in shipped {
                match doc["kind"].as_str() {
                    Some("ServiceAccount") => doc["metadata"]["namespace"] = json!(CONTROLLER_NAMESPACE),
                    Some("ClusterRoleBinding") => in_controller_namespace(&mut doc),
                    Some("ClusterRole") => {}
                    other => panic!("unexpected {other:?} in the controller's RBAC"),
                }
                apply_object(client, &doc).await;
            }
            for doc in cluster::documents(&deploy.join("base/leader-election-rbac.yaml")) {
                let mut doc = match doc["kind"].as_str() {
                    Some("Role") => json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": LEADER_ELECTION_GRANT}, "rules": doc["rules"],
                    }),
                    Some("RoleBinding") => json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": LEADER_ELECTION_GRANT},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": LEADER_ELECTION_GRANT},
                        "subjects": doc["subjects"],
                    }),
                    other => panic!("unexpected {other:?} in the leader-election RBAC"),
                };
                in_controller_namespace(&mut doc);
                apply_object(client, &doc).await;
            }
        })
        .await;
}

/// Installs what `deploy/overlays/namespaced` gives the controller, read from the shipped
/// files, for a controller watching `namespace`: a ServiceAccount in
/// [`NAMESPACED_CONTROLLER_NAMESPACE`], and in `namespace` the overlay's Role and RoleBinding and
/// the base's leader-election Role and RoleBinding (a test's controller keeps its Lease in the
/// namespace it watches), with the namespaces the overlay's replacements would fill in.
async fn install_namespaced_rbac(client: &Client, namespace: &str) {
    cluster::ensure_namespace(client, NAMESPACED_CONTROLLER_NAMESPACE).await;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let shipped = cluster::documents(&deploy.join("base/serviceaccount.yaml"))
        .into_iter()
        .chain(cluster::documents(&deploy.join("overlays/namespaced/rbac.yaml")))
        .chain(cluster::documents(&deploy.join("base/leader-election-rbac.yaml")));
    for mut doc in shipped {
        match doc["kind"].as_str() {
            Some("ServiceAccount") => doc["metadata"]["namespace"] = json!(NAMESPACED_CONTROLLER_NAMESPACE),
            Some("Role") => doc["metadata"]["namespace"] = json!(namespace),
            Some("RoleBinding") => {
                doc["metadata"]["namespace"] = json!(namespace);
                in_namespace(&mut doc, NAMESPACED_CONTROLLER_NAMESPACE);
            }
            other => panic!("unexpected {other:?} in the namespaced controller's RBAC"),
        }
        apply_object(client, &doc).await;
    }
}

/// Puts a binding's ServiceAccount subjects in [`CONTROLLER_NAMESPACE`].
fn in_controller_namespace(binding: &mut Value) {
    in_namespace(binding, CONTROLLER_NAMESPACE);
}

/// Puts a binding's ServiceAccount subjects in `namespace`.
fn in_namespace(binding: &mut Value, namespace: &str) {
    for subject in binding.get_mut("subjects").and_then(Value::as_array_mut).into_iter().flatten() {
        if subject["kind"] == "ServiceAccount" {
            subject["namespace"] = json!(namespace);
        }
    }
}

/// Server-side applies any manifest document, cluster-scoped or namespaced.
async fn apply_object(client: &Client, doc: &Value) {
    let api_version = doc["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, doc["kind"].as_str().unwrap()));
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let name = doc["metadata"]["name"].as_str().unwrap();
    let object: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", ar.kind));
}

/// A client for the test cluster that acts as `user` (kube's `auth_info.impersonate`, sent as
/// the Impersonate-User header).
#[allow(dead_code)]
pub async fn impersonating_client(user: &str) -> Client {
    let path = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

/// Writes a copy of the kubeconfig `admin` whose current user acts as `user` (the kubeconfig's
/// `as`, sent as the Impersonate-User header), readable by its owner only (it holds the admin
/// credentials it impersonates with).
pub fn write_impersonating_kubeconfig(admin: &Path, user: &str, path: &Path) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let text = std::fs::read_to_string(admin).unwrap_or_else(|e| panic!("reading {}: {e}", admin.display()));
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let context = config["current-context"].as_str().expect("a current context").to_owned();
    let contexts = config["contexts"].as_sequence().expect("contexts");
    let current = contexts.iter().find(|c| c["name"].as_str() == Some(&context)).expect("the current context");
    let user_name = current["context"]["user"].as_str().expect("the current context's user").to_owned();
    let users = config["users"].as_sequence_mut().expect("users");
    let entry = users.iter_mut().find(|u| u["name"].as_str() == Some(&user_name)).expect("the current user");
    entry["user"]["as"] = serde_yaml::Value::from(user);
    let mut file = File::options().write(true).create(true).truncate(true).mode(0o600).open(path).unwrap();
    file.write_all(serde_yaml::to_string(&config).unwrap().as_bytes()).unwrap();
}

impl Drop for Harness {
    /// Stops the controller; then fails the test if the API server refused the controller
    /// anything (unless the test is failing already): the shipped ClusterRole is missing it.
    fn drop(&mut self) {
        if let Some(task) = self.rollouts.take() {
            task.abort();
        }
        if let Some(mut child) = self.controller.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let forbidden = self.forbidden();
        if !forbidden.is_empty() && !std::thread::panicking() {
            panic!(
                "the API server refused the controller's ServiceAccount {} request(s); {} lacks a permission:\n{}",
                forbidden.len(),
                match self.grant {
                    Grant::ClusterWide => "deploy/overlays/cluster-wide/rbac.yaml",
                    Grant::Namespaced => "deploy/overlays/namespaced/rbac.yaml",
                },
                forbidden.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends SIGTERM to a controller and waits (10 s at most) for it to exit; `log` is shown when
/// it does not.
pub fn terminate(child: &mut Child, log: &str) -> ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -TERM failed");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    panic!("the controller did not stop within 10 s of SIGTERM\n{log}");
}

/// Where a controller serves /healthz, /readyz and /metrics, from the last "controller starting"
/// line of its log (it listens on `--probe-addr 127.0.0.1:0`, a port chosen at start).
pub fn probe_addr(log: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains("controller starting"))?;
    let rest = &line[line.find("probes=")? + "probes=".len()..];
    Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
}
