//! `GET /switchboard/{namespace}/{account}/media/{id}/{file_name}`: an agent's uploaded file, to
//! whoever has the URL (the provider fetching it for the customer). Kept for the deduplication
//! retention, like processed events.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::gateway::runtime::Runtime;
use crate::gateway::store::Store;

/// What serving uploads needs.
pub struct MediaState {
    /// The store the uploads are in.
    pub store: Store,
    /// The current configuration: only the account's own path serves.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
}

/// The route of uploads, to merge into the webhook port's router.
pub fn router(state: Arc<MediaState>) -> Router {
    Router::new().route("/switchboard/{namespace}/{account}/media/{id}/{name}", get(serve)).with_state(state)
}

async fn serve(State(state): State<Arc<MediaState>>, Path((namespace, account, id, _name)): Path<(String, String, String, String)>) -> Response {
    let ours = state.runtime.borrow().as_ref().is_some_and(|rt| rt.config.account.namespace == namespace && rt.config.account.name == account);
    if !ours || uuid::Uuid::parse_str(&id).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    match state.store.read(move |tx| tx.upload(&id)).await {
        Ok(Some((content_type, bytes))) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read an uploaded file");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
