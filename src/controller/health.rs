//! The probe port: `/healthz` (the process serves), `/readyz` (it is ready for work) for the
//! Deployment's probes, and `/metrics` (Prometheus text, see [`super::metrics`]).

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::task::JoinHandle;

use super::ControllerError;

/// The running health server.
pub struct Probes {
    /// Where it listens.
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Probes {
    /// Waits until the server stopped (after the shutdown signal).
    pub async fn stopped(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "the health server ended abnormally");
        }
    }
}

/// Listens on `addr` until `shutdown` completes; `/metrics` answers with what `metrics` renders.
pub async fn serve(
    addr: SocketAddr,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Probes, ControllerError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ControllerError::Listen { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| ControllerError::Listen { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(move || std::future::ready(crate::metrics::response(metrics()))));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!(%error, "the health server failed");
        }
    });
    Ok(Probes { local_addr, task })
}
