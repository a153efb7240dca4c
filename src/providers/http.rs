//! The shared HTTP layer of the provider clients: one request with its timeout, retries with
//! exponential backoff and full jitter for calls that may be repeated, `Retry-After` on 429, and
//! the mapping of statuses and transport errors to [`ProviderError`].

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::credentials::Secret;
use super::error::{ClientBuildError, Operation, ProviderError};

/// Largest JSON body read from a provider; far above any documented response.
pub(crate) const MAX_JSON_BODY: u64 = 4 * 1024 * 1024;

/// Largest error body read from a provider; only its message is kept.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Longest provider message kept in an error, so an HTML error page cannot flood a status.
const MAX_MESSAGE_CHARS: usize = 300;

/// Timeouts and retries of the provider clients.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Limit of one attempt, from sending the request to the end of the response body.
    pub timeout: Duration,
    /// Limit of establishing a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Limit of one attempt of a message content download, which may be large.
    pub download_timeout: Duration,
    /// How calls that may be repeated are retried.
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            download_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Retries of calls that may be repeated: exponential backoff with full jitter, bounded both in
/// attempts and in total time. A 429 waits for its `Retry-After` instead of the backoff.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Upper bound of the first backoff; it doubles with each retry.
    pub initial_backoff: Duration,
    /// Upper bound of any one backoff.
    pub max_backoff: Duration,
    /// Total time a retried call may take, attempts and waits included; never less than one
    /// attempt's own timeout (a large download keeps its longer limit).
    pub max_elapsed: Duration,
    /// Longest `Retry-After` waited for here; a longer one is returned as
    /// [`ProviderError::RateLimited`] so that the caller can requeue instead of blocking.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_elapsed: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first): a uniformly random duration up to
    /// `initial_backoff * 2^(retry-1)`, capped by `max_backoff` ("full jitter"), so that many
    /// clients failing together do not retry together.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Told how every provider call ended, after its retries, e.g. to count calls as metrics. It lives
/// here so that the provider clients know nothing of who counts: the controller and the gateway
/// each pass their own ([`Providers::with_observer`](super::Providers::with_observer)).
pub trait CallObserver: fmt::Debug + Send + Sync {
    /// One call of `operation` ended with `outcome`. Called once per call, not per attempt; a
    /// request refused before sending ([`ProviderError::InvalidRequest`]) is no call.
    fn observe(&self, operation: Operation, outcome: CallOutcome);
}

/// How a provider call ended: success or the kind of [`ProviderError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// A 2xx (or a status the caller interprets itself) whose body the caller accepted.
    Success,
    /// [`ProviderError::Unauthorized`].
    Unauthorized,
    /// [`ProviderError::NotFound`].
    NotFound,
    /// [`ProviderError::RateLimited`].
    RateLimited,
    /// [`ProviderError::Unavailable`].
    Unavailable,
    /// [`ProviderError::Rejected`].
    Rejected,
    /// [`ProviderError::InvalidResponse`].
    InvalidResponse,
    /// [`ProviderError::InvalidRequest`].
    InvalidRequest,
    /// [`ProviderError::TooLarge`].
    TooLarge,
}

impl CallOutcome {
    /// A stable snake_case identifier such as "rate_limited", for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
            Self::InvalidResponse => "invalid_response",
            Self::InvalidRequest => "invalid_request",
            Self::TooLarge => "too_large",
        }
    }
}

impl From<&ProviderError> for CallOutcome {
    fn from(error: &ProviderError) -> Self {
        match error {
            ProviderError::Unauthorized { .. } => Self::Unauthorized,
            ProviderError::NotFound { .. } => Self::NotFound,
            ProviderError::RateLimited { .. } => Self::RateLimited,
            ProviderError::Unavailable { .. } => Self::Unavailable,
            ProviderError::Rejected { .. } => Self::Rejected,
            ProviderError::InvalidResponse { .. } => Self::InvalidResponse,
            ProviderError::InvalidRequest { .. } => Self::InvalidRequest,
            ProviderError::TooLarge { .. } => Self::TooLarge,
        }
    }
}

/// Reports an accepted reply's call when the caller is done with the reply, not when it arrives:
/// a body the caller then cannot parse makes the call an `InvalidResponse`, counted once.
struct Report {
    observer: Arc<dyn CallObserver>,
    operation: Operation,
    invalid: AtomicBool,
}

impl Drop for Report {
    fn drop(&mut self) {
        let outcome = if self.invalid.load(Ordering::Relaxed) { CallOutcome::InvalidResponse } else { CallOutcome::Success };
        self.observer.observe(self.operation, outcome);
    }
}

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Repeating it has no further effect (reads, updates that set fields to given values,
    /// deletes, pushes carrying a retry key).
    Safe,
    /// Repeating it could act twice (sending a message, creating a resource).
    Never,
}

/// How a request authenticates.
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <token>` (LINE).
    Bearer(&'a Secret),
    /// HTTP Basic (Twilio `AccountSid:AuthToken`).
    Basic { user: &'a str, password: &'a Secret },
}

impl Auth<'_> {
    fn secret(&self) -> &Secret {
        match self {
            Self::Bearer(token) => token,
            Self::Basic { password, .. } => password,
        }
    }

    fn apply(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        // reqwest marks both headers sensitive, so they are redacted from its own Debug output.
        match self {
            Self::Bearer(token) => builder.bearer_auth(token.expose()),
            Self::Basic { user, password } => builder.basic_auth(user, Some(password.expose())),
        }
    }
}

/// A request body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// `application/json`.
    Json(serde_json::Value),
    /// `application/x-www-form-urlencoded`; a key may repeat (Twilio's `MediaUrl`).
    Form(Vec<(&'static str, String)>),
}

/// One provider call, described once and sent as often as its retry policy allows.
pub(crate) struct Call {
    pub operation: Operation,
    pub method: Method,
    pub url: Url,
    pub body: Body,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub repeat: Repeat,
    /// Non-2xx statuses the caller interprets itself (LINE push's 409).
    pub pass_through: &'static [StatusCode],
    /// Largest body accepted; a larger one is [`ProviderError::TooLarge`].
    pub max_body: u64,
    /// Limit of one attempt.
    pub timeout: Duration,
    /// Whether redirects are followed (see [`Redirects`]).
    pub redirects: Redirects,
}

/// Whether a call follows redirects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redirects {
    /// A redirect is an answer like any other non-2xx: no provider API redirects.
    Refused,
    /// Followed as [`follow_redirects`] allows; the credentials are only sent to the first URL's
    /// host (reqwest drops `Authorization` when a redirect changes scheme, host or port).
    Followed,
}

impl Call {
    /// A call with no body, no extra headers and the JSON body limit.
    pub fn new(operation: Operation, method: Method, url: Url, repeat: Repeat, timeout: Duration) -> Self {
        Self {
            operation,
            method,
            url,
            body: Body::Empty,
            headers: Vec::new(),
            repeat,
            pass_through: &[],
            max_body: MAX_JSON_BODY,
            timeout,
            redirects: Redirects::Refused,
        }
    }

    /// The same call with a body.
    pub fn body(self, body: Body) -> Self {
        Self { body, ..self }
    }
}

/// A response the caller accepts: 2xx or one of its pass-through statuses.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Reports the call once the reply is dropped, when there is an observer.
    report: Option<Report>,
}

impl Reply {
    /// The body parsed as JSON, or [`ProviderError::InvalidResponse`].
    pub fn json<T: DeserializeOwned>(&self, operation: Operation, secret: &Secret) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            if let Some(report) = &self.report {
                report.invalid.store(true, Ordering::Relaxed);
            }
            ProviderError::InvalidResponse {
                operation,
                // serde's message can quote a value from the body; the body is the provider's,
                // but a Twilio account body carries the auth token, so scrub it.
                detail: secret.scrub(&err.to_string()),
            }
        })
    }

    /// A header as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
    }
}

/// The HTTP client shared by every provider client of a process: one connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    client: reqwest::Client,
    /// The same settings, following redirects ([`Redirects::Followed`]); a second client because
    /// reqwest sets the redirect policy per client.
    following: reqwest::Client,
    pub config: ClientConfig,
    /// Told how each call ended, when set.
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl Transport {
    /// Builds the clients. Redirects are not followed unless a call asks: no provider API
    /// redirects, and only downloads of media are sent on to another host.
    pub fn new(config: ClientConfig) -> Result<Self, ClientBuildError> {
        let build = |policy| {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .redirect(policy)
                .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let client = build(reqwest::redirect::Policy::none())?;
        let following = build(follow_redirects())?;
        Ok(Self { client, following, config, observer: None })
    }

    /// Sends `call`, retrying it when it is safe to repeat, until it succeeds, fails for good or
    /// the retry policy's attempts or total time run out; then tells the observer how it ended (a
    /// reply once the caller drops it, see [`Report`]).
    pub async fn execute(&self, auth: &Auth<'_>, call: &Call) -> Result<Reply, ProviderError> {
        let mut result = self.send_with_retries(auth, call).await;
        if let Some(observer) = &self.observer {
            match &mut result {
                Ok(reply) => {
                    reply.report = Some(Report { observer: Arc::clone(observer), operation: call.operation, invalid: AtomicBool::new(false) })
                }
                Err(error) => observer.observe(call.operation, CallOutcome::from(&*error)),
            }
        }
        result
    }

    async fn send_with_retries(&self, auth: &Auth<'_>, call: &Call) -> Result<Reply, ProviderError> {
        let policy = &self.config.retry;
        let max_attempts = match call.repeat {
            Repeat::Safe => policy.max_attempts.max(1),
            Repeat::Never => 1,
        };
        let budget = policy.max_elapsed.max(call.timeout);
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            // A retry never outlives the total time budget.
            let timeout = call.timeout.min(budget.saturating_sub(started.elapsed()));
            let failure = match self.attempt(auth, call, attempt, timeout).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt >= max_attempts {
                return Err(failure.error);
            }
            let delay = match &failure.error {
                ProviderError::RateLimited { retry_after: Some(wait), .. } if *wait > policy.max_retry_after => {
                    return Err(failure.error);
                }
                ProviderError::RateLimited { retry_after: Some(wait), .. } => *wait,
                _ => policy.backoff(attempt),
            };
            if started.elapsed() + delay >= budget {
                return Err(failure.error);
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, auth: &Auth<'_>, call: &Call, attempt: u32, timeout: Duration) -> Result<Reply, Failure> {
        let operation = call.operation;
        let secret = auth.secret();
        let started = Instant::now();
        let client = match call.redirects {
            Redirects::Refused => &self.client,
            Redirects::Followed => &self.following,
        };
        // The timeout covers the whole chain of redirects and the body, as does `max_body`
        // the final answer's body.
        let mut builder = auth.apply(client.request(call.method.clone(), call.url.clone()).timeout(timeout));
        for (name, value) in &call.headers {
            builder = builder.header(name, value);
        }
        builder = match &call.body {
            Body::Empty => builder,
            Body::Json(value) => builder.json(value),
            Body::Form(pairs) => builder.form(pairs),
        };
        let mut response = match builder.send().await {
            Ok(response) => response,
            // The same redirects would be refused again.
            Err(err) if err.is_redirect() => {
                let detail = secret.scrub(&transport_detail(&err, timeout));
                tracing::debug!(%operation, attempt, error = %detail, "provider call redirected too far");
                return Err(Failure::permanent(ProviderError::InvalidResponse { operation, detail }));
            }
            Err(err) => {
                let detail = secret.scrub(&transport_detail(&err, timeout));
                tracing::debug!(%operation, attempt, error = %detail, "provider call failed");
                return Err(Failure::retryable(ProviderError::Unavailable { operation, detail }));
            }
        };
        let status = response.status();
        tracing::debug!(
            %operation,
            attempt,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            provider_request_id = request_id(response.headers()).unwrap_or_default(),
            "provider call"
        );
        if status.is_success() || call.pass_through.contains(&status) {
            let headers = std::mem::take(response.headers_mut());
            let body = read_body(&mut response, call.max_body, timeout).await.map_err(|err| match err {
                BodyError::TooLarge => Failure::permanent(ProviderError::TooLarge { operation, limit: call.max_body }),
                BodyError::Transport(detail) => {
                    Failure::retryable(ProviderError::Unavailable { operation, detail: secret.scrub(&detail) })
                }
            })?;
            return Ok(Reply { status, headers, body, report: None });
        }
        let retry_after = response.headers().get(RETRY_AFTER).and_then(parse_retry_after);
        // An error body that cannot be read still leaves the status to go by.
        let body = read_body(&mut response, MAX_ERROR_BODY, timeout).await.unwrap_or_default();
        let (code, message) = ErrorBody::summary(&body);
        let message = secret.scrub(&message);
        Err(match status {
            StatusCode::UNAUTHORIZED => Failure::permanent(ProviderError::Unauthorized { operation, code, message }),
            StatusCode::NOT_FOUND => Failure::permanent(ProviderError::NotFound { operation, message }),
            StatusCode::TOO_MANY_REQUESTS => Failure::retryable(ProviderError::RateLimited { operation, retry_after }),
            status if status.is_server_error() => {
                let detail = if message.is_empty() {
                    format!("HTTP {}", status.as_u16())
                } else {
                    format!("HTTP {}: {message}", status.as_u16())
                };
                Failure::retryable(ProviderError::Unavailable { operation, detail })
            }
            status => Failure::permanent(ProviderError::Rejected { operation, status: status.as_u16(), code, message }),
        })
    }
}

/// A failed attempt and whether a retry could help.
struct Failure {
    error: ProviderError,
    retryable: bool,
}

impl Failure {
    fn retryable(error: ProviderError) -> Self {
        Self { error, retryable: true }
    }

    fn permanent(error: ProviderError) -> Self {
        Self { error, retryable: false }
    }
}

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Transport(String),
}

/// Reads a body up to `limit` bytes, refusing early when `Content-Length` already says more.
async fn read_body(response: &mut reqwest::Response, limit: u64, timeout: Duration) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) => return Err(BodyError::Transport(transport_detail(&err, timeout))),
        }
    }
}

/// Most redirects a call that follows them takes; Twilio's media answers one, to its CDN.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// Why a redirect is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedirectRefused {
    /// More than [`MAX_REDIRECTS`] in one call.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    /// Back to a URL already visited.
    #[error("a redirect loop")]
    Loop,
    /// From https to http, which would expose what is fetched on the way.
    #[error("a redirect from https to http")]
    Downgrade,
}

/// The redirect policy of [`Redirects::Followed`].
fn follow_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| match redirect_refusal(attempt.url(), attempt.previous()) {
        Some(refused) => attempt.error(refused),
        None => attempt.follow(),
    })
}

/// Whether a redirect to `next` is refused, after `previous` (the first URL included).
fn redirect_refusal(next: &Url, previous: &[Url]) -> Option<RedirectRefused> {
    if previous.contains(next) {
        Some(RedirectRefused::Loop)
    } else if previous.len() > MAX_REDIRECTS {
        Some(RedirectRefused::TooMany)
    } else if previous.last().is_some_and(|last| last.scheme() == "https") && next.scheme() != "https" {
        Some(RedirectRefused::Downgrade)
    } else {
        None
    }
}

/// A short description of a transport error: its kind and innermost cause, never its URL.
fn transport_detail(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    let kind = if err.is_connect() {
        "connection failed"
    } else if err.is_redirect() {
        "redirect refused"
    } else if err.is_body() {
        "response body interrupted"
    } else {
        "request failed"
    };
    let mut innermost = None;
    let mut next = err.source();
    while let Some(source) = next {
        innermost = Some(source);
        next = source.source();
    }
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// The provider's request id, for correlating a log line with the provider's support.
fn request_id(headers: &HeaderMap) -> Option<&str> {
    ["x-line-request-id", "twilio-request-id"]
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| value.to_str().ok())
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The error bodies of both providers: Twilio `{code, message, more_info, status}`, LINE
/// `{message, details: [{message, property}]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    property: Option<String>,
}

impl ErrorBody {
    /// The provider's error code and its message with LINE's details appended; for a body that
    /// is not the provider's JSON, no code and the body's first characters.
    fn summary(body: &[u8]) -> (Option<i64>, String) {
        let (code, text) = match serde_json::from_slice::<Self>(body) {
            Ok(parsed) => {
                let mut text = parsed.message.unwrap_or_default();
                let details: Vec<String> = parsed
                    .details
                    .into_iter()
                    .filter_map(|detail| match (detail.property, detail.message) {
                        (Some(property), Some(message)) => Some(format!("{property}: {message}")),
                        (None, Some(message)) => Some(message),
                        (Some(property), None) => Some(property),
                        (None, None) => None,
                    })
                    .collect();
                if !details.is_empty() {
                    text = format!("{text} ({})", details.join("; "));
                }
                (parsed.code, text)
            }
            Err(_) => (None, String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" ")),
        };
        if text.chars().count() > MAX_MESSAGE_CHARS {
            (code, text.chars().take(MAX_MESSAGE_CHARS).chain("…".chars()).collect())
        } else {
            (code, text)
        }
    }
}

/// The content type header of a reply, if any.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after(&HeaderValue::from_static("7")), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(&HeaderValue::from_static(" 0 ")), Some(Duration::ZERO));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let delay = parse_retry_after(&HeaderValue::from_str(&in_a_minute).unwrap()).unwrap();
        assert!(delay > Duration::from_secs(55) && delay <= Duration::from_secs(61), "{delay:?}");
        let past = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(2) <= Duration::from_millis(200));
            assert!(policy.backoff(10) <= Duration::from_millis(300));
            assert!(policy.backoff(u32::MAX) <= Duration::from_millis(300));
        }
    }

    #[test]
    fn redirects_stop_at_loops_downgrades_and_the_limit() {
        let url = |u: &str| Url::parse(u).unwrap();
        let first = [url("https://api.twilio.com/media")];
        assert_eq!(redirect_refusal(&url("https://cdn.twilio.example/a"), &first), None);
        assert_eq!(redirect_refusal(&url("https://api.twilio.com/media"), &first), Some(RedirectRefused::Loop));
        assert_eq!(redirect_refusal(&url("http://cdn.twilio.example/a"), &first), Some(RedirectRefused::Downgrade));
        assert_eq!(redirect_refusal(&url("https://cdn.twilio.example/a"), &[url("http://127.0.0.1:1/m")]), None, "http to https is fine");
        let hops: Vec<Url> = (0..=MAX_REDIRECTS).map(|i| url(&format!("https://cdn.twilio.example/{i}"))).collect();
        assert_eq!(redirect_refusal(&url("https://cdn.twilio.example/next"), &hops[..MAX_REDIRECTS]), None);
        assert_eq!(redirect_refusal(&url("https://cdn.twilio.example/next"), &hops), Some(RedirectRefused::TooMany));
    }

    /// A server whose every path redirects: `/loop` to itself, `/hop/{n}` to `/hop/{n+1}`.
    async fn redirecting_server() -> String {
        use axum::extract::Path;
        use axum::response::Redirect;
        let app = axum::Router::new()
            .route("/loop", axum::routing::get(|| async { Redirect::temporary("/loop") }))
            .route("/hop/{n}", axum::routing::get(|Path(n): Path<u32>| async move { Redirect::temporary(&format!("/hop/{}", n + 1)) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn a_redirect_loop_or_chain_is_a_clear_error_at_once() {
        let base = redirecting_server().await;
        let transport = Transport::new(ClientConfig::default()).unwrap();
        let secret = Secret::new("redirect-test-secret");
        let auth = Auth::Basic { user: "AC1", password: &secret };
        for (path, expected) in [("/loop", "redirect refused: a redirect loop"), ("/hop/0", "redirect refused: more than 5 redirects")] {
            let mut call = Call::new(Operation::TwilioMedia, Method::GET, Url::parse(&format!("{base}{path}")).unwrap(), Repeat::Safe, Duration::from_secs(5));
            call.redirects = Redirects::Followed;
            let started = Instant::now();
            let err = transport.execute(&auth, &call).await.err().unwrap_or_else(|| panic!("{path} is refused"));
            assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{path}: {err:?}");
            let message = err.to_string();
            assert!(message.starts_with("Twilio media download: invalid response: ") && message.contains(expected), "{path}: {message}");
            assert!(!message.contains(secret.expose()) && !message.contains("127.0.0.1"), "{message}");
            assert!(started.elapsed() < Duration::from_millis(200), "not retried: {:?}", started.elapsed());
            // Without following, a redirect is an answer like any other refusal.
            call.redirects = Redirects::Refused;
            let err = transport.execute(&auth, &call).await.err().unwrap();
            assert!(matches!(err, ProviderError::Rejected { status: 307, .. }), "{path}: {err:?}");
        }
    }

    #[test]
    fn error_bodies_of_both_providers() {
        let twilio = br#"{"code": 63016, "message": "Failed to send freeform message", "more_info": "https://www.twilio.com/docs/errors/63016", "status": 400}"#;
        assert_eq!(ErrorBody::summary(twilio), (Some(63016), "Failed to send freeform message".to_owned()));
        let line = br#"{"message": "The request body has 1 error(s)", "details": [{"message": "May not be empty", "property": "messages[0].text"}]}"#;
        assert_eq!(
            ErrorBody::summary(line),
            (None, "The request body has 1 error(s) (messages[0].text: May not be empty)".to_owned())
        );
        assert_eq!(
            ErrorBody::summary(b"<html>\n  Bad   gateway</html>"),
            (None, "<html> Bad gateway</html>".to_owned())
        );
        let long = "x".repeat(1000);
        assert_eq!(ErrorBody::summary(long.as_bytes()).1.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
