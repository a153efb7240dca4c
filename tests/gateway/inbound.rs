//! A LINE customer's messages through the gateway: conversation, routing, greeting, the desk's
//! events in order, and redeliveries recognised.

use std::time::{Duration, Instant};

use crate::desk::Received;
use crate::harness::{Bed, LINE_ACCOUNT, NAMESPACE, Provider, line_channel, line_user, route_rule, workstream};

/// A conversation's events without the outcomes of messages sent to the customer (which
/// interleave with the customer's, by timing), after checking that the sequence of all of them
/// is 1..n without gaps.
pub fn outline(events: &[Received]) -> Vec<String> {
    let mut sequences: Vec<i64> = events.iter().map(Received::sequence).collect();
    sequences.sort();
    assert_eq!(sequences, (1..=events.len() as i64).collect::<Vec<_>>(), "sequences with gaps or repeats");
    events.iter().map(|e| e.kind().to_owned()).filter(|k| !matches!(k.as_str(), "message.accepted" | "message.failed" | "message.skipped")).collect()
}

const GREETING: &str = "Hello {CustomerName}, you are in {QueueName} ({ConversationId})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_text_is_routed_greeted_delivered_in_order_and_deduplicated() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let rules = vec![route_rule("refunds-to-billing", 10, "refund", "billing")];
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general", "billing"], Some(GREETING), rules);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(1);
    let bob = line_user(2);

    // Ann's first message: 200 once recorded, then created (1) and received (2) at the desk.
    let first = bed.line_text(&ann, "Ann", "Where is my REFUND?").await;
    assert_eq!(first["delivery"]["statusCode"], 200, "{first}");
    let events = bed
        .desk
        .wait_for(Duration::from_secs(20), "Ann's conversation.created and message.received", |events| {
            let mine: Vec<_> = events.iter().filter(|e| e.customer() == ann).cloned().collect();
            (mine.len() >= 2).then_some(mine)
        })
        .await;
    let (created, received) = (&events[0], &events[1]);
    assert_eq!((created.kind(), created.sequence()), ("conversation.created", 1));
    assert_eq!((received.kind(), received.sequence()), ("message.received", 2));
    let conversation = created.conversation().to_owned();
    assert_eq!(received.conversation(), conversation);
    let c = &created.body["conversation"];
    assert_eq!(c["workstream"], "support-line");
    assert_eq!(c["channel"], "LINE");
    assert_eq!(c["state"], "Open");
    assert_eq!(c["customer"]["displayName"], "Ann", "the name comes from LINE's profile API: {c}");
    assert_eq!(c["customer"]["isKnown"], false);
    assert_eq!(c["routing"]["queue"], "billing", "the RouteToQueue rule matched regardless of case: {c}");
    assert_eq!(c["routing"]["routedBy"], "refunds-to-billing");
    assert_eq!(created.body["account"], serde_json::json!({"namespace": NAMESPACE, "name": LINE_ACCOUNT}));
    assert!(created.body.get("message").is_none(), "conversation.created carries no message");
    assert_eq!(received.body["message"]["id"], first["messageId"]);
    assert_eq!(received.body["message"]["messageType"], "text");
    assert_eq!(received.text(), Some("Where is my REFUND?"));
    assert!(received.body["createdAt"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{}", received.body);

    // The greeting went back with Ann's reply token, placeholders filled.
    let greeting = bed.wait_sent("Ann's greeting", |m| m["to"] == ann.as_str()).await;
    assert_eq!(greeting["provider"], "line");
    assert_eq!(greeting["via"], "reply", "a fresh reply token is used rather than a push: {greeting}");
    assert_eq!(greeting["body"], format!("Hello Ann, you are in billing ({conversation})"));

    // Bob writes without the keyword: the fallback queue, no rule named.
    let bob_first = bed.line_text(&bob, "Bob", "Hi, a question about my order").await;
    assert_eq!(bob_first["delivery"]["statusCode"], 200);
    let bob_created = bed
        .desk
        .wait_for(Duration::from_secs(20), "Bob's conversation.created", |events| {
            events.iter().find(|e| e.customer() == bob && e.kind() == "conversation.created").cloned()
        })
        .await;
    assert_eq!(bob_created.body["conversation"]["routing"]["queue"], "general");
    assert!(bob_created.body["conversation"]["routing"].get("routedBy").is_none(), "{}", bob_created.body);
    assert_ne!(bob_created.conversation(), conversation);
    let bob_greeting = bed.wait_sent("Bob's greeting", |m| m["to"] == bob.as_str()).await;
    assert_eq!(bob_greeting["body"], format!("Hello Bob, you are in general ({})", bob_created.conversation()));

    // Ann again: the same conversation, the next sequence, no second greeting or creation.
    let second = bed.line_text(&ann, "Ann", "Any news?").await;
    assert_eq!(second["delivery"]["statusCode"], 200);
    let third = bed
        .desk
        .wait_for(Duration::from_secs(20), "Ann's second message.received", |events| {
            events.iter().find(|e| e.message_id() == second["messageId"].as_str()).cloned()
        })
        .await;
    assert_eq!(third.conversation(), conversation);
    assert!(third.sequence() >= 3, "after created and the first message (and perhaps the greeting's delivery)");
    assert_eq!(third.text(), Some("Any news?"));

    // LINE redelivers Ann's first event: answered 200, counted as a duplicate, not handed on.
    let redelivered = bed.line_redeliver(first["webhookEventId"].as_str().unwrap()).await;
    assert_eq!(redelivered["delivery"]["statusCode"], 200, "{redelivered}");
    assert_eq!(redelivered["payload"]["events"][0]["deliveryContext"]["isRedelivery"], true);
    assert_eq!(redelivered["payload"]["events"][0]["webhookEventId"], first["webhookEventId"]);
    assert_eq!(bed.metric(r#"switchboard_gateway_events_total{outcome="Duplicate"}"#).await, 1.0);
    assert_eq!(bed.metric(r#"switchboard_gateway_events_total{outcome="Recorded"}"#).await, 3.0);
    // A marker message after the redelivery: once it is at the desk, anything the redelivery
    // would have caused is there too (one processor, events in the order recorded).
    let marker = bed.line_text(&bob, "Bob", "marker").await;
    bed.desk
        .wait_for(Duration::from_secs(20), "the marker", |events| events.iter().any(|e| e.message_id() == marker["messageId"].as_str()).then_some(()))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ann_events = bed.desk.conversation(&conversation);
    assert_eq!(outline(&ann_events), ["conversation.created", "message.received", "message.received"], "the redelivery caused nothing");
    let delivered: Vec<_> = ann_events.iter().filter(|e| e.kind() == "message.accepted").collect();
    assert_eq!(delivered.len(), 1, "the greeting's delivery is reported once");
    assert_eq!(delivered[0].body["message"]["triggers"][0], "Greeting");
    let sent_to_ann = bed.sim_messages().await.into_iter().filter(|m| m["to"] == ann.as_str()).count();
    assert_eq!(sent_to_ann, 1, "one greeting per conversation");
    assert_eq!(bed.desk.repeats(), 0, "nothing was delivered twice without a crash");
    eprintln!("line_text_is_routed_greeted_delivered_in_order_and_deduplicated: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_overflow_to_the_fallback_queue_or_decline() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let mut ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general", "vip"], Some("Hi {CustomerName}"), vec![
        route_rule("vip-queue", 10, "vip", "vip"),
    ]);
    ws["queues"] = serde_json::json!([
        {"name": "general", "overflow": {"maxWaiting": 2, "action": "Decline"}},
        {"name": "vip", "overflow": {"maxWaiting": 1, "action": "FallbackQueue"}},
    ]);
    bed.start(&bed.config(vec![ws])).await;

    // One customer at a time, each waited for: a queue's count of Open conversations decides.
    let mut created = Vec::new();
    for (n, text) in ["vip please", "vip too", "hello", "hello again"].iter().enumerate() {
        let user = line_user(n);
        let answer = bed.line_text(&user, &format!("C{n}"), text).await;
        assert_eq!(answer["delivery"]["statusCode"], 200);
        let event = bed
            .desk
            .wait_for(Duration::from_secs(20), "conversation.created", |events| {
                events.iter().find(|e| e.customer() == user && e.kind() == "conversation.created").cloned()
            })
            .await;
        created.push((user, event));
    }
    let routing = |i: usize| created[i].1.body["conversation"]["routing"].clone();
    assert_eq!(routing(0)["queue"], "vip");
    assert_eq!((routing(1)["queue"].as_str(), routing(1)["overflowedFrom"].as_str()), (Some("general"), Some("vip")), "vip was full");
    assert_eq!(routing(2)["queue"], "general");
    assert!(routing(2).get("overflowedFrom").is_none());
    assert!(routing(3).get("queue").is_none(), "general was full and declines: {}", routing(3));
    assert_eq!(routing(3)["overflowedFrom"], "general");

    // The declined conversation is closed with reason queueOverflow and greeted by no one.
    let declined = created[3].1.conversation().to_owned();
    let closed = bed
        .desk
        .wait_for(Duration::from_secs(20), "the declined conversation's closing", |events| {
            events.iter().find(|e| e.conversation() == declined && e.kind() == "conversation.closed").cloned()
        })
        .await;
    assert_eq!(closed.body["reason"], "queueOverflow");
    assert_eq!(closed.body["conversation"]["state"], "Closed");
    let marker = bed.line_text(&line_user(0), "C0", "marker").await;
    bed.desk
        .wait_for(Duration::from_secs(20), "the marker", |events| events.iter().any(|e| e.message_id() == marker["messageId"].as_str()).then_some(()))
        .await;
    let events = bed.desk.conversation(&declined);
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
    assert_eq!(sequences, (1..=events.len() as i64).collect::<Vec<_>>(), "in order without gaps");
    assert_eq!(events.last().unwrap().kind(), "conversation.closed", "nothing after the closing");
    let sent = bed.sim_messages().await;
    for (i, (user, _)) in created.iter().enumerate() {
        let greetings = sent.iter().filter(|m| m["to"] == user.as_str()).count();
        assert_eq!(greetings, usize::from(i != 3), "customer {i}: a greeting unless declined");
    }
    eprintln!("full_queues_overflow_to_the_fallback_queue_or_decline: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
