//! The compiled gateway configuration: the seam between the controller, which renders it into
//! the `<account>-gateway` ConfigMap, and the gateway, which reads it and takes a changed one
//! without restarting.
//!
//! One versioned JSON document per MessagingAccount holds the account, its workstreams (queues,
//! messages, policies and routing rules) and the templates that may be sent. It never holds a
//! credential: the gateway reads every credential from an environment variable that the
//! Deployment fills from the user's own Secret, and the document only names the variable.
//!
//! The same inputs always give the same bytes (every collection is sorted, maps are BTreeMaps),
//! so the controller can compare hashes instead of documents and writes nothing in steady state.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::Duration;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::api::account::WhatsAppNumber;
use crate::api::duration;
use crate::api::routing_rule::{Classification, Match, RouteTo, Stage};
use crate::api::template::{Approval, LocalizationStatus, TemplateCategory};
use crate::api::workstream::{AutomatedMessage, DistributionMode, FileAttachments, PostConversationSurvey, Queue};
use crate::api::{MessageTemplate, MessagingAccount, RoutingRule, SecretKeyReference, Workstream};

/// The version of the document this build writes and reads. Fields may be added within a
/// version (readers ignore fields they do not know); anything else needs a new version.
pub const CONFIG_VERSION: u32 = 1;

/// The `binaryData` key of the `<account>-gateway` ConfigMap that holds the document, gzip
/// compressed: routing rules compress about tenfold, so an account with 10,000 rules fits the
/// 1 MiB a ConfigMap may hold, and the document stays one object that changes atomically.
pub const COMPRESSED_CONFIG_KEY: &str = "config.json.gz";
/// The most a compressed document may take: the API server refuses a ConfigMap with more than
/// 1 MiB of data, and the annotations and metadata need a little room.
pub const MAX_COMPRESSED_BYTES: usize = (1 << 20) - 4096;
/// The `data` key of a ConfigMap that holds the document as plain JSON (written by hand, say);
/// read when there is no compressed one.
pub const PLAIN_CONFIG_KEY: &str = "config.json";
/// Most bytes a compressed document may expand to: far above any real configuration, and a bound
/// on what a hostile ConfigMap could make the gateway allocate.
const MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// The two bytes every gzip stream starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A port the gateway listens on. The controller names the Service's, probes' and Ingress's
/// ports after it and passes its number in the gateway's flags, which default to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayPort {
    /// The container port's name.
    pub name: &'static str,
    /// Its number.
    pub number: u16,
}

impl GatewayPort {
    /// The address the gateway listens on for this port: every interface.
    pub fn listen_addr(self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([0, 0, 0, 0], self.number))
    }
}

/// The public port: providers' webhooks and the uploaded files they fetch.
pub const WEBHOOK_PORT: GatewayPort = GatewayPort { name: "webhook", number: 8080 };
/// The internal port desks and bots call.
pub const AGENT_API_PORT: GatewayPort = GatewayPort { name: "agent-api", number: 8081 };
/// `/metrics`, `/healthz` and `/readyz`.
pub const METRICS_PORT: GatewayPort = GatewayPort { name: "metrics", number: 9090 };

/// The folder of the gateway's volume, where its store lives.
pub const GATEWAY_STORE_DIR: &str = "/var/lib/switchboard";
/// The store's file in [`GATEWAY_STORE_DIR`].
pub const GATEWAY_STORE_PATH: &str = "/var/lib/switchboard/gateway.db";

/// The flags of `switchboard gateway` the controller passes: the gateway's argument parser
/// declares them by these names, so the two cannot drift apart.
pub mod gateway_flags {
    /// The ConfigMap to follow.
    pub const CONFIG_MAP: &str = "config-map";
    /// The store's database file.
    pub const STORE: &str = "store";
    /// Address of the webhook server.
    pub const WEBHOOK_ADDR: &str = "webhook-addr";
    /// Address of the agent API.
    pub const AGENT_API_ADDR: &str = "agent-api-addr";
    /// Address of the metrics and health server.
    pub const METRICS_ADDR: &str = "metrics-addr";
    /// How the PostgreSQL store's connection is secured: disable, require, verify-ca or
    /// verify-full.
    pub const POSTGRES_SSL_MODE: &str = "postgres-ssl-mode";
    /// The PEM file of the certificate authorities the PostgreSQL server's certificate is checked
    /// against.
    pub const POSTGRES_CA_FILE: &str = "postgres-ca-file";
    /// How long a stopping gateway keeps serving after it reports not ready.
    pub const DRAIN_DELAY: &str = "drain-delay";
}

/// Environment variable holding the PostgreSQL store's connection URL (or libpq key=value pairs).
pub const POSTGRES_URL_ENV: &str = "SWITCHBOARD_POSTGRES_URL";
/// Environment variables holding the PostgreSQL store's connection in parts, used when no URL is
/// given: host, port, database, user and password.
pub const POSTGRES_HOST_ENV: &str = "SWITCHBOARD_POSTGRES_HOST";
/// See [`POSTGRES_HOST_ENV`].
pub const POSTGRES_PORT_ENV: &str = "SWITCHBOARD_POSTGRES_PORT";
/// See [`POSTGRES_HOST_ENV`].
pub const POSTGRES_DBNAME_ENV: &str = "SWITCHBOARD_POSTGRES_DBNAME";
/// See [`POSTGRES_HOST_ENV`].
pub const POSTGRES_USER_ENV: &str = "SWITCHBOARD_POSTGRES_USER";
/// See [`POSTGRES_HOST_ENV`].
pub const POSTGRES_PASSWORD_ENV: &str = "SWITCHBOARD_POSTGRES_PASSWORD";

/// Environment variable holding a LINE account's channel secret.
pub const LINE_CHANNEL_SECRET_ENV: &str = "SWITCHBOARD_LINE_CHANNEL_SECRET";
/// Environment variable holding a LINE account's channel access token.
pub const LINE_CHANNEL_ACCESS_TOKEN_ENV: &str = "SWITCHBOARD_LINE_CHANNEL_ACCESS_TOKEN";
/// Environment variable holding a Twilio account's auth token.
pub const TWILIO_AUTH_TOKEN_ENV: &str = "SWITCHBOARD_TWILIO_AUTH_TOKEN";
/// Prefix of the numbered variables that hold the workstreams' Secret keys.
const WORKSTREAM_SECRET_ENV_PREFIX: &str = "SWITCHBOARD_SECRET_";

/// Why a configuration could not be rendered or read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// An object has a field the configuration cannot be made from.
    #[error("{kind} {name}: {field}: {message}")]
    Invalid {
        /// The object's kind, e.g. Workstream.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Path of the field, e.g. `spec.distribution.wrapUp`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The document is not JSON of the configuration's shape.
    #[error("not a gateway configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// A compressed document does not decompress.
    #[error("the compressed gateway configuration does not decompress: {0}")]
    Compressed(#[source] std::io::Error),
    /// A plain document is not UTF-8.
    #[error("the gateway configuration is neither gzip nor UTF-8 text")]
    NotText,
    /// A compressed document expands beyond [`MAX_DOCUMENT_BYTES`].
    #[error("the compressed gateway configuration expands to more than {} bytes", MAX_DOCUMENT_BYTES)]
    TooLarge,
    /// The document has a version this build does not read.
    #[error("gateway configuration version {found} is not supported; this build reads version {}", CONFIG_VERSION)]
    UnsupportedVersion {
        /// The version the document has.
        found: u32,
    },
}

fn invalid(kind: &'static str, name: &str, field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { kind, name: name.to_owned(), field: field.to_owned(), message: message.into() }
}

/// The whole configuration of one account's gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Always [`CONFIG_VERSION`] when written by this build.
    pub version: u32,
    /// The provider account.
    pub account: AccountConfig,
    /// The account's workstreams, by name.
    #[serde(default)]
    pub workstreams: Vec<WorkstreamConfig>,
    /// The templates with at least one localization that may be sent, by object name.
    #[serde(default)]
    pub templates: Vec<TemplateConfig>,
}

/// The provider account and where its webhooks arrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountConfig {
    /// Namespace of the MessagingAccount.
    pub namespace: String,
    /// Name of the MessagingAccount.
    pub name: String,
    /// Human-readable name of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The path the gateway serves webhooks on: `/switchboard/{namespace}/{name}/webhook`.
    pub callback_path: String,
    /// The public URL the provider posts to; Twilio signs this URL, so the gateway needs it to
    /// verify a request even behind a proxy that rewrites the path.
    pub callback_url: String,
    /// The provider and its non-secret identifiers.
    pub provider: ProviderConfig,
}

/// The provider of an account. Credentials are in the fixed environment variables
/// [`LINE_CHANNEL_SECRET_ENV`], [`LINE_CHANNEL_ACCESS_TOKEN_ENV`] and [`TWILIO_AUTH_TOKEN_ENV`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ProviderConfig {
    /// A LINE Messaging API channel.
    Line {
        /// The channel ID.
        channel_id: String,
    },
    /// A Twilio account used for WhatsApp.
    TwilioWhatsApp {
        /// The Account SID.
        account_sid: String,
        /// The Messaging Service whose pool holds the numbers, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messaging_service_sid: Option<String>,
        /// Whether this is the Twilio WhatsApp sandbox.
        #[serde(default)]
        sandbox: bool,
        /// The WhatsApp numbers, by name.
        #[serde(default)]
        numbers: Vec<WhatsAppNumber>,
    },
}

/// Names the environment variable that holds a credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEnvRef {
    /// The variable's name.
    pub env: String,
}

/// One workstream: its channel, policies, queues and rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkstreamConfig {
    /// Name of the Workstream.
    pub name: String,
    /// The Workstream's `metadata.generation` this configuration was made from.
    pub generation: i64,
    /// The Workstream's UID, which the gateway's Kubernetes Events about it name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The Workstream's `switchboard.dev/reconcile-requested-at` annotation: a new value resumes
    /// deliveries to a receiver that answered 410 Gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_requested_at: Option<String>,
    /// The channel the workstream serves.
    pub channel: ChannelConfig,
    /// The workstream's language (BCP 47), the fallback for automated messages.
    pub language: String,
    /// How work is offered to agents.
    pub distribution: DistributionConfig,
    /// The queues, by priority (lower first) and then by name.
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// Messages the gateway sends on its own, by trigger and then by locale.
    #[serde(default)]
    pub automated_messages: Vec<AutomatedMessage>,
    /// The survey sent when a conversation closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_conversation_survey: Option<PostConversationSurvey>,
    /// What customers and agents may attach; blocked extensions sorted and without repeats.
    #[serde(default)]
    pub file_attachments: FileAttachments,
    /// A bot that sees messages before agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<BotConfig>,
    /// Where work items go.
    pub delivery: DeliveryConfig,
    /// The routing rules, per stage.
    #[serde(default)]
    pub rules: RulesConfig,
}

/// The channel of a workstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum ChannelConfig {
    /// The account's LINE channel.
    Line,
    /// One WhatsApp number of a Twilio account.
    WhatsApp {
        /// The number's name in the account.
        number_name: String,
        /// The number in E.164 form.
        number: String,
    },
}

/// Distribution settings, with durations in whole seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributionConfig {
    /// Push or Pick.
    pub mode: DistributionMode,
    /// Queue used when no rule matches, a rule fails, or a queue overflows.
    pub fallback_queue: String,
    /// Units of an agent's capacity one conversation takes.
    pub capacity_per_conversation: i32,
    /// Offer a returning customer to the agent who handled them last.
    #[serde(default)]
    pub keep_same_agent: bool,
    /// Close a conversation after this many seconds without a message; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_close_after_inactivity_seconds: Option<u64>,
    /// Agent wrap-up after a conversation.
    pub wrap_up: WrapUp,
}

/// Agent wrap-up after a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WrapUp {
    /// Until the agent ends it.
    Always,
    /// No wrap-up.
    None,
    /// For a fixed time.
    After {
        /// Length of the wrap-up in seconds.
        seconds: u64,
    },
}

/// The bot in front of the agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotConfig {
    /// Where the gateway posts messages for the bot.
    pub url: String,
    /// The bearer token sent to the bot, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretEnvRef>,
}

/// The agent desk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryConfig {
    /// The desk's endpoint for signed events.
    pub url: String,
    /// The key each delivery is signed with.
    pub signing_secret: SecretEnvRef,
    /// During a rotation, the key before: deliveries carry a signature with each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret: Option<SecretEnvRef>,
    /// The bearer token the desk presents to the agent API.
    pub agent_api_token: SecretEnvRef,
}

/// The routing rules of a workstream, each stage sorted by order and then by name (the order
/// in which they run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesConfig {
    /// Classification rules.
    #[serde(default)]
    pub classification: Vec<RuleConfig>,
    /// Route-to-queue rules.
    #[serde(default)]
    pub route_to_queue: Vec<RuleConfig>,
}

/// One routing rule. The match is kept as written: the gateway compiles it with
/// [`crate::routing::compile`], which the controller has already run on the same spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// Name of the RoutingRule.
    pub name: String,
    /// The RoutingRule's `metadata.generation` this configuration was made from.
    pub generation: i64,
    /// Position within the stage.
    pub order: i32,
    /// When the rule applies.
    #[serde(default, rename = "match")]
    pub match_: Match,
    /// Classification outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Classification>,
    /// Route-to-queue output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_to: Option<RouteTo>,
}

/// A template with the localizations that may be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateConfig {
    /// Name of the MessageTemplate object (what a survey's templateRef names).
    pub name: String,
    /// The template's name at the provider.
    pub template_name: String,
    /// WhatsApp template category.
    pub category: TemplateCategory,
    /// Language used when the customer's language has no localization.
    pub default_language: String,
    /// The sendable localizations, by language.
    #[serde(default)]
    pub localizations: Vec<TemplateLocalizationConfig>,
}

/// One sendable localization of a template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateLocalizationConfig {
    /// The language.
    pub language: String,
    /// The text, with variables {{1}}, {{2}}, ...
    pub body: String,
    /// The approved Twilio Content SID; absent on LINE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
    /// The variables the body uses, each with its sample value.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// A Secret key the gateway container needs as an environment variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEnv {
    /// The variable's name.
    pub env: String,
    /// The Secret key that fills it.
    pub secret: SecretKeyReference,
}

/// What [`render`] produces: the configuration, and the environment variables the gateway
/// Deployment must fill from Secrets for it (sorted by name, one per variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The configuration for the ConfigMap.
    pub config: GatewayConfig,
    /// The Secret-backed environment variables for the gateway container.
    pub secret_env: Vec<SecretEnv>,
}

/// Renders the configuration of `account`'s gateway.
///
/// The caller passes only objects it accepted: in the account's namespace, referencing this
/// account (rules: one of the passed workstreams). Rules of workstreams not passed are left out.
/// The result does not depend on the order of the inputs.
pub fn render(
    account: &MessagingAccount,
    workstreams: &[Workstream],
    rules: &[impl std::borrow::Borrow<RoutingRule>],
    templates: &[MessageTemplate],
) -> Result<Rendered, ConfigError> {
    let mut secrets = SecretNames::default();
    let account_config = render_account(account, &mut secrets)?;
    let workstream_refs = workstreams.iter().flat_map(|ws| ws.spec.secret_refs().into_iter().map(|(_, r)| r));
    secrets.number(workstream_refs);

    let mut sorted: Vec<&Workstream> = workstreams.iter().collect();
    sorted.sort_by_key(|ws| ws.name_any());
    let workstreams = sorted
        .into_iter()
        .map(|ws| render_workstream(ws, &account_config.provider, rules, &secrets))
        .collect::<Result<Vec<_>, _>>()?;

    let mut templates: Vec<TemplateConfig> = templates.iter().filter_map(|t| render_template(t, &account_config.provider)).collect();
    templates.sort_by(|a, b| a.name.cmp(&b.name));

    let config = GatewayConfig { version: CONFIG_VERSION, account: account_config, workstreams, templates };
    Ok(Rendered { config, secret_env: secrets.into_env() })
}

/// Assigns environment variable names to Secret keys: one variable per key, except that each
/// fixed account variable is always present.
#[derive(Default)]
struct SecretNames {
    /// The variable of each Secret key, by (Secret name, key).
    by_key: BTreeMap<(String, String), String>,
    env: Vec<SecretEnv>,
}

fn secret_key(r: &SecretKeyReference) -> (String, String) {
    (r.name.clone(), r.key.clone())
}

impl SecretNames {
    /// Gives an account credential its fixed variable. A workstream reference to the same key
    /// reuses the first such variable.
    fn fixed(&mut self, env: &str, secret: &SecretKeyReference) {
        self.by_key.entry(secret_key(secret)).or_insert_with(|| env.to_owned());
        self.env.push(SecretEnv { env: env.to_owned(), secret: secret.clone() });
    }

    /// Numbers the keys that have no variable yet in (Secret name, key) order, so that the
    /// same set of references always gets the same names whatever order they came in.
    fn number<'a>(&mut self, refs: impl Iterator<Item = &'a SecretKeyReference>) {
        let new: BTreeSet<(String, String)> = refs.map(secret_key).filter(|k| !self.by_key.contains_key(k)).collect();
        for (i, (name, key)) in new.into_iter().enumerate() {
            let env = format!("{WORKSTREAM_SECRET_ENV_PREFIX}{}", i + 1);
            self.env.push(SecretEnv { env: env.clone(), secret: SecretKeyReference { name: name.clone(), key: key.clone() } });
            self.by_key.insert((name, key), env);
        }
    }

    fn env_ref(&self, secret: &SecretKeyReference) -> SecretEnvRef {
        let env = self.by_key.get(&secret_key(secret)).expect("render numbers every workstream Secret key before rendering workstreams");
        SecretEnvRef { env: env.clone() }
    }

    fn into_env(mut self) -> Vec<SecretEnv> {
        self.env.sort_by(|a, b| a.env.cmp(&b.env));
        self.env
    }
}

fn render_account(account: &MessagingAccount, secrets: &mut SecretNames) -> Result<AccountConfig, ConfigError> {
    const KIND: &str = "MessagingAccount";
    let name = account.name_any();
    let namespace = account.namespace().ok_or_else(|| invalid(KIND, &name, "metadata.namespace", "is not set"))?;
    let spec = &account.spec;
    let provider = match (&spec.line, &spec.twilio_whatsapp) {
        (Some(line), None) => {
            secrets.fixed(LINE_CHANNEL_SECRET_ENV, &line.channel_secret.secret_key_ref);
            secrets.fixed(LINE_CHANNEL_ACCESS_TOKEN_ENV, &line.channel_access_token.secret_key_ref);
            ProviderConfig::Line { channel_id: line.channel_id.clone() }
        }
        (None, Some(twilio)) => {
            secrets.fixed(TWILIO_AUTH_TOKEN_ENV, &twilio.auth_token.secret_key_ref);
            let mut numbers = twilio.numbers.clone();
            numbers.sort_by(|a, b| a.name.cmp(&b.name));
            ProviderConfig::TwilioWhatsApp {
                account_sid: twilio.account_sid.clone(),
                messaging_service_sid: twilio.messaging_service_sid.clone(),
                sandbox: twilio.sandbox,
                numbers,
            }
        }
        _ => return Err(invalid(KIND, &name, "spec", "exactly one of line or twilioWhatsApp must be set")),
    };
    let callback_url = spec
        .callback_url(&namespace, &name)
        .map_err(|e| invalid(KIND, &name, "spec.webhook.publicBaseUrl", format!("no callback URL can be made from it: {e}")))?;
    Ok(AccountConfig {
        callback_path: format!("/switchboard/{namespace}/{name}/webhook"),
        callback_url: callback_url.into(),
        namespace,
        name,
        display_name: spec.display_name.clone(),
        provider,
    })
}

fn render_workstream(
    ws: &Workstream,
    provider: &ProviderConfig,
    rules: &[impl std::borrow::Borrow<RoutingRule>],
    secrets: &SecretNames,
) -> Result<WorkstreamConfig, ConfigError> {
    const KIND: &str = "Workstream";
    let name = ws.name_any();
    let spec = &ws.spec;
    let channel = match provider {
        ProviderConfig::Line { .. } => ChannelConfig::Line,
        ProviderConfig::TwilioWhatsApp { numbers, .. } => {
            let wanted = spec.whatsapp_number.as_deref().ok_or_else(|| invalid(KIND, &name, "spec.whatsAppNumber", "is required on a Twilio account"))?;
            let number = numbers
                .iter()
                .find(|n| n.name == wanted)
                .ok_or_else(|| invalid(KIND, &name, "spec.whatsAppNumber", format!("the account has no number named {wanted:?}")))?;
            ChannelConfig::WhatsApp { number_name: number.name.clone(), number: number.number.clone() }
        }
    };

    let d = &spec.distribution;
    let seconds = |field: &str, text: &str| {
        duration::parse(text).map(whole_seconds).ok_or_else(|| invalid(KIND, &name, field, format!("{text:?} is not a duration such as 90s, 15m or 24h")))
    };
    let auto_close_after_inactivity_seconds =
        d.auto_close_after_inactivity.as_deref().map(|text| seconds("spec.distribution.autoCloseAfterInactivity", text)).transpose()?;
    let wrap_up = match d.wrap_up.as_str() {
        "Always" => WrapUp::Always,
        "None" => WrapUp::None,
        text => WrapUp::After { seconds: seconds("spec.distribution.wrapUp", text)? },
    };
    let distribution = DistributionConfig {
        mode: d.mode,
        fallback_queue: d.fallback_queue.clone(),
        capacity_per_conversation: d.capacity_per_conversation,
        keep_same_agent: d.keep_same_agent,
        auto_close_after_inactivity_seconds,
        wrap_up,
    };

    let mut queues = spec.queues.clone();
    queues.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let mut automated_messages = spec.automated_messages.clone();
    automated_messages.sort_by(|a, b| (a.trigger, &a.locale).cmp(&(b.trigger, &b.locale)));
    let mut file_attachments = spec.file_attachments.clone();
    file_attachments.blocked_extensions.sort();
    file_attachments.blocked_extensions.dedup();

    Ok(WorkstreamConfig {
        generation: ws.metadata.generation.unwrap_or_default(),
        uid: ws.metadata.uid.clone(),
        reconcile_requested_at: ws.annotations().get(crate::api::RECONCILE_REQUESTED_AT).cloned(),
        channel,
        language: spec.language.clone(),
        distribution,
        queues,
        automated_messages,
        post_conversation_survey: spec.post_conversation_survey.clone(),
        file_attachments,
        bot: spec.bot.as_ref().map(|bot| BotConfig { url: bot.url.clone(), token: bot.token_secret_ref.as_ref().map(|r| secrets.env_ref(r)) }),
        delivery: DeliveryConfig {
            url: spec.delivery.url.clone(),
            signing_secret: secrets.env_ref(&spec.delivery.signing_secret_ref),
            previous_signing_secret: spec.delivery.previous_signing_secret_ref.as_ref().map(|r| secrets.env_ref(r)),
            agent_api_token: secrets.env_ref(&spec.delivery.agent_api_token_secret_ref),
        },
        rules: render_rules(&name, rules),
        name,
    })
}

/// Rounds up, so that a positive duration under a second never becomes 0.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Rules are passed owned (`check`) or shared (the controller renders from its cache without
/// copying thousands of rules).
fn render_rules(workstream: &str, rules: &[impl std::borrow::Borrow<RoutingRule>]) -> RulesConfig {
    let mut config = RulesConfig::default();
    for rule in rules.iter().map(std::borrow::Borrow::borrow).filter(|r: &&RoutingRule| r.spec.workstream_ref.name == workstream) {
        let rendered = RuleConfig {
            name: rule.name_any(),
            generation: rule.metadata.generation.unwrap_or_default(),
            order: rule.spec.order,
            match_: rule.spec.match_.clone(),
            set: rule.spec.set.clone(),
            route_to: rule.spec.route_to.clone(),
        };
        match rule.spec.stage {
            Stage::Classification => config.classification.push(rendered),
            Stage::RouteToQueue => config.route_to_queue.push(rendered),
        }
    }
    for stage in [&mut config.classification, &mut config.route_to_queue] {
        stage.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    }
    config
}

/// A localization may be sent once the provider allows it: WhatsApp approved its Content, or
/// the account is LINE, which needs no approval.
fn sendable(provider: &ProviderConfig, status: &LocalizationStatus) -> bool {
    match provider {
        ProviderConfig::Line { .. } => status.approval == Some(Approval::NotRequired),
        ProviderConfig::TwilioWhatsApp { .. } => status.approval == Some(Approval::Approved) && status.content_sid.is_some(),
    }
}

/// The template with its sendable localizations, or None when it has none.
fn render_template(template: &MessageTemplate, provider: &ProviderConfig) -> Option<TemplateConfig> {
    let spec = &template.spec;
    let statuses = template.status.as_ref().map(|s| s.localizations.as_slice()).unwrap_or_default();
    let mut localizations: Vec<TemplateLocalizationConfig> = spec
        .localizations
        .iter()
        .filter_map(|l| {
            let status = statuses.iter().find(|s| s.language == l.language && sendable(provider, s))?;
            Some(TemplateLocalizationConfig {
                language: l.language.clone(),
                body: l.body.clone(),
                content_sid: status.content_sid.clone(),
                variables: spec.variables(&l.body),
            })
        })
        .collect();
    if localizations.is_empty() {
        return None;
    }
    localizations.sort_by(|a, b| a.language.cmp(&b.language));
    Some(TemplateConfig {
        name: template.name_any(),
        template_name: spec.template_name.clone(),
        category: spec.category,
        default_language: spec.default_language.clone(),
        localizations,
    })
}

/// Only the version, read first so that a document of another version is refused as such
/// rather than with whatever field it happens to lack.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// The JSON text of a stored document: gzip-compressed when it starts as gzip does, else plain.
pub fn document_json(bytes: &[u8]) -> Result<String, ConfigError> {
    document_json_within(bytes, MAX_DOCUMENT_BYTES)
}

fn document_json_within(bytes: &[u8], limit: u64) -> Result<String, ConfigError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return String::from_utf8(bytes.to_vec()).map_err(|_| ConfigError::NotText);
    }
    let mut json = String::new();
    let read = GzDecoder::new(bytes).take(limit + 1).read_to_string(&mut json).map_err(ConfigError::Compressed)?;
    if read as u64 > limit {
        return Err(ConfigError::TooLarge);
    }
    Ok(json)
}

/// The stored document of a gateway ConfigMap: the compressed one, else a plain one.
pub fn config_map_document(config_map: &ConfigMap) -> Option<&[u8]> {
    let compressed = config_map.binary_data.as_ref().and_then(|d| d.get(COMPRESSED_CONFIG_KEY)).map(|b| b.0.as_slice());
    compressed.or_else(|| config_map.data.as_ref().and_then(|d| d.get(PLAIN_CONFIG_KEY)).map(String::as_bytes))
}

impl GatewayConfig {
    /// The document as compact JSON. The same configuration always gives the same bytes.
    pub fn to_json(&self) -> String {
        // Serializing cannot fail: every map has string keys and every type derives Serialize.
        serde_json::to_string(self).expect("a GatewayConfig serializes to JSON")
    }

    /// The lowercase hex SHA-256 of [`GatewayConfig::to_json`]; equal hashes mean equal
    /// configurations.
    pub fn hash(&self) -> String {
        Sha256::digest(self.to_json().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The document compressed as the ConfigMap carries it ([`COMPRESSED_CONFIG_KEY`]); the
    /// same configuration always gives the same bytes.
    pub fn to_compressed(&self) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        // Writing into a Vec cannot fail.
        encoder.write_all(self.to_json().as_bytes()).expect("gzip into memory");
        encoder.finish().expect("gzip into memory")
    }

    /// Reads a stored document, compressed or plain JSON (see [`document_json`]).
    pub fn from_document(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_json(&document_json(bytes)?)
    }

    /// Reads a document. Fields this build does not know are ignored; a version other than
    /// [`CONFIG_VERSION`] is refused.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let VersionOnly { version } = serde_json::from_str(json)?;
        if version != CONFIG_VERSION {
            return Err(ConfigError::UnsupportedVersion { found: version });
        }
        Ok(serde_json::from_str(json)?)
    }

    fn workstream(&self, name: &str) -> Option<&WorkstreamConfig> {
        self.workstreams.iter().find(|ws| ws.name == name)
    }

    /// The generation of Workstream `name` this configuration holds; None when it does not
    /// hold the workstream.
    pub fn workstream_generation(&self, name: &str) -> Option<i64> {
        self.workstream(name).map(|ws| ws.generation)
    }

    /// The generation of RoutingRule `rule` of Workstream `workstream` this configuration
    /// holds; None when it does not hold the rule.
    pub fn rule_generation(&self, workstream: &str, rule: &str) -> Option<i64> {
        let rules = &self.workstream(workstream)?.rules;
        rules.classification.iter().chain(&rules.route_to_queue).find(|r| r.name == rule).map(|r| r.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MessageTemplateStatus;
    use crate::api::routing_rule::{MatchCondition, Operator};
    use crate::api::workstream::Bot;
    use kube::Resource;
    use serde::de::DeserializeOwned;

    const LINE: &str = include_str!("../examples/line-quickstart.yaml");
    const WHATSAPP: &str = include_str!("../examples/whatsapp-twilio.yaml");
    const TEMPLATES: &str = include_str!("../examples/templates.yaml");

    /// The documents of `kind` in a multi-document YAML stream, each given a generation.
    fn objects<K: DeserializeOwned + Resource>(yaml: &str, kind: &str) -> Vec<K> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML"))
            .filter(|doc| doc.get("kind").and_then(|k| k.as_str()) == Some(kind))
            .map(|doc| {
                let mut object: K = serde_yaml::from_value(doc).expect("the document fits its kind");
                object.meta_mut().generation = Some(1);
                object
            })
            .collect()
    }

    fn status(language: &str, approval: Approval, content_sid: Option<&str>) -> LocalizationStatus {
        LocalizationStatus { language: language.into(), approval: Some(approval), content_sid: content_sid.map(Into::into), ..Default::default() }
    }

    fn with_status(mut template: MessageTemplate, localizations: Vec<LocalizationStatus>) -> MessageTemplate {
        template.status = Some(MessageTemplateStatus { localizations, ..Default::default() });
        template
    }

    struct Inputs {
        account: MessagingAccount,
        workstreams: Vec<Workstream>,
        rules: Vec<RoutingRule>,
        templates: Vec<MessageTemplate>,
    }

    impl Inputs {
        fn render(&self) -> Rendered {
            render(&self.account, &self.workstreams, &self.rules, &self.templates).expect("the inputs render")
        }

        fn rule_mut(&mut self, name: &str) -> &mut RoutingRule {
            self.rules.iter_mut().find(|r| r.name_any() == name).expect("the rule exists")
        }
    }

    /// The WhatsApp example with its templates: survey-invitation approved in both languages,
    /// appointment-reminder in English only, spring-sale still pending.
    fn whatsapp() -> Inputs {
        let mut templates: Vec<MessageTemplate> = objects(TEMPLATES, "MessageTemplate");
        for t in &mut templates {
            let localizations = match t.name_any().as_str() {
                "survey-invitation" => vec![status("en", Approval::Approved, Some("HXsurveyen")), status("tr", Approval::Approved, Some("HXsurveytr"))],
                "appointment-reminder" => vec![status("en", Approval::Approved, Some("HXreminderen")), status("tr", Approval::Rejected, Some("HXremindertr"))],
                _ => vec![status("en", Approval::Pending, Some("HXsaleen"))],
            };
            *t = with_status(t.clone(), localizations);
        }
        Inputs {
            account: objects(WHATSAPP, "MessagingAccount").remove(0),
            workstreams: objects(WHATSAPP, "Workstream"),
            rules: objects(WHATSAPP, "RoutingRule"),
            templates,
        }
    }

    fn line() -> Inputs {
        Inputs {
            account: objects(LINE, "MessagingAccount").remove(0),
            workstreams: objects(LINE, "Workstream"),
            rules: objects(LINE, "RoutingRule"),
            templates: Vec::new(),
        }
    }

    fn rule_names(rules: &[RuleConfig]) -> Vec<&str> {
        rules.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn documents_are_read_compressed_or_plain() {
        let config = whatsapp().render().config;
        let compressed = config.to_compressed();
        assert!(compressed.starts_with(&GZIP_MAGIC) && compressed.len() * 3 < config.to_json().len(), "{} of {} bytes", compressed.len(), config.to_json().len());
        assert_eq!(compressed, config.to_compressed(), "the same configuration gives the same bytes");
        assert_eq!(GatewayConfig::from_document(&compressed).unwrap(), config);
        assert_eq!(GatewayConfig::from_document(config.to_json().as_bytes()).unwrap(), config);
        assert!(matches!(GatewayConfig::from_document(&compressed[..compressed.len() / 2]), Err(ConfigError::Compressed(_))));
        assert!(matches!(GatewayConfig::from_document(&[0xff, 0xfe]), Err(ConfigError::NotText)));
        // A small stream that expands past the bound is refused, not allocated.
        let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
        bomb.write_all(&[b' '; 1 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 2048, "{}", bomb.len());
        assert!(matches!(document_json_within(&bomb, (1 << 20) - 1), Err(ConfigError::TooLarge)));
        assert_eq!(document_json_within(&bomb, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_config_map_holds_the_compressed_document_or_a_plain_one() {
        let mut cm = ConfigMap::default();
        assert_eq!(config_map_document(&cm), None);
        cm.data = Some(BTreeMap::from([(PLAIN_CONFIG_KEY.to_owned(), "{}".to_owned())]));
        assert_eq!(config_map_document(&cm), Some(&b"{}"[..]));
        cm.binary_data = Some(BTreeMap::from([(COMPRESSED_CONFIG_KEY.to_owned(), k8s_openapi::ByteString(vec![0x1f, 0x8b]))]));
        assert_eq!(config_map_document(&cm), Some(&[0x1f, 0x8b][..]), "the compressed document wins");
    }

    #[test]
    fn line_example_renders_channel_callback_and_seconds() {
        let config = line().render().config;
        assert_eq!(config.version, CONFIG_VERSION);
        assert_eq!(config.account.callback_path, "/switchboard/support/contoso-line/webhook");
        assert_eq!(config.account.callback_url, "https://chat.contoso.example/switchboard/support/contoso-line/webhook");
        assert_eq!(config.account.provider, ProviderConfig::Line { channel_id: "1657123456".into() });
        let ws = &config.workstreams[0];
        assert_eq!(ws.channel, ChannelConfig::Line);
        assert_eq!(ws.distribution.auto_close_after_inactivity_seconds, Some(86_400));
        assert_eq!(ws.distribution.wrap_up, WrapUp::After { seconds: 60 });
        assert_eq!(ws.file_attachments.blocked_extensions, vec![".bat", ".exe"]);
        assert_eq!(rule_names(&ws.rules.classification), vec!["refunds-are-billing"]);
        assert_eq!(rule_names(&ws.rules.route_to_queue), vec!["billing-queue"]);
    }

    #[test]
    fn whatsapp_example_sorts_workstreams_queues_and_numbers() {
        let config = whatsapp().render().config;
        let names: Vec<&str> = config.workstreams.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, vec!["sales-whatsapp", "support-whatsapp"]);
        let sales = &config.workstreams[0];
        assert_eq!(sales.channel, ChannelConfig::WhatsApp { number_name: "sales".into(), number: "+14155550101".into() });
        assert_eq!(sales.distribution.wrap_up, WrapUp::None);
        let queues: Vec<&str> = sales.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(queues, vec!["sales-enterprise", "sales-east", "sales-west", "sales-general"]);
        let ProviderConfig::TwilioWhatsApp { numbers, messaging_service_sid, .. } = &config.account.provider else {
            panic!("a Twilio account renders as TwilioWhatsApp");
        };
        assert_eq!(numbers.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), vec!["sales", "support"]);
        assert_eq!(messaging_service_sid.as_deref(), Some("MG0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let inputs = whatsapp();
        let expected = inputs.render();
        let mut shuffled = whatsapp();
        shuffled.workstreams.reverse();
        shuffled.rules.reverse();
        shuffled.templates.reverse();
        for ws in &mut shuffled.workstreams {
            ws.spec.queues.reverse();
            ws.spec.automated_messages.reverse();
            ws.spec.file_attachments.blocked_extensions.reverse();
        }
        if let Some(twilio) = &mut shuffled.account.spec.twilio_whatsapp {
            twilio.numbers.reverse();
        }
        for t in &mut shuffled.templates {
            t.spec.localizations.reverse();
            if let Some(s) = &mut t.status {
                s.localizations.reverse();
            }
        }
        let got = shuffled.render();
        assert_eq!(got.config.to_json(), expected.config.to_json());
        assert_eq!(got.secret_env, expected.secret_env);
    }

    #[test]
    fn hash_changes_with_a_rule_and_only_then() {
        let mut inputs = whatsapp();
        let before = inputs.render().config.hash();
        assert_eq!(inputs.render().config.hash(), before, "the same inputs give the same hash");
        assert_eq!(before.len(), 64);
        assert!(before.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

        inputs.rules.reverse();
        assert_eq!(inputs.render().config.hash(), before, "rule order is not a change");

        let rule = inputs.rule_mut("support-wa-billing");
        rule.spec.match_.all[0].values.push("receipt".into());
        rule.metadata.generation = Some(2);
        let changed = inputs.render().config.hash();
        assert_ne!(changed, before);

        inputs.rule_mut("support-wa-billing").spec.order = 5;
        assert_ne!(inputs.render().config.hash(), changed);
    }

    #[test]
    fn rules_run_by_order_then_name_per_stage() {
        let mut inputs = whatsapp();
        let extra = |name: &str, stage: Stage, order: i32| {
            let mut rule = inputs.rules[0].clone();
            rule.metadata.name = Some(name.into());
            rule.spec.stage = stage;
            rule.spec.order = order;
            rule
        };
        let more = vec![
            extra("a-late", Stage::Classification, 500),
            extra("z-early", Stage::Classification, 1),
            extra("a-tie", Stage::Classification, 10),
            extra("b-tie", Stage::RouteToQueue, 10),
        ];
        inputs.rules.extend(more);
        let config = inputs.render().config;
        let support = config.workstreams.iter().find(|w| w.name == "support-whatsapp").expect("rendered");
        assert_eq!(rule_names(&support.rules.classification), vec!["z-early", "a-tie", "support-wa-turkish", "support-wa-billing", "a-late"]);
        assert_eq!(
            rule_names(&support.rules.route_to_queue),
            vec!["b-tie", "support-wa-turkish-queue", "support-wa-billing-queue", "support-wa-split"]
        );
        let sales = config.workstreams.iter().find(|w| w.name == "sales-whatsapp").expect("rendered");
        assert!(sales.rules.classification.is_empty());
        assert_eq!(rule_names(&sales.rules.route_to_queue), vec!["sales-wa-enterprise", "sales-wa-split"]);
    }

    #[test]
    fn rules_of_workstreams_not_passed_are_left_out() {
        let mut inputs = whatsapp();
        inputs.rule_mut("sales-wa-split").spec.workstream_ref.name = "gone".into();
        let config = inputs.render().config;
        let all: Vec<&str> = config.workstreams.iter().flat_map(|w| w.rules.classification.iter().chain(&w.rules.route_to_queue)).map(|r| r.name.as_str()).collect();
        assert!(!all.contains(&"sales-wa-split"));
        assert_eq!(all.len(), inputs.rules.len() - 1);
    }

    #[test]
    fn only_sendable_localizations_and_templates_are_kept() {
        let config = whatsapp().render().config;
        let names: Vec<&str> = config.templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["appointment-reminder", "survey-invitation"], "spring-sale is still pending");
        let reminder = &config.templates[0];
        assert_eq!(reminder.localizations.len(), 1, "the Turkish localization was rejected");
        assert_eq!(reminder.localizations[0].language, "en");
        assert_eq!(reminder.localizations[0].content_sid.as_deref(), Some("HXreminderen"));
        let variables: Vec<(&str, &str)> = reminder.localizations[0].variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(variables, vec![("1", "Ann"), ("2", "12 March, 10:00")]);
        let survey = &config.templates[1];
        assert_eq!(survey.localizations.iter().map(|l| l.language.as_str()).collect::<Vec<_>>(), vec!["en", "tr"]);
    }

    #[test]
    fn sendable_depends_on_the_provider() {
        let mut template: MessageTemplate = objects(TEMPLATES, "MessageTemplate").remove(0);
        template.spec.account_ref.name = "contoso-line".into();
        let line = line();
        let render_with = |localizations: Vec<LocalizationStatus>, account: &MessagingAccount| {
            let t = with_status(template.clone(), localizations);
            render(account, &[], &[] as &[RoutingRule], &[t]).expect("renders").config.templates
        };
        let not_required = vec![status("en", Approval::NotRequired, None)];
        let approved = vec![status("en", Approval::Approved, Some("HX1"))];
        assert_eq!(render_with(not_required.clone(), &line.account).len(), 1);
        assert!(render_with(approved.clone(), &line.account).is_empty());
        let twilio = whatsapp().account;
        assert!(render_with(not_required, &twilio).is_empty());
        assert_eq!(render_with(approved, &twilio).len(), 1);
        assert!(render_with(vec![status("en", Approval::Approved, None)], &twilio).is_empty(), "no Content SID to send");
        assert!(render_with(Vec::new(), &twilio).is_empty(), "no status yet");
    }

    /// The WhatsApp example with a bot whose token lives in its own Secret.
    fn fully_populated() -> Inputs {
        let mut inputs = whatsapp();
        let bot_token = SecretKeyReference { name: "bot-credentials".into(), key: "bearer-token".into() };
        inputs.workstreams[0].spec.bot = Some(Bot { url: "http://bot.support.svc/messages".into(), token_secret_ref: Some(bot_token) });
        inputs
    }

    #[test]
    fn secrets_are_named_by_variable_only() {
        let inputs = fully_populated();
        let rendered = inputs.render();
        let json = rendered.config.to_json();
        let mut refs: Vec<SecretKeyReference> = inputs.account.spec.secret_refs().into_iter().map(|(_, r)| r.clone()).collect();
        refs.extend(inputs.workstreams.iter().flat_map(|w| w.spec.secret_refs().into_iter().map(|(_, r)| r.clone())));
        for r in &refs {
            assert!(!json.contains(&r.name), "Secret name {} is in the configuration", r.name);
            assert!(!json.contains(&r.key), "Secret key {} is in the configuration", r.key);
            assert!(rendered.secret_env.iter().any(|e| e.secret == *r), "{r:?} has no variable");
        }
        assert!(!json.contains("secretKeyRef") && !json.contains("SecretRef"));
        for e in &rendered.secret_env {
            if e.env != TWILIO_AUTH_TOKEN_ENV {
                assert!(json.contains(&format!("{{\"env\":\"{}\"}}", e.env)), "{} is not used by the configuration", e.env);
            }
        }
    }

    #[test]
    fn secret_env_is_deduplicated_and_numbered_by_secret_key() {
        let rendered = fully_populated().render();
        let env: Vec<(&str, &str, &str)> = rendered.secret_env.iter().map(|e| (e.env.as_str(), e.secret.name.as_str(), e.secret.key.as_str())).collect();
        assert_eq!(env, vec![
            ("SWITCHBOARD_SECRET_1", "bot-credentials", "bearer-token"),
            ("SWITCHBOARD_SECRET_2", "desk-whatsapp", "api-token"),
            ("SWITCHBOARD_SECRET_3", "desk-whatsapp", "signing-secret"),
            (TWILIO_AUTH_TOKEN_ENV, "contoso-twilio", "auth-token"),
        ]);
        let both: Vec<&DeliveryConfig> = rendered.config.workstreams.iter().map(|w| &w.delivery).collect();
        assert_eq!(both[0], both[1], "both workstreams share the desk's Secret");
        assert_eq!(both[0].signing_secret.env, "SWITCHBOARD_SECRET_3");
    }

    #[test]
    fn a_workstream_secret_shared_with_the_account_reuses_its_variable() {
        let mut inputs = line();
        let secret = inputs.account.spec.line.as_ref().expect("a LINE account").channel_secret.secret_key_ref.clone();
        inputs.workstreams[0].spec.delivery.signing_secret_ref = secret;
        let rendered = inputs.render();
        assert_eq!(rendered.config.workstreams[0].delivery.signing_secret.env, LINE_CHANNEL_SECRET_ENV);
        let names: Vec<&str> = rendered.secret_env.iter().map(|e| e.env.as_str()).collect();
        assert_eq!(names, vec![LINE_CHANNEL_ACCESS_TOKEN_ENV, LINE_CHANNEL_SECRET_ENV, "SWITCHBOARD_SECRET_1"]);
    }

    #[test]
    fn json_round_trips_and_tolerates_added_fields() {
        let config = fully_populated().render().config;
        let json = config.to_json();
        assert_eq!(GatewayConfig::from_json(&json).expect("reads its own output"), config);

        let mut value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        value["futureField"] = serde_json::json!({"anything": 1});
        value["workstreams"][0]["rules"]["futureStage"] = serde_json::json!([]);
        let added = GatewayConfig::from_json(&value.to_string()).expect("added fields are ignored");
        assert_eq!(added, config);

        value["version"] = serde_json::json!(2);
        assert!(matches!(GatewayConfig::from_json(&value.to_string()), Err(ConfigError::UnsupportedVersion { found: 2 })));
        assert!(matches!(GatewayConfig::from_json("{\"version\": 1}"), Err(ConfigError::Json(_))));
    }

    #[test]
    fn generations_are_reported_per_workstream_and_rule() {
        let mut inputs = whatsapp();
        inputs.workstreams[0].metadata.generation = Some(7);
        let name = inputs.workstreams[0].name_any();
        inputs.rule_mut("support-wa-split").metadata.generation = Some(3);
        let config = inputs.render().config;
        assert_eq!(config.workstream_generation(&name), Some(7));
        assert_eq!(config.workstream_generation("absent"), None);
        assert_eq!(config.rule_generation("support-whatsapp", "support-wa-split"), Some(3));
        assert_eq!(config.rule_generation("support-whatsapp", "support-wa-turkish"), Some(1));
        assert_eq!(config.rule_generation("sales-whatsapp", "support-wa-split"), None);
        assert_eq!(config.rule_generation("absent", "support-wa-split"), None);
    }

    #[test]
    fn a_workstream_carries_its_uid_and_reconcile_request() {
        let mut inputs = whatsapp();
        inputs.workstreams[0].metadata.uid = Some("5f0c".into());
        inputs.workstreams[0].metadata.annotations = Some(BTreeMap::from([(crate::api::RECONCILE_REQUESTED_AT.to_owned(), "now".to_owned())]));
        let name = inputs.workstreams[0].name_any();
        let config = inputs.render().config;
        let ws = config.workstreams.iter().find(|w| w.name == name).unwrap();
        assert_eq!((ws.uid.as_deref(), ws.reconcile_requested_at.as_deref()), (Some("5f0c"), Some("now")));
        let other = config.workstreams.iter().find(|w| w.name != name).unwrap();
        assert_eq!((other.uid.as_deref(), other.reconcile_requested_at.as_deref()), (None, None));
    }

    #[test]
    fn errors_name_the_object_and_field() {
        let mut inputs = whatsapp();
        inputs.workstreams[0].spec.distribution.wrap_up = "soon".into();
        let e = render(&inputs.account, &inputs.workstreams, &[] as &[RoutingRule], &[]).expect_err("wrapUp does not parse").to_string();
        assert_eq!(e, "Workstream support-whatsapp: spec.distribution.wrapUp: \"soon\" is not a duration such as 90s, 15m or 24h");

        let mut inputs = whatsapp();
        inputs.workstreams[1].spec.whatsapp_number = Some("marketing".into());
        let e = render(&inputs.account, &inputs.workstreams, &[] as &[RoutingRule], &[]).expect_err("unknown number").to_string();
        assert_eq!(e, "Workstream sales-whatsapp: spec.whatsAppNumber: the account has no number named \"marketing\"");

        let mut inputs = line();
        inputs.account.spec.webhook.public_base_url = "not a url".into();
        let e = render(&inputs.account, &[], &[] as &[RoutingRule], &[]).expect_err("no callback URL").to_string();
        assert!(e.starts_with("MessagingAccount contoso-line: spec.webhook.publicBaseUrl: no callback URL can be made from it"), "{e}");
    }

    #[test]
    fn sub_second_durations_round_up() {
        let mut inputs = line();
        inputs.workstreams[0].spec.distribution.auto_close_after_inactivity = Some("1500ms".into());
        inputs.workstreams[0].spec.distribution.wrap_up = "0s".into();
        let ws = &inputs.render().config.workstreams[0];
        assert_eq!(ws.distribution.auto_close_after_inactivity_seconds, Some(2));
        assert_eq!(ws.distribution.wrap_up, WrapUp::After { seconds: 0 });
    }

    #[test]
    fn match_is_kept_as_written() {
        let inputs = whatsapp();
        let config = inputs.render().config;
        let rule = config.workstreams[1].rules.classification.iter().find(|r| r.name == "support-wa-billing").expect("rendered");
        assert_eq!(rule.match_.all[0], MatchCondition {
            field: "message.text".into(),
            operator: Operator::Matches,
            values: vec![r"\b(refund|invoice|iade|fatura)\b".into(), r"order\s*#?\d{6,}".into()],
            ignore_case: true,
        });
    }
}
