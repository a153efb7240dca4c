//! A workstream with a bot: the bot gets the conversation first (at its own URL, with its bearer
//! token), answers through the agent API as "bot", and escalates with a summary and attributes
//! that routing uses to pick the agents' queue; from then on the agent desk has it.

use std::time::Instant;

use reqwest::Method;
use serde_json::json;

use crate::harness::{BOT_ENV, BOT_TOKEN, Bed, Provider, line_channel, line_user, workstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_answers_first_and_escalates_to_the_queue_its_attributes_choose() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let bot = bed.other_desk().await;
    let gold = json!({
        "name": "gold-to-vip", "generation": 1, "order": 10,
        "match": {"all": [{"field": "attributes.tier", "operator": "Equals", "values": ["gold"]}]},
        "routeTo": {"queue": "vip"},
    });
    let mut ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general", "vip"], Some("Hi {CustomerName}"), vec![gold]);
    ws["bot"] = json!({"url": bot.url(), "token": {"env": BOT_ENV}});
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(21);

    // The bot gets the new conversation, with its token; no greeting while the bot has it.
    let first = bed.line_text(&ann, "Ann", "I want a refund").await;
    assert_eq!(first["delivery"]["statusCode"], 200);
    let received = bot.wait_one("message.received at the bot", |e| e.message_id() == first["messageId"].as_str()).await;
    let id = received.conversation().to_owned();
    let created = bot.wait_one("conversation.created at the bot", |e| e.kind() == "conversation.created").await;
    assert_eq!((created.sequence(), received.sequence()), (1, 2));
    assert_eq!(created.body["conversation"]["handler"], "bot", "{}", created.body);
    assert_eq!(created.header("authorization"), Some(format!("Bearer {BOT_TOKEN}").as_str()));

    // The bot answers: author "bot", the reply token of the customer's message.
    let (status, body) =
        bed.send(&id, json!({"clientMessageId": "b-1", "author": "bot", "text": "I can help. What is your order number?"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["message"]["author"], "bot");
    let delivered = bot.wait_outcome("message.accepted", "b-1").await;
    assert_eq!(delivered.body["message"]["author"], "bot");
    let sent = bed.wait_sent("the bot's answer", |m| m["to"] == ann.as_str()).await;
    assert_eq!((sent["via"].as_str(), sent["body"].as_str()), (Some("reply"), Some("I can help. What is your order number?")), "{sent}");
    assert_eq!(bed.sim_messages().await.len(), 1, "no greeting while the bot has the conversation");
    let second = bed.line_text(&ann, "Ann", "It is 17").await;
    bot.wait_one("the second message at the bot", |e| e.message_id() == second["messageId"].as_str()).await;
    assert!(
        bed.desk.events().is_empty(),
        "the agent desk has heard nothing yet: {:?}",
        bed.desk.events().iter().map(|e| e.kind().to_owned()).collect::<Vec<_>>()
    );

    // Escalation: routing runs again with the bot's attributes and picks the vip queue.
    let summary = "Refund for order 17; customer is a gold member";
    let conversation = bed.act(&id, "escalate", json!({"summary": summary, "attributes": {"tier": "gold"}})).await;
    assert_eq!(conversation["handler"], "desk", "{conversation}");
    assert_eq!(
        (conversation["routing"]["queue"].as_str(), conversation["routing"]["routedBy"].as_str()),
        (Some("vip"), Some("gold-to-vip")),
        "{conversation}"
    );
    let created = bed.desk.wait_one("conversation.created at the agent desk", |e| e.kind() == "conversation.created").await;
    assert_eq!(created.conversation(), id);
    assert_eq!(created.sequence(), 1, "the desk's sequence starts at 1");
    assert_eq!(created.body["conversation"]["bot"]["summary"], summary, "{}", created.body);
    assert_eq!(created.body["conversation"]["routing"]["queue"], "vip", "{}", created.body);
    assert_eq!(created.body["conversation"]["handler"], "desk");
    assert_eq!(created.header("authorization"), None, "the desk is not sent the bot's token");
    let (status, body) = bed.agent(Method::POST, &format!("/v1/conversations/{id}/escalate"), Some(json!({"summary": "again"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("not_with_bot")), "{body}");

    // The customer's next message goes to the agent desk only.
    let third = bed.line_text(&ann, "Ann", "Hello? Anyone?").await;
    let at_desk = bed.desk.wait_one("the next message at the agent desk", |e| e.message_id() == third["messageId"].as_str()).await;
    assert_eq!(at_desk.sequence(), 2, "{}", at_desk.body);
    assert!(bot.events().iter().all(|e| e.message_id() != third["messageId"].as_str()), "the bot no longer gets the messages");
    // An agent answers as usual.
    bed.send_text(&id, "agent-1", "Hi Ann, I am looking at your refund").await;
    bed.desk.wait_outcome("message.accepted", "agent-1").await;
    let bot_sequences: Vec<i64> = bot.events().iter().map(|e| e.sequence()).collect();
    assert_eq!(bot_sequences, (1..=bot_sequences.len() as i64).collect::<Vec<_>>(), "the bot's events in order without gaps");
    eprintln!("a_bot_answers_first_and_escalates_to_the_queue_its_attributes_choose: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
