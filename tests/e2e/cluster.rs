//! Connecting to the test cluster and applying manifests to it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde_json::Value;
use switchboard::api::crds::Kind;
use switchboard::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};

/// The field manager of everything these tests apply.
pub const MANAGER: &str = "switchboard-e2e";

/// A client for the test cluster, or None (after saying why) when no cluster is named.
pub async fn client(test: &str) -> Option<Client> {
    let Ok(path) = std::env::var("SWITCHBOARD_TEST_KUBECONFIG") else {
        // Written past the test harness's capture, so that a skip is always visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: SWITCHBOARD_TEST_KUBECONFIG is not set (tests/run.sh starts a real API server and sets it)"
        );
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("a usable kubeconfig");
    Some(Client::try_from(config).expect("a client"))
}

/// Installs the CRDs from `crds/` and waits until they are established. Create or replace,
/// not server-side apply: a 1.20 server's typed patches refuse the `x-kubernetes-validations`
/// it does not know, while create and update prune them.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in Kind::ALL {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(kind.file_name());
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        let written = match api.get_opt(&name).await.unwrap() {
            Some(existing) => {
                let mut crd = crd;
                crd.metadata.resource_version = existing.metadata.resource_version;
                api.replace(&name, &Default::default(), &crd).await
            }
            None => api.create(&Default::default(), &crd).await,
        };
        // Tests run in parallel: another may have written the same CRD in between.
        if let Err(e) = written
            && !matches!(&e, kube::Error::Api(s) if s.code == 409)
        {
            panic!("installing {name}: {e}");
        }
        wait_for(&format!("CRD {name} established"), || async {
            let crd = api.get(&name).await.ok()?;
            crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        })
        .await;
    }
}

/// Polls `probe` until it returns Some, for at most 30 seconds.
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_within(Duration::from_secs(30), probe).await.unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Polls `probe` every 100 ms until it returns Some, or None after `limit`.
pub async fn wait_within<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(v) = probe().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Creates the namespace if it does not exist.
pub async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns)).await.unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "Secret" => ApiResource::erase::<Secret>(&()),
        "MessagingAccount" => ApiResource::erase::<MessagingAccount>(&()),
        "Workstream" => ApiResource::erase::<Workstream>(&()),
        "RoutingRule" => ApiResource::erase::<RoutingRule>(&()),
        "MessageTemplate" => ApiResource::erase::<MessageTemplate>(&()),
        _ => return None,
    })
}

/// Server-side applies one manifest document; Err carries the server's message.
pub async fn apply(client: &Client, doc: &Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let ar = api_resource(kind).unwrap_or_else(|| panic!("the tests do not apply {kind}"));
    let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    ensure_namespace(client, namespace).await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let mut obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    obj.types.get_or_insert_with(|| kube::api::TypeMeta { api_version: ar.api_version.clone(), kind: ar.kind.clone() });
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj)).await.map(|_| ()).map_err(|e| e.to_string())
}

/// The documents of a manifest file.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The manifest files of a folder, sorted.
pub fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The plural resource path of one of our kinds, for raw requests.
pub fn plural<K: Resource<DynamicType = ()>>() -> String {
    K::plural(&()).into_owned()
}
