//! Runs a workstream's routing rules on one work item. The rules are compiled once per gateway
//! configuration ([`compile_rules`]); [`evaluate`] is then pure, cannot fail, and allocates only
//! for its result and for the lower-cased copy of a field that an `ignoreCase` condition needs.
//!
//! # Stages
//!
//! **Classification: the first matching rule wins.** Rules run in order and evaluation of the
//! stage stops at the first rule whose match holds; only that rule's `set` applies (its
//! attributes, priority and skills). Later classification rules are not evaluated, so a
//! classification rule never sees another's attributes: in this stage `attributes.<name>` holds
//! only what the work item came with (a bot's escalation context, [`Context`]).
//! "Outputs visible to later rules" therefore means the route-to-queue rules, which test the
//! winning rule's attributes as `attributes.<name>`. This follows DESIGN.md ("in a stage the first
//! match wins"). The alternative the gateway issue can also be read as — every matching
//! classification rule applies, in order, each seeing the attributes of the ones before, later
//! values overriding earlier ones — would change only [`evaluate`]'s classification loop; the
//! [`Outcome`] (with `classified_by` a list) already has room for it.
//!
//! **Route-to-queue: the first matching rule wins.** A `queue` target routes there; a `split`
//! routes by the caller's `split_bucket` (0..=99), walking the targets' cumulative percentages
//! in listed order: with 50/50 buckets 0..=49 take the first queue and 50..=99 the second. If the
//! percentages do not add up to 100 (only a hand-edited configuration can do that) buckets past
//! the sum take the last target. No matching rule leaves the queue unset; the caller then uses
//! the workstream's fallback queue.
//!
//! # Conditions
//!
//! `all` must all hold and, when `any` is not empty, at least one of `any`; a rule without
//! conditions matches every work item. A field with an empty value counts as absent.
//! - Equals / In: the value equals one of the values. NotEquals / NotIn: it equals none of them,
//!   which an absent field satisfies.
//! - Contains / StartsWith: for one of the values. Matches: one of the regular expressions
//!   matches. All of these, and Equals / In, are false for an absent field.
//! - Exists / NotExists: the field is present (and not empty) / is not.
//! - GreaterThan / LessThan: the value read as a number; an absent field or one that is not a
//!   finite number satisfies neither.
//! - `ignoreCase`: the field is lower-cased (Unicode `to_lowercase`, as [`compile`] does to the
//!   values) before comparing; a regular expression is compiled case-insensitive instead and
//!   runs on the text as written. Because Unicode lower-casing is not Turkish-aware, `İ` folds to
//!   `i̇` (i + combining dot): a value written `İade` matches `İADE`, but a value `iade` does not.
//! - `customer.isKnown` and `time.withinOperatingHours` read as `true` or `false` and always
//!   exist.
//!
//! [`compile`]: super::compile

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use thiserror::Error;

use super::compile::{CompiledCondition, CompiledMatch, Field, Test, compile_match};
use crate::api::routing_rule::{Classification, Match, Priority, RouteTo, RoutingRuleSpec, SplitTarget};
use crate::api::field_error::FieldError;
use crate::config::{RuleConfig, RulesConfig};

/// One rule, ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Name of the RoutingRule, reported in [`Outcome`].
    pub name: String,
    /// The rule's conditions.
    pub matcher: CompiledMatch,
    /// Classification outputs (classification stage only).
    pub set: Option<Classification>,
    /// Where a matching work item goes (route-to-queue stage only).
    pub route_to: Option<RouteTo>,
    /// `set.attributes` with lower-cased values, made once so that `ignoreCase` conditions on
    /// attributes do not lower-case them per work item.
    folded_attributes: BTreeMap<String, String>,
}

/// A workstream's rules, each stage in the order it runs.
#[derive(Clone, Debug, Default)]
pub struct CompiledRules {
    /// Classification rules.
    pub classification: Vec<CompiledRule>,
    /// Route-to-queue rules.
    pub route_to_queue: Vec<CompiledRule>,
}

/// A rule of the gateway configuration that does not compile. The controller accepts only rules
/// that compile, so this means the configuration was edited by hand.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("routing rule {rule}: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RuleCompileError {
    /// Name of the rule.
    pub rule: String,
    /// What is wrong with it; paths are those of the RoutingRule (`spec.match.all[0].values`).
    pub errors: Vec<FieldError>,
}

/// Compiles conditions on their own (a rule's `match`); errors name paths under `spec.match`.
pub fn compile_conditions(m: &Match) -> Result<CompiledMatch, Vec<FieldError>> {
    compile_match(&RoutingRuleSpec { match_: m.clone(), ..Default::default() })
}

/// Compiles both stages of a workstream's rules, keeping their order. Fails on the first rule
/// that does not compile, or on a route-to-queue rule that names no queue.
pub fn compile_rules(rules: &RulesConfig) -> Result<CompiledRules, RuleCompileError> {
    let classification = rules.classification.iter().map(|r| compile_rule(r, false)).collect::<Result<_, _>>()?;
    let route_to_queue = rules.route_to_queue.iter().map(|r| compile_rule(r, true)).collect::<Result<_, _>>()?;
    Ok(CompiledRules { classification, route_to_queue })
}

fn compile_rule(rule: &RuleConfig, routes: bool) -> Result<CompiledRule, RuleCompileError> {
    let mut errors = Vec::new();
    let matcher = compile_conditions(&rule.match_).unwrap_or_else(|e| {
        errors = e;
        CompiledMatch::default()
    });
    // The CRD's CEL rules guarantee exactly one target; without one the rule could only ever
    // send work to the fallback queue while claiming to have routed it.
    if routes {
        let target = rule.route_to.as_ref().map(|t| (t.queue.is_some(), t.split.as_ref().is_some_and(|s| !s.is_empty())));
        match target {
            Some((true, false)) | Some((false, true)) => {}
            Some((true, true)) => errors.push(FieldError::new("spec.routeTo", "exactly one of queue or split must be set")),
            Some((false, false)) | None => errors.push(FieldError::new("spec.routeTo", "a RouteToQueue rule needs a queue or a split")),
        }
    }
    if !errors.is_empty() {
        return Err(RuleCompileError { rule: rule.name.clone(), errors });
    }
    let folded_attributes = rule.set.iter().flat_map(|s| &s.attributes).map(|(k, v)| (k.clone(), v.to_lowercase())).collect();
    Ok(CompiledRule { name: rule.name.clone(), matcher, set: rule.set.clone(), route_to: rule.route_to.clone(), folded_attributes })
}

/// The fields of a work item that rules can test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkItem<'a> {
    /// `LINE` or `WhatsApp`.
    pub channel: &'a str,
    /// The customer's provider ID.
    pub customer_id: &'a str,
    /// The customer's display name, when the provider gave one.
    pub customer_display_name: Option<&'a str>,
    /// The customer's language, when known.
    pub customer_language: Option<&'a str>,
    /// The customer's phone number (WhatsApp).
    pub customer_phone_number: Option<&'a str>,
    /// Whether the customer wrote before.
    pub customer_is_known: bool,
    /// The first message's text, if it has one.
    pub message_text: Option<&'a str>,
    /// The first message's type (text, image, ...).
    pub message_type: Option<&'a str>,
    /// Whether the time is within the operating hours of the workstream's queues.
    pub within_operating_hours: bool,
    /// Attributes the work item comes with (a bot's escalation context): both stages see them
    /// as `attributes.<name>`; classification's own attributes take precedence.
    pub context: Option<&'a Context>,
}

/// Attributes given with a work item, as written and lower-cased for `ignoreCase` conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    written: BTreeMap<String, String>,
    folded: BTreeMap<String, String>,
}

impl Context {
    /// Context from attributes.
    pub fn new(attributes: BTreeMap<String, String>) -> Self {
        let folded = attributes.iter().map(|(k, v)| (k.clone(), v.to_lowercase())).collect();
        Self { written: attributes, folded }
    }
}

/// What the rules decided for one work item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Attributes set by classification.
    pub attributes: BTreeMap<String, String>,
    /// Priority set by classification, if any.
    pub priority: Option<Priority>,
    /// Skills set by classification, in order of first appearance, without repeats.
    pub skills: Vec<String>,
    /// The queue; `None` when no route-to-queue rule matched, and the caller uses the fallback.
    pub queue: Option<String>,
    /// Names of the classification rules whose outputs were applied.
    pub classified_by: Vec<String>,
    /// Name of the route-to-queue rule that chose the queue.
    pub routed_by: Option<String>,
}

/// Runs the rules on a work item. `split_bucket` (0..=99) picks the share of a split; the caller
/// derives it, e.g. from a hash of the conversation, so that the choice is stable and spread.
pub fn evaluate(rules: &CompiledRules, item: &WorkItem<'_>, split_bucket: u8) -> Outcome {
    let mut subject = Subject::new(item);
    let mut outcome = Outcome::default();
    if let Some(context) = item.context {
        outcome.attributes = context.written.clone();
    }
    if let Some(rule) = rules.classification.iter().find(|r| subject.holds(&r.matcher)) {
        outcome.classified_by.push(rule.name.clone());
        if let Some(set) = &rule.set {
            outcome.attributes.extend(set.attributes.iter().map(|(k, v)| (k.clone(), v.clone())));
            outcome.priority = set.priority.or(outcome.priority);
            for skill in &set.skills {
                if !outcome.skills.contains(skill) {
                    outcome.skills.push(skill.clone());
                }
            }
            subject.attributes = Some(Attributes { written: &set.attributes, folded: &rule.folded_attributes });
        }
    }
    if let Some(rule) = rules.route_to_queue.iter().find(|r| subject.holds(&r.matcher)) {
        outcome.routed_by = Some(rule.name.clone());
        outcome.queue = rule.route_to.as_ref().and_then(|t| target(t, split_bucket)).map(str::to_owned);
    }
    outcome
}

fn target(route_to: &RouteTo, bucket: u8) -> Option<&str> {
    match (&route_to.queue, &route_to.split) {
        (Some(queue), _) => Some(queue),
        (None, Some(split)) => split_target(split, bucket),
        (None, None) => None,
    }
}

fn split_target(split: &[SplitTarget], bucket: u8) -> Option<&str> {
    let mut upper: i64 = 0;
    for t in split {
        // A hand-edited negative share takes no buckets rather than giving some back.
        upper += i64::from(t.percent.max(0));
        if i64::from(bucket) < upper {
            return Some(&t.queue);
        }
    }
    split.last().map(|t| t.queue.as_str())
}

/// Text fields whose lower-cased form is cached per work item.
const TEXT_FIELDS: usize = 7;

/// A work item as conditions see it: its fields, the attributes classification set (as written
/// and lower-cased), and lower-cased copies of text fields made on first use.
struct Subject<'a> {
    item: &'a WorkItem<'a>,
    attributes: Option<Attributes<'a>>,
    folded: [OnceCell<Cow<'a, str>>; TEXT_FIELDS],
}

/// The attributes classification set, as written and lower-cased.
#[derive(Clone, Copy)]
struct Attributes<'a> {
    written: &'a BTreeMap<String, String>,
    folded: &'a BTreeMap<String, String>,
}

impl<'a> Subject<'a> {
    fn new(item: &'a WorkItem<'a>) -> Self {
        Subject { item, attributes: None, folded: Default::default() }
    }

    fn holds(&self, m: &CompiledMatch) -> bool {
        m.all.iter().all(|c| self.test(c)) && (m.any.is_empty() || m.any.iter().any(|c| self.test(c)))
    }

    fn test(&self, c: &CompiledCondition) -> bool {
        let text = || if c.ignore_case { self.folded(&c.field) } else { self.raw(&c.field) };
        match &c.test {
            Test::Equals(values) | Test::In(values) => text().is_some_and(|v| values.iter().any(|x| x == v)),
            Test::NotEquals(values) | Test::NotIn(values) => !text().is_some_and(|v| values.iter().any(|x| x == v)),
            Test::Contains(values) => text().is_some_and(|v| values.iter().any(|x| v.contains(x.as_str()))),
            Test::StartsWith(values) => text().is_some_and(|v| values.iter().any(|x| v.starts_with(x.as_str()))),
            Test::Matches(regexes) => self.raw(&c.field).is_some_and(|v| regexes.iter().any(|r| r.is_match(v))),
            Test::Exists => self.raw(&c.field).is_some(),
            Test::NotExists => self.raw(&c.field).is_none(),
            Test::GreaterThan(n) => self.raw(&c.field).and_then(number).is_some_and(|v| v > *n),
            Test::LessThan(n) => self.raw(&c.field).and_then(number).is_some_and(|v| v < *n),
        }
    }

    /// The field as written; `None` when absent or empty.
    fn raw(&self, field: &Field) -> Option<&'a str> {
        let item = self.item;
        let value = match field {
            Field::Channel => Some(item.channel),
            Field::CustomerId => Some(item.customer_id),
            Field::CustomerDisplayName => item.customer_display_name,
            Field::CustomerLanguage => item.customer_language,
            Field::CustomerPhoneNumber => item.customer_phone_number,
            Field::CustomerIsKnown => Some(bool_text(item.customer_is_known)),
            Field::MessageText => item.message_text,
            Field::MessageType => item.message_type,
            Field::WithinOperatingHours => Some(bool_text(item.within_operating_hours)),
            Field::Attribute(name) => self
                .attributes
                .and_then(|a| a.written.get(name.as_str()))
                .or_else(|| item.context.and_then(|c| c.written.get(name.as_str())))
                .map(String::as_str),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The field lower-cased; made at most once per work item and field.
    fn folded(&self, field: &Field) -> Option<&str> {
        let slot = match field {
            Field::Channel => 0,
            Field::CustomerId => 1,
            Field::CustomerDisplayName => 2,
            Field::CustomerLanguage => 3,
            Field::CustomerPhoneNumber => 4,
            Field::MessageText => 5,
            Field::MessageType => 6,
            Field::CustomerIsKnown | Field::WithinOperatingHours => return self.raw(field),
            Field::Attribute(name) => {
                let classified = self.attributes.and_then(|a| a.folded.get(name.as_str()));
                let given = || self.item.context.and_then(|c| c.folded.get(name.as_str()));
                return classified.or_else(given).map(String::as_str).filter(|v| !v.is_empty());
            }
        };
        let raw = self.raw(field)?;
        self.folded.get(slot).map(|cell| cell.get_or_init(|| fold(raw)).as_ref())
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Lower-cases text, borrowing it when nothing would change (the common case for channel,
/// language and IDs).
fn fold(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) { Cow::Owned(text.to_lowercase()) } else { Cow::Borrowed(text) }
}

fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routing_rule::{MatchCondition, Operator};
    use proptest::prelude::*;

    fn cond(field: &str, operator: Operator, values: &[&str]) -> MatchCondition {
        MatchCondition { field: field.into(), operator, values: values.iter().map(|v| v.to_string()).collect(), ignore_case: false }
    }

    fn icase(mut c: MatchCondition) -> MatchCondition {
        c.ignore_case = true;
        c
    }

    fn classify(name: &str, all: Vec<MatchCondition>, attributes: &[(&str, &str)]) -> RuleConfig {
        let set = Classification { attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() };
        RuleConfig { name: name.into(), generation: 1, order: 0, match_: Match { all, any: vec![] }, set: Some(set), route_to: None }
    }

    fn route(name: &str, all: Vec<MatchCondition>, queue: &str) -> RuleConfig {
        let route_to = RouteTo { queue: Some(queue.into()), split: None };
        RuleConfig { name: name.into(), generation: 1, order: 0, match_: Match { all, any: vec![] }, set: None, route_to: Some(route_to) }
    }

    fn split(name: &str, shares: &[(&str, i32)]) -> RuleConfig {
        let split = shares.iter().map(|(q, p)| SplitTarget { queue: q.to_string(), percent: *p }).collect();
        RuleConfig { name: name.into(), generation: 1, order: 0, match_: Match::default(), set: None, route_to: Some(RouteTo { queue: None, split: Some(split) }) }
    }

    fn rules(classification: Vec<RuleConfig>, route_to_queue: Vec<RuleConfig>) -> CompiledRules {
        compile_rules(&RulesConfig { classification, route_to_queue }).expect("compiles")
    }

    fn item(text: &str) -> WorkItem<'_> {
        WorkItem { channel: "LINE", customer_id: "U123", message_text: Some(text), message_type: Some("text"), ..Default::default() }
    }

    /// Whether a single condition holds for the item, by running it as the only route rule.
    fn holds(c: MatchCondition, item: &WorkItem<'_>) -> bool {
        evaluate(&rules(vec![], vec![route("r", vec![c], "q")]), item, 0).queue.is_some()
    }

    #[test]
    fn classification_first_match_wins_and_is_visible_to_routing() {
        let rules = rules(
            vec![
                classify("sales", vec![cond("message.text", Operator::Contains, &["buy"])], &[("topic", "sales")]),
                classify("billing", vec![cond("message.text", Operator::Contains, &["refund"])], &[("topic", "billing"), ("lang", "en")]),
                classify("refund-again", vec![cond("message.text", Operator::Contains, &["refund"])], &[("topic", "other"), ("extra", "x")]),
            ],
            vec![
                route("to-sales", vec![cond("attributes.topic", Operator::Equals, &["sales"])], "sales"),
                route("to-billing", vec![cond("attributes.topic", Operator::Equals, &["billing"])], "billing"),
            ],
        );
        let out = evaluate(&rules, &item("I want a refund"), 0);
        assert_eq!(out.classified_by, vec!["billing"], "only the first matching classification rule applies");
        assert_eq!(out.attributes.get("topic").map(String::as_str), Some("billing"));
        assert!(!out.attributes.contains_key("extra"));
        assert_eq!(out.queue.as_deref(), Some("billing"));
        assert_eq!(out.routed_by.as_deref(), Some("to-billing"));

        let out = evaluate(&rules, &item("buy now, or a refund"), 0);
        assert_eq!(out.classified_by, vec!["sales"], "rules run in the order given");
        assert_eq!(out.queue.as_deref(), Some("sales"));
    }

    #[test]
    fn classification_rules_do_not_see_attributes() {
        let rules = rules(
            vec![
                classify("a", vec![cond("attributes.topic", Operator::Exists, &[])], &[("topic", "never")]),
                classify("b", vec![cond("attributes.topic", Operator::NotExists, &[])], &[("topic", "billing")]),
            ],
            vec![],
        );
        assert_eq!(evaluate(&rules, &item("hi"), 0).classified_by, vec!["b"]);
    }

    #[test]
    fn context_attributes_are_seen_by_both_stages_and_classification_overrides_them() {
        let rules = rules(
            vec![classify("vip", vec![cond("attributes.tier", Operator::Equals, &["gold"])], &[("topic", "vip")])],
            vec![
                route("vip", vec![cond("attributes.topic", Operator::Equals, &["vip"])], "vip"),
                route("refunds", vec![MatchCondition { ignore_case: true, ..cond("attributes.topic", Operator::Equals, &["refund"]) }], "refunds"),
            ],
        );
        let refund = Context::new([("topic".to_owned(), "REFUND".to_owned())].into());
        let out = evaluate(&rules, &WorkItem { context: Some(&refund), ..item("x") }, 0);
        assert_eq!((out.queue.as_deref(), out.attributes.get("topic").map(String::as_str)), (Some("refunds"), Some("REFUND")));
        let gold = Context::new([("tier".to_owned(), "gold".to_owned()), ("topic".to_owned(), "refund".to_owned())].into());
        let out = evaluate(&rules, &WorkItem { context: Some(&gold), ..item("x") }, 0);
        assert_eq!((out.queue.as_deref(), out.attributes.get("topic").map(String::as_str)), (Some("vip"), Some("vip")));
        assert_eq!(evaluate(&rules, &item("x"), 0).queue, None);
    }

    #[test]
    fn route_to_queue_first_match_wins() {
        let rules = rules(
            vec![],
            vec![
                route("line-only", vec![cond("channel", Operator::Equals, &["WhatsApp"])], "wa"),
                route("first", vec![cond("message.type", Operator::Equals, &["text"])], "one"),
                route("second", vec![], "two"),
            ],
        );
        let out = evaluate(&rules, &item("x"), 0);
        assert_eq!((out.queue.as_deref(), out.routed_by.as_deref()), (Some("one"), Some("first")));
        let image = WorkItem { message_type: Some("image"), ..item("x") };
        assert_eq!(evaluate(&rules, &image, 0).queue.as_deref(), Some("two"), "an empty match matches everything");
    }

    #[test]
    fn no_match_leaves_everything_unset() {
        let rules = rules(
            vec![classify("c", vec![cond("message.text", Operator::Contains, &["refund"])], &[("topic", "billing")])],
            vec![route("r", vec![cond("attributes.topic", Operator::Equals, &["billing"])], "billing")],
        );
        assert_eq!(evaluate(&rules, &item("hello"), 42), Outcome::default());
        assert_eq!(evaluate(&CompiledRules::default(), &item("hello"), 42), Outcome::default());
    }

    #[test]
    fn splits_are_deterministic_per_bucket() {
        let half = rules(vec![], vec![split("s", &[("a", 50), ("b", 50)])]);
        let queue = |r: &CompiledRules, bucket: u8| evaluate(r, &item("x"), bucket).queue.unwrap_or_default();
        assert_eq!([0, 49, 50, 99].map(|b| queue(&half, b)), ["a", "a", "b", "b"]);
        assert_eq!(queue(&half, 49), queue(&half, 49));
        let three = rules(vec![], vec![split("s", &[("a", 20), ("b", 30), ("c", 50)])]);
        assert_eq!([0, 19, 20, 49, 50, 99].map(|b| queue(&three, b)), ["a", "a", "b", "b", "c", "c"]);
        // Hand-edited shares that do not add up to 100: the rest goes to the last target.
        let short = rules(vec![], vec![split("s", &[("a", 30), ("b", -5), ("c", 30)])]);
        assert_eq!([29, 30, 59, 60, 99, 255].map(|b| queue(&short, b)), ["a", "c", "c", "c", "c", "c"]);
        assert_eq!(queue(&half, 255), "b", "a bucket out of range takes the last target");
    }

    #[test]
    fn ignore_case_folds_the_field_including_turkish_dotted_i() {
        let text = item("İADE TALEBİ: SİPARİŞİM");
        assert!(holds(icase(cond("message.text", Operator::Contains, &["İade"])), &text));
        assert!(holds(icase(cond("message.text", Operator::StartsWith, &["iade"])), &item("IADE lütfen")));
        assert!(!holds(cond("message.text", Operator::Contains, &["iade"]), &text), "case matters without ignoreCase");
        assert!(holds(icase(cond("message.text", Operator::Contains, &["SİPARİŞ"])), &text));
        // Unicode lower-casing is not Turkish-aware: İ folds to i + U+0307, which `iade` lacks.
        assert!(!holds(icase(cond("message.text", Operator::Contains, &["iade"])), &text));
        assert!(holds(icase(cond("message.text", Operator::Matches, &[r"^İade\b"])), &text), "regexes run on the text as written");
        let tr = WorkItem { customer_language: Some("TR"), ..item("x") };
        assert!(holds(icase(cond("customer.language", Operator::In, &["tr", "az"])), &tr));
        assert!(!holds(cond("customer.language", Operator::In, &["tr", "az"]), &tr));
        assert!(holds(icase(cond("customer.language", Operator::NotEquals, &["en"])), &tr));
    }

    #[test]
    fn ignore_case_applies_to_attributes() {
        let rules = rules(
            vec![classify("c", vec![], &[("topic", "Billing")])],
            vec![
                route("exact", vec![cond("attributes.topic", Operator::Equals, &["billing"])], "exact"),
                route("folded", vec![icase(cond("attributes.topic", Operator::Equals, &["BILLING"]))], "folded"),
            ],
        );
        assert_eq!(evaluate(&rules, &item("x"), 0).queue.as_deref(), Some("folded"));
    }

    #[test]
    fn absent_and_empty_fields() {
        let bare = WorkItem { channel: "WhatsApp", customer_id: "+1415", customer_display_name: Some(""), ..Default::default() };
        for field in ["customer.displayName", "customer.language", "message.text", "attributes.topic"] {
            assert!(!holds(cond(field, Operator::Exists, &[]), &bare), "{field} Exists");
            assert!(holds(cond(field, Operator::NotExists, &[]), &bare), "{field} NotExists");
            assert!(!holds(cond(field, Operator::Equals, &["x"]), &bare), "{field} Equals");
            assert!(!holds(cond(field, Operator::In, &["x"]), &bare), "{field} In");
            assert!(holds(cond(field, Operator::NotEquals, &["x"]), &bare), "{field} NotEquals");
            assert!(holds(cond(field, Operator::NotIn, &["x"]), &bare), "{field} NotIn");
            assert!(!holds(cond(field, Operator::Contains, &["x"]), &bare), "{field} Contains");
            assert!(!holds(cond(field, Operator::Matches, &[".*"]), &bare), "{field} Matches");
            assert!(!holds(cond(field, Operator::GreaterThan, &["0"]), &bare), "{field} GreaterThan");
        }
        for field in ["customer.isKnown", "time.withinOperatingHours", "channel", "customer.id"] {
            assert!(holds(cond(field, Operator::Exists, &[]), &bare), "{field} always exists");
        }
        assert!(holds(cond("customer.isKnown", Operator::Equals, &["false"]), &bare));
        let known = WorkItem { customer_is_known: true, within_operating_hours: true, ..bare };
        assert!(holds(cond("customer.isKnown", Operator::Equals, &["true"]), &known));
        assert!(holds(cond("time.withinOperatingHours", Operator::NotEquals, &["false"]), &known));
    }

    #[test]
    fn numeric_comparisons_on_attributes() {
        let scored = |score: &str| rules(vec![classify("c", vec![], &[("score", score)])], vec![
            route("high", vec![cond("attributes.score", Operator::GreaterThan, &["5"])], "high"),
            route("low", vec![cond("attributes.score", Operator::LessThan, &["5"])], "low"),
        ]);
        let queue = |score: &str| evaluate(&scored(score), &item("x"), 0).queue;
        assert_eq!(queue("7.5").as_deref(), Some("high"));
        assert_eq!(queue(" 10 ").as_deref(), Some("high"));
        assert_eq!(queue("-3").as_deref(), Some("low"));
        assert_eq!(queue("5"), None, "neither greater nor less");
        assert_eq!(queue("high"), None, "not a number");
        assert_eq!(queue("inf"), None, "not finite");
        assert_eq!(queue("NaN"), None);
    }

    #[test]
    fn any_needs_one_when_given() {
        let c = Match {
            all: vec![cond("channel", Operator::Equals, &["LINE"])],
            any: vec![cond("message.text", Operator::Contains, &["a"]), cond("message.text", Operator::Contains, &["b"])],
        };
        let rules = rules(vec![], vec![RuleConfig { match_: c, ..route("r", vec![], "q") }]);
        assert!(evaluate(&rules, &item("b"), 0).queue.is_some());
        assert!(evaluate(&rules, &item("c"), 0).queue.is_none());
        assert!(evaluate(&rules, &WorkItem { channel: "WhatsApp", ..item("a") }, 0).queue.is_none());
    }

    #[test]
    fn outputs_are_reported() {
        let mut c = classify("c", vec![], &[("topic", "billing")]);
        c.set = Some(Classification { priority: Some(Priority::High), skills: vec!["tr".into(), "billing".into(), "tr".into()], ..c.set.unwrap_or_default() });
        let out = evaluate(&rules(vec![c], vec![]), &item("x"), 0);
        assert_eq!(out.priority, Some(Priority::High));
        assert_eq!(out.skills, vec!["tr", "billing"]);
        assert_eq!(out.queue, None);
    }

    #[test]
    fn compile_errors_name_the_rule() {
        let bad_regex = route("broken", vec![cond("message.text", Operator::Matches, &["(open"])], "q");
        let e = compile_rules(&RulesConfig { classification: vec![], route_to_queue: vec![bad_regex] }).expect_err("refused");
        assert_eq!(e.rule, "broken");
        assert!(e.to_string().starts_with("routing rule broken: spec.match.all[0].values[0]: invalid regular expression"), "{e}");
        let nowhere = RuleConfig { route_to: None, ..route("nowhere", vec![], "q") };
        let e = compile_rules(&RulesConfig { classification: vec![], route_to_queue: vec![nowhere] }).expect_err("refused");
        assert_eq!(e.to_string(), "routing rule nowhere: spec.routeTo: a RouteToQueue rule needs a queue or a split");
        assert!(compile_conditions(&Match::default()).is_ok_and(|m| m.all.is_empty() && m.any.is_empty()));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,40}", name in ".{0,10}", lang in proptest::option::of("[a-zA-Z]{0,3}"), bucket in any::<u8>()) {
            let rules = rules(
                vec![classify("c", vec![icase(cond("message.text", Operator::Contains, &["İ"]))], &[("score", "3"), ("n", &name)])],
                vec![
                    route("a", vec![icase(cond("customer.displayName", Operator::StartsWith, &["x"])), cond("attributes.n", Operator::LessThan, &["1"])], "a"),
                    route("b", vec![icase(cond("customer.language", Operator::Matches, &["^t"]))], "b"),
                    split("s", &[("c", 40), ("d", 60)]),
                ],
            );
            let item = WorkItem { customer_display_name: Some(&name), customer_language: lang.as_deref(), ..item(&text) };
            let out = evaluate(&rules, &item, bucket);
            prop_assert!(out.queue.is_some());
        }
    }
}
