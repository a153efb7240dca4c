//! A test agent desk: an HTTP server in the test process that records every delivery the gateway
//! makes (headers, parsed body, arrival order and time, the status it answered) and verifies each
//! with the Standard Webhooks reference implementation (the `standardwebhooks` crate) and the
//! signing secret it was given. It can be switched to answer 503 or to hang, to play a desk that
//! is down.
//!
//! A delivery that does not verify, a `webhook-id` that is not the body's `id`, or one that still
//! carries the headers of the format before Standard Webhooks is answered 401 and remembered;
//! [`Desk::check`] (called by every wait and by the harness at the end of each test) then fails
//! the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use standardwebhooks::Webhook;

/// How the desk answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Mode {
    /// 200.
    Up = 0,
    /// 503, as a desk that is down behind its load balancer.
    Down = 1,
    /// No answer for a minute (the gateway's `--delivery-timeout` ends the attempt).
    Hang = 2,
    /// 429 with `Retry-After: 3`, as a desk that sheds load.
    Busy = 3,
    /// 410 Gone: the receiver wants no more events (Standard Webhooks).
    Gone = 4,
}

/// The wait a [`Mode::Busy`] desk asks for.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(3);

/// One request the desk received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// What the desk answered.
    pub status: u16,
    /// `Idempotency-Key`.
    pub key: String,
    /// The body, parsed.
    pub body: Value,
    /// The body as received.
    pub raw: String,
    /// Every header value, to look for credentials.
    pub headers: String,
}

#[allow(dead_code)]
impl Received {
    /// The event's `type`.
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// The event's `sequence`.
    pub fn sequence(&self) -> i64 {
        self.body["sequence"].as_i64().unwrap_or(-1)
    }

    /// The conversation's ID.
    pub fn conversation(&self) -> &str {
        self.body["conversation"]["id"].as_str().unwrap_or_default()
    }

    /// The customer's ID.
    pub fn customer(&self) -> &str {
        self.body["conversation"]["customer"]["id"].as_str().unwrap_or_default()
    }

    /// The message's provider ID, for `message.received`.
    pub fn message_id(&self) -> Option<&str> {
        self.body["message"]["id"].as_str()
    }

    /// The message's text, for `message.received`.
    pub fn text(&self) -> Option<&str> {
        self.body["message"]["text"].as_str()
    }

    /// Whether the desk took it (answered 2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A request header's value (names in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
    }

    /// The outbound message's `clientMessageId`, for `message.accepted`, `message.failed` and
    /// `message.skipped`.
    pub fn client_message_id(&self) -> Option<&str> {
        self.body["message"]["clientMessageId"].as_str()
    }
}

struct DeskState {
    secret: String,
    mode: AtomicU8,
    received: Mutex<Vec<Received>>,
    problems: Mutex<Vec<String>>,
}

/// The running desk; dropping it stops nothing (its task ends with the test's runtime). A clone
/// is the same desk.
#[derive(Clone)]
pub struct Desk {
    state: Arc<DeskState>,
    addr: SocketAddr,
}

#[allow(dead_code)]
impl Desk {
    /// Starts a desk on a free loopback port that expects deliveries signed with `secret`.
    pub async fn start(secret: &str) -> Desk {
        let state = Arc::new(DeskState {
            secret: secret.to_owned(),
            mode: AtomicU8::new(Mode::Up as u8),
            received: Mutex::new(Vec::new()),
            problems: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("the desk binds");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/events", post(receive)).with_state(Arc::clone(&state));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the desk serves");
        });
        Desk { state, addr }
    }

    /// The URL the workstreams' `delivery.url` names.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Changes how the desk answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order, whatever was answered.
    pub fn attempts(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// The deliveries the desk took, in arrival order, repeats included.
    pub fn accepted(&self) -> Vec<Received> {
        self.attempts().into_iter().filter(Received::accepted).collect()
    }

    /// The deliveries the desk took, each idempotency key once (its first arrival).
    pub fn events(&self) -> Vec<Received> {
        distinct(self.accepted())
    }

    /// Distinct events of one type.
    pub fn of_kind(&self, kind: &str) -> Vec<Received> {
        self.events().into_iter().filter(|e| e.kind() == kind).collect()
    }

    /// Distinct events of one conversation, in arrival order.
    pub fn conversation(&self, id: &str) -> Vec<Received> {
        self.events().into_iter().filter(|e| e.conversation() == id).collect()
    }

    /// Distinct events by conversation, each in arrival order.
    pub fn by_conversation(&self) -> BTreeMap<String, Vec<Received>> {
        let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
        for e in self.events() {
            out.entry(e.conversation().to_owned()).or_default().push(e);
        }
        out
    }

    /// How many accepted deliveries repeated an idempotency key already taken (at least once
    /// delivery after a crash).
    pub fn repeats(&self) -> usize {
        let accepted = self.accepted();
        let distinct: BTreeSet<&str> = accepted.iter().map(|e| e.key.as_str()).collect();
        accepted.len() - distinct.len()
    }

    /// What was wrong with the deliveries it refused.
    pub fn problems(&self) -> Vec<String> {
        self.state.problems.lock().unwrap().clone()
    }

    /// Fails the test if any delivery was wrongly signed or labelled.
    pub fn check(&self) {
        let problems = self.state.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "the desk received bad deliveries:\n{}", problems.join("\n"));
    }

    /// Waits until `probe` finds what it wants in the distinct accepted events; fails after
    /// `limit` with `what` and what the desk has.
    pub async fn wait_for<T>(&self, limit: Duration, what: &str, probe: impl Fn(&[Received]) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            self.check();
            let events = self.events();
            if let Some(found) = probe(&events) {
                return found;
            }
            if Instant::now() > deadline {
                let kinds: Vec<String> = events.iter().map(|e| format!("{}#{} {}", e.kind(), e.sequence(), e.conversation())).collect();
                let shown = kinds.len().min(40);
                panic!(
                    "timed out after {limit:?} waiting for {what}; the desk has {} events ({} attempts), the first {shown}:\n{}",
                    events.len(),
                    self.attempts().len(),
                    kinds[..shown].join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 20 s) for the first distinct event that `probe` accepts.
    pub async fn wait_one(&self, what: &str, probe: impl Fn(&Received) -> bool) -> Received {
        self.wait_for(Duration::from_secs(20), what, |events| events.iter().find(|e| probe(e)).cloned()).await
    }

    /// Waits (up to 20 s) for the outbound message event (`message.accepted`,
    /// `message.failed`, `message.skipped`) of the agent's message `client_message_id`.
    pub async fn wait_outcome(&self, kind: &str, client_message_id: &str) -> Received {
        let what = format!("{kind} of {client_message_id:?}");
        self.wait_one(&what, |e| e.kind() == kind && e.client_message_id() == Some(client_message_id)).await
    }

    /// Waits until at least `n` distinct `message.received` events arrived.
    pub async fn wait_messages(&self, n: usize, limit: Duration) -> Vec<Received> {
        self.wait_for(limit, &format!("{n} message.received events"), |events| {
            let messages: Vec<Received> = events.iter().filter(|e| e.kind() == "message.received").cloned().collect();
            (messages.len() >= n).then_some(messages)
        })
        .await
    }
}

/// The first arrival of each idempotency key.
pub fn distinct(received: Vec<Received>) -> Vec<Received> {
    let mut seen = BTreeSet::new();
    received.into_iter().filter(|e| seen.insert(e.key.clone())).collect()
}

async fn receive(State(state): State<Arc<DeskState>>, headers: HeaderMap, body: Bytes) -> (StatusCode, [(&'static str, String); 1]) {
    let at = Instant::now();
    let raw = String::from_utf8_lossy(&body).into_owned();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let key = header("webhook-id");
    let parsed: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    if let Err(why) = verifier(&state.secret).verify(&body, &headers) {
        problems.push(format!("the delivery does not verify ({why}; webhook-signature {:?}): {raw}", header("webhook-signature")));
    }
    if parsed["id"].as_str() != Some(key.as_str()) || key.is_empty() {
        problems.push(format!("webhook-id {key:?} is not the body's id: {raw}"));
    }
    for gone in ["switchboard-signature", "switchboard-event", "idempotency-key"] {
        if headers.contains_key(gone) {
            problems.push(format!("the delivery still has the old {gone} header"));
        }
    }
    if !header("content-type").starts_with("application/json") {
        problems.push(format!("content-type {:?}", header("content-type")));
    }
    let mode = state.mode.load(Ordering::SeqCst);
    let status = if !problems.is_empty() {
        state.problems.lock().unwrap().extend(problems);
        StatusCode::UNAUTHORIZED
    } else if mode == Mode::Down as u8 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if mode == Mode::Hang as u8 {
        StatusCode::GATEWAY_TIMEOUT
    } else if mode == Mode::Busy as u8 {
        StatusCode::TOO_MANY_REQUESTS
    } else if mode == Mode::Gone as u8 {
        StatusCode::GONE
    } else {
        StatusCode::OK
    };
    let headers_text = headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default())).collect::<Vec<_>>().join("\n");
    state.received.lock().unwrap().push(Received { at, status: status.as_u16(), key, body: parsed, raw, headers: headers_text });
    if status == StatusCode::GATEWAY_TIMEOUT {
        // Recorded as an attempt that got no answer; the gateway gives up on it first.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let wait = if status == StatusCode::TOO_MANY_REQUESTS { BUSY_RETRY_AFTER.as_secs().to_string() } else { String::new() };
    (status, [("retry-after", wait)])
}

/// The reference implementation's verifier for `secret` as the README tells desks to read it: a
/// `whsec_` value is the base64 key after the prefix, any other value the key bytes as written.
fn verifier(secret: &str) -> Webhook {
    if secret.starts_with("whsec_") {
        Webhook::new(secret).expect("the test's whsec_ secret is base64")
    } else {
        Webhook::from_bytes(secret.as_bytes().to_vec()).expect("any bytes are a key")
    }
}
