//! MessageTemplate: a message agents may send, e.g. outside WhatsApp's 24-hour window.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::LocalObjectReference;

/// A message template in one or more languages. On a Twilio account each localization becomes a
/// Content resource submitted for WhatsApp approval; on a LINE account no approval is needed.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "MessageTemplate",
    doc = "A MessageTemplate is a message agents may send, such as a WhatsApp template for use outside the 24-hour window.",
    namespaced,
    status = "MessageTemplateStatus",
    shortname = "mtpl",
    category = "switchboard",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountRef.name"),
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.templateName"),
    printcolumn(name = "Approval", type_ = "string", json_path = ".status.approvalSummary", description = "WhatsApp's review of the localizations"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Message", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].message"#, priority = 1, description = "The Ready condition's message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = kube::core::Rule::new("self.localizations.exists(l, l.language == self.defaultLanguage)").message("must be the language of one of spec.localizations").field_path(".defaultLanguage"),
    validation = kube::core::Rule::new("!has(self.adopt) || self.adopt.all(k, self.localizations.exists(l, l.language == k))").message("every key must be the language of one of spec.localizations").field_path(".adopt")
)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplateSpec {
    /// The MessagingAccount the template is for.
    pub account_ref: LocalObjectReference,
    /// The template's name at the provider: lowercase letters, digits and underscores.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[a-z0-9_]+$"))]
    pub template_name: String,
    /// WhatsApp template category.
    pub category: TemplateCategory,
    /// Language used when the customer's language has no localization.
    #[schemars(length(max = 35), regex(pattern = r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"))]
    pub default_language: String,
    /// The template text per language; {{1}}, {{2}}, ... are variables.
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["language".into()]))]
    #[schemars(length(min = 1, max = 50))]
    pub localizations: Vec<Localization>,
    /// An example value for each variable, which WhatsApp review requires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_values: BTreeMap<String, String>,
    /// Existing Twilio Content SIDs (HX...) to adopt per language instead of creating new ones.
    /// At most one per localization; a SID is HX and 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "adopt_schema")]
    pub adopt: Option<BTreeMap<String, String>>,
    /// Retain (default) or Delete the provider-side content when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A map bounded by what it can hold, so that the CEL rule iterating it stays within the API
/// server's cost budget: one SID per localization (at most 50), each `HX` and 32 hex digits.
fn adopt_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 50,
        "additionalProperties": {"type": "string", "maxLength": 34},
    })
}

/// WhatsApp template categories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TemplateCategory {
    /// Transactional updates the customer expects.
    #[default]
    Utility,
    /// Promotions and offers.
    Marketing,
    /// One-time passcodes.
    Authentication,
}

/// One language of a template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Localization {
    /// Language code, e.g. en, tr or pt_BR.
    #[schemars(length(max = 35), regex(pattern = r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})*$"))]
    pub language: String,
    /// The text, with variables {{1}}, {{2}}, ... in order.
    #[schemars(length(min = 1, max = 1024))]
    pub body: String,
}

/// What happens to provider-side content when the template is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the content at the provider.
    #[default]
    Retain,
    /// Delete the content the controller created at the provider (adopted content is kept).
    Delete,
}

/// What the controller observed about a MessageTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplateStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Synced, Approved and Ready.
    #[serde(default)]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The value of the `switchboard.dev/reconcile-requested-at` annotation the controller last
    /// acted on: setting the annotation to a new value asks for a re-check at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// WhatsApp's review of the localizations in a word: Approved, NotRequired (LINE), Pending,
    /// or the languages that cannot be sent, e.g. `Rejected: tr` or `Rejected: tr; Paused: en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_summary: Option<String>,
    /// Provider state per language.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["language".into()]))]
    pub localizations: Vec<LocalizationStatus>,
}

/// Provider state of one localization.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalizationStatus {
    /// The localization's language.
    pub language: String,
    /// The Twilio Content SID (HX...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sid: Option<String>,
    /// Unsubmitted, Received, Pending, Approved, Rejected, Paused, Disabled, or NotRequired (LINE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The category WhatsApp approved, which may differ from the one asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Why WhatsApp rejected the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// A digest of what the controller created the Content from (name, category, language,
    /// body, sample values); absent for adopted Content. A different digest means the
    /// localization changed, and submitted Content cannot change, so new Content is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

/// WhatsApp approval states, as Twilio reports them, plus NotRequired for LINE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum Approval {
    Unsubmitted,
    Received,
    Pending,
    Approved,
    Rejected,
    Paused,
    Disabled,
    NotRequired,
}

impl MessageTemplateSpec {
    /// The sample values of the variables `body` uses (`{{1}}`, `{{2}}`, …): what Content is
    /// created with and what the gateway fills in by default.
    pub fn variables(&self, body: &str) -> BTreeMap<String, String> {
        self.sample_values.iter().filter(|(key, _)| body.contains(&format!("{{{{{key}}}}}"))).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
