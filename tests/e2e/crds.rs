//! The CRDs on a real API server: installed from `crds/`, examples accepted, invalid examples
//! rejected where the schema can say so, and what `kubectl explain` and `kubectl get` read.

use serde_json::Value;
use switchboard::api::crds::Kind;
use switchboard::api::validation::schema_errors;
use switchboard::api::{MessagingAccount, RoutingRule, Workstream};

use crate::cluster::{self, apply, documents, plural, yaml_files};

#[tokio::test]
async fn examples_are_accepted() {
    let Some(client) = cluster::client("examples_are_accepted").await else { return };
    cluster::install_crds(&client).await;
    let files = yaml_files("examples");
    assert!(files.len() >= 3, "examples/ holds the LINE, WhatsApp and template sets");
    for file in files {
        for doc in documents(&file) {
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
    assert_eq!(columns, ["Provider", "Ready", "Reason", "Callback", "Age"]);
    assert_eq!(crd.spec.names.categories.as_deref(), Some(&["switchboard".to_owned()][..]));
}

/// What `kubectl get switchboard -n support` does: discovery finds every resource in the
/// category, and the server renders each list as a table with our columns.
#[tokio::test]
async fn the_switchboard_category_lists_the_examples_with_their_columns() {
    let Some(client) = cluster::client("the_switchboard_category_lists_the_examples_with_their_columns").await else { return };
    cluster::install_crds(&client).await;
    for file in yaml_files("examples") {
        for doc in documents(&file) {
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
    assert_eq!(columns, ["Name", "Workstream", "Stage", "Order", "Queue", "Ready", "Reason", "Age"]);
    assert!(names.contains(&"billing-queue".to_owned()), "{names:?}");
    let (columns, names) = table(plural::<Workstream>()).await;
    assert!(columns.iter().any(|c| c == "Fallback") && columns.iter().any(|c| c == "Account"), "{columns:?}");
    assert!(names.contains(&"support-line".to_owned()), "{names:?}");
    let (columns, names) = table(plural::<MessagingAccount>()).await;
    assert!(columns.iter().any(|c| c == "Callback"), "{columns:?}");
    assert!(names.contains(&"contoso-line".to_owned()), "{names:?}");
}
