//! Push distribution, one transaction per round: the Active conversations of agents who went
//! Offline (or whose presence ran out) go back to their queues (`conversation.unassigned`); then
//! each Push workstream's queued conversations are matched to Available agents
//! ([`crate::gateway::model::assignment`]) and assigned: Active, `conversation.assigned` to the
//! desk, the AgentAssigned message to the customer. In Pick mode an agent takes the next
//! conversation of a queue, or one they chose, through the agent API. Loads are counted from the
//! conversations that hold capacity in the same transaction as the decision (on PostgreSQL with
//! the agents' and conversations' rows locked), so no agent is ever over capacity and no
//! conversation assigned twice.

use std::collections::HashMap;

use super::actions::Refused;
use super::automated;
use super::desk_events::{self, Pending};
use crate::api::workstream::{DistributionMode, Trigger};
use crate::gateway::model::agent::{Agent, Presence};
use crate::gateway::model::assignment::{Candidate, Waiting, order, plan};
use crate::gateway::model::conversation::{AgentRef, Conversation, Handler, State};
use crate::gateway::model::desk_event::EventType;
use crate::gateway::runtime::{Runtime, Workstream};
use crate::gateway::store::{StoreError, Tx};

/// What a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The conversations assigned: their workstream and how long they waited (ms).
    pub assigned: Vec<(String, i64)>,
    /// Conversations back in their queues.
    pub unassigned: usize,
}

/// What waits and who is there, for the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Each configured queue: workstream, queue, conversations waiting, the oldest's start.
    pub queues: Vec<(String, String, i64, Option<i64>)>,
    /// Reported agents by the presence in force.
    pub presence: Vec<(Presence, i64)>,
}

/// The queues' and agents' state at `at`.
pub fn stats(tx: &mut dyn Tx, rt: &Runtime, at: Moment) -> Result<Stats, StoreError> {
    let mut stats = Stats::default();
    for ws in &rt.workstreams {
        let counted = tx.queue_counts(&ws.config.name)?;
        for q in &ws.config.queues {
            let (count, oldest) = counted.iter().find(|(name, _, _)| name == &q.name).map_or((0, None), |(_, n, oldest)| (*n, Some(*oldest)));
            stats.queues.push((ws.config.name.clone(), q.name.clone(), count, oldest));
        }
    }
    let agents = tx.agents()?;
    for presence in [Presence::Available, Presence::Busy, Presence::Away, Presence::Offline] {
        stats.presence.push((presence, agents.iter().filter(|a| a.presence(at.now, at.ttl_ms) == presence).count() as i64));
    }
    Ok(stats)
}

/// When a decision is made, and how long a reported presence lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    /// Now, in ms.
    pub now: i64,
    /// An agent not reported for this long is Offline.
    pub ttl_ms: i64,
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

/// Runs one round.
pub fn run(tx: &mut dyn Tx, rt: &Runtime, at: Moment) -> Result<Round, StoreError> {
    let Moment { now, ttl_ms } = at;
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
        if offline && conv.unassign(now) {
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
            tx.queued_conversations(&ws.config.name)?.into_iter().map(|c| (c.id.clone(), c)).collect();
        let waiting: Vec<Waiting> = queued.values().filter_map(|c| waiting(ws, c)).collect();
        for (work, i) in plan(waiting, &mut candidates, now) {
            let Some(mut conv) = queued.remove(&work.conversation_id) else { continue };
            assign(tx, rt, ws, &mut conv, &candidates[i].agent, now)?;
            tx.save_agent(&candidates[i].agent)?;
            round.assigned.push((conv.workstream.clone(), conv.waited_ms(now)));
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
    note_wait(tx, conv, now)?;
    conv.assign(AgentRef { id: agent.id.clone(), name: agent.name.clone() }, ws.wrap_up_ms());
    tx.update_conversation(conv)?;
    desk_events::enqueue(tx, rt.account_ref(), conv, Pending { event_type: EventType::ConversationAssigned, message: None, reason: None }, now)?;
    automated::send(tx, rt.account_ref(), ws, conv, &[Trigger::AgentAssigned], &[], now)?;
    Ok(())
}

/// Notes the wait an assignment at `now` ends, when the conversation waits in a queue (for
/// `{AverageWaitTime}`).
pub fn note_wait(tx: &mut dyn Tx, conv: &Conversation, now: i64) -> Result<(), StoreError> {
    let (Some(_), Some(queue)) = (conv.waiting_rank(), &conv.routing.queue) else { return Ok(()) };
    let (window, _) = automated::RECENT_WAITS;
    tx.record_wait(&conv.workstream, queue, now, conv.waited_ms(now), now.saturating_sub(window))
}

/// The agent's free capacity is at least what a conversation of `ws` takes, and they are not
/// Offline; loads are counted in the calling transaction.
pub fn check_free(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, agent: &Agent, at: Moment) -> Result<(), Refused> {
    if agent.presence(at.now, at.ttl_ms) == Presence::Offline {
        return Err(Refused::AgentOffline);
    }
    let load = loads(rt, &tx.holding(at.now)?).get(&agent.id).copied().unwrap_or(0);
    if agent.capacity.saturating_sub(load) < units(ws) {
        return Err(Refused::NoCapacity);
    }
    Ok(())
}

/// An agent who may take work: reported, and not Offline.
fn reported(tx: &mut dyn Tx, agent_id: &str, at: Moment) -> Result<Agent, Refused> {
    let agent = tx.agent(agent_id)?.ok_or(Refused::AgentUnknown)?;
    if agent.presence(at.now, at.ttl_ms) == Presence::Offline {
        return Err(Refused::AgentOffline);
    }
    Ok(agent)
}

/// A workstream of the caller and one of its queues.
fn queue_of<'r>(rt: &'r Runtime, allowed: &[String], workstream: &str, queue: &str) -> Result<&'r Workstream, Refused> {
    let ws = rt.workstream(workstream).filter(|ws| allowed.contains(&ws.config.name)).ok_or(Refused::WorkstreamNotFound)?;
    if !ws.config.queues.iter().any(|q| q.name == queue) {
        return Err(Refused::QueueNotFound);
    }
    Ok(ws)
}

/// What waits in a queue for an agent, in the order it is served.
pub fn queue(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], workstream: &str, queue: &str) -> Result<Vec<Conversation>, Refused> {
    let ws = queue_of(rt, allowed, workstream, queue)?;
    let mut queued: HashMap<String, Conversation> = tx
        .queued_conversations(workstream)?
        .into_iter()
        .filter(|c| c.routing.queue.as_deref() == Some(queue))
        .map(|c| (c.id.clone(), c))
        .collect();
    let mut waiting: Vec<Waiting> = queued.values().filter_map(|c| self::waiting(ws, c)).collect();
    order(&mut waiting);
    Ok(waiting.iter().filter_map(|w| queued.remove(&w.conversation_id)).collect())
}

/// The agent takes the next conversation of the queue they qualify for (Pick mode).
pub fn pick_next(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], workstream: &str, queue_name: &str, agent_id: &str, at: Moment) -> Result<Conversation, Refused> {
    let ws = queue_of(rt, allowed, workstream, queue_name)?;
    let agent = reported(tx, agent_id, at)?;
    if !agent.serves(workstream, queue_name) {
        return Err(Refused::NotAMember);
    }
    check_free(tx, rt, ws, &agent, at)?;
    let next = queue(tx, rt, allowed, workstream, queue_name)?.into_iter().find(|c| agent.qualifies(&c.routing.skills));
    let mut conv = next.ok_or(Refused::NothingToPick)?;
    take(tx, rt, ws, &mut conv, agent, at.now)?;
    Ok(conv)
}

/// The agent takes a conversation they chose from a queue (Pick mode).
pub fn pick(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, agent_id: &str, at: Moment) -> Result<Conversation, Refused> {
    let mut conv = tx.conversation(id)?.filter(|c| allowed.contains(&c.workstream)).ok_or(Refused::ConversationNotFound)?;
    if conv.state == State::Closed {
        return Err(Refused::ConversationClosed);
    }
    if conv.state != State::Open || conv.handler != Handler::Desk {
        return Err(Refused::AlreadyAssigned);
    }
    let ws = rt.workstream(&conv.workstream).ok_or(Refused::ConversationNotFound)?;
    let agent = reported(tx, agent_id, at)?;
    if !conv.routing.queue.as_deref().is_some_and(|q| agent.serves(&conv.workstream, q)) {
        return Err(Refused::NotAMember);
    }
    if !agent.qualifies(&conv.routing.skills) {
        return Err(Refused::NotQualified);
    }
    check_free(tx, rt, ws, &agent, at)?;
    take(tx, rt, ws, &mut conv, agent, at.now)?;
    Ok(conv)
}

/// Assigns a picked conversation; the agent's idle time starts again.
fn take(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, conv: &mut Conversation, mut agent: Agent, now: i64) -> Result<(), StoreError> {
    assign(tx, rt, ws, conv, &agent, now)?;
    agent.idle_since_ms = now;
    tx.save_agent(&agent)
}

/// Where a transfer sends a conversation.
#[derive(Clone, Debug)]
pub enum TransferTo {
    /// Back to distribution, in another queue of its workstream.
    Queue(String),
    /// To an agent, as a supervisor's assignment (`force` over capacity).
    Agent {
        /// The agent.
        agent: AgentRef,
        /// Over capacity, or while Offline.
        force: bool,
    },
}

/// Moves a conversation to another queue or agent (`conversation.transferred`). To a queue it
/// is Open there, its agent's capacity free and its affinity forgotten (it was moved away from
/// them), and distribution takes it from there; to an agent it is theirs, as an assignment.
pub fn transfer(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, to: TransferTo, at: Moment) -> Result<Conversation, Refused> {
    let now = at.now;
    let mut conv = tx.conversation(id)?.filter(|c| allowed.contains(&c.workstream)).ok_or(Refused::ConversationNotFound)?;
    if conv.state == State::Closed {
        return Err(Refused::ConversationClosed);
    }
    if conv.handler != Handler::Desk {
        return Err(Refused::WithBot);
    }
    let ws = rt.workstream(&conv.workstream).ok_or(Refused::ConversationNotFound)?;
    let reason = match to {
        TransferTo::Queue(queue) => {
            queue_of(rt, allowed, &conv.workstream, &queue)?;
            conv.requeue(queue, now);
            tx.update_conversation(&conv)?;
            "queue"
        }
        TransferTo::Agent { agent, force } => {
            if let Some(reported) = tx.agent(&agent.id)?
                && !force
            {
                check_free(tx, rt, ws, &reported, at)?;
            }
            note_wait(tx, &conv, now)?;
            conv.assign(agent, ws.wrap_up_ms());
            tx.update_conversation(&conv)?;
            automated::send(tx, rt.account_ref(), ws, &conv, &[Trigger::AgentAssigned], &[], now)?;
            "agent"
        }
    };
    desk_events::enqueue(tx, rt.account_ref(), &conv, Pending { event_type: EventType::ConversationTransferred, message: None, reason: Some(reason) }, now)?;
    Ok(conv)
}
