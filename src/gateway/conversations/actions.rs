//! What agents and bots do to conversations through the agent API, as store jobs: each action
//! checks, changes the conversation, stores the messages it sends and queues the events it
//! causes in one transaction. The HTTP side is the agent API (`http/agent_api`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

use super::attachments::{self, Refusal};
use super::automated;
use super::desk_events::{self, Pending};
use super::distribute::{self, Moment};
use super::outgoing::{self, Draft};
use super::route::route_stored;
use super::templates::{self, TemplateError, window_closes_at};
use crate::api::workstream::Trigger;
use crate::gateway::clock::rfc3339;
use crate::gateway::model::conversation::{AgentRef, BotHandoff, CloseReason, Conversation, Handler, State};
use crate::gateway::model::desk_event::EventType;
use crate::gateway::model::event::Message;
use crate::gateway::model::history::StoredMessage;
use crate::gateway::model::outbound::{Author, OutContent, OutboundMessage};
use crate::gateway::runtime::{Runtime, Workstream};
use crate::gateway::store::{ConversationFilter, StoreError, Tx};
use crate::routing::evaluate::Context;

/// Namespace of the LINE retry keys derived from client message IDs (a fixed random UUID).
const RETRY_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_9d4a_4e57_8a0c_5f21_d3e9_7b64);

/// Why an action was refused.
#[derive(Debug, Error)]
pub enum Refused {
    /// The request is not valid; names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `clientMessageId`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such conversation (or not one of the caller's workstreams).
    #[error("no such conversation")]
    ConversationNotFound,
    /// No such workstream (or not the caller's).
    #[error("no such workstream")]
    WorkstreamNotFound,
    /// The message has no such attachment.
    #[error("no such attachment")]
    AttachmentNotFound,
    /// The conversation is closed.
    #[error("the conversation is closed")]
    ConversationClosed,
    /// The client message ID was used before for a different message.
    #[error("clientMessageId was used before for a different message")]
    ClientMessageIdConflict,
    /// The attachment policy refuses it.
    #[error("{}", attachment_message(.0))]
    Attachment(Refusal),
    /// WhatsApp's 24-hour window is closed.
    #[error("the WhatsApp 24-hour window closed; only an approved template may be sent")]
    WindowClosed {
        /// When it closed.
        closed_at_ms: i64,
    },
    /// The template cannot be sent.
    #[error("{}", template_message(.0))]
    Template(TemplateError),
    /// Escalation of a conversation the bot does not handle.
    #[error("the conversation is not with the bot")]
    NotWithBot,
    /// Only an Active conversation can be put aside.
    #[error("the conversation is not Active")]
    NotActive,
    /// No wrap-up of the conversation is running.
    #[error("the conversation has no wrap-up running")]
    NoWrapUp,
    /// No such queue in the workstream.
    #[error("no such queue")]
    QueueNotFound,
    /// The desk never reported the agent's presence.
    #[error("no presence was reported for this agent")]
    AgentUnknown,
    /// The agent is Offline (reported so, or not reported for the presence TTL).
    #[error("the agent is Offline")]
    AgentOffline,
    /// The agent does not serve the conversation's queue.
    #[error("the agent does not serve this queue")]
    NotAMember,
    /// The agent lacks a skill the conversation requires.
    #[error("the agent lacks a skill the conversation requires")]
    NotQualified,
    /// The agent's free capacity is less than the conversation takes.
    #[error("the agent has no free capacity for it")]
    NoCapacity,
    /// The conversation is not waiting in a queue: an agent (or the bot) has it.
    #[error("the conversation is already assigned")]
    AlreadyAssigned,
    /// The bot handles the conversation: it escalates before agents get it.
    #[error("the bot handles the conversation")]
    WithBot,
    /// Nothing in the queue the agent qualifies for.
    #[error("nothing waits in the queue that the agent qualifies for")]
    NothingToPick,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn attachment_message(r: &Refusal) -> String {
    match r {
        Refusal::NotAllowed => "the workstream does not let agents send attachments (fileAttachments.agentsCanSend)".to_owned(),
        Refusal::TooLarge { max_bytes } => format!("the attachment is larger than fileAttachments.maxBytes ({max_bytes} bytes)"),
        Refusal::BlockedExtension { extension } => format!("files ending in {extension} are blocked (fileAttachments.blockedExtensions)"),
    }
}

fn template_message(e: &TemplateError) -> String {
    match e {
        TemplateError::NotFound { sendable } if sendable.is_empty() => {
            "no approved template of that name (a MessageTemplate's name or its templateName) in the configuration; none can be sent".to_owned()
        }
        TemplateError::NotFound { sendable } => {
            let listed: Vec<String> = sendable.iter().map(|t| format!("{} ({}: {})", t.name, t.template_name, t.languages.join(", "))).collect();
            format!("no approved template of that name (a MessageTemplate's name or its templateName) in the configuration; sendable: {}", listed.join(", "))
        }
        TemplateError::LanguageUnavailable { languages } => format!("the template has no approved localization in that language; it has {}", languages.join(", ")),
        TemplateError::Variables { expected, missing, unexpected } => {
            format!("the template takes the variables {expected:?}; missing {missing:?}, unexpected {unexpected:?}")
        }
    }
}

impl From<serde_json::Error> for Refused {
    fn from(e: serde_json::Error) -> Self {
        Refused::Store(e.into())
    }
}

/// Who sends a message through the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestAuthor {
    /// An agent.
    #[default]
    Agent,
    /// The workstream's bot.
    Bot,
}

/// A message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// The caller's ID of the message: the same ID sends once.
    pub client_message_id: String,
    /// Who writes.
    #[serde(default)]
    pub author: RequestAuthor,
    /// The agent, shown on the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    /// Text (or the caption of an attachment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A file by URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentRequest>,
    /// An approved template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRequest>,
}

/// A file to send by URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentRequest {
    /// Where the provider fetches it (http or https).
    pub url: String,
    /// Its name; the extension is checked against the blocked ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its size in bytes, checked against the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A template to send.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRequest {
    /// The MessageTemplate's name.
    pub name: String,
    /// The localization; by default the customer's language, else the template's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Values of the template's variables, by name ("1", "2", ...).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// The longest client message ID.
const MAX_CLIENT_MESSAGE_ID: usize = 128;
/// The longest text WhatsApp takes in one message (LINE takes 5,000).
const MAX_TEXT: usize = 1600;

/// The contents of a send request, checked against the workstream's policies and the
/// configuration's templates. Pure.
pub fn contents(rt: &Runtime, ws: &Workstream, conv: &Conversation, request: &SendRequest, now: i64) -> Result<Vec<OutContent>, Refused> {
    let id = &request.client_message_id;
    if id.trim().is_empty() || id.chars().count() > MAX_CLIENT_MESSAGE_ID {
        return Err(Refused::Invalid { field: "clientMessageId", message: format!("must be 1 to {MAX_CLIENT_MESSAGE_ID} characters") });
    }
    if let Some(text) = &request.text
        && (text.trim().is_empty() || text.chars().count() > MAX_TEXT)
    {
        return Err(Refused::Invalid { field: "text", message: format!("must be 1 to {MAX_TEXT} characters") });
    }
    let content = match (&request.text, &request.attachment, &request.template) {
        (Some(text), None, None) => OutContent::Text { text: text.clone() },
        (caption, Some(a), None) => {
            let scheme = url::Url::parse(&a.url).map(|u| u.scheme().to_owned()).unwrap_or_default();
            if !matches!(scheme.as_str(), "http" | "https") {
                return Err(Refused::Invalid { field: "attachment.url", message: "must be an http or https URL".to_owned() });
            }
            attachments::check_agent(&ws.config.file_attachments, a.file_name.as_deref(), Some(&a.url), a.size).map_err(Refused::Attachment)?;
            OutContent::Attachment { url: a.url.clone(), file_name: a.file_name.clone(), content_type: a.content_type.clone(), caption: caption.clone() }
        }
        (None, None, Some(t)) => templates::resolve(&rt.config.templates, &t.name, t.language.as_deref(), conv.customer.language.as_deref(), &t.variables)
            .map_err(Refused::Template)?,
        (Some(_), None, Some(_)) => return Err(Refused::Invalid { field: "template", message: "a template carries its own text; leave out text".to_owned() }),
        (_, Some(_), Some(_)) => return Err(Refused::Invalid { field: "template", message: "send an attachment or a template, not both".to_owned() }),
        (None, None, None) => return Err(Refused::Invalid { field: "text", message: "one of text, attachment or template is required".to_owned() }),
    };
    if !matches!(content, OutContent::Template { .. }) && !automated::window_open(ws, conv, now) {
        return Err(Refused::WindowClosed { closed_at_ms: window_closes_at(conv.last_customer_ms) });
    }
    Ok(vec![content])
}

/// A conversation the caller may act on: it exists and its workstream is one of `allowed`.
fn conversation(tx: &mut dyn Tx, id: &str, allowed: &[String]) -> Result<Conversation, Refused> {
    tx.conversation(id)?.filter(|conv| allowed.contains(&conv.workstream)).ok_or(Refused::ConversationNotFound)
}

fn open_conversation<'r>(tx: &mut dyn Tx, rt: &'r Runtime, id: &str, allowed: &[String]) -> Result<(Conversation, &'r Workstream), Refused> {
    let conv = conversation(tx, id, allowed)?;
    if conv.state == State::Closed {
        return Err(Refused::ConversationClosed);
    }
    let ws = rt.workstream(&conv.workstream).ok_or(Refused::ConversationNotFound)?;
    Ok((conv, ws))
}

/// What a send did.
#[derive(Debug)]
pub enum Sent {
    /// The message was accepted now.
    New(OutboundMessage),
    /// The same request came before; this is that message as it is now.
    Repeat(OutboundMessage),
}

/// Sends a message; the same client message ID with the same request sends once.
pub fn send(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, request: &SendRequest, now: i64) -> Result<Sent, Refused> {
    let conv = conversation(tx, id, allowed)?;
    let hash = request_hash(request)?;
    if let Some((message_id, earlier_hash)) = tx.outbound_by_client_id(&conv.id, &request.client_message_id)? {
        if earlier_hash.as_deref() != Some(hash.as_str()) {
            return Err(Refused::ClientMessageIdConflict);
        }
        let message = tx.outbound(&message_id)?.ok_or(Refused::ConversationNotFound)?;
        return Ok(Sent::Repeat(message));
    }
    let (mut conv, ws) = open_conversation(tx, rt, id, allowed)?;
    let contents = contents(rt, ws, &conv, request, now)?;
    let by_bot = request.author == RequestAuthor::Bot;
    let draft = Draft {
        author: if by_bot { Author::Bot } else { Author::Agent },
        agent: request.agent.clone(),
        client_message_id: Some(request.client_message_id.clone()),
        request_hash: Some(hash),
        triggers: Vec::new(),
        contents,
        retry_key: Uuid::new_v5(&RETRY_KEY_NAMESPACE, format!("{}/{}", conv.id, request.client_message_id).as_bytes()),
    };
    let message = outgoing::queue(tx, ws, &conv, draft, now)?;
    conv.agent_wrote(now);
    tx.update_conversation(&conv)?;
    Ok(Sent::New(message))
}

fn request_hash(request: &SendRequest) -> Result<String, Refused> {
    let digest = Sha256::digest(serde_json::to_vec(request)?);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// A supervisor gives the conversation to an agent; the customer gets AgentAssigned unless that
/// agent had it. An agent whose presence the desk reports must be not Offline and have free
/// capacity for it, unless `force`; an agent it never reported is taken as named.
pub fn assign(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, agent: AgentRef, force: bool, at: Moment) -> Result<Conversation, Refused> {
    let now = at.now;
    if agent.id.trim().is_empty() {
        return Err(Refused::Invalid { field: "agentId", message: "must not be empty".to_owned() });
    }
    if let Some(reported) = tx.agent(&agent.id)?
        && !force
    {
        let conv = conversation(tx, id, allowed)?;
        let ws = rt.workstream(&conv.workstream).ok_or(Refused::ConversationNotFound)?;
        let already = conv.agent.as_ref().is_some_and(|a| a.id == agent.id) && conv.holds(now);
        if !already {
            distribute::check_free(tx, rt, ws, &reported, at)?;
        }
    }
    let (mut conv, ws) = open_conversation(tx, rt, id, allowed)?;
    distribute::note_wait(tx, &conv, now)?;
    let announce = conv.assign(agent, ws.wrap_up_ms());
    tx.update_conversation(&conv)?;
    if announce {
        desk_events::enqueue(tx, rt.account_ref(), &conv, Pending { event_type: EventType::ConversationAssigned, message: None, reason: None }, now)?;
        automated::send(tx, rt.account_ref(), ws, &conv, &[Trigger::AgentAssigned], &[], now)?;
    }
    Ok(conv)
}

/// The most conversations one listing returns.
const MAX_LISTED: usize = 1_000;

/// What a listing asks for (`GET /v1/conversations`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// One of the caller's workstreams; all of them when absent.
    #[serde(default)]
    pub workstream: Option<String>,
    /// `Open`, `Active`, `Waiting` or `Closed`.
    #[serde(default)]
    pub state: Option<String>,
    /// A queue's name.
    #[serde(default)]
    pub queue: Option<String>,
    /// The agent who holds them.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The most to return (default 100, at most 1,000), oldest first.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The caller's conversations that match `query`, oldest first per workstream.
pub fn list(tx: &mut dyn Tx, allowed: &[String], query: &ListQuery) -> Result<Vec<Conversation>, Refused> {
    let state = query.state.as_deref().map(|s| State::parse(s).ok_or(Refused::Invalid { field: "state", message: "must be Open, Active, Waiting or Closed".to_owned() })).transpose()?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LISTED {
        return Err(Refused::Invalid { field: "limit", message: format!("must be 1 to {MAX_LISTED}") });
    }
    let workstreams: Vec<&String> = match &query.workstream {
        Some(ws) => vec![allowed.iter().find(|a| *a == ws).ok_or(Refused::WorkstreamNotFound)?],
        None => allowed.iter().collect(),
    };
    let mut listed = Vec::new();
    for workstream in workstreams {
        let filter = ConversationFilter {
            workstream,
            state: state.map(State::as_str),
            queue: query.queue.as_deref(),
            agent_id: query.agent_id.as_deref(),
            limit: limit - listed.len(),
        };
        listed.extend(tx.list_conversations(&filter)?);
        if listed.len() >= limit {
            break;
        }
    }
    Ok(listed)
}

/// The agent puts the conversation aside until the customer writes: Waiting, its capacity free.
pub fn wait(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, now: i64) -> Result<Conversation, Refused> {
    let (mut conv, _) = open_conversation(tx, rt, id, allowed)?;
    if !conv.wait() {
        return Err(Refused::NotActive);
    }
    tx.update_conversation(&conv)?;
    desk_events::enqueue(tx, rt.account_ref(), &conv, Pending { event_type: EventType::ConversationWaiting, message: None, reason: None }, now)?;
    Ok(conv)
}

/// The agent ended a closed conversation's wrap-up: their capacity is free.
pub fn wrap_up_done(tx: &mut dyn Tx, allowed: &[String], id: &str, now: i64) -> Result<Conversation, Refused> {
    let mut conv = conversation(tx, id, allowed)?;
    if !conv.wrap_up_done(now) {
        return Err(Refused::NoWrapUp);
    }
    tx.update_conversation(&conv)?;
    Ok(conv)
}

/// Closes the conversation; the customer gets ConversationEnded and the survey. Closing a
/// closed conversation changes nothing.
pub fn close(tx: &mut dyn Tx, rt: &Runtime, allowed: &[String], id: &str, now: i64) -> Result<Conversation, Refused> {
    let mut conv = conversation(tx, id, allowed)?;
    if desk_events::close(tx, rt.account_ref(), &mut conv, CloseReason::Agent, now)?
        && let Some(ws) = rt.workstream(&conv.workstream)
    {
        automated::on_close(tx, rt, ws, &conv, now)?;
    }
    Ok(conv)
}

/// The bot hands the conversation to the desk: routing runs again with the bot's attributes,
/// and the desk gets `conversation.created` (its sequence starts at 1) with the bot's summary.
pub fn escalate(
    tx: &mut dyn Tx,
    rt: &Runtime,
    allowed: &[String],
    id: &str,
    summary: Option<String>,
    attributes: BTreeMap<String, String>,
    now: i64,
) -> Result<Conversation, Refused> {
    let (mut conv, ws) = open_conversation(tx, rt, id, allowed)?;
    if conv.handler != Handler::Bot {
        return Err(Refused::NotWithBot);
    }
    let message: Message = tx.latest_inbound(&conv.id)?.unwrap_or_default();
    let context = Context::new(attributes.clone());
    let split = Uuid::parse_str(&conv.id).unwrap_or_default();
    conv.routing = route_stored(tx, ws, &conv.customer, &message, &split, now, Some(&context))?;
    conv.handler = Handler::Desk;
    conv.queued_ms = Some(now);
    conv.bot = Some(BotHandoff { summary, attributes, escalated_ms: now });
    tx.update_conversation(&conv)?;
    tx.restart_sequence(&conv.id)?;
    desk_events::enqueue(tx, rt.account_ref(), &conv, Pending { event_type: EventType::ConversationCreated, message: None, reason: None }, now)?;
    if conv.routing.queue.is_none() {
        automated::send(tx, rt.account_ref(), ws, &conv, &[Trigger::QueueOverflow], &[], now)?;
        desk_events::close(tx, rt.account_ref(), &mut conv, CloseReason::QueueOverflow, now)?;
    } else {
        automated::announce(tx, rt, ws, &conv, false, now)?;
    }
    Ok(conv)
}

/// Links a customer's channel identity to the desk's contact ID (None: unlinks). The open
/// conversation, if any, carries it at once; later ones from the start.
pub fn link_contact(tx: &mut dyn Tx, workstream: &str, customer_id: &str, contact_id: Option<&str>, now: i64) -> Result<(), Refused> {
    tx.set_contact(workstream, customer_id, contact_id, now)?;
    if let Some(mut conv) = tx.open_conversation(workstream, customer_id)? {
        conv.customer.contact_id = contact_id.map(str::to_owned);
        conv.customer.is_known = conv.customer.is_known || contact_id.is_some();
        tx.update_conversation(&conv)?;
    }
    Ok(())
}

/// A message of a conversation as the API shows it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageView {
    /// From the customer.
    In(InboundView),
    /// To the customer.
    Out(OutboundMessage),
}

/// A customer's message as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundView {
    /// The gateway's ID of the message.
    pub id: String,
    /// Always `in`.
    pub direction: &'static str,
    /// Always `customer`.
    pub author: &'static str,
    /// When the provider says it was sent (RFC 3339).
    pub created_at: String,
    /// The message.
    pub message: Message,
}

/// A conversation with its messages, oldest first.
#[derive(Debug, Serialize)]
pub struct ConversationView {
    /// The conversation.
    pub conversation: Conversation,
    /// Its messages.
    pub messages: Vec<MessageView>,
}

/// Reads a conversation with its messages.
pub fn view(tx: &mut dyn Tx, allowed: &[String], id: &str) -> Result<ConversationView, Refused> {
    let conversation = conversation(tx, id, allowed)?;
    let messages = tx
        .messages(&conversation.id)?
        .into_iter()
        .map(|m| match m {
            StoredMessage::In { id, created_ms, message } => MessageView::In(InboundView { id, direction: "in", author: "customer", created_at: rfc3339(created_ms), message }),
            StoredMessage::Out(message) => MessageView::Out(message),
        })
        .collect();
    Ok(ConversationView { conversation, messages })
}

/// A customer's message and the conversation's workstream, for fetching an attachment.
pub fn inbound_message(tx: &mut dyn Tx, allowed: &[String], id: &str, message_id: &str) -> Result<(String, Message), Refused> {
    let conv = conversation(tx, id, allowed)?;
    let message = tx.inbound(&conv.id, message_id)?.ok_or(Refused::AttachmentNotFound)?;
    Ok((conv.workstream, message))
}

/// The customer of an open conversation and their latest message (its gateway ID and the
/// message), for a read or typing call.
#[derive(Debug)]
pub struct ChatTarget {
    /// The provider's ID of the customer.
    pub customer_id: String,
    /// The customer's latest message, if they sent any.
    pub last_inbound: Option<(String, Message)>,
}

/// Who a read or typing call is shown to. Only open conversations: a closed one has no agent
/// who reads or writes.
pub fn chat_target(tx: &mut dyn Tx, allowed: &[String], id: &str) -> Result<ChatTarget, Refused> {
    let conv = conversation(tx, id, allowed)?;
    if conv.state == State::Closed {
        return Err(Refused::ConversationClosed);
    }
    // The latest is enough: marking it read marks the customer's earlier messages too.
    let last_inbound = tx.messages(&conv.id)?.into_iter().rev().find_map(|m| match m {
        StoredMessage::In { id, message, .. } => Some((id, message)),
        StoredMessage::Out(_) => None,
    });
    Ok(ChatTarget { customer_id: conv.customer.id, last_inbound })
}
