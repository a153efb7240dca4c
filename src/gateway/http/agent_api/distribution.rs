//! Agents and the conversations they hold: `PUT /v1/agents/{id}/presence` (sign-in, status,
//! heartbeat), `GET /v1/agents`, and an agent putting a conversation aside
//! (`POST /v1/conversations/{id}/wait`) or ending a wrap-up (`…/wrap-up-done`). Each change
//! wakes push distribution.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AgentApiState;
use super::body::JsonBody;
use super::caller::Caller;
use super::error::ApiError;
use crate::gateway::conversations::actions;
use crate::gateway::conversations::agents::{self, PresenceRequest};

fn ttl_ms(state: &AgentApiState) -> i64 {
    i64::try_from(state.presence_ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Records an agent's presence.
pub async fn presence(
    State(state): State<Arc<AgentApiState>>,
    Path(id): Path<String>,
    caller: Caller,
    JsonBody(request): JsonBody<PresenceRequest>,
) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let ttl = ttl_ms(&state);
    let agent = state.act(move |tx| agents::report(tx, &caller.rt, &caller.workstreams, &id, request, now)).await?;
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "agent": agent, "presence": agent.presence(now, ttl) }))).into_response())
}

/// The agents of the caller's workstreams.
pub async fn list(State(state): State<Arc<AgentApiState>>, caller: Caller) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let ttl = ttl_ms(&state);
    let agents = state.look(move |tx| agents::list(tx, &caller.rt, &caller.workstreams, ttl, now)).await?;
    Ok((StatusCode::OK, axum::Json(json!({ "agents": agents }))).into_response())
}

/// The agent puts an Active conversation aside until the customer writes.
pub async fn wait(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let conv = state.act(move |tx| actions::wait(tx, &caller.rt, &caller.workstreams, &id, now)).await?;
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// The agent ends a closed conversation's wrap-up.
pub async fn wrap_up_done(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let conv = state.act(move |tx| actions::wrap_up_done(tx, &caller.workstreams, &id, now)).await?;
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}
