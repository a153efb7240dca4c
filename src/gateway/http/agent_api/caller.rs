//! Who calls the agent API: the bearer token is a workstream's `delivery.agentApiToken`, and
//! the caller acts on that workstream's conversations only.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::AgentApiState;
use super::error::ApiError;
use crate::gateway::runtime::Runtime;
use crate::signing::constant_time_eq;

/// The caller: the configuration it was authenticated against and the workstreams its token is
/// for.
#[derive(Clone)]
pub struct Caller {
    /// The configuration in force when the request came.
    pub rt: Arc<Runtime>,
    /// The workstreams whose token the caller presented.
    pub workstreams: Vec<String>,
}

impl FromRequestParts<Arc<AgentApiState>> for Caller {
    type Rejection = ApiError;

    /// Checks the bearer token against every workstream's, in constant time and all of them, so
    /// that the answer's timing does not tell which matched.
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AgentApiState>) -> Result<Self, ApiError> {
        let Some(rt) = state.runtime.borrow().clone() else {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the gateway has no configuration yet"));
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an Authorization: Bearer <agent API token> header is required"));
        };
        let matches: Vec<bool> = rt.workstreams.iter().map(|ws| constant_time_eq(ws.agent_api_token.expose().as_bytes(), token.as_bytes())).collect();
        let workstreams: Vec<String> = rt.workstreams.iter().zip(matches).filter(|(_, m)| *m).map(|(ws, _)| ws.config.name.clone()).collect();
        if workstreams.is_empty() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the token is not any workstream's agent API token"));
        }
        Ok(Caller { rt, workstreams })
    }
}
