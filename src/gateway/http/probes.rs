//! The metrics port: `/metrics` (Prometheus text), `/healthz` (the process serves: liveness)
//! and `/readyz` (a configuration is loaded, the store answers and the gateway is not stopping:
//! readiness).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::gateway::metrics::Metrics;
use crate::gateway::runtime::Runtime;
use crate::gateway::store::Store;

/// What the probes look at.
pub struct ProbeState {
    /// The store, asked for a trivial job.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// True once the gateway was told to stop: it drains, and takes no new work from the
    /// Service.
    pub stopping: watch::Receiver<bool>,
}

/// The router of the metrics port.
pub fn router(state: Arc<ProbeState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<Arc<ProbeState>>) -> impl IntoResponse {
    if *state.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping: draining before shutdown\n".to_owned());
    }
    if state.runtime.borrow().is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded\n".to_owned());
    }
    // The store's errors name what failed (a refused connection, an authentication failure),
    // never a connection string or password.
    match state.store.run(|_| Ok(())).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("the store is not available: {e}\n")),
    }
}

async fn metrics(State(state): State<Arc<ProbeState>>) -> impl IntoResponse {
    crate::metrics::response(state.metrics.encode())
}
