//! `deploy/` renders with kustomize into the objects an install needs, with the controller
//! locked down as deploy/README.md promises: the base, the cluster-wide and namespaced overlays
//! (same rules, different scope), the default install, and the ServiceMonitor example.
//!
//! Whether those rules are enough is the end-to-end suite's part: it runs the controller as a
//! ServiceAccount bound to deploy/overlays/cluster-wide/rbac.yaml and fails on any 403.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const SYSTEM_NAMESPACE: &str = "switchboard-system";
const CONTROLLER: &str = "switchboard-controller";

/// `kubectl kustomize <dir>` (relative to the crate), or None when kubectl is not installed.
fn render(dir: &str) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").args(["kustomize", dir]).current_dir(env!("CARGO_MANIFEST_DIR")).output() {
        Ok(out) => out,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skipped: kubectl is not available to render {dir} ({e})");
            return None;
        }
    };
    assert!(out.status.success(), "kubectl kustomize {dir} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    Some(serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect())
}

fn kinds(objects: &[Value]) -> Vec<(&str, &str)> {
    objects.iter().map(|o| (o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} missing from {:?}", kinds(objects)))
}

fn has(objects: &[Value], kind: &str, name: &str) -> bool {
    objects.iter().any(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap()).collect()).unwrap_or_default()
}

/// The controller container of the controller Deployment.
fn controller_container(objects: &[Value]) -> &Value {
    let deployment = find(objects, "Deployment", CONTROLLER);
    deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == "controller").expect("a container named controller")
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Checks that hold for the rules of the controller's ClusterRole and of its namespaced Role.
fn check_rules(rules: &Value) {
    let rules = rules.as_array().expect("rules");
    let mut granted = BTreeSet::new();
    for rule in rules {
        let verbs = strings(&rule["verbs"]);
        let resources = strings(&rule["resources"]);
        for forbidden in ["*", "escalate", "bind", "impersonate", "deletecollection"] {
            assert!(!verbs.contains(&forbidden), "no {forbidden} verb: {rule}");
        }
        assert!(!resources.contains(&"*") && !strings(&rule["apiGroups"]).contains(&"*"), "no wildcards: {rule}");
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        if resources.contains(&"secrets") {
            assert_eq!(verbs, ["get", "list", "watch"], "Secrets are only read");
        }
        if verbs.contains(&"delete") {
            assert!(resources == ["ingresses"] || resources == ["poddisruptionbudgets"], "only a dropped Ingress or budget is ever deleted: {rule}");
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in &resources {
                for verb in &verbs {
                    assert!(granted.insert((group, *resource, *verb)), "{group}/{resource} {verb} granted twice");
                }
            }
        }
    }
    // What creating the gateway's Role needs: the controller must hold what that Role grants
    // (get, list and watch of configmaps, create of events.k8s.io events), since it has neither
    // bind nor escalate.
    for verb in ["get", "list", "watch"] {
        assert!(granted.contains(&("", "configmaps", verb)), "configmaps {verb}: the gateway's Role grants it");
    }
    assert!(granted.contains(&("events.k8s.io", "events", "create")), "events create: the gateway's Role grants it");
    assert!(!granted.iter().any(|(group, resource, _)| group.is_empty() && *resource == "events"), "Events are written through events.k8s.io only");
}

#[test]
fn the_base_renders_the_crds_and_a_locked_down_controller_with_no_permissions() {
    let Some(objects) = render("deploy/base") else { return };
    for (kind, name) in [
        ("Namespace", SYSTEM_NAMESPACE),
        ("CustomResourceDefinition", "messagingaccounts.switchboard.dev"),
        ("CustomResourceDefinition", "workstreams.switchboard.dev"),
        ("CustomResourceDefinition", "routingrules.switchboard.dev"),
        ("CustomResourceDefinition", "messagetemplates.switchboard.dev"),
        ("ServiceAccount", CONTROLLER),
        ("Role", "switchboard-leader-election"),
        ("RoleBinding", "switchboard-leader-election"),
        ("Deployment", CONTROLLER),
        ("Service", "switchboard-controller-metrics"),
        ("PodDisruptionBudget", CONTROLLER),
    ] {
        find(&objects, kind, name);
    }
    // Permissions to reconcile come from an overlay.
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(!objects.iter().any(|o| o["kind"] == kind), "no {kind} in the base: {:?}", kinds(&objects));
    }
    assert!(!has(&objects, "Role", CONTROLLER));

    for object in &objects {
        let labels = &object["metadata"]["labels"];
        for (key, value) in [("app.kubernetes.io/name", "switchboard"), ("app.kubernetes.io/part-of", "switchboard")] {
            assert_eq!(labels[key], value, "{key} on {:?}", object["metadata"]["name"]);
        }
        if object["kind"] != "Namespace" && object["kind"] != "CustomResourceDefinition" {
            assert_eq!(object["metadata"]["namespace"], SYSTEM_NAMESPACE, "{:?}", object["metadata"]["name"]);
        }
    }

    let deployment = find(&objects, "Deployment", CONTROLLER);
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(selector, &json!({"app.kubernetes.io/name": "switchboard", "app.kubernetes.io/component": "controller"}), "the immutable selector");
    assert!(selects(selector, pod_labels));
    assert_eq!(pod["serviceAccountName"], CONTROLLER);
    let container = controller_container(&objects);
    assert_eq!(strings(&container["args"]), ["controller"], "every namespace unless an overlay says otherwise");
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

    // Two replicas (one leader, one warm standby), spread over nodes where possible, and never
    // both evicted at once.
    assert_eq!(deployment["spec"]["replicas"], 2);
    let spread = &pod["affinity"]["podAntiAffinity"];
    assert!(spread.get("requiredDuringSchedulingIgnoredDuringExecution").is_none(), "preferred, so a one-node cluster still runs both");
    let terms = spread["preferredDuringSchedulingIgnoredDuringExecution"].as_array().expect("a preferred anti-affinity");
    assert!(
        terms.iter().any(|t| t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            && t["podAffinityTerm"]["labelSelector"]["matchLabels"] == *selector),
        "spread by hostname from the controller's own pods: {terms:?}"
    );
    let budget = find(&objects, "PodDisruptionBudget", CONTROLLER);
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *selector);

    // The metrics Service reaches the port the probes (and /metrics) are served on.
    let service = find(&objects, "Service", "switchboard-controller-metrics");
    assert_eq!(service["spec"]["selector"], *selector);
    let port = service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "metrics").expect("a port named metrics");
    let probe_port = &container["readinessProbe"]["httpGet"]["port"];
    let container_port = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == *probe_port || p["containerPort"] == *probe_port).expect("the probe port");
    assert!(port["targetPort"] == container_port["name"] || port["targetPort"] == container_port["containerPort"], "{port} -> {container_port}");

    // Leases in the controller's namespace only.
    let binding = find(&objects, "RoleBinding", "switchboard-leader-election");
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": SYSTEM_NAMESPACE}]));
    for rule in find(&objects, "Role", "switchboard-leader-election")["rules"].as_array().unwrap() {
        assert_eq!(strings(&rule["resources"]), ["leases"], "{rule}");
    }
}

#[test]
fn the_cluster_wide_overlay_binds_a_cluster_role_and_is_the_default_install() {
    let Some(objects) = render("deploy/overlays/cluster-wide") else { return };
    let base = render("deploy/base").unwrap();
    for (kind, name) in kinds(&base) {
        find(&objects, kind, name);
    }
    let role = find(&objects, "ClusterRole", CONTROLLER);
    check_rules(&role["rules"]);
    let binding = find(&objects, "ClusterRoleBinding", CONTROLLER);
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CONTROLLER}));
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": SYSTEM_NAMESPACE}]));
    assert_eq!(strings(&controller_container(&objects)["args"]), ["controller"], "every namespace");
    assert!(!has(&objects, "Role", CONTROLLER));

    assert_eq!(render("deploy").unwrap(), objects, "`kubectl apply -k deploy/` installs the cluster-wide overlay");
}

#[test]
fn the_namespaced_overlay_grants_the_same_rules_in_one_namespace_and_watches_only_that() {
    let Some(objects) = render("deploy/overlays/namespaced") else { return };
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(!objects.iter().any(|o| o["kind"] == kind), "no {kind}: only a Role: {:?}", kinds(&objects));
    }
    let role = find(&objects, "Role", CONTROLLER);
    let watched = role["metadata"]["namespace"].as_str().expect("the Role's namespace");
    assert_ne!(watched, SYSTEM_NAMESPACE);
    assert!(!watched.contains("NAMESPACE"), "a placeholder was left: {watched}");
    let cluster_wide = render("deploy/overlays/cluster-wide").unwrap();
    assert_eq!(role["rules"], find(&cluster_wide, "ClusterRole", CONTROLLER)["rules"], "the same rules as the cluster-wide ClusterRole");
    check_rules(&role["rules"]);

    let binding = find(&objects, "RoleBinding", CONTROLLER);
    assert_eq!(binding["metadata"]["namespace"], watched, "beside the Role");
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER}));
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": SYSTEM_NAMESPACE}]));
    let service_account = find(&objects, "ServiceAccount", CONTROLLER);
    assert_eq!(service_account["metadata"]["namespace"], SYSTEM_NAMESPACE);

    // The base's arguments, then the flag naming the Role's namespace.
    let args = strings(&controller_container(&objects)["args"]);
    assert_eq!(args, ["controller".to_owned(), format!("--watch-namespace={watched}")]);
    // Everything else is the base's.
    let base = render("deploy/base").unwrap();
    for (kind, name) in kinds(&base) {
        find(&objects, kind, name);
    }
}

#[test]
fn the_controller_takes_the_watch_namespace_flag_the_overlay_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["controller", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--namespace") && help.contains("watch-namespace"), "{help}");
}

#[test]
fn the_service_monitor_scrapes_the_metrics_service() {
    let Some(monitoring) = render("deploy/monitoring") else { return };
    assert_eq!(kinds(&monitoring), [("ServiceMonitor", CONTROLLER)]);
    let monitor = &monitoring[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let base = render("deploy/base").unwrap();
    let services: Vec<&Value> = base.iter().filter(|o| o["kind"] == "Service" && selects(&monitor["spec"]["selector"]["matchLabels"], &o["metadata"]["labels"])).collect();
    assert_eq!(services.len(), 1, "the selector picks the metrics Service alone");
    let service = services[0];
    assert_eq!(service["metadata"]["name"], "switchboard-controller-metrics");
    assert_eq!(monitor["metadata"]["namespace"], service["metadata"]["namespace"], "beside the Service");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == endpoint["port"]), "the endpoint names a Service port");
}

/// The documents of a YAML file under the crate.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The kustomization file of a folder, under any of the names kustomize accepts.
fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"].into_iter().map(|name| dir.join(name)).find(|p| p.is_file())
}

/// Without kubectl (a CI machine may lack it), the references between the kustomizations at
/// least resolve: every resource is a manifest file in or below the kustomization's folder or a
/// folder with its own kustomization file, never a folder that contains the referring one, and
/// every manifest parses into named objects.
#[test]
fn every_kustomization_reference_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pending = vec![root.join("deploy"), root.join("deploy/overlays/namespaced"), root.join("deploy/monitoring")];
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        let dir = dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if !seen.insert(dir.clone()) {
            continue;
        }
        let file = kustomization_file(&dir).unwrap_or_else(|| panic!("{} has no kustomization file", dir.display()));
        let kustomization = &documents(&file)[0];
        for resource in strings(&kustomization["resources"]) {
            let path: PathBuf = dir.join(resource);
            assert!(path.exists(), "{}: {resource} does not exist", dir.display());
            let path = path.canonicalize().unwrap();
            if path.is_dir() {
                assert!(kustomization_file(&path).is_some(), "{}: {resource} has no kustomization file", dir.display());
                assert!(!dir.starts_with(&path), "{}: {resource} contains it (kustomize refuses the cycle)", dir.display());
                pending.push(path);
            } else {
                assert!(path.starts_with(&dir), "{}: {resource} is outside the kustomization's folder (kustomize refuses it)", dir.display());
                for doc in documents(&path) {
                    assert!(doc["kind"].is_string() && doc["metadata"]["name"].is_string(), "{}: {doc}", path.display());
                }
            }
        }
    }
    for overlay in ["deploy/base", "deploy/overlays/cluster-wide", "deploy/overlays/namespaced", "crds"] {
        assert!(seen.contains(&root.join(overlay).canonicalize().unwrap()), "{overlay} was checked");
    }
    // Every manifest under deploy/ is part of some kustomization (deploy/argocd/ holds Argo CD
    // settings, not manifests of the install): a file left beside them would silently not ship.
    let referenced: BTreeSet<PathBuf> = seen
        .iter()
        .flat_map(|dir| strings(&documents(&kustomization_file(dir).unwrap())[0]["resources"]).into_iter().map(|r| dir.join(r)).collect::<Vec<_>>())
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut folders = vec![root.join("deploy")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("argocd") {
                    folders.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
                assert!(referenced.contains(&path.canonicalize().unwrap()), "{} is in no kustomization", path.display());
            }
        }
    }

    // The namespaced Role carries the ClusterRole's rules, word for word.
    let cluster_role = documents(&root.join("deploy/overlays/cluster-wide/rbac.yaml")).into_iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let role = documents(&root.join("deploy/overlays/namespaced/rbac.yaml")).into_iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(role["rules"], cluster_role["rules"]);
    check_rules(&cluster_role["rules"]);
}
