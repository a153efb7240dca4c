//! Recorded webhook events turned into conversations, routing decisions, desk events and
//! greetings. Everything one batch does — conversations, messages, outbox rows, sends, and
//! marking the events processed — is one transaction, so a crash either did all of it or none,
//! and a restart carries on where it was.

use std::collections::HashMap;

use super::attachments;
use super::automated;
use super::receipts;
use super::desk_events::{self, Pending};
use super::route::route_stored;
use crate::api::workstream::Trigger;
use crate::gateway::model::conversation::{CloseReason, Conversation, CustomerProfile, CustomerWrote, Handler, State};
use crate::gateway::model::desk_event::{EventType, MessageBody};
use crate::gateway::model::event::{EventKind, InboundEvent, Message};
use crate::gateway::model::queue::InboundState;
use crate::gateway::runtime::{Runtime, Workstream};
use crate::gateway::store::{StoreError, Tx};

/// A reply token is used only this long after its event, leaving a margin to LINE's minute.
const REPLY_TOKEN_LIFETIME_MS: i64 = 50_000;

/// Processes a batch of recorded events at `now`, with the LINE profiles fetched for it.
pub fn apply(
    tx: &mut dyn Tx,
    rt: &Runtime,
    batch: &[(i64, InboundEvent)],
    fetched: &HashMap<String, CustomerProfile>,
    now: i64,
) -> Result<(), StoreError> {
    for profile in fetched.values() {
        tx.save_profile(profile, now)?;
    }
    for (seq, event) in batch {
        let state = handle(tx, rt, event, now)?;
        tx.mark_event(*seq, state)?;
    }
    Ok(())
}

fn handle(tx: &mut dyn Tx, rt: &Runtime, event: &InboundEvent, now: i64) -> Result<InboundState, StoreError> {
    if let EventKind::Receipt(receipt) = &event.kind {
        receipts::apply(tx, rt.account_ref(), receipt, now)?;
        return Ok(InboundState::Done);
    }
    let Some(customer) = &event.customer else { return Ok(InboundState::Done) };
    let received = match &event.kind {
        EventKind::Message(m) => m.clone(),
        EventKind::Postback { data } => Message { id: event.provider_event_id.clone(), message_type: "postback".into(), text: Some(data.clone()), ..Message::default() },
        EventKind::Unfollow => {
            if let Some(ws) = rt.workstream_for(event.to.as_deref())
                && let Some(mut conv) = tx.open_conversation(&ws.config.name, &customer.id)?
            {
                // A customer who blocked the account cannot be written to: no ConversationEnded,
                // no survey.
                desk_events::close(tx, rt.account_ref(), &mut conv, CloseReason::CustomerBlocked, now)?;
            }
            return Ok(InboundState::Done);
        }
        EventKind::Follow | EventKind::Receipt(_) | EventKind::Other { .. } => return Ok(InboundState::Done),
    };
    let Some(ws) = rt.workstream_for(event.to.as_deref()) else {
        tracing::warn!(to = event.to.as_deref().unwrap_or("LINE"), "no workstream takes this event; it is held until the configuration has one");
        return Ok(InboundState::Held);
    };
    let (message, rejected) = screen(ws, received);
    let name = &ws.config.name;
    let (mut conv, new) = match tx.open_conversation(name, &customer.id)? {
        Some(mut conv) => {
            let wrote = conv.customer_wrote(event.timestamp_ms);
            tx.update_conversation(&conv)?;
            if wrote == CustomerWrote::Reopened {
                enqueue(tx, rt, &conv, EventType::ConversationReopened, None, now)?;
            }
            (conv, false)
        }
        None => (start(tx, rt, ws, event, &message, now)?, true),
    };
    if let Some(token) = &event.reply_token {
        tx.offer_reply_token(&conv.id, token, event.timestamp_ms + REPLY_TOKEN_LIFETIME_MS)?;
    }
    tx.record_inbound(&conv.id, &message, event.timestamp_ms)?;
    enqueue(tx, rt, &conv, EventType::MessageReceived, Some(&message), now)?;
    if conv.routing.queue.is_none() {
        automated::send(tx, rt.account_ref(), ws, &conv, &[Trigger::QueueOverflow], &[], now)?;
        desk_events::close(tx, rt.account_ref(), &mut conv, CloseReason::QueueOverflow, now)?;
        return Ok(InboundState::Done);
    }
    if rejected {
        automated::send(tx, rt.account_ref(), ws, &conv, &[Trigger::AttachmentRejected], &[], now)?;
    }
    if new && conv.handler == Handler::Desk {
        automated::announce(tx, rt, ws, &conv, true, now)?;
    }
    Ok(InboundState::Done)
}

/// Applies the workstream's attachment policy to a customer's message; true when something was
/// kept back.
fn screen(ws: &Workstream, mut message: Message) -> (Message, bool) {
    if message.attachments.is_empty() {
        return (message, false);
    }
    let (passed, rejected) = attachments::screen_customer(&ws.config.file_attachments, std::mem::take(&mut message.attachments));
    message.attachments = passed;
    let any = !rejected.is_empty();
    message.rejected_attachments = rejected;
    (message, any)
}

fn enqueue(tx: &mut dyn Tx, rt: &Runtime, conv: &Conversation, event_type: EventType, message: Option<&Message>, now: i64) -> Result<(), StoreError> {
    desk_events::enqueue(tx, rt.account_ref(), conv, Pending { event_type, message: message.map(MessageBody::In), reason: None }, now)?;
    Ok(())
}

/// Starts a conversation: contact, profile, routing and `conversation.created`. A workstream
/// with a bot hands it to the bot.
fn start(tx: &mut dyn Tx, rt: &Runtime, ws: &Workstream, event: &InboundEvent, message: &Message, now: i64) -> Result<Conversation, StoreError> {
    let name = &ws.config.name;
    let from_webhook = event.customer.clone().unwrap_or_default();
    let mut customer = match tx.profile(&from_webhook.id)? {
        Some(profile) => profile,
        None => CustomerProfile { id: from_webhook.id.clone(), display_name: from_webhook.display_name.clone(), ..CustomerProfile::default() },
    };
    if let Some(phone) = &from_webhook.phone_number {
        customer.wa_id = Some(phone.trim_start_matches('+').to_owned());
        customer.phone_number = Some(phone.clone());
    }
    customer.contact_id = tx.contact(name, &customer.id)?;
    customer.is_known = customer.contact_id.is_some() || tx.customer_known(name, &customer.id)?;
    let id = uuid::Uuid::new_v4();
    let routing = route_stored(tx, ws, &customer, message, &id, now, None)?;
    let customer_id = customer.id.clone();
    let handler = if ws.config.bot.is_some() { Handler::Bot } else { Handler::Desk };
    let created_ms = event.timestamp_ms.min(now);
    let conv = Conversation {
        id: id.to_string(),
        workstream: name.clone(),
        channel: ws.channel_name().to_owned(),
        state: State::Open,
        handler,
        customer,
        routing,
        created_ms,
        last_customer_ms: event.timestamp_ms,
        last_activity_ms: event.timestamp_ms,
        agent: None,
        bot: None,
        held_until_ms: None,
        wrap_up_ms: None,
        // A returning customer is offered to the agent who had them last.
        last_agent: if ws.config.distribution.keep_same_agent { tx.previous_agent(name, &customer_id)? } else { None },
        closed_ms: None,
        close_reason: None,
        // A bot's conversation joins its queue when the bot escalates.
        queued_ms: (handler == Handler::Desk).then_some(created_ms),
    };
    tx.insert_conversation(&conv)?;
    enqueue(tx, rt, &conv, EventType::ConversationCreated, None, now)?;
    Ok(conv)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::GatewayConfig;
    use crate::gateway::model::event::Customer;
    use crate::gateway::model::queue::serialize;
    use crate::gateway::store::{Durability, Store};
    use crate::providers::{ClientConfig, ProviderEndpoints, Providers};

    const BATCH: usize = 64;

    fn runtime() -> Runtime {
        let config: GatewayConfig = serde_json::from_value(json!({
            "version": 1,
            "account": {"namespace": "ns", "name": "acct", "callbackPath": "/p", "callbackUrl": "https://x/p",
                        "provider": {"type": "TwilioWhatsApp", "accountSid": "AC1", "numbers": []}},
            "workstreams": [{
                "name": "support", "generation": 1, "channel": {"type": "WhatsApp", "numberName": "main", "number": "+14155550100"},
                "language": "en", "distribution": {"mode": "Push", "fallbackQueue": "general", "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
                "queues": [{"name": "general", "overflow": {"maxWaiting": 2, "action": "Decline"}}],
                "automatedMessages": [{"trigger": "Greeting", "locale": "en", "text": "Hello {CustomerName}"}],
                "delivery": {"url": "http://desk", "signingSecret": {"env": "DESK"}, "agentApiToken": {"env": "DESK"}},
            }],
        }))
        .unwrap();
        let providers = Providers::new(ProviderEndpoints::all_at("http://127.0.0.1:9".parse().unwrap()), ClientConfig::default()).unwrap();
        Runtime::build(config, &|_| Some("secret".into()), &providers).unwrap()
    }

    fn message(event_id: &str, from: &str, to: &str, text: &str, at: i64) -> InboundEvent {
        InboundEvent {
            provider_event_id: event_id.into(),
            timestamp_ms: at,
            customer: Some(Customer { id: format!("whatsapp:{from}"), display_name: Some("Ann".into()), phone_number: Some(from.into()) }),
            to: Some(to.into()),
            reply_token: None,
            kind: EventKind::Message(Message { id: event_id.into(), message_type: "text".into(), text: Some(text.into()), ..Message::default() }),
        }
    }

    /// Records events and processes them as the processor would; returns the desk events'
    /// (conversation, type, sequence) in outbox order.
    async fn process(store: &Store, rt: &Arc<Runtime>, events: Vec<InboundEvent>, now: i64) -> Vec<(String, String, i64)> {
        let serialized = serialize(&events).unwrap();
        store.run(move |tx| tx.record_events(&serialized, now)).await.unwrap();
        let batch = store.run(|tx| tx.pending_events(BATCH)).await.unwrap();
        let rt = Arc::clone(rt);
        store.run(move |tx| apply(tx, &rt, &batch, &HashMap::new(), now)).await.unwrap();
        store
            .run(|tx| {
                Ok(tx
                    .queued_events()?
                    .iter()
                    .map(|e| {
                        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
                        (v["conversation"]["id"].as_str().unwrap().to_owned(), v["type"].as_str().unwrap().to_owned(), v["sequence"].as_i64().unwrap())
                    })
                    .collect())
            })
            .await
            .unwrap()
    }

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::sqlite(&dir.path().join("s.db"), Durability::Full, Box::new(|_, _| {})).unwrap()
    }

    #[tokio::test]
    async fn a_customer_gets_one_conversation_and_one_greeting() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let rt = Arc::new(runtime());
        let events = vec![message("SM1", "+905551", "+14155550100", "hi", 1_000), message("SM2", "+905551", "+14155550100", "again", 2_000)];
        let out = process(&store, &rt, events, 3_000).await;
        let types: Vec<_> = out.iter().map(|(_, t, s)| (t.as_str(), *s)).collect();
        assert_eq!(types, [("conversation.created", 1), ("message.received", 2), ("message.received", 3)]);
        assert!(out.iter().all(|(c, _, _)| c == &out[0].0), "one conversation");
        let sends: Vec<(String, String, Option<String>)> = store
            .run(|tx| Ok(tx.queued_sends()?.into_iter().map(|s| (s.recipient, serde_json::to_string(&s.contents).unwrap(), s.sender)).collect()))
            .await
            .unwrap();
        assert_eq!(sends, [("whatsapp:+905551".into(), r#"[{"type":"text","text":"Hello Ann"}]"#.into(), Some("whatsapp:+14155550100".into()))]);
    }

    #[tokio::test]
    async fn a_waiting_conversation_reopens_and_unknown_numbers_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let rt = Arc::new(runtime());
        let first = process(&store, &rt, vec![message("SM1", "+905551", "+14155550100", "hi", 1_000)], 1_000).await;
        let id = first[0].0.clone();
        store
            .run(move |tx| {
                let mut conv = tx.conversation(&id)?.expect("the conversation is stored");
                conv.state = State::Waiting;
                tx.update_conversation(&conv)
            })
            .await
            .unwrap();
        let out = process(&store, &rt, vec![message("SM2", "+905551", "+14155550100", "back", 2_000)], 2_000).await;
        let tail: Vec<_> = out[2..].iter().map(|(_, t, s)| (t.as_str(), *s)).collect();
        assert_eq!(tail, [("conversation.reopened", 3), ("message.received", 4)]);

        process(&store, &rt, vec![message("SM3", "+905551", "+19999999999", "wrong number", 3_000)], 3_000).await;
        assert_eq!(store.run(|tx| tx.pending_events(BATCH)).await.unwrap(), [], "the event is not pending: it is held");
        assert_eq!(store.run(|tx| tx.release_held_events()).await.unwrap(), 1, "a configuration change releases it");
    }

    #[tokio::test]
    async fn a_full_declining_queue_closes_new_conversations_without_a_greeting() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let rt = Arc::new(runtime());
        let events = (1..=3).map(|n| message(&format!("SM{n}"), &format!("+90555{n}"), "+14155550100", "hi", 1_000)).collect();
        let out = process(&store, &rt, events, 1_000).await;
        let third: Vec<_> = out.iter().filter(|(c, _, _)| *c == out.last().unwrap().0).map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(third, ["conversation.created", "message.received", "conversation.closed"]);
        let sends = store.run(|tx| tx.queued_sends()).await.unwrap();
        assert_eq!(sends.len(), 2, "the declined customer gets no greeting");
    }
}
