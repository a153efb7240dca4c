//! The controller against a real API server and the provider simulator: the examples become
//! Ready and then stay quiet, credentials follow their Secrets, outages back off, templates go
//! through review, deletion cleans up, and restarts never duplicate provider-side objects.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use switchboard::api::{RoutingRule, Workstream};

use crate::cluster;
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN, WRONG_TOKEN, examples};

/// Documents of one kind (and name, when given) from a list.
fn only(docs: &[Value], kind: &str, name: Option<&str>) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n)).cloned().collect()
}

pub(crate) fn line_account(name: &str) -> Value {
    let mut account = only(&examples(&["line-quickstart.yaml"]), "MessagingAccount", Some("contoso-line")).remove(0);
    account["metadata"]["name"] = json!(name);
    account
}

pub(crate) fn twilio_account() -> (Value, Value) {
    let docs = examples(&["whatsapp-twilio.yaml"]);
    (only(&docs, "Secret", Some("contoso-twilio")).remove(0), only(&docs, "MessagingAccount", Some("contoso-whatsapp")).remove(0))
}

fn template(name: &str, bodies: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "MessageTemplate",
        "metadata": {"name": name},
        "spec": {
            "accountRef": {"name": "contoso-whatsapp"},
            "templateName": name.replace('-', "_"),
            "category": "Utility",
            "defaultLanguage": bodies[0].0,
            "localizations": bodies.iter().map(|(l, b)| json!({"language": l, "body": b})).collect::<Vec<_>>(),
            "sampleValues": {"1": "Ann"},
        }
    })
}

/// Content at the simulated Twilio account whose friendly name starts with `prefix`.
async fn contents(h: &Harness, prefix: &str) -> Vec<Value> {
    let state = h.twilio_state().await;
    state["contents"].as_array().unwrap().iter().filter(|c| c["friendlyName"].as_str().unwrap_or_default().starts_with(prefix)).cloned().collect()
}

#[tokio::test]
async fn examples_become_ready_and_then_stay_quiet() {
    let Some(h) = Harness::start("ctl-examples", "approvals: {receivedFor: 300ms, pendingFor: 700ms}", &["--approval-pending-interval", "1s"]).await else {
        return;
    };
    h.apply(&examples(&["line-quickstart.yaml", "whatsapp-twilio.yaml", "templates.yaml"])).await;
    let accounts = h.accounts();
    let templates = h.templates();
    for name in ["contoso-line", "contoso-whatsapp"] {
        h.wait_condition(&accounts, name, "Ready", "True", "Ready").await;
    }
    for name in ["appointment-reminder", "survey-invitation", "spring-sale"] {
        h.wait_condition(&templates, name, "Ready", "True", "Ready").await;
    }

    if which_kubectl() {
        let kubeconfig = std::env::var("SWITCHBOARD_TEST_KUBECONFIG").unwrap();
        let out = std::process::Command::new("kubectl")
            .args(["--kubeconfig", &kubeconfig, "wait", "--for=condition=Ready", "msgacct,mtpl", "--all", "-n", &h.namespace, "--timeout=30s"])
            .output()
            .unwrap();
        assert!(out.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("ctl-examples: kubectl not installed; the kubectl wait check was skipped");
    }

    let line = accounts.get("contoso-line").await.unwrap().status.unwrap();
    let callback = format!("https://chat.contoso.example/switchboard/{}/contoso-line/webhook", h.namespace);
    assert_eq!(line.callback_url.as_deref(), Some(callback.as_str()));
    assert_eq!(line.line.as_ref().unwrap().display_name, "Contoso Support");
    assert_eq!(h.line_endpoint().await, json!(callback), "the LINE webhook points at the callback URL");

    let whatsapp = accounts.get("contoso-whatsapp").await.unwrap().status.unwrap();
    assert_eq!(whatsapp.twilio.as_ref().unwrap().friendly_name, "Contoso WhatsApp");
    assert!(whatsapp.numbers.iter().all(|n| n.inbound_url_configured) && whatsapp.numbers.len() == 2);
    let service = &h.twilio_state().await["messagingServices"][0];
    assert_eq!(service["inboundRequestUrl"], json!(whatsapp.callback_url.unwrap()));

    let reminder = templates.get("appointment-reminder").await.unwrap().status.unwrap();
    assert_eq!(reminder.localizations.len(), 2);
    assert!(reminder.localizations.iter().all(|l| l.content_sid.as_deref().is_some_and(|s| s.starts_with("HX"))));

    // The quiet period: nothing to do, so no writes to the API server and no provider calls.
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(h.client.clone(), &h.namespace);
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);
    let snapshot = || async {
        let lp = ListParams::default();
        let mut all: Vec<String> = accounts.list(&lp).await.unwrap().iter().map(|a| a.resource_version().unwrap()).collect();
        all.extend(templates.list(&lp).await.unwrap().iter().map(|o| o.resource_version().unwrap()));
        all.extend(workstreams.list(&lp).await.unwrap().iter().map(|o| o.resource_version().unwrap()));
        all.extend(rules.list(&lp).await.unwrap().iter().map(|o| o.resource_version().unwrap()));
        all.extend(config_maps.list(&lp).await.unwrap().iter().map(|o| o.resource_version().unwrap()));
        all.extend(deployments.list(&lp).await.unwrap().iter().map(|o| o.resource_version().unwrap()));
        (all, h.events().await.len())
    };
    h.sim_delete("/__sim/requests").await;
    let before = snapshot().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = snapshot().await;
    let provider_calls = h.requests("").await;
    eprintln!("ctl-examples: quiet period of 10 s: {} object versions unchanged: {}, events {} -> {}, provider calls {provider_calls}", before.0.len(), before.0 == after.0, before.1, after.1);
    assert_eq!(before, after, "objects or events were written in the quiet period");
    assert_eq!(provider_calls, 0, "provider calls in the quiet period");
    h.assert_no_secrets().await;
}

fn which_kubectl() -> bool {
    std::process::Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn credentials_follow_the_secret_without_touching_the_account() {
    let Some(h) = Harness::start("ctl-creds", "", &[]).await else { return };
    h.apply(&[line_account("contoso-line")]).await;
    let accounts = h.accounts();
    let message = h.wait_condition(&accounts, "contoso-line", "CredentialsValid", "False", "SecretNotFound").await;
    assert!(message.contains("contoso-line") && message.contains("spec.line.channelSecret"), "{message}");
    h.wait_condition(&accounts, "contoso-line", "Ready", "False", "SecretNotFound").await;

    h.secret("contoso-line", &[("channel-secret", LINE_SECRET)]).await;
    let message = h.wait_condition(&accounts, "contoso-line", "CredentialsValid", "False", "SecretKeyMissing").await;
    assert!(message.contains("channel-access-token"), "{message}");

    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", WRONG_TOKEN)]).await;
    h.wait_condition(&accounts, "contoso-line", "CredentialsValid", "False", "Unauthorized").await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "False", "Unauthorized").await;

    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    let account = accounts.get("contoso-line").await.unwrap();
    assert_eq!(account.metadata.generation, Some(1), "only the Secret changed");
    assert_eq!(account.status.unwrap().observed_generation, Some(1));

    let reasons: Vec<String> = h.events().await.iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect();
    for reason in ["SecretNotFound", "SecretKeyMissing", "Unauthorized", "Valid", "Registered", "Ready"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} event among {reasons:?}");
    }
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn a_provider_outage_backs_off_and_recovers_by_itself() {
    let Some(h) = Harness::start("ctl-outage", "", &["--max-backoff", "8s"]).await else { return };
    let route = "GET /2010-04-01/Accounts/*";
    h.sim_post("/__sim/faults", json!({"route": route, "kind": "serverError", "status": 500, "duration": "20s"})).await;
    let started = Instant::now();
    let (secret, account) = twilio_account();
    h.apply(&[secret, account]).await;
    let accounts = h.accounts();
    let message = h.wait_condition(&accounts, "contoso-whatsapp", "Ready", "False", "ProviderUnavailable").await;
    assert!(message.contains("HTTP 500"), "{message}");
    h.wait_condition(&accounts, "contoso-whatsapp", "Ready", "True", "Ready").await;
    let calls = h.requests(route).await;
    eprintln!("ctl-outage: recovered {:.1} s after a 20 s outage began, with {calls} account fetches (each reconcile tries up to 4 times)", started.elapsed().as_secs_f64());
    // Back-to-back reconciles would make ~80 calls in 20 s (4 attempts of ~1 s each); backoff
    // (1 s doubling to 8 s) makes about 6 reconciles.
    assert!((4..=40).contains(&calls), "{calls} calls");
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let Some(h) = Harness::start("ctl-429", "", &[]).await else { return };
    let route = "GET /v2/bot/info";
    // Longer than the client waits by itself (10 s): the reconcile is requeued for it.
    h.sim_post("/__sim/faults", json!({"route": route, "kind": "rateLimit", "retryAfter": 15, "times": 1})).await;
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    h.apply(&[line_account("contoso-line")]).await;
    let accounts = h.accounts();
    h.wait_condition(&accounts, "contoso-line", "CredentialsValid", "False", "RateLimited").await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    let log = h.sim_get("/__sim/requests?route=GET%20/v2/bot/info").await;
    let times: Vec<jiff::Timestamp> = log["requests"].as_array().unwrap().iter().map(|r| r["at"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(times.len(), 2, "one refused call, one after the wait: {log}");
    let waited = times[1].duration_since(times[0]).as_secs_f64();
    eprintln!("ctl-429: the second bot info call came {waited:.1} s after a 429 with Retry-After: 15");
    assert!(waited >= 14.5, "retried after {waited} s");
}

#[tokio::test]
async fn templates_follow_review_and_changes() {
    let schedule = r#"approvals: {receivedFor: 200ms, pendingFor: 300ms, outcome: rejected, rejectionReason: "Variables at the start"}"#;
    let flags = ["--approval-pending-interval", "1s", "--approval-settled-interval", "2s"];
    let Some(h) = Harness::start("ctl-templates", schedule, &flags).await else { return };
    let (secret, account) = twilio_account();
    h.apply(&[secret, account, template("reminder", &[("en", "Hi {{1}}, see you soon.")])]).await;
    let templates = h.templates();
    let message = h.wait_condition(&templates, "reminder", "Approved", "False", "Rejected").await;
    assert_eq!(message, "WhatsApp rejected en: Variables at the start");
    h.wait_condition(&templates, "reminder", "Ready", "False", "Rejected").await;
    let status = templates.get("reminder").await.unwrap().status.unwrap();
    let first = status.localizations[0].content_sid.clone().unwrap();
    assert_eq!(status.localizations[0].rejection_reason.as_deref(), Some("Variables at the start"));
    assert_eq!(status.approval_summary.as_deref(), Some("Rejected: en"), "the APPROVAL column");

    h.sim_post(&format!("/__sim/content/{first}/approval"), json!({"status": "approved"})).await;
    h.wait_condition(&templates, "reminder", "Ready", "True", "Ready").await;

    // A new body needs new Content: submitted Content cannot change.
    let put = reqwest::Client::new()
        .put(format!("{}/__sim/approvals/schedule", h.sim.base_url()))
        .json(&json!({"receivedFor": "200ms", "pendingFor": "300ms", "outcome": "approved"}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    h.apply(&[template("reminder", &[("en", "Hello {{1}}, see you soon.")])]).await;
    let replaced = h
        .wait_for_template("reminder", |s| s.localizations.first().and_then(|l| l.content_sid.clone()).filter(|sid| *sid != first))
        .await;
    h.wait_condition(&templates, "reminder", "Ready", "True", "Ready").await;
    let remaining: Vec<String> = contents(&h, "reminder_").await.iter().map(|c| c["sid"].as_str().unwrap().to_owned()).collect();
    assert_eq!(remaining, [replaced], "the replaced Content was deleted");
    let reasons: Vec<String> = h.events().await.iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(reasons.iter().any(|r| r == "ContentReplaced"), "{reasons:?}");

    // On a LINE account a template needs no approval.
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    let mut line_template = template("greeting", &[("en", "Hi {{1}}")]);
    line_template["spec"]["accountRef"]["name"] = json!("contoso-line");
    h.apply(&[line_account("contoso-line"), line_template]).await;
    h.wait_condition(&templates, "greeting", "Ready", "True", "Ready").await;
    let status = templates.get("greeting").await.unwrap().status.unwrap();
    assert_eq!(status.localizations[0].approval, Some(switchboard::api::template::Approval::NotRequired));
    assert_eq!(status.approval_summary.as_deref(), Some("NotRequired"));
    assert!(status.localizations[0].content_sid.is_none());
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn deletion_clears_webhooks_and_never_blocks_for_good() {
    let Some(h) = Harness::start("ctl-delete", "", &["--cleanup-timeout", "6s"]).await else { return };
    let (secret, mut account) = twilio_account();
    // Without a Messaging Service the inbound URL is set on the number itself.
    account["spec"]["twilioWhatsApp"].as_object_mut().unwrap().remove("messagingServiceSid");
    account["spec"]["twilioWhatsApp"]["numbers"] = json!([{"name": "support", "number": "+14155550102"}]);
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    h.apply(&[secret, account, line_account("contoso-line")]).await;
    let accounts = h.accounts();
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    h.wait_condition(&accounts, "contoso-whatsapp", "Ready", "True", "Ready").await;
    let number = |state: Value| state["numbers"].as_array().unwrap().iter().find(|n| n["phoneNumber"] == "+14155550102").unwrap()["smsUrl"].clone();
    assert!(number(h.twilio_state().await).as_str().is_some_and(|u| u.ends_with("/contoso-whatsapp/webhook")));
    assert!(h.line_endpoint().await.as_str().is_some());

    h.delete_account("contoso-line").await;
    h.delete_account("contoso-whatsapp").await;
    for name in ["contoso-line", "contoso-whatsapp"] {
        cluster::wait_for(&format!("{name} gone"), || async { accounts.get_opt(name).await.unwrap().is_none().then_some(()) }).await;
    }
    assert_eq!(h.line_endpoint().await, Value::Null, "the LINE webhook was cleared");
    assert_eq!(number(h.twilio_state().await), Value::Null, "the number's inbound URL was cleared");

    // During an outage, deletion waits for the clean-up timeout, then says what it left.
    h.apply(&[line_account("line-two")]).await;
    h.wait_condition(&accounts, "line-two", "Ready", "True", "Ready").await;
    h.sim_post("/__sim/faults", json!({"route": "PUT /v2/bot/channel/webhook/endpoint", "kind": "serverError", "status": 503, "duration": "120s"})).await;
    let deleted = Instant::now();
    h.delete_account("line-two").await;
    cluster::wait_within(Duration::from_secs(60), || async { accounts.get_opt("line-two").await.unwrap().is_none().then_some(()) })
        .await
        .expect("the account is deleted despite the outage");
    eprintln!("ctl-delete: deleted {:.1} s after the request during a provider outage (clean-up timeout 6 s)", deleted.elapsed().as_secs_f64());
    assert!(deleted.elapsed() >= Duration::from_secs(5), "deletion waited for the clean-up timeout");
    let abandoned: Vec<Value> = h.events().await.into_iter().filter(|e| e["reason"] == "CleanupAbandoned").collect();
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert!(abandoned[0]["note"].as_str().unwrap().contains("line-two/webhook"));
    assert!(h.line_endpoint().await.as_str().is_some_and(|u| u.ends_with("/line-two/webhook")), "left behind");
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn a_restart_never_duplicates_content() {
    let Some(mut h) = Harness::start("ctl-restart", "approvals: {receivedFor: 200ms, pendingFor: 300ms}", &["--approval-pending-interval", "1s"]).await
    else {
        return;
    };
    // Twilio creates the first Content but its answer is held back: the controller dies waiting.
    h.sim_post("/__sim/faults", json!({"route": "POST /v1/Content", "kind": "latency", "delay": "8s", "times": 1, "afterHandler": true})).await;
    let (secret, account) = twilio_account();
    h.apply(&[secret, account, template("survey", &[("en", "How did we do, {{1}}?"), ("tr", "Nasıldık, {{1}}?")])]).await;
    cluster::wait_for("the first Content to exist at Twilio", || async { (!contents(&h, "survey_").await.is_empty()).then_some(()) }).await;
    h.kill_controller();
    h.start_controller();
    let templates = h.templates();
    h.wait_condition(&templates, "survey", "Ready", "True", "Ready").await;
    let made = contents(&h, "survey_").await;
    let status = templates.get("survey").await.unwrap().status.unwrap();
    let mut in_status: Vec<&str> = status.localizations.iter().map(|l| l.content_sid.as_deref().unwrap()).collect();
    let mut at_twilio: Vec<&str> = made.iter().map(|c| c["sid"].as_str().unwrap()).collect();
    in_status.sort();
    at_twilio.sort();
    assert_eq!(at_twilio, in_status, "one Content per localization, the one in the status");

    // A graceful stop exits cleanly, and a fresh start changes nothing.
    assert!(h.stop_controller().success());
    let version = templates.get("survey").await.unwrap().resource_version();
    h.start_controller();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(templates.get("survey").await.unwrap().resource_version(), version);
    assert_eq!(contents(&h, "survey_").await.len(), 2);
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn policies_refuse_what_this_controller_cannot_serve() {
    let Some(h) = Harness::start("ctl-policy", "", &["--cloud-region", "government"]).await else { return };
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    let (secret, mut manual) = twilio_account();
    manual["spec"]["webhook"]["registration"] = json!("Manual");
    let mut insecure = manual.clone();
    insecure["metadata"]["name"] = json!("plain-http");
    insecure["spec"]["webhook"]["publicBaseUrl"] = json!("http://127.0.0.1:8080");
    h.apply(&[secret, line_account("contoso-line"), manual, insecure]).await;
    let accounts = h.accounts();

    let message = h.wait_condition(&accounts, "contoso-line", "Ready", "False", "RegionNotSupported").await;
    assert!(message.contains("government"), "{message}");
    assert_eq!(h.line_endpoint().await, Value::Null, "LINE was never called");

    let message = h.wait_condition(&accounts, "plain-http", "Ready", "False", "InvalidSpec").await;
    assert!(message.starts_with("spec.webhook.publicBaseUrl: "), "{message}");

    // Manual registration publishes the URL to paste and leaves the provider alone.
    let message = h.wait_condition(&accounts, "contoso-whatsapp", "WebhookRegistered", "False", "ManualRegistrationRequired").await;
    let callback = format!("https://chat.contoso.example/switchboard/{}/contoso-whatsapp/webhook", h.namespace);
    assert!(message.contains(&callback), "{message}");
    h.wait_condition(&accounts, "contoso-whatsapp", "Ready", "True", "Ready").await;
    assert_eq!(h.twilio_state().await["messagingServices"][0]["inboundRequestUrl"], Value::Null);
    assert_eq!(h.requests("POST /**").await, 0, "nothing was changed at Twilio");
    h.assert_no_secrets().await;
}

/// Sets `switchboard.dev/reconcile-requested-at` on an object and waits until its status says
/// the request was handled.
async fn request_reconcile<K>(api: &Api<K>, name: &str, value: &str, handled: impl Fn(&K) -> Option<String>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {"switchboard.dev/reconcile-requested-at": value}}});
    api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    cluster::wait_for(&format!("{name} to handle the reconcile request {value:?}"), || async {
        let object = api.get(name).await.ok()?;
        (handled(&object).as_deref() == Some(value)).then_some(())
    })
    .await;
}

/// The annotation asks for a re-check at once: with nothing due for hours (the 6 h re-check and
/// settled-approval intervals), an account's credentials and webhook and a template's approvals
/// are read again from the provider, and every kind's status echoes the value. Also: facts
/// about two languages are two events.
#[tokio::test]
async fn the_reconcile_annotation_rechecks_at_once() {
    let schedule = "approvals: {receivedFor: 200ms, pendingFor: 300ms}";
    let Some(h) = Harness::start("ctl-recheck", schedule, &["--approval-pending-interval", "1s"]).await else { return };
    let mut docs = examples(&["line-quickstart.yaml"]);
    let (secret, account) = twilio_account();
    docs.extend([secret, account, template("reminder", &[("en", "Hi {{1}}, see you soon."), ("tr", "Merhaba {{1}}, görüşmek üzere.")])]);
    h.apply(&docs).await;
    let (accounts, templates) = (h.accounts(), h.templates());
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    h.wait_condition(&templates, "reminder", "Ready", "True", "Ready").await;

    let mut created: Vec<String> = h
        .events()
        .await
        .iter()
        .filter(|e| e["reason"] == "ContentCreated" && e["regarding"]["name"] == "reminder")
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect();
    created.sort();
    assert_eq!(created.len(), 2, "one ContentCreated event per language, not a series hiding tr: {created:?}");
    assert!(created[0].starts_with("en: created Content HX") && created[1].starts_with("tr: created Content HX"), "{created:?}");

    // The account: bot info (credentials) and the webhook endpoint, asked again.
    h.sim_delete("/__sim/requests").await;
    request_reconcile(&accounts, "contoso-line", "2026-05-01T10:00:00Z", |a| a.status.as_ref()?.last_handled_reconcile_at.clone()).await;
    assert!(h.requests("GET /v2/bot/info").await >= 1, "the credentials were checked again");
    assert!(h.requests("GET /v2/bot/channel/webhook/endpoint").await >= 1, "the webhook was checked again");
    assert_eq!(h.requests("GET /v1/Content/**").await, 0, "another object's request re-checks nothing of the template");

    // The same value again, with another annotation changing: nothing is asked.
    h.sim_delete("/__sim/requests").await;
    let patch = json!({"metadata": {"annotations": {"example.com/note": "unrelated"}}});
    accounts.patch("contoso-line", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.requests("").await, 0, "a handled request is not repeated");

    // The template: each localization's approval, read again.
    request_reconcile(&templates, "reminder", "again", |t| t.status.as_ref()?.last_handled_reconcile_at.clone()).await;
    assert_eq!(h.requests("GET /v1/Content/*/ApprovalRequests").await, 2, "both approvals were read again");
    let status = templates.get("reminder").await.unwrap().status.unwrap();
    assert_eq!(status.approval_summary.as_deref(), Some("Approved"));

    // Workstreams and rules are evaluated again and echo it too.
    let workstreams: Api<Workstream> = Api::namespaced(h.client.clone(), &h.namespace);
    request_reconcile(&workstreams, "support-line", "1", |w| w.status.as_ref()?.last_handled_reconcile_at.clone()).await;
    let rules: Api<RoutingRule> = Api::namespaced(h.client.clone(), &h.namespace);
    request_reconcile(&rules, "billing-queue", "1", |r| r.status.as_ref()?.last_handled_reconcile_at.clone()).await;
    h.assert_no_secrets().await;
}
