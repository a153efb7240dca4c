//! The namespaced install on a real API server: a controller started with `--watch-namespace`,
//! acting as a ServiceAccount that holds only `deploy/overlays/namespaced`'s Role (and the
//! leader-election Role) in that one namespace, does its whole job there — accounts, templates,
//! workstreams and rules Ready, gateway objects applied, deletion with provider clean-up — and
//! the API server refuses it nothing (the harness fails the test on any 403). It can read
//! nothing outside that namespace.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::ListParams;
use switchboard::api::{RoutingRule, Workstream};

use crate::cluster;
use crate::gateway_rbac::refused;
use crate::harness::{Grant, Harness, examples, impersonating_client};

#[tokio::test]
async fn a_controller_watching_one_namespace_needs_only_a_role_there() {
    let flags = ["--approval-pending-interval", "1s"];
    let Some(h) = Harness::start_namespaced("ns-only", "approvals: {receivedFor: 300ms, pendingFor: 700ms}", &flags).await else { return };
    h.apply(&examples(&["line-quickstart.yaml", "whatsapp-twilio.yaml", "templates.yaml"])).await;
    let accounts = h.accounts();
    let templates = h.templates();
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    for name in ["contoso-line", "contoso-whatsapp"] {
        h.wait_condition(&accounts, name, "Ready", "True", "Ready").await;
    }
    for name in ["appointment-reminder", "survey-invitation", "spring-sale"] {
        h.wait_condition(&templates, name, "Ready", "True", "Ready").await;
    }
    h.wait_condition(&workstreams, "support-line", "Ready", "True", "Ready").await;
    h.wait_condition(&rules, "refunds-are-billing", "Ready", "True", "Ready").await;
    let gateway_roles: Api<Role> = Api::namespaced(h.client.clone(), &h.namespace);
    assert!(gateway_roles.get_opt("contoso-line-gateway").await.unwrap().is_some(), "the gateway's Role, made under a Role");
    assert!(!h.events().await.is_empty(), "events are written");

    // Deletion runs the finalizer's provider clean-up and lets the account go.
    h.delete_account("contoso-line").await;
    cluster::wait_for("contoso-line deleted", || async { accounts.get_opt("contoso-line").await.unwrap().is_none().then_some(()) }).await;
    assert_eq!(h.line_endpoint().await, serde_json::Value::Null, "the LINE webhook was cleared");

    // Its identity reaches no further than the namespace.
    let controller = impersonating_client(&Grant::Namespaced.user()).await;
    refused("list of Secrets in every namespace", Api::<Secret>::all(controller.clone()).list(&ListParams::default()).await);
    refused("list of ConfigMaps in another namespace", Api::<ConfigMap>::namespaced(controller.clone(), "default").list(&ListParams::default()).await);
    let own: Api<Secret> = Api::namespaced(controller, &h.namespace);
    own.list(&ListParams::default()).await.expect("Secrets of the watched namespace");
    h.assert_no_secrets().await;
}
