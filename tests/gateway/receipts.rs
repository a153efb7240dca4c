//! Twilio's status callbacks end to end: the simulator calls back each message's statuses
//! (shuffled, repeated, failing, or before it answers the send), the gateway verifies and
//! records them, and the desk — verifying every delivery with the Standard Webhooks reference
//! implementation — sees accepted → sent → delivered → read once each and in order, or the
//! failure with its mapped code; the conversation API shows each message's latest status.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use switchboard::signing::twilio_signature;

use crate::desk::Received;
use crate::harness::{Bed, Provider, SALES_NUMBER, TWILIO_SID, TWILIO_TOKEN, whatsapp_channel, workstream};

const CUSTOMER: &str = "+905551112233";

/// Sets how the simulated Twilio calls back the statuses of messages sent from now on.
async fn set_receipts(bed: &Bed, schedule: Value) {
    let response = bed.http.put(format!("{}/__sim/twilio/receipts", bed.sim.base_url())).json(&schedule).send().await.unwrap();
    assert_eq!(response.status(), 200, "{schedule}");
}

/// A WhatsApp bed whose customer has written; returns it with the conversation's ID.
async fn conversation() -> (Bed, String) {
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let ws = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], None, vec![]);
    let config = bed.config(vec![ws]);
    bed.start(&config).await;
    let sent = bed.twilio_message(SALES_NUMBER, CUSTOMER, "Ayşe", "Hello?", vec![], false).await;
    assert_eq!(sent["delivery"]["statusCode"], 200, "{sent}");
    let id = bed.desk.wait_one("message.received", |e| e.kind() == "message.received").await.conversation().to_owned();
    (bed, id)
}

/// The events about the agent's message `client_id`, in the conversation's order.
fn events_of(bed: &Bed, client_id: &str) -> Vec<Received> {
    let mut events: Vec<Received> = bed.desk.events().into_iter().filter(|e| e.client_message_id() == Some(client_id)).collect();
    events.sort_by_key(Received::sequence);
    events
}

fn kinds(events: &[Received]) -> Vec<&str> {
    events.iter().map(Received::kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_reach_the_desk_once_each_and_in_order_when_twilio_shuffles_and_repeats_them() {
    let (bed, id) = conversation().await;
    set_receipts(&bed, json!({"statuses": ["sent", "delivered", "read"], "shuffle": true, "repeat": 2, "delay": "20ms"})).await;
    let ids = ["r-1", "r-2", "r-3", "r-4"];
    for (n, client_id) in ids.iter().enumerate() {
        bed.send_text(&id, client_id, &format!("Answer {n}")).await;
    }
    for client_id in ids {
        bed.desk.wait_outcome("message.read", client_id).await;
    }
    // The repeats and late callbacks have had time to arrive and be ignored.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for client_id in ids {
        let events = events_of(&bed, client_id);
        assert_eq!(kinds(&events), ["message.accepted", "message.sent", "message.delivered", "message.read"], "{client_id}");
        let statuses: Vec<&str> = events.iter().map(|e| e.body["message"]["status"].as_str().unwrap_or_default()).collect();
        assert_eq!(statuses, ["accepted", "sent", "delivered", "read"], "each event shows the status it tells");
        assert!(events.iter().all(|e| e.body["message"]["statusAt"].is_string()), "{:?}", events[0].body);
    }
    // The desk's event sequence has no gaps or repeats: every callback after the first of its
    // status changed nothing.
    let sequences: Vec<i64> = bed.desk.conversation(&id).iter().map(Received::sequence).collect();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>());
    let view = bed.conversation(&id).await;
    let statuses: BTreeMap<&str, &str> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| Some((m["clientMessageId"].as_str()?, m["status"].as_str()?)))
        .collect();
    assert_eq!(statuses.values().collect::<Vec<_>>(), [&"read"; 4], "{view}");
    bed.desk.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_fails_after_it_was_sent_carries_the_mapped_code_and_nothing_follows() {
    let (bed, id) = conversation().await;
    set_receipts(&bed, json!({"statuses": ["sent"], "failure": {"status": "undelivered", "errorCode": 63024, "errorMessage": "Invalid message recipient"}, "delay": "20ms"})).await;
    bed.send_text(&id, "f-1", "Are you there?").await;
    let failed = bed.desk.wait_outcome("message.failed", "f-1").await;
    assert_eq!(failed.body["reason"], "invalid_recipient", "{}", failed.body);
    let error = &failed.body["message"]["error"];
    assert_eq!((error["code"].as_str(), error["providerCode"].as_i64()), (Some("invalid_recipient"), Some(63024)), "{error}");
    assert_eq!(error["message"], "Invalid message recipient");
    assert_eq!(kinds(&events_of(&bed, "f-1")), ["message.accepted", "message.sent", "message.failed"]);

    // Outside the window: Twilio's 63016 is the gateway's own session_window_closed, and a late
    // "delivered" for a failed message changes nothing.
    set_receipts(&bed, json!({"statuses": [], "failure": {"status": "failed", "errorCode": 63016}, "delay": "20ms"})).await;
    bed.send_text(&id, "f-2", "One more thing").await;
    let failed = bed.desk.wait_outcome("message.failed", "f-2").await;
    assert_eq!((failed.body["reason"].as_str(), failed.body["message"]["error"]["providerCode"].as_i64()), (Some("session_window_closed"), Some(63016)));
    let sid = failed.body["message"]["providerMessageIds"][0].as_str().unwrap().to_owned();
    assert_eq!(post_status(&bed, &[("MessageSid", &sid), ("MessageStatus", "delivered")], None).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(kinds(&events_of(&bed, "f-2")), ["message.accepted", "message.failed"]);
    let view = bed.conversation(&id).await;
    let message = view["messages"].as_array().unwrap().iter().find(|m| m["clientMessageId"] == "f-2").cloned().unwrap();
    assert_eq!((message["status"].as_str(), message["error"]["code"].as_str()), (Some("failed"), Some("session_window_closed")), "{message}");
    bed.desk.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_come_before_the_send_is_answered_are_kept_and_follow_the_acceptance() {
    let (bed, id) = conversation().await;
    // Twilio calls back "delivered" and then "sent" before it answers the request that sent the
    // message: the gateway has no SID to match them to yet.
    set_receipts(&bed, json!({"statuses": ["delivered", "sent"], "beforeAnswer": true, "delay": "0s"})).await;
    bed.send_text(&id, "early-1", "Quick answer").await;
    bed.desk.wait_outcome("message.delivered", "early-1").await;
    assert_eq!(kinds(&events_of(&bed, "early-1")), ["message.accepted", "message.sent", "message.delivered"]);
    bed.desk.check();
}

/// POSTs a status callback to the gateway's status URL, signed with `token` (the account's
/// when None); returns the status.
async fn post_status(bed: &Bed, params: &[(&str, &str)], token: Option<&str>) -> u16 {
    let url = bed.webhook_url().replace("/webhook", "/status");
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let signature = twilio_signature(token.unwrap_or(TWILIO_TOKEN), &url, &owned);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let response = bed
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_are_verified_and_checked_before_they_are_recorded() {
    let (bed, _id) = conversation().await;
    let params = [("MessageSid", "SM0123456789abcdef0123456789abcdef"), ("MessageStatus", "delivered"), ("AccountSid", TWILIO_SID)];
    assert_eq!(post_status(&bed, &params, Some("not-the-auth-token")).await, 403, "a forged callback");
    assert_eq!(post_status(&bed, &[("MessageStatus", "delivered")], None).await, 400, "no MessageSid");
    assert_eq!(post_status(&bed, &[("MessageSid", "SM1"), ("MessageStatus", "sending")], None).await, 200, "a status the desk does not wait for");
    // A callback for a message the gateway does not know (yet) is kept, not refused.
    assert_eq!(post_status(&bed, &params, None).await, 200);
    assert_eq!(bed.metric(r#"switchboard_gateway_signature_failures_total{provider="Twilio"}"#).await, 1.0, "the forged callback is counted");

    let mut line = Bed::new(Provider::Line, &[]).await;
    let config = line.config(vec![]);
    line.start(&config).await;
    let url = line.webhook_url().replace("/webhook", "/status");
    let response = line.http.post(&url).body("MessageSid=SM1&MessageStatus=sent").send().await.unwrap();
    assert_eq!(response.status(), 404, "LINE sends no delivery receipts");
}
