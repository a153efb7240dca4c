//! Push distribution end to end: agents report presence through the agent API, the gateway
//! assigns queued conversations to them by queue membership, skills and free capacity (the
//! freest first), tells the desk (`conversation.assigned`) and the customer (AgentAssigned),
//! frees capacity when a conversation is put aside or closed (after its wrap-up), gives a
//! returning customer their last agent, and puts an Offline agent's conversations back in
//! their queues for the others. Pick mode, transfers and listings; and, on PostgreSQL, two
//! replicas deciding at once (push on the leader, picks on the other) under presence churn.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Bed, Provider, line_channel, line_user, workstream};

const WS: &str = "support-line";

/// The workstream: queues general and vip, the AgentAssigned message, `keepSameAgent`, and a
/// wrap-up of `wrap_up`.
fn support(desk: &str, wrap_up: Value) -> Value {
    let mut ws = workstream(WS, line_channel(), desk, &["general", "vip"], None, vec![]);
    ws["distribution"]["keepSameAgent"] = json!(true);
    ws["distribution"]["wrapUp"] = wrap_up;
    ws["automatedMessages"] = json!([{"trigger": "AgentAssigned", "locale": "en", "text": "{AgentName} is here to help you"}]);
    ws
}

/// A classification rule: a message with "merhaba" needs an agent who speaks Turkish.
fn turkish_rule() -> Value {
    json!({
        "name": "turkish", "generation": 1, "order": 1,
        "match": {"all": [{"field": "message.text", "operator": "Contains", "values": ["merhaba"], "ignoreCase": true}]},
        "set": {"skills": ["turkish"]},
    })
}

async fn presence(bed: &Bed, agent: &str, status: &str, capacity: u32, skills: &[&str]) -> Value {
    let body = json!({"name": agent.to_uppercase(), "status": status, "capacity": capacity, "queues": [{"workstream": WS, "queue": "general"}], "skills": skills});
    let (status, answer) = bed.agent(Method::PUT, &format!("/v1/agents/{agent}/presence"), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Waits until the conversation of `user`'s latest message is Active with an agent; returns
/// the agent's ID and the conversation's.
async fn assigned_to(bed: &Bed, user: &str) -> (String, String) {
    let event = bed
        .desk
        .wait_for(Duration::from_secs(20), &format!("the assignment of {user}'s conversation"), |events| {
            events.iter().rev().find(|e| e.kind() == "conversation.assigned" && e.customer() == user).cloned()
        })
        .await;
    let agent = event.body["conversation"]["agent"]["id"].as_str().expect("the assigned agent").to_owned();
    assert_eq!(event.body["conversation"]["state"], "Active");
    (agent, event.conversation().to_owned())
}

async fn agents(bed: &Bed) -> Vec<Value> {
    let (status, answer) = bed.agent(Method::GET, "/v1/agents", None).await;
    assert_eq!(status, 200, "{answer}");
    answer["agents"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_go_to_available_agents_by_capacity_and_come_back_when_an_agent_goes_offline() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--presence-ttl", "3s"]).await;
    bed.start(&bed.config(vec![support(&bed.desk.url(), json!({"type": "None"}))])).await;
    presence(&bed, "ann", "Available", 2, &[]).await;
    presence(&bed, "bob", "Busy", 3, &[]).await;

    // Ann takes two; Bob is Busy, so the third waits.
    for n in 1..=3 {
        bed.line_text(&line_user(n), &format!("Customer {n}"), "Hello").await;
    }
    let (first, _) = assigned_to(&bed, &line_user(1)).await;
    let (second, _) = assigned_to(&bed, &line_user(2)).await;
    assert_eq!((first.as_str(), second.as_str()), ("ann", "ann"));
    bed.wait_sent("AgentAssigned", |m| m["body"] == "ANN is here to help you").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !bed.desk.events().iter().any(|e| e.kind() == "conversation.assigned" && e.customer() == line_user(3)),
        "Ann is full and Bob is Busy: the third waits"
    );
    assert_eq!(bed.metric(r#"switchboard_gateway_queue_waiting{workstream="support-line",queue="general"}"#).await, 1.0);
    assert!(bed.metric(r#"switchboard_gateway_queue_oldest_wait_seconds{workstream="support-line",queue="general"}"#).await > 0.0);
    assert_eq!(bed.metric(r#"switchboard_gateway_agents{presence="Busy"}"#).await, 1.0);
    assert_eq!(bed.metric(r#"switchboard_gateway_assignments_total{workstream="support-line",by="Push"}"#).await, 2.0);
    let listed = agents(&bed).await;
    let ann = listed.iter().find(|a| a["id"] == "ann").unwrap();
    assert_eq!((ann["load"].as_u64(), ann["presence"].as_str(), ann["conversations"].as_array().map(Vec::len)), (Some(2), Some("Available"), Some(2)), "{ann}");

    // Bob becomes Available: the third is his.
    presence(&bed, "bob", "Available", 3, &[]).await;
    let (third, third_conv) = assigned_to(&bed, &line_user(3)).await;
    assert_eq!(third, "bob");

    // Bob puts it aside: his capacity is free, the customer writing again reopens it for him
    // first (keepSameAgent).
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{third_conv}/wait"), None).await;
    assert_eq!((status.as_u16(), answer["conversation"]["state"].as_str()), (200, Some("Waiting")), "{answer}");
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{third_conv}/wait"), None).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("not_active")), "{answer}");
    bed.desk.wait_one("conversation.waiting", |e| e.kind() == "conversation.waiting" && e.conversation() == third_conv).await;
    bed.line_text(&line_user(3), "Customer 3", "One more thing").await;
    bed.desk
        .wait_for(Duration::from_secs(20), "the reopened conversation assigned to Bob again", |events| {
            let again = events.iter().filter(|e| e.kind() == "conversation.assigned" && e.conversation() == third_conv).count();
            (again == 2).then_some(())
        })
        .await;

    // An agent's answer keeps the conversation Active.
    let (_, ann_conv) = assigned_to(&bed, &line_user(1)).await;
    bed.send_text(&ann_conv, "a-1", "Let me check").await;
    bed.desk.wait_outcome("message.accepted", "a-1").await;
    assert_eq!(bed.conversation(&ann_conv).await["conversation"]["state"], "Active", "an answer does not put it aside");

    // Ann stops sending heartbeats: after the TTL her conversations go back to the queue and
    // Bob (2 free) takes them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        presence(&bed, "bob", "Available", 3, &[]).await;
        let unassigned = bed.desk.events().iter().filter(|e| e.kind() == "conversation.unassigned").count();
        if unassigned == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "Ann's conversations were not unassigned");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let unassigned = bed.desk.of_kind("conversation.unassigned");
    assert!(unassigned.iter().all(|e| e.body["reason"] == "agentOffline" && e.body["conversation"]["state"] == "Open"));
    for n in [1, 2] {
        bed.desk
            .wait_for(Duration::from_secs(20), "Bob takes Ann's conversations", |events| {
                events.iter().rev().find(|e| e.kind() == "conversation.assigned" && e.customer() == line_user(n)).filter(|e| e.body["conversation"]["agent"]["id"] == "bob").map(|_| ())
            })
            .await;
    }
    let bob = agents(&bed).await.into_iter().find(|a| a["id"] == "bob").unwrap();
    assert_eq!(bob["load"], 3, "full, never over: {bob}");
    let ann = agents(&bed).await.into_iter().find(|a| a["id"] == "ann").unwrap();
    assert_eq!((ann["presence"].as_str(), ann["load"].as_u64()), (Some("Offline"), Some(0)), "{ann}");
    bed.desk.check();
    eprintln!("push distribution: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_decide_who_qualifies_and_a_wrap_up_holds_capacity_until_it_is_done() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let mut ws = support(&bed.desk.url(), json!({"type": "Always"}));
    ws["rules"]["classification"] = json!([turkish_rule()]);
    bed.start(&bed.config(vec![ws])).await;
    presence(&bed, "ann", "Available", 1, &[]).await;
    presence(&bed, "can", "Available", 1, &["Turkish"]).await;

    bed.line_text(&line_user(1), "Ayşe", "Merhaba").await;
    let (agent, conv) = assigned_to(&bed, &line_user(1)).await;
    assert_eq!(agent, "can", "only Can speaks Turkish");

    // Closed with wrapUp Always: Can's capacity stays taken until the wrap-up is done.
    let (status, _) = bed.agent(Method::POST, &format!("/v1/conversations/{conv}/close"), Some(json!({}))).await;
    assert_eq!(status, 200);
    bed.line_text(&line_user(2), "Deniz", "Merhaba again").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!bed.desk.events().iter().any(|e| e.kind() == "conversation.assigned" && e.customer() == line_user(2)), "Can is wrapping up");
    let can = agents(&bed).await.into_iter().find(|a| a["id"] == "can").unwrap();
    assert_eq!(can["load"], 1, "{can}");
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{conv}/wrap-up-done"), None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{conv}/wrap-up-done"), None).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("no_wrap_up")));
    let (agent, _) = assigned_to(&bed, &line_user(2)).await;
    assert_eq!(agent, "can");

    // Presence is checked: a queue of another workstream, a capacity too large.
    let (status, answer) = bed
        .agent(Method::PUT, "/v1/agents/x/presence", Some(json!({"status": "Available", "capacity": 1, "queues": [{"workstream": "other", "queue": "general"}]})))
        .await;
    assert_eq!((status.as_u16(), answer["field"].as_str()), (400, Some("queues")), "{answer}");
    let (status, answer) = bed
        .agent(Method::PUT, "/v1/agents/x/presence", Some(json!({"status": "Available", "capacity": 1, "queues": [{"workstream": WS, "queue": "nope"}]})))
        .await;
    assert_eq!((status.as_u16(), answer["field"].as_str()), (400, Some("queues")), "{answer}");
    let (status, answer) = bed.agent(Method::PUT, "/v1/agents/x/presence", Some(json!({"status": "Available", "capacity": 5000, "queues": []}))).await;
    assert_eq!((status.as_u16(), answer["field"].as_str()), (400, Some("capacity")), "{answer}");
    let (status, _) = bed.agent(Method::PUT, "/v1/agents/x/presence", Some(json!({"status": "Sleeping", "capacity": 1, "queues": []}))).await;
    assert_eq!(status, 400);
    bed.desk.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_told_their_place_in_the_order_their_queue_is_served_in_and_the_recent_wait() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let mut ws = support(&bed.desk.url(), json!({"type": "None"}));
    ws["automatedMessages"] = json!([{"trigger": "QueuePosition", "locale": "en", "text": "You are number {Position}, about {AverageWaitTime} min"}]);
    ws["rules"]["classification"] = json!([{
        "name": "urgent", "generation": 1, "order": 1,
        "match": {"all": [{"field": "message.text", "operator": "Contains", "values": ["urgent"], "ignoreCase": true}]},
        "set": {"priority": "Urgent"},
    }]);
    bed.start(&bed.config(vec![ws])).await;

    // Nobody is there: two Normal conversations queue in turn, an Urgent one goes ahead of them.
    let told = |n: usize, text: &'static str| {
        let (bed, user) = (&bed, line_user(n));
        async move { bed.wait_sent(&format!("customer {n}'s position"), |m| m["to"] == user.as_str() && m["body"] == text).await }
    };
    bed.line_text(&line_user(1), "Customer 1", "Hello").await;
    told(1, "You are number 1, about 1 min").await;
    bed.line_text(&line_user(2), "Customer 2", "Hello").await;
    told(2, "You are number 2, about 1 min").await;
    bed.line_text(&line_user(3), "Customer 3", "This is urgent").await;
    told(3, "You are number 1, about 1 min").await;
    let (status, answer) = bed.agent(Method::GET, &format!("/v1/workstreams/{WS}/queues/general"), None).await;
    assert_eq!(status, 200, "{answer}");
    let order: Vec<&str> = answer["waiting"].as_array().unwrap().iter().map(|c| c["customer"]["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = [3, 1, 2].map(line_user).into();
    assert_eq!(order, expected, "the order the queue is served in: {answer}");

    // An agent takes them; the next customer is told the mean of those waits.
    presence(&bed, "ann", "Available", 3, &[]).await;
    for n in 1..=3 {
        assigned_to(&bed, &line_user(n)).await;
    }
    bed.line_text(&line_user(4), "Customer 4", "Hello").await;
    told(4, "You are number 1, about 1 min").await;
    assert_eq!(bed.metric(r#"switchboard_gateway_assignment_wait_seconds_count"#).await, 3.0);
    bed.desk.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_pick_mode_agents_take_what_they_qualify_for_within_their_capacity() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    let mut ws = support(&bed.desk.url(), json!({"type": "None"}));
    ws["distribution"]["mode"] = json!("Pick");
    ws["rules"]["classification"] = json!([turkish_rule()]);
    bed.start(&bed.config(vec![ws])).await;
    presence(&bed, "ann", "Available", 1, &[]).await;
    presence(&bed, "can", "Available", 2, &["turkish"]).await;
    bed.line_text(&line_user(1), "Ayşe", "Merhaba").await;
    bed.line_text(&line_user(2), "Bea", "Hello").await;
    bed.line_text(&line_user(3), "Cem", "Hello there").await;
    bed.desk.wait_messages(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(bed.desk.of_kind("conversation.assigned").is_empty(), "Pick mode pushes nothing");

    let (status, queue) = bed.agent(Method::GET, &format!("/v1/workstreams/{WS}/queues/general"), None).await;
    assert_eq!(status, 200, "{queue}");
    let waiting: Vec<&str> = queue["waiting"].as_array().unwrap().iter().map(|c| c["customer"]["id"].as_str().unwrap()).collect();
    assert_eq!(waiting, [line_user(1), line_user(2), line_user(3)], "oldest first");
    let ids: Vec<String> = queue["waiting"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();

    let pick_next = |agent: &'static str| {
        let bed = &bed;
        async move { bed.agent(Method::POST, &format!("/v1/workstreams/{WS}/queues/general/pick"), Some(json!({"agentId": agent}))).await }
    };
    // Ann lacks Turkish: her next is the second customer; then she is full.
    let (status, taken) = pick_next("ann").await;
    assert_eq!((status.as_u16(), taken["conversation"]["customer"]["id"].as_str()), (200, Some(line_user(2).as_str())), "{taken}");
    assert_eq!(taken["conversation"]["agent"]["id"], "ann");
    bed.wait_sent("AgentAssigned", |m| m["body"] == "ANN is here to help you").await;
    let (status, answer) = pick_next("ann").await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("no_capacity")), "{answer}");
    let (status, answer) = pick_next("zoe").await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("agent_unknown")), "{answer}");
    let pick = |agent: &'static str, conv: String| {
        let bed = &bed;
        async move { bed.agent(Method::POST, &format!("/v1/conversations/{conv}/pick"), Some(json!({"agentId": agent}))).await }
    };
    let (status, answer) = pick("ann", ids[0].clone()).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("not_qualified")), "{answer}");
    let (status, answer) = pick("can", ids[1].clone()).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("already_assigned")), "{answer}");
    let (status, answer) = pick("can", ids[0].clone()).await;
    assert_eq!((status.as_u16(), answer["conversation"]["agent"]["id"].as_str()), (200, Some("can")), "{answer}");

    // A supervisor's assignment respects capacity unless forced.
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{}/assign", ids[2]), Some(json!({"agentId": "ann"}))).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("no_capacity")), "{answer}");
    let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/{}/assign", ids[2]), Some(json!({"agentId": "ann", "force": true}))).await;
    assert_eq!((status.as_u16(), answer["conversation"]["agent"]["id"].as_str()), (200, Some("ann")), "{answer}");
    let (status, answer) = pick_next("can").await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (404, Some("nothing_to_pick")), "{answer}");
    let (_, queue) = bed.agent(Method::GET, &format!("/v1/workstreams/{WS}/queues/general"), None).await;
    assert_eq!(queue["waiting"], json!([]));
    let (status, answer) = bed.agent(Method::GET, &format!("/v1/workstreams/{WS}/queues/nope"), None).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (404, Some("queue_not_found")), "{answer}");
    let ann = agents(&bed).await.into_iter().find(|a| a["id"] == "ann").unwrap();
    assert_eq!(ann["load"], 2, "forced over her capacity of 1: {ann}");
    assert_eq!(bed.metric(r#"switchboard_gateway_assignments_total{workstream="support-line",by="Pick"}"#).await, 2.0);
    assert_eq!(bed.metric(r#"switchboard_gateway_assignments_total{workstream="support-line",by="Assign"}"#).await, 1.0);
    bed.desk.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_queue_goes_back_to_distribution_and_one_to_an_agent_is_theirs() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    bed.start(&bed.config(vec![support(&bed.desk.url(), json!({"type": "None"}))])).await;
    presence(&bed, "ann", "Available", 2, &[]).await;
    let vip = json!({"name": "VEE", "status": "Available", "capacity": 2, "queues": [{"workstream": WS, "queue": "vip"}]});
    let (status, _) = bed.agent(Method::PUT, "/v1/agents/vee/presence", Some(vip)).await;
    assert_eq!(status, 200);
    bed.line_text(&line_user(1), "Ayşe", "Hello").await;
    let (agent, conv) = assigned_to(&bed, &line_user(1)).await;
    assert_eq!(agent, "ann");

    let transfer = |body: Value| {
        let (bed, conv) = (&bed, conv.clone());
        async move { bed.agent(Method::POST, &format!("/v1/conversations/{conv}/transfer"), Some(body)).await }
    };
    let (status, answer) = transfer(json!({"queue": "vip"})).await;
    assert_eq!((status.as_u16(), answer["conversation"]["state"].as_str(), answer["conversation"]["routing"]["queue"].as_str()), (200, Some("Open"), Some("vip")), "{answer}");
    let moved = bed.desk.wait_one("conversation.transferred", |e| e.kind() == "conversation.transferred").await;
    assert_eq!(moved.body["reason"], "queue");
    bed.desk
        .wait_for(Duration::from_secs(20), "Vee takes it in the vip queue", |events| {
            events.iter().find(|e| e.kind() == "conversation.assigned" && e.body["conversation"]["agent"]["id"] == "vee").map(|_| ())
        })
        .await;
    let (status, answer) = transfer(json!({"agentId": "ann"})).await;
    assert_eq!((status.as_u16(), answer["conversation"]["agent"]["id"].as_str(), answer["conversation"]["state"].as_str()), (200, Some("ann"), Some("Active")), "{answer}");
    let to_agent = bed.desk.wait_one("the transfer to Ann", |e| e.kind() == "conversation.transferred" && e.body["reason"] == "agent").await;
    assert_eq!(to_agent.body["conversation"]["agent"]["id"], "ann");
    let (status, answer) = transfer(json!({"queue": "nope"})).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (404, Some("queue_not_found")), "{answer}");
    let (status, answer) = transfer(json!({"queue": "vip", "agentId": "ann"})).await;
    assert_eq!(status, 400, "{answer}");
    let loads: Vec<(String, u64)> = agents(&bed).await.iter().map(|a| (a["id"].as_str().unwrap().to_owned(), a["load"].as_u64().unwrap())).collect();
    assert_eq!(loads, [("ann".to_owned(), 1), ("vee".to_owned(), 0)], "the capacity moved with it");

    // A desk after a restart lists what its agents hold.
    bed.line_text(&line_user(2), "Bea", "Hello").await;
    assigned_to(&bed, &line_user(2)).await;
    let list = |query: String| {
        let bed = &bed;
        async move { bed.agent(Method::GET, &format!("/v1/conversations{query}"), None).await }
    };
    let (status, answer) = list("?agentId=ann&state=Active".to_owned()).await;
    let listed: Vec<&str> = answer["conversations"].as_array().unwrap().iter().map(|c| c["customer"]["id"].as_str().unwrap()).collect();
    assert_eq!((status.as_u16(), listed), (200, vec![line_user(1).as_str(), line_user(2).as_str()]), "{answer}");
    let (_, answer) = list(format!("?workstream={WS}&queue=vip&limit=1")).await;
    assert_eq!(answer["conversations"].as_array().map(Vec::len), Some(1), "{answer}");
    for (query, status, code) in [("?state=Sleeping", 400, "invalid_request"), ("?limit=0", 400, "invalid_request"), ("?workstream=other", 404, "workstream_not_found"), ("?bogus=1", 400, "invalid_request")] {
        let (got, answer) = list(query.to_owned()).await;
        assert_eq!((got.as_u16(), answer["error"].as_str()), (status, Some(code)), "{query}: {answer}");
    }
    bed.desk.check();
}

/// The agents of the concurrency test (capacities of 1 to 3 units; every fourth speaks Turkish).
const CHURN_AGENTS: usize = 50;
/// Its conversations (every fifth needs a Turkish speaker).
const CHURN_CONVERSATIONS: usize = 2_000;
/// Customers writing at once in it.
const CHURN_WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_assign_a_conversation_twice_nor_an_agent_over_its_capacity() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--presence-ttl", "30s"]).await;
    if !crate::replicas::on_postgres(&bed) {
        return;
    }
    let mut ws = support(&bed.desk.url(), json!({"type": "None"}));
    ws["rules"]["classification"] = json!([turkish_rule()]);
    bed.start(&bed.config(vec![ws])).await;
    let mut b = bed.gateway.replica("b");
    b.spawn();
    b.wait_ready(&bed.http).await;
    let agent_urls = [format!("http://127.0.0.1:{}", bed.gateway.agent_port), format!("http://127.0.0.1:{}", b.agent_port)];
    let webhooks = [bed.webhook_url(), b.webhook_url(&bed.webhook_path())];
    let call = |replica: usize, method: Method, path: String, body: Option<Value>| {
        let (http, url) = (bed.http.clone(), format!("{}{path}", agent_urls[replica]));
        async move {
            let mut request = http.request(method, url).bearer_auth(crate::harness::AGENT_TOKEN);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let report = |agent: usize, status: &'static str| {
        let skills: &[&str] = if agent.is_multiple_of(4) { &["turkish"] } else { &[] };
        let body = json!({"status": status, "capacity": agent % 3 + 1, "queues": [{"workstream": WS, "queue": "general"}], "skills": skills});
        call(agent % 2, Method::PUT, format!("/v1/agents/agent-{agent}/presence"), Some(body))
    };
    for agent in 0..CHURN_AGENTS {
        assert_eq!(report(agent, "Available").await.0, 200);
    }
    let capacity: u64 = (0..CHURN_AGENTS).map(|a| (a % 3 + 1) as u64).sum();

    let done = std::sync::atomic::AtomicBool::new(false);
    let arrived = std::sync::atomic::AtomicBool::new(false);
    let customers = async {
        crate::harness::run_concurrently(CHURN_CONVERSATIONS, CHURN_WRITERS, |n| {
            let text = if n.is_multiple_of(5) { "Merhaba" } else { "Hello" };
            let body = json!({"type": "text", "text": text, "url": webhooks[n % 2], "userId": line_user(n), "displayName": format!("C{n}")});
            bed.sim_post("/__sim/customer/line", body)
        })
        .await;
        arrived.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    // Presence changes on both replicas while conversations arrive and close.
    let churn = async {
        let mut round = 0;
        while !arrived.load(std::sync::atomic::Ordering::Relaxed) || round < 6 {
            for agent in (round % 3..CHURN_AGENTS).step_by(3) {
                let status = ["Busy", "Offline", "Away"][round % 3];
                report(agent, status).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            for agent in (round % 3..CHURN_AGENTS).step_by(3) {
                report(agent, "Available").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            round += 1;
        }
    };
    // Agents finish conversations, so that capacity frees up for the rest, and pick some
    // themselves on the replica that does not lead, racing its pushes.
    let closer = async {
        let mut n = 0usize;
        let mut picked = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let pick = json!({"agentId": format!("agent-{}", n % CHURN_AGENTS)});
            let (status, answer) = call(1, Method::POST, format!("/v1/workstreams/{WS}/queues/general/pick"), Some(pick)).await;
            match status {
                200 => picked += 1,
                // A deadlock's victim is tried again inside the gateway: never 503 here.
                404 | 409 => assert!(answer["error"].is_string(), "{answer}"),
                other => panic!("pick answered {other}: {answer}"),
            }
            let (_, listed) = call(n % 2, Method::GET, "/v1/conversations?state=Active&limit=40".to_owned(), None).await;
            let active = listed["conversations"].as_array().cloned().unwrap_or_default();
            futures::future::join_all(active.iter().map(|conv| call(n % 2, Method::POST, format!("/v1/conversations/{}/close", conv["id"].as_str().unwrap()), Some(json!({}))))).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        picked
    };
    // The invariant, sampled from the store through both replicas: nobody over capacity.
    let checker = async {
        let mut samples = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let (status, listed) = call(samples % 2, Method::GET, "/v1/agents".to_owned(), None).await;
            assert_eq!(status, 200);
            for agent in listed["agents"].as_array().unwrap() {
                assert!(agent["load"].as_u64() <= agent["capacity"].as_u64(), "over capacity: {agent}");
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    };
    let finished = async {
        customers.await;
        churn.await;
        bed.desk
            .wait_for(Duration::from_secs(300), "every conversation assigned and closed", |events| {
                let closed = events.iter().filter(|e| e.kind() == "conversation.closed").count();
                (closed == CHURN_CONVERSATIONS).then_some(())
            })
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (_, picked, samples) = tokio::join!(finished, closer, checker);

    // Per conversation, in the desk's order: assigned and unassigned alternate, starting with an
    // assignment (never assigned twice at once), every unassignment is for the documented
    // reason (its agent went Offline), and every conversation was assigned. The closer lists
    // Active conversations and then closes them, so one may have been unassigned in between.
    let mut holders = 0;
    for (id, events) in bed.desk.by_conversation() {
        let (mut held, mut assignments) = (false, 0);
        for e in events.iter().filter(|e| matches!(e.kind(), "conversation.assigned" | "conversation.unassigned")) {
            let assigned = e.kind() == "conversation.assigned";
            assert_ne!(assigned, held, "{id}: {} while {}", e.kind(), if held { "assigned" } else { "unassigned" });
            if !assigned {
                assert_eq!(e.body["reason"], "agentOffline", "{id}: unassigned for another reason: {}", e.body);
            }
            held = assigned;
            assignments += usize::from(assigned);
        }
        assert!(assignments > 0, "{id} was closed by an agent, so it was assigned");
        holders += 1;
    }
    assert_eq!(holders, CHURN_CONVERSATIONS);
    let unassigned = bed.desk.of_kind("conversation.unassigned").len();
    eprintln!(
        "distribution on 2 replicas: {CHURN_CONVERSATIONS} conversations, {CHURN_AGENTS} agents ({capacity} units), {picked} picked on the \
         other replica, {unassigned} unassigned by Offline, {samples} capacity samples, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    bed.desk.check();
    b.terminate();
}
