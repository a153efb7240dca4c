//! Push distribution's choice: which waiting conversation goes to which agent. Conversations
//! are served by their queue's priority (lower first), then their own priority (Urgent first),
//! then age; each goes to an Available agent who serves its queue, has every skill it requires
//! and free capacity for it — its last agent first when the workstream keeps the same agent,
//! else the one with the most free capacity, ties to the one idle longest. Pure: the caller
//! loads agents, holds and conversations in one transaction and writes the choices back.

use std::cmp::Reverse;

use super::agent::{Agent, Presence};
use super::conversation::priority_rank;
use crate::api::routing_rule::Priority;

/// A conversation waiting for an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Its ID.
    pub conversation_id: String,
    /// Its workstream.
    pub workstream: String,
    /// Its queue.
    pub queue: String,
    /// Its queue's priority, lower first.
    pub queue_priority: i32,
    /// Its own priority (classification).
    pub priority: Priority,
    /// Since when it waits (ms).
    pub since_ms: i64,
    /// The skills an agent needs for it.
    pub skills: Vec<String>,
    /// Units of capacity it takes (its workstream's `capacityPerConversation`).
    pub units: u32,
    /// The agent to offer it to first (`keepSameAgent`).
    pub preferred_agent: Option<String>,
}

/// An agent as the choice sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The agent.
    pub agent: Agent,
    /// Presence in force now.
    pub presence: Presence,
    /// Units held now (active conversations, wrap-up).
    pub load: u32,
}

impl Candidate {
    /// Units it can still take.
    pub fn free(&self) -> u32 {
        self.agent.capacity.saturating_sub(self.load)
    }

    fn takes(&self, work: &Waiting) -> bool {
        self.presence == Presence::Available && self.free() >= work.units && self.agent.serves(&work.workstream, &work.queue) && self.agent.qualifies(&work.skills)
    }
}

/// Sorts waiting conversations in the order they are served.
pub fn order(waiting: &mut [Waiting]) {
    waiting.sort_by(|a, b| {
        (a.queue_priority, priority_rank(a.priority), a.since_ms, &a.conversation_id).cmp(&(b.queue_priority, priority_rank(b.priority), b.since_ms, &b.conversation_id))
    });
}

/// The agent `work` goes to among `agents`, if any takes it.
pub fn choose(work: &Waiting, agents: &[Candidate]) -> Option<usize> {
    if let Some(preferred) = &work.preferred_agent
        && let Some(i) = agents.iter().position(|c| &c.agent.id == preferred && c.takes(work))
    {
        return Some(i);
    }
    agents
        .iter()
        .enumerate()
        .filter(|(_, c)| c.takes(work))
        .min_by(|(_, a), (_, b)| (Reverse(a.free()), a.agent.idle_since_ms, &a.agent.id).cmp(&(Reverse(b.free()), b.agent.idle_since_ms, &b.agent.id)))
        .map(|(i, _)| i)
}

/// Assigns what it can of `waiting` (served in [`order`]) at `now_ms`: the pairs (conversation,
/// agent index), with the agents' loads and idle times updated as each is taken. A conversation
/// no agent takes is passed over, so the next one may still be assigned (another queue, fewer
/// skills).
pub fn plan(mut waiting: Vec<Waiting>, agents: &mut [Candidate], now_ms: i64) -> Vec<(Waiting, usize)> {
    order(&mut waiting);
    let mut planned = Vec::new();
    // Once no agent has a unit free, nothing more can be taken.
    let mut open = agents.iter().filter(|c| c.presence == Presence::Available && c.free() > 0).count();
    for work in waiting {
        if open == 0 {
            break;
        }
        if let Some(i) = choose(&work, agents) {
            agents[i].load += work.units;
            agents[i].agent.idle_since_ms = now_ms;
            if agents[i].free() == 0 {
                open -= 1;
            }
            planned.push((work, i));
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::model::agent::QueueRef;

    fn agent(id: &str, capacity: u32, load: u32, queues: &[&str], skills: &[&str], idle_since_ms: i64) -> Candidate {
        Candidate {
            agent: Agent {
                id: id.into(),
                name: None,
                status: Presence::Available,
                capacity,
                queues: queues.iter().map(|q| QueueRef { workstream: "ws".into(), queue: (*q).into() }).collect(),
                skills: skills.iter().map(|s| (*s).into()).collect(),
                reported_ms: 0,
                idle_since_ms,
            },
            presence: Presence::Available,
            load,
        }
    }

    fn waiting(id: &str, queue: &str, queue_priority: i32, priority: Priority, since_ms: i64) -> Waiting {
        Waiting {
            conversation_id: id.into(),
            workstream: "ws".into(),
            queue: queue.into(),
            queue_priority,
            priority,
            since_ms,
            skills: Vec::new(),
            units: 1,
            preferred_agent: None,
        }
    }

    fn ids(planned: &[(Waiting, usize)], agents: &[Candidate]) -> Vec<(String, String)> {
        planned.iter().map(|(w, i)| (w.conversation_id.clone(), agents[*i].agent.id.clone())).collect()
    }

    #[test]
    fn queues_then_priority_then_age_are_served_first() {
        let mut work = vec![
            waiting("old-normal", "general", 10, Priority::Normal, 1),
            waiting("new-urgent", "general", 10, Priority::Urgent, 5),
            waiting("vip", "vip", 0, Priority::Low, 9),
            waiting("newer-normal", "general", 10, Priority::Normal, 2),
        ];
        order(&mut work);
        let order: Vec<&str> = work.iter().map(|w| w.conversation_id.as_str()).collect();
        assert_eq!(order, ["vip", "new-urgent", "old-normal", "newer-normal"]);
    }

    #[test]
    fn capacity_is_never_exceeded_and_the_freest_agent_wins_ties_to_the_longest_idle() {
        let mut agents = vec![agent("a", 2, 1, &["general"], &[], 100), agent("b", 3, 0, &["general"], &[], 200), agent("c", 3, 0, &["general"], &[], 50)];
        let work: Vec<Waiting> = (0..8).map(|n| waiting(&format!("w{n}"), "general", 0, Priority::Normal, n)).collect();
        let planned = plan(work, &mut agents, 1_000);
        // c and b have 3 free, c idle longest; then b (3) over c (2); ... a has 1 free.
        assert_eq!(ids(&planned, &agents)[..3], [("w0".into(), "c".into()), ("w1".into(), "b".into()), ("w2".into(), "b".into())]);
        assert_eq!(planned.len(), 7, "7 free units in all, the eighth waits");
        for c in &agents {
            assert!(c.load <= c.agent.capacity, "{} over capacity", c.agent.id);
        }
        let mut units = vec![waiting("big", "general", 0, Priority::Normal, 0)];
        units[0].units = 2;
        let mut one_free = vec![agent("a", 2, 1, &["general"], &[], 0)];
        assert!(plan(units, &mut one_free, 0).is_empty(), "a conversation of 2 units does not fit in 1");
    }

    #[test]
    fn queues_skills_presence_and_affinity_decide_who_may_take_it() {
        let mut busy = agent("busy", 5, 0, &["general"], &["turkish"], 0);
        busy.presence = Presence::Busy;
        let mut offline = agent("offline", 5, 0, &["general"], &["turkish"], 0);
        offline.presence = Presence::Offline;
        let agents = vec![busy, offline, agent("other-queue", 5, 0, &["vip"], &["turkish"], 0), agent("no-skill", 5, 0, &["general"], &[], 0), agent("fits", 1, 0, &["general"], &["Turkish"], 9)];
        let mut work = waiting("w", "general", 0, Priority::Normal, 0);
        work.skills = vec!["turkish".into()];
        assert_eq!(choose(&work, &agents).map(|i| agents[i].agent.id.as_str()), Some("fits"));
        work.skills.push("german".into());
        assert_eq!(choose(&work, &agents), None, "nobody has both skills");

        let agents = vec![agent("freest", 5, 0, &["general"], &[], 0), agent("last", 2, 1, &["general"], &[], 0)];
        let mut work = waiting("w", "general", 0, Priority::Normal, 0);
        work.preferred_agent = Some("last".into());
        assert_eq!(choose(&work, &agents).map(|i| agents[i].agent.id.as_str()), Some("last"), "the last agent first");
        let full = vec![agent("freest", 5, 0, &["general"], &[], 0), agent("last", 1, 1, &["general"], &[], 0)];
        assert_eq!(choose(&work, &full).map(|i| full[i].agent.id.as_str()), Some("freest"), "else as usual");
    }

    #[test]
    fn a_conversation_nobody_takes_does_not_hold_up_the_next() {
        let mut agents = vec![agent("a", 1, 0, &["general"], &[], 0)];
        let mut needs_skill = waiting("first", "general", 0, Priority::Urgent, 0);
        needs_skill.skills = vec!["german".into()];
        let planned = plan(vec![needs_skill, waiting("second", "general", 0, Priority::Normal, 1)], &mut agents, 0);
        assert_eq!(ids(&planned, &agents), [("second".to_owned(), "a".to_owned())]);
    }
}
