//! `switchboard simulate`: a local, stateful simulator of the LINE Messaging API and of Twilio's
//! WhatsApp APIs, for development, tests and demos.
//!
//! One process serves every provider host on one loopback port: the hosts' paths do not collide
//! (`/v2/bot/...` for LINE, `/2010-04-01/...`, `/v1/Services/...`, `/v2/Channels/...`,
//! `/v2/Indicators/...` and `/v1/Content/...` for Twilio). Answers follow the providers' OpenAPI
//! documents. An admin API under `/__sim` records what was sent, injects faults and plays the
//! customer; see the README's "Local provider simulator" section.

mod admin;
mod auth;
pub mod cli;
mod clock;
pub mod config;
mod content;
mod customer;
mod dispatch;
mod errors;
mod faults;
mod form;
mod ids;
mod indicators;
mod line;
mod messaging;
mod outbound;
mod pattern;
mod receipts;
mod requests;
mod state;
mod twilio;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use config::{ConfigError, LineChannelConfig, Secret, SimulatorConfig, TwilioAccountConfig};

use errors::Provider;
use state::App;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A non-loopback address was asked for without allowing it.
    #[error("refusing to listen on {0}: the simulator's admin API has no authentication; pass --allow-non-loopback to listen beyond loopback")]
    NotLoopback(SocketAddr),
    /// The outgoing HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A simulator serving in the background. Dropping it stops it.
#[derive(Debug)]
pub struct RunningSimulator {
    local_addr: SocketAddr,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSimulator {
    /// The URL clients use as the base of every provider host, e.g. `http://127.0.0.1:8089`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, closes open ones and waits until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; then there is nothing to stop.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "the simulator's server task failed");
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; then there is nothing to stop.
            let _ = stop.send(());
        }
    }
}

/// Starts a simulator on `addr` (port 0 picks a free port) and returns once it accepts
/// connections.
pub async fn start(config: SimulatorConfig, addr: SocketAddr) -> Result<RunningSimulator, SimulatorError> {
    config.validate()?;
    let listener = TcpListener::bind(addr).await.map_err(|source| SimulatorError::Bind { addr, source })?;
    let local_addr = listener.local_addr().map_err(|source| SimulatorError::Bind { addr, source })?;
    let base_url = format!("http://{local_addr}");
    let public_url = config.public_url.clone().unwrap_or_else(|| base_url.clone());
    let cdn_addr = SocketAddr::new(local_addr.ip(), 0);
    let cdn_listener = TcpListener::bind(cdn_addr).await.map_err(|source| SimulatorError::Bind { addr: cdn_addr, source })?;
    let cdn_local = cdn_listener.local_addr().map_err(|source| SimulatorError::Bind { addr: cdn_addr, source })?;
    let cdn_url = cdn_url(&public_url, cdn_local);
    let app = Arc::new(App::new(config, public_url.trim_end_matches('/').to_owned(), cdn_url.clone())?);
    let router = router(app.clone());
    let cdn_router = twilio::cdn_routes().with_state(app.clone());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve_both(stopped, (listener, router), (cdn_listener, cdn_router), app));
    tracing::info!(%base_url, %cdn_url, "provider simulator listening");
    Ok(RunningSimulator { local_addr, base_url, stop: Some(stop), task: Some(task) })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(line::routes())
        .merge(twilio::routes())
        .merge(messaging::routes())
        .merge(content::routes())
        .merge(indicators::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with(admin::PREFIX) {
        return admin::AdminError::not_found(format!("no admin endpoint {}", uri.path())).into_response();
    }
    Provider::for_path(uri.path()).not_found(uri.path())
}

async fn method_not_allowed(uri: Uri) -> Response {
    Provider::for_path(uri.path()).method_not_allowed()
}

/// The simulated media CDN's base URL: the host others reach the simulator at, on the CDN's own
/// port, so that it is another origin than the API's, as Twilio's CDN is.
fn cdn_url(public_url: &str, cdn: SocketAddr) -> String {
    let Ok(mut url) = url::Url::parse(public_url) else { return format!("http://{cdn}") };
    if url.set_port(Some(cdn.port())).is_err() {
        return format!("http://{cdn}");
    }
    url.set_path("");
    url.as_str().trim_end_matches('/').to_owned()
}

/// Serves the API hosts and the media CDN until `stopped` fires (or its sender is dropped).
async fn serve_both(stopped: oneshot::Receiver<()>, api: (TcpListener, Router), cdn: (TcpListener, Router), app: Arc<App>) {
    let (stop_api, api_stopped) = oneshot::channel();
    let (stop_cdn, cdn_stopped) = oneshot::channel();
    let relay = async move {
        // Dropped or sent, either way it is time to stop.
        let _ = stopped.await;
        let _ = stop_api.send(());
        let _ = stop_cdn.send(());
    };
    tokio::join!(relay, serve(api.0, app.clone(), api.1, api_stopped), serve(cdn.0, app, cdn.1, cdn_stopped));
}

async fn serve(listener: TcpListener, app: Arc<App>, router: Router, mut stopped: oneshot::Receiver<()>) {
    // Dropping the set when the loop ends aborts the open connections.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, app.clone(), router.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!("provider simulator stopped");
}

/// Serves one HTTP/1.1 connection. Serving connections here rather than with `axum::serve`
/// lets a fault close a connection without an answer: hyper drops a connection whose service
/// fails.
async fn connection(stream: TcpStream, app: Arc<App>, router: Router) {
    let service = hyper::service::service_fn(move |request| dispatch::handle(app.clone(), router.clone(), request));
    if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
