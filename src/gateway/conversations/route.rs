//! Routing at run time: a new conversation's first message through the workstream's compiled
//! rules, then the queue's checks — it must exist, its overflow limit, its operating hours.
//! [`route`] is pure (the caller says how many conversations wait in each queue);
//! [`route_stored`] asks the store.

use jiff::Timestamp;

use crate::api::workstream::OverflowAction;
use crate::gateway::model::conversation::{CustomerProfile, Routing};
use crate::gateway::model::event::Message;
use crate::gateway::runtime::Workstream;
use crate::gateway::store::{StoreError, Tx};
use crate::routing::evaluate::{Context, WorkItem, evaluate};

/// Routes a new conversation. `split_key` picks the share of a percentage split (the
/// conversation's ID, so that routing the same conversation again gives the same queue);
/// `waiting` says how many conversations wait in a queue; `context` holds attributes the rules
/// see from the start (a bot's escalation).
pub fn route(
    ws: &Workstream,
    customer: &CustomerProfile,
    message: &Message,
    split_key: &uuid::Uuid,
    now: Timestamp,
    context: Option<&Context>,
    waiting: &mut dyn FnMut(&str) -> i64,
) -> Routing {
    let queues = &ws.config.queues;
    let within_operating_hours = queues.is_empty() || queues.iter().any(|q| ws.queue_open(&q.name, now));
    let item = WorkItem {
        channel: ws.channel_name(),
        customer_id: &customer.id,
        customer_display_name: customer.display_name.as_deref(),
        customer_language: customer.language.as_deref(),
        customer_phone_number: customer.phone_number.as_deref(),
        customer_is_known: customer.is_known,
        message_text: message.text.as_deref(),
        message_type: Some(message.message_type.as_str()),
        within_operating_hours,
        context,
    };
    let bucket = (split_key.as_u128() % 100) as u8;
    let outcome = evaluate(&ws.rules, &item, bucket);
    let fallback = &ws.config.distribution.fallback_queue;
    // A rule naming a queue the workstream does not have (a hand-edited ConfigMap) falls back
    // like no match would: routing never fails.
    let (chosen, routed_by) = match outcome.queue {
        Some(q) if queues.iter().any(|x| x.name == q) => (q, outcome.routed_by),
        _ => (fallback.clone(), None),
    };
    let mut routing = Routing {
        queue: Some(chosen.clone()),
        attributes: outcome.attributes,
        priority: outcome.priority.unwrap_or_default(),
        skills: outcome.skills,
        classified_by: outcome.classified_by,
        routed_by,
        overflowed_from: None,
        within_operating_hours: false,
    };
    let overflow = queues.iter().find(|q| q.name == chosen).and_then(|q| q.overflow.as_ref());
    if let Some(overflow) = overflow
        && waiting(&chosen) >= i64::from(overflow.max_waiting)
    {
        routing.overflowed_from = Some(chosen.clone());
        routing.queue = match overflow.action {
            OverflowAction::FallbackQueue => Some(fallback.clone()),
            OverflowAction::Decline => None,
        };
    }
    routing.within_operating_hours = routing.queue.as_deref().is_some_and(|q| ws.queue_open(q, now));
    routing
}

/// Routes a conversation at `now_ms` with the queues' waiting counts from the store.
pub fn route_stored(
    tx: &mut dyn Tx,
    ws: &Workstream,
    customer: &CustomerProfile,
    message: &Message,
    split_key: &uuid::Uuid,
    now_ms: i64,
    context: Option<&Context>,
) -> Result<Routing, StoreError> {
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut db_error = None;
    let routing = route(ws, customer, message, split_key, now, context, &mut |queue| {
        tx.waiting_in(&ws.config.name, queue).unwrap_or_else(|e| {
            db_error = Some(e);
            0
        })
    });
    db_error.map_or(Ok(routing), Err)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::runtime::sample_workstream;

    fn text(t: &str) -> Message {
        Message { id: "m1".into(), message_type: "text".into(), text: Some(t.into()), ..Message::default() }
    }

    fn workstream() -> Workstream {
        sample_workstream(json!({
            "queues": [
                {"name": "general"},
                {"name": "billing", "overflow": {"maxWaiting": 2, "action": "FallbackQueue"}},
                {"name": "vip", "overflow": {"maxWaiting": 1, "action": "Decline"}},
                {"name": "night", "operatingHours": {"timeZone": "Europe/Istanbul", "weekly": [{"days": ["Mon"], "from": "09:00", "to": "18:00"}]}},
            ],
            "rules": {
                "classification": [
                    {"name": "refunds", "generation": 1, "order": 1, "match": {"all": [{"field": "message.text", "operator": "Contains", "values": ["refund"], "ignoreCase": true}]},
                     "set": {"attributes": {"topic": "billing"}, "priority": "High"}},
                ],
                "routeToQueue": [
                    {"name": "to-billing", "generation": 1, "order": 1, "match": {"all": [{"field": "attributes.topic", "operator": "Equals", "values": ["billing"]}]}, "routeTo": {"queue": "billing"}},
                    {"name": "to-vip", "generation": 1, "order": 2, "match": {"all": [{"field": "message.text", "operator": "StartsWith", "values": ["VIP"]}]}, "routeTo": {"queue": "vip"}},
                    {"name": "to-night", "generation": 1, "order": 3, "match": {"all": [{"field": "message.text", "operator": "Equals", "values": ["night"]}]}, "routeTo": {"queue": "night"}},
                    {"name": "to-missing", "generation": 1, "order": 4, "match": {"all": [{"field": "message.text", "operator": "Equals", "values": ["ghost"]}]}, "routeTo": {"queue": "no-such-queue"}},
                ],
            },
        }))
    }

    fn run(ws: &Workstream, message: &str, waiting: i64, now: &str) -> Routing {
        let customer = CustomerProfile { id: "U1".into(), ..CustomerProfile::default() };
        route(ws, &customer, &text(message), &uuid::Uuid::nil(), now.parse().unwrap(), None, &mut |_| waiting)
    }

    /// Monday 2026-11-23 10:00 in Istanbul (UTC+3).
    const MONDAY_OPEN: &str = "2026-11-23T07:00:00Z";
    /// The same Monday at 20:00 in Istanbul.
    const MONDAY_CLOSED: &str = "2026-11-23T17:00:00Z";

    #[test]
    fn classification_output_feeds_the_queue_rule() {
        let r = run(&workstream(), "I want a REFUND", 0, MONDAY_OPEN);
        assert_eq!(r.queue.as_deref(), Some("billing"));
        assert_eq!(r.attributes.get("topic").map(String::as_str), Some("billing"));
        assert_eq!(r.priority, crate::api::routing_rule::Priority::High);
        assert_eq!((r.classified_by, r.routed_by), (vec!["refunds".to_owned()], Some("to-billing".to_owned())));
    }

    #[test]
    fn no_match_and_unknown_queues_fall_back() {
        let r = run(&workstream(), "hello", 0, MONDAY_OPEN);
        assert_eq!((r.queue.as_deref(), r.routed_by), (Some("general"), None));
        let r = run(&workstream(), "ghost", 0, MONDAY_OPEN);
        assert_eq!((r.queue.as_deref(), r.routed_by), (Some("general"), None), "a rule naming a missing queue falls back");
    }

    #[test]
    fn overflow_goes_to_the_fallback_queue_or_declines() {
        let r = run(&workstream(), "refund please", 1, MONDAY_OPEN);
        assert_eq!((r.queue.as_deref(), r.overflowed_from), (Some("billing"), None), "below maxWaiting");
        let r = run(&workstream(), "refund please", 2, MONDAY_OPEN);
        assert_eq!((r.queue.as_deref(), r.overflowed_from.as_deref()), (Some("general"), Some("billing")));
        let r = run(&workstream(), "VIP here", 1, MONDAY_OPEN);
        assert_eq!((r.queue, r.overflowed_from.as_deref()), (None, Some("vip")), "Decline leaves no queue");
        assert!(!r.within_operating_hours);
    }

    #[test]
    fn operating_hours_are_reported_for_the_chosen_queue() {
        assert!(run(&workstream(), "night", 0, MONDAY_OPEN).within_operating_hours);
        let r = run(&workstream(), "night", 0, MONDAY_CLOSED);
        assert_eq!((r.queue.as_deref(), r.within_operating_hours), (Some("night"), false), "a closed queue still takes the conversation");
    }

    #[test]
    fn splits_follow_the_conversation_id() {
        let ws = sample_workstream(json!({
            "queues": [{"name": "general"}, {"name": "a"}, {"name": "b"}],
            "rules": {"routeToQueue": [{"name": "half", "generation": 1, "order": 1, "routeTo": {"split": [{"queue": "a", "percent": 50}, {"queue": "b", "percent": 50}]}}]},
        }));
        let customer = CustomerProfile::default();
        let mut seen = std::collections::BTreeMap::new();
        for n in 0..200u128 {
            let id = uuid::Uuid::from_u128(n);
            let first = route(&ws, &customer, &text("x"), &id, MONDAY_OPEN.parse().unwrap(), None, &mut |_| 0).queue.unwrap();
            let again = route(&ws, &customer, &text("x"), &id, MONDAY_OPEN.parse().unwrap(), None, &mut |_| 0).queue.unwrap();
            assert_eq!(first, again, "the same conversation routes the same way");
            *seen.entry(first).or_insert(0) += 1;
        }
        assert_eq!(seen.get("a"), Some(&100));
        assert_eq!(seen.get("b"), Some(&100));
    }
}
