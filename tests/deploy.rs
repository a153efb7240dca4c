//! `deploy/` renders with kustomize into the objects an install needs, with the controller
//! locked down as the README promises.

use std::io::Write;
use std::process::Command;

use serde_json::Value;

fn rendered() -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").args(["kustomize", "deploy/"]).current_dir(env!("CARGO_MANIFEST_DIR")).output() {
        Ok(out) => out,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skipped: kubectl is not available to render deploy/ ({e})");
            return None;
        }
    };
    assert!(out.status.success(), "kubectl kustomize deploy/ failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    Some(serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect())
}

#[test]
fn the_base_renders_the_crds_rbac_and_a_locked_down_controller() {
    let Some(objects) = rendered() else { return };
    let kinds: Vec<(&str, &str)> = objects.iter().map(|o| (o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())).collect();
    for expected in [
        ("Namespace", "switchboard-system"),
        ("CustomResourceDefinition", "messagingaccounts.switchboard.dev"),
        ("CustomResourceDefinition", "workstreams.switchboard.dev"),
        ("CustomResourceDefinition", "routingrules.switchboard.dev"),
        ("CustomResourceDefinition", "messagetemplates.switchboard.dev"),
        ("ServiceAccount", "switchboard-controller"),
        ("ClusterRole", "switchboard-controller"),
        ("ClusterRoleBinding", "switchboard-controller"),
        ("Deployment", "switchboard-controller"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} missing from {kinds:?}");
    }

    let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
    for rule in role["rules"].as_array().unwrap() {
        let verbs = rule["verbs"].as_array().unwrap();
        assert!(!verbs.contains(&Value::from("*")), "no wildcard verbs: {rule}");
        if rule["resources"].as_array().unwrap().contains(&Value::from("secrets")) {
            assert_eq!(verbs, &vec![Value::from("get"), Value::from("list"), Value::from("watch")], "Secrets are only read");
        }
    }

    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(security["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(container[probe].is_object(), "{probe}");
    }
    for bound in ["requests", "limits"] {
        assert!(container["resources"][bound]["memory"].is_string(), "{bound}");
    }
}
