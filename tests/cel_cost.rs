//! An upper bound of what each CEL rule of the CRDs costs, computed the way the API server's
//! estimator does when a CRD is created, so that a rule reading an unbounded list, map or string
//! fails here instead of at `kubectl apply` on a cluster that evaluates CEL (1.25 and later).
//!
//! This is an estimate of ours, not the server's: it follows the formulas of cel-go's
//! `checker/cost.go` (a field selection or identifier costs 1, a comparison of strings a tenth of
//! the shorter one's maximum length, a concatenation a tenth of the result's, other calls 1, a list
//! literal 10, a comprehension its range size times the cost of one step), rounding every tenth up
//! and never counting less than the server would. It is stricter than the server in two ways: any
//! string field a rule compares or joins must declare `maxLength` or an enum, and any list or map
//! it iterates must declare `maxItems` or `maxProperties`, even where the server would guess a size
//! from the 3 MiB request limit. Map keys have no schema of their own; a comparison with one is
//! costed by its other side, as the server does.
//!
//! The limits are those apiextensions-apiserver applies when a CRD is created
//! (`k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go`:
//! `StaticEstimatedCostLimit = 10000000` per rule, compared with the rule's cost times the number
//! of places it can apply — the product of `maxItems`/`maxProperties` of the lists and maps around
//! it — and `StaticEstimatedCRDCostLimit = 100000000` for the sum over the CRD). The test keeps a
//! safety margin of 10 below each.

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr, LiteralValue};
use serde_json::Value;
use switchboard::api::crds::Kind;

const PER_RULE_LIMIT: u64 = 10_000_000;
const PER_CRD_LIMIT: u64 = 100_000_000;
const MARGIN: u64 = 10;

/// What the estimator knows of a value: how long a string can be, how many items a list or map
/// can hold, and for objects the schema to select fields from.
#[derive(Clone, Debug)]
enum Ty {
    Str(Size),
    List { items: Option<u64>, elem: Box<Ty>, path: String },
    Map { props: Option<u64>, path: String },
    Object(Value, String),
    Scalar,
}

#[derive(Clone, Copy, Debug)]
enum Size {
    Bounded(u64),
    /// A key of a schema map: the schema cannot bound it.
    MapKey,
    Unbounded,
}

#[derive(Debug)]
struct Estimate {
    cost: u64,
    ty: Ty,
}

fn tenth(n: u64) -> u64 {
    n.div_ceil(10)
}

fn ty_of(schema: &Value, path: &str) -> Ty {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            if let Some(values) = schema.get("enum").and_then(Value::as_array) {
                let longest = values.iter().filter_map(Value::as_str).map(|s| s.chars().count() as u64).max().unwrap_or(0);
                Ty::Str(Size::Bounded(longest))
            } else {
                match schema.get("maxLength").and_then(Value::as_u64) {
                    Some(n) => Ty::Str(Size::Bounded(n)),
                    None => Ty::Str(Size::Unbounded),
                }
            }
        }
        Some("array") => Ty::List {
            items: schema.get("maxItems").and_then(Value::as_u64),
            elem: Box::new(ty_of(&schema["items"], &format!("{path}[]"))),
            path: path.to_owned(),
        },
        Some("object") if schema.get("additionalProperties").is_some_and(Value::is_object) => {
            Ty::Map { props: schema.get("maxProperties").and_then(Value::as_u64), path: path.to_owned() }
        }
        Some("object") => Ty::Object(schema.clone(), path.to_owned()),
        _ => Ty::Scalar,
    }
}

struct Costing<'a> {
    rule: &'a str,
    vars: Vec<(String, Ty)>,
}

impl Costing<'_> {
    fn fail<T>(&self, why: String) -> Result<T, String> {
        Err(format!("rule {:?}: {why}", self.rule))
    }

    fn lookup(&self, name: &str) -> Result<Ty, String> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, ty)) => Ok(ty.clone()),
            None => self.fail(format!("unknown identifier {name}")),
        }
    }

    fn estimate(&mut self, expr: &Expr) -> Result<Estimate, String> {
        match expr {
            Expr::Literal(LiteralValue::String(s)) => Ok(Estimate { cost: 0, ty: Ty::Str(Size::Bounded(s.chars().count() as u64)) }),
            Expr::Literal(_) => Ok(Estimate { cost: 0, ty: Ty::Scalar }),
            Expr::Ident(name) => Ok(Estimate { cost: 1, ty: self.lookup(name)? }),
            Expr::Select(select) => {
                let operand = self.estimate(&select.operand.expr)?;
                let Ty::Object(schema, path) = &operand.ty else {
                    return self.fail(format!("selects .{} from something that is not an object", select.field));
                };
                let Some(field) = schema.get("properties").and_then(|p| p.get(&select.field)) else {
                    return self.fail(format!("{path} has no field {}", select.field));
                };
                let ty = if select.test { Ty::Scalar } else { ty_of(field, &format!("{path}.{}", select.field)) };
                Ok(Estimate { cost: operand.cost + 1, ty })
            }
            Expr::List(list) => {
                let mut cost = 10;
                let mut elem = Ty::Scalar;
                for e in &list.elements {
                    let item = self.estimate(&e.expr)?;
                    cost += item.cost;
                    elem = item.ty;
                }
                Ok(Estimate { cost, ty: Ty::List { items: Some(list.elements.len() as u64), elem: Box::new(elem), path: "a list literal".to_owned() } })
            }
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(comprehension) => self.comprehension(comprehension),
            other => self.fail(format!("the estimator does not know {other:?}; teach it before adding such a rule")),
        }
    }

    fn string_size(&self, size: Size, what: &str) -> Result<u64, String> {
        match size {
            Size::Bounded(n) => Ok(n),
            Size::MapKey | Size::Unbounded => self.fail(format!("{what} reads a string without maxLength")),
        }
    }

    fn call(&mut self, call: &CallExpr) -> Result<Estimate, String> {
        let target = call.target.as_ref().map(|t| self.estimate(&t.expr)).transpose()?;
        let args = call.args.iter().map(|a| self.estimate(&a.expr)).collect::<Result<Vec<_>, _>>()?;
        let operands: u64 = args.iter().map(|a| a.cost).sum::<u64>() + target.as_ref().map_or(0, |t| t.cost);
        let name = call.func_name.as_str();
        match (name, target.as_ref().map(|t| &t.ty), args.as_slice()) {
            ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_", None, [a, b]) => {
                let compared = match (&a.ty, &b.ty) {
                    (Ty::Str(x), Ty::Str(y)) => match (*x, *y) {
                        (Size::Unbounded, _) | (_, Size::Unbounded) | (Size::MapKey, Size::MapKey) => {
                            return self.fail(format!("{name} compares a string without maxLength"));
                        }
                        (Size::Bounded(n), Size::MapKey) | (Size::MapKey, Size::Bounded(n)) => n,
                        (Size::Bounded(n), Size::Bounded(m)) => n.min(m),
                    },
                    (Ty::List { .. } | Ty::Map { .. }, _) | (_, Ty::List { .. } | Ty::Map { .. }) => {
                        return self.fail(format!("{name} compares lists or maps, which the estimator does not cost"));
                    }
                    _ => 1,
                };
                Ok(Estimate { cost: operands + tenth(compared).max(1), ty: Ty::Scalar })
            }
            ("_+_", None, [a, b]) => match (&a.ty, &b.ty) {
                (Ty::Str(x), Ty::Str(y)) => {
                    let joined = self.string_size(*x, "+")? + self.string_size(*y, "+")?;
                    Ok(Estimate { cost: operands + tenth(joined), ty: Ty::Str(Size::Bounded(joined)) })
                }
                (Ty::List { items: Some(n), elem, path }, Ty::List { items: Some(m), .. }) => {
                    Ok(Estimate { cost: operands + 1, ty: Ty::List { items: Some(n + m), elem: elem.clone(), path: path.clone() } })
                }
                _ => Ok(Estimate { cost: operands + 1, ty: Ty::Scalar }),
            },
            ("_&&_" | "_||_" | "!_" | "@not_strictly_false", None, _) => Ok(Estimate { cost: operands + 1, ty: Ty::Scalar }),
            ("_?_:_", None, [_, a, _]) => Ok(Estimate { cost: operands + 1, ty: a.ty.clone() }),
            // string(x) of a number: at most 20 digits and a sign.
            ("string", None, [a]) if matches!(a.ty, Ty::Scalar) => Ok(Estimate { cost: operands + 1, ty: Ty::Str(Size::Bounded(21)) }),
            ("size", Some(_), []) => Ok(Estimate { cost: operands + 1, ty: Ty::Scalar }),
            // Kubernetes' list library: sum() walks the list once.
            ("sum", Some(Ty::List { items, path, .. }), []) => match items {
                Some(n) => Ok(Estimate { cost: operands + n + 1, ty: Ty::Scalar }),
                None => self.fail(format!("sum() over {path}, a list without maxItems")),
            },
            _ => self.fail(format!("the estimator does not know the function {name}; teach it before adding such a rule")),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<Estimate, String> {
        let range = self.estimate(&c.iter_range.expr)?;
        let (count, iter_ty) = match &range.ty {
            Ty::List { items: Some(n), elem, .. } => (*n, (**elem).clone()),
            Ty::Map { props: Some(n), .. } => (*n, Ty::Str(Size::MapKey)),
            Ty::List { items: None, path, .. } => return self.fail(format!("iterates {path}, a list without maxItems")),
            Ty::Map { props: None, path, .. } => return self.fail(format!("iterates {path}, a map without maxProperties")),
            _ => return self.fail("iterates something that is neither a list nor a map".to_owned()),
        };
        let init = self.estimate(&c.accu_init.expr)?;
        // A map() accumulates one item per step; an all()/exists() a boolean.
        let accu_ty = match init.ty {
            Ty::List { elem, path, .. } => Ty::List { items: Some(count), elem, path },
            other => other,
        };
        self.vars.push((c.accu_var.clone(), accu_ty.clone()));
        self.vars.push((c.iter_var.clone(), iter_ty));
        let cond = self.estimate(&c.loop_cond.expr)?;
        let step = self.estimate(&c.loop_step.expr)?;
        self.vars.pop();
        let result = self.estimate(&c.result.expr)?;
        self.vars.pop();
        let accu_ty = match (accu_ty, step.ty) {
            (Ty::List { items, path, .. }, Ty::List { elem, .. }) => Ty::List { items, elem, path },
            (ty, _) => ty,
        };
        let ty = if matches!(result.ty, Ty::List { .. }) { accu_ty } else { result.ty };
        Ok(Estimate { cost: range.cost + init.cost + result.cost + count * (cond.cost + step.cost), ty })
    }
}

/// One rule found in a schema: where it sits, how often it can apply, and its own cost.
#[derive(Debug)]
struct Costed {
    location: String,
    expression: String,
    cardinality: u64,
    cost: u64,
}

fn cost_expression(expression: &str, self_ty: &Ty) -> Result<u64, String> {
    let parsed = cel::parser::Parser::new().parse(expression).map_err(|e| format!("rule {expression:?} does not parse: {e}"))?;
    let mut costing = Costing { rule: expression, vars: vec![("self".to_owned(), self_ty.clone()), ("oldSelf".to_owned(), self_ty.clone())] };
    Ok(costing.estimate(&parsed.expr)?.cost)
}

/// Walks a schema and costs every `x-kubernetes-validations` rule and `messageExpression` in it.
fn walk(schema: &Value, path: &str, cardinality: Option<u64>, out: &mut Vec<Result<Costed, String>>) {
    let self_ty = ty_of(schema, path);
    for rule in schema.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
        let expressions = ["rule", "messageExpression"].into_iter().filter_map(|k| rule.get(k).and_then(Value::as_str));
        for expression in expressions {
            let costed = match cardinality {
                None => Err(format!("{path}: rule {expression:?} sits inside a list or map without a bound")),
                Some(cardinality) => cost_expression(expression, &self_ty)
                    .map(|cost| Costed { location: path.to_owned(), expression: expression.to_owned(), cardinality, cost })
                    .map_err(|e| format!("{path}: {e}")),
            };
            out.push(costed);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            walk(prop, &format!("{path}.{name}"), cardinality, out);
        }
    }
    if let Some(items) = schema.get("items") {
        let inner = cardinality.zip(schema.get("maxItems").and_then(Value::as_u64)).map(|(a, b)| a * b);
        walk(items, &format!("{path}[]"), inner, out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        let inner = cardinality.zip(schema.get("maxProperties").and_then(Value::as_u64)).map(|(a, b)| a * b);
        walk(values, &format!("{path}.*"), inner, out);
    }
}

fn costs(schema: &Value) -> Vec<Result<Costed, String>> {
    let mut out = Vec::new();
    walk(schema, "", Some(1), &mut out);
    out
}

#[test]
fn every_rule_of_every_crd_fits_the_api_servers_cost_budget() {
    let mut problems = Vec::new();
    for kind in Kind::ALL {
        let mut total = 0u64;
        for costed in costs(&kind.schema()) {
            match costed {
                Ok(c) => {
                    let applied = c.cost * c.cardinality;
                    println!("{:<16} {:<40} cost {:>6} x {:>6} places = {:>9}  {}", kind.name(), c.location, c.cost, c.cardinality, applied, c.expression);
                    if applied * MARGIN > PER_RULE_LIMIT {
                        problems.push(format!("{}: {}: estimated {applied} is within {MARGIN}x of the per-rule limit {PER_RULE_LIMIT}", kind.name(), c.location));
                    }
                    total += applied;
                }
                Err(e) => problems.push(format!("{}: {e}", kind.name())),
            }
        }
        println!("{:<16} total estimated cost {total} (limit {PER_CRD_LIMIT}, margin {MARGIN}x)", kind.name());
        if total * MARGIN > PER_CRD_LIMIT {
            problems.push(format!("{}: estimated total {total} is within {MARGIN}x of the per-CRD limit {PER_CRD_LIMIT}", kind.name()));
        }
    }
    assert!(problems.is_empty(), "CEL cost estimate (ours, not the API server's):\n{}", problems.join("\n"));
}

#[test]
fn every_crd_has_rules_to_cost() {
    for kind in Kind::ALL {
        assert!(!costs(&kind.schema()).is_empty(), "{} has no CEL rule: is the walk still finding them?", kind.name());
    }
}

fn schema(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn an_unbounded_map_is_refused() {
    // The shape MessageTemplate.spec.adopt had before it had maxProperties.
    let s = schema(
        r#"
type: object
x-kubernetes-validations:
- rule: "self.adopt.all(k, self.localizations.exists(l, l.language == k))"
properties:
  adopt: {type: object, additionalProperties: {type: string}}
  localizations:
    type: array
    maxItems: 50
    items: {type: object, properties: {language: {type: string, maxLength: 35}}}
"#,
    );
    let out = costs(&s);
    let err = out[0].as_ref().unwrap_err();
    assert!(err.contains(".adopt, a map without maxProperties"), "{err}");
}

#[test]
fn bounded_iterations_multiply_and_compare_by_the_shorter_string() {
    let s = schema(
        r#"
type: object
x-kubernetes-validations:
- rule: "self.adopt.all(k, self.localizations.exists(l, l.language == k))"
properties:
  adopt: {type: object, maxProperties: 4, additionalProperties: {type: string}}
  localizations:
    type: array
    maxItems: 3
    items: {type: object, properties: {language: {type: string, maxLength: 35}}}
"#,
    );
    let c = costs(&s).pop().unwrap().unwrap();
    // exists: range `self.localizations` 2, accu init 0, result 1, 3 steps of
    // (cond: !@result 1+1+1 = 3; step: @result 1 + l 1 + .language 1 + k 1 + compare ceil(35/10) = 4, || 1 = 9) = 36 → 39.
    // all: range `self.adopt` 2, init 0, result 1, 4 steps of (cond: @result 1 + 1 = 2; step: @result 1 + 39 + && 1 = 41) = 172 → 175.
    assert_eq!(c.cost, 175);
    assert_eq!(c.cardinality, 1);
}

#[test]
fn a_rule_inside_lists_counts_once_per_possible_item() {
    let s = schema(
        r#"
type: object
properties:
  queues:
    type: array
    maxItems: 100
    items:
      type: object
      properties:
        weekly:
          type: array
          maxItems: 7
          items:
            type: object
            x-kubernetes-validations:
            - rule: "self.to == '24:00' || self.from < self.to"
            properties:
              from: {type: string, maxLength: 5}
              to: {type: string, maxLength: 5}
"#,
    );
    let c = costs(&s).pop().unwrap().unwrap();
    assert_eq!(c.cardinality, 700);
    // self.to 2 + compare 1 → 3; self.from 2 + self.to 2 + compare 1 → 5; || 1 → 9.
    assert_eq!(c.cost, 9);
}

#[test]
fn unbounded_strings_and_lists_around_a_rule_are_refused() {
    let compared = schema(
        r#"
type: object
x-kubernetes-validations: [{rule: "self.a == self.b"}]
properties: {a: {type: string}, b: {type: string, maxLength: 3}}
"#,
    );
    assert!(costs(&compared)[0].as_ref().unwrap_err().contains("without maxLength"));
    let inside = schema(
        r#"
type: object
properties:
  items:
    type: array
    items: {type: object, x-kubernetes-validations: [{rule: "has(self.x)"}], properties: {x: {type: string}}}
"#,
    );
    assert!(costs(&inside)[0].as_ref().unwrap_err().contains("inside a list or map without a bound"));
}

#[test]
fn an_unknown_function_is_refused_rather_than_guessed() {
    let s = schema(
        r#"
type: object
x-kubernetes-validations: [{rule: "self.a.matches('^x+$')"}]
properties: {a: {type: string, maxLength: 3}}
"#,
    );
    assert!(costs(&s)[0].as_ref().unwrap_err().contains("does not know the function matches"));
}
