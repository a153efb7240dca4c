//! Agents and the conversations they hold: `PUT /v1/agents/{id}/presence` (sign-in, status,
//! heartbeat), `GET /v1/agents`, picking (`POST /v1/workstreams/{ws}/queues/{queue}/pick`,
//! `POST /v1/conversations/{id}/pick`) and what a queue holds, and an agent putting a
//! conversation aside (`POST /v1/conversations/{id}/wait`), ending a wrap-up
//! (`…/wrap-up-done`) or moving it (`…/transfer`). Each change wakes push distribution.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AgentApiState;
use super::body::JsonBody;
use super::caller::Caller;
use super::error::ApiError;
use serde::Deserialize;

use crate::gateway::conversations::actions::{self, Refused};
use crate::gateway::conversations::agents::{self, PresenceRequest};
use crate::gateway::conversations::distribute::{self, Moment, TransferTo};
use crate::gateway::metrics::AssignedBy;
use crate::gateway::model::conversation::AgentRef;

/// The presence TTL in ms.
fn ttl_ms(state: &AgentApiState) -> i64 {
    i64::try_from(state.presence_ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Now, with the presence TTL.
pub fn moment(state: &AgentApiState) -> Moment {
    Moment { now: state.clock.now_ms(), ttl_ms: ttl_ms(state) }
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

/// Body of a pick.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PickRequest {
    /// The agent who takes it.
    agent_id: String,
}

/// The agent takes the next conversation of the queue they qualify for.
pub async fn pick_next(
    State(state): State<Arc<AgentApiState>>,
    Path((workstream, queue)): Path<(String, String)>,
    caller: Caller,
    JsonBody(request): JsonBody<PickRequest>,
) -> Result<Response, ApiError> {
    let at = moment(&state);
    let conv = state.act(move |tx| distribute::pick_next(tx, &caller.rt, &caller.workstreams, &workstream, &queue, &request.agent_id, at)).await?;
    state.metrics.assigned(&conv.workstream, AssignedBy::Pick, conv.waited_ms(at.now));
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// The agent takes a conversation they chose.
pub async fn pick(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<PickRequest>) -> Result<Response, ApiError> {
    let at = moment(&state);
    let conv = state.act(move |tx| distribute::pick(tx, &caller.rt, &caller.workstreams, &id, &request.agent_id, at)).await?;
    state.metrics.assigned(&conv.workstream, AssignedBy::Pick, conv.waited_ms(at.now));
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}

/// What waits in a queue, in the order it is served.
pub async fn queue(State(state): State<Arc<AgentApiState>>, Path((workstream, queue)): Path<(String, String)>, caller: Caller) -> Result<Response, ApiError> {
    let waiting = state.look(move |tx| distribute::queue(tx, &caller.rt, &caller.workstreams, &workstream, &queue)).await?;
    Ok((StatusCode::OK, axum::Json(json!({ "waiting": waiting }))).into_response())
}

/// Body of a transfer: a `queue`, or an `agentId` (with `name`, `force`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferRequest {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    force: bool,
}

/// Moves a conversation to another queue or agent.
pub async fn transfer(State(state): State<Arc<AgentApiState>>, Path(id): Path<String>, caller: Caller, JsonBody(request): JsonBody<TransferRequest>) -> Result<Response, ApiError> {
    let to = match (request.queue, request.agent_id) {
        (Some(queue), None) => TransferTo::Queue(queue),
        (None, Some(id)) if !id.trim().is_empty() => TransferTo::Agent { agent: AgentRef { id, name: request.name }, force: request.force },
        _ => return Err(Refused::Invalid { field: "queue", message: "give exactly one of queue and agentId".to_owned() }.into()),
    };
    let at = moment(&state);
    let to_agent = matches!(to, TransferTo::Agent { .. });
    let conv = state.act(move |tx| distribute::transfer(tx, &caller.rt, &caller.workstreams, &id, to, at)).await?;
    if to_agent {
        state.metrics.assigned(&conv.workstream, AssignedBy::Transfer, conv.waited_ms(at.now));
    }
    state.wakers.distributor.notify_one();
    Ok((StatusCode::OK, axum::Json(json!({ "conversation": conv }))).into_response())
}
