//! MessagingAccount: one LINE channel or one Twilio account with its WhatsApp numbers.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::{CredentialSource, LocalObjectReference, SecretKeyReference};

/// One provider account: a LINE Messaging API channel, or a Twilio account that sends and
/// receives WhatsApp messages. The controller checks its credentials, registers the webhook and
/// runs one gateway for it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "MessagingAccount",
    doc = "A MessagingAccount is one provider account (a LINE channel, or a Twilio account for WhatsApp) with the webhook and gateway that serve it.",
    namespaced,
    status = "MessagingAccountStatus",
    shortname = "msgacct",
    category = "switchboard",
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider", description = "LINE or TwilioWhatsApp"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Callback", type_ = "string", json_path = ".status.callbackUrl", description = "The URL the provider posts webhooks to"),
    printcolumn(name = "Message", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].message"#, priority = 1, description = "The Ready condition's message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = kube::core::Rule::new("has(self.line) != has(self.twilioWhatsApp)").message("exactly one of line or twilioWhatsApp must be set").reason(kube::core::Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct MessagingAccountSpec {
    /// Human-readable name of the account, shown in events and to the agent desk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// A LINE Messaging API channel. Exactly one of line and twilioWhatsApp is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineAccount>,
    /// A Twilio account used for WhatsApp. Exactly one of line and twilioWhatsApp is set.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "twilioWhatsApp")]
    pub twilio_whatsapp: Option<TwilioWhatsAppAccount>,
    /// Where the provider reaches the gateway, and whether the controller registers that URL.
    pub webhook: WebhookSpec,
    /// The gateway Deployment the controller runs for this account.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Consent that conversation data leaves the cluster for the provider.
    pub data_transfer: DataTransfer,
}

/// LINE channel settings, as shown in the LINE Developers console.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineAccount {
    /// The channel ID (digits only), from the channel's Basic settings.
    #[schemars(regex(pattern = r"^[0-9]{1,20}$"))]
    pub channel_id: String,
    /// The channel secret, used to verify the x-line-signature of webhooks.
    pub channel_secret: CredentialSource,
    /// A long-lived channel access token, used for every call to the Messaging API.
    pub channel_access_token: CredentialSource,
}

/// Twilio account settings for WhatsApp.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioWhatsAppAccount {
    /// The Account SID (AC followed by 32 lowercase hex digits).
    #[schemars(regex(pattern = r"^AC[0-9a-f]{32}$"))]
    pub account_sid: String,
    /// The account's Auth Token, used for API calls and to verify X-Twilio-Signature.
    pub auth_token: CredentialSource,
    /// A Messaging Service whose number pool holds the numbers; when set, the inbound URL is
    /// registered on the service instead of on each number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^MG[0-9a-f]{32}$"))]
    pub messaging_service_sid: Option<String>,
    /// The WhatsApp-enabled numbers of this account, each with a name workstreams refer to.
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 50))]
    pub numbers: Vec<WhatsAppNumber>,
    /// True for the Twilio WhatsApp sandbox, whose inbound URL can only be set in the console;
    /// registration is then always manual.
    #[serde(default)]
    pub sandbox: bool,
}

/// One WhatsApp sender number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppNumber {
    /// Short name workstreams use to pick this number (a DNS label).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// The number in E.164 form, e.g. +14155550100.
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{6,14}$"))]
    pub number: String,
    /// The WhatsApp Sender SID (XE...) of this number. When set, the webhook is registered on the
    /// sender through the Senders API rather than on the phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^XE[0-9a-f]{32}$"))]
    pub sender_sid: Option<String>,
}

/// How the provider reaches the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The public https base URL that routes to the gateway's webhook port, without a path
    /// (plain http is accepted only for loopback addresses, and only when the controller allows it).
    #[schemars(length(max = 400), regex(pattern = r"^https?://[^/?#\s]+/?$"))]
    pub public_base_url: String,
    /// Automatic: the controller registers the callback URL with the provider. Manual: the
    /// controller only publishes status.callbackUrl for a person to paste into the console.
    #[serde(default)]
    pub registration: Registration,
}

/// Who registers the callback URL with the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Registration {
    /// The controller sets the provider's webhook URL and keeps it set.
    #[default]
    Automatic,
    /// A person sets it; the controller reports the URL to use.
    Manual,
}

/// Settings of the gateway Deployment that serves this account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("self.replicas <= 1 || has(self.store)").message("at most 1 without store.postgres: the embedded SQLite store has one writer").field_path(".replicas"),
    validation = kube::core::Rule::new("!has(self.storage) || !has(self.store)").message("storage is the SQLite store's volume; store.postgres keeps nothing on the pod, so set one or the other").field_path(".storage")
)]
pub struct GatewaySpec {
    /// Number of gateway pods (0 pauses the gateway). At most 1 on the embedded SQLite store,
    /// which has one writer; up to 10 with store.postgres.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the gateway container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A PersistentVolumeClaim for the embedded SQLite store. Without it (and without
    /// store.postgres) the store lives on an emptyDir and is lost with the pod (the account
    /// reports a warning condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<GatewayStorage>,
    /// A shared store instead of the embedded one, so that several replicas serve the account
    /// and a rollout or a crash refuses no webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<GatewayStore>,
    /// An Ingress for the webhook path. Without it, route publicBaseUrl to the gateway Service
    /// yourself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<GatewayIngress>,
    /// How long a stopping gateway pod keeps serving after it reports not ready, so that the
    /// Service, Ingress and load balancers stop sending to it before it stops listening (at most
    /// 5m; 5s when absent). Raise it when a load balancer deregisters slowly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub drain_delay: Option<String>,
}

/// The gateway's drain delay when the account does not set one: endpoint removal reaches
/// kube-proxy and most ingress controllers within a few seconds.
pub const DEFAULT_DRAIN_DELAY: &str = "5s";
/// The longest drain delay an account may ask for.
pub const MAX_DRAIN_DELAY: std::time::Duration = std::time::Duration::from_secs(300);

fn default_replicas() -> i32 {
    1
}

/// An account that says nothing about its gateway runs one replica: the CRD publishes this value
/// as the schema default of `spec.gateway`, so it must agree with the field's serde default.
impl Default for GatewaySpec {
    fn default() -> Self {
        Self { replicas: default_replicas(), resources: None, storage: None, store: None, ingress: None, drain_delay: None }
    }
}

/// The gateway's shared store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStore {
    /// A PostgreSQL database (e.g. a CloudNativePG cluster's `-rw` service) that every replica
    /// of this account's gateway shares. Give each account its own database.
    pub postgres: PostgresStore,
}

/// How the gateway reaches its PostgreSQL database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStore {
    /// The Secret with the connection: a `uri` key (postgresql://user:password@host:port/db),
    /// else the keys `host`, `dbname`, `username`, `password` and optionally `port` (5432), as
    /// CloudNativePG's `<cluster>-app` Secret has them. The values reach the gateway as
    /// environment variables from the Secret; they are never copied.
    pub connection_secret_ref: LocalObjectReference,
    /// How the connection is secured, as libpq's sslmode: `verify-full` checks the server's
    /// certificate and host name, `verify-ca` the certificate only, `require` encrypts without
    /// checking, `disable` sends everything, the password included, in the clear.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// The certificate authority (PEM) the server's certificate is checked against, e.g.
    /// CloudNativePG's `<cluster>-ca` Secret, key `ca.crt`; the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyReference>,
}

/// libpq's sslmode values that say what a connection may trust.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS without checking the server's certificate.
    Require,
    /// TLS with the server's certificate checked against the certificate authority.
    VerifyCa,
    /// TLS with the certificate checked and issued for the host connected to.
    #[default]
    VerifyFull,
}

impl SslMode {
    /// The spelling of the spec and of the gateway's flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The persistent volume of the gateway's store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStorage {
    /// Requested size, e.g. 1Gi.
    pub size: Quantity,
    /// StorageClass of the claim; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// The Ingress the controller creates for the webhook path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayIngress {
    /// IngressClass to use; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Host name the Ingress serves; normally the host of webhook.publicBaseUrl.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub host: String,
    /// Secret holding the TLS certificate for host; no TLS section when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Extra annotations for the Ingress, e.g. for cert-manager.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Acknowledgement that conversation data is sent to the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataTransfer {
    /// Must be true: messages, profiles and attachments leave the cluster for LINE or Twilio.
    #[x_kube(validation = kube::core::Rule::new("self == true").message("must be true: conversation data leaves the cluster for the provider"))]
    pub acknowledged: bool,
}

/// What the controller observed about a MessagingAccount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagingAccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// CredentialsValid, WebhookRegistered, GatewayReady and Ready.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The value of the `switchboard.dev/reconcile-requested-at` annotation the controller last
    /// acted on: setting the annotation to a new value asks for a re-check at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Which provider this account uses: LINE or TwilioWhatsApp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The URL the provider must post webhooks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The LINE bot behind the channel, as LINE reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineIdentity>,
    /// The Twilio account, as Twilio reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioIdentity>,
    /// Registration state of each WhatsApp number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub numbers: Vec<NumberStatus>,
    /// The gateway Deployment serving this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
}

/// The LINE bot identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineIdentity {
    /// The bot's user ID (U...).
    pub bot_user_id: String,
    /// The bot's basic ID, e.g. @123abcd.
    pub basic_id: String,
    /// The bot's display name.
    pub display_name: String,
}

/// The Twilio account identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioIdentity {
    /// The account's friendly name.
    pub friendly_name: String,
    /// active, suspended or closed.
    pub status: String,
    /// Trial or Full.
    #[serde(rename = "type")]
    pub account_type: String,
}

/// Registration state of one WhatsApp number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberStatus {
    /// The number's name in spec.twilioWhatsApp.numbers.
    pub name: String,
    /// The number in E.164 form.
    pub number: String,
    /// Whether the provider's inbound URL for this number is the callback URL.
    pub inbound_url_configured: bool,
    /// Why the number cannot be registered: NumberNotFound (not an incoming number or WhatsApp
    /// sender of the account) or NumberNotInService (not in spec.twilioWhatsApp.messagingServiceSid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was looked at, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The gateway Deployment's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Name of the Deployment.
    pub deployment: String,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// How much of the ConfigMap's room the compressed configuration takes, in whole percent
    /// (coarse, so that a rule change does not rewrite the account; the ConfigMap's
    /// `switchboard.dev/config-size` annotation has the exact size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_usage: Option<String>,
}

impl MessagingAccountSpec {
    /// The URL the provider must post this account's webhooks to: the public base URL followed
    /// by `/switchboard/{namespace}/{name}/webhook`, the path the gateway serves.
    pub fn callback_url(&self, namespace: &str, name: &str) -> Result<url::Url, url::ParseError> {
        let mut url = url::Url::parse(&self.webhook.public_base_url)?;
        url.path_segments_mut()
            .map_err(|()| url::ParseError::RelativeUrlWithCannotBeABaseBase)?
            .pop_if_empty()
            .extend(["switchboard", namespace, name, "webhook"]);
        Ok(url)
    }

    /// The Secret keys this account reads, each with the path of the field that names it.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretKeyReference)> {
        let mut refs = Vec::new();
        if let Some(line) = &self.line {
            refs.push(("spec.line.channelSecret.secretKeyRef", &line.channel_secret.secret_key_ref));
            refs.push(("spec.line.channelAccessToken.secretKeyRef", &line.channel_access_token.secret_key_ref));
        }
        if let Some(twilio) = &self.twilio_whatsapp {
            refs.push(("spec.twilioWhatsApp.authToken.secretKeyRef", &twilio.auth_token.secret_key_ref));
        }
        refs
    }

    /// The Secrets the gateway's store connection is read from, each with the path of the
    /// field that names it: the kubelet reads them, so they are referenced, not read here.
    pub fn store_secrets(&self) -> Vec<(&'static str, &str)> {
        let Some(store) = &self.gateway.store else { return Vec::new() };
        let mut names = vec![("spec.gateway.store.postgres.connectionSecretRef", store.postgres.connection_secret_ref.name.as_str())];
        if let Some(ca) = &store.postgres.ca_secret_ref {
            names.push(("spec.gateway.store.postgres.caSecretRef", ca.name.as_str()));
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(base: &str) -> MessagingAccountSpec {
        MessagingAccountSpec {
            display_name: None,
            line: None,
            twilio_whatsapp: None,
            webhook: WebhookSpec { public_base_url: base.into(), ..Default::default() },
            gateway: GatewaySpec::default(),
            data_transfer: DataTransfer::default(),
        }
    }

    #[test]
    fn callback_url_appends_the_gateway_path() {
        let url = spec("https://chat.contoso.example").callback_url("support", "contoso-line").unwrap();
        assert_eq!(url.as_str(), "https://chat.contoso.example/switchboard/support/contoso-line/webhook");
        let under_prefix = spec("https://contoso.example/chat/").callback_url("support", "a").unwrap();
        assert_eq!(under_prefix.as_str(), "https://contoso.example/chat/switchboard/support/a/webhook");
        assert!(spec("not a url").callback_url("support", "a").is_err());
        assert!(spec("mailto:ops@contoso.example").callback_url("support", "a").is_err());
    }
}
