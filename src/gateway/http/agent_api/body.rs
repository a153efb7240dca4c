//! A JSON request body, read whole and parsed strictly: unknown fields are refused, and a
//! refusal names the field that is wrong. An empty body is `{}`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A parsed JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(request, state).await.map_err(|rejection| {
            if crate::serve::body_timed_out(&rejection) {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "the body did not arrive within the body read timeout")
            } else {
                ApiError::new(rejection.status(), "invalid_request", rejection.body_text())
            }
        })?;
        parse(&body).map(JsonBody)
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
        let field = e.path().to_string();
        match field.as_str() {
            "." => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("the body is not a valid request: {}", e.inner())),
            _ => ApiError::invalid(&field, format!("{field}: {}", e.inner())),
        }
    })
}
