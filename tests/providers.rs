//! The provider clients' wire shapes and the mapping of every failure mode (bad token, 429, 5xx,
//! hanging endpoint, dropped connection, provider rejections) to `ProviderError`, with retries
//! only where a call is safe to repeat and no secret in any error: first against a scripted
//! local server (exact answers, exact request counts), then against the project's simulator.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use switchboard::providers::line::{LineMessage, PushOutcome, SendOptions};
use switchboard::providers::twilio::{
    ApprovalStatus, ContentTypes, MessageContent, MessageSender, NewContent, OutgoingMessage, TextContent,
    WhatsAppCategory,
};
use switchboard::providers::{
    CallObserver, CallOutcome, ClientConfig, LineClient, LineCredentials, Operation, ProviderEndpoints, ProviderError,
    Providers, RetryPolicy, Secret, TwilioClient, TwilioCredentials,
};
use url::Url;
use uuid::Uuid;

const LINE_TOKEN: &str = "line-token-6f1e2d9c";
const WRONG_LINE_TOKEN: &str = "wrong-line-token-0a7b";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-91c3";
const WRONG_TWILIO_TOKEN: &str = "wrong-twilio-token-5e8f";

/// One scripted answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Canned {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    /// Answers per "METHOD /path", used in order; the last one repeats.
    answers: HashMap<String, VecDeque<Canned>>,
    seen: Vec<Seen>,
}

/// A local server that checks credentials like the providers do and answers from a script.
#[derive(Clone, Default)]
struct Mock(Arc<Mutex<Script>>);

impl Mock {
    async fn start() -> (Self, Url) {
        let mock = Self::default();
        let app = Router::new().fallback(answer).with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (mock, url)
    }

    fn on(&self, route: &str, answers: impl IntoIterator<Item = Canned>) {
        self.0.lock().unwrap().answers.insert(route.to_owned(), answers.into_iter().collect());
    }

    fn seen(&self, route: &str) -> Vec<Seen> {
        self.0.lock().unwrap().seen.iter().filter(|s| format!("{} {}", s.method, s.path) == route).cloned().collect()
    }
}

async fn answer(State(mock): State<Mock>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
    let route = format!("{} {}", parts.method, parts.uri.path());
    let twilio = !parts.uri.path().starts_with("/v2/bot/");
    let canned = {
        let mut script = mock.0.lock().unwrap();
        script.seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body,
        });
        script
            .answers
            .get_mut(&route)
            .map(|queue| if queue.len() > 1 { queue.pop_front().unwrap() } else { queue[0].clone() })
    };
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = if twilio {
        format!("Basic {}", STANDARD.encode(format!("{ACCOUNT_SID}:{TWILIO_TOKEN}")))
    } else {
        format!("Bearer {LINE_TOKEN}")
    };
    let canned = if authorization != expected {
        // The providers' own 401 bodies.
        if twilio {
            Canned::json(
                401,
                json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
            )
        } else {
            Canned::json(
                401,
                json!({"message": "Authentication failed. Confirm that the access token in the authorization header is valid."}),
            )
        }
    } else {
        canned.unwrap_or_else(|| Canned::json(404, json!({"message": "Not found"})))
    };
    tokio::time::sleep(canned.delay).await;
    let mut response = Response::builder().status(StatusCode::from_u16(canned.status).unwrap());
    for (name, value) in &canned.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(canned.body)).unwrap()
}

fn config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        download_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(2),
        },
    }
}

fn providers(base: &Url, config: ClientConfig) -> Providers {
    Providers::new(ProviderEndpoints::all_at(base.clone()), config).unwrap()
}

fn line(base: &Url, config: ClientConfig, token: &str) -> LineClient {
    providers(base, config).line(LineCredentials { channel_access_token: Secret::new(token) })
}

fn twilio(base: &Url, config: ClientConfig, token: &str) -> TwilioClient {
    providers(base, config)
        .twilio(TwilioCredentials { account_sid: ACCOUNT_SID.into(), auth_token: Secret::new(token) })
}

/// Fails when an error's `Display` or `Debug` shows any of the test credentials.
fn assert_no_secret(err: &ProviderError) {
    for text in [err.to_string(), format!("{err:?}")] {
        for secret in [LINE_TOKEN, WRONG_LINE_TOKEN, TWILIO_TOKEN, WRONG_TWILIO_TOKEN] {
            assert!(!text.contains(secret), "{text:?} contains a credential");
        }
        let basic = STANDARD.encode(format!("{ACCOUNT_SID}:{TWILIO_TOKEN}"));
        assert!(!text.contains(&basic), "{text:?} contains the Basic credentials");
    }
}

fn bot_info() -> Canned {
    Canned::json(
        200,
        json!({"userId": "Ub9952f8e", "basicId": "@216ruabc", "displayName": "Contoso", "chatMode": "bot", "markAsReadMode": "auto"}),
    )
}

fn text_message(text: &str) -> OutgoingMessage {
    OutgoingMessage {
        to: "whatsapp:+905551112233".into(),
        from: MessageSender::Address("whatsapp:+14155550100".into()),
        content: MessageContent::Text(text.into()),
        status_callback: None,
    }
}

fn queued_message() -> Canned {
    Canned::json(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "error_code": null, "error_message": null}),
    )
}

#[tokio::test]
async fn line_bad_token_is_unauthorized() {
    let (mock, base) = Mock::start().await;
    mock.on("GET /v2/bot/info", [bot_info()]);
    let err = line(&base, config(), WRONG_LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized { operation: Operation::LineBotInfo, .. }), "{err:?}");
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 1, "a refused credential is not retried");
    assert_no_secret(&err);

    let info = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap();
    assert_eq!(info.basic_id, "@216ruabc");
}

#[tokio::test]
async fn twilio_bad_token_is_unauthorized() {
    let (mock, base) = Mock::start().await;
    let err = twilio(&base, config(), WRONG_TWILIO_TOKEN).account().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized { operation: Operation::TwilioAccount, .. }), "{err:?}");
    assert!(err.to_string().contains("Authenticate"), "{err}");
    assert_no_secret(&err);
    let seen = mock.seen(&format!("GET /2010-04-01/Accounts/{ACCOUNT_SID}.json"));
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn twilio_account_reads_status_and_not_the_token() {
    let (mock, base) = Mock::start().await;
    mock.on(
        &format!("GET /2010-04-01/Accounts/{ACCOUNT_SID}.json"),
        [Canned::json(
            200,
            json!({"sid": ACCOUNT_SID, "friendly_name": "Contoso", "status": "suspended", "type": "Full", "auth_token": TWILIO_TOKEN}),
        )],
    );
    let account = twilio(&base, config(), TWILIO_TOKEN).account().await.unwrap();
    assert_eq!(account.status, switchboard::providers::twilio::AccountStatus::Suspended);
    assert_eq!(account.kind, switchboard::providers::twilio::AccountType::Full);
    assert!(!format!("{account:?}").contains(TWILIO_TOKEN));
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let (mock, base) = Mock::start().await;
    let limited = Canned::json(429, json!({"message": "The API rate limit has been exceeded. Try again later."}))
        .header("retry-after", "1");
    mock.on("GET /v2/bot/info", [limited, bot_info()]);
    let started = Instant::now();
    let info = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(info.display_name, "Contoso");
    assert!(elapsed >= Duration::from_secs(1), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "waited {elapsed:?}");
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 2);
}

#[tokio::test]
async fn rate_limit_longer_than_the_bound_is_returned() {
    let (mock, base) = Mock::start().await;
    let limited = Canned::json(429, json!({"message": "rate limited"})).header("retry-after", "1");
    mock.on("GET /v2/bot/info", [limited]);
    let mut config = config();
    config.retry.max_retry_after = Duration::from_millis(500);
    let started = Instant::now();
    let err = line(&base, config, LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "it waited for a delay over the bound");
    match err {
        ProviderError::RateLimited { operation, retry_after } => {
            assert_eq!(operation, Operation::LineBotInfo);
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 1);
}

#[tokio::test]
async fn twilio_rate_limit_with_an_http_date_on_a_send_is_not_retried() {
    let (mock, base) = Mock::start().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let limited = Canned::json(429, json!({"code": 20429, "message": "Too Many Requests", "status": 429}))
        .header("retry-after", &when);
    let route = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    mock.on(&route, [limited]);
    let err = twilio(&base, config(), TWILIO_TOKEN).send_message(&text_message("hi")).await.unwrap_err();
    match err {
        ProviderError::RateLimited { retry_after: Some(delay), .. } => {
            assert!(delay > Duration::from_secs(25) && delay <= Duration::from_secs(30), "{delay:?}")
        }
        other => panic!("expected RateLimited with a delay, got {other:?}"),
    }
    assert_eq!(mock.seen(&route).len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_unavailable() {
    let (mock, base) = Mock::start().await;
    mock.on("GET /v2/bot/info", [Canned::json(500, json!({"message": "Internal server error"}))]);
    let err = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(matches!(&err, ProviderError::Unavailable { detail, .. } if detail.contains("500")), "{err:?}");
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 3, "max_attempts is 3");
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_server_error_then_success_is_retried_transparently() {
    let (mock, base) = Mock::start().await;
    let route = format!("GET /2010-04-01/Accounts/{ACCOUNT_SID}.json");
    mock.on(
        &route,
        [
            Canned::json(503, json!({"code": 20503, "message": "Service unavailable", "status": 503})),
            Canned::json(
                200,
                json!({"sid": ACCOUNT_SID, "friendly_name": "Contoso", "status": "active", "type": "Trial"}),
            ),
        ],
    );
    let account = twilio(&base, config(), TWILIO_TOKEN).account().await.unwrap();
    assert_eq!(account.status, switchboard::providers::twilio::AccountStatus::Active);
    assert_eq!(mock.seen(&route).len(), 2);
}

#[tokio::test]
async fn a_hanging_endpoint_is_unavailable_within_the_timeout() {
    let (mock, base) = Mock::start().await;
    let route = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    mock.on(&route, [queued_message().delayed(Duration::from_secs(10))]);
    let mut config = config();
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = twilio(&base, config.clone(), TWILIO_TOKEN).send_message(&text_message("hi")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(&err, ProviderError::Unavailable { detail, .. } if detail.contains("timed out")), "{err:?}");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1300), "took {elapsed:?}");
    assert_no_secret(&err);

    // A retried call is bounded by the policy's total time, attempts included.
    mock.on("GET /v2/bot/info", [bot_info().delayed(Duration::from_secs(10))]);
    config.retry.max_elapsed = Duration::from_millis(700);
    let started = Instant::now();
    let err = line(&base, config, LINE_TOKEN).bot_info().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert!(elapsed < Duration::from_millis(1700), "took {elapsed:?}");
    assert!(mock.seen("GET /v2/bot/info").len() >= 2, "the read was retried");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let err = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unavailable { detail, .. } if detail.starts_with("connection failed")),
        "{err:?}"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn twilio_63016_is_rejected_with_its_code() {
    let (mock, base) = Mock::start().await;
    let route = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    let message = "Failed to send freeform message because you are outside the allowed window. If you are using WhatsApp, please use a Message Template.";
    mock.on(
        &route,
        [Canned::json(400, json!({"code": 63016, "message": message, "more_info": "https://www.twilio.com/docs/errors/63016", "status": 400}))],
    );
    let err = twilio(&base, config(), TWILIO_TOKEN).send_message(&text_message("hello")).await.unwrap_err();
    match &err {
        ProviderError::Rejected { operation, status, code, message: text } => {
            assert_eq!(*operation, Operation::TwilioSendMessage);
            assert_eq!(*status, 400);
            assert_eq!(*code, Some(63016));
            assert_eq!(text, message);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(
        err.to_string().starts_with("Twilio send message: rejected by the provider (HTTP 400, code 63016)"),
        "{err}"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn line_rejection_carries_the_details() {
    let (mock, base) = Mock::start().await;
    mock.on("POST /v2/bot/message/reply", [Canned::json(400, json!({"message": "Invalid reply token"}))]);
    let err = line(&base, config(), LINE_TOKEN)
        .reply("expired-token", &[LineMessage::Text { text: "hi".into() }], SendOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { status: 400, code: None, message, .. } if message == "Invalid reply token"),
        "{err:?}"
    );
}

#[tokio::test]
async fn sends_that_are_not_idempotent_are_never_retried() {
    let (mock, base) = Mock::start().await;
    let failing = Canned::json(500, json!({"message": "Internal server error", "code": 20500, "status": 500}));
    let messages = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    mock.on(&messages, [failing.clone()]);
    mock.on("POST /v2/bot/message/reply", [failing.clone()]);
    mock.on("POST /v1/Content", [failing.clone()]);
    mock.on("POST /v1/Content/HX0123456789abcdef0123456789abcdef/ApprovalRequests/whatsapp", [failing]);

    let client = twilio(&base, config(), TWILIO_TOKEN);
    let err = client.send_message(&text_message("hi")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert_eq!(mock.seen(&messages).len(), 1);

    let content = NewContent {
        friendly_name: None,
        language: "en".into(),
        variables: Default::default(),
        types: ContentTypes { text: Some(TextContent { body: "Hi {{1}}".into() }), media: None },
    };
    assert!(client.create_content(&content).await.is_err());
    assert_eq!(mock.seen("POST /v1/Content").len(), 1);
    let submitted =
        client.submit_for_approval("HX0123456789abcdef0123456789abcdef", "reminder", WhatsAppCategory::Utility).await;
    assert!(submitted.is_err());
    assert_eq!(mock.seen("POST /v1/Content/HX0123456789abcdef0123456789abcdef/ApprovalRequests/whatsapp").len(), 1);

    let err = line(&base, config(), LINE_TOKEN)
        .reply("reply-token", &[LineMessage::Text { text: "hi".into() }], SendOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert_eq!(mock.seen("POST /v2/bot/message/reply").len(), 1);
}

#[tokio::test]
async fn push_reuses_its_retry_key_and_treats_409_as_already_accepted() {
    let (mock, base) = Mock::start().await;
    mock.on(
        "POST /v2/bot/message/push",
        [
            Canned::json(500, json!({"message": "Internal server error"})),
            Canned::json(
                409,
                json!({"message": "The retry key is already accepted", "sentMessages": [{"id": "461230966842064897"}]}),
            )
            .header("x-line-accepted-request-id", "123e4567-e89b-12d3-a456-426614174000"),
        ],
    );
    let key = Uuid::new_v4();
    let outcome = line(&base, config(), LINE_TOKEN)
        .push("U4af4980629", &[LineMessage::Text { text: "your order shipped".into() }], key, SendOptions::default())
        .await
        .unwrap();
    match outcome {
        PushOutcome::AlreadyAccepted { accepted_request_id, sent_messages } => {
            assert_eq!(accepted_request_id.as_deref(), Some("123e4567-e89b-12d3-a456-426614174000"));
            assert_eq!(sent_messages[0].id, "461230966842064897");
        }
        other => panic!("expected AlreadyAccepted, got {other:?}"),
    }
    let seen = mock.seen("POST /v2/bot/message/push");
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.header("x-line-retry-key"), Some(key.hyphenated().to_string().as_str()));
        assert_eq!(request.json()["to"], "U4af4980629");
    }
}

#[tokio::test]
async fn push_sent_and_reply_bodies() {
    let (mock, base) = Mock::start().await;
    mock.on(
        "POST /v2/bot/message/push",
        [Canned::json(200, json!({"sentMessages": [{"id": "1", "quoteToken": "q1"}]}))],
    );
    mock.on("POST /v2/bot/message/reply", [Canned::json(200, json!({"sentMessages": [{"id": "2"}]}))]);
    let client = line(&base, config(), LINE_TOKEN);
    let image = LineMessage::Image {
        original_content_url: "https://cdn.example/a.jpg".into(),
        preview_image_url: "https://cdn.example/a-small.jpg".into(),
    };
    let outcome = client
        .push("U1", std::slice::from_ref(&image), Uuid::new_v4(), SendOptions { notification_disabled: true })
        .await
        .unwrap();
    assert!(matches!(&outcome, PushOutcome::Sent(sent) if sent[0].quote_token.as_deref() == Some("q1")), "{outcome:?}");
    let push = &mock.seen("POST /v2/bot/message/push")[0];
    assert_eq!(push.header("content-type"), Some("application/json"));
    assert_eq!(
        push.json(),
        json!({"to": "U1", "notificationDisabled": true, "messages": [{"type": "image", "originalContentUrl": "https://cdn.example/a.jpg", "previewImageUrl": "https://cdn.example/a-small.jpg"}]})
    );

    let sent = client.reply("rt-1", &[LineMessage::Text { text: "hi".into() }], SendOptions::default()).await.unwrap();
    assert_eq!(sent[0].id, "2");
    let reply = &mock.seen("POST /v2/bot/message/reply")[0];
    assert_eq!(reply.json(), json!({"replyToken": "rt-1", "messages": [{"type": "text", "text": "hi"}]}));
    assert_eq!(reply.header("x-line-retry-key"), None, "LINE refuses a retry key on reply");

    let err = client.push("U1", &[], Uuid::new_v4(), SendOptions::default()).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidRequest { .. }), "{err:?}");
    assert_eq!(mock.seen("POST /v2/bot/message/push").len(), 1, "an invalid request is not sent");
}

#[tokio::test]
async fn line_webhook_settings_and_profile() {
    let (mock, base) = Mock::start().await;
    mock.on(
        "PUT /v2/bot/channel/webhook/endpoint",
        [Canned { status: 200, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }],
    );
    mock.on(
        "GET /v2/bot/channel/webhook/endpoint",
        [Canned::json(200, json!({"endpoint": "https://chat.example/hook", "active": true}))],
    );
    mock.on(
        "POST /v2/bot/channel/webhook/test",
        [Canned::json(200, json!({"success": false, "timestamp": "2020-09-30T05:38:20.031Z", "statusCode": 0, "reason": "COULD_NOT_CONNECT", "detail": "refused"}))],
    );
    mock.on(
        "GET /v2/bot/profile/U4af4980629",
        [Canned::json(200, json!({"displayName": "LINE taro", "userId": "U4af4980629", "language": "en"}))],
    );
    let client = line(&base, config(), LINE_TOKEN);
    let hook = Url::parse("https://chat.example/hook").unwrap();

    client.set_webhook_endpoint(Some(&hook)).await.unwrap();
    client.set_webhook_endpoint(None).await.unwrap();
    let puts = mock.seen("PUT /v2/bot/channel/webhook/endpoint");
    assert_eq!(puts[0].json(), json!({"endpoint": "https://chat.example/hook"}));
    assert_eq!(puts[1].json(), json!({"endpoint": ""}), "clearing sends an empty endpoint");
    let endpoint = client.webhook_endpoint().await.unwrap();
    assert!(endpoint.active);
    assert_eq!(endpoint.endpoint, hook.as_str());

    let test = client.test_webhook_endpoint(Some(&hook)).await.unwrap();
    assert!(!test.success);
    assert_eq!(test.status_code, 0);
    assert_eq!(test.reason, "COULD_NOT_CONNECT");
    client.test_webhook_endpoint(None).await.unwrap();
    let tests = mock.seen("POST /v2/bot/channel/webhook/test");
    assert_eq!(tests[0].json(), json!({"endpoint": "https://chat.example/hook"}));
    assert_eq!(tests[1].json(), json!({}));

    let profile = client.profile("U4af4980629").await.unwrap();
    assert_eq!(profile.display_name, "LINE taro");
    assert_eq!(profile.picture_url, None);

    let err = client.profile("Unknown").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound { operation: Operation::LineProfile, .. }), "{err:?}");
}

#[tokio::test]
async fn line_content_download_has_a_size_cap() {
    let (mock, base) = Mock::start().await;
    let content = |size: usize| Canned {
        status: 200,
        headers: vec![("content-type", "image/jpeg".into())],
        body: "x".repeat(size),
        delay: Duration::ZERO,
    };
    mock.on("GET /v2/bot/message/100/content", [content(1000)]);
    mock.on("GET /v2/bot/message/200/content", [content(5000)]);
    let client = line(&base, config(), LINE_TOKEN);
    let downloaded = client.message_content("100", 1000).await.unwrap();
    assert_eq!(downloaded.bytes.len(), 1000);
    assert_eq!(downloaded.content_type.as_deref(), Some("image/jpeg"));
    assert!(format!("{downloaded:?}").contains("len: 1000"));
    let err = client.message_content("200", 1000).await.unwrap_err();
    assert!(matches!(err, ProviderError::TooLarge { limit: 1000, .. }), "{err:?}");
}

#[tokio::test]
async fn twilio_incoming_numbers_follow_pages_on_the_api_host() {
    let (mock, base) = Mock::start().await;
    let route = format!("GET /2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json");
    let number = |sid: &str, phone: &str| json!({"sid": sid, "phone_number": phone, "sms_url": "https://old.example/sms", "sms_method": "POST", "sms_application_sid": null});
    let next =
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json?PageSize=100&Page=1&PageToken=PAxyz");
    mock.on(
        &route,
        [
            Canned::json(
                200,
                json!({"incoming_phone_numbers": [number("PN01", "+14155550100")], "next_page_uri": next, "page": 0}),
            ),
            Canned::json(
                200,
                json!({"incoming_phone_numbers": [number("PN02", "+14155550101")], "next_page_uri": null, "page": 1}),
            ),
        ],
    );
    let client = twilio(&base, config(), TWILIO_TOKEN);
    let numbers = client.incoming_numbers(Some("+14155550100")).await.unwrap();
    assert_eq!(numbers.iter().map(|n| n.sid.as_str()).collect::<Vec<_>>(), ["PN01", "PN02"]);
    let seen = mock.seen(&route);
    assert_eq!(seen[0].query.as_deref(), Some("PhoneNumber=%2B14155550100&PageSize=100"));
    assert_eq!(seen[1].query.as_deref(), Some("PageSize=100&Page=1&PageToken=PAxyz"));

    // A next page elsewhere would carry the credentials there: refused.
    mock.on(
        &route,
        [Canned::json(200, json!({"incoming_phone_numbers": [], "next_page_uri": "//evil.example/steal"}))],
    );
    let err = client.incoming_numbers(None).await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn twilio_contents_follow_pages_on_the_content_host() {
    let (mock, base) = Mock::start().await;
    let route = "GET /v1/Content";
    let content = |sid: &str, name: &str| json!({"sid": sid, "account_sid": ACCOUNT_SID, "friendly_name": name, "language": "en", "types": {"twilio/text": {"body": "Hi"}}});
    let next = format!("{base}v1/Content?PageSize=200&Page=1&PageToken=PAHX01");
    let meta = |next: Option<&str>| json!({"page": 0, "page_size": 200, "first_page_url": "", "previous_page_url": null, "url": "", "next_page_url": next, "key": "contents"});
    mock.on(
        route,
        [
            Canned::json(200, json!({"contents": [content("HX01", "reminder_en")], "meta": meta(Some(&next))})),
            Canned::json(200, json!({"contents": [content("HX02", "reminder_tr")], "meta": meta(None)})),
        ],
    );
    let client = twilio(&base, config(), TWILIO_TOKEN);
    let contents = client.contents().await.unwrap();
    let names: Vec<_> = contents.iter().map(|c| (c.sid.as_str(), c.friendly_name.as_deref())).collect();
    assert_eq!(names, [("HX01", Some("reminder_en")), ("HX02", Some("reminder_tr"))]);
    let seen = mock.seen(route);
    assert_eq!(seen[0].query.as_deref(), Some("PageSize=200"));
    assert_eq!(seen[1].query.as_deref(), Some("PageSize=200&Page=1&PageToken=PAHX01"));

    // A next page on another host would carry the credentials there: refused.
    mock.on(route, [Canned::json(200, json!({"contents": [], "meta": meta(Some("https://evil.example/v1/Content"))}))]);
    let err = client.contents().await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { operation: Operation::TwilioListContent, .. }), "{err:?}");

    // A list that never ends is cut off.
    mock.on(route, [Canned::json(200, json!({"contents": [content("HX01", "again")], "meta": meta(Some(&next))}))]);
    let before = mock.seen(route).len();
    let err = client.contents().await.unwrap_err();
    assert!(matches!(&err, ProviderError::InvalidResponse { detail, .. } if detail.contains("pages")), "{err:?}");
    assert_eq!(mock.seen(route).len() - before, switchboard::providers::twilio::MAX_LIST_PAGES);
}

#[tokio::test]
async fn twilio_webhook_updates() {
    let (mock, base) = Mock::start().await;
    let number_route =
        format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/PN0123456789abcdef0123456789abcdef.json");
    mock.on(
        &number_route,
        [
            Canned::json(502, json!({"message": "Bad gateway"})),
            Canned::json(200, json!({"sid": "PN0123456789abcdef0123456789abcdef", "phone_number": "+14155550100", "sms_url": "https://chat.example/hook", "sms_method": "POST"})),
        ],
    );
    let service_route = "POST /v1/Services/MG0123456789abcdef0123456789abcdef";
    mock.on(
        service_route,
        [Canned::json(200, json!({"sid": "MG0123456789abcdef0123456789abcdef", "inbound_request_url": "https://chat.example/hook", "inbound_method": "POST"}))],
    );
    let sender_route = "POST /v2/Channels/Senders/XE0123456789abcdef0123456789abcdef";
    mock.on(
        sender_route,
        [Canned::json(202, json!({"sid": "XE0123456789abcdef0123456789abcdef", "status": "ONLINE:UPDATING", "sender_id": "whatsapp:+14155550100", "webhook": {"callback_url": "https://chat.example/hook", "callback_method": "POST"}}))],
    );
    let client = twilio(&base, config(), TWILIO_TOKEN);
    let hook = Url::parse("https://chat.example/hook").unwrap();

    let number = client.set_number_webhook("PN0123456789abcdef0123456789abcdef", Some(&hook)).await.unwrap();
    assert_eq!(number.sms_url.as_deref(), Some("https://chat.example/hook"));
    let seen = mock.seen(&number_route);
    assert_eq!(seen.len(), 2, "an update of the same fields is retried");
    assert_eq!(seen[1].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(seen[1].form(), [("SmsUrl".to_owned(), hook.to_string()), ("SmsMethod".to_owned(), "POST".to_owned())]);
    client.set_number_webhook("PN0123456789abcdef0123456789abcdef", None).await.unwrap();
    assert_eq!(
        mock.seen(&number_route)[2].form(),
        [("SmsUrl".to_owned(), String::new())],
        "clearing sends SmsUrl empty"
    );

    let service = client.set_service_webhook("MG0123456789abcdef0123456789abcdef", Some(&hook)).await.unwrap();
    assert_eq!(service.inbound_method.as_deref(), Some("POST"));
    client.set_service_webhook("MG0123456789abcdef0123456789abcdef", None).await.unwrap();
    let seen = mock.seen(service_route);
    assert_eq!(
        seen[0].form(),
        [("InboundRequestUrl".to_owned(), hook.to_string()), ("InboundMethod".to_owned(), "POST".to_owned())]
    );
    assert_eq!(seen[1].form(), [("InboundRequestUrl".to_owned(), String::new())]);

    let sender = client.set_sender_webhook("XE0123456789abcdef0123456789abcdef", &hook).await.unwrap();
    assert_eq!(sender.status.as_deref(), Some("ONLINE:UPDATING"));
    assert_eq!(
        mock.seen(sender_route)[0].json(),
        json!({"webhook": {"callback_url": "https://chat.example/hook", "callback_method": "POST"}})
    );
}

#[tokio::test]
async fn twilio_message_forms_on_the_wire() {
    let (mock, base) = Mock::start().await;
    let route = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    mock.on(&route, [queued_message()]);
    let client = twilio(&base, config(), TWILIO_TOKEN);
    let media = OutgoingMessage {
        to: "whatsapp:+905551112233".into(),
        from: MessageSender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
        content: MessageContent::Media {
            caption: Some("invoice".into()),
            urls: vec![
                Url::parse("https://cdn.example/a.pdf").unwrap(),
                Url::parse("https://cdn.example/b.jpg").unwrap(),
            ],
        },
        status_callback: Some(Url::parse("https://chat.example/status").unwrap()),
    };
    let sent = client.send_message(&media).await.unwrap();
    assert_eq!(sent.status.as_deref(), Some("queued"));
    let template = OutgoingMessage {
        content: MessageContent::Template {
            content_sid: "HX0123456789abcdef0123456789abcdef".into(),
            variables: [("1".to_owned(), "Ann".to_owned())].into(),
        },
        ..text_message("unused")
    };
    client.send_message(&template).await.unwrap();

    let seen = mock.seen(&route);
    let pairs = |form: Vec<(String, String)>| form.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
    assert_eq!(
        pairs(seen[0].form()),
        [
            "To=whatsapp:+905551112233",
            "MessagingServiceSid=MG0123456789abcdef0123456789abcdef",
            "Body=invoice",
            "MediaUrl=https://cdn.example/a.pdf",
            "MediaUrl=https://cdn.example/b.jpg",
            "StatusCallback=https://chat.example/status",
        ]
    );
    assert_eq!(
        pairs(seen[1].form()),
        [
            "To=whatsapp:+905551112233",
            "From=whatsapp:+14155550100",
            "ContentSid=HX0123456789abcdef0123456789abcdef",
            r#"ContentVariables={"1":"Ann"}"#,
        ]
    );
}

#[tokio::test]
async fn twilio_content_lifecycle() {
    let (mock, base) = Mock::start().await;
    let sid = "HX0123456789abcdef0123456789abcdef";
    mock.on("POST /v1/Content", [Canned::json(201, json!({"sid": sid, "account_sid": ACCOUNT_SID, "friendly_name": "reminder_en", "language": "en", "types": {}}))]);
    mock.on(
        &format!("POST /v1/Content/{sid}/ApprovalRequests/whatsapp"),
        [Canned::json(201, json!({"name": "reminder", "category": "UTILITY", "content_type": "twilio/text", "status": "received", "rejection_reason": "", "allow_category_change": true}))],
    );
    mock.on(
        &format!("GET /v1/Content/{sid}/ApprovalRequests"),
        [
            Canned::json(200, json!({"sid": sid, "account_sid": ACCOUNT_SID, "whatsapp": null})),
            Canned::json(200, json!({"sid": sid, "whatsapp": {"type": "whatsapp", "name": "reminder", "category": "MARKETING", "status": "Rejected", "rejection_reason": "Marketing content in a utility template"}})),
        ],
    );
    mock.on(
        &format!("DELETE /v1/Content/{sid}"),
        [Canned { status: 204, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }],
    );
    let client = twilio(&base, config(), TWILIO_TOKEN);

    let new = NewContent {
        friendly_name: Some("reminder_en".into()),
        language: "en".into(),
        variables: [("1".to_owned(), "Ann".to_owned())].into(),
        types: ContentTypes { text: Some(TextContent { body: "Hi {{1}}".into() }), media: None },
    };
    let content = client.create_content(&new).await.unwrap();
    assert_eq!(content.sid, sid);
    let created = &mock.seen("POST /v1/Content")[0];
    assert_eq!(created.header("content-type"), Some("application/json"));
    assert_eq!(
        created.json(),
        json!({"friendly_name": "reminder_en", "language": "en", "variables": {"1": "Ann"}, "types": {"twilio/text": {"body": "Hi {{1}}"}}})
    );

    let submitted = client.submit_for_approval(sid, "reminder", WhatsAppCategory::Utility).await.unwrap();
    assert_eq!(submitted.status, ApprovalStatus::Received);
    assert_eq!(submitted.rejection_reason, None);
    assert_eq!(
        mock.seen(&format!("POST /v1/Content/{sid}/ApprovalRequests/whatsapp"))[0].json(),
        json!({"name": "reminder", "category": "UTILITY"})
    );

    assert_eq!(client.approval(sid).await.unwrap().status, ApprovalStatus::Unsubmitted);
    let rejected = client.approval(sid).await.unwrap();
    assert_eq!(rejected.status, ApprovalStatus::Rejected);
    assert_eq!(rejected.category.as_deref(), Some("MARKETING"));
    assert_eq!(rejected.rejection_reason.as_deref(), Some("Marketing content in a utility template"));

    client.delete_content(sid).await.unwrap();
    client.delete_content("HXffffffffffffffffffffffffffffffff").await.expect("already gone counts as deleted");
}

#[tokio::test]
async fn invalid_success_bodies_are_invalid_responses() {
    let (mock, base) = Mock::start().await;
    mock.on("GET /v2/bot/info", [Canned::json(200, json!({"userId": "U1"}))]);
    let err = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { operation: Operation::LineBotInfo, .. }), "{err:?}");
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 1, "a bad body is not retried");
}

#[tokio::test]
async fn a_provider_echoing_the_secret_does_not_leak_it() {
    let (mock, base) = Mock::start().await;
    mock.on("GET /v2/bot/info", [Canned::json(400, json!({"message": format!("bad header Bearer {LINE_TOKEN}")}))]);
    let route = format!("GET /2010-04-01/Accounts/{ACCOUNT_SID}.json");
    mock.on(
        &route,
        [Canned::json(
            200,
            json!({"sid": ACCOUNT_SID, "status": TWILIO_TOKEN, "type": "Full", "auth_token": TWILIO_TOKEN}),
        )],
    );

    let err = line(&base, config(), LINE_TOKEN).bot_info().await.unwrap_err();
    assert!(err.to_string().contains("bad header Bearer <redacted>"), "{err}");
    assert_no_secret(&err);
    let err = twilio(&base, config(), TWILIO_TOKEN).account().await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn clients_and_credentials_print_redacted() {
    let base = Url::parse("http://127.0.0.1:9").unwrap();
    let providers = providers(&base, config());
    let line = providers.line(LineCredentials { channel_access_token: Secret::new(LINE_TOKEN) });
    let twilio =
        providers.twilio(TwilioCredentials { account_sid: ACCOUNT_SID.into(), auth_token: Secret::new(TWILIO_TOKEN) });
    for text in [
        format!("{line:?}"),
        format!("{twilio:?}"),
        format!("{providers:?}"),
        format!("{:#?}", Secret::new(LINE_TOKEN)),
        Secret::new(TWILIO_TOKEN).to_string(),
    ] {
        assert!(!text.contains(LINE_TOKEN) && !text.contains(TWILIO_TOKEN), "{text}");
    }
    assert!(format!("{twilio:?}").contains(ACCOUNT_SID), "the account SID is not secret");
}

/// The clients against the project's provider simulator (`switchboard simulate`), with its fault
/// injection: the same failure modes, served by the simulator's own provider-shaped answers.
mod simulator {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use switchboard::providers::line::{LineMessage, PushOutcome, SendOptions};
    use switchboard::providers::twilio::{
        AccountStatus, ApprovalStatus, ContentTypes, NewContent, TextContent, WhatsAppCategory,
    };
    use switchboard::providers::{
        ClientConfig, LineClient, LineCredentials, Operation, ProviderEndpoints, ProviderError, Providers, Secret,
        TwilioClient, TwilioCredentials,
    };
    use switchboard::simulator::{self, LineChannelConfig, RunningSimulator, SimulatorConfig, TwilioAccountConfig};
    use url::Url;
    use uuid::Uuid;

    use super::{
        ACCOUNT_SID, LINE_TOKEN, TWILIO_TOKEN, WRONG_LINE_TOKEN, WRONG_TWILIO_TOKEN, assert_no_secret, config,
        text_message,
    };

    const CHANNEL_ID: &str = "1657123456";
    const NUMBER: &str = "+14155550100";

    struct Sim {
        // Dropping it stops the simulator.
        _running: RunningSimulator,
        base: Url,
        admin: reqwest::Client,
    }

    impl Sim {
        async fn start() -> Self {
            let config = SimulatorConfig {
                line: vec![LineChannelConfig::new(
                    CHANNEL_ID,
                    simulator::Secret::new("channel-secret"),
                    simulator::Secret::new(LINE_TOKEN),
                )],
                twilio: vec![TwilioAccountConfig::new(ACCOUNT_SID, simulator::Secret::new(TWILIO_TOKEN), &[NUMBER])],
                ..SimulatorConfig::default()
            };
            let running =
                simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("the simulator starts");
            let base = Url::parse(running.base_url()).unwrap();
            Self { _running: running, base, admin: reqwest::Client::new() }
        }

        fn providers(&self, config: ClientConfig) -> Providers {
            Providers::new(ProviderEndpoints::all_at(self.base.clone()), config).unwrap()
        }

        fn line(&self, config: ClientConfig, token: &str) -> LineClient {
            self.providers(config).line(LineCredentials { channel_access_token: Secret::new(token) })
        }

        fn twilio(&self, config: ClientConfig, token: &str) -> TwilioClient {
            self.providers(config)
                .twilio(TwilioCredentials { account_sid: ACCOUNT_SID.into(), auth_token: Secret::new(token) })
        }

        async fn fault(&self, fault: Value) {
            let response = self.admin.post(self.base.join("/__sim/faults").unwrap()).json(&fault).send().await.unwrap();
            assert_eq!(response.status(), 201, "fault {fault} refused: {}", response.text().await.unwrap());
        }

        /// The provider requests the simulator received on a route, oldest first.
        async fn requests(&self, route: &str) -> Vec<Value> {
            let mut url = self.base.join("/__sim/requests").unwrap();
            url.query_pairs_mut().append_pair("route", route);
            let listed: Value = self.admin.get(url).send().await.unwrap().json().await.unwrap();
            listed["requests"].as_array().unwrap().clone()
        }

        async fn messages(&self) -> Vec<Value> {
            let listed: Value =
                self.admin.get(self.base.join("/__sim/messages").unwrap()).send().await.unwrap().json().await.unwrap();
            listed["messages"].as_array().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthorized() {
        let sim = Sim::start().await;
        let err = sim.line(config(), WRONG_LINE_TOKEN).bot_info().await.unwrap_err();
        assert!(matches!(err, ProviderError::Unauthorized { operation: Operation::LineBotInfo, .. }), "{err:?}");
        assert_no_secret(&err);
        let err = sim.twilio(config(), WRONG_TWILIO_TOKEN).account().await.unwrap_err();
        assert!(matches!(err, ProviderError::Unauthorized { operation: Operation::TwilioAccount, .. }), "{err:?}");
        assert_no_secret(&err);
        assert_eq!(sim.requests("GET /v2/bot/info").await.len(), 1);
    }

    #[tokio::test]
    async fn rate_limit_waits_for_retry_after() {
        let sim = Sim::start().await;
        sim.fault(json!({"route": "GET /v2/bot/info", "kind": "rateLimit", "retryAfter": 1, "times": 1})).await;
        let started = Instant::now();
        let info = sim.line(config(), LINE_TOKEN).bot_info().await.unwrap();
        let elapsed = started.elapsed();
        assert!(info.basic_id.starts_with('@'));
        assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(2500), "took {elapsed:?}");
        let requests = sim.requests("GET /v2/bot/info").await;
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0]["status"], 429);
        assert_eq!(requests[1]["status"], 200);
    }

    #[tokio::test]
    async fn rate_limit_over_the_bound_is_returned_with_its_delay() {
        let sim = Sim::start().await;
        sim.fault(json!({"route": "GET /2010-04-01/Accounts/*", "kind": "rateLimit", "retryAfter": 3})).await;
        let err = sim.twilio(config(), TWILIO_TOKEN).account().await.unwrap_err();
        match err {
            ProviderError::RateLimited { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(3))),
            other => panic!("expected RateLimited, got {other:?}"),
        }
        assert_eq!(sim.requests("GET /2010-04-01/Accounts/*").await.len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_unavailable() {
        let sim = Sim::start().await;
        sim.fault(json!({"route": "GET /2010-04-01/Accounts/*", "kind": "serverError", "status": 500})).await;
        let err = sim.twilio(config(), TWILIO_TOKEN).account().await.unwrap_err();
        assert!(matches!(&err, ProviderError::Unavailable { detail, .. } if detail.contains("500")), "{err:?}");
        assert_no_secret(&err);
        assert_eq!(sim.requests("GET /2010-04-01/Accounts/*").await.len(), 3, "max_attempts is 3");
    }

    #[tokio::test]
    async fn a_hanging_endpoint_is_unavailable_within_the_timeout() {
        let sim = Sim::start().await;
        sim.fault(json!({"route": "GET /v2/bot/info", "kind": "latency", "delay": "5s"})).await;
        let mut config = config();
        config.timeout = Duration::from_millis(300);
        config.retry.max_attempts = 1;
        let started = Instant::now();
        let err = sim.line(config, LINE_TOKEN).bot_info().await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(&err, ProviderError::Unavailable { detail, .. } if detail.contains("timed out")), "{err:?}");
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1300), "took {elapsed:?}");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_unavailable_and_a_send_is_not_retried() {
        let sim = Sim::start().await;
        let route = format!("POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
        sim.fault(json!({"route": route, "kind": "serverError", "status": 503})).await;
        let err = sim.twilio(config(), TWILIO_TOKEN).send_message(&text_message("hi")).await.unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
        assert_eq!(sim.requests(&route).await.len(), 1, "a message send is never retried");

        sim.fault(json!({"route": "POST /v2/bot/message/reply", "kind": "drop"})).await;
        let err = sim
            .line(config(), LINE_TOKEN)
            .reply("any-token", &[LineMessage::Text { text: "hi".into() }], SendOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
        assert_eq!(sim.requests("POST /v2/bot/message/reply").await.len(), 1, "a reply is never retried");
    }

    #[tokio::test]
    async fn twilio_63016_is_rejected_with_its_code() {
        let sim = Sim::start().await;
        let err =
            sim.twilio(config(), TWILIO_TOKEN).send_message(&text_message("outside the window")).await.unwrap_err();
        match &err {
            ProviderError::Rejected { status, code, message, .. } => {
                assert_eq!((*status, *code), (400, Some(63016)));
                assert!(message.contains("outside the allowed window"), "{message}");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_push_whose_answer_was_lost_is_already_accepted_on_retry() {
        let sim = Sim::start().await;
        sim.fault(json!({"route": "POST /v2/bot/message/push", "kind": "drop", "afterHandler": true, "times": 1}))
            .await;
        let key = Uuid::new_v4();
        let to = "U0123456789abcdef0123456789abcdef";
        let outcome = sim
            .line(config(), LINE_TOKEN)
            .push(to, &[LineMessage::Text { text: "your order shipped".into() }], key, SendOptions::default())
            .await
            .unwrap();
        assert!(
            matches!(&outcome, PushOutcome::AlreadyAccepted { sent_messages, .. } if sent_messages.len() == 1),
            "{outcome:?}"
        );
        let requests = sim.requests("POST /v2/bot/message/push").await;
        assert_eq!(requests.len(), 2);
        for request in &requests {
            assert_eq!(request["retryKey"], key.hyphenated().to_string());
        }
        assert_eq!(requests[1]["status"], 409);
        let delivered: Vec<_> = sim.messages().await.into_iter().filter(|m| m["to"] == to).collect();
        assert_eq!(delivered.len(), 1, "the customer got the message once");
    }

    #[tokio::test]
    async fn every_call_round_trips() {
        let sim = Sim::start().await;
        let line = sim.line(config(), LINE_TOKEN);
        let hook = Url::parse("https://chat.example/switchboard/support/contoso-line/webhook").unwrap();
        line.bot_info().await.unwrap();
        line.set_webhook_endpoint(Some(&hook)).await.unwrap();
        assert_eq!(line.webhook_endpoint().await.unwrap().endpoint, hook.as_str());
        let pushed = line
            .push(
                "U0123456789abcdef0123456789abcdef",
                &[LineMessage::Text { text: "hi".into() }],
                Uuid::new_v4(),
                SendOptions::default(),
            )
            .await
            .unwrap();
        assert!(matches!(pushed, PushOutcome::Sent(ref sent) if sent.len() == 1), "{pushed:?}");

        let twilio = sim.twilio(config(), TWILIO_TOKEN);
        assert_eq!(twilio.account().await.unwrap().status, AccountStatus::Active);
        let numbers = twilio.incoming_numbers(Some(NUMBER)).await.unwrap();
        assert_eq!(numbers.len(), 1);
        let number = twilio.set_number_webhook(&numbers[0].sid, Some(&hook)).await.unwrap();
        assert_eq!(number.sms_url.as_deref(), Some(hook.as_str()));

        let content = twilio
            .create_content(&NewContent {
                friendly_name: Some("appointment_reminder_en".into()),
                language: "en".into(),
                variables: [("1".to_owned(), "Ann".to_owned())].into(),
                types: ContentTypes { text: Some(TextContent { body: "Hi {{1}}".into() }), media: None },
            })
            .await
            .unwrap();
        assert_eq!(twilio.approval(&content.sid).await.unwrap().status, ApprovalStatus::Unsubmitted);
        let submitted =
            twilio.submit_for_approval(&content.sid, "appointment_reminder", WhatsAppCategory::Utility).await.unwrap();
        assert_eq!(submitted.status, ApprovalStatus::Received);
        twilio.delete_content(&content.sid).await.unwrap();
        let err = twilio.approval(&content.sid).await.unwrap_err();
        assert!(matches!(err, ProviderError::NotFound { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn webhooks_are_cleared() {
        let sim = Sim::start().await;
        let hook = Url::parse("https://chat.example/switchboard/support/contoso/webhook").unwrap();

        let line = sim.line(config(), LINE_TOKEN);
        line.set_webhook_endpoint(Some(&hook)).await.unwrap();
        line.set_webhook_endpoint(None).await.unwrap();
        let err = line.webhook_endpoint().await.unwrap_err();
        assert!(matches!(err, ProviderError::NotFound { operation: Operation::LineGetWebhook, .. }), "{err:?}");

        let twilio = sim.twilio(config(), TWILIO_TOKEN);
        let sid = twilio.incoming_numbers(Some(NUMBER)).await.unwrap().remove(0).sid;
        twilio.set_number_webhook(&sid, Some(&hook)).await.unwrap();
        let cleared = twilio.set_number_webhook(&sid, None).await.unwrap();
        assert_eq!(cleared.sms_url, None);
        assert_eq!(cleared.sms_method.as_deref(), Some("POST"), "clearing leaves the method");
        assert_eq!(twilio.incoming_numbers(Some(NUMBER)).await.unwrap()[0].sms_url, None);
    }

    #[tokio::test]
    async fn contents_are_listed_across_pages() {
        let sim = Sim::start().await;
        let twilio = sim.twilio(config(), TWILIO_TOKEN);
        // More than one page of the client's page size once one is deleted.
        let mut created = Vec::new();
        for i in 0..202 {
            let content = twilio
                .create_content(&NewContent {
                    friendly_name: Some(format!("reminder_{i}")),
                    language: "en".into(),
                    variables: Default::default(),
                    types: ContentTypes { text: Some(TextContent { body: "Hi".into() }), media: None },
                })
                .await
                .unwrap();
            created.push(content.sid);
        }
        twilio.delete_content(&created[1]).await.unwrap();

        let listed = twilio.contents().await.unwrap();
        let sids: Vec<_> = listed.iter().map(|c| c.sid.clone()).collect();
        let expected: Vec<_> = created.iter().filter(|sid| **sid != created[1]).cloned().collect();
        assert_eq!(sids, expected, "every content but the deleted one, in creation order");
        assert_eq!(listed[0].friendly_name.as_deref(), Some("reminder_0"));
        assert_eq!(listed[0].language.as_deref(), Some("en"));
        assert_eq!(sim.requests("GET /v1/Content").await.len(), 2, "two pages were read");
    }
}

/// What the provider clients reported, in order.
#[derive(Debug, Default)]
struct Reported(Mutex<Vec<(Operation, CallOutcome)>>);

impl CallObserver for Reported {
    fn observe(&self, operation: Operation, outcome: CallOutcome) {
        self.0.lock().unwrap().push((operation, outcome));
    }
}

#[tokio::test]
async fn the_observer_hears_of_every_call_once_after_its_retries() {
    let (mock, base) = Mock::start().await;
    let reported = Arc::new(Reported::default());
    let providers = providers(&base, config()).with_observer(reported.clone());
    let client = providers.line(LineCredentials { channel_access_token: Secret::new(LINE_TOKEN) });
    let taken = || std::mem::take(&mut *reported.0.lock().unwrap());

    mock.on("GET /v2/bot/info", [Canned::json(500, json!({"message": "Internal server error"})), bot_info()]);
    client.bot_info().await.unwrap();
    assert_eq!(mock.seen("GET /v2/bot/info").len(), 2);
    assert_eq!(taken(), [(Operation::LineBotInfo, CallOutcome::Success)], "a retried call counts once");

    mock.on("GET /v2/bot/info", [Canned::json(200, json!({"userId": "U1"}))]);
    client.bot_info().await.unwrap_err();
    assert_eq!(taken(), [(Operation::LineBotInfo, CallOutcome::InvalidResponse)], "an unreadable body is not also a success");

    mock.on("GET /v2/bot/info", [Canned::json(429, json!({"message": "Too many requests"})).header("retry-after", "60")]);
    client.bot_info().await.unwrap_err();
    assert_eq!(taken(), [(Operation::LineBotInfo, CallOutcome::RateLimited)]);

    let wrong = providers.line(LineCredentials { channel_access_token: Secret::new(WRONG_LINE_TOKEN) });
    wrong.bot_info().await.unwrap_err();
    assert_eq!(taken(), [(Operation::LineBotInfo, CallOutcome::Unauthorized)]);

    mock.on("GET /v2/bot/message/m1/content", [Canned::json(200, json!("bytes"))]);
    client.message_content("m1", 1024).await.unwrap();
    assert_eq!(taken(), [(Operation::LineContent, CallOutcome::Success)], "a reply whose body was taken still counts");

    client.push("U1", &[], Uuid::new_v4(), SendOptions::default()).await.unwrap_err();
    assert_eq!(taken(), [], "a request refused before sending is no call");

    let twilio = providers.twilio(TwilioCredentials { account_sid: ACCOUNT_SID.into(), auth_token: Secret::new(TWILIO_TOKEN) });
    twilio.account().await.unwrap_err();
    assert_eq!(taken(), [(Operation::TwilioAccount, CallOutcome::NotFound)], "the script has no account: 404");
}
