//! Routing at run time: a new conversation's first message through the workstream's compiled
//! rules, then the queue's checks — it must exist, its overflow limit, its operating hours.
//! Pure: the caller passes how many conversations wait in each queue.

use jiff::Timestamp;

use super::conversation::{CustomerProfile, Routing};
use super::event::Message;
use super::runtime::Workstream;
use crate::api::workstream::OverflowAction;
use crate::routing::evaluate::{WorkItem, evaluate};

/// Routes a new conversation. `split_key` picks the share of a percentage split (the
/// conversation's ID, so that routing the same conversation again gives the same queue);
/// `waiting` says how many conversations wait in a queue.
pub fn route(
    ws: &Workstream,
    customer: &CustomerProfile,
    message: &Message,
    split_key: &uuid::Uuid,
    now: Timestamp,
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
