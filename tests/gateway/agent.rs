//! The agent API (`--agent-api-addr`) on LINE: a whole conversation from the customer's first
//! message to the survey, the token check, repeated client message IDs, contact links, and
//! sends the provider refuses for a while.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    AGENT_TOKEN, Bed, OTHER_AGENT_ENV, OTHER_AGENT_TOKEN, Provider, SALES_NUMBER, SUPPORT_NUMBER, line_channel, line_user,
};
use crate::harness::{run_concurrently, whatsapp_channel, workstream};

const SURVEY_URL: &str = "https://survey.example.com/s/{ConversationId}";

/// The LINE workstream of these tests: a greeting, the assignment and closing messages and a
/// survey.
fn line_workstream(desk: &str) -> Value {
    let mut ws = workstream("support-line", line_channel(), desk, &["general"], None, vec![]);
    ws["automatedMessages"] = json!([
        {"trigger": "Greeting", "locale": "en", "text": "Hi {CustomerName}, welcome"},
        {"trigger": "AgentAssigned", "locale": "en", "text": "{AgentName} is here to help you"},
        {"trigger": "ConversationEnded", "locale": "en", "text": "Thanks for talking to us"},
    ]);
    ws["postConversationSurvey"] = json!({"enabled": true, "url": SURVEY_URL, "text": "How did we do? {SurveyUrl}"});
    ws
}

/// The events of one conversation at the desk, in order: numbered 1, 2, … without gaps.
fn assert_sequences(events: &[crate::desk::Received]) {
    let mut sequences: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=events.len() as i64).collect::<Vec<_>>(), "one sequence per event, from 1 without gaps");
}

/// Waits until the conversation's outbound messages all have `status`.
async fn wait_statuses(bed: &Bed, conversation: &str, count: usize, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = bed.conversation(conversation).await;
        let out: Vec<&Value> = view["messages"].as_array().unwrap().iter().filter(|m| m["direction"] == "out").collect();
        if out.len() == count && out.iter().all(|m| m["status"] == status) {
            return view;
        }
        assert!(Instant::now() < deadline, "the {count} outbound messages were not all {status}: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_conversation_from_the_first_message_to_the_survey() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    bed.start(&bed.config(vec![line_workstream(&bed.desk.url())])).await;
    let ann = line_user(1);

    // The customer writes: created and received at the desk, the greeting as a LINE reply.
    let first = bed.line_text(&ann, "Ann", "I need help with my order").await;
    assert_eq!(first["delivery"]["statusCode"], 200, "{first}");
    let created = bed.desk.wait_one("conversation.created", |e| e.kind() == "conversation.created").await;
    let id = created.conversation().to_owned();
    bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await;
    let greeting = bed.wait_sent("the greeting", |m| m["to"] == ann.as_str()).await;
    assert_eq!((greeting["via"].as_str(), greeting["body"].as_str()), (Some("reply"), Some("Hi Ann, welcome")), "{greeting}");

    // An agent takes it: Active, and the customer is told who (by push: the token is spent).
    let conversation = bed.act(&id, "assign", json!({"agent": {"id": "a1", "name": "Kim"}})).await;
    assert_eq!(conversation["state"], "Active", "{conversation}");
    assert_eq!(conversation["agent"], json!({"id": "a1", "name": "Kim"}));
    let assigned = bed.wait_sent("AgentAssigned", |m| m["body"] == "Kim is here to help you").await;
    assert_eq!((assigned["to"].as_str(), assigned["via"].as_str()), (Some(ann.as_str()), Some("push")), "{assigned}");
    // The same agent again: nothing is said twice (checked at the end).
    assert_eq!(bed.act(&id, "assign", json!({"agent": {"id": "a1", "name": "Kim"}})).await["state"], "Active");

    // The customer writes again: a fresh reply token, which the agent's first answer uses.
    let second = bed.line_text(&ann, "Ann", "Are you there?").await;
    bed.desk.wait_one("the second message", |e| e.message_id() == second["messageId"].as_str()).await;
    let r1 = bed.send_text(&id, "reply-1", "Yes, I am here").await;
    assert_eq!(r1["author"], "agent", "{r1}");
    assert_eq!(r1["contents"], json!([{"type": "text", "text": "Yes, I am here"}]));
    assert!(r1["createdAt"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{r1}");
    let delivered = bed.desk.wait_outcome("message.accepted", "reply-1").await;
    assert_eq!(delivered.conversation(), id);
    assert_eq!(delivered.body["message"]["id"], r1["id"]);
    assert_eq!(delivered.body["message"]["status"], "accepted", "{}", delivered.body);
    let sent = bed.wait_sent("the first answer", |m| m["body"] == "Yes, I am here").await;
    assert_eq!(sent["via"], "reply", "the first send after a customer message uses its reply token: {sent}");
    assert_eq!(delivered.body["message"]["providerMessageIds"], json!([sent["id"]]), "{}", delivered.body);
    assert_eq!(delivered.body["conversation"]["state"], "Active", "an agent's answer keeps it Active: {}", delivered.body);

    // The next one is a push with a retry key made from the conversation and the client ID.
    bed.send_text(&id, "reply-2", "Your parcel left the warehouse today").await;
    bed.desk.wait_outcome("message.accepted", "reply-2").await;
    let pushed = bed.wait_sent("the second answer", |m| m["body"] == "Your parcel left the warehouse today").await;
    assert_eq!(pushed["via"], "push", "{pushed}");
    let key =
        pushed["retryKey"].as_str().and_then(|k| uuid::Uuid::parse_str(k).ok()).unwrap_or_else(|| panic!("a UUID retry key: {pushed}"));
    assert_eq!(key.get_version_num(), 5, "UUIDv5 of the conversation and clientMessageId: {key}");
    let pushes = bed.sim_requests("POST /v2/bot/message/push").await;
    assert!(pushes.iter().any(|r| r["retryKey"] == key.to_string().as_str()), "X-Line-Retry-Key was sent: {pushes:#?}");

    // The agent puts it aside; the customer answers: reopened, back in its queue (no agent
    // reports presence here, so nobody takes it), its agent remembered.
    let waiting = bed.act(&id, "wait", json!({})).await;
    assert_eq!(waiting["state"], "Waiting", "{waiting}");
    bed.desk.wait_one("conversation.waiting", |e| e.kind() == "conversation.waiting").await;
    let third = bed.line_text(&ann, "Ann", "Great, thanks").await;
    let reopened = bed.desk.wait_one("conversation.reopened", |e| e.kind() == "conversation.reopened").await;
    assert_eq!(reopened.conversation(), id);
    assert_eq!((reopened.body["conversation"]["state"].as_str(), reopened.body["conversation"]["lastAgent"].as_str()), (Some("Open"), Some("a1")));
    bed.desk.wait_one("the third message", |e| e.message_id() == third["messageId"].as_str()).await;

    // The conversation as the API shows it: in and out, oldest first, each with its status.
    let view = wait_statuses(&bed, &id, 4, "accepted").await;
    assert_eq!(view["conversation"]["id"], id.as_str());
    assert_eq!(view["conversation"]["channel"], "LINE");
    assert_eq!((view["conversation"]["agent"].is_null(), view["conversation"]["lastAgent"].as_str()), (true, Some("a1")));
    let shown: Vec<(String, String, String)> = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = if m["direction"] == "in" { m["message"]["text"].clone() } else { m["contents"][0]["text"].clone() };
            (
                m["direction"].as_str().unwrap_or("?").to_owned(),
                m["author"].as_str().unwrap_or("?").to_owned(),
                text.as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("in", "customer", "I need help with my order"),
        ("out", "automated", "Hi Ann, welcome"),
        ("out", "automated", "Kim is here to help you"),
        ("in", "customer", "Are you there?"),
        ("out", "agent", "Yes, I am here"),
        ("out", "agent", "Your parcel left the warehouse today"),
        ("in", "customer", "Great, thanks"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(shown, expected, "{view:#}");
    let messages = view["messages"].as_array().unwrap();
    assert_eq!(messages[0]["message"]["id"], first["messageId"]);
    assert_eq!(messages[1]["triggers"], json!(["Greeting"]), "{}", messages[1]);
    assert_eq!(messages[2]["triggers"], json!(["AgentAssigned"]), "{}", messages[2]);
    assert_eq!(messages[5]["clientMessageId"], "reply-2");
    assert!(messages.iter().filter(|m| m["direction"] == "out").all(|m| m["providerMessageIds"].as_array().is_some_and(|p| !p.is_empty())));

    // The agent closes it: closing message and survey (URL filled), conversation.closed.
    let closed = bed.act(&id, "close", json!({})).await;
    assert_eq!((closed["state"].as_str(), closed["closeReason"].as_str()), (Some("Closed"), Some("agent")), "{closed}");
    let event = bed.desk.wait_one("conversation.closed", |e| e.kind() == "conversation.closed").await;
    assert_eq!((event.conversation(), event.body["reason"].as_str()), (id.as_str(), Some("agent")));
    bed.wait_sent("ConversationEnded", |m| m["to"] == ann.as_str() && m["body"] == "Thanks for talking to us").await;
    let survey = format!("How did we do? https://survey.example.com/s/{id}");
    bed.wait_sent("the survey", |m| m["to"] == ann.as_str() && m["body"] == survey.as_str()).await;

    // Closed is closed: a send or an assignment is refused, closing again does nothing.
    let (status, body) = bed.send(&id, json!({"clientMessageId": "late", "text": "one more thing"})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("conversation_closed")), "{body}");
    let (status, body) = bed.agent(Method::POST, &format!("/v1/conversations/{id}/assign"), Some(json!({"agent": {"id": "a2"}}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("conversation_closed")), "{body}");
    assert_eq!(bed.act(&id, "close", json!({})).await["state"], "Closed");

    // Ann comes back: a new conversation and its greeting. Everything the second close would
    // have queued would have gone out before that greeting.
    let again = bed.line_text(&ann, "Ann", "Me again").await;
    let next = bed.desk.wait_one("the new conversation", |e| e.message_id() == again["messageId"].as_str()).await;
    assert_ne!(next.conversation(), id);
    bed.wait_sent("the new greeting", |m| {
        m["to"] == ann.as_str() && m["via"] == "reply" && m["sentAt"].as_str() > greeting["sentAt"].as_str()
    })
    .await;
    let sent: Vec<String> =
        bed.sim_messages().await.iter().filter(|m| m["to"] == ann.as_str()).map(|m| m["body"].as_str().unwrap_or("").to_owned()).collect();
    let count = |text: &str| sent.iter().filter(|s| s.as_str() == text).count();
    assert_eq!(count("Kim is here to help you"), 1, "{sent:?}");
    assert_eq!(count("Thanks for talking to us"), 1, "{sent:?}");
    assert_eq!(count(&survey), 1, "{sent:?}");
    assert_eq!(count("one more thing"), 0);
    assert_eq!(bed.desk.of_kind("conversation.closed").len(), 1);

    let events = bed.desk.conversation(&id);
    assert_sequences(&events);
    for client_id in ["reply-1", "reply-2"] {
        let n = events.iter().filter(|e| e.kind() == "message.accepted" && e.client_message_id() == Some(client_id)).count();
        assert_eq!(n, 1, "one message.accepted for {client_id}");
    }
    let assigned: Vec<_> = events.iter().filter(|e| e.kind() == "conversation.assigned").collect();
    assert_eq!(assigned.len(), 1, "one conversation.assigned: the same agent again tells nothing");
    assert_eq!(assigned[0].body["conversation"]["agent"]["id"], "a1");
    eprintln!("a_line_conversation_from_the_first_message_to_the_survey: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_api_needs_a_workstream_token_and_shows_each_desk_only_its_own() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let desk = bed.desk.url();
    let sales = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &desk, &["sales"], None, vec![]);
    let mut support = workstream("support-whatsapp", whatsapp_channel("support", SUPPORT_NUMBER), &desk, &["support"], None, vec![]);
    support["delivery"]["agentApiToken"]["env"] = json!(OTHER_AGENT_ENV);
    bed.start(&bed.config(vec![sales, support])).await;

    // The OpenAPI document needs no token.
    let (status, content_type, bytes) = bed.fetch(&bed.agent_url("/openapi.yaml"), None).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("openapi:") && text.contains("/v1/conversations/{id}/messages"), "{content_type}: {text}");

    bed.twilio_message(SALES_NUMBER, "+905551112233", "Ayşe", "sales question", vec![], false).await;
    bed.twilio_message(SUPPORT_NUMBER, "+905551112244", "Bora", "support question", vec![], false).await;
    let created = bed
        .desk
        .wait_for(Duration::from_secs(20), "two conversations", |events| {
            let created: Vec<_> = events.iter().filter(|e| e.kind() == "conversation.created").cloned().collect();
            (created.len() == 2).then_some(created)
        })
        .await;
    let of = |ws: &str| created.iter().find(|e| e.body["conversation"]["workstream"] == ws).unwrap().conversation().to_owned();
    let (ayse, bora) = (of("sales-whatsapp"), of("support-whatsapp"));
    let path = |id: &str| format!("/v1/conversations/{id}");

    // No token, an unknown one, another scheme: 401 without a hint.
    for (token, what) in [(None, "no token"), (Some("not-a-token"), "a wrong token"), (Some(&AGENT_TOKEN[1..]), "a token cut short")] {
        let (status, body) = bed.agent_as(token, Method::GET, &path(&ayse), None).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("unauthorized")), "{what}: {body}");
    }
    let request = bed.http.get(bed.agent_url(&path(&ayse))).header("authorization", format!("Basic {AGENT_TOKEN}"));
    assert_eq!(bed.read_answer("GET with Basic", request).await.0, 401);
    let (status, body) =
        bed.agent_as(None, Method::POST, &format!("{}/messages", path(&ayse)), Some(json!({"clientMessageId": "x", "text": "hi"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("unauthorized")), "{body}");

    // Each token sees its own workstream's conversations; the others do not exist for it.
    assert_eq!(bed.agent_as(Some(AGENT_TOKEN), Method::GET, &path(&ayse), None).await.0, 200);
    assert_eq!(bed.agent_as(Some(OTHER_AGENT_TOKEN), Method::GET, &path(&bora), None).await.0, 200);
    for (token, id) in [(AGENT_TOKEN, &bora), (OTHER_AGENT_TOKEN, &ayse)] {
        let (status, body) = bed.agent_as(Some(token), Method::GET, &path(id), None).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("conversation_not_found")), "{body}");
        let (status, body) = bed
            .agent_as(Some(token), Method::POST, &format!("{}/messages", path(id)), Some(json!({"clientMessageId": "x", "text": "hi"})))
            .await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("conversation_not_found")), "{body}");
        let (status, body) = bed.agent_as(Some(token), Method::POST, &format!("{}/close", path(id)), Some(json!({}))).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("conversation_not_found")), "{body}");
    }
    let contact = "/v1/workstreams/support-whatsapp/customers/whatsapp%3A%2B905551112244/contact";
    let (status, body) = bed.agent(Method::PUT, contact, Some(json!({"contactId": "CRM-9"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("workstream_not_found")), "{body}");
    let (status, body) = bed.agent(Method::GET, "/v1/conversations/no-such-conversation", None).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("conversation_not_found")), "{body}");

    // Bad requests name what is wrong.
    let mut unnamed = Vec::new();
    let messages = format!("{}/messages", path(&ayse));
    let request =
        bed.http.post(bed.agent_url(&messages)).bearer_auth(AGENT_TOKEN).header("content-type", "application/json").body("{not json");
    let (status, _, bytes) = bed.read_answer("POST bad JSON", request).await;
    let body: Value = serde_json::from_slice(&bytes).expect("a JSON error");
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    for (request, field) in [
        (json!({"text": "no client ID"}), "clientMessageId"),
        (json!({"clientMessageId": "", "text": "empty client ID"}), "clientMessageId"),
        (json!({"clientMessageId": "x".repeat(129), "text": "too long"}), "clientMessageId"),
        (json!({"clientMessageId": "both", "text": "a", "template": {"name": "t"}}), ""),
        (json!({"clientMessageId": "neither"}), ""),
        (json!({"clientMessageId": "who", "author": "customer", "text": "a"}), "author"),
        (json!({"clientMessageId": "url", "attachment": {"url": "ftp://files.example.com/a.pdf"}}), "url"),
    ] {
        let (status, body) = bed.send(&ayse, request.clone()).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_request")), "{request}: {body}");
        if !body["message"].as_str().unwrap().contains(field) {
            unnamed.push(format!("{request}: {body}"));
        }
    }

    // None of that sent anything; a good request still works.
    assert_eq!(bed.sim_messages().await.len(), 0);
    bed.send_text(&ayse, "ok-1", "Hello Ayşe").await;
    bed.desk.wait_outcome("message.accepted", "ok-1").await;
    assert_eq!(bed.sim_messages().await.len(), 1);
    assert!(unnamed.is_empty(), "a 400's message names the field that is wrong:\n{}", unnamed.join("\n"));
    eprintln!("the_agent_api_needs_a_workstream_token_and_shows_each_desk_only_its_own: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_client_message_id_is_sent_once() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(7);
    let first = bed.line_text(&ann, "Ann", "hello").await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await.conversation().to_owned();

    // The same request twice in a row: queued once, then the same message with 200.
    let request = json!({"clientMessageId": "m-1", "text": "Hello Ann"});
    let (status, one) = bed.send(&id, request.clone()).await;
    assert_eq!(status, 202, "{one}");
    let (status, two) = bed.send(&id, request.clone()).await;
    assert_eq!(status, 200, "{two}");
    assert_eq!(two["message"]["id"], one["message"]["id"]);

    // The same new request six times at once: one 202, five 200, one message.
    let concurrent = json!({"clientMessageId": "m-2", "text": "Are you still there?"});
    let answers = run_concurrently(6, 6, |_| bed.send(&id, concurrent.clone())).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{answers:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{answers:?}");
    assert!(answers.iter().all(|(_, b)| b["message"]["id"] == answers[0].1["message"]["id"]), "{answers:?}");

    // The same ID with another body is a conflict, whatever the state of the first.
    let (status, body) = bed.send(&id, json!({"clientMessageId": "m-1", "text": "Hello Anne"})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("client_message_id_conflict")), "{body}");
    let (status, body) = bed.send(&id, json!({"clientMessageId": "m-1", "author": "bot", "text": "Hello Ann"})).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (409, Some("client_message_id_conflict")), "another author: {body}");

    // Each went out once and was reported once; asked again later, the answer says delivered.
    bed.desk.wait_outcome("message.accepted", "m-1").await;
    bed.desk.wait_outcome("message.accepted", "m-2").await;
    let (status, again) = bed.send(&id, request).await;
    assert_eq!((status.as_u16(), again["message"]["status"].as_str()), (200, Some("accepted")), "{again}");
    let sent: Vec<String> = bed.sim_messages().await.iter().map(|m| m["body"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(sent.iter().filter(|b| *b == "Hello Ann").count(), 1, "{sent:?}");
    assert_eq!(sent.iter().filter(|b| *b == "Are you still there?").count(), 1, "{sent:?}");
    assert_eq!(sent.len(), 2, "{sent:?}");
    for client_id in ["m-1", "m-2"] {
        assert_eq!(bed.desk.of_kind("message.accepted").iter().filter(|e| e.client_message_id() == Some(client_id)).count(), 1);
    }
    let view = bed.conversation(&id).await;
    assert_eq!(view["messages"].as_array().unwrap().iter().filter(|m| m["direction"] == "out").count(), 2, "{view:#}");
    eprintln!("a_repeated_client_message_id_is_sent_once: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_link_follows_the_customer_into_later_conversations() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(3);
    let contact = format!("/v1/workstreams/support-line/customers/{ann}/contact");

    let first = bed.line_text(&ann, "Ann", "hello").await;
    let created = bed.desk.wait_one("the first conversation", |e| e.kind() == "conversation.created").await;
    assert_eq!(created.body["conversation"]["customer"]["isKnown"], false);
    assert!(created.body["conversation"]["customer"].get("contactId").is_none());
    let one = created.conversation().to_owned();
    bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await;

    // Linked: the answer, and the open conversation knows it at once.
    let (status, body) = bed.agent(Method::PUT, &contact, Some(json!({"contactId": "CRM-1"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"workstream": "support-line", "customerId": ann, "contactId": "CRM-1"}));
    assert_eq!(bed.conversation(&one).await["conversation"]["customer"]["contactId"], "CRM-1");
    let (status, body) =
        bed.agent(Method::PUT, "/v1/workstreams/no-such-workstream/customers/U1/contact", Some(json!({"contactId": "CRM-1"}))).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (404, Some("workstream_not_found")), "{body}");

    // The next conversation starts known and linked.
    bed.act(&one, "close", json!({})).await;
    let second = bed.line_text(&ann, "Ann", "me again").await;
    let created = bed.desk.wait_one("the second conversation", |e| e.kind() == "conversation.created" && e.conversation() != one).await;
    let customer = &created.body["conversation"]["customer"];
    assert_eq!((customer["contactId"].as_str(), customer["isKnown"].as_bool()), (Some("CRM-1"), Some(true)), "{customer}");
    let two = created.conversation().to_owned();
    bed.desk.wait_one("message.received", |e| e.message_id() == second["messageId"].as_str()).await;

    // Unlinked: 204, and the conversation after that has no contact.
    let (status, body) = bed.agent(Method::DELETE, &contact, None).await;
    assert_eq!((status.as_u16(), &body), (204, &Value::Null));
    bed.act(&two, "close", json!({})).await;
    bed.line_text(&ann, "Ann", "third time").await;
    let created = bed
        .desk
        .wait_one("the third conversation", |e| e.kind() == "conversation.created" && e.conversation() != one && e.conversation() != two)
        .await;
    let customer = &created.body["conversation"]["customer"];
    assert!(customer.get("contactId").is_none(), "{customer}");
    assert_eq!(customer["isKnown"], true, "known from the earlier conversations");
    eprintln!("a_contact_link_follows_the_customer_into_later_conversations: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_refused_with_500_or_with_its_answer_lost_is_delivered_once() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], Some("Hi {CustomerName}"), vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let ann = line_user(5);
    let first = bed.line_text(&ann, "Ann", "hello").await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await.conversation().to_owned();
    // The greeting spends the reply token, so the agent's messages are pushed.
    bed.wait_sent("the greeting", |m| m["to"] == ann.as_str()).await;

    // Two 500s, then LINE takes it: one message, one message.accepted, the same retry key.
    bed.sim_post("/__sim/faults", json!({"route": "POST /v2/bot/message/push", "kind": "serverError", "status": 500, "times": 2})).await;
    bed.send_text(&id, "r-500", "After two failures").await;
    let delivered = bed.desk.wait_outcome("message.accepted", "r-500").await;
    assert_eq!(delivered.body["message"]["status"], "accepted");
    let pushes = bed.sim_requests("POST /v2/bot/message/push").await;
    let statuses: Vec<Option<u64>> = pushes.iter().map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)], "{pushes:#?}");
    let keys: Vec<&str> = pushes.iter().map(|r| r["retryKey"].as_str().expect("a retry key")).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "every attempt with the same retry key: {keys:?}");

    // Accepted, but the answer lost: the retry gets LINE's 409 for the key, which is success.
    bed.sim_post("/__sim/faults", json!({"route": "POST /v2/bot/message/push", "kind": "serverError", "afterHandler": true, "times": 1}))
        .await;
    bed.send_text(&id, "r-lost", "The answer to this one is lost").await;
    bed.desk.wait_outcome("message.accepted", "r-lost").await;
    let pushes = bed.sim_requests("POST /v2/bot/message/push").await;
    let statuses: Vec<Option<u64>> = pushes[3..].iter().map(|r| r["status"].as_u64()).collect();
    assert_eq!(statuses, [Some(500), Some(409)], "{pushes:#?}");

    let sent = bed.sim_messages().await;
    for text in ["After two failures", "The answer to this one is lost"] {
        assert_eq!(sent.iter().filter(|m| m["body"] == text).count(), 1, "{text:?} sent once: {sent:#?}");
    }
    for client_id in ["r-500", "r-lost"] {
        let events = bed.desk.of_kind("message.accepted");
        assert_eq!(events.iter().filter(|e| e.client_message_id() == Some(client_id)).count(), 1, "one message.accepted for {client_id}");
        assert!(bed.desk.of_kind("message.failed").iter().all(|e| e.client_message_id() != Some(client_id)));
    }
    let view = bed.conversation(&id).await;
    let lost = view["messages"].as_array().unwrap().iter().find(|m| m["clientMessageId"] == "r-lost").cloned().expect("r-lost");
    assert_eq!(lost["status"], "accepted", "{lost}");
    eprintln!("a_push_refused_with_500_or_with_its_answer_lost_is_delivered_once: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
