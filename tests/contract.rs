//! Contract tests against the providers' own OpenAPI documents: by default the ones a fresh clone
//! can have (Twilio's from the npm registry, LINE's as the extract in `tests/contract/extracts/`,
//! which `extract.rs` writes and checks against the full document whenever that is present);
//! `tests/contract/prism.sh` says which file each proxy reads.
//!
//! Every request goes through Prism (`tests/contract/prism.sh`), which runs one validating proxy
//! (`prism proxy --errors`) per document in front of an upstream: Prism checks the request
//! against the document (422 when it does not match), forwards it, and checks the upstream's
//! answer (500 when that does not match, an `sl-violations` header for warnings).
//! `tests/contract/README.md` records exactly how Prism reports each case.
//!
//! The tests need Prism installed (`tests/contract/prism.sh install`, which `tests/run.sh` runs);
//! without it they print why they are skipped and pass. They start the proxies themselves and
//! stop them at the end (a watchdog stops them too if this process dies).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use url::Url;

#[path = "contract/extract.rs"]
mod extract;

// ---------------------------------------------------------------------------------------------
// endpoints.env
// ---------------------------------------------------------------------------------------------

/// Parses an `endpoints.env` written by `prism.sh start`: `NAME=URL` lines; blank lines and
/// `#` comments are ignored. Every value must be an absolute URL.
fn parse_endpoints_env(text: &str) -> Result<BTreeMap<String, Url>, String> {
    let mut endpoints = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: expected NAME=URL, got {line:?}", number + 1))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
            return Err(format!("line {}: bad name {name:?}", number + 1));
        }
        let value = value.trim().trim_matches('"');
        let url = Url::parse(value).map_err(|e| format!("line {}: {name}: bad URL {value:?}: {e}", number + 1))?;
        if endpoints.insert(name.to_owned(), url).is_some() {
            return Err(format!("line {}: {name} given twice", number + 1));
        }
    }
    Ok(endpoints)
}

// ---------------------------------------------------------------------------------------------
// Prism's reports
// ---------------------------------------------------------------------------------------------

/// One finding of Prism's validator, as it appears in the `sl-violations` header and in the
/// `validation` array of its `application/problem+json` bodies.
#[derive(Debug, Clone, PartialEq)]
struct Violation {
    location: Vec<String>,
    severity: String,
    code: Option<String>,
    message: String,
}

impl Violation {
    fn from_json(value: &Value) -> Self {
        let location = value
            .get("location")
            .and_then(Value::as_array)
            .map(|parts| parts.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect())
            .unwrap_or_default();
        let code = value.get("code").map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned));
        Self {
            location,
            severity: value.get("severity").and_then(Value::as_str).unwrap_or("Error").to_owned(),
            code,
            message: value.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
        }
    }

    fn describe(&self) -> String {
        let location = if self.location.is_empty() { "-".to_owned() } else { self.location.join(".") };
        match &self.code {
            Some(code) => format!("[{}] {location} ({code}): {}", self.severity, self.message),
            None => format!("[{}] {location}: {}", self.severity, self.message),
        }
    }
}

/// What Prism said about one exchange, when it said anything.
#[derive(Debug, Clone)]
struct PrismReport {
    /// The part after `#` of a Prism problem type (`UNPROCESSABLE_ENTITY`, `VIOLATIONS`,
    /// `UNAUTHORIZED`, `NO_PATH_MATCHED_ERROR`, ...), or `FetchError`; `None` when Prism only
    /// added an `sl-violations` header to a forwarded answer.
    problem: Option<String>,
    title: String,
    violations: Vec<Violation>,
}

impl PrismReport {
    /// Whether the exchange is clean apart from the given known false positives.
    fn violations_except(&self, known: &[KnownFalsePositive]) -> Vec<&Violation> {
        self.violations.iter().filter(|v| !known.iter().any(|k| k.matches(v))).collect()
    }
}

/// Reads Prism's verdict off a response that came through a Prism proxy: the `sl-violations`
/// header (response violations, and warnings on answers that were passed through), and Prism's
/// own `application/problem+json` errors (request violations with 422, response violations with
/// 500 under `--errors`, 401 for a missing or wrong security scheme, 404/405 for a route that is
/// not in the document, `FetchError` when the upstream cannot be reached). `None` when Prism
/// reported nothing.
fn prism_report(headers: &HeaderMap, body: &[u8]) -> Option<PrismReport> {
    let mut violations: Vec<Violation> = headers
        .get_all("sl-violations")
        .iter()
        .filter_map(|v| serde_json::from_slice::<Vec<Value>>(v.as_bytes()).ok())
        .flatten()
        .map(|v| Violation::from_json(&v))
        .collect();
    let mut problem = None;
    let mut title = String::new();
    let is_problem = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem && let Ok(json) = serde_json::from_slice::<Value>(body) {
        let kind = json.get("type").and_then(Value::as_str).unwrap_or("");
        let prism_kind = kind.strip_prefix("https://stoplight.io/prism/errors#").or((kind == "FetchError").then_some(kind));
        if let Some(kind) = prism_kind {
            problem = Some(kind.to_owned());
            title = json.get("title").and_then(Value::as_str).unwrap_or("").to_owned();
            let detail = json.get("detail").and_then(Value::as_str).unwrap_or("");
            if !detail.is_empty() && kind != "UNPROCESSABLE_ENTITY" && kind != "VIOLATIONS" {
                title = format!("{title}: {detail}");
            }
            for v in json.get("validation").and_then(Value::as_array).into_iter().flatten() {
                let v = Violation::from_json(v);
                if !violations.contains(&v) {
                    violations.push(v);
                }
            }
        }
    }
    (problem.is_some() || !violations.is_empty()).then_some(PrismReport { problem, title, violations })
}

/// A readable account of what Prism reported about one request, for a panic message.
fn describe_prism_report(method: &Method, path: &str, status: StatusCode, report: &PrismReport) -> String {
    let mut out = match &report.problem {
        Some(problem) => format!("Prism answered {method} {path} with {status} {problem}: {}", report.title),
        None => format!("Prism passed {method} {path} through with {status} and these violations:"),
    };
    for v in &report.violations {
        out.push_str("\n    - ");
        out.push_str(&v.describe());
    }
    let side = |prefix: &str| report.violations.iter().any(|v| v.location.first().is_some_and(|l| l == prefix));
    if report.problem.as_deref() == Some("UNPROCESSABLE_ENTITY") || (!side("response") && !report.violations.is_empty()) {
        out.push_str("\n    (the client's request does not match the provider's document)");
    } else if side("response") {
        out.push_str("\n    (the simulator's answer does not match the provider's document)");
    }
    out
}

/// A violation Prism reports although the request is right, with the reason.
#[derive(Clone, Copy)]
struct KnownFalsePositive {
    location: &'static [&'static str],
    code: &'static str,
    why: &'static str,
}

impl KnownFalsePositive {
    fn matches(&self, v: &Violation) -> bool {
        v.location.iter().map(String::as_str).eq(self.location.iter().copied()) && v.code.as_deref() == Some(self.code)
    }
}

/// Prism 5.x reads a form-urlencoded body into a flat map, keeping the last of repeated keys, and
/// only builds arrays for properties with an explicit `encoding` style (which Twilio's documents do
/// not declare). So Twilio's repeated `MediaUrl=...&MediaUrl=...` (what its SDKs send) is
/// reported as "must be array" (stoplightio/prism issue 2473). Only this exact finding is ignored.
const KNOWN_FALSE_POSITIVES: &[KnownFalsePositive] = &[KnownFalsePositive {
    location: &["body", "MediaUrl"],
    code: "type",
    why: "Prism cannot read repeated form keys as an array (stoplightio/prism#2473)",
}];

// ---------------------------------------------------------------------------------------------
// A recording pass-through in front of a Prism proxy
// ---------------------------------------------------------------------------------------------

/// One request that went through a [`Recorder`].
#[derive(Debug, Clone)]
struct Exchange {
    method: Method,
    path: String,
    status: StatusCode,
    report: Option<PrismReport>,
}

/// A loopback pass-through that forwards every request unchanged to a Prism proxy and keeps what
/// Prism answered, so that a test can see Prism's verdict on calls made by a client that only
/// returns an error value.
#[derive(Clone)]
struct Recorder {
    url: Url,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

#[derive(Clone)]
struct RecorderState {
    target: Url,
    http: reqwest::Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"];

impl Recorder {
    async fn start(target: Url) -> Self {
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let state = RecorderState { target, http: reqwest::Client::new(), exchanges: Arc::clone(&exchanges) };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the recorder");
        let addr = listener.local_addr().expect("the recorder's address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: Url::parse(&format!("http://{addr}")).expect("a loopback URL"), exchanges }
    }

    /// The exchanges since the last call.
    fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.exchanges.lock().expect("recorder lock"))
    }
}

async fn forward(State(state): State<RecorderState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut url = state.target.clone();
    url.set_path("");
    let url = format!("{}{}", url.as_str().trim_end_matches('/'), path_and_query);
    let body = to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let mut headers = parts.headers.clone();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let sent = state.http.request(parts.method.clone(), &url).headers(headers).body(body).send().await;
    let (status, headers, body) = match sent {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            (status, headers, body)
        }
        Err(e) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::from(format!("recorder: {e}"))),
    };
    let report = prism_report(&headers, &body);
    state.exchanges.lock().expect("recorder lock").push(Exchange {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        status,
        report,
    });
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Starting and stopping Prism
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prism_script() -> PathBuf {
    repo_root().join("tests/contract/prism.sh")
}

/// Says on stderr (past the test harness's capture) why a test does nothing.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "contract test {test}: SKIPPED: {why}");
}

/// `Err(reason)` when Prism is not installed; never installs it.
fn prism_installed() -> Result<(), String> {
    let out = Command::new("bash")
        .arg(prism_script())
        .arg("check")
        .output()
        .map_err(|e| format!("cannot run tests/contract/prism.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "Prism is not installed ({}); run `tests/contract/prism.sh install` (tests/run.sh does)",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Running Prism proxies; stopped when dropped.
struct PrismProxies {
    state: tempfile::TempDir,
    endpoints: BTreeMap<String, Url>,
}

impl PrismProxies {
    /// Starts the proxies named in `only` (all when empty) in front of `upstream`.
    fn start(upstream: &Url, only: &[&str]) -> Self {
        let state = tempfile::Builder::new().prefix("switchboard-prism.").tempdir().expect("a state directory");
        let mut command = Command::new("bash");
        command
            .arg(prism_script())
            .arg("start")
            .arg(state.path())
            .arg(upstream.as_str())
            .env("SWITCHBOARD_PRISM_WATCH_PID", std::process::id().to_string());
        if !only.is_empty() {
            command.env("SWITCHBOARD_PRISM_ONLY", only.join(" "));
        }
        let out = command.output().expect("run tests/contract/prism.sh start");
        assert!(
            out.status.success(),
            "tests/contract/prism.sh start failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // Which file each proxy reads (the packaged documents or the full ones), for the test output.
        let _ = std::io::stderr().write_all(&out.stderr);
        let env_file = state.path().join("endpoints.env");
        let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| panic!("read {}: {e}", env_file.display()));
        let endpoints = parse_endpoints_env(&text).unwrap_or_else(|e| panic!("{}: {e}", env_file.display()));
        Self { state, endpoints }
    }

    fn url(&self, name: &str) -> Url {
        self.endpoints.get(name).cloned().unwrap_or_else(|| panic!("endpoints.env has no {name}: {:?}", self.endpoints))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for PrismProxies {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(prism_script()).arg("stop").arg(self.state.path()).status();
    }
}

// ---------------------------------------------------------------------------------------------
// Tests of the harness itself (no Prism needed)
// ---------------------------------------------------------------------------------------------

#[test]
fn endpoints_env_is_parsed() {
    let text = "# Written by prism.sh\n\nLINE_API=http://127.0.0.1:4010\nTWILIO_API = http://127.0.0.1:4011/\n";
    let endpoints = parse_endpoints_env(text).unwrap();
    assert_eq!(endpoints.len(), 2);
    assert_eq!(endpoints["LINE_API"].as_str(), "http://127.0.0.1:4010/");
    assert_eq!(endpoints["TWILIO_API"].port(), Some(4011));
    assert!(parse_endpoints_env("LINE_API http://x").is_err());
    assert!(parse_endpoints_env("LINE_API=not a url").is_err());
    assert!(parse_endpoints_env("A=http://x\nA=http://y").is_err());
}

fn problem_headers(extra: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let Some(v) = extra {
        headers.insert(HeaderName::from_static("sl-violations"), HeaderValue::from_str(v).unwrap());
    }
    headers
}

/// Prism 5.14.2's answer to a request that does not match the document, as recorded by hand.
const REQUEST_VIOLATION: &str = r#"{"type":"https://stoplight.io/prism/errors#UNPROCESSABLE_ENTITY","title":"Invalid request","status":422,"detail":"Your request is not valid and no HTTP validation response was found in the spec, so Prism is generating this error for you.","validation":[{"location":["body","endpoint"],"severity":"Error","code":"type","message":"Request body property endpoint must be string"}]}"#;

/// Prism 5.14.2's answer when the upstream's answer does not match the document (`--errors`).
const RESPONSE_VIOLATION_HEADER: &str = r#"[{"location":["response","body"],"severity":"Error","code":"required","message":"Response body must have required property 'basicId'"}]"#;
const RESPONSE_VIOLATION: &str = r#"{"type":"https://stoplight.io/prism/errors#VIOLATIONS","title":"Request/Response not valid","status":500,"detail":"Your request/response is not valid and the --errors flag is set, so Prism is generating this error for you.","validation":[{"location":["response","body"],"severity":"Error","code":"required","message":"Response body must have required property 'basicId'"}]}"#;

#[test]
fn prism_reports_are_read() {
    let report = prism_report(&problem_headers(None), REQUEST_VIOLATION.as_bytes()).unwrap();
    assert_eq!(report.problem.as_deref(), Some("UNPROCESSABLE_ENTITY"));
    assert_eq!(report.violations.len(), 1);
    let text = describe_prism_report(&Method::PUT, "/v2/bot/channel/webhook/endpoint", StatusCode::UNPROCESSABLE_ENTITY, &report);
    assert!(text.contains("422 Unprocessable Entity UNPROCESSABLE_ENTITY"), "{text}");
    assert!(text.contains("[Error] body.endpoint (type): Request body property endpoint must be string"), "{text}");
    assert!(text.contains("the client's request"), "{text}");

    // The header and the body carry the same finding: it is listed once.
    let headers = problem_headers(Some(RESPONSE_VIOLATION_HEADER));
    let report = prism_report(&headers, RESPONSE_VIOLATION.as_bytes()).unwrap();
    assert_eq!(report.problem.as_deref(), Some("VIOLATIONS"));
    assert_eq!(report.violations.len(), 1);
    let text = describe_prism_report(&Method::GET, "/v2/bot/info", StatusCode::INTERNAL_SERVER_ERROR, &report);
    assert!(text.contains("response.body (required)"), "{text}");
    assert!(text.contains("the simulator's answer"), "{text}");

    // A warning on a passed-through answer.
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("sl-violations"),
        HeaderValue::from_static(r#"[{"location":["response"],"severity":"Warning","message":"Unable to match the returned status code with those defined in the document: 200"}]"#),
    );
    let report = prism_report(&headers, b"{}").unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.violations[0].severity, "Warning");

    // An upstream's own problem+json is not Prism's.
    let other = r#"{"type":"https://example.com/x","title":"t"}"#;
    assert!(prism_report(&problem_headers(None), other.as_bytes()).is_none());
    assert!(prism_report(&HeaderMap::new(), b"{\"ok\":true}").is_none());

    // The known false positive is recognised, and only it.
    let media = Violation::from_json(
        &serde_json::json!({"location":["body","MediaUrl"],"severity":"Error","code":"type","message":"Request body property MediaUrl must be array"}),
    );
    let report = PrismReport { problem: Some("UNPROCESSABLE_ENTITY".into()), title: String::new(), violations: vec![media] };
    assert!(report.violations_except(KNOWN_FALSE_POSITIVES).is_empty());
    let report = prism_report(&problem_headers(None), REQUEST_VIOLATION.as_bytes()).unwrap();
    assert_eq!(report.violations_except(KNOWN_FALSE_POSITIVES).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The harness against real Prism and a tiny upstream
// ---------------------------------------------------------------------------------------------

/// A tiny LINE upstream: a spec-valid bot info, an empty 200 for the webhook endpoint, and a
/// profile that lacks the required `displayName` (to provoke a response violation). Counts the
/// requests it receives.
async fn tiny_line_upstream() -> (Url, Arc<Mutex<Vec<String>>>) {
    use axum::routing::{get, put};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = |seen: Arc<Mutex<Vec<String>>>, what: &'static str| {
        seen.lock().unwrap().push(what.to_owned());
    };
    let (s1, s2, s3) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
    let app = axum::Router::new()
        .route(
            "/v2/bot/info",
            get(move || async move {
                record(s1, "bot info");
                axum::Json(serde_json::json!({
                    "userId": "U0123456789abcdef0123456789abcdef",
                    "basicId": "@123abcde",
                    "displayName": "Contract",
                    "chatMode": "chat",
                    "markAsReadMode": "manual"
                }))
            }),
        )
        .route(
            "/v2/bot/channel/webhook/endpoint",
            put(move || async move {
                record(s2, "set webhook");
                StatusCode::OK
            }),
        )
        .route(
            "/v2/bot/profile/{user}",
            get(move || async move {
                record(s3, "profile");
                axum::Json(serde_json::json!({"userId": "U1"}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (Url::parse(&format!("http://{addr}")).unwrap(), seen)
}

/// Proves the harness: a valid request passes Prism clean, an invalid request is stopped by
/// Prism before the upstream with a readable report, a missing bearer token is refused, and an
/// upstream answer that breaks the document is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_catches_request_and_response_violations() {
    if let Err(why) = prism_installed() {
        skip("harness_catches_request_and_response_violations", &why);
        return;
    }
    let (upstream, seen) = tiny_line_upstream().await;
    let proxies = tokio::task::spawn_blocking(move || PrismProxies::start(&upstream, &["line"])).await.unwrap();
    let recorder = Recorder::start(proxies.url("LINE_API")).await;
    let base = recorder.url.as_str().trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let bearer = "Bearer contract-token";

    // Valid: forwarded, answered, nothing reported.
    let ok = http.get(format!("{base}/v2/bot/info")).header("authorization", bearer).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let exchanges = recorder.take();
    assert_eq!(exchanges.len(), 1);
    assert!(exchanges[0].report.is_none(), "{:?}", exchanges[0].report);

    let ok = http
        .put(format!("{base}/v2/bot/channel/webhook/endpoint"))
        .header("authorization", bearer)
        .json(&serde_json::json!({"endpoint": "https://example.com/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(recorder.take()[0].report.is_none());

    // Invalid request body: 422 from Prism, never forwarded.
    let before = seen.lock().unwrap().len();
    let bad = http
        .put(format!("{base}/v2/bot/channel/webhook/endpoint"))
        .header("authorization", bearer)
        .json(&serde_json::json!({"endpoint": 123}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let exchange = recorder.take().remove(0);
    let report = exchange.report.as_ref().expect("Prism reported the bad body");
    let text = describe_prism_report(&exchange.method, &exchange.path, exchange.status, report);
    assert!(text.contains("body.endpoint (type)"), "{text}");
    assert_eq!(seen.lock().unwrap().len(), before, "Prism forwarded an invalid request");

    // No bearer token: 401 from Prism.
    let unauthorized = http.get(format!("{base}/v2/bot/info")).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(recorder.take()[0].report.as_ref().and_then(|r| r.problem.as_deref()), Some("UNAUTHORIZED"));

    // The upstream's answer lacks a required property: 500 from Prism with the finding.
    let broken = http.get(format!("{base}/v2/bot/profile/U1")).header("authorization", bearer).send().await.unwrap();
    assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let exchange = recorder.take().remove(0);
    let report = exchange.report.as_ref().expect("Prism reported the bad answer");
    let text = describe_prism_report(&exchange.method, &exchange.path, exchange.status, report);
    assert!(text.contains("response.body (required)") && text.contains("displayName"), "{text}\n{}", proxies.log("line"));

    // A path that is not in the document.
    let missing = http.get(format!("{base}/v2/bot/nothing")).header("authorization", bearer).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(recorder.take()[0].report.as_ref().and_then(|r| r.problem.as_deref()), Some("NO_PATH_MATCHED_ERROR"));
}

// ---------------------------------------------------------------------------------------------
// Every client call, through Prism, against the simulator
// ---------------------------------------------------------------------------------------------

mod clients {
    use std::collections::BTreeMap;
    use std::fmt::Debug;
    use std::io::Write as _;
    use std::net::SocketAddr;

    use serde_json::{Value, json};
    use switchboard::providers::line::{LineMessage, PushOutcome, SendOptions};
    use switchboard::providers::twilio::{
        ContentTypes, MessageContent, MessageSender, NewContent, OutgoingMessage, TextContent, WhatsAppCategory,
    };
    use switchboard::providers::{
        ClientConfig, LineCredentials, ProviderEndpoints, ProviderError, Providers, RetryPolicy, Secret, TwilioCredentials,
    };
    use switchboard::simulator::SimulatorConfig;
    use switchboard::simulator::config::{
        DEMO_LINE_TOKEN, DEMO_LINE_USER, DEMO_TWILIO_ACCOUNT, DEMO_TWILIO_SERVICE, DEMO_TWILIO_TOKEN,
    };
    use url::Url;
    use uuid::Uuid;

    use super::{
        KNOWN_FALSE_POSITIVES, KnownFalsePositive, PrismProxies, Recorder, describe_prism_report, prism_installed, skip,
    };

    /// The demo account's WhatsApp number.
    const BUSINESS_NUMBER: &str = "+14155550100";
    /// The customer the test writes to.
    const CUSTOMER_NUMBER: &str = "+15555550123";

    /// Why the calls that clear a webhook URL break the documents: they send the URL empty, and
    /// the documents declare every such URL `format: uri`, which no empty string is. Prism
    /// therefore stops these requests (422) before the simulator.
    const CLEARED_URL: &str = "clearing sends the URL empty, and the document's `format: uri` admits no empty value";
    /// LINE's `endpoint`; its document puts `minLength: 0` beside `format: uri`.
    const CLEARED_LINE_ENDPOINT: KnownFalsePositive =
        KnownFalsePositive { location: &["body", "endpoint"], code: "format", why: CLEARED_URL };
    /// A phone number's `SmsUrl`.
    const CLEARED_SMS_URL: KnownFalsePositive =
        KnownFalsePositive { location: &["body", "SmsUrl"], code: "format", why: CLEARED_URL };
    /// A Messaging Service's `InboundRequestUrl`.
    const CLEARED_INBOUND_URL: KnownFalsePositive =
        KnownFalsePositive { location: &["body", "InboundRequestUrl"], code: "format", why: CLEARED_URL };

    /// Runs each client call and collects what Prism said about it.
    struct Contract {
        recorders: Vec<(&'static str, Recorder)>,
        passed: Vec<String>,
        notes: Vec<String>,
        failures: Vec<String>,
    }

    impl Contract {
        /// Checks one client call: it reached Prism, Prism reported nothing (or only a known
        /// false positive), and the call succeeded.
        fn check<T: Debug>(&mut self, call: &str, result: Result<T, ProviderError>) -> Option<T> {
            self.check_allowing(call, &[], result)
        }

        /// [`Self::check`], also passing the findings in `allowed` (this call's known deviations
        /// from the document); each one found is noted in the summary.
        fn check_allowing<T: Debug>(
            &mut self,
            call: &str,
            allowed: &[KnownFalsePositive],
            result: Result<T, ProviderError>,
        ) -> Option<T> {
            let known_here: Vec<KnownFalsePositive> = KNOWN_FALSE_POSITIVES.iter().chain(allowed).copied().collect();
            let exchanges: Vec<_> =
                self.recorders.iter().flat_map(|(name, r)| r.take().into_iter().map(move |e| (*name, e))).collect();
            let mut problems = Vec::new();
            let mut known = Vec::new();
            if exchanges.is_empty() {
                problems.push("no request reached Prism (is the client's base URL the proxy's?)".to_owned());
            }
            for (proxy, exchange) in &exchanges {
                let Some(report) = &exchange.report else { continue };
                let remaining = report.violations_except(&known_here);
                let only_known = remaining.is_empty()
                    && !report.violations.is_empty()
                    && matches!(report.problem.as_deref(), None | Some("UNPROCESSABLE_ENTITY"));
                if only_known {
                    for fp in &known_here {
                        if report.violations.iter().any(|v| fp.matches(v)) {
                            known.push(format!(
                                "{} {} ({proxy}): ignored {}: {}",
                                exchange.method,
                                exchange.path,
                                fp.location.join("."),
                                fp.why
                            ));
                        }
                    }
                } else {
                    problems.push(format!(
                        "[{proxy}] {}",
                        describe_prism_report(&exchange.method, &exchange.path, exchange.status, report)
                    ));
                }
            }
            let value = match result {
                Ok(value) => Some(value),
                // Prism refused the request for a known false positive only: the client's error
                // is Prism's 422, not the simulator's answer.
                Err(_) if problems.is_empty() && !known.is_empty() => None,
                Err(error) => {
                    problems.push(format!("the client returned an error: {error}"));
                    None
                }
            };
            self.notes.extend(known.into_iter().map(|k| format!("{call}: {k}")));
            if problems.is_empty() {
                self.passed.push(call.to_owned());
            } else {
                self.failures.push(format!("{call}:\n  {}", problems.join("\n  ")));
            }
            value
        }
    }

    /// A webhook receiver that answers 200 to anything: the URL LINE's webhook test and the
    /// simulated customers call.
    async fn receiver() -> Url {
        let app = axum::Router::new().fallback(|| async { "OK" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    /// A call to the simulator's admin API (directly, not through Prism).
    async fn admin(http: &reqwest::Client, simulator: &str, path: &str, body: Value) -> Value {
        let answer = http.post(format!("{simulator}{path}")).json(&body).send().await.expect("admin API");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "admin {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Every LINE and Twilio client call, once each on its success path, through Prism in front
    /// of the simulator: the requests must match the providers' documents, and so must the
    /// simulator's answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_client_call_passes_prism() {
        if let Err(why) = prism_installed() {
            skip("every_client_call_passes_prism", &why);
            return;
        }
        let simulator = switchboard::simulator::start(SimulatorConfig::demo(), SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start the simulator");
        let sim = simulator.base_url().to_owned();
        let upstream = Url::parse(&sim).unwrap();
        let proxies = tokio::task::spawn_blocking(move || PrismProxies::start(&upstream, &[])).await.unwrap();

        let line = Recorder::start(proxies.url("LINE_API")).await;
        let twilio_api = Recorder::start(proxies.url("TWILIO_API")).await;
        let content = Recorder::start(proxies.url("TWILIO_CONTENT")).await;
        let messaging_v1 = Recorder::start(proxies.url("TWILIO_MESSAGING_V1")).await;
        let messaging_v2 = Recorder::start(proxies.url("TWILIO_MESSAGING_V2")).await;
        assert_eq!(proxies.url("LINE_API"), proxies.url("LINE_DATA_API"), "one document serves both LINE hosts");

        let endpoints = |messaging: &Recorder| ProviderEndpoints {
            line_api: line.url.clone(),
            line_data_api: line.url.clone(),
            twilio_api: twilio_api.url.clone(),
            twilio_content: content.url.clone(),
            twilio_messaging: messaging.url.clone(),
        };
        // One attempt per call: a violation is a 4xx or 5xx, and retrying it only repeats it.
        let config = ClientConfig { retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }, ..ClientConfig::default() };
        let v1 = Providers::new(endpoints(&messaging_v1), config.clone()).expect("build the clients");
        let v2 = Providers::new(endpoints(&messaging_v2), config).expect("build the clients");
        let line_client = v1.line(LineCredentials { channel_access_token: Secret::new(DEMO_LINE_TOKEN) });
        let twilio_creds =
            TwilioCredentials { account_sid: DEMO_TWILIO_ACCOUNT.to_owned(), auth_token: Secret::new(DEMO_TWILIO_TOKEN) };
        let twilio = v1.twilio(twilio_creds.clone());
        let twilio_v2 = v2.twilio(twilio_creds.clone());

        let mut contract = Contract {
            recorders: vec![
                ("line", line.clone()),
                ("twilio-api", twilio_api.clone()),
                ("twilio-content", content.clone()),
                ("twilio-messaging-v1", messaging_v1.clone()),
                ("twilio-messaging-v2", messaging_v2.clone()),
            ],
            passed: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
        };
        let http = reqwest::Client::new();
        let hook = receiver().await;
        let line_hook = hook.join("line").unwrap();
        let twilio_hook = hook.join("twilio").unwrap();

        // ---- LINE ----
        contract.check("LINE bot info", line_client.bot_info().await);
        contract.check("LINE set webhook endpoint", line_client.set_webhook_endpoint(Some(&line_hook)).await);
        contract.check("LINE get webhook endpoint", line_client.webhook_endpoint().await);
        contract.check("LINE test webhook endpoint (the channel's)", line_client.test_webhook_endpoint(None).await);
        contract.check("LINE test webhook endpoint (given URL)", line_client.test_webhook_endpoint(Some(&line_hook)).await);

        // A customer sends an image: a reply token and content to download.
        let event = admin(
            &http,
            &sim,
            "/__sim/customer/line",
            json!({"type": "image", "url": line_hook.as_str(), "userId": DEMO_LINE_USER}),
        )
        .await;
        let reply_token = event["replyToken"].as_str().expect("a reply token").to_owned();
        let message_id = event["messageId"].as_str().expect("a message id").to_owned();
        let read_token = event["payload"]["events"][0]["message"]["markAsReadToken"].as_str().expect("a markAsReadToken").to_owned();

        contract.check("LINE profile", line_client.profile(DEMO_LINE_USER).await);
        let text = LineMessage::Text { text: "Thanks, we are on it.".into() };
        contract.check("LINE reply", line_client.reply(&reply_token, std::slice::from_ref(&text), SendOptions::default()).await);
        let every_type = vec![
            text.clone(),
            LineMessage::Image {
                original_content_url: "https://example.com/a.jpg".into(),
                preview_image_url: "https://example.com/a-small.jpg".into(),
            },
            LineMessage::Video {
                original_content_url: "https://example.com/v.mp4".into(),
                preview_image_url: "https://example.com/v.jpg".into(),
            },
            LineMessage::Audio { original_content_url: "https://example.com/a.m4a".into(), duration: 60000 },
            LineMessage::Sticker { package_id: "446".into(), sticker_id: "1988".into() },
        ];
        let pushed = contract.check(
            "LINE push (every message type, retry key, notification disabled)",
            line_client.push(DEMO_LINE_USER, &every_type, Uuid::new_v4(), SendOptions { notification_disabled: true }).await,
        );
        if let Some(outcome) = pushed {
            assert!(matches!(outcome, PushOutcome::Sent(_)), "{outcome:?}");
        }
        contract.check("LINE mark as read", line_client.mark_as_read(&read_token).await);
        contract.check("LINE loading animation", line_client.show_loading(DEMO_LINE_USER, 20).await);
        // Prism re-encodes binary bodies as UTF-8 (README), so only the call is checked here.
        contract.check("LINE message content", line_client.message_content(&message_id, 1024 * 1024).await);
        contract.check_allowing(
            "LINE clear webhook endpoint",
            &[CLEARED_LINE_ENDPOINT],
            line_client.set_webhook_endpoint(None).await,
        );

        // ---- Twilio ----
        contract.check("Twilio account", twilio.account().await);
        let numbers = contract.check("Twilio list numbers", twilio.incoming_numbers(None).await);
        contract.check("Twilio list numbers (by number)", twilio.incoming_numbers(Some(BUSINESS_NUMBER)).await);
        if let Some(senders) = contract.check("Twilio list WhatsApp senders", twilio_v2.whatsapp_senders().await) {
            assert!(senders.iter().any(|s| s.sender_id.as_deref() == Some(&format!("whatsapp:{BUSINESS_NUMBER}"))), "{senders:?}");
        }
        if let Some(pool) = contract.check("Twilio list Messaging Service numbers", twilio.service_numbers(DEMO_TWILIO_SERVICE).await) {
            assert_eq!(pool.iter().map(|n| n.phone_number.as_str()).collect::<Vec<_>>(), [BUSINESS_NUMBER]);
        }
        if let Some(pool) = contract.check("Twilio list Messaging Service senders", twilio.service_senders(DEMO_TWILIO_SERVICE).await) {
            assert_eq!(pool.iter().map(|s| s.sender.clone()).collect::<Vec<_>>(), [Some(format!("whatsapp:{BUSINESS_NUMBER}"))]);
        }
        let number_sid = numbers
            .and_then(|n| n.into_iter().find(|n| n.phone_number == BUSINESS_NUMBER).map(|n| n.sid))
            .unwrap_or_else(|| switchboard::simulator::config::NumberConfig::new(BUSINESS_NUMBER).sid());
        contract.check("Twilio set number webhook", twilio.set_number_webhook(&number_sid, Some(&twilio_hook)).await);
        contract.check(
            "Twilio set Messaging Service webhook",
            twilio.set_service_webhook(DEMO_TWILIO_SERVICE, Some(&twilio_hook)).await,
        );
        contract.check_allowing(
            "Twilio clear number webhook",
            &[CLEARED_SMS_URL],
            twilio.set_number_webhook(&number_sid, None).await,
        );
        contract.check_allowing(
            "Twilio clear Messaging Service webhook",
            &[CLEARED_INBOUND_URL],
            twilio.set_service_webhook(DEMO_TWILIO_SERVICE, None).await,
        );
        // Prism stops the clearing requests, so the number is cleared on the simulator directly:
        // its answer for a number without a webhook is checked against the document.
        let direct = Providers::new(ProviderEndpoints::all_at(Url::parse(&sim).unwrap()), ClientConfig::default())
            .expect("build the clients");
        direct.twilio(twilio_creds).set_number_webhook(&number_sid, None).await.expect("clear the number's webhook");
        let cleared =
            contract.check("Twilio list numbers (webhook cleared)", twilio.incoming_numbers(Some(BUSINESS_NUMBER)).await);
        if let Some(numbers) = cleared {
            assert_eq!(numbers.iter().map(|n| n.sms_url.clone()).collect::<Vec<_>>(), [None]);
        }
        let sender_sid =
            switchboard::simulator::config::SenderConfig { sid: None, phone_number: BUSINESS_NUMBER.into(), callback_url: None }
                .sid();
        contract.check("Twilio set WhatsApp sender webhook", twilio_v2.set_sender_webhook(&sender_sid, &twilio_hook).await);

        let new_content = NewContent {
            friendly_name: Some("contract test".into()),
            language: "en".into(),
            variables: BTreeMap::from([("1".to_owned(), "Ann".to_owned())]),
            types: ContentTypes { text: Some(TextContent { body: "Hello {{1}}, your order shipped.".into() }), media: None },
        };
        let created = contract.check("Twilio create Content", twilio.create_content(&new_content).await);
        let content_sid = created.map(|c| c.sid);
        if let (Some(sid), Some(listed)) = (&content_sid, contract.check("Twilio list Content", twilio.contents().await)) {
            assert_eq!(listed.iter().map(|c| c.sid.as_str()).collect::<Vec<_>>(), [sid.as_str()]);
        }
        if let Some(sid) = &content_sid {
            contract.check(
                "Twilio submit Content for approval",
                twilio.submit_for_approval(sid, "contract_test_shipped", WhatsAppCategory::Utility).await,
            );
            contract.check("Twilio read approval", twilio.approval(sid).await);
            admin(&http, &sim, &format!("/__sim/content/{sid}/approval"), json!({"status": "approved"})).await;
            let template = OutgoingMessage {
                to: format!("whatsapp:{CUSTOMER_NUMBER}"),
                from: MessageSender::Address(format!("whatsapp:{BUSINESS_NUMBER}")),
                content: MessageContent::Template {
                    content_sid: sid.clone(),
                    variables: BTreeMap::from([("1".to_owned(), "Ann".to_owned())]),
                },
                status_callback: None,
            };
            contract.check("Twilio send message (template)", twilio.send_message(&template).await);
        }

        // The customer writes, which opens the 24-hour window for free-form messages.
        admin(&http, &sim, "/__sim/twilio/windows", json!({"customer": CUSTOMER_NUMBER, "lastInboundAgo": "1m"})).await;
        let text = OutgoingMessage {
            to: format!("whatsapp:{CUSTOMER_NUMBER}"),
            from: MessageSender::Address(format!("whatsapp:{BUSINESS_NUMBER}")),
            content: MessageContent::Text("Your order shipped.".into()),
            status_callback: Some(Url::parse("https://example.com/status").unwrap()),
        };
        contract.check("Twilio send message (text, status callback)", twilio.send_message(&text).await);
        let media = OutgoingMessage {
            to: format!("whatsapp:{CUSTOMER_NUMBER}"),
            from: MessageSender::MessagingService(DEMO_TWILIO_SERVICE.into()),
            content: MessageContent::Media {
                caption: Some("Your invoice".into()),
                urls: vec![
                    Url::parse("https://example.com/invoice.pdf").unwrap(),
                    Url::parse("https://example.com/a.jpg").unwrap(),
                ],
            },
            status_callback: None,
        };
        contract.check("Twilio send message (media, Messaging Service)", twilio.send_message(&media).await);
        if let Some(sid) = &content_sid {
            contract.check("Twilio delete Content", twilio.delete_content(sid).await);
        }

        // The customer writes; the typing indicator answers that message. Twilio's packaged
        // document (the npm package) predates the typing indicator, so only the full one can
        // check it.
        let inbound = admin(
            &http,
            &sim,
            "/__sim/customer/twilio",
            json!({"from": CUSTOMER_NUMBER, "to": BUSINESS_NUMBER, "body": "Hello?", "url": twilio_hook.as_str()}),
        )
        .await;
        let message_sid = inbound["messageSid"].as_str().expect("a MessageSid").to_owned();
        if std::env::var("SWITCHBOARD_PRISM_DOCUMENTS").as_deref() == Ok("full") {
            contract.check("Twilio typing indicator", twilio_v2.typing_indicator(&message_sid).await);
        } else {
            contract.notes.push("Twilio typing indicator: not checked, the packaged twilio_messaging_v2.yaml has no /v2/Indicators/Typing.json (SWITCHBOARD_PRISM_DOCUMENTS=full checks it)".to_owned());
        }

        let mut summary = format!(
            "contract test every_client_call_passes_prism: {} calls passed Prism, {} failed\n",
            contract.passed.len(),
            contract.failures.len()
        );
        for note in &contract.notes {
            summary.push_str(&format!("  note: {note}\n"));
        }
        let _ = write!(std::io::stderr(), "{summary}");
        let failures = std::mem::take(&mut contract.failures);
        drop(contract);
        drop(proxies);
        simulator.shutdown().await;
        assert!(failures.is_empty(), "{} client calls failed the contract:\n\n{}", failures.len(), failures.join("\n\n"));
    }
}
