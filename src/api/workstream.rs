//! Workstream: how the conversations of one channel are queued, answered and closed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectReference, SecretKeyReference};

/// How the conversations of one channel (a LINE account, or one WhatsApp number of a Twilio
/// account) are distributed to queues and agents.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "Workstream",
    doc = "A Workstream says how the conversations of one channel are queued, routed, answered and closed.",
    namespaced,
    status = "WorkstreamStatus",
    shortname = "ws",
    category = "switchboard",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountRef.name"),
    printcolumn(name = "Channel", type_ = "string", json_path = ".status.channel"),
    printcolumn(name = "Fallback", type_ = "string", json_path = ".spec.distribution.fallbackQueue"),
    printcolumn(name = "Rules", type_ = "integer", json_path = ".status.routingRules", priority = 1),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Message", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].message"#, priority = 1, description = "The Ready condition's message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("self.queues.exists(q, q.name == self.distribution.fallbackQueue)").message("must be the name of one of spec.queues").field_path(".distribution.fallbackQueue"))]
#[serde(rename_all = "camelCase")]
pub struct WorkstreamSpec {
    /// The MessagingAccount whose conversations this workstream handles.
    pub account_ref: LocalObjectReference,
    /// For a Twilio account: the name of the number (spec.twilioWhatsApp.numbers[].name) this
    /// workstream serves. Not used for LINE accounts.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "whatsAppNumber")]
    pub whatsapp_number: Option<String>,
    /// The workstream's language as a BCP 47 tag (e.g. en-US); automated messages fall back to it.
    #[schemars(regex(pattern = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"))]
    pub language: String,
    /// How work is offered to agents.
    pub distribution: Distribution,
    /// The queues conversations are routed to.
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 100))]
    pub queues: Vec<Queue>,
    /// Messages the gateway sends on its own, per trigger and locale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["trigger".into(), "locale".into()]))]
    pub automated_messages: Vec<AutomatedMessage>,
    /// A survey link sent to the customer when a conversation closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_conversation_survey: Option<PostConversationSurvey>,
    /// What customers and agents may attach.
    #[serde(default)]
    pub file_attachments: FileAttachments,
    /// A bot that sees messages before agents and can hand the conversation off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<Bot>,
    /// Where work items go: the agent desk.
    pub delivery: Delivery,
}

/// How conversations are distributed to agents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    /// Push: the desk assigns work to agents. Pick: agents pick from the queue. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("distribution.mode is immutable"))]
    pub mode: DistributionMode,
    /// Queue used when no rule matches, a rule fails, or a queue overflows.
    #[schemars(length(min = 1, max = 63))]
    pub fallback_queue: String,
    /// How many units of an agent's capacity one conversation takes.
    #[serde(default = "default_capacity")]
    #[schemars(range(min = 1, max = 100))]
    pub capacity_per_conversation: i32,
    /// Offer a returning customer's conversation to the agent who handled it last.
    #[serde(default)]
    pub keep_same_agent: bool,
    /// Close a conversation after this long without a message from either side (e.g. 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub auto_close_after_inactivity: Option<String>,
    /// Agent wrap-up after a conversation: Always (until the agent ends it), None, or a duration.
    #[serde(default = "default_wrap_up")]
    #[schemars(regex(pattern = r"^(Always|None|([0-9]+(ms|s|m|h))+)$"))]
    pub wrap_up: String,
}

fn default_capacity() -> i32 {
    1
}

fn default_wrap_up() -> String {
    "None".to_owned()
}

/// Push or Pick distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DistributionMode {
    /// The desk assigns conversations to available agents.
    #[default]
    Push,
    /// Agents pick conversations from their queues.
    Pick,
}

/// One queue of the workstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// Name of the queue (a DNS label); rules route to it by this name.
    #[schemars(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// Lower numbers are served first when an agent is in several queues.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,
    /// When the queue is staffed; outside these hours the OutOfOperatingHours message is sent.
    /// Always open when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_hours: Option<OperatingHours>,
    /// What happens when too many conversations wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
}

/// Weekly opening hours in one time zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatingHours {
    /// An IANA time zone name, e.g. Europe/Istanbul.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Opening windows; the queue is open when any window contains the current local time.
    #[schemars(length(min = 1, max = 50))]
    pub weekly: Vec<WeeklyWindow>,
}

/// One opening window on some days of the week.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.to == '24:00' || self.from < self.to").message("from must be earlier than to").field_path(".to"))]
pub struct WeeklyWindow {
    /// Days the window applies to.
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Opening time, HH:MM (24-hour clock), local to the time zone.
    #[schemars(length(max = 5), regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub from: String,
    /// Closing time, HH:MM (24-hour clock, 24:00 for midnight), exclusive.
    #[schemars(length(max = 5), regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub to: String,
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Overflow protection for one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overflow {
    /// Waiting conversations above which new ones overflow.
    #[schemars(range(min = 1, max = 100000))]
    pub max_waiting: i32,
    /// What to do with a conversation that overflows.
    pub action: OverflowAction,
}

/// What happens to an overflowing conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OverflowAction {
    /// Route it to the workstream's fallback queue.
    #[default]
    FallbackQueue,
    /// Send the QueueOverflow automated message and close the conversation.
    Decline,
}

/// A message the gateway sends by itself when its trigger fires.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomatedMessage {
    /// When the message is sent.
    pub trigger: Trigger,
    /// The customer locale (BCP 47) this text is for; the workstream language is the fallback.
    #[schemars(regex(pattern = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"))]
    pub locale: String,
    /// The text. Placeholders: {CustomerName} {QueueName} {Position} {AverageWaitTime} (minutes)
    /// {AgentName} {ConversationId} {SurveyUrl}.
    #[schemars(length(min = 1, max = 1600))]
    pub text: String,
}

/// The events that send an automated message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Trigger {
    /// A new conversation starts.
    #[default]
    Greeting,
    /// An agent accepted the conversation.
    AgentAssigned,
    /// The customer is told their position in the queue.
    QueuePosition,
    /// The conversation was routed to a queue that is closed now.
    OutOfOperatingHours,
    /// The queue overflowed and the conversation was declined.
    QueueOverflow,
    /// An attachment was not passed on (blocked type or too large).
    AttachmentRejected,
    /// The conversation was closed.
    ConversationEnded,
}

/// A survey link sent when a conversation closes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostConversationSurvey {
    /// Whether the survey is sent.
    #[serde(default)]
    pub enabled: bool,
    /// The survey URL; {ConversationId} is replaced.
    #[schemars(length(min = 1, max = 1000))]
    pub url: String,
    /// The message text; {SurveyUrl} is replaced by the URL.
    #[schemars(length(min = 1, max = 1600))]
    pub text: String,
    /// On WhatsApp, outside the 24-hour window only an approved template may be sent: the
    /// MessageTemplate used then. Without it the survey is skipped there (with an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<LocalObjectReference>,
}

/// Attachment policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileAttachments {
    /// Whether customers' attachments are passed on to agents.
    #[serde(default = "yes")]
    pub customers_can_send: bool,
    /// Whether agents may send attachments.
    #[serde(default = "yes")]
    pub agents_can_send: bool,
    /// Largest attachment in bytes.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1, max = 104857600))]
    pub max_bytes: i64,
    /// File extensions (with the dot) that are never passed on, e.g. .exe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(regex(pattern = r"^\.[A-Za-z0-9]{1,16}$")))]
    pub blocked_extensions: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> i64 {
    5 * 1024 * 1024
}

impl Default for FileAttachments {
    fn default() -> Self {
        Self {
            customers_can_send: true,
            agents_can_send: true,
            max_bytes: default_max_bytes(),
            blocked_extensions: Vec::new(),
        }
    }
}

/// A bot in front of the agents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bot {
    /// Where the gateway posts the conversation's messages for the bot.
    #[schemars(regex(pattern = r"^https?://\S+$"))]
    pub url: String,
    /// Bearer token the gateway sends to the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyReference>,
}

/// Where work items go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The agent desk's endpoint; the gateway POSTs signed events to it.
    #[schemars(regex(pattern = r"^https?://\S+$"))]
    pub url: String,
    /// Secret key that signs each delivery (Standard Webhooks: HMAC-SHA256 in
    /// `webhook-signature`). A `whsec_…` value is the base64 key after the prefix, as the
    /// specification has it; any other value is the key bytes as written.
    pub signing_secret_ref: SecretKeyReference,
    /// While the signing secret is rotated: the key before, whose signature every delivery
    /// carries beside the new one until this is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret_ref: Option<SecretKeyReference>,
    /// Bearer token the desk uses to call the gateway's agent API.
    pub agent_api_token_secret_ref: SecretKeyReference,
}

/// What the controller observed about a Workstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkstreamStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted and Ready.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The value of the `switchboard.dev/reconcile-requested-at` annotation the controller last
    /// acted on: setting the annotation to a new value asks for a re-check at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// LINE or WhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Number of accepted routing rules of this workstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_rules: Option<i32>,
}

impl WorkstreamSpec {
    /// The Secret keys this workstream reads, each with the path of the field that names it.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretKeyReference)> {
        let mut refs = vec![
            ("spec.delivery.signingSecretRef", &self.delivery.signing_secret_ref),
            ("spec.delivery.agentApiTokenSecretRef", &self.delivery.agent_api_token_secret_ref),
        ];
        if let Some(previous) = &self.delivery.previous_signing_secret_ref {
            refs.push(("spec.delivery.previousSigningSecretRef", previous));
        }
        if let Some(token) = self.bot.as_ref().and_then(|b| b.token_secret_ref.as_ref()) {
            refs.push(("spec.bot.tokenSecretRef", token));
        }
        refs
    }
}
