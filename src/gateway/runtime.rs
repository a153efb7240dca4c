//! The configuration the gateway runs on: the compiled document from the controller with its
//! rules and operating hours compiled, its credentials read from the environment, and provider
//! clients made. A new document is built into a new [`Runtime`] beside the old one and swapped
//! in whole; requests in flight keep the one they started with.

use std::collections::HashMap;

use thiserror::Error;

use super::channels::Channel;
use super::channels::line::Line;
use super::channels::twilio::Twilio;
use super::model::conversation::HELD;
use super::model::desk_event::{AccountRef, InvalidSigningKey, SigningKey};
use crate::api::workstream::Trigger;
use crate::config::{
    ChannelConfig, ConfigError, GatewayConfig, LINE_CHANNEL_ACCESS_TOKEN_ENV, LINE_CHANNEL_SECRET_ENV, ProviderConfig,
    TWILIO_AUTH_TOKEN_ENV, WorkstreamConfig, WrapUp,
};
use crate::providers::{LineCredentials, Providers, Secret, TwilioCredentials};
use crate::routing::evaluate::{CompiledRules, RuleCompileError, compile_rules};
use crate::routing::hours::{self, CompiledHours, HoursError};

/// Why a configuration cannot be run; the gateway keeps running the previous one.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The document is not a configuration this build reads.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A credential's environment variable is not set (the Deployment lacks it).
    #[error("environment variable {0} is not set or empty")]
    MissingEnv(String),
    /// A rule does not compile (only possible when the ConfigMap was edited by hand).
    #[error("workstream {workstream}: {error}")]
    Rules {
        /// The workstream.
        workstream: String,
        /// What is wrong.
        error: RuleCompileError,
    },
    /// The account's callback URL is not a URL (only possible when the ConfigMap was edited by
    /// hand).
    #[error("account.callbackUrl: {0}")]
    CallbackUrl(url::ParseError),
    /// A delivery signing key cannot be used (the message never holds its value).
    #[error("workstream {workstream}: the signing secret in {env} {error}")]
    SigningKey {
        /// The workstream.
        workstream: String,
        /// The variable that holds it.
        env: String,
        /// What is wrong.
        error: InvalidSigningKey,
    },
    /// A queue's operating hours cannot be used.
    #[error("workstream {workstream}: queue {queue}: {error}")]
    Hours {
        /// The workstream.
        workstream: String,
        /// The queue.
        queue: String,
        /// What is wrong.
        error: HoursError,
    },
}

/// The account's channel: LINE, or Twilio's WhatsApp.
#[derive(Clone, Debug)]
pub enum Provider {
    /// A LINE channel.
    Line(Line),
    /// A Twilio account.
    Twilio(Twilio),
}

impl Provider {
    /// The channel, as the gateway's common interface to it.
    pub fn channel(&self) -> &dyn Channel {
        match self {
            Provider::Line(line) => line,
            Provider::Twilio(twilio) => twilio,
        }
    }
}

/// One workstream, ready to route.
#[derive(Debug)]
pub struct Workstream {
    /// The workstream as configured.
    pub config: WorkstreamConfig,
    /// Its rules, compiled.
    pub rules: CompiledRules,
    /// Operating hours of the queues that have them, by queue name.
    pub hours: HashMap<String, CompiledHours>,
    /// The keys deliveries to the desk (and the bot) are signed with: the current one, and
    /// during a rotation the previous one.
    pub signing_keys: Vec<SigningKey>,
    /// The bearer token the desk presents to the agent API.
    pub agent_api_token: Secret,
    /// The bearer token sent to the bot, when the workstream has a bot that wants one.
    pub bot_token: Option<Secret>,
}

/// Everything the gateway needs from one configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The document.
    pub config: GatewayConfig,
    /// Its hash, to tell documents apart in logs and metrics.
    pub hash: String,
    /// The provider.
    pub provider: Provider,
    /// The workstreams, as in the document.
    pub workstreams: Vec<Workstream>,
}

impl Runtime {
    /// Builds a runtime from a document, reading credentials through `env`.
    pub fn build(config: GatewayConfig, env: &dyn Fn(&str) -> Option<String>, providers: &Providers) -> Result<Self, LoadError> {
        let secret = |name: &str| -> Result<Secret, LoadError> {
            env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(Secret::new).ok_or_else(|| LoadError::MissingEnv(name.to_owned()))
        };
        let provider = match &config.account.provider {
            ProviderConfig::Line { .. } => Provider::Line(Line {
                client: providers.line(LineCredentials { channel_access_token: secret(LINE_CHANNEL_ACCESS_TOKEN_ENV)? }),
                channel_secret: secret(LINE_CHANNEL_SECRET_ENV)?,
            }),
            ProviderConfig::TwilioWhatsApp { account_sid, .. } => {
                let auth_token = secret(TWILIO_AUTH_TOKEN_ENV)?;
                Provider::Twilio(Twilio {
                    client: providers.twilio(TwilioCredentials { account_sid: account_sid.clone(), auth_token: auth_token.clone() }),
                    auth_token,
                    callback_url: config.account.callback_url.clone(),
                    status_url: Twilio::status_url(&config.account.callback_url).map_err(LoadError::CallbackUrl)?,
                })
            }
        };
        let workstreams = config
            .workstreams
            .iter()
            .map(|ws| Workstream::build(ws.clone(), &secret))
            .collect::<Result<Vec<_>, LoadError>>()?;
        let hash = config.hash();
        Ok(Self { config, hash, provider, workstreams })
    }

    /// The workstream an event belongs to: the account's LINE workstream, or the one serving
    /// the WhatsApp number the event was sent to.
    pub fn workstream_for(&self, to: Option<&str>) -> Option<&Workstream> {
        self.workstreams.iter().find(|ws| match (&ws.config.channel, to) {
            (ChannelConfig::Line, _) => matches!(self.provider, Provider::Line(_)),
            (ChannelConfig::WhatsApp { number, .. }, Some(to)) => number == to,
            (ChannelConfig::WhatsApp { .. }, None) => false,
        })
    }

    /// A workstream by name.
    pub fn workstream(&self, name: &str) -> Option<&Workstream> {
        self.workstreams.iter().find(|ws| ws.config.name == name)
    }

    /// The account, as desk events name it.
    pub fn account_ref(&self) -> AccountRef<'_> {
        AccountRef { namespace: &self.config.account.namespace, name: &self.config.account.name }
    }
}

impl Workstream {
    /// How long a closed conversation keeps its agent's capacity (ms; [`HELD`] until the agent
    /// ends the wrap-up); None without a wrap-up.
    pub fn wrap_up_ms(&self) -> Option<i64> {
        match self.config.distribution.wrap_up {
            WrapUp::None => None,
            WrapUp::Always => Some(HELD),
            WrapUp::After { seconds } => Some(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(HELD)),
        }
    }

    /// Compiles a workstream's rules and operating hours and reads its credentials through
    /// `secret` (by environment variable name).
    pub fn build(config: WorkstreamConfig, secret: &dyn Fn(&str) -> Result<Secret, LoadError>) -> Result<Self, LoadError> {
        let signing_keys = std::iter::once(&config.delivery.signing_secret)
            .chain(&config.delivery.previous_signing_secret)
            .map(|r| {
                SigningKey::new(&secret(&r.env)?).map_err(|error| LoadError::SigningKey { workstream: config.name.clone(), env: r.env.clone(), error })
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let agent_api_token = secret(&config.delivery.agent_api_token.env)?;
        let bot_token = config.bot.as_ref().and_then(|b| b.token.as_ref()).map(|t| secret(&t.env)).transpose()?;
        let rules = compile_rules(&config.rules).map_err(|error| LoadError::Rules { workstream: config.name.clone(), error })?;
        let hours = config
            .queues
            .iter()
            .filter_map(|q| q.operating_hours.as_ref().map(|h| (q, h)))
            .map(|(q, h)| {
                let compiled = hours::compile(h).map_err(|error| LoadError::Hours { workstream: config.name.clone(), queue: q.name.clone(), error })?;
                Ok((q.name.clone(), compiled))
            })
            .collect::<Result<HashMap<_, _>, LoadError>>()?;
        Ok(Self { config, rules, hours, signing_keys, agent_api_token, bot_token })
    }

    /// The channel's name as routing rules test it.
    pub fn channel_name(&self) -> &'static str {
        match self.config.channel {
            ChannelConfig::Line => "LINE",
            ChannelConfig::WhatsApp { .. } => "WhatsApp",
        }
    }

    /// The automated message for `trigger` in the customer's locale: an exact match, else the
    /// same language (`en` for `en-GB`), else the workstream's language, else any text for it.
    pub fn automated_message(&self, trigger: Trigger, locale: Option<&str>) -> Option<&str> {
        let texts: Vec<_> = self.config.automated_messages.iter().filter(|m| m.trigger == trigger).collect();
        let language = |l: &str| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase();
        let exact = |want: &str| texts.iter().find(|m| m.locale.eq_ignore_ascii_case(want));
        let same_language = |want: &str| texts.iter().find(|m| language(&m.locale) == language(want));
        locale
            .and_then(exact)
            .or_else(|| locale.and_then(same_language))
            .or_else(|| exact(&self.config.language))
            .or_else(|| same_language(&self.config.language))
            .or_else(|| texts.first())
            .map(|m| m.text.as_str())
    }

    /// The sending address of the workstream (`whatsapp:+E164`); none on LINE.
    pub fn sender_address(&self) -> Option<String> {
        match &self.config.channel {
            ChannelConfig::Line => None,
            ChannelConfig::WhatsApp { number, .. } => Some(format!("whatsapp:{number}")),
        }
    }

    /// Whether the channel has WhatsApp's 24-hour window.
    pub fn has_window(&self) -> bool {
        matches!(self.config.channel, ChannelConfig::WhatsApp { .. })
    }

    /// Whether a queue is open now; a queue without operating hours always is.
    pub fn queue_open(&self, queue: &str, now: jiff::Timestamp) -> bool {
        self.hours.get(queue).is_none_or(|h| h.is_open(now))
    }
}

/// Fills `{Name}` placeholders of an automated message; unknown placeholders stay as written,
/// so that a typo shows in the message rather than silently vanishing.
pub fn fill_placeholders(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// A LINE workstream with fallback queue `general`, with the fields of `extra` (camelCase, as
/// in the configuration) set over it (tests).
#[cfg(test)]
pub(crate) fn sample_workstream(extra: serde_json::Value) -> Workstream {
    let mut config = serde_json::json!({
        "name": "support", "generation": 1, "channel": {"type": "Line"}, "language": "en-US",
        "distribution": {"mode": "Push", "fallbackQueue": "general", "capacityPerConversation": 1, "wrapUp": {"type": "None"}},
        "queues": [{"name": "general"}],
        "delivery": {"url": "http://desk", "signingSecret": {"env": "S"}, "agentApiToken": {"env": "T"}},
    });
    if let (Some(config), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    Workstream::build(serde_json::from_value(config).expect("a workstream configuration"), &|_| Ok(Secret::new("s"))).expect("a valid workstream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workstream(messages: &[(&str, &str)]) -> Workstream {
        let messages: Vec<_> = messages.iter().map(|(locale, text)| serde_json::json!({"trigger": "Greeting", "locale": locale, "text": text})).collect();
        sample_workstream(serde_json::json!({ "automatedMessages": messages }))
    }

    #[test]
    fn automated_message_falls_back_by_language_then_workstream() {
        let ws = workstream(&[("en-US", "Hello"), ("tr", "Merhaba"), ("pt-BR", "Olá")]);
        assert_eq!(ws.automated_message(Trigger::Greeting, Some("tr-TR")), Some("Merhaba"));
        assert_eq!(ws.automated_message(Trigger::Greeting, Some("pt-br")), Some("Olá"));
        assert_eq!(ws.automated_message(Trigger::Greeting, Some("ja")), Some("Hello"));
        assert_eq!(ws.automated_message(Trigger::Greeting, None), Some("Hello"));
        assert_eq!(ws.automated_message(Trigger::QueueOverflow, None), None);
        assert_eq!(workstream(&[]).automated_message(Trigger::Greeting, Some("en")), None);
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        assert_eq!(fill_placeholders("Hi {CustomerName}, {Unknown}", &[("CustomerName", "Ann")]), "Hi Ann, {Unknown}");
    }
}
