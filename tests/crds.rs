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

/// `kubectl apply -f crds/` reads every .json, .yaml and .yml file of the folder: each must be
/// a CRD (a kustomization there would be refused as an object of no known kind), and together
/// they are the four. `kubectl apply -k crds/` reads crds/Kustomization, a name kustomize
/// accepts and `-f` skips, which lists the same four files.
#[test]
fn crds_folder_applies_with_f_and_with_k() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut applied: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            continue;
        }
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["kind"], "CustomResourceDefinition", "{} is not a CRD, so `kubectl apply -f crds/` fails on it", path.display());
        applied.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    applied.sort();
    let mut expected: Vec<String> = Kind::ALL.into_iter().map(Kind::file_name).collect();
    expected.sort();
    assert_eq!(applied, expected);

    let kustomization: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join("Kustomization")).unwrap()).unwrap();
    assert_eq!(kustomization["kind"], "Kustomization");
    let mut listed: Vec<String> = kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    listed.sort();
    assert_eq!(listed, expected);
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
        (Kind::MessagingAccount, "msgacct", &["Provider", "Ready", "Reason", "Callback", "Message", "Age"]),
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
fn wide_output_shows_the_ready_message_and_templates_their_approval() {
    for kind in Kind::ALL {
        let crd = kind.crd();
        let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap_or_default();
        let message = columns.iter().find(|c| c.name == "Message").unwrap_or_else(|| panic!("{}: no Message column", kind.name()));
        assert_eq!(message.json_path, r#".status.conditions[?(@.type=="Ready")].message"#);
        assert_eq!(message.priority, Some(1), "{}: Message is for -o wide only", kind.name());
        let status = &kind.schema()["properties"]["status"]["properties"];
        assert_eq!(status["lastHandledReconcileAt"]["type"], "string", "{}", kind.name());
    }
    let crd = Kind::MessageTemplate.crd();
    let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap();
    let approval = columns.iter().find(|c| c.name == "Approval").unwrap();
    assert_eq!(approval.json_path, ".status.approvalSummary", "a summary of the reviews, not a condition reason");
    assert_eq!(approval.priority, None);
}

/// Walks a schema; `out` gets the path of every nullable field and of every object with neither
/// properties nor additionalProperties (which `kubectl explain` would show as an empty `<>`).
fn opaque(schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("nullable").is_some() {
        out.push(format!("{path} is nullable"));
    }
    if schema["type"] == "object" && schema.get("properties").is_none() && schema.get("additionalProperties").is_none() {
        out.push(format!("{path} is an object without fields"));
    }
    for (name, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        opaque(child, &format!("{path}.{name}"), out);
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", "[*]")] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            opaque(child, &format!("{path}{suffix}"), out);
        }
    }
}

#[test]
fn no_field_is_nullable_and_every_object_has_fields() {
    for kind in Kind::ALL {
        let mut found = Vec::new();
        opaque(&kind.schema(), kind.name(), &mut found);
        assert!(found.is_empty(), "{found:?}");
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
