//! Error answers in each provider's own shape: LINE's `{message, details}` and Twilio's
//! `{code, message, more_info, status}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

/// Which provider a path belongs to; decides the shape of error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// api.line.me and api-data.line.me.
    Line,
    /// api.twilio.com, messaging.twilio.com and content.twilio.com.
    Twilio,
}

impl Provider {
    /// The provider's name as the admin API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Twilio => "twilio",
        }
    }

    /// The provider whose API a path belongs to. LINE paths start with `/v2/bot`; the Twilio
    /// hosts' paths (`/2010-04-01`, `/v1/...`, `/v2/Channels`) do not collide with them.
    pub fn for_path(path: &str) -> Self {
        if path == "/v2/bot" || path.starts_with("/v2/bot/") { Self::Line } else { Self::Twilio }
    }

    /// The provider's 404 answer for a path it does not serve.
    pub fn not_found(self, path: &str) -> Response {
        match self {
            Self::Line => LineError::new(StatusCode::NOT_FOUND, "Not found").into_response(),
            Self::Twilio => TwilioError::not_found(path).into_response(),
        }
    }

    /// The provider's 405 answer.
    pub fn method_not_allowed(self) -> Response {
        match self {
            Self::Line => LineError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response(),
            Self::Twilio => TwilioError::new(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed").into_response(),
        }
    }

    /// The provider's 429 answer, with `Retry-After` in seconds.
    pub fn rate_limited(self, retry_after_secs: u64) -> Response {
        let mut response = match self {
            Self::Line => LineError::new(StatusCode::TOO_MANY_REQUESTS, "The API rate limit has been exceeded. Try again later.")
                .into_response(),
            Self::Twilio => TwilioError::new(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests").into_response(),
        };
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    }

    /// The provider's refusal of the credentials: 401 as for a wrong token, 403 as for a token
    /// without the permission.
    pub fn unauthorized(self, status: StatusCode) -> Response {
        match (self, status) {
            (Self::Line, StatusCode::FORBIDDEN) => {
                LineError::new(status, "The access token is not authorized to use this API. Confirm the channel's permissions.").into_response()
            }
            (Self::Line, _) => LineError::unauthorized().into_response(),
            (Self::Twilio, StatusCode::FORBIDDEN) => TwilioError::new(status, 20403, "Forbidden").into_response(),
            (Self::Twilio, _) => TwilioError::unauthorized().into_response(),
        }
    }

    /// The provider's answer to an internal failure with the given 5xx status.
    pub fn server_error(self, status: StatusCode) -> Response {
        match self {
            Self::Line => LineError::new(status, "Internal server error").into_response(),
            Self::Twilio => TwilioError::new(status, 20500, "Internal Server Error").into_response(),
        }
    }
}

/// A LINE error answer (LINE's `ErrorResponse`).
#[derive(Debug)]
pub struct LineError {
    status: StatusCode,
    message: String,
    details: Vec<LineErrorDetail>,
}

/// One entry of a LINE error's `details`.
#[derive(Clone, Debug, Serialize)]
pub struct LineErrorDetail {
    /// What is wrong.
    pub message: String,
    /// The JSON field or parameter concerned, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

impl LineError {
    /// An error with a message and no details.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), details: Vec::new() }
    }

    /// A 400 listing what is wrong with the request body, as LINE reports validation errors.
    pub fn invalid_body(details: Vec<LineErrorDetail>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: format!("The request body has {} error(s)", details.len()), details }
    }

    /// A 400 with one detail about a field.
    pub fn invalid_field(property: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_body(vec![LineErrorDetail { message: message.into(), property: Some(property.into()) }])
    }

    /// A 400 for a body that is not JSON of the expected shape; the detail is the parser's.
    pub fn invalid_json(error: &serde_json::Error) -> Self {
        Self::invalid_body(vec![LineErrorDetail { message: error.to_string(), property: None }])
    }

    /// LINE's answer to a missing or wrong access token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Authentication failed. Confirm that the access token in the authorization header is valid.",
        )
    }
}

impl IntoResponse for LineError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message });
        // LINE leaves `details` out when there are none.
        if !self.details.is_empty() {
            body["details"] = json!(self.details);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A Twilio error answer (`{code, message, more_info, status}`).
#[derive(Debug)]
pub struct TwilioError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl TwilioError {
    /// An error with Twilio's error code.
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// A 400 with Twilio's error code.
    pub fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 400 for an invalid or missing parameter that has no more specific Twilio code.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request(20001, message)
    }

    /// Twilio's answer to missing or wrong credentials (20003).
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }

    /// Twilio's 404 (20404) for a resource that does not exist.
    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 20404, format!("The requested resource {path} was not found"))
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Twilio API\""));
        }
        response
    }
}
