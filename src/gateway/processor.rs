//! Turns recorded webhook events into conversations, routing decisions, desk events and
//! greetings. Events are taken in the order they were recorded; everything one batch does —
//! conversations, messages, outbox rows, sends, and marking the events processed — is one
//! transaction, so a crash either did all of it or none, and a restart carries on where it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, watch};

use super::attachments;
use super::automated;
use super::conversation::{CloseReason, Conversation, CustomerProfile, CustomerWrote, Handler, Routing, State};
use super::conversation_store::{self as conversations, Pending};
use super::desk_event::{AccountRef, EventType, MessageBody};
use super::event::{EventKind, InboundEvent, Message};
use super::intake::{self, InboundState};
use super::route::route;
use super::runtime::{Provider, Runtime, Workstream};
use super::store::{Store, StoreError};
use crate::api::workstream::Trigger;
use crate::routing::evaluate::Context;

/// Events taken per transaction: enough to amortise the commit, few enough that the webhooks
/// committing behind one batch are not held up for long.
const BATCH: usize = 64;
/// LINE profiles are fetched again after a day.
const PROFILE_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// Profile fetches at once.
const PROFILE_CONCURRENCY: usize = 8;
/// A reply token is used only this long after its event, leaving a margin to LINE's minute.
const REPLY_TOKEN_LIFETIME_MS: i64 = 50_000;
/// How long the processor waits after a store failure.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Wakes the workers that act on what the processor wrote.
#[derive(Clone, Debug, Default)]
pub struct Wakers {
    /// New events were recorded.
    pub processor: Arc<Notify>,
    /// New desk events are in the outbox.
    pub delivery: Arc<Notify>,
    /// New messages are waiting to be sent to customers.
    pub sender: Arc<Notify>,
}

/// The processing loop.
pub struct Processor {
    /// The store.
    pub store: Store,
    /// The current configuration.
    pub runtime: watch::Receiver<Option<Arc<Runtime>>>,
    /// Wakers of this and the other workers.
    pub wakers: Wakers,
}

impl Processor {
    /// Processes events until the process ends.
    pub async fn run(mut self) {
        let mut applied: Option<String> = None;
        loop {
            let current = self.runtime.borrow_and_update().clone();
            let Some(rt) = current else {
                let _ = self.runtime.changed().await;
                continue;
            };
            if applied.as_ref() != Some(&rt.hash) {
                // Events no workstream took may belong to one the new configuration has.
                match self.store.run(intake::release_held).await {
                    Ok(n) if n > 0 => tracing::info!(events = n, "configuration changed; processing held events again"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot release held events"),
                }
                applied = Some(rt.hash.clone());
            }
            match self.step(&rt).await {
                Ok(0) => {
                    tokio::select! {
                        _ = self.wakers.processor.notified() => {}
                        _ = self.runtime.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "processing recorded events failed; retrying");
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
            }
        }
    }

    /// Processes one batch; returns how many events it took.
    async fn step(&self, rt: &Arc<Runtime>) -> Result<usize, StoreError> {
        let batch = self.store.run(|c| intake::pending(c, BATCH)).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let profiles = self.fetch_profiles(rt, &batch).await?;
        let taken = batch.len();
        let rt = Arc::clone(rt);
        self.store.run(move |c| apply(c, &rt, &batch, &profiles, now_ms())).await?;
        // Nearly every batch leaves desk events and many leave messages to send; a wake-up that
        // finds nothing costs one query.
        self.wakers.delivery.notify_one();
        self.wakers.sender.notify_one();
        Ok(taken)
    }

    /// LINE profiles of the batch's customers that are not cached or are old. A customer whose
    /// profile cannot be fetched is routed without it; nothing waits for LINE.
    async fn fetch_profiles(&self, rt: &Runtime, batch: &[(i64, InboundEvent)]) -> Result<HashMap<String, CustomerProfile>, StoreError> {
        let Provider::Line { client, .. } = &rt.provider else { return Ok(HashMap::new()) };
        let mut wanted: Vec<String> = batch
            .iter()
            .filter(|(_, e)| matches!(e.kind, EventKind::Message(_) | EventKind::Postback { .. }))
            .filter_map(|(_, e)| e.customer.as_ref().map(|c| c.id.clone()))
            .collect();
        wanted.sort();
        wanted.dedup();
        let since = now_ms() - PROFILE_MAX_AGE_MS;
        let missing = self
            .store
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT 1 FROM profiles WHERE customer_id = ?1 AND fetched_ms >= ?2")?;
                let mut missing = Vec::new();
                for id in wanted {
                    if stmt.query_row(params![id, since], |_| Ok(())).optional()?.is_none() {
                        missing.push(id);
                    }
                }
                Ok(missing)
            })
            .await?;
        let fetched = futures::stream::iter(missing)
            .map(|id| async move {
                match client.profile(&id).await {
                    Ok(p) => Some((
                        id.clone(),
                        CustomerProfile {
                            id,
                            display_name: Some(p.display_name),
                            language: p.language,
                            picture_url: p.picture_url,
                            ..CustomerProfile::default()
                        },
                    )),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fetch a LINE profile; routing without it");
                        None
                    }
                }
            })
            .buffer_unordered(PROFILE_CONCURRENCY)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        Ok(fetched)
    }
}

/// The time now in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn apply(
    c: &Connection,
    rt: &Runtime,
    batch: &[(i64, InboundEvent)],
    fetched: &HashMap<String, CustomerProfile>,
    now: i64,
) -> Result<(), StoreError> {
    for (id, profile) in fetched {
        c.prepare_cached("INSERT OR REPLACE INTO profiles (customer_id, profile, fetched_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![id, serde_json::to_string(profile)?, now])?;
    }
    for (seq, event) in batch {
        let state = handle(c, rt, event, now)?;
        intake::mark(c, *seq, state)?;
    }
    Ok(())
}

/// The account as desk events name it.
pub fn account(rt: &Runtime) -> AccountRef<'_> {
    AccountRef { namespace: &rt.config.account.namespace, name: &rt.config.account.name }
}

fn handle(c: &Connection, rt: &Runtime, event: &InboundEvent, now: i64) -> Result<InboundState, StoreError> {
    let Some(customer) = &event.customer else { return Ok(InboundState::Done) };
    let received = match &event.kind {
        EventKind::Message(m) => m.clone(),
        EventKind::Postback { data } => Message { id: event.provider_event_id.clone(), message_type: "postback".into(), text: Some(data.clone()), ..Message::default() },
        EventKind::Unfollow => {
            if let Some(ws) = rt.workstream_for(event.to.as_deref())
                && let Some(mut conv) = conversations::load_open(c, &ws.config.name, &customer.id)?
            {
                // A customer who blocked the account cannot be written to: no ConversationEnded,
                // no survey.
                conversations::close(c, account(rt), &mut conv, CloseReason::CustomerBlocked, now)?;
            }
            return Ok(InboundState::Done);
        }
        EventKind::Follow | EventKind::Other { .. } => return Ok(InboundState::Done),
    };
    let Some(ws) = rt.workstream_for(event.to.as_deref()) else {
        tracing::warn!(to = event.to.as_deref().unwrap_or("LINE"), "no workstream takes this event; it is held until the configuration has one");
        return Ok(InboundState::Held);
    };
    let (message, rejected) = screen(ws, received);
    let name = &ws.config.name;
    let (mut conv, new) = match conversations::load_open(c, name, &customer.id)? {
        Some(mut conv) => {
            let wrote = conv.customer_wrote(event.timestamp_ms);
            conversations::update(c, &conv)?;
            if wrote == CustomerWrote::Reopened {
                enqueue(c, rt, &conv, EventType::ConversationReopened, None, now)?;
            }
            (conv, false)
        }
        None => (start(c, rt, ws, event, &message, now)?, true),
    };
    if let Some(token) = &event.reply_token {
        conversations::offer_reply_token(c, &conv.id, token, event.timestamp_ms + REPLY_TOKEN_LIFETIME_MS)?;
    }
    conversations::record_message(c, &conv.id, &message, event.timestamp_ms)?;
    enqueue(c, rt, &conv, EventType::MessageReceived, Some(&message), now)?;
    if conv.routing.queue.is_none() {
        automated::send(c, account(rt), ws, &conv, &[Trigger::QueueOverflow], &[], now)?;
        conversations::close(c, account(rt), &mut conv, CloseReason::QueueOverflow, now)?;
        return Ok(InboundState::Done);
    }
    if rejected {
        automated::send(c, account(rt), ws, &conv, &[Trigger::AttachmentRejected], &[], now)?;
    }
    if new && conv.handler == Handler::Desk {
        announce(c, rt, ws, &conv, true, now)?;
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

/// The automated messages of a conversation that reached the desk's queue, as one message: the
/// greeting (for a new conversation; not after a bot's escalation), then OutOfOperatingHours
/// when the queue is closed, else the queue position.
pub fn announce(c: &Connection, rt: &Runtime, ws: &Workstream, conv: &Conversation, greeting: bool, now: i64) -> Result<bool, StoreError> {
    let queue = conv.routing.queue.as_deref().unwrap_or("");
    let position = conversations::waiting_in(c, &ws.config.name, queue)?.to_string();
    let next = if conv.routing.within_operating_hours { Trigger::QueuePosition } else { Trigger::OutOfOperatingHours };
    let triggers: &[Trigger] = if greeting { &[Trigger::Greeting, next] } else { &[next] };
    automated::send(c, account(rt), ws, conv, triggers, &[("Position", &position)], now)
}

fn enqueue(c: &Connection, rt: &Runtime, conv: &Conversation, event_type: EventType, message: Option<&Message>, now: i64) -> Result<(), StoreError> {
    conversations::enqueue(c, account(rt), conv, Pending { event_type, message: message.map(MessageBody::In), reason: None }, now)?;
    Ok(())
}

/// Routes a conversation at `now_ms` with the queues' waiting counts from the store.
pub fn route_stored(
    c: &Connection,
    ws: &Workstream,
    customer: &CustomerProfile,
    message: &Message,
    split_key: &uuid::Uuid,
    now_ms: i64,
    context: Option<&Context>,
) -> Result<Routing, StoreError> {
    let now = Timestamp::from_millisecond(now_ms).unwrap_or_else(|_| Timestamp::now());
    let mut db_error = None;
    let routing = route(ws, customer, message, split_key, now, context, &mut |queue| {
        conversations::waiting_in(c, &ws.config.name, queue).unwrap_or_else(|e| {
            db_error = Some(e);
            0
        })
    });
    db_error.map_or(Ok(routing), Err)
}

/// Starts a conversation: contact, profile, routing and `conversation.created`. A workstream
/// with a bot hands it to the bot.
fn start(c: &Connection, rt: &Runtime, ws: &Workstream, event: &InboundEvent, message: &Message, now: i64) -> Result<Conversation, StoreError> {
    let name = &ws.config.name;
    let from_webhook = event.customer.clone().unwrap_or_default();
    let cached: Option<String> =
        c.prepare_cached("SELECT profile FROM profiles WHERE customer_id = ?1")?.query_row([&from_webhook.id], |r| r.get(0)).optional()?;
    let mut customer = match cached {
        Some(json) => serde_json::from_str(&json)?,
        None => CustomerProfile { id: from_webhook.id.clone(), display_name: from_webhook.display_name.clone(), ..CustomerProfile::default() },
    };
    if let Some(phone) = &from_webhook.phone_number {
        customer.wa_id = Some(phone.trim_start_matches('+').to_owned());
        customer.phone_number = Some(phone.clone());
    }
    customer.contact_id = conversations::contact(c, name, &customer.id)?;
    customer.is_known = customer.contact_id.is_some() || conversations::customer_known(c, name, &customer.id)?;
    let id = uuid::Uuid::new_v4();
    let routing = route_stored(c, ws, &customer, message, &id, now, None)?;
    let conv = Conversation {
        id: id.to_string(),
        workstream: name.clone(),
        channel: ws.channel_name().to_owned(),
        state: State::Open,
        handler: if ws.config.bot.is_some() { Handler::Bot } else { Handler::Desk },
        customer,
        routing,
        created_ms: event.timestamp_ms.min(now),
        last_customer_ms: event.timestamp_ms,
        last_activity_ms: event.timestamp_ms,
        agent: None,
        bot: None,
        closed_ms: None,
        close_reason: None,
    };
    conversations::insert(c, &conv)?;
    enqueue(c, rt, &conv, EventType::ConversationCreated, None, now)?;
    Ok(conv)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::GatewayConfig;
    use crate::gateway::event::Customer;
    use crate::providers::{ClientConfig, ProviderEndpoints, Providers};

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
        let serialized = intake::serialize(&events).unwrap();
        store.run(move |c| intake::record(c, &serialized, now)).await.unwrap();
        let batch = store.run(|c| intake::pending(c, BATCH)).await.unwrap();
        let rt = Arc::clone(rt);
        store.run(move |c| apply(c, &rt, &batch, &HashMap::new(), now)).await.unwrap();
        store
            .run(|c| {
                let mut s = c.prepare("SELECT body FROM outbox ORDER BY seq")?;
                let rows = s.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows
                    .iter()
                    .map(|b| {
                        let v: serde_json::Value = serde_json::from_str(b).unwrap();
                        (v["conversation"]["id"].as_str().unwrap().to_owned(), v["type"].as_str().unwrap().to_owned(), v["sequence"].as_i64().unwrap())
                    })
                    .collect())
            })
            .await
            .unwrap()
    }

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("s.db"), crate::gateway::store::Durability::Full, Box::new(|_, _| {})).unwrap()
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
            .run(|c| {
                let mut s = c.prepare("SELECT recipient, contents, sender FROM sends")?;
                Ok(s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?)
            })
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
            .run(move |c| {
                let data: String = c.query_row("SELECT data FROM conversations WHERE id = ?1", [&id], |r| r.get(0))?;
                let mut conv: Conversation = serde_json::from_str(&data)?;
                conv.state = State::Waiting;
                conversations::update(c, &conv)
            })
            .await
            .unwrap();
        let out = process(&store, &rt, vec![message("SM2", "+905551", "+14155550100", "back", 2_000)], 2_000).await;
        let tail: Vec<_> = out[2..].iter().map(|(_, t, s)| (t.as_str(), *s)).collect();
        assert_eq!(tail, [("conversation.reopened", 3), ("message.received", 4)]);

        process(&store, &rt, vec![message("SM3", "+905551", "+19999999999", "wrong number", 3_000)], 3_000).await;
        let held: i64 = store.run(|c| Ok(c.query_row("SELECT count(*) FROM inbound WHERE state = 2", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(held, 1);
        assert_eq!(store.run(intake::release_held).await.unwrap(), 1, "a configuration change releases it");
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
        let sends: i64 = store.run(|c| Ok(c.query_row("SELECT count(*) FROM sends", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(sends, 2, "the declined customer gets no greeting");
    }
}
