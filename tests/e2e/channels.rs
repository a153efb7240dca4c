//! A provider channel belongs to one account: the oldest claimant holds it, the others say
//! ChannelInUse and take over when it goes; a webhook changed at the provider is put back on its
//! own short interval; Twilio numbers must exist in the account and in its Messaging Service.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

use crate::cluster;
use crate::controller::{line_account, twilio_account};
use crate::harness::{Harness, LINE_SECRET, LINE_TOKEN};

fn callback(h: &Harness, account: &str) -> Value {
    json!(format!("https://chat.contoso.example/switchboard/{}/{account}/webhook", h.namespace))
}

#[tokio::test]
async fn one_channel_one_account() {
    let Some(h) = Harness::start("ctl-channel", "", &[]).await else { return };
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    let accounts = h.accounts();
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace);
    h.apply(&[line_account("contoso-line")]).await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;

    // A second account on the same channel is stopped, and says who holds it.
    h.apply(&[line_account("line-copy")]).await;
    let message = h.wait_condition(&accounts, "line-copy", "Ready", "False", "ChannelInUse").await;
    let holder = format!("{}/contoso-line", h.namespace);
    assert!(message.starts_with("spec.line.channelId: LINE channel 1657123456 is held by MessagingAccount ") && message.contains(&holder), "{message}");
    h.wait_condition(&accounts, "line-copy", "WebhookRegistered", "False", "ChannelInUse").await;
    assert!(deployments.get_opt("line-copy-gateway").await.unwrap().is_none(), "no gateway for the stopped account");
    assert_eq!(h.line_endpoint().await, callback(&h, "contoso-line"), "the holder keeps the webhook");
    cluster::wait_for("a Warning event saying ChannelInUse", || async {
        let events = h.events().await;
        events.iter().any(|e| e["reason"] == "ChannelInUse" && e["regarding"]["name"] == "line-copy" && e["type"] == "Warning").then_some(())
    })
    .await;

    // Deleting the stopped account leaves the holder's webhook alone.
    h.delete_account("line-copy").await;
    cluster::wait_for("line-copy gone", || async { accounts.get_opt("line-copy").await.unwrap().is_none().then_some(()) }).await;
    assert_eq!(h.line_endpoint().await, callback(&h, "contoso-line"), "deleting the stopped account cleaned up nothing");
    assert_eq!(Harness::condition(&accounts, "contoso-line", "WebhookRegistered").await.unwrap().0, "True");

    // When the holder goes, the next account takes the channel over by itself.
    h.apply(&[line_account("line-copy")]).await;
    h.wait_condition(&accounts, "line-copy", "Ready", "False", "ChannelInUse").await;
    h.delete_account("contoso-line").await;
    h.wait_condition(&accounts, "line-copy", "Ready", "True", "Ready").await;
    assert_eq!(h.line_endpoint().await, callback(&h, "line-copy"));
    assert!(deployments.get_opt("line-copy-gateway").await.unwrap().is_some(), "the new holder runs a gateway");
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn a_webhook_changed_at_the_provider_is_put_back() {
    let Some(h) = Harness::start("ctl-webhook-recheck", "", &["--webhook-recheck-interval", "2s"]).await else { return };
    h.secret("contoso-line", &[("channel-secret", LINE_SECRET), ("channel-access-token", LINE_TOKEN)]).await;
    let accounts = h.accounts();
    h.apply(&[line_account("contoso-line")]).await;
    h.wait_condition(&accounts, "contoso-line", "Ready", "True", "Ready").await;
    let credential_checks = h.requests("GET /v2/bot/info").await;

    // Someone points the webhook elsewhere in the LINE Developers console.
    let elsewhere = "https://elsewhere.example/hook";
    let changed = reqwest::Client::new()
        .put(format!("{}/v2/bot/channel/webhook/endpoint", h.sim.base_url()))
        .bearer_auth(LINE_TOKEN)
        .json(&json!({"endpoint": elsewhere}))
        .send()
        .await
        .unwrap();
    assert!(changed.status().is_success(), "{}", changed.status());
    let restored = cluster::wait_within(Duration::from_secs(15), || async { (h.line_endpoint().await == callback(&h, "contoso-line")).then_some(()) }).await;
    assert!(restored.is_some(), "the webhook was not put back; it is {}", h.line_endpoint().await);
    cluster::wait_for("an EndpointMismatch event naming the URL found", || async {
        let events = h.events().await;
        events.iter().any(|e| e["reason"] == "EndpointMismatch" && e["note"].as_str().is_some_and(|n| n.contains(elsewhere))).then_some(())
    })
    .await;
    // Only the webhook was due: the credentials stand for --recheck-interval.
    assert_eq!(h.requests("GET /v2/bot/info").await, credential_checks, "the credentials were checked again");
    h.assert_no_secrets().await;
}

#[tokio::test]
async fn twilio_numbers_must_be_in_the_account_and_the_service() {
    let Some(h) = Harness::start("ctl-numbers", "", &[]).await else { return };
    let (secret, mut account) = twilio_account();
    // +14155550102 is an incoming number (and sender) outside the Messaging Service; +14155550199
    // is not the account's at all.
    account["spec"]["twilioWhatsApp"]["numbers"] = json!([
        {"name": "support", "number": "+14155550100"},
        {"name": "sales", "number": "+14155550102"},
        {"name": "typo", "number": "+14155550199"},
    ]);
    h.apply(&[secret, account.clone()]).await;
    let accounts = h.accounts();
    let message = h.wait_condition(&accounts, "contoso-whatsapp", "WebhookRegistered", "False", "NumberNotFound").await;
    assert!(message.contains("typo (+14155550199): neither an incoming phone number nor a WhatsApp sender"), "{message}");
    assert!(message.contains("sales (+14155550102): not among the phone numbers or senders of Messaging Service MG0123456789abcdef0123456789abcdef"), "{message}");
    let numbers = |status: switchboard::api::MessagingAccountStatus| {
        status.numbers.into_iter().map(|n| (n.name, n.inbound_url_configured, n.reason)).collect::<Vec<_>>()
    };
    let status = accounts.get("contoso-whatsapp").await.unwrap().status.unwrap();
    assert_eq!(numbers(status), [
        ("support".to_owned(), true, None),
        ("sales".to_owned(), false, Some("NumberNotInService".to_owned())),
        ("typo".to_owned(), false, Some("NumberNotFound".to_owned())),
    ]);
    assert_eq!(Harness::condition(&accounts, "contoso-whatsapp", "Ready").await.unwrap().0, "False");

    account["spec"]["twilioWhatsApp"]["numbers"] = json!([{"name": "support", "number": "+14155550100"}, {"name": "sales", "number": "+14155550102"}]);
    h.apply(&[account.clone()]).await;
    let message = h.wait_condition(&accounts, "contoso-whatsapp", "WebhookRegistered", "False", "NumberNotInService").await;
    assert!(message.contains("sales (+14155550102)") && !message.contains("typo"), "{message}");

    account["spec"]["twilioWhatsApp"]["numbers"] = json!([{"name": "support", "number": "+14155550100"}, {"name": "sales", "number": "+14155550101"}]);
    h.apply(&[account]).await;
    h.wait_condition(&accounts, "contoso-whatsapp", "Ready", "True", "Ready").await;
    h.assert_no_secrets().await;
}
