//! Agents as the desk reports them (`PUT /v1/agents/{id}/presence`): one person's presence,
//! capacity, queues and skills, shared by every queue they serve on the account's gateway.

use serde::{Deserialize, Serialize};

/// Whether an agent takes new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// Offered new conversations.
    Available,
    /// Keeps their conversations, gets no new ones.
    Busy,
    /// Keeps their conversations, gets no new ones.
    Away,
    /// Signed out: their active conversations go back to their queues.
    Offline,
}

/// A queue an agent serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueRef {
    /// The workstream.
    pub workstream: String,
    /// The queue's name in it.
    pub queue: String,
}

/// An agent as last reported, with when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// The desk's ID of the agent.
    pub id: String,
    /// The name shown to customers ({AgentName}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// As the desk last said.
    pub status: Presence,
    /// Units of work the agent takes at once.
    pub capacity: u32,
    /// The queues the agent serves.
    pub queues: Vec<QueueRef>,
    /// What the agent can do, matched against a conversation's required skills.
    #[serde(default)]
    pub skills: Vec<String>,
    /// When the desk last reported the agent (a heartbeat), in milliseconds.
    pub reported_ms: i64,
    /// Since when the agent has had nothing new: their last assignment, or when they became
    /// Available. The longest idle wins a tie.
    pub idle_since_ms: i64,
}

impl Agent {
    /// The presence in force at `now_ms`: Offline once the desk has not reported the agent for
    /// `ttl_ms` (missed heartbeats).
    pub fn presence(&self, now_ms: i64, ttl_ms: i64) -> Presence {
        if now_ms.saturating_sub(self.reported_ms) > ttl_ms { Presence::Offline } else { self.status }
    }

    /// Whether the agent serves `queue` of `workstream`.
    pub fn serves(&self, workstream: &str, queue: &str) -> bool {
        self.queues.iter().any(|q| q.workstream == workstream && q.queue == queue)
    }

    /// Whether the agent has every skill in `required`.
    pub fn qualifies(&self, required: &[String]) -> bool {
        required.iter().all(|s| self.skills.iter().any(|own| own.eq_ignore_ascii_case(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_heartbeats_are_offline_and_skills_must_all_match() {
        let agent = Agent {
            id: "a1".into(),
            name: None,
            status: Presence::Busy,
            capacity: 2,
            queues: vec![QueueRef { workstream: "ws".into(), queue: "general".into() }],
            skills: vec!["Turkish".into(), "billing".into()],
            reported_ms: 1_000,
            idle_since_ms: 0,
        };
        assert_eq!(agent.presence(61_000, 60_000), Presence::Busy);
        assert_eq!(agent.presence(61_001, 60_000), Presence::Offline);
        assert!(agent.serves("ws", "general") && !agent.serves("ws", "vip") && !agent.serves("other", "general"));
        assert!(agent.qualifies(&[]) && agent.qualifies(&["turkish".into()]) && agent.qualifies(&["billing".into(), "turkish".into()]));
        assert!(!agent.qualifies(&["turkish".into(), "german".into()]), "every required skill");
    }
}
