//! What happens to every request around its handler: provider requests are logged, get their
//! injected fault and carry the provider's request-ID header; admin requests go straight through.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tower::ServiceExt;

use super::admin;
use super::errors::Provider;
use super::faults::{Action, Applied, Refusal};
use super::ids;
use super::line;
use super::state::App;

/// The error that makes hyper close a connection without writing an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub struct ConnectionDropped;

async fn serve(router: Router, request: Request<Body>) -> Response<Body> {
    let Ok(response) = router.oneshot(request).await;
    response
}

/// Serves one request.
pub async fn handle(app: Arc<App>, router: Router, request: Request<Incoming>) -> Result<Response<Body>, ConnectionDropped> {
    let request = request.map(Body::new);
    let path = request.uri().path().to_owned();
    if path == admin::PREFIX || path.starts_with(&format!("{}/", admin::PREFIX)) {
        return Ok(serve(router, request).await);
    }
    let provider = Provider::for_path(&path);
    let method = request.method().as_str().to_owned();
    let (seq, applied) = {
        let mut state = app.lock();
        let retry_key = request.headers().get(line::RETRY_KEY_HEADER).and_then(|v| v.to_str().ok());
        let seq = state.requests.begin(&method, &path, request.uri().query(), retry_key);
        let applied = state.faults.take(&method, &path);
        if let Some(applied) = applied {
            state.requests.set_fault(seq, applied.name);
        }
        (seq, applied)
    };

    let mut response = match applied {
        None => serve(router, request).await,
        Some(Applied { action, name, after_handler }) => {
            tracing::info!(%method, %path, fault = name, after_handler, "injecting a fault");
            match (action, after_handler) {
                (Action::Delay(delay), false) => {
                    tokio::time::sleep(delay).await;
                    serve(router, request).await
                }
                // The request takes effect at once; only its answer is late.
                (Action::Delay(delay), true) => {
                    let response = serve(router, request).await;
                    tokio::time::sleep(delay).await;
                    response
                }
                (Action::Refuse(refusal), after_handler) => {
                    if after_handler {
                        // The request takes effect; only its answer is replaced.
                        serve(router, request).await;
                    }
                    refuse(provider, refusal)?
                }
            }
        }
    };

    add_request_id(provider, &mut response);
    app.lock().requests.finish(seq, response.status().as_u16());
    Ok(response)
}

/// The answer a refusal gives, or the dropped connection.
fn refuse(provider: Provider, refusal: Refusal) -> Result<Response<Body>, ConnectionDropped> {
    match refusal {
        Refusal::RateLimit { retry_after } => Ok(provider.rate_limited(retry_after)),
        Refusal::ServerError { status } => {
            Ok(provider.server_error(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)))
        }
        Refusal::Unauthorized { status } => Ok(provider.unauthorized(StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED))),
        Refusal::Drop => Err(ConnectionDropped),
    }
}

/// LINE puts `x-line-request-id` on every answer, Twilio `Twilio-Request-Id`.
fn add_request_id(provider: Provider, response: &mut Response<Body>) {
    let (name, value) = match provider {
        Provider::Line => (line::REQUEST_ID_HEADER, ids::request_id()),
        Provider::Twilio => ("twilio-request-id", ids::sid("RQ")),
    };
    if !response.headers().contains_key(name)
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        response.headers_mut().insert(name, value);
    }
}
