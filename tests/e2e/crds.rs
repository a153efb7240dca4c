//! The CRDs on a real API server: installed from `crds/`, examples accepted, invalid examples
//! rejected where the schema can say so, and what `kubectl explain` and `kubectl get` read.

use serde_json::Value;
use switchboard::api::crds::Kind;
use switchboard::api::validation::schema_errors;
use switchboard::api::{MessagingAccount, RoutingRule, Workstream};

use std::path::Path;

use crate::cluster::{self, apply, documents, plural, yaml_files};

/// The documents of an example that are core or Switchboard objects: another operator's (the
/// CloudNativePG Cluster of examples/line-postgres.yaml) has no CRD on the test server and is
/// that operator's to check.
fn our_documents(path: &Path) -> Vec<Value> {
    let ours = |v: &Value| v["apiVersion"].as_str().is_some_and(|a| a == "v1" || a.starts_with("switchboard.dev/"));
    documents(path).into_iter().filter(ours).collect()
}

#[tokio::test]
async fn examples_are_accepted() {
    let Some(client) = cluster::client("examples_are_accepted").await else { return };
    cluster::install_crds(&client).await;
    let files = yaml_files("examples");
    assert!(files.len() >= 3, "examples/ holds the LINE, WhatsApp and template sets");
    for file in files {
        for doc in our_documents(&file) {
            if let Err(e) = apply(&client, &doc).await {
                panic!("{}: {} {} was refused: {e}", file.display(), doc["kind"], doc["metadata"]["name"]);
            }
        }
    }
}

/// The server enforces the structural schema (types, required fields, patterns, enums,
/// bounds, list-map keys); the CEL rules need 1.25+, and semantic checks are `check`'s and the
/// controller's. So a document is refused exactly when its schema errors (other than unknown
/// fields, which the server prunes silently) are not empty.
#[tokio::test]
async fn invalid_examples_are_refused_where_the_schema_can_say_so() {
    let Some(client) = cluster::client("invalid_examples_are_refused_where_the_schema_can_say_so").await else { return };
    cluster::install_crds(&client).await;
    let mut refused = 0;
    let mut accepted = 0;
    for file in yaml_files("examples/bad") {
        for doc in documents(&file) {
            let Some(kind) = doc["kind"].as_str().and_then(Kind::from_name) else {
                apply(&client, &doc).await.unwrap_or_else(|e| panic!("{}: Secret refused: {e}", file.display()));
                continue;
            };
            let schema_level: Vec<String> =
                schema_errors(kind, &doc).into_iter().filter(|e| e.message != "unknown field").map(|e| e.to_string()).collect();
            let outcome = apply(&client, &doc).await;
            let what = format!("{} {} {}", file.display(), kind.name(), doc["metadata"]["name"]);
            match (&outcome, schema_level.is_empty()) {
                (Ok(()), true) => accepted += 1,
                (Err(_), false) => refused += 1,
                (Ok(()), false) => panic!("{what}: the server accepted a document with schema errors {schema_level:?}"),
                (Err(e), true) => panic!("{what}: the server refused a schema-valid document: {e}"),
            }
        }
    }
    assert!(refused >= 3, "several bad examples are schema-level ({refused} refused)");
    assert!(accepted >= 3, "several bad examples pass the schema and are left to check and the controller ({accepted} accepted)");
}

#[tokio::test]
async fn descriptions_and_printer_columns_land() {
    let Some(client) = cluster::client("descriptions_and_printer_columns_land").await else { return };
    cluster::install_crds(&client).await;
    let api: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(client.clone());
    let crd = api.get("messagingaccounts.switchboard.dev").await.unwrap();
    let version = &crd.spec.versions[0];
    let schema = serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap();
    let channel_id = &schema["properties"]["spec"]["properties"]["line"]["properties"]["channelId"];
    assert!(channel_id["description"].as_str().unwrap().contains("channel ID"), "{channel_id}");
    assert_eq!(channel_id["pattern"], "^[0-9]{1,20}$");
    let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Provider", "Ready", "Reason", "Callback", "Message", "Age"]);
    assert_eq!(crd.spec.names.categories.as_deref(), Some(&["switchboard".to_owned()][..]));
}

/// What `kubectl get switchboard -n support` does: discovery finds every resource in the
/// category, and the server renders each list as a table with our columns.
#[tokio::test]
async fn the_switchboard_category_lists_the_examples_with_their_columns() {
    let Some(client) = cluster::client("the_switchboard_category_lists_the_examples_with_their_columns").await else { return };
    cluster::install_crds(&client).await;
    for file in yaml_files("examples") {
        for doc in our_documents(&file) {
            apply(&client, &doc).await.unwrap();
        }
    }
    let resources: Value = client.request(http::Request::get("/apis/switchboard.dev/v1alpha1").body(vec![]).unwrap()).await.unwrap();
    let in_category: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["categories"].as_array().is_some_and(|c| c.iter().any(|c| c == "switchboard")))
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(in_category.len(), 4, "{in_category:?}");

    let table = |resource: String| {
        let client = client.clone();
        async move {
            let request = http::Request::get(format!("/apis/switchboard.dev/v1alpha1/namespaces/support/{resource}"))
                .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(vec![])
                .unwrap();
            let table: Value = client.request(request).await.unwrap();
            let columns: Vec<String> =
                table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
            let names: Vec<String> = table["rows"].as_array().unwrap().iter().map(|r| r["cells"][0].as_str().unwrap().to_owned()).collect();
            (columns, names)
        }
    };
    let (columns, names) = table(plural::<RoutingRule>()).await;
    assert_eq!(columns, ["Name", "Workstream", "Stage", "Order", "Queue", "Ready", "Reason", "Message", "Age"]);
    assert!(names.contains(&"billing-queue".to_owned()), "{names:?}");
    let (columns, names) = table(plural::<Workstream>()).await;
    assert!(columns.iter().any(|c| c == "Fallback") && columns.iter().any(|c| c == "Account"), "{columns:?}");
    assert!(names.contains(&"support-line".to_owned()), "{names:?}");
    let (columns, names) = table(plural::<MessagingAccount>()).await;
    assert!(columns.iter().any(|c| c == "Callback"), "{columns:?}");
    assert!(names.contains(&"contoso-line".to_owned()), "{names:?}");
}

/// Walks a definition the API server publishes in `/openapi/v2`; `out` gets every field kubectl
/// cannot see into: one without a type (kubectl explain shows `<>`, and its client-side check
/// takes anything there), or an object without properties. Declared maps (additionalProperties:
/// annotations, attributes, sample values, resource quantities) and int-or-string quantities
/// are what they are meant to be; `$ref`s point at the server's own definitions (metadata).
fn hidden(schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("$ref").is_some() {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    match schema["type"].as_str() {
        None if !int_or_string => out.push(format!("{path}: no type")),
        Some("object") if schema.get("properties").is_none() && schema.get("additionalProperties").is_none() => {
            out.push(format!("{path}: an object without properties"));
        }
        _ => {}
    }
    for (name, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        hidden(child, &format!("{path}.{name}"), out);
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", "[*]")] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            hidden(child, &format!("{path}{suffix}"), out);
        }
    }
}

/// What `kubectl explain` and kubectl's client-side field check read: the API server's
/// `/openapi/v2`. A 1.20 server publishes a `nullable` field without its type and properties,
/// so every field of every kind must be published without it, down to `spec.line`'s.
#[tokio::test]
async fn openapi_v2_publishes_every_field_of_every_kind() {
    let Some(client) = cluster::client("openapi_v2_publishes_every_field_of_every_kind").await else { return };
    cluster::install_crds(&client).await;
    let definition = |spec: &Value, kind: Kind| spec["definitions"][format!("dev.switchboard.v1alpha1.{}", kind.name())].clone();
    // The server publishes a CRD's schema a moment after it changes.
    let spec: Value = cluster::wait_for("/openapi/v2 to hold the installed CRDs", || async {
        let spec: Value = client.request(http::Request::get("/openapi/v2").body(vec![]).unwrap()).await.ok()?;
        let current = Kind::ALL.into_iter().all(|kind| definition(&spec, kind)["properties"]["status"]["properties"].get("lastHandledReconcileAt").is_some());
        current.then_some(spec)
    })
    .await;
    for kind in Kind::ALL {
        let published = definition(&spec, kind);
        let mut found = Vec::new();
        hidden(&published, kind.name(), &mut found);
        assert!(found.is_empty(), "kubectl cannot see into {found:?}");
        for part in ["spec", "status"] {
            assert!(published["properties"][part]["properties"].is_object(), "{} {part}: {published}", kind.name());
        }
    }
    let line = &definition(&spec, Kind::MessagingAccount)["properties"]["spec"]["properties"]["line"];
    let mut fields: Vec<&String> = line["properties"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
    fields.sort();
    assert_eq!(fields, ["channelAccessToken", "channelId", "channelSecret"], "{line}");

    let Some(kubectl) = Kubectl::find() else { return };
    let explained = kubectl.run(&["explain", "messagingaccount.spec.line"]);
    assert!(explained.status.success(), "{}", String::from_utf8_lossy(&explained.stderr));
    let text = String::from_utf8_lossy(&explained.stdout);
    for field in ["channelId", "channelSecret", "channelAccessToken"] {
        assert!(text.contains(field), "kubectl explain lists {field}: {text}");
    }
    // kubectl's client-side check (the server of 1.20 has no field validation of its own)
    // now refuses a misspelt field inside an optional object.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    let mut account = documents(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/line-quickstart.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "MessagingAccount")
        .unwrap();
    let id = account["spec"]["line"].as_object_mut().unwrap().remove("channelId").unwrap();
    account["spec"]["line"]["chanelId"] = id;
    std::fs::write(&typo, serde_yaml::to_string(&account).unwrap()).unwrap();
    let checked = kubectl.run(&["apply", "--dry-run=client", "--validate=true", "-f", typo.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success() && stderr.contains(r#"unknown field "chanelId""#), "{stderr}");
}

/// `kubectl apply -f crds/` and `kubectl apply -k crds/` both apply the four CRDs (server-side
/// dry run: the CRDs other tests use stay as they are). `--validate=false`: kubectl's own schema
/// check does not know `x-kubernetes-validations`, which a 1.20 server lacks (see README,
/// Cluster versions).
#[tokio::test]
async fn kubectl_applies_the_crds_folder_with_f_and_with_k() {
    let Some(client) = cluster::client("kubectl_applies_the_crds_folder_with_f_and_with_k").await else { return };
    cluster::install_crds(&client).await;
    let Some(kubectl) = Kubectl::find() else { return };
    for how in ["-f", "-k"] {
        let out = kubectl.run(&["apply", "--dry-run=server", "--validate=false", how, "crds/"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "kubectl apply {how} crds/: {}{stdout}", String::from_utf8_lossy(&out.stderr));
        for kind in Kind::ALL {
            let name = format!("customresourcedefinition.apiextensions.k8s.io/{}s.switchboard.dev", kind.name().to_lowercase());
            assert!(stdout.contains(&name), "kubectl apply {how} crds/ applied {name}: {stdout}");
        }
        assert_eq!(stdout.lines().count(), 4, "{stdout}");
    }
}

/// kubectl against the test cluster, when it is installed.
struct Kubectl {
    kubeconfig: String,
}

impl Kubectl {
    fn find() -> Option<Kubectl> {
        let installed = std::process::Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
        if !installed {
            eprintln!("kubectl is not installed: its checks were skipped");
            return None;
        }
        Some(Kubectl { kubeconfig: std::env::var("SWITCHBOARD_TEST_KUBECONFIG").ok()? })
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("kubectl runs")
    }
}
