//! The provider simulator driven through plain HTTP, as a client or gateway would drive it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use switchboard::simulator::config::{ApprovalOutcome, LineUserConfig, MessagingServiceConfig};
use switchboard::simulator::{self, LineChannelConfig, RunningSimulator, Secret, SimulatorConfig, TwilioAccountConfig};
use tokio::sync::mpsc;

const CHANNEL_ID: &str = "1650000001";
const CHANNEL_SECRET: &str = "test-channel-secret";
const LINE_TOKEN: &str = "test-line-token";
const USER: &str = "U0123456789abcdef0123456789abcdef";
const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const AUTH_TOKEN: &str = "test-twilio-auth-token";
const SERVICE: &str = "MGbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const NUMBER: &str = "+14155550100";
const CUSTOMER: &str = "+905551112233";

fn config() -> SimulatorConfig {
    let mut channel = LineChannelConfig::new(CHANNEL_ID, Secret::new(CHANNEL_SECRET), Secret::new(LINE_TOKEN));
    channel.users.push(LineUserConfig {
        user_id: USER.to_owned(),
        display_name: "Ann".to_owned(),
        language: Some("en".to_owned()),
        picture_url: None,
        status_message: None,
    });
    let mut account = TwilioAccountConfig::new(ACCOUNT, Secret::new(AUTH_TOKEN), &[NUMBER]);
    account.messaging_services.push(MessagingServiceConfig {
        sid: SERVICE.to_owned(),
        friendly_name: None,
        inbound_request_url: None,
        numbers: vec![NUMBER.to_owned()],
    });
    SimulatorConfig { line: vec![channel], twilio: vec![account], ..SimulatorConfig::default() }
}

async fn start_with(config: SimulatorConfig) -> RunningSimulator {
    simulator::start(config, "127.0.0.1:0".parse().expect("an address")).await.expect("the simulator starts")
}

async fn start() -> RunningSimulator {
    start_with(config()).await
}

struct Sim {
    running: RunningSimulator,
    http: reqwest::Client,
}

impl Sim {
    async fn new() -> Self {
        Self::with(config()).await
    }

    async fn with(config: SimulatorConfig) -> Self {
        Self { running: start_with(config).await, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    fn line(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(LINE_TOKEN)
    }

    fn twilio(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).basic_auth(ACCOUNT, Some(AUTH_TOKEN))
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.request(method, self.url(path)).json(&body).send().await.expect("the admin API answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("admin JSON") })
    }

    async fn admin_get(&self, path: &str) -> Value {
        self.http.get(self.url(path)).send().await.expect("the admin API answers").json().await.expect("admin JSON")
    }

    async fn fault(&self, fault: Value) {
        let (status, body) = self.admin(reqwest::Method::POST, "/__sim/faults", fault).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn send_whatsapp(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .twilio(reqwest::Method::POST, &format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"))
            .form(params)
            .send()
            .await
            .expect("an answer");
        (response.status(), response.json().await.expect("Twilio JSON"))
    }
}

/// A request a receiver got.
#[derive(Debug)]
struct Captured {
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Captured {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// A webhook receiver (a stand-in for the gateway) that answers with a fixed status.
struct Receiver {
    base_url: String,
    captured: mpsc::UnboundedReceiver<Captured>,
}

impl Receiver {
    async fn new(status: StatusCode) -> Self {
        let (tx, captured) = mpsc::unbounded_channel();
        let app = Router::new()
            .fallback(move |State(tx): State<mpsc::UnboundedSender<Captured>>, uri: Uri, headers: HeaderMap, body: Bytes| async move {
                tx.send(Captured { uri, headers, body }).expect("the test listens");
                status
            })
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr: SocketAddr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver serves") });
        Self { base_url: format!("http://{addr}"), captured }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn next(&mut self) -> Captured {
        tokio::time::timeout(Duration::from_secs(5), self.captured.recv())
            .await
            .expect("a webhook arrives in time")
            .expect("the receiver runs")
    }
}

/// LINE's signature, computed here independently of the simulator.
fn line_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(CHANNEL_SECRET.as_bytes()).expect("a key");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Twilio's signature, computed here independently of the simulator.
fn twilio_signature(url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let data: String = std::iter::once(url.to_owned()).chain(sorted.iter().map(|(k, v)| format!("{k}{v}"))).collect();
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).expect("a key");
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn get() -> reqwest::Method {
    reqwest::Method::GET
}

fn post() -> reqwest::Method {
    reqwest::Method::POST
}

#[tokio::test]
async fn wrong_credentials_get_the_providers_401_bodies() {
    let sim = Sim::new().await;
    for request in [
        sim.http.get(sim.url("/v2/bot/info")).bearer_auth("wrong"),
        sim.http.get(sim.url("/v2/bot/info")),
        sim.http.get(sim.url("/v2/bot/info")).basic_auth("a", Some("b")),
    ] {
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("x-line-request-id"));
        let body: Value = response.json().await.expect("JSON");
        assert!(body["message"].as_str().expect("a message").starts_with("Authentication failed."), "{body}");
    }
    let account_path = format!("/2010-04-01/Accounts/{ACCOUNT}.json");
    for request in [
        sim.http.get(sim.url(&account_path)).basic_auth(ACCOUNT, Some("wrong")),
        sim.http.get(sim.url(&account_path)),
        sim.http.get(sim.url("/2010-04-01/Accounts/AC00000000000000000000000000000009.json")).basic_auth(ACCOUNT, Some(AUTH_TOKEN)),
    ] {
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["code"], 20003);
        assert_eq!(body["message"], "Authenticate");
        assert_eq!(body["status"], 401);
        assert!(body["more_info"].as_str().is_some_and(|m| m.contains("20003")));
    }
    let body: Value = sim.line(get(), "/v2/bot/info").send().await.expect("an answer").json().await.expect("JSON");
    assert!(body["userId"].as_str().is_some_and(|u| u.len() == 33 && u.starts_with('U')));
    assert_eq!(body["chatMode"], "chat");
    let body: Value = sim.twilio(get(), &account_path).send().await.expect("an answer").json().await.expect("JSON");
    assert_eq!(body["status"], "active");
    assert_eq!(body["sid"], ACCOUNT);
    assert_eq!(body["auth_token"], Value::Null, "a credential is never echoed");
}

#[tokio::test]
async fn a_suspended_account_can_only_be_fetched() {
    let sim = Sim::new().await;
    let (status, _) = sim.admin(reqwest::Method::PUT, &format!("/__sim/twilio/accounts/{ACCOUNT}/status"), json!({"status": "suspended"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let body: Value = sim.twilio(get(), &format!("/2010-04-01/Accounts/{ACCOUNT}.json")).send().await.expect("an answer").json().await.expect("JSON");
    assert_eq!(body["status"], "suspended");
    let response = sim.twilio(get(), &format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json")).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn webhook_endpoint_set_get_and_test() {
    let sim = Sim::new().await;
    let mut receiver = Receiver::new(StatusCode::OK).await;
    let endpoint = "/v2/bot/channel/webhook/endpoint";
    assert_eq!(sim.line(get(), endpoint).send().await.expect("an answer").status(), StatusCode::NOT_FOUND);

    let url = receiver.url("/switchboard/support/line/webhook");
    let response = sim.line(reqwest::Method::PUT, endpoint).json(&json!({ "endpoint": url })).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = sim.line(get(), endpoint).send().await.expect("an answer").json().await.expect("JSON");
    assert_eq!(body, json!({ "endpoint": url, "active": true }));

    let bot: Value = sim.line(get(), "/v2/bot/info").send().await.expect("an answer").json().await.expect("JSON");
    let result: Value = sim.line(post(), "/v2/bot/channel/webhook/test").json(&json!({})).send().await.expect("an answer").json().await.expect("JSON");
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["statusCode"], 200);
    assert_eq!(result["reason"], "OK");
    assert!(result["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let request = receiver.next().await;
    assert_eq!(request.uri.path(), "/switchboard/support/line/webhook");
    assert_eq!(request.header("x-line-signature"), line_signature(&request.body));
    assert_eq!(request.json(), json!({ "destination": bot["userId"], "events": [] }));

    let failing = Receiver::new(StatusCode::INTERNAL_SERVER_ERROR).await;
    let result: Value = sim
        .line(post(), "/v2/bot/channel/webhook/test")
        .json(&json!({ "endpoint": failing.url("/hook") }))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!((result["success"].clone(), result["statusCode"].clone()), (json!(false), json!(500)));

    // Nothing listens on port 1: LINE reports no status, as 0.
    let result: Value = sim
        .line(post(), "/v2/bot/channel/webhook/test")
        .json(&json!({ "endpoint": "http://127.0.0.1:1/hook" }))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!((result["success"].clone(), result["statusCode"].clone()), (json!(false), json!(0)));

    let response = sim.line(reqwest::Method::PUT, endpoint).json(&json!({ "endpoint": "not a url" })).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // An empty endpoint clears it: GET answers as for one never set.
    let response = sim.line(reqwest::Method::PUT, endpoint).json(&json!({ "endpoint": "" })).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let response = sim.line(get(), endpoint).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await.expect("JSON"), json!({ "message": "Not found" }));
    assert_eq!(sim.admin_get("/__sim/accounts").await["line"][0]["webhookEndpoint"], Value::Null);
}

#[tokio::test]
async fn push_with_a_retry_key_is_accepted_once() {
    let sim = Sim::new().await;
    let key = "123e4567-e89b-12d3-a456-426614174000";
    let push = || {
        sim.line(post(), "/v2/bot/message/push")
            .header("X-Line-Retry-Key", key)
            .json(&json!({ "to": USER, "messages": [{ "type": "text", "text": "Your order shipped" }] }))
    };
    let first = push().send().await.expect("an answer");
    assert_eq!(first.status(), StatusCode::OK);
    let request_id = first.headers()["x-line-request-id"].to_str().expect("text").to_owned();
    let first: Value = first.json().await.expect("JSON");
    assert!(first["sentMessages"][0]["id"].as_str().is_some());

    let retry = push().send().await.expect("an answer");
    assert_eq!(retry.status(), StatusCode::CONFLICT);
    assert_eq!(retry.headers()["x-line-accepted-request-id"], request_id.as_str());
    assert!(retry.headers().contains_key("x-line-request-id"));
    let retry: Value = retry.json().await.expect("JSON");
    assert_eq!(retry["sentMessages"], first["sentMessages"]);
    assert!(retry["message"].is_string());

    let other = sim
        .line(post(), "/v2/bot/message/push")
        .header("X-Line-Retry-Key", "223e4567-e89b-12d3-a456-426614174000")
        .json(&json!({ "to": USER, "messages": [{ "type": "text", "text": "Second" }] }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(other.status(), StatusCode::OK);

    let bad_key = sim
        .line(post(), "/v2/bot/message/push")
        .header("X-Line-Retry-Key", "not-a-uuid")
        .json(&json!({ "to": USER, "messages": [{ "type": "text", "text": "x" }] }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);

    let messages = sim.admin_get("/__sim/messages?provider=line").await;
    assert_eq!(messages["count"], 2, "{messages}");
    assert_eq!(messages["messages"][0]["body"], "Your order shipped");
    assert_eq!(messages["messages"][0]["to"], USER);
    assert_eq!(messages["messages"][0]["retryKey"], key);
}

#[tokio::test]
async fn bad_requests_get_provider_shaped_errors() {
    let sim = Sim::new().await;
    let response = sim.line(post(), "/v2/bot/message/push").body("{not json").send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["message"].is_string() && body["details"].is_array(), "{body}");

    let response = sim.line(post(), "/v2/bot/message/push").json(&json!({ "to": USER, "messages": [] })).send().await.expect("an answer");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["details"][0]["property"], "messages");

    let response = sim
        .line(post(), "/v2/bot/message/reply")
        .header("X-Line-Retry-Key", "123e4567-e89b-12d3-a456-426614174000")
        .json(&json!({ "replyToken": "x", "messages": [{ "type": "text", "text": "x" }] }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "only push takes a retry key");

    let response = sim.twilio(post(), "/v1/Content").body("[1, 2").send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], 400);
    assert!(body["code"].is_number());

    let response = sim.twilio(get(), &format!("/2010-04-01/Accounts/{ACCOUNT}/Nothing.json")).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], 20404);
    let response = sim.line(get(), "/v2/bot/nothing").send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("JSON");
    assert!(body["message"].is_string() && body.get("code").is_none());
    let response = sim.line(get(), "/v2/bot/profile/U00000000000000000000000000000000").send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn whatsapp_sends_are_recorded_and_follow_the_24_hour_window() {
    let sim = Sim::new().await;
    let to = format!("whatsapp:{CUSTOMER}");
    let from = format!("whatsapp:{NUMBER}");
    let (status, body) = sim.send_whatsapp(&[("To", &to), ("From", &from), ("Body", "Hello")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 63016, "no inbound message yet: outside the window");

    // The customer writes: the window opens.
    let (status, _) = sim.admin(post(), "/__sim/twilio/windows", json!({ "customer": CUSTOMER, "lastInboundAgo": "1h" })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = sim.send_whatsapp(&[("To", &to), ("From", &from), ("Body", "Hello")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["sid"].as_str().is_some_and(|s| s.starts_with("SM") && s.len() == 34));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["body"], "Hello");

    let (status, body) = sim
        .send_whatsapp(&[
            ("To", &to),
            ("MessagingServiceSid", SERVICE),
            ("MediaUrl", "https://example.com/a.png"),
            ("MediaUrl", "https://example.com/b.pdf"),
        ])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["sid"].as_str().is_some_and(|s| s.starts_with("MM")));
    assert_eq!(body["num_media"], "2");
    assert_eq!(body["messaging_service_sid"], SERVICE);

    let (status, body) = sim.send_whatsapp(&[("To", &to), ("From", "whatsapp:+19995550000"), ("Body", "x")]).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(63007)));
    let (status, body) = sim.send_whatsapp(&[("To", &to), ("From", &from)]).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(21602)));

    // 25 hours after the last message the window is closed again.
    sim.admin(post(), "/__sim/twilio/windows", json!({ "customer": CUSTOMER, "lastInboundAgo": "25h" })).await;
    let (_, body) = sim.send_whatsapp(&[("To", &to), ("From", &from), ("Body", "Late")]).await;
    assert_eq!(body["code"], 63016);

    let listed = sim.admin_get(&format!("/__sim/messages?provider=twilio&to={}", to.replace('+', "%2B"))).await;
    assert_eq!(listed["count"], 2, "{listed}");
    assert_eq!(listed["messages"][0]["body"], "Hello");
    assert_eq!(listed["messages"][0]["from"], from);
    assert_eq!(listed["messages"][1]["mediaUrls"], json!(["https://example.com/a.png", "https://example.com/b.pdf"]));
    assert_eq!(listed["messages"][1]["from"], from, "the service's number sends");
}

async fn create_content(sim: &Sim, name: &str) -> String {
    let response = sim
        .twilio(post(), "/v1/Content")
        .json(&json!({
            "friendly_name": name,
            "language": "en",
            "variables": { "1": "customer" },
            "types": { "twilio/text": { "body": "Hi {{1}}, your appointment is tomorrow." } },
        }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    body["sid"].as_str().expect("a SID").to_owned()
}

async fn submit(sim: &Sim, sid: &str, name: &str) -> Value {
    let response = sim
        .twilio(post(), &format!("/v1/Content/{sid}/ApprovalRequests/whatsapp"))
        .json(&json!({ "name": name, "category": "UTILITY" }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("JSON")
}

async fn approval(sim: &Sim, sid: &str) -> Value {
    let body: Value = sim.twilio(get(), &format!("/v1/Content/{sid}/ApprovalRequests")).send().await.expect("an answer").json().await.expect("JSON");
    body["whatsapp"].clone()
}

#[tokio::test]
async fn content_approval_by_admin_call() {
    let sim = Sim::new().await;
    let approved = create_content(&sim, "reminder").await;
    assert_eq!(approval(&sim, &approved).await["status"], "unsubmitted");
    assert_eq!(submit(&sim, &approved, "reminder").await["status"], "received");
    let (status, _) = sim.admin(post(), &format!("/__sim/content/{approved}/approval"), json!({ "status": "approved" })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(approval(&sim, &approved).await["status"], "approved");

    let rejected = create_content(&sim, "promo").await;
    submit(&sim, &rejected, "promo").await;
    sim.admin(post(), &format!("/__sim/content/{rejected}/approval"), json!({ "status": "rejected", "rejectionReason": "Too promotional" })).await;
    let whatsapp = approval(&sim, &rejected).await;
    assert_eq!((whatsapp["status"].clone(), whatsapp["rejection_reason"].clone()), (json!("rejected"), json!("Too promotional")));

    // An approved template may start a conversation outside the window; a rejected one may not.
    let to = format!("whatsapp:{CUSTOMER}");
    let from = format!("whatsapp:{NUMBER}");
    let (status, body) = sim.send_whatsapp(&[("To", &to), ("From", &from), ("ContentSid", &approved), ("ContentVariables", r#"{"1":"Ann"}"#)]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["body"], "Hi Ann, your appointment is tomorrow.");
    let (_, body) = sim.send_whatsapp(&[("To", &to), ("From", &from), ("ContentSid", &rejected)]).await;
    assert_eq!(body["code"], 63016);
    let listed = sim.admin_get("/__sim/messages?provider=twilio").await;
    assert_eq!(listed["messages"][0]["contentSid"], approved.as_str());

    let response = sim.twilio(reqwest::Method::DELETE, &format!("/v1/Content/{rejected}")).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = sim.twilio(get(), &format!("/v1/Content/{rejected}")).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Follows a Content list from its first page, `PageSize` per page: each page's friendly names
/// and its `meta`.
async fn content_pages(sim: &Sim, page_size: usize) -> Vec<(Vec<String>, Value)> {
    let mut pages = Vec::new();
    let mut url = sim.url(&format!("/v1/Content?PageSize={page_size}"));
    loop {
        let response = sim.http.get(&url).basic_auth(ACCOUNT, Some(AUTH_TOKEN)).send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("JSON");
        let names = body["contents"].as_array().expect("contents").iter().map(|c| c["friendly_name"].as_str().expect("a name").to_owned()).collect();
        let next = body["meta"]["next_page_url"].as_str().map(str::to_owned);
        pages.push((names, body["meta"].clone()));
        match next {
            Some(next) => url = next,
            None => return pages,
        }
    }
}

#[tokio::test]
async fn content_list_pages_in_creation_order() {
    let sim = Sim::new().await;
    let empty = content_pages(&sim, 50).await;
    assert_eq!(empty.len(), 1);
    assert!(empty[0].0.is_empty());
    assert_eq!(empty[0].1["page_size"], 50);
    let mut sids = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        sids.push(create_content(&sim, name).await);
    }
    let response = sim.twilio(reqwest::Method::DELETE, &format!("/v1/Content/{}", sids[1])).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let pages = content_pages(&sim, 2).await;
    let names: Vec<_> = pages.iter().map(|(names, _)| names.clone()).collect();
    assert_eq!(names, [vec!["a", "c"], vec!["d", "e"]]);
    let (_, first) = &pages[0];
    assert_eq!(first["page"], 0);
    assert_eq!(first["page_size"], 2);
    assert_eq!(first["key"], "contents");
    assert_eq!(first["first_page_url"], sim.url("/v1/Content?PageSize=2&Page=0"));
    assert_eq!(first["url"], first["first_page_url"]);
    let next_url = first["next_page_url"].as_str().expect("a next page");
    assert!(next_url.starts_with(&sim.url("/v1/Content?PageSize=2&Page=1&PageToken=")), "{next_url}");
    let (_, last) = &pages[1];
    assert_eq!(last["page"], 1);
    assert_eq!(last["url"], first["next_page_url"]);
    assert_eq!(last["next_page_url"], Value::Null);

    // Deleting the last content of a page before the next is read skips nothing.
    let response = sim.twilio(reqwest::Method::DELETE, &format!("/v1/Content/{}", sids[2])).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let next: Value = sim.http.get(next_url).basic_auth(ACCOUNT, Some(AUTH_TOKEN)).send().await.expect("an answer").json().await.expect("JSON");
    let names: Vec<_> = next["contents"].as_array().expect("contents").iter().map(|c| c["friendly_name"].clone()).collect();
    assert_eq!(names, [json!("d"), json!("e")]);

    for bad in ["PageSize=0", "PageSize=1001", "Page=-1", "PageToken=nonsense"] {
        let response = sim.twilio(get(), &format!("/v1/Content?{bad}")).send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(response.json::<Value>().await.expect("JSON")["code"], 20001, "{bad}");
    }
}

#[tokio::test]
async fn content_approval_follows_the_schedule() {
    let mut config = config();
    config.approvals.received_for = Duration::from_millis(150);
    config.approvals.pending_for = Duration::from_millis(150);
    config.approvals.outcome = ApprovalOutcome::Rejected;
    config.approvals.rejection_reason = "Variables at the start".to_owned();
    let sim = Sim::with(config).await;
    let sid = create_content(&sim, "late").await;
    submit(&sim, &sid, "late").await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let whatsapp = approval(&sim, &sid).await;
        let status = whatsapp["status"].as_str().expect("a status").to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "rejected" {
            assert_eq!(whatsapp["rejection_reason"], "Variables at the start");
            break;
        }
        assert!(Instant::now() < deadline, "the schedule ends in time: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, ["received", "pending", "rejected"]);

    // Later submissions follow a schedule changed through the admin API.
    let (status, _) = sim
        .admin(reqwest::Method::PUT, "/__sim/approvals/schedule", json!({ "receivedFor": "0s", "pendingFor": "0s", "outcome": "approved" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let sid = create_content(&sim, "now").await;
    submit(&sim, &sid, "now").await;
    assert_eq!(approval(&sim, &sid).await["status"], "approved");
}

#[tokio::test]
async fn latency_fault_for_one_call() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "GET /v2/bot/info", "kind": "latency", "delay": "300ms", "times": 1 })).await;
    let started = Instant::now();
    assert_eq!(sim.line(get(), "/v2/bot/info").send().await.expect("an answer").status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(280), "{:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(sim.line(get(), "/v2/bot/info").send().await.expect("an answer").status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(280), "{:?}", started.elapsed());
}

#[tokio::test]
async fn rate_limit_fault_for_two_calls_then_normal() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "POST /v2/bot/message/push", "kind": "rateLimit", "retryAfter": 2, "times": 2 })).await;
    let push = || sim.line(post(), "/v2/bot/message/push").json(&json!({ "to": USER, "messages": [{ "type": "text", "text": "x" }] }));
    for _ in 0..2 {
        let response = push().send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        let body: Value = response.json().await.expect("JSON");
        assert!(body["message"].is_string());
    }
    assert_eq!(push().send().await.expect("an answer").status(), StatusCode::OK);

    let log = sim.admin_get("/__sim/requests?route=POST%20/v2/bot/message/push").await;
    assert_eq!(log["count"], 3);
    let faults: Vec<Value> = log["requests"].as_array().expect("a list").iter().map(|r| r["fault"].clone()).collect();
    assert_eq!(faults, [json!("rateLimit"), json!("rateLimit"), Value::Null]);
    let statuses: Vec<Value> = log["requests"].as_array().expect("a list").iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, [json!(429), json!(429), json!(200)]);
    assert_eq!(sim.admin_get("/__sim/faults").await["faults"], json!([]), "a counted fault goes away");
}

#[tokio::test]
async fn server_error_fault_on_a_route_pattern() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "GET /2010-04-01/Accounts/*", "kind": "serverError", "times": 1 })).await;
    let path = format!("/2010-04-01/Accounts/{ACCOUNT}.json");
    let response = sim.twilio(get(), &path).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!((body["status"].clone(), body["code"].is_number()), (json!(500), true));
    assert_eq!(sim.twilio(get(), &path).send().await.expect("an answer").status(), StatusCode::OK);
}

#[tokio::test]
async fn dropped_connection_fault_then_normal() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "GET /v2/bot/info", "kind": "drop", "times": 1 })).await;
    let error = sim.line(get(), "/v2/bot/info").send().await.expect_err("no answer");
    assert!(!error.is_status() && !error.is_timeout(), "{error}");
    assert_eq!(sim.line(get(), "/v2/bot/info").send().await.expect("an answer").status(), StatusCode::OK);
    let log = sim.admin_get("/__sim/requests?route=GET%20/v2/bot/info").await;
    assert_eq!(log["requests"][0]["fault"], "drop");
    assert_eq!(log["requests"][0]["status"], Value::Null);
}

#[tokio::test]
async fn a_push_whose_answer_was_lost_is_refused_on_retry() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "POST /v2/bot/message/push", "kind": "drop", "times": 1, "afterHandler": true })).await;
    let push = || {
        sim.line(post(), "/v2/bot/message/push")
            .header("X-Line-Retry-Key", "323e4567-e89b-12d3-a456-426614174000")
            .json(&json!({ "to": USER, "messages": [{ "type": "text", "text": "once" }] }))
    };
    assert!(push().send().await.is_err());
    assert_eq!(push().send().await.expect("an answer").status(), StatusCode::CONFLICT);
    assert_eq!(sim.admin_get("/__sim/messages").await["count"], 1, "the push went out exactly once");
}

#[tokio::test]
async fn fault_for_a_duration() {
    let sim = Sim::new().await;
    sim.fault(json!({ "route": "* /v1/Content/**", "kind": "serverError", "status": 503, "duration": "200ms" })).await;
    let path = "/v1/Content/HX00000000000000000000000000000000";
    for _ in 0..2 {
        assert_eq!(sim.twilio(get(), path).send().await.expect("an answer").status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(sim.twilio(get(), path).send().await.expect("an answer").status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn line_customer_webhooks_are_signed_and_redelivered() {
    let sim = Sim::new().await;
    let mut receiver = Receiver::new(StatusCode::OK).await;
    sim.line(reqwest::Method::PUT, "/v2/bot/channel/webhook/endpoint")
        .json(&json!({ "endpoint": receiver.url("/hook") }))
        .send()
        .await
        .expect("an answer");
    let bot: Value = sim.line(get(), "/v2/bot/info").send().await.expect("an answer").json().await.expect("JSON");

    let actions = [
        json!({ "type": "text", "text": "Where is my refund?" }),
        json!({ "type": "image", "content": STANDARD.encode(b"jpeg bytes"), "contentType": "image/jpeg" }),
        json!({ "type": "file", "fileName": "invoice.pdf" }),
        json!({ "type": "follow" }),
        json!({ "type": "postback", "data": "action=rate&score=5" }),
    ];
    let mut events = Vec::new();
    for action in actions {
        let (status, report) = sim.admin(post(), "/__sim/customer/line", action).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["delivery"]["statusCode"], 200);
        let request = receiver.next().await;
        assert_eq!(request.header("x-line-signature"), line_signature(&request.body));
        let body = request.json();
        assert_eq!(body["destination"], bot["userId"]);
        let event = body["events"][0].clone();
        assert_eq!(event["webhookEventId"].as_str().map(str::len), Some(26));
        assert_eq!(event["deliveryContext"]["isRedelivery"], false);
        assert_eq!(event["mode"], "active");
        assert_eq!(event["source"], json!({ "type": "user", "userId": USER }));
        assert!(event["timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000));
        assert!(event["replyToken"].is_string());
        assert_eq!(report["webhookEventId"], event["webhookEventId"]);
        events.push(event);
    }
    assert_eq!((events[0]["type"].clone(), events[0]["message"]["text"].clone()), (json!("message"), json!("Where is my refund?")));
    assert_eq!(events[2]["message"]["fileName"], "invoice.pdf");
    assert_eq!(events[3]["follow"]["isUnblocked"], false);
    assert_eq!(events[4]["postback"]["data"], "action=rate&score=5");

    // The image is served by the content API of api-data.line.me.
    let image_id = events[1]["message"]["id"].as_str().expect("an ID");
    let response = sim.line(get(), &format!("/v2/bot/message/{image_id}/content")).send().await.expect("an answer");
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), b"jpeg bytes");

    // The reply token of the text message works once.
    let reply = || {
        sim.line(post(), "/v2/bot/message/reply")
            .json(&json!({ "replyToken": events[0]["replyToken"], "messages": [{ "type": "text", "text": "Looking into it" }] }))
    };
    assert_eq!(reply().send().await.expect("an answer").status(), StatusCode::OK);
    assert_eq!(reply().send().await.expect("an answer").status(), StatusCode::BAD_REQUEST);
    let sent = sim.admin_get("/__sim/messages").await;
    assert_eq!((sent["messages"][0]["via"].clone(), sent["messages"][0]["to"].clone()), (json!("reply"), json!(USER)));

    // A redelivery repeats the event with the same ID.
    let (_, report) = sim.admin(post(), "/__sim/customer/line", json!({ "type": "redelivery", "webhookEventId": events[0]["webhookEventId"] })).await;
    assert_eq!(report["delivery"]["statusCode"], 200);
    let request = receiver.next().await;
    assert_eq!(request.header("x-line-signature"), line_signature(&request.body));
    let event = &request.json()["events"][0];
    assert_eq!(event["webhookEventId"], events[0]["webhookEventId"]);
    assert_eq!(event["deliveryContext"]["isRedelivery"], true);
    assert_eq!(event["message"], events[0]["message"]);

    // The admin answer reports what the receiver said.
    let failing = Receiver::new(StatusCode::SERVICE_UNAVAILABLE).await;
    let (_, report) = sim.admin(post(), "/__sim/customer/line", json!({ "url": failing.url("/hook"), "type": "text", "text": "hi" })).await;
    assert_eq!(report["delivery"]["statusCode"], 503);
}

/// The form parameters of a captured form body.
fn form_params(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn twilio_customer_messages_are_signed_and_open_the_window() {
    let sim = Sim::new().await;
    let mut receiver = Receiver::new(StatusCode::OK).await;
    let numbers: Value = sim.twilio(get(), &format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json")).send().await.expect("an answer").json().await.expect("JSON");
    let number_sid = numbers["incoming_phone_numbers"][0]["sid"].as_str().expect("a SID").to_owned();
    let hook = receiver.url("/switchboard/support/wa/webhook");
    let response = sim
        .twilio(post(), &format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{number_sid}.json"))
        .form(&[("SmsUrl", hook.as_str()), ("SmsMethod", "POST")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let number: Value = response.json().await.expect("JSON");
    assert_eq!(number["sms_url"], hook.as_str());

    let (status, report) = sim
        .admin(
            post(),
            "/__sim/customer/twilio",
            json!({ "from": CUSTOMER, "body": "Refund please", "profileName": "Ann", "media": [{ "contentType": "image/png" }, { "url": "https://example.com/x.pdf", "contentType": "application/pdf" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["delivery"]["statusCode"], 200);
    let request = receiver.next().await;
    let params = form_params(&request.body);
    let url = format!("{}{}", receiver.base_url, request.uri);
    assert_eq!(request.header("x-twilio-signature"), twilio_signature(&url, &params));
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(param("From"), format!("whatsapp:{CUSTOMER}"));
    assert_eq!(param("To"), format!("whatsapp:{NUMBER}"));
    assert_eq!(param("AccountSid"), ACCOUNT);
    assert_eq!(param("Body"), "Refund please");
    assert_eq!(param("NumMedia"), "2");
    assert_eq!(param("ProfileName"), "Ann");
    assert_eq!(param("WaId"), CUSTOMER.trim_start_matches('+'));
    assert!(param("MessageSid").starts_with("MM"));
    assert_eq!(param("MediaContentType1"), "application/pdf");
    assert_eq!(param("MediaUrl1"), "https://example.com/x.pdf");
    let media = sim.http.get(param("MediaUrl0")).send().await.expect("the media is served");
    assert_eq!(media.headers()["content-type"], "image/png");
    assert!(media.bytes().await.expect("bytes").starts_with(b"\x89PNG"));

    // The inbound message opened the window.
    let (status, body) = sim.send_whatsapp(&[("To", &format!("whatsapp:{CUSTOMER}")), ("From", &format!("whatsapp:{NUMBER}")), ("Body", "On it")]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A Messaging Service's inbound URL takes precedence over the number's.
    let response = sim
        .http
        .post(sim.url(&format!("/v1/Services/{SERVICE}")))
        .basic_auth(ACCOUNT, Some(AUTH_TOKEN))
        .form(&[("InboundRequestUrl", receiver.url("/service").as_str())])
        .send()
        .await
        .expect("an answer");
    let service: Value = response.json().await.expect("JSON");
    assert_eq!(service["inbound_request_url"], receiver.url("/service").as_str());
    sim.admin(post(), "/__sim/customer/twilio", json!({ "from": CUSTOMER, "body": "again" })).await;
    assert_eq!(receiver.next().await.uri.path(), "/service");
}

#[tokio::test]
async fn twilio_json_webhooks_carry_the_body_hash() {
    let sim = Sim::new().await;
    let mut receiver = Receiver::new(StatusCode::OK).await;
    let (status, report) = sim
        .admin(post(), "/__sim/customer/twilio", json!({ "url": receiver.url("/json?tenant=a"), "from": CUSTOMER, "body": "hi", "json": true }))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let request = receiver.next().await;
    assert_eq!(request.header("content-type"), "application/json");
    let query: Vec<(String, String)> = url::form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let hash: String = Sha256::digest(&request.body).iter().map(|b| format!("{b:02x}")).collect();
    assert!(query.contains(&("bodySHA256".to_owned(), hash)), "{query:?}");
    assert!(query.contains(&("tenant".to_owned(), "a".to_owned())));
    let url = format!("{}{}", receiver.base_url, request.uri);
    assert_eq!(request.header("x-twilio-signature"), twilio_signature(&url, &[]));
    assert_eq!(request.json()["Body"], "hi");
}

#[tokio::test]
async fn messaging_service_and_sender_webhooks_are_kept() {
    let sim = Sim::new().await;
    let senders: Value = sim.twilio(get(), "/v2/Channels/Senders?Channel=whatsapp").send().await.expect("an answer").json().await.expect("JSON");
    let sender = senders["senders"][0]["sid"].as_str().expect("a SID").to_owned();
    assert_eq!(senders["senders"][0]["sender_id"], format!("whatsapp:{NUMBER}"));
    let response = sim
        .twilio(post(), &format!("/v2/Channels/Senders/{sender}"))
        .json(&json!({ "webhook": { "callback_url": "https://chat.example/hook", "callback_method": "POST" } }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["webhook"]["callback_url"], "https://chat.example/hook");
    let response = sim.twilio(post(), &format!("/v2/Channels/Senders/{sender}")).json(&json!({ "webhook": { "callback_method": "GET" } })).send().await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let accounts = sim.admin_get("/__sim/accounts").await;
    assert_eq!(accounts["twilio"][0]["senders"][0]["webhook"]["callback_url"], "https://chat.example/hook");
    let text = accounts.to_string();
    assert!(!text.contains(AUTH_TOKEN) && !text.contains(CHANNEL_SECRET) && !text.contains(LINE_TOKEN));
}

#[tokio::test]
async fn number_and_service_webhooks_are_cleared_by_empty_urls() {
    let sim = Sim::new().await;
    let numbers: Value = sim.twilio(get(), &format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json")).send().await.expect("an answer").json().await.expect("JSON");
    let number = numbers["incoming_phone_numbers"][0]["sid"].as_str().expect("a SID").to_owned();
    let number_path = format!("/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers/{number}.json");
    let service_path = format!("/v1/Services/{SERVICE}");
    let update = |path: &str, params: &[(&str, &str)]| sim.twilio(post(), path).form(params).send();

    let response = update(&number_path, &[("SmsUrl", "https://chat.example/hook"), ("SmsMethod", "GET")]).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let response = update(&service_path, &[("InboundRequestUrl", "https://chat.example/hook"), ("InboundMethod", "GET")]).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let accounts = sim.admin_get("/__sim/accounts").await;
    assert_eq!(accounts["twilio"][0]["numbers"][0]["smsUrl"], "https://chat.example/hook");
    assert_eq!(accounts["twilio"][0]["messagingServices"][0]["inboundRequestUrl"], "https://chat.example/hook");

    let response = update(&number_path, &[("SmsUrl", "")]).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("JSON")["sms_url"], Value::Null);
    let response = update(&service_path, &[("InboundRequestUrl", "")]).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("JSON")["inbound_request_url"], Value::Null);
    let accounts = sim.admin_get("/__sim/accounts").await;
    let (number, service) = (&accounts["twilio"][0]["numbers"][0], &accounts["twilio"][0]["messagingServices"][0]);
    assert_eq!((number["smsUrl"].clone(), number["smsMethod"].clone()), (Value::Null, json!("GET")), "only the URL is cleared");
    assert_eq!((service["inboundRequestUrl"].clone(), service["inboundMethod"].clone()), (Value::Null, json!("GET")));
}

#[test]
fn credentials_never_appear_in_debug_output() {
    let config = config();
    let shown = format!("{config:?}");
    for secret in [CHANNEL_SECRET, LINE_TOKEN, AUTH_TOKEN] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let running = start().await;
    let url = format!("{}/__sim/health", running.base_url());
    assert_eq!(reqwest::get(&url).await.expect("an answer").status(), StatusCode::OK);
    running.shutdown().await;
    assert!(reqwest::get(&url).await.is_err());
}

#[tokio::test]
async fn media_auth_asks_for_credentials_and_redirects_to_a_cdn_that_refuses_them() {
    let mut config = config();
    config.twilio[0].media_auth = true;
    let sim = Sim::with(config).await;
    let (status, report) = sim.admin(post(), "/__sim/customer/twilio", json!({ "url": "http://127.0.0.1:9/unused", "from": CUSTOMER, "media": [{ "contentType": "image/png" }] })).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let media_url = report["params"]["MediaUrl0"].as_str().unwrap_or_else(|| panic!("MediaUrl0 in {report}")).to_owned();
    let direct = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");

    assert_eq!(direct.get(&media_url).send().await.expect("an answer").status(), StatusCode::UNAUTHORIZED, "no credentials");
    let wrong = direct.get(&media_url).basic_auth(ACCOUNT, Some("wrong-token")).send().await.expect("an answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "wrong credentials");
    let redirect = direct.get(&media_url).basic_auth(ACCOUNT, Some(AUTH_TOKEN)).send().await.expect("an answer");
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    let cdn = redirect.headers()["location"].to_str().expect("a location").to_owned();
    let (api, cdn_url) = (url::Url::parse(&media_url).expect("a URL"), url::Url::parse(&cdn).expect("a URL"));
    assert_ne!(api.origin(), cdn_url.origin(), "the CDN is another origin: {cdn}");
    assert!(!cdn.contains(AUTH_TOKEN));

    let served = direct.get(&cdn).send().await.expect("an answer");
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert!(served.bytes().await.expect("bytes").starts_with(b"\x89PNG"));
    let with_credentials = direct.get(&cdn).basic_auth(ACCOUNT, Some(AUTH_TOKEN)).send().await.expect("an answer");
    assert_eq!(with_credentials.status(), StatusCode::BAD_REQUEST, "the CDN refuses credentials");
    let requests = sim.admin_get("/__sim/requests?route=GET%20/cdn/**").await;
    let statuses: Vec<&Value> = requests["requests"].as_array().expect("requests").iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!(200), &json!(400)], "the CDN's requests are logged: {requests}");
    let on_api_port = direct.get(sim.url(cdn_url.path())).send().await.expect("an answer");
    assert_eq!(on_api_port.status(), StatusCode::NOT_FOUND, "the CDN is not served on the API's port");

    sim.running.shutdown().await;
    assert!(direct.get(&cdn).send().await.is_err(), "the CDN stops with the simulator");
}

#[tokio::test]
async fn without_media_auth_media_is_served_to_anyone() {
    let sim = Sim::new().await;
    let (_, report) = sim.admin(post(), "/__sim/customer/twilio", json!({ "url": "http://127.0.0.1:9/unused", "from": CUSTOMER, "media": [{ "contentType": "image/png" }] })).await;
    let media_url = report["params"]["MediaUrl0"].as_str().unwrap_or_else(|| panic!("MediaUrl0 in {report}")).to_owned();
    let answer = sim.http.get(&media_url).send().await.expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.bytes().await.expect("bytes").starts_with(b"\x89PNG"));
}
