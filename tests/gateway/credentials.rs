//! The provider refusing the account's credentials (the simulator's `unauthorized` fault, 401 or
//! 403): sends are retried for `--credentials-retry-for`, the streak is logged once at WARN,
//! and then the greeting and an agent's message end as `message.failed` with
//! `credentials_rejected` and the provider's code. A refusal that passes is delivered.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::desk::Received;
use crate::harness::{Bed, Provider, SALES_NUMBER, TWILIO_SID, line_channel, line_user, whatsapp_channel, workstream};

/// The give-up time the gateway is started with.
const RETRY_FOR: &str = "2s";
/// The log line of a streak's start.
const STREAK: &str = "the provider refuses the account's credentials";
/// The log line of a streak's end.
const ACCEPTED_AGAIN: &str = "the provider accepts the account's credentials again";

fn streaks(bed: &Bed) -> Vec<String> {
    bed.gateway.log().lines().filter(|l| l.contains(STREAK)).map(str::to_owned).collect()
}

/// The error of a `message.failed`, as (code, providerCode).
fn error(event: &Received) -> (Option<&str>, Option<i64>) {
    let error = &event.body["message"]["error"];
    (error["code"].as_str(), error["providerCode"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_twilio_credentials_fail_the_greeting_and_an_agent_message_after_the_retry_time() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &["--credentials-retry-for", RETRY_FOR]).await;
    let ws = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], Some("Hello {CustomerName}"), vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let route = format!("POST /2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
    // Until deleted: as a revoked auth token.
    let fault = bed.sim_post("/__sim/faults", json!({"route": route, "kind": "unauthorized"})).await;

    bed.twilio_message(SALES_NUMBER, "+905551112233", "Ayşe", "Hello", vec![], false).await;
    let created = bed.desk.wait_one("conversation.created", |e| e.kind() == "conversation.created").await;
    let id = created.conversation().to_owned();
    let greeting = bed.desk.wait_one("the greeting's message.failed", |e| e.kind() == "message.failed").await;
    let failed_after = created.at.elapsed();
    assert_eq!(error(&greeting), (Some("credentials_rejected"), Some(20003)), "{}", greeting.body);
    assert_eq!(greeting.body["reason"], "credentials_rejected", "{}", greeting.body);
    assert_eq!(greeting.body["message"]["author"], "automated");
    assert_eq!(greeting.body["message"]["triggers"][0], "Greeting", "{}", greeting.body);
    assert_eq!(greeting.body["message"]["status"], "failed");
    let attempts = bed.sim_requests(&route).await;
    assert!(attempts.len() >= 2, "retried before giving up: {attempts:#?}");
    assert!(attempts.iter().all(|r| r["status"] == 401), "{attempts:#?}");
    assert!(failed_after < Duration::from_secs(15), "given up after the retry time (2 s) and a retry delay, not later: {failed_after:?}");

    // The streak is older than the retry time: an agent's message fails at its first refusal.
    let before = bed.sim_requests(&route).await.len();
    bed.send_text(&id, "a-1", "We are looking into it").await;
    let agent = bed.desk.wait_outcome("message.failed", "a-1").await;
    assert_eq!(error(&agent), (Some("credentials_rejected"), Some(20003)), "{}", agent.body);
    assert_eq!(bed.sim_requests(&route).await.len(), before + 1, "one attempt");
    let view = bed.conversation(&id).await;
    let stored = view["messages"].as_array().unwrap().iter().find(|m| m["clientMessageId"] == "a-1").cloned().expect("a-1");
    assert_eq!((stored["status"].as_str(), stored["error"]["code"].as_str()), (Some("failed"), Some("credentials_rejected")), "{stored}");
    assert_eq!(streaks(&bed).len(), 1, "one WARN for the streak:\n{}", streaks(&bed).join("\n"));
    let warn = &streaks(&bed)[0];
    assert!(warn.contains("WARN") && warn.contains("support/contoso-wa") && warn.contains("20003"), "{warn}");

    // The Secret is fixed: the next message goes, and the streak's end is logged.
    let removed = bed.http.delete(format!("{}/__sim/faults/{}", bed.sim.base_url(), fault["id"])).send().await.unwrap();
    assert!(removed.status().is_success(), "the fault is removed");
    bed.send_text(&id, "a-2", "Fixed").await;
    bed.desk.wait_outcome("message.accepted", "a-2").await;
    assert!(bed.gateway.log().contains(ACCEPTED_AGAIN), "the end of the streak is logged");

    // A second streak: logged once more, and the retry time counts from its start again.
    bed.sim_post("/__sim/faults", json!({"route": route, "kind": "unauthorized", "status": 403})).await;
    let sent = Instant::now();
    bed.send_text(&id, "a-3", "Again").await;
    let again = bed.desk.wait_outcome("message.failed", "a-3").await;
    assert!(sent.elapsed() >= Duration::from_secs(2), "retried for the whole retry time of the new streak: {:?}", sent.elapsed());
    assert_eq!(error(&again), (Some("credentials_rejected"), Some(20403)), "{}", again.body);
    assert_eq!(streaks(&bed).len(), 2, "one WARN per streak:\n{}", streaks(&bed).join("\n"));

    let failed: Vec<Received> = bed.desk.of_kind("message.failed");
    assert_eq!(failed.len(), 3, "one message.failed per message: {:?}", failed.iter().map(|e| e.body["message"]["id"].clone()).collect::<Vec<_>>());
    assert_eq!(bed.sim_messages().await.len(), 1, "only the message after the fix reached the customer");
    eprintln!("refused_twilio_credentials_fail_the_greeting_and_an_agent_message_after_the_retry_time: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_credentials_refused_for_a_moment_still_deliver_the_greeting_and_the_agent_message() {
    let started = Instant::now();
    // Long enough that nothing gives up in this test.
    let mut bed = Bed::new(Provider::Line, &["--credentials-retry-for", "1m"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], Some("Hi {CustomerName}"), vec![]);
    bed.start(&bed.config(vec![ws])).await;

    // The greeting's reply and the push after it are refused with 403, then LINE takes the push.
    bed.sim_post("/__sim/faults", json!({"route": "POST /v2/bot/message/*", "kind": "unauthorized", "status": 403, "times": 2})).await;
    let ann = line_user(9);
    let first = bed.line_text(&ann, "Ann", "hello").await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await.conversation().to_owned();
    let greeting = bed.desk.wait_one("the greeting's message.accepted", |e| e.kind() == "message.accepted").await;
    assert_eq!(greeting.body["message"]["triggers"][0], "Greeting", "{}", greeting.body);
    let statuses = |requests: Vec<Value>| requests.iter().map(|r| r["status"].as_u64()).collect::<Vec<_>>();
    assert_eq!(statuses(bed.sim_requests("POST /v2/bot/message/reply").await), [Some(403)]);
    assert_eq!(statuses(bed.sim_requests("POST /v2/bot/message/push").await), [Some(403), Some(200)]);

    // One 401 on the agent's push, then it goes.
    bed.sim_post("/__sim/faults", json!({"route": "POST /v2/bot/message/push", "kind": "unauthorized", "times": 1})).await;
    bed.send_text(&id, "l-1", "How can I help?").await;
    bed.desk.wait_outcome("message.accepted", "l-1").await;
    assert_eq!(statuses(bed.sim_requests("POST /v2/bot/message/push").await), [Some(403), Some(200), Some(401), Some(200)]);

    assert!(bed.desk.of_kind("message.failed").is_empty(), "nothing failed");
    let sent = bed.sim_messages().await;
    assert_eq!(sent.iter().filter(|m| m["body"] == "How can I help?").count(), 1, "sent once: {sent:#?}");
    assert_eq!(streaks(&bed).len(), 2, "two streaks, each logged once:\n{}", streaks(&bed).join("\n"));
    assert_eq!(bed.gateway.log().matches(ACCEPTED_AGAIN).count(), 2, "each streak's end is logged");
    eprintln!("line_credentials_refused_for_a_moment_still_deliver_the_greeting_and_the_agent_message: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
