//! Read receipts and typing indicators through the agent API: on LINE, mark-as-read with the
//! token of the customer's latest message and the loading animation (seconds checked and
//! rounded up); on WhatsApp, Twilio's typing indicator on the customer's latest MessageSid and no
//! read receipt on its own (501). Chat off at LINE (no token), closed and unknown conversations,
//! and the provider failing, limiting the rate or refusing the credentials.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{AGENT_TOKEN, Bed, LINE_SECRET, Provider, SALES_NUMBER, line_channel, line_user, whatsapp_channel, workstream};

/// The indicators the simulator showed, oldest first.
async fn shown(bed: &Bed) -> Vec<Value> {
    let answer: Value = bed.http.get(format!("{}/__sim/indicators", bed.sim.base_url())).send().await.unwrap().json().await.unwrap();
    answer["indicators"].as_array().cloned().unwrap_or_default()
}

async fn read(bed: &Bed, conversation: &str) -> (reqwest::StatusCode, Value) {
    bed.agent(Method::POST, &format!("/v1/conversations/{conversation}/read"), None).await
}

async fn typing(bed: &Bed, conversation: &str, body: Value) -> (reqwest::StatusCode, Value) {
    bed.agent(Method::POST, &format!("/v1/conversations/{conversation}/typing"), Some(body)).await
}

/// The gateway's ID of the conversation's message whose provider ID is `provider_id`.
async fn gateway_id(bed: &Bed, conversation: &str, provider_id: &str) -> String {
    let view = bed.conversation(conversation).await;
    let found = view["messages"].as_array().unwrap().iter().find(|m| m["message"]["id"] == provider_id);
    found.and_then(|m| m["id"].as_str()).unwrap_or_else(|| panic!("no message {provider_id} in {view:#}")).to_owned()
}

/// Adds a fault at the simulator for `route`.
async fn fault(bed: &Bed, route: &str, fault: Value) {
    let mut body = fault;
    body["route"] = json!(route);
    bed.sim_post("/__sim/faults", body).await;
}

async fn clear_faults(bed: &Bed) {
    let status = bed.http.delete(format!("{}/__sim/faults", bed.sim.base_url())).send().await.unwrap().status();
    assert!(status.is_success());
}

/// A LINE message event as LINE sends it with chat off in the Official Account Manager: no
/// `markAsReadToken`. Signed and posted to the gateway as LINE would.
async fn line_message_without_token(bed: &Bed, user: &str, message_id: &str) {
    let body = json!({
        "destination": "U0123456789abcdef0123456789abcdef",
        "events": [{
            "type": "message", "mode": "active", "timestamp": 1_700_000_000_000_i64,
            "source": {"type": "user", "userId": user},
            "webhookEventId": "01HCHATOFF0000000000000000", "deliveryContext": {"isRedelivery": false},
            "replyToken": "chat-off-reply-token",
            "message": {"id": message_id, "type": "text", "quoteToken": "q", "text": "are you there?"},
        }],
    })
    .to_string();
    let signature = switchboard::signing::line_signature(LINE_SECRET, body.as_bytes());
    let response = bed
        .http
        .post(bed.webhook_url())
        .header("x-line-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_read_and_typing_reach_the_simulator() {
    let mut bed = Bed::new(Provider::Line, &[]).await;
    bed.start(&bed.config(vec![workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![])])).await;
    let ann = line_user(1);
    let first = bed.line_text(&ann, "Ann", "I need help").await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == first["messageId"].as_str()).await.conversation().to_owned();
    let second = bed.line_text(&ann, "Ann", "with my order").await;
    let latest = second["messageId"].as_str().unwrap().to_owned();
    bed.desk.wait_one("the second message", |e| e.message_id() == Some(latest.as_str())).await;
    let view = bed.conversation(&id).await;
    assert!(!view.to_string().contains("markAsReadToken"), "the token is not in the details the desk gets: {view:#}");

    // Read: LINE's mark-as-read with the latest message's token, which marks the earlier too.
    let (status, body) = read(&bed, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"conversationId": id, "readUpTo": gateway_id(&bed, &id, &latest).await}));
    let indicators = shown(&bed).await;
    assert_eq!(indicators.len(), 1, "{indicators:#?}");
    assert_eq!((indicators[0]["kind"].as_str(), indicators[0]["customer"].as_str()), (Some("markAsRead"), Some(ann.as_str())));
    assert_eq!(indicators[0]["messageId"], latest.as_str(), "the latest message's token: {indicators:#?}");

    // Typing: LINE's loading animation, rounded up to its multiples of 5.
    for (asked, seconds) in [(7, 10), (5, 5), (60, 60)] {
        let (status, body) = typing(&bed, &id, json!({"seconds": asked})).await;
        assert_eq!((status.as_u16(), body), (200, json!({"conversationId": id, "typingSeconds": seconds})));
        let last = shown(&bed).await.pop().unwrap();
        assert_eq!((last["kind"].as_str(), last["customer"].as_str(), last["seconds"].as_u64()), (Some("loading"), Some(ann.as_str()), Some(seconds)));
    }
    for body in [json!({"seconds": 4}), json!({"seconds": 61}), json!({"seconds": 0}), json!({"seconds": "10"}), json!({"seconds": 12.5})] {
        let (status, answer) = typing(&bed, &id, body.clone()).await;
        assert_eq!((status.as_u16(), answer["field"].as_str()), (400, Some("seconds")), "{body}: {answer}");
    }
    let (status, answer) = typing(&bed, &id, json!({"secs": 10})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(shown(&bed).await.len(), 4, "refused requests reach no provider");

    // The provider limiting the rate, failing and refusing the credentials.
    fault(&bed, "POST /v2/bot/chat/loading/start", json!({"kind": "rateLimit", "retryAfter": 7, "times": 1})).await;
    let request = bed.http.post(bed.agent_url(&format!("/v1/conversations/{id}/typing"))).bearer_auth(AGENT_TOKEN).json(&json!({"seconds": 10}));
    let (status, headers, answer) = bed.read_answer("typing, rate limited", request).await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!((status.as_u16(), answer["error"].as_str()), (503, Some("provider_rate_limited")), "{answer}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    fault(&bed, "POST /v2/bot/chat/markAsRead", json!({"kind": "serverError", "status": 500, "duration": "60s"})).await;
    let (status, answer) = read(&bed, &id).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (502, Some("provider_unavailable")), "{answer}");
    clear_faults(&bed).await;
    fault(&bed, "POST /v2/bot/chat/loading/start", json!({"kind": "unauthorized", "times": 1})).await;
    let (status, answer) = typing(&bed, &id, json!({"seconds": 10})).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (502, Some("provider_credentials_rejected")), "{answer}");
    assert_eq!(shown(&bed).await.len(), 4, "no failed call was recorded as shown");

    // Chat off at LINE: the latest message came without a token.
    line_message_without_token(&bed, &ann, "600000000000000001").await;
    bed.desk.wait_one("the message without a token", |e| e.message_id() == Some("600000000000000001")).await;
    let (status, answer) = read(&bed, &id).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("read_token_unavailable")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("chat is on"), "{answer}");
    assert_eq!(typing(&bed, &id, json!({"seconds": 20})).await.0, 200, "the loading animation needs no token");

    // Unknown and closed conversations.
    for call in ["read", "typing"] {
        let (status, answer) = bed.agent(Method::POST, &format!("/v1/conversations/nope/{call}"), Some(json!({"seconds": 5}))).await;
        assert_eq!((status.as_u16(), answer["error"].as_str()), (404, Some("conversation_not_found")), "{call}: {answer}");
    }
    bed.act(&id, "close", json!({})).await;
    assert_eq!(read(&bed, &id).await.1["error"], "conversation_closed");
    let (status, answer) = typing(&bed, &id, json!({"seconds": 5})).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (409, Some("conversation_closed")));
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_typing_is_twilios_indicator_on_the_latest_message() {
    let mut bed = Bed::new(Provider::Twilio, &[]).await;
    let ws = workstream("sales-whatsapp", whatsapp_channel("sales", SALES_NUMBER), &bed.desk.url(), &["sales"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;
    let customer = "+905551112233";
    let first = bed.twilio_message(SALES_NUMBER, customer, "Ayşe", "Hello", vec![], false).await;
    let id = bed.desk.wait_one("message.received", |e| e.message_id() == first["messageSid"].as_str()).await.conversation().to_owned();
    let second = bed.twilio_message(SALES_NUMBER, customer, "Ayşe", "Anyone?", vec![], false).await;
    let latest = second["messageSid"].as_str().unwrap().to_owned();
    bed.desk.wait_one("the second message", |e| e.message_id() == Some(latest.as_str())).await;

    // WhatsApp sets the indicator's duration; Twilio marks the message read.
    let (status, body) = typing(&bed, &id, json!({"seconds": 30})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"conversationId": id, "typingSeconds": null, "readUpTo": gateway_id(&bed, &id, &latest).await}));
    let indicators = shown(&bed).await;
    assert_eq!(indicators.len(), 1, "{indicators:#?}");
    assert_eq!(indicators[0]["kind"], "typing");
    assert_eq!((indicators[0]["messageId"].as_str(), indicators[0]["customer"].as_str()), (Some(latest.as_str()), Some("whatsapp:+905551112233")));

    // The same rule for the seconds on every channel.
    let (status, answer) = typing(&bed, &id, json!({"seconds": 90})).await;
    assert_eq!((status.as_u16(), answer["field"].as_str()), (400, Some("seconds")), "{answer}");

    // Twilio documents no read receipt on its own.
    let (status, answer) = read(&bed, &id).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (501, Some("not_supported_by_channel")), "{answer}");

    fault(&bed, "POST /v2/Indicators/Typing.json", json!({"kind": "serverError", "status": 503, "times": 1})).await;
    let (status, answer) = typing(&bed, &id, json!({"seconds": 10})).await;
    assert_eq!((status.as_u16(), answer["error"].as_str()), (502, Some("provider_unavailable")), "{answer}");
    assert_eq!(shown(&bed).await.len(), 1);
    bed.finish().await;
}
