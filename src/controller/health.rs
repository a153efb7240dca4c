//! The probe port: `/healthz` (the process serves), `/readyz` (it is ready for work) for the
//! Deployment's probes, and `/metrics` (Prometheus text, see [`super::metrics`]); served with
//! the timeouts and the connection cap of [`crate::serve`].

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::task::JoinHandle;

use super::ControllerError;
use crate::metrics::Connections;
use crate::serve::{self, Port, Timeouts};

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
    timeouts: Timeouts,
    connections: Connections,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Probes, ControllerError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ControllerError::Listen { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| ControllerError::Listen { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(move || std::future::ready(crate::metrics::response(metrics()))));
    let [cap] = serve::caps(serve::open_file_limit(), [1]);
    let port = Port { name: "probe", listener, cap };
    let task = tokio::spawn(async move { serve::serve(port, app, timeouts, &connections, shutdown).await });
    Ok(Probes { local_addr, task })
}
