//! Sends a webhook request to a receiver and reports what it answered.

use serde::Serialize;

/// Answers longer than this are cut in reports.
const MAX_REPORTED_BODY: usize = 4096;

/// What a receiver did with a webhook.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The status it answered; none when no answer came.
    pub status_code: Option<u16>,
    /// The start of its answer's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Why no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The error text, when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a webhook got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Failure {
    /// The receiver did not answer within the webhook timeout.
    Timeout,
    /// No connection could be made.
    Connect,
    /// Anything else (a malformed URL, a broken connection).
    Other,
}

impl Delivery {
    /// Whether the receiver answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// POSTs `body` to `url` with the given content type and extra headers.
pub async fn post(http: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Delivery {
    let mut request = http.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let mut text = response.text().await.unwrap_or_default();
            if text.len() > MAX_REPORTED_BODY {
                let mut end = MAX_REPORTED_BODY;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            Delivery { status_code: Some(status), response_body: Some(text), failure: None, error: None }
        }
        Err(error) => {
            let failure = if error.is_timeout() {
                Failure::Timeout
            } else if error.is_connect() {
                Failure::Connect
            } else {
                Failure::Other
            };
            tracing::debug!(%url, %error, "webhook delivery failed");
            Delivery { status_code: None, response_body: None, failure: Some(failure), error: Some(error.to_string()) }
        }
    }
}
