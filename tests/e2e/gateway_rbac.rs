//! The gateway's own permissions, on a real API server: the controller gives each account's
//! gateway a ServiceAccount whose Role reads that account's ConfigMap and nothing else. Acting as
//! that ServiceAccount (impersonation), the reads the gateway makes are allowed — get, and list
//! and watch narrowed to the one name by a field selector, through the same kube watcher the
//! gateway runs — and creating events.k8s.io Events about its Workstreams; everything else is
//! refused: other ConfigMaps, an unnarrowed list, writes, reading or patching Events, core/v1
//! Events, and the Secrets that hold the account's credentials.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use switchboard::config::{self, GatewayConfig};
use switchboard::gateway::kube_events::{Notice, Publisher, Severity};

use crate::cluster;
use crate::harness::{Harness, examples, impersonating_client};

const ACCOUNT: &str = "contoso-line";
const GATEWAY: &str = "contoso-line-gateway";

/// Panics unless `result` is the API server's 403.
pub fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn the_gateway_reads_its_own_config_map_and_nothing_else() {
    let Some(h) = Harness::start("gw-rbac", "", &[]).await else { return };
    h.apply(&examples(&["line-quickstart.yaml"])).await;
    let admin_config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(h.client.clone(), &h.namespace);
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);
    // The Deployment is applied last of the gateway objects.
    let deployment = cluster::wait_for("the gateway's objects", || async {
        admin_config_maps.get_opt(GATEWAY).await.ok()??;
        bindings.get_opt(GATEWAY).await.ok()??;
        deployments.get_opt(GATEWAY).await.ok()?
    })
    .await;

    // What the controller made: reads of one ConfigMap by name, and creating Events (about a
    // receiver that answered 410 Gone), for the ServiceAccount the gateway pods run as.
    let role: Role = Api::namespaced(h.client.clone(), &h.namespace).get(GATEWAY).await.unwrap();
    let rules = serde_json::to_value(role.rules.as_ref().unwrap()).unwrap();
    assert_eq!(
        rules,
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [GATEWAY], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        ])
    );
    let binding = bindings.get(GATEWAY).await.unwrap();
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("Role", GATEWAY));
    let subjects = serde_json::to_value(binding.subjects.as_ref().unwrap()).unwrap();
    assert_eq!(subjects, json!([{"kind": "ServiceAccount", "name": GATEWAY, "namespace": h.namespace}]));
    assert_eq!(deployment.spec.template.spec.unwrap().service_account_name.as_deref(), Some(GATEWAY));

    // Another ConfigMap in the same namespace, which the gateway must not see.
    let other: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "unrelated"}, "data": {"k": "v"}})).unwrap();
    admin_config_maps.create(&PostParams::default(), &other).await.unwrap();

    let gateway = impersonating_client(&format!("system:serviceaccount:{}:{GATEWAY}", h.namespace)).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(gateway.clone(), &h.namespace);
    let by_name = format!("metadata.name={GATEWAY}");

    // Allowed: get, and list and watch narrowed to its name.
    let own = config_maps.get(GATEWAY).await.expect("get of its own ConfigMap");
    assert!(own.binary_data.as_ref().unwrap().contains_key("config.json.gz"));
    let listed = config_maps.list(&ListParams::default().fields(&by_name)).await.expect("list by its name");
    assert_eq!(listed.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(), [GATEWAY]);
    let version = listed.metadata.resource_version.unwrap();
    let watch = config_maps.watch(&WatchParams::default().fields(&by_name).timeout(1), &version).await;
    assert!(watch.is_ok(), "watch by its name: {:?}", watch.err());
    // The gateway's own way of following it (src/gateway/config_source.rs): a kube watcher
    // with the field selector, which lists and then watches.
    let mut stream = watcher(config_maps.clone(), watcher::Config::default().fields(&by_name)).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("the watcher answers");
    assert_eq!(first.expect("an event").expect("the watcher is allowed").name_any(), GATEWAY);

    // Refused: everything else.
    refused("get of another ConfigMap", config_maps.get("unrelated").await);
    refused("list without the field selector", config_maps.list(&ListParams::default()).await);
    refused("list of another name", config_maps.list(&ListParams::default().fields("metadata.name=unrelated")).await);
    refused("watch without the field selector", config_maps.watch(&WatchParams::default().timeout(1), "0").await.map(|_| ()));
    let patch = json!({"data": {"config.json": "{}"}});
    refused("patch of its own ConfigMap", config_maps.patch(GATEWAY, &PatchParams::default(), &Patch::Merge(&patch)).await);
    let secrets: Api<Secret> = Api::namespaced(gateway.clone(), &h.namespace);
    refused("get of the account's Secret", secrets.get(ACCOUNT).await);
    refused("list of Secrets", secrets.list(&ListParams::default()).await);

    // Events: created — by the gateway's own publisher, as when a desk answers 410 Gone, about
    // the Workstream by its UID — and never read, patched, or written as core/v1 Events.
    let document = config::config_map_document(&own).expect("the compressed document");
    let config = GatewayConfig::from_document(document).expect("the gateway's configuration");
    let ws = config.workstreams.iter().find(|w| w.name == "support-line").expect("the quickstart's workstream");
    assert!(ws.uid.is_some(), "the configuration names the Workstream's UID");
    let notice = Notice { severity: Severity::Warning, reason: "ReceiverGone", action: "Deliver", note: "rbac test".into() };
    Publisher::new(gateway.clone(), h.namespace.clone(), "gw-0".into()).publish(ws, &notice, 1_796_400_000_000).await.expect("the gateway creates an Event");
    let admin_events: Api<Event> = Api::namespaced(h.client.clone(), &h.namespace);
    let written = admin_events.list(&ListParams::default()).await.unwrap();
    let ours = written.items.iter().find(|e| e.reporting_controller.as_deref() == Some("switchboard.dev/gateway")).expect("the Event is there");
    let regarding = ours.regarding.as_ref().unwrap();
    assert_eq!((regarding.kind.as_deref(), regarding.name.as_deref(), regarding.uid.as_ref()), (Some("Workstream"), Some("support-line"), ws.uid.as_ref()));
    let events: Api<Event> = Api::namespaced(gateway.clone(), &h.namespace);
    refused("list of Events", events.list(&ListParams::default()).await);
    refused("patch of an Event", events.patch(&ours.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"note": "x"}))).await);
    let core: Api<CoreEvent> = Api::namespaced(gateway, &h.namespace);
    let event: CoreEvent = serde_json::from_value(json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Workstream", "name": "support-line"}})).unwrap();
    refused("create of a core/v1 Event", core.create(&PostParams::default(), &event).await);
}
