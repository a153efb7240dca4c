//! A conversation's life across time and restarts: closed for inactivity, a new one when the
//! customer comes back, an open one kept across a graceful restart, and a message in flight
//! when the gateway stops recorded rather than sent twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Bed, Provider, SALES_NUMBER, TWILIO_SID, line_channel, line_user, whatsapp_channel, workstream};
use crate::inbound::outline;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_conversation_is_closed_and_the_customer_starts_a_new_one() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--sweep-interval", "500ms"]).await;
    let mut ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], Some("Hi {CustomerName}"), vec![]);
    ws["distribution"]["autoCloseAfterInactivitySeconds"] = json!(2);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(1);

    let first = bed.line_text(&ann, "Ann", "hello").await;
    assert_eq!(first["delivery"]["statusCode"], 200);
    let sent_at = Instant::now();
    let closed = bed
        .desk
        .wait_for(Duration::from_secs(10), "conversation.closed", |events| events.iter().find(|e| e.kind() == "conversation.closed").cloned())
        .await;
    let after = closed.at.duration_since(sent_at);
    // Two seconds of quiet, then at most one sweep interval and a delivery later.
    assert!(after >= Duration::from_millis(1900), "closed after {after:?}, before the 2 s of inactivity were up");
    assert!(after <= Duration::from_secs(6), "closed only after {after:?}");
    let conversation = closed.conversation().to_owned();
    assert_eq!(closed.body["reason"], "inactivity");
    assert_eq!(closed.body["conversation"]["state"], "Closed");
    assert_eq!(closed.body["conversation"]["closeReason"], "inactivity");
    assert!(closed.body["conversation"]["closedMs"].as_i64().is_some());
    let events = bed.desk.conversation(&conversation);
    assert_eq!(outline(&events), ["conversation.created", "message.received", "conversation.closed"]);

    // Ann comes back: a new conversation that knows her, with its own greeting.
    let again = bed.line_text(&ann, "Ann", "me again").await;
    assert_eq!(again["delivery"]["statusCode"], 200);
    let message = bed
        .desk
        .wait_for(Duration::from_secs(20), "Ann's new message", |events| {
            events.iter().find(|e| e.message_id() == again["messageId"].as_str()).cloned()
        })
        .await;
    assert_ne!(message.conversation(), conversation, "a closed conversation is never reopened by a message");
    let created: Vec<_> = bed.desk.conversation(message.conversation()).into_iter().filter(|e| e.kind() == "conversation.created").collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].sequence(), 1);
    assert_eq!(created[0].body["conversation"]["customer"]["isKnown"], true);
    assert_eq!(created[0].body["conversation"]["state"], "Open");
    assert_eq!(message.sequence(), 2, "the customer's message comes before the greeting's delivery");
    let greetings = bed.sim_messages().await.into_iter().filter(|m| m["to"] == ann.as_str()).count();
    assert_eq!(greetings, 2, "one greeting per conversation");
    eprintln!("an_inactive_conversation_is_closed_and_the_customer_starts_a_new_one: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_the_open_conversation() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], Some("Hi {CustomerName}"), vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(1);

    let first = bed.line_text(&ann, "Ann", "before the restart").await;
    assert_eq!(first["delivery"]["statusCode"], 200);
    let events = bed.desk.wait_messages(1, Duration::from_secs(20)).await;
    let conversation = events[0].conversation().to_owned();
    bed.wait_sent("the greeting", |m| m["to"] == ann.as_str()).await;

    let pid = bed.gateway.pid();
    let status = bed.gateway.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop: {status:?}");
    assert!(bed.gateway.log().contains("gateway stopped"), "the gateway said it stopped");
    let down = bed.line_text(&ann, "Ann", "while it is down").await;
    assert!(down["delivery"]["statusCode"].is_null(), "nothing answers while it is stopped: {down}");

    bed.restart().await;
    assert_ne!(bed.gateway.pid(), pid);
    let second = bed.line_text(&ann, "Ann", "after the restart").await;
    assert_eq!(second["delivery"]["statusCode"], 200);
    let message = bed
        .desk
        .wait_for(Duration::from_secs(20), "the message after the restart", |events| {
            events.iter().find(|e| e.message_id() == second["messageId"].as_str()).cloned()
        })
        .await;
    assert_eq!(message.conversation(), conversation, "the same open conversation");
    assert!(message.sequence() >= 3, "the sequence carries on");
    let events = bed.desk.wait_for(Duration::from_secs(10), "the greeting's delivery", |events| {
        let mine: Vec<_> = events.iter().filter(|e| e.conversation() == conversation).cloned().collect();
        mine.iter().any(|e| e.kind() == "message.accepted").then_some(mine)
    }).await;
    assert_eq!(outline(&events), ["conversation.created", "message.received", "message.received"]);
    assert_eq!(message.body["conversation"]["customer"]["displayName"], "Ann");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bed.desk.of_kind("conversation.created").len(), 1, "no new conversation");
    let greetings = bed.sim_messages().await.into_iter().filter(|m| m["to"] == ann.as_str()).count();
    assert_eq!(greetings, 1, "no second greeting");
    assert_eq!(bed.desk.events().len(), 4, "created, two messages and the greeting's delivery");
    eprintln!("a_graceful_restart_keeps_the_open_conversation: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_blocking_the_account_closes_their_conversation() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(1);
    let first = bed.line_text(&ann, "Ann", "hello").await;
    assert_eq!(first["delivery"]["statusCode"], 200);
    let conversation = bed.desk.wait_messages(1, Duration::from_secs(20)).await[0].conversation().to_owned();

    // The simulator has no unfollow action; the event is LINE's, signed with the channel secret.
    let body = json!({"destination": first["payload"]["destination"], "events": [{
        "type": "unfollow", "mode": "active", "timestamp": jiff::Timestamp::now().as_millisecond(),
        "source": {"type": "user", "userId": ann}, "webhookEventId": "01JUNFOLLOW0000000000000000",
        "deliveryContext": {"isRedelivery": false},
    }]})
    .to_string();
    let signature = switchboard::signing::line_signature(crate::harness::LINE_SECRET, body.as_bytes());
    let status = bed.http.post(bed.webhook_url()).header("x-line-signature", signature).body(body).send().await.unwrap().status();
    assert_eq!(status, 200);
    let closed = bed
        .desk
        .wait_for(Duration::from_secs(20), "conversation.closed", |events| events.iter().find(|e| e.kind() == "conversation.closed").cloned())
        .await;
    assert_eq!(closed.conversation(), conversation);
    assert_eq!(closed.body["reason"], "customerBlocked");
    assert_eq!(outline(&bed.desk.conversation(&conversation)), ["conversation.created", "message.received", "conversation.closed"]);
    eprintln!("a_customer_blocking_the_account_closes_their_conversation: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_is_unready_at_once_and_serves_through_its_drain_delay() {
    let mut bed = Bed::new(Provider::Line, &["--drain-delay", "2s"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(1);
    assert_eq!(bed.line_text(&ann, "Ann", "before").await["delivery"]["statusCode"], 200);
    bed.desk.wait_messages(1, Duration::from_secs(20)).await;

    let told = Instant::now();
    bed.gateway.signal_stop();
    let unready = loop {
        let answer = bed.http.get(bed.metrics_url("/readyz")).send().await.expect("the probe port still serves");
        if answer.status() == 503 {
            break answer.text().await.unwrap();
        }
        assert!(told.elapsed() < Duration::from_secs(1), "/readyz still answers {} a second after SIGTERM", answer.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(unready, "stopping: draining before shutdown\n");
    // Endpoints are removed during the delay; whoever still sends is served in full.
    let during = bed.line_text(&ann, "Ann", "during the drain").await;
    assert_eq!(during["delivery"]["statusCode"], 200, "{during}");
    let delivered = bed.desk.wait_messages(2, Duration::from_secs(2)).await;
    assert_eq!(delivered[1].message_id(), during["messageId"].as_str());
    let status = bed.gateway.wait_exit();
    let took = told.elapsed();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(took >= Duration::from_secs(2), "stopped after {took:?}, before the drain delay was over");
    eprintln!("drain: exit {took:?} after SIGTERM with --drain-delay 2s");
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_provider_takes_while_the_gateway_stops_is_recorded_and_not_sent_again() {
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let ws = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let customer = "+905551112233";
    bed.twilio_message(SALES_NUMBER, customer, "Ayşe", "Hello?", vec![], false).await;
    let id = bed.desk.wait_one("message.received", |e| e.kind() == "message.received").await.conversation().to_owned();

    // Twilio takes the message at once but answers two seconds late (Twilio has no idempotency
    // key: a message whose answer is lost is sent again); the gateway is stopped meanwhile.
    let route = format!("POST /2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
    bed.sim_post("/__sim/faults", json!({"route": route, "kind": "latency", "delay": "2s", "afterHandler": true, "times": 1})).await;
    bed.send_text(&id, "in-flight", "One moment please").await;
    bed.wait_sent("the message at Twilio", |m| m["body"] == "One moment please").await;
    let stopping = Instant::now();
    let status = bed.gateway.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(stopping.elapsed() >= Duration::from_millis(1000), "the stop waited for Twilio's answer: {:?}", stopping.elapsed());

    bed.restart().await;
    bed.desk.wait_outcome("message.accepted", "in-flight").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = bed.sim_messages().await.into_iter().filter(|m| m["body"] == "One moment please").count();
    assert_eq!(sent, 1, "sent once, across the stop");
    bed.desk.check();
}
