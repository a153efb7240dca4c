//! Agents' presence as the desk reports it, and what the agent API shows of them. One person's
//! presence is shared by every workstream of the account's gateway; a caller changes only the
//! queues of its own workstreams and sees the agents who serve one of them.

use serde::{Deserialize, Serialize};

use super::actions::Refused;
use super::distribute;
use crate::gateway::model::agent::{Agent, Presence, QueueRef};
use crate::gateway::runtime::Runtime;
use crate::gateway::store::Tx;

/// The most units an agent may take at once.
const MAX_CAPACITY: u32 = 1_000;
/// The longest agent ID, name and skill.
const MAX_TEXT: usize = 200;

/// Body of `PUT /v1/agents/{id}/presence`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceRequest {
    /// The name shown to customers.
    #[serde(default)]
    pub name: Option<String>,
    /// Available, Busy, Away or Offline.
    pub status: Presence,
    /// Units of work at once.
    pub capacity: u32,
    /// The caller's queues the agent serves.
    pub queues: Vec<QueueRef>,
    /// What the agent can do.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// An agent as the agent API shows them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// As reported.
    #[serde(flatten)]
    pub agent: Agent,
    /// The presence in force (Offline once heartbeats stopped).
    pub presence: Presence,
    /// Units held now.
    pub load: u32,
    /// The conversations that hold them (Active, or in wrap-up).
    pub conversations: Vec<String>,
}

fn text(field: &'static str, value: &str) -> Result<(), Refused> {
    if value.trim().is_empty() || value.len() > MAX_TEXT {
        return Err(Refused::Invalid { field, message: format!("must be 1 to {MAX_TEXT} characters") });
    }
    Ok(())
}

/// Records the agent's presence as the caller reports it at `now`: the caller's queues are
/// replaced, other workstreams' kept.
pub fn report(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, request: PresenceRequest, now: i64) -> Result<Agent, Refused> {
    text("agentId", id)?;
    if let Some(name) = &request.name {
        text("name", name)?;
    }
    if request.capacity > MAX_CAPACITY {
        return Err(Refused::Invalid { field: "capacity", message: format!("must be at most {MAX_CAPACITY}") });
    }
    for q in &request.queues {
        let ws = rt.workstream(&q.workstream).filter(|ws| allowed.contains(&ws.config.name));
        let Some(ws) = ws else { return Err(Refused::Invalid { field: "queues", message: format!("workstream {:?} is not one the token serves", q.workstream) }) };
        if !ws.config.queues.iter().any(|known| known.name == q.queue) {
            return Err(Refused::Invalid { field: "queues", message: format!("workstream {} has no queue {:?}", q.workstream, q.queue) });
        }
    }
    for skill in &request.skills {
        text("skills", skill)?;
    }
    let before = tx.agent(id)?;
    let mut queues: Vec<QueueRef> = before.iter().flat_map(|a| a.queues.iter()).filter(|q| !allowed.contains(&q.workstream)).cloned().collect();
    queues.extend(request.queues);
    queues.sort();
    queues.dedup();
    let was_available = before.as_ref().is_some_and(|a| a.status == Presence::Available);
    let agent = Agent {
        id: id.to_owned(),
        name: request.name.or_else(|| before.as_ref().and_then(|a| a.name.clone())),
        status: request.status,
        capacity: request.capacity,
        queues,
        skills: request.skills,
        reported_ms: now,
        // Idle from the moment the agent became Available, unless they were already.
        idle_since_ms: match &before {
            Some(a) if was_available => a.idle_since_ms,
            _ => now,
        },
    };
    tx.save_agent(&agent)?;
    Ok(agent)
}

/// The agents who serve one of the caller's workstreams, with their load at `now`.
pub fn list(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], ttl_ms: i64, now: i64) -> Result<Vec<AgentView>, Refused> {
    let holding = tx.holding(now)?;
    let loads = distribute::loads(rt, &holding);
    Ok(tx
        .agents()?
        .into_iter()
        .filter(|a| a.queues.iter().any(|q| allowed.contains(&q.workstream)))
        .map(|agent| {
            let conversations = holding.iter().filter(|c| c.agent.as_ref().is_some_and(|h| h.id == agent.id)).map(|c| c.id.clone()).collect();
            AgentView { presence: agent.presence(now, ttl_ms), load: loads.get(&agent.id).copied().unwrap_or(0), conversations, agent }
        })
        .collect())
}
