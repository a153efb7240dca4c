//! The local demo's development clock (`--dev-clock`): `POST /__dev/clock {"advance": "25h"}` on
//! the agent API port moves the gateway's clock ahead, so that a person playing the customer can
//! age a WhatsApp conversation's 24-hour window and see what the desk gets then; `GET` shows the
//! offset, `DELETE` puts the clock back. A gateway whose clock can be moved by anyone who reaches
//! a port must never serve real customers: [`allowed`] refuses the flag unless the configuration
//! is a local file and every port listens on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::agent_api::body::JsonBody;
use super::agent_api::error::ApiError;
use crate::api::duration;
use crate::gateway::clock::{Clock, rfc3339};

/// Why `--dev-clock` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The configuration comes from the cluster.
    #[error("--dev-clock is for the local demo only: it needs the configuration from a file (--config), not a ConfigMap")]
    NotLocal,
    /// A port is reachable from other hosts.
    #[error("--dev-clock is for the local demo only: every port must listen on loopback, and {0} does not")]
    NotLoopback(SocketAddr),
}

/// Whether a gateway with this configuration source and these ports may have a movable clock.
pub fn allowed(config_file: bool, ports: &[SocketAddr]) -> Result<(), Refused> {
    if !config_file {
        return Err(Refused::NotLocal);
    }
    match ports.iter().find(|addr| !addr.ip().is_loopback()) {
        Some(addr) => Err(Refused::NotLoopback(*addr)),
        None => Ok(()),
    }
}

/// The clock's offset and the clock that reads it.
#[derive(Clone)]
pub struct DevClock {
    /// How far ahead of the system clock it is, in ms.
    offset: Arc<AtomicI64>,
    /// The gateway's clock.
    clock: Clock,
}

impl DevClock {
    /// A clock at the system's time, to be moved ahead.
    pub fn new() -> Self {
        let offset = Arc::new(AtomicI64::new(0));
        Self { clock: Clock::ahead(Arc::clone(&offset)), offset }
    }

    /// The clock every part of the gateway takes.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    fn answer(&self) -> Response {
        let now = self.clock.now_ms();
        (StatusCode::OK, axum::Json(json!({ "offsetMs": self.offset.load(Ordering::Relaxed), "now": rfc3339(now) }))).into_response()
    }
}

impl Default for DevClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Body of `POST /__dev/clock`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    /// How far to move the clock ahead, e.g. `25h`.
    advance: String,
}

/// The routes, to merge into the agent API's.
pub fn router(dev: DevClock) -> Router {
    Router::new()
        .route(
            "/__dev/clock",
            get(|State(dev): State<DevClock>| async move { dev.answer() })
                .post(|State(dev): State<DevClock>, JsonBody(body): JsonBody<Advance>| async move {
                    let by = duration::parse(&body.advance).and_then(|d| i64::try_from(d.as_millis()).ok()).filter(|ms| *ms > 0);
                    let Some(ms) = by else {
                        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", "advance must be a positive duration such as 25h").into_response();
                    };
                    dev.offset.fetch_add(ms, Ordering::Relaxed);
                    tracing::warn!(advanced_ms = ms, offset_ms = dev.offset.load(Ordering::Relaxed), "development clock moved ahead");
                    dev.answer()
                })
                .delete(|State(dev): State<DevClock>| async move {
                    dev.offset.store(0, Ordering::Relaxed);
                    dev.answer()
                }),
        )
        .with_state(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_configuration_on_loopback_ports_may_have_a_movable_clock() {
        let local: Vec<SocketAddr> = ["127.0.0.1:8080", "[::1]:8081"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(allowed(true, &local), Ok(()));
        assert_eq!(allowed(false, &local), Err(Refused::NotLocal));
        let open: SocketAddr = "0.0.0.0:8082".parse().unwrap();
        assert_eq!(allowed(true, &[local[0], open]), Err(Refused::NotLoopback(open)));
        assert!(Refused::NotLoopback(open).to_string().contains("0.0.0.0:8082"));
    }
}
