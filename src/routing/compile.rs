//! Turns a RoutingRule spec into a checked, ready-to-run form. Every error a rule can have is
//! found here, once, so that evaluation never fails at run time.

use regex::{Regex, RegexBuilder};
use thiserror::Error;

use crate::api::routing_rule::{MatchCondition, Operator, RoutingRuleSpec};
use crate::api::field_error::FieldError;

/// Compiled regular expressions are bounded so that a rule cannot make the gateway slow.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A work item field a condition can test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// LINE or WhatsApp.
    Channel,
    /// The customer's provider ID.
    CustomerId,
    /// The customer's display name.
    CustomerDisplayName,
    /// The customer's language.
    CustomerLanguage,
    /// The customer's phone number (WhatsApp).
    CustomerPhoneNumber,
    /// Whether the customer wrote before.
    CustomerIsKnown,
    /// The first message's text.
    MessageText,
    /// The first message's type (text, image, ...).
    MessageType,
    /// An attribute set by an earlier classification rule.
    Attribute(String),
    /// Whether the time is within the operating hours of the workstream's queues.
    WithinOperatingHours,
}

/// Why a field name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown field {0:?}")]
pub struct UnknownField(String);

impl std::str::FromStr for Field {
    type Err = UnknownField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "channel" => Field::Channel,
            "customer.id" => Field::CustomerId,
            "customer.displayName" => Field::CustomerDisplayName,
            "customer.language" => Field::CustomerLanguage,
            "customer.phoneNumber" => Field::CustomerPhoneNumber,
            "customer.isKnown" => Field::CustomerIsKnown,
            "message.text" => Field::MessageText,
            "message.type" => Field::MessageType,
            "time.withinOperatingHours" => Field::WithinOperatingHours,
            _ => match s.strip_prefix("attributes.") {
                Some(name) if !name.is_empty() => Field::Attribute(name.to_owned()),
                _ => return Err(UnknownField(s.to_owned())),
            },
        })
    }
}

impl Field {
    fn is_boolean(&self) -> bool {
        matches!(self, Field::CustomerIsKnown | Field::WithinOperatingHours)
    }
}

/// The comparison a compiled condition makes.
#[derive(Clone, Debug)]
pub enum Test {
    /// Equal to one of the values.
    Equals(Vec<String>),
    /// Equal to none of the values.
    NotEquals(Vec<String>),
    /// Same as Equals; kept apart for readable configurations.
    In(Vec<String>),
    /// Same as NotEquals.
    NotIn(Vec<String>),
    /// Contains one of the values.
    Contains(Vec<String>),
    /// Starts with one of the values.
    StartsWith(Vec<String>),
    /// Matches one of the regular expressions.
    Matches(Vec<Regex>),
    /// The field has a value.
    Exists,
    /// The field has no value.
    NotExists,
    /// Numerically greater than the value.
    GreaterThan(f64),
    /// Numerically less than the value.
    LessThan(f64),
}

/// A condition ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledCondition {
    /// The tested field.
    pub field: Field,
    /// The comparison.
    pub test: Test,
    /// Whether text comparisons ignore case (values are already lower-cased then).
    pub ignore_case: bool,
}

/// The conditions of a rule, compiled.
#[derive(Clone, Debug, Default)]
pub struct CompiledMatch {
    /// All of these must hold.
    pub all: Vec<CompiledCondition>,
    /// When not empty, one of these must hold too.
    pub any: Vec<CompiledCondition>,
}

/// Compiles a rule's conditions; errors name the field path under `spec.match`.
pub fn compile_match(spec: &RoutingRuleSpec) -> Result<CompiledMatch, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut compile_list = |list: &[MatchCondition], name: &str| -> Vec<CompiledCondition> {
        list.iter()
            .enumerate()
            .filter_map(|(i, c)| {
                compile_condition(c).map_err(|e| errors.push(FieldError::new(format!("spec.match.{name}[{i}]{}", e.0), e.1))).ok()
            })
            .collect()
    };
    let all = compile_list(&spec.match_.all, "all");
    let any = compile_list(&spec.match_.any, "any");
    if errors.is_empty() { Ok(CompiledMatch { all, any }) } else { Err(errors) }
}

/// An error inside one condition: the path suffix below the condition, and the message.
type ConditionError = (String, String);

fn compile_condition(c: &MatchCondition) -> Result<CompiledCondition, ConditionError> {
    let field: Field = c.field.parse().map_err(|e: UnknownField| (".field".to_owned(), e.to_string()))?;
    let values_error = |msg: String| (".values".to_owned(), msg);
    let op = c.operator;
    let needs = |n: usize, exact: bool| -> Result<(), ConditionError> {
        let ok = if exact { c.values.len() == n } else { c.values.len() >= n };
        if ok {
            Ok(())
        } else if n == 0 {
            Err(values_error(format!("{op:?} takes no values")))
        } else if exact {
            Err(values_error(format!("{op:?} takes exactly {n} value")))
        } else {
            Err(values_error(format!("{op:?} needs at least {n} value")))
        }
    };
    if field.is_boolean() {
        match op {
            Operator::Equals | Operator::NotEquals => {
                needs(1, true)?;
                if c.values[0] != "true" && c.values[0] != "false" {
                    return Err(values_error(format!("{} is true or false, not {:?}", c.field, c.values[0])));
                }
            }
            Operator::Exists | Operator::NotExists => {}
            _ => return Err((".operator".to_owned(), format!("{op:?} cannot test the boolean field {}", c.field))),
        }
    }
    let folded = || -> Vec<String> {
        c.values.iter().map(|v| if c.ignore_case { v.to_lowercase() } else { v.clone() }).collect()
    };
    let number = || -> Result<f64, ConditionError> {
        needs(1, true)?;
        c.values[0].trim().parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| values_error(format!("{op:?} needs a number, not {:?}", c.values[0])))
    };
    let test = match op {
        Operator::Exists => needs(0, true).map(|_| Test::Exists)?,
        Operator::NotExists => needs(0, true).map(|_| Test::NotExists)?,
        Operator::Equals => needs(1, false).map(|_| Test::Equals(folded()))?,
        Operator::NotEquals => needs(1, false).map(|_| Test::NotEquals(folded()))?,
        Operator::In => needs(1, false).map(|_| Test::In(folded()))?,
        Operator::NotIn => needs(1, false).map(|_| Test::NotIn(folded()))?,
        Operator::Contains => needs(1, false).map(|_| Test::Contains(folded()))?,
        Operator::StartsWith => needs(1, false).map(|_| Test::StartsWith(folded()))?,
        Operator::GreaterThan => Test::GreaterThan(number()?),
        Operator::LessThan => Test::LessThan(number()?),
        Operator::Matches => {
            needs(1, false)?;
            let regexes = c
                .values
                .iter()
                .enumerate()
                .map(|(i, pattern)| {
                    RegexBuilder::new(pattern)
                        .case_insensitive(c.ignore_case)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| (format!(".values[{i}]"), format!("invalid regular expression: {}", first_line(&e.to_string()))))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Test::Matches(regexes)
        }
    };
    Ok(CompiledCondition { field, test, ignore_case: c.ignore_case })
}

/// The regex crate's messages span several lines with a caret diagram; one line is enough for a
/// condition message and a `check` report.
fn first_line(message: &str) -> String {
    let line = message.lines().rfind(|l| l.starts_with("error:")).unwrap_or_else(|| message.lines().next().unwrap_or(message));
    line.trim_start_matches("error:").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routing_rule::Match;

    fn rule(conditions: Vec<MatchCondition>) -> RoutingRuleSpec {
        RoutingRuleSpec { match_: Match { all: conditions, any: vec![] }, ..Default::default() }
    }

    fn cond(field: &str, operator: Operator, values: &[&str]) -> MatchCondition {
        MatchCondition { field: field.into(), operator, values: values.iter().map(|v| v.to_string()).collect(), ignore_case: false }
    }

    fn errors(spec: &RoutingRuleSpec) -> Vec<String> {
        compile_match(spec).err().unwrap_or_default().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn invalid_regex_names_the_value() {
        let e = errors(&rule(vec![cond("message.text", Operator::Matches, &["ok", "(unclosed"])]));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec.match.all[0].values[1]: invalid regular expression: "), "{e:?}");
    }

    #[test]
    fn unknown_field_and_wrong_arity_are_refused() {
        assert_eq!(errors(&rule(vec![cond("customer.shoeSize", Operator::Equals, &["42"])])), vec![
            "spec.match.all[0].field: unknown field \"customer.shoeSize\""
        ]);
        assert_eq!(errors(&rule(vec![cond("message.text", Operator::Exists, &["x"])])), vec![
            "spec.match.all[0].values: Exists takes no values"
        ]);
        assert_eq!(errors(&rule(vec![cond("attributes.score", Operator::GreaterThan, &["high"])])), vec![
            "spec.match.all[0].values: GreaterThan needs a number, not \"high\""
        ]);
        assert_eq!(errors(&rule(vec![cond("customer.isKnown", Operator::Contains, &["t"])])), vec![
            "spec.match.all[0].operator: Contains cannot test the boolean field customer.isKnown"
        ]);
    }

    #[test]
    fn valid_rules_compile_and_fold_case() {
        let mut c = cond("message.text", Operator::Contains, &["Refund", "İade"]);
        c.ignore_case = true;
        let compiled = compile_match(&rule(vec![c, cond("attributes.topic", Operator::Exists, &[])])).unwrap();
        match &compiled.all[0].test {
            Test::Contains(v) => assert_eq!(v, &vec!["refund".to_owned(), "i̇ade".to_owned()]),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(compiled.all[1].field, Field::Attribute("topic".into()));
    }
}
