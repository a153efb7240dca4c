//! RoutingRule: one rule of work classification or of route-to-queue.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::common::LocalObjectReference;

/// One rule of a workstream: classification rules add attributes, priority and skills;
/// route-to-queue rules pick the queue. Within a stage rules run by ascending order and the
/// first match wins.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "switchboard.dev",
    version = "v1alpha1",
    kind = "RoutingRule",
    doc = "A RoutingRule classifies work items or routes them to a queue of its Workstream.",
    namespaced,
    status = "RoutingRuleStatus",
    shortname = "rr",
    category = "switchboard",
    printcolumn(name = "Workstream", type_ = "string", json_path = ".spec.workstreamRef.name"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stage"),
    printcolumn(name = "Order", type_ = "integer", json_path = ".spec.order"),
    printcolumn(name = "Queue", type_ = "string", json_path = ".spec.routeTo.queue"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Message", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].message"#, priority = 1, description = "The Ready condition's message"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = kube::core::Rule::new("self.stage == 'RouteToQueue' || !has(self.routeTo)").message("routeTo is only allowed on the RouteToQueue stage").field_path(".routeTo"),
    validation = kube::core::Rule::new("self.stage != 'RouteToQueue' || has(self.routeTo)").message("a RouteToQueue rule needs routeTo").field_path(".routeTo"),
    validation = kube::core::Rule::new("self.stage == 'Classification' || !has(self.set)").message("set is only allowed on the Classification stage").field_path(".set"),
    validation = kube::core::Rule::new("self.stage != 'Classification' || has(self.set)").message("a Classification rule needs set").field_path(".set")
)]
#[serde(rename_all = "camelCase")]
pub struct RoutingRuleSpec {
    /// The Workstream this rule belongs to.
    pub workstream_ref: LocalObjectReference,
    /// Classification (sets attributes, priority, skills) or RouteToQueue (picks the queue).
    pub stage: Stage,
    /// Position within the stage; lower runs first.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub order: i32,
    /// When the rule applies. A rule without conditions always matches.
    #[serde(default, rename = "match")]
    pub match_: Match,
    /// Classification outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Classification>,
    /// Route-to-queue output: one queue, or a percentage split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_to: Option<RouteTo>,
}

/// The stage of a rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Stage {
    /// Runs first and enriches the work item.
    #[default]
    Classification,
    /// Runs second and picks a queue.
    RouteToQueue,
}

/// The conditions of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Conditions that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub all: Vec<MatchCondition>,
    /// When not empty, at least one of these must hold as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub any: Vec<MatchCondition>,
}

/// One test of a work item field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchCondition {
    /// The field: channel, customer.id, customer.displayName, customer.language,
    /// customer.phoneNumber, customer.isKnown, message.text, message.type, attributes.<name> or
    /// time.withinOperatingHours.
    #[schemars(regex(pattern = r"^(channel|customer\.(id|displayName|language|phoneNumber|isKnown)|message\.(text|type)|attributes\.[A-Za-z0-9_-]{1,63}|time\.withinOperatingHours)$"))]
    pub field: String,
    /// How the field is compared with values.
    pub operator: Operator,
    /// The values to compare with (regular expressions for Matches; numbers for GreaterThan and
    /// LessThan; none for Exists and NotExists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub values: Vec<String>,
    /// Compare text without regard to case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum Operator {
    #[default]
    Equals,
    NotEquals,
    In,
    NotIn,
    Contains,
    StartsWith,
    Matches,
    Exists,
    NotExists,
    GreaterThan,
    LessThan,
}

/// What a classification rule adds to the work item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    /// Attributes later rules can test as attributes.<name>.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The work item's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Skills an agent needs for this work item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub skills: Vec<String>,
}

/// Work item priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

/// Where a matching work item goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.queue) != has(self.split)").message("exactly one of queue or split must be set"))]
pub struct RouteTo {
    /// The queue (a name in the workstream's queues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub queue: Option<String>,
    /// A percentage split across up to 5 queues; percentages sum to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.map(s, s.percent).sum() == 100").message(kube::core::Message::Expression("'percentages sum to ' + string(self.map(s, s.percent).sum()) + ', must be 100'".into())))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["queue".into()]))]
    #[schemars(length(min = 1, max = 5))]
    pub split: Option<Vec<SplitTarget>>,
}

/// One share of a split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitTarget {
    /// The queue.
    #[schemars(length(max = 63))]
    pub queue: String,
    /// Its share, in percent.
    #[schemars(range(min = 1, max = 100))]
    pub percent: i32,
}

/// What the controller observed about a RoutingRule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingRuleStatus {
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
}
