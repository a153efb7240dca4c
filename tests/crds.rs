//! `crds/` is generated from the Rust types; these tests fail when it drifts or when a schema
//! loses what `kubectl explain` and `kubectl get` need.

use serde_json::Value;
use switchboard::api::crds::{self, Kind};

#[test]
fn crds_folder_matches_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for kind in Kind::ALL {
        let path = dir.join(kind.file_name());
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == crds::to_yaml(kind),
            "{} is out of date; regenerate with `cargo run -- crd --dir crds`",
            path.display()
        );
    }
}

fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let child = format!("{path}.{name}");
            if prop.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(child.clone());
            }
            undocumented(prop, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_spec_and_status_field_has_a_description() {
    for kind in Kind::ALL {
        let schema = kind.schema();
        let mut missing = Vec::new();
        for part in ["spec", "status"] {
            undocumented(&schema["properties"][part], part, &mut missing);
        }
        assert!(missing.is_empty(), "{}: fields without description: {missing:?}", kind.name());
    }
}

#[test]
fn names_columns_and_categories() {
    let expected: [(Kind, &str, &[&str]); 4] = [
        (Kind::MessagingAccount, "msgacct", &["Provider", "Ready", "Reason", "Callback", "Age"]),
        (Kind::Workstream, "ws", &["Account", "Fallback", "Ready", "Reason", "Age"]),
        (Kind::RoutingRule, "rr", &["Stage", "Order", "Queue", "Ready", "Reason", "Age"]),
        (Kind::MessageTemplate, "mtpl", &["Approval", "Ready", "Reason", "Age"]),
    ];
    for (kind, short, columns) in expected {
        let crd = kind.crd();
        assert_eq!(crd.spec.group, "switchboard.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_owned()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["switchboard".to_owned()][..]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{} has a status subresource", kind.name());
        let names: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        for column in columns {
            assert!(names.contains(column), "{}: column {column} missing from {names:?}", kind.name());
        }
    }
}

#[test]
fn conditions_are_a_list_map_keyed_on_type() {
    for kind in Kind::ALL {
        let conditions = &kind.schema()["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{}", kind.name());
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{}", kind.name());
        let required = conditions["items"]["required"].as_array().expect("condition fields are required");
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(required.contains(&Value::from(field)), "{}: {field}", kind.name());
        }
    }
}

#[test]
fn crd_subcommand_prints_the_four_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard")).arg("crd").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = text.split("\n---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect();
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["messagingaccounts.switchboard.dev", "workstreams.switchboard.dev", "routingrules.switchboard.dev", "messagetemplates.switchboard.dev"]);
}
