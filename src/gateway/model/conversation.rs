//! Conversations: what the gateway keeps per (workstream, customer), and its lifecycle.
//!
//! Open (routed to a queue, waiting for an agent) → Active (an agent took it and works on it,
//! answers included) → Waiting (the agent put it aside until the customer writes; its capacity
//! is free) → Closed. The customer writing to a waiting conversation makes it Open again, to be
//! offered to its agent first when the workstream keeps the same agent. An Active conversation
//! holds its agent's capacity, and after closing for the workstream's wrap-up. A conversation without messages from either side for the
//! workstream's `autoCloseAfterInactivity` is closed. While a bot handles a conversation
//! (`handler` Bot) its events go to the bot; an escalation hands it to the desk. One conversation per (workstream, customer) is not
//! closed at any time; the store enforces it with a unique index.
//!
//! Pure code: the processor loads and saves conversations, this decides what happens to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::routing_rule::Priority;

/// Where a conversation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// In a queue, not yet taken by an agent.
    Open,
    /// An agent is working on it.
    Active,
    /// Put aside until the customer writes again.
    Waiting,
    /// Finished; a new message from the customer starts a new conversation.
    Closed,
}

impl State {
    /// The name stored and shown to the desk.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "Open",
            State::Active => "Active",
            State::Waiting => "Waiting",
            State::Closed => "Closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Open" => State::Open,
            "Active" => State::Active,
            "Waiting" => State::Waiting,
            "Closed" => State::Closed,
            _ => return None,
        })
    }
}

/// Why a conversation was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CloseReason {
    /// No message for the workstream's inactivity limit.
    Inactivity,
    /// The routed queue was full and its overflow action is Decline.
    QueueOverflow,
    /// The customer blocked the account (LINE unfollow).
    CustomerBlocked,
    /// An agent (or the bot) closed it through the agent API.
    Agent,
}

impl CloseReason {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Inactivity => "inactivity",
            CloseReason::QueueOverflow => "queueOverflow",
            CloseReason::CustomerBlocked => "customerBlocked",
            CloseReason::Agent => "agent",
        }
    }
}

/// Who receives a conversation's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Handler {
    /// The agent desk.
    #[default]
    Desk,
    /// The workstream's bot, until it escalates.
    Bot,
}

impl Handler {
    /// The outbox's name of the receiver.
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Desk => "desk",
            Handler::Bot => "bot",
        }
    }
}

/// The agent working a conversation, as the desk named them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRef {
    /// The desk's ID of the agent.
    pub id: String,
    /// The name shown to the customer ({AgentName}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the bot handed over when it escalated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotHandoff {
    /// The bot's summary for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The context the bot gave, which routing saw as `attributes.<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// When it escalated.
    pub escalated_ms: i64,
}

/// The customer as the conversation knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfile {
    /// The provider's ID of the customer.
    pub id: String,
    /// Display name (LINE profile, WhatsApp ProfileName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Language (LINE profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Phone number in E.164 form (WhatsApp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// WhatsApp ID (the number without `+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Picture (LINE profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture_url: Option<String>,
    /// Whether the customer had an earlier conversation in this workstream or is linked to a
    /// contact.
    pub is_known: bool,
    /// The desk's contact ID this channel identity is linked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
}

/// Where routing put a conversation, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// The queue; absent when the conversation was declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Attributes set by classification.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Priority set by classification.
    #[serde(default)]
    pub priority: Priority,
    /// Skills an agent needs.
    #[serde(default)]
    pub skills: Vec<String>,
    /// The classification rules that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classified_by: Vec<String>,
    /// The route-to-queue rule that chose the queue; absent when the fallback queue was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_by: Option<String>,
    /// Set when the chosen queue was full and the conversation went to the fallback queue
    /// instead (or was declined): the queue that was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflowed_from: Option<String>,
    /// Whether the queue was within its operating hours when routed.
    pub within_operating_hours: bool,
}

/// One conversation, as stored (the `data` column) and as the desk sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// The gateway's ID of the conversation.
    pub id: String,
    /// The workstream.
    pub workstream: String,
    /// LINE or WhatsApp.
    pub channel: String,
    /// The state.
    pub state: State,
    /// Who receives its events.
    #[serde(default)]
    pub handler: Handler,
    /// The customer.
    pub customer: CustomerProfile,
    /// The routing result.
    pub routing: Routing,
    /// When it started (ms since the epoch).
    pub created_ms: i64,
    /// When the customer last wrote (on WhatsApp the 24-hour window runs from here).
    pub last_customer_ms: i64,
    /// When either side last wrote.
    #[serde(default)]
    pub last_activity_ms: i64,
    /// The agent working it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// The bot's handoff, once it escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<BotHandoff>,
    /// Until when it takes its agent's capacity (ms): [`HELD`] while Active, and after closing
    /// for the wrap-up the agent had when it was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<i64>,
    /// The wrap-up after closing, in ms ([`HELD`]: until the agent ends it), as the workstream
    /// had it when the agent took the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_up_ms: Option<i64>,
    /// Since when it waits in its queue for an agent (ms): the wait an assignment ends, for
    /// `{AverageWaitTime}` and the wait metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<i64>,
    /// The agent who had it last, offered it first when the workstream keeps the same agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_agent: Option<String>,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<i64>,
    /// Why it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<CloseReason>,
}

/// What the customer writing did to a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerWrote {
    /// Nothing changed but the time of the last message.
    Continued,
    /// A waiting conversation became active again.
    Reopened,
}

impl Conversation {
    /// The customer wrote at `at_ms` to this conversation (which is not closed).
    pub fn customer_wrote(&mut self, at_ms: i64) -> CustomerWrote {
        self.last_customer_ms = self.last_customer_ms.max(at_ms);
        self.last_activity_ms = self.last_activity_ms.max(at_ms);
        match self.state {
            State::Waiting => {
                self.state = State::Open;
                self.agent = None;
                self.queued_ms = Some(at_ms);
                CustomerWrote::Reopened
            }
            State::Open | State::Active | State::Closed => CustomerWrote::Continued,
        }
    }

    /// An agent or the bot wrote at `at_ms`: activity, which leaves the state as it is (an
    /// agent's answer does not put the conversation aside; [`Conversation::wait`] does).
    pub fn agent_wrote(&mut self, at_ms: i64) {
        self.last_activity_ms = self.last_activity_ms.max(at_ms);
    }

    /// An agent took the conversation, which holds their capacity until it is put aside or
    /// closed (and then for `wrap_up_ms`, [`HELD`] until the agent ends it); false when that
    /// agent already had it.
    pub fn assign(&mut self, agent: AgentRef, wrap_up_ms: Option<i64>) -> bool {
        let same = self.agent.as_ref().is_some_and(|a| a.id == agent.id) && self.state == State::Active;
        self.last_agent = Some(agent.id.clone());
        self.agent = Some(agent);
        self.state = State::Active;
        self.held_until_ms = Some(HELD);
        self.wrap_up_ms = wrap_up_ms;
        !same
    }

    /// The agent puts an Active conversation aside until the customer writes: its capacity is
    /// free, and it stays the agent's for affinity. False when it was not Active.
    pub fn wait(&mut self) -> bool {
        if self.state != State::Active {
            return false;
        }
        self.state = State::Waiting;
        self.held_until_ms = None;
        true
    }

    /// Its agent went Offline at `now_ms`: an Active conversation goes back to its queue (ahead of
    /// what came after it: its age is kept). False when it was not Active.
    pub fn unassign(&mut self, now_ms: i64) -> bool {
        if self.state != State::Active {
            return false;
        }
        self.state = State::Open;
        self.agent = None;
        self.held_until_ms = None;
        self.queued_ms = Some(now_ms);
        true
    }

    /// A transfer to `queue` at `now_ms`: Open there, without an agent, holding nothing, and
    /// without the affinity to the agent it was moved away from.
    pub fn requeue(&mut self, queue: String, now_ms: i64) {
        self.routing.queue = Some(queue);
        self.state = State::Open;
        self.agent = None;
        self.held_until_ms = None;
        self.last_agent = None;
        self.queued_ms = Some(now_ms);
    }

    /// Its place in the order its queue is served in, by its own priority, when it waits there
    /// for an agent (Open, with the desk, in a queue); None otherwise. Stored beside the
    /// document so that positions are counted without reading the queue.
    pub fn waiting_rank(&self) -> Option<i64> {
        (self.state == State::Open && self.handler == Handler::Desk && self.routing.queue.is_some()).then(|| i64::from(priority_rank(self.routing.priority)))
    }

    /// How long it has waited in its queue at `now_ms`.
    pub fn waited_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.queued_ms.unwrap_or(self.created_ms)).max(0)
    }

    /// The agent ended the wrap-up of a closed conversation; false when none was running.
    pub fn wrap_up_done(&mut self, now_ms: i64) -> bool {
        let running = self.state == State::Closed && self.held_until_ms.is_some_and(|until| until > now_ms);
        self.held_until_ms = None;
        running
    }

    /// Whether it takes its agent's capacity at `now_ms`.
    pub fn holds(&self, now_ms: i64) -> bool {
        self.agent.is_some() && self.held_until_ms.is_some_and(|until| until > now_ms)
    }

    /// Whether the conversation has been quiet for longer than `limit_ms` at `now_ms`.
    pub fn inactive(&self, now_ms: i64, limit_ms: i64) -> bool {
        self.state != State::Closed && now_ms.saturating_sub(self.last_activity_ms) >= limit_ms
    }

    /// Closes the conversation; closing a closed one changes nothing and returns false.
    pub fn close(&mut self, at_ms: i64, reason: CloseReason) -> bool {
        if self.state == State::Closed {
            return false;
        }
        self.state = State::Closed;
        self.closed_ms = Some(at_ms);
        self.close_reason = Some(reason);
        // An Active conversation's agent is kept for the wrap-up; any other holds nothing.
        self.held_until_ms = match (self.held_until_ms, self.wrap_up_ms) {
            (Some(_), Some(HELD)) => Some(HELD),
            (Some(_), Some(wrap_up)) if wrap_up > 0 => Some(at_ms.saturating_add(wrap_up)),
            _ => None,
        };
        true
    }
}

/// Rank of a conversation's priority in the order it is served, Urgent (0) first.
pub fn priority_rank(p: Priority) -> u8 {
    match p {
        Priority::Urgent => 0,
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
    }
}

/// A hold without an end: while Active, and a wrap-up that lasts until the agent ends it.
pub const HELD: i64 = i64::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(state: State) -> Conversation {
        Conversation {
            id: "c1".into(),
            workstream: "ws".into(),
            channel: "LINE".into(),
            state,
            handler: Handler::Desk,
            customer: CustomerProfile::default(),
            routing: Routing::default(),
            created_ms: 1_000,
            last_customer_ms: 1_000,
            last_activity_ms: 1_000,
            agent: None,
            bot: None,
            held_until_ms: None,
            wrap_up_ms: None,
            last_agent: None,
            closed_ms: None,
            close_reason: None,
            queued_ms: None,
        }
    }

    #[test]
    fn writing_to_a_waiting_conversation_reopens_it() {
        let mut c = conversation(State::Waiting);
        assert_eq!(c.customer_wrote(2_000), CustomerWrote::Reopened);
        assert_eq!(c.state, State::Open, "back in its queue");
        assert_eq!((c.last_customer_ms, c.queued_ms, c.waited_ms(2_500)), (2_000, Some(2_000), 500), "it waits again from the customer's message");
        let mut open = conversation(State::Open);
        assert_eq!(open.customer_wrote(500), CustomerWrote::Continued);
        assert_eq!((open.state, open.last_customer_ms), (State::Open, 1_000), "an older event does not move the clock back");
    }

    #[test]
    fn only_what_waits_in_a_queue_for_an_agent_has_a_rank() {
        let mut c = conversation(State::Open);
        assert_eq!(c.waiting_rank(), None, "no queue");
        c.routing.queue = Some("general".into());
        assert_eq!(c.waiting_rank(), Some(2), "Normal");
        c.routing.priority = Priority::Urgent;
        assert_eq!(c.waiting_rank(), Some(0));
        c.handler = Handler::Bot;
        assert_eq!(c.waiting_rank(), None, "with the bot");
        c.handler = Handler::Desk;
        c.state = State::Active;
        assert_eq!(c.waiting_rank(), None, "taken");
        assert_eq!(c.waited_ms(1_500), 500, "from its start when it never waited again");
    }

    #[test]
    fn inactivity_and_closing() {
        let mut c = conversation(State::Active);
        assert!(!c.inactive(1_999, 1_000));
        assert!(c.inactive(2_000, 1_000));
        assert!(c.close(2_000, CloseReason::Inactivity));
        assert!(!c.close(3_000, CloseReason::CustomerBlocked), "closing twice changes nothing");
        assert_eq!((c.state, c.closed_ms, c.close_reason), (State::Closed, Some(2_000), Some(CloseReason::Inactivity)));
        assert!(!c.inactive(10_000, 1_000));
    }

    #[test]
    fn an_active_conversation_holds_its_agent_until_put_aside_or_after_the_wrap_up() {
        let ann = || AgentRef { id: "a1".into(), name: Some("Ann".into()) };
        let mut c = conversation(State::Open);
        assert!(c.assign(ann(), Some(30_000)));
        assert_eq!((c.state, c.holds(1_000_000)), (State::Active, true));
        assert!(!c.assign(ann(), Some(30_000)), "the same agent again announces nothing");
        c.agent_wrote(5_000);
        assert_eq!((c.state, c.last_activity_ms, c.last_customer_ms), (State::Active, 5_000, 1_000), "an answer keeps it Active");
        assert!(!c.inactive(5_999, 1_000), "the agent's message counts as activity");
        assert!(c.wait() && !c.wait());
        assert_eq!((c.state, c.holds(5_000)), (State::Waiting, false), "put aside: the capacity is free");
        assert_eq!(c.customer_wrote(6_000), CustomerWrote::Reopened);
        assert_eq!((c.state, c.agent.as_ref(), c.last_agent.as_deref()), (State::Open, None, Some("a1")), "back in the queue, its agent remembered");
        assert!(c.assign(ann(), Some(30_000)), "taken again, announced again");
        assert!(c.close(10_000, CloseReason::Agent));
        assert!(c.holds(39_999) && !c.holds(40_000), "30 s of wrap-up after closing");
        let mut always = conversation(State::Open);
        always.assign(ann(), Some(HELD));
        always.close(10_000, CloseReason::Agent);
        assert!(always.holds(i64::MAX - 1), "until the agent ends it");
        assert!(always.wrap_up_done(20_000) && !always.holds(20_000) && !always.wrap_up_done(20_000));
        let mut none = conversation(State::Open);
        none.assign(ann(), None);
        none.close(10_000, CloseReason::Inactivity);
        assert!(!none.holds(10_000), "no wrap-up");
        let mut waiting = conversation(State::Open);
        waiting.assign(ann(), Some(30_000));
        waiting.wait();
        waiting.close(10_000, CloseReason::Agent);
        assert!(!waiting.holds(10_001), "a waiting conversation held nothing to wrap up");
        let mut offline = conversation(State::Open);
        offline.assign(ann(), None);
        assert!(offline.unassign(7_000) && !offline.unassign(7_000));
        assert_eq!(offline.queued_ms, Some(7_000), "it waits again from then");
        assert_eq!((offline.state, offline.agent.as_ref(), offline.holds(0)), (State::Open, None, false));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [State::Open, State::Active, State::Waiting, State::Closed] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("open"), None);
    }
}
