//! Push distribution, one transaction per round: the Active conversations of agents who went
//! Offline (or whose presence ran out) go back to their queues (`conversation.unassigned`); then
//! each Push workstream's queued conversations are matched to Available agents
//! ([`crate::gateway::model::assignment`]) and assigned: Active, `conversation.assigned` to the
//! desk, the AgentAssigned message to the customer. Loads are counted from the conversations
//! that hold capacity in the same transaction, so no agent is ever over capacity and no
//! conversation assigned twice.

use std::collections::HashMap;

use super::automated;
use super::desk_events::{self, Pending};
use crate::api::workstream::{DistributionMode, Trigger};
use crate::gateway::model::agent::{Agent, Presence};
use crate::gateway::model::assignment::{Candidate, Waiting, plan};
use crate::gateway::model::conversation::{AgentRef, Conversation, Handler};
use crate::gateway::model::desk_event::EventType;
use crate::gateway::runtime::{Runtime, Workstream};
use crate::gateway::store::{StoreError, Tx};

/// What a round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Conversations assigned.
    pub assigned: usize,
    /// Conversations back in their queues.
    pub unassigned: usize,
}

/// Units of an agent's capacity one conversation of `ws` takes.
pub fn units(ws: &Workstream) -> u32 {
    u32::try_from(ws.config.distribution.capacity_per_conversation).unwrap_or(0).max(1)
}

/// The units each agent holds at `now`, from the conversations that hold capacity.
pub fn loads(rt: &Runtime, holding: &[Conversation]) -> HashMap<String, u32> {
    let mut loads: HashMap<String, u32> = HashMap::new();
    for conv in holding {
        if let Some(agent) = &conv.agent {
            *loads.entry(agent.id.clone()).or_default() += rt.workstream(&conv.workstream).map_or(1, units);
        }
    }
    loads
}

/// Runs one round at `now`; an agent not reported for `ttl_ms` is Offline.
pub fn run(tx: &mut dyn Tx, rt: &Runtime, ttl_ms: i64, now: i64) -> Result<Round, StoreError> {
    let agents = tx.agents()?;
    if agents.is_empty() {
        return Ok(Round::default());
    }
    let mut round = Round::default();
    let presence: HashMap<&str, Presence> = agents.iter().map(|a| (a.id.as_str(), a.presence(now, ttl_ms))).collect();
    let mut holding = Vec::new();
    for mut conv in tx.holding(now)? {
        // Conversations of agents the desk never reported (assigned by a supervisor) are left
        // alone: only a reported agent can go Offline.
        let offline = conv.agent.as_ref().is_some_and(|a| presence.get(a.id.as_str()) == Some(&Presence::Offline));
        if offline && conv.unassign() {
            tx.update_conversation(&conv)?;
            desk_events::enqueue(tx, rt.account_ref(), &conv, Pending { event_type: EventType::ConversationUnassigned, message: None, reason: Some("agentOffline") }, now)?;
            round.unassigned += 1;
        } else {
            holding.push(conv);
        }
    }
    let loads = loads(rt, &holding);
    let mut candidates: Vec<Candidate> = agents
        .into_iter()
        .map(|agent| Candidate { load: loads.get(&agent.id).copied().unwrap_or(0), presence: agent.presence(now, ttl_ms), agent })
        .filter(|c| c.presence == Presence::Available)
        .collect();
    for ws in rt.workstreams.iter().filter(|ws| ws.config.distribution.mode == DistributionMode::Push) {
        if candidates.iter().all(|c| c.agent.capacity <= c.load) {
            break;
        }
        let mut queued: HashMap<String, Conversation> =
            tx.queued_conversations(&ws.config.name)?.into_iter().filter(|c| c.handler == Handler::Desk).map(|c| (c.id.clone(), c)).collect();
        let waiting: Vec<Waiting> = queued.values().filter_map(|c| waiting(ws, c)).collect();
        for (work, i) in plan(waiting, &mut candidates, now) {
            let Some(mut conv) = queued.remove(&work.conversation_id) else { continue };
            assign(tx, rt, ws, &mut conv, &candidates[i].agent, now)?;
            tx.save_agent(&candidates[i].agent)?;
            round.assigned += 1;
        }
    }
    Ok(round)
}

/// The conversation as distribution sees it; None when its queue is not in the workstream.
fn waiting(ws: &Workstream, conv: &Conversation) -> Option<Waiting> {
    let queue = conv.routing.queue.as_ref()?;
    let queue_priority = ws.config.queues.iter().find(|q| &q.name == queue)?.priority;
    Some(Waiting {
        conversation_id: conv.id.clone(),
        workstream: conv.workstream.clone(),
        queue: queue.clone(),
        queue_priority,
        priority: conv.routing.priority,
        since_ms: conv.created_ms,
        skills: conv.routing.skills.clone(),
        units: units(ws),
        preferred_agent: if ws.config.distribution.keep_same_agent { conv.last_agent.clone() } else { None },
    })
}

/// Gives `conv` to `agent`: Active, told to the desk, announced to the customer.
fn assign(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, conv: &mut Conversation, agent: &Agent, now: i64) -> Result<(), StoreError> {
    conv.assign(AgentRef { id: agent.id.clone(), name: agent.name.clone() }, ws.wrap_up_ms());
    tx.update_conversation(conv)?;
    desk_events::enqueue(tx, rt.account_ref(), conv, Pending { event_type: EventType::ConversationAssigned, message: None, reason: None }, now)?;
    automated::send(tx, rt.account_ref(), ws, conv, &[Trigger::AgentAssigned], &[], now)?;
    Ok(())
}
