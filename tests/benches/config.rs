//! How long the controller spends on a large account's gateway configuration: one Twilio
//! account with 50 workstreams (one per number) and 5,000, then 10,000 routing rules across both
//! stages.
//!
//! Prints, for each size, the fastest and the median of several runs:
//! (a) compiling every rule's match, which the controller does once per rule generation
//!     (remembered afterwards, so not part of a render);
//! (b) `config::render`;
//! (c) what one render costs the controller: render, `to_compressed` and `hash` (target: under
//!     100 ms at 5,000 rules);
//! and whether the compressed document fits one ConfigMap.
//!
//! Run with `cargo bench --bench config`.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::api::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};
use switchboard::config;
use switchboard::api::field_error::FieldError;
use switchboard::routing::compile::{CompiledMatch, compile_match};

const WORKSTREAMS: usize = 50;
/// Rules per workstream of each measured size.
const SIZES: [usize; 2] = [100, 200];
/// The render target at 5,000 rules.
const RENDER_TARGET: Duration = Duration::from_millis(100);
const QUEUES_PER_WORKSTREAM: usize = 10;
const TEMPLATES: usize = 20;
const RUNS: usize = 15;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value, status: Value) -> Result<K> {
    let document = json!({
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "support", "generation": 1},
        "spec": spec,
        "status": status,
    });
    Ok(serde_json::from_value(document)?)
}

fn account() -> Result<MessagingAccount> {
    let numbers: Vec<Value> = (0..WORKSTREAMS).map(|i| json!({"name": format!("n{i}"), "number": format!("+1415555{i:04}")})).collect();
    let spec = json!({
        "twilioWhatsApp": {
            "accountSid": "AC0123456789abcdef0123456789abcdef",
            "authToken": {"secretKeyRef": {"name": "twilio", "key": "auth-token"}},
            "numbers": numbers,
        },
        "webhook": {"publicBaseUrl": "https://chat.contoso.example"},
        "dataTransfer": {"acknowledged": true},
    });
    object("MessagingAccount", "contoso", spec, json!({}))
}

fn workstream(i: usize) -> Result<Workstream> {
    let queues: Vec<Value> = (0..QUEUES_PER_WORKSTREAM)
        .map(|q| {
            json!({
                "name": format!("q{q}"),
                "priority": q % 3,
                "operatingHours": {"timeZone": "Europe/Istanbul", "weekly": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "09:00", "to": "18:00"}]},
                "overflow": {"maxWaiting": 50, "action": "FallbackQueue"},
            })
        })
        .collect();
    let spec = json!({
        "accountRef": {"name": "contoso"},
        "whatsAppNumber": format!("n{i}"),
        "language": "en-US",
        "distribution": {"mode": "Push", "fallbackQueue": "q0", "autoCloseAfterInactivity": "24h", "wrapUp": "60s"},
        "queues": queues,
        "automatedMessages": [
            {"trigger": "Greeting", "locale": "en-US", "text": "Thanks for writing to Contoso."},
            {"trigger": "QueuePosition", "locale": "en-US", "text": "You are number {Position} in the {QueueName} queue."},
        ],
        "bot": {"url": "http://bot.support.svc/messages", "tokenSecretRef": {"name": format!("bot-{}", i % 5), "key": "token"}},
        "delivery": {
            "url": "http://desk.support.svc/switchboard",
            "signingSecretRef": {"name": "desk", "key": "signing-secret"},
            "agentApiTokenSecretRef": {"name": "desk", "key": "api-token"},
        },
    });
    object("Workstream", &format!("ws-{i:02}"), spec, json!({}))
}

/// A condition per rule, cycling through the operators, with values unique to the rule so that
/// no two regular expressions are the same.
fn condition(w: usize, r: usize) -> Value {
    match r % 6 {
        0 => json!({"field": "message.text", "operator": "Matches", "values": [format!(r"\b(refund|invoice|order)\s*#?{w}{r}\d{{4,}}\b"), format!(r"(?i)^ticket-{r}-[a-z]+$")], "ignoreCase": true}),
        1 => json!({"field": "message.text", "operator": "Contains", "values": [format!("refund-{r}"), "iade", "invoice"], "ignoreCase": true}),
        2 => json!({"field": "customer.language", "operator": "In", "values": ["tr", "tr-TR", format!("x-{r}")]}),
        3 => json!({"field": "customer.phoneNumber", "operator": "StartsWith", "values": [format!("+90{r}")]}),
        4 => json!({"field": format!("attributes.score{r}"), "operator": "GreaterThan", "values": [format!("{r}.5")]}),
        _ => json!({"field": format!("attributes.topic{}", r % 7), "operator": "Equals", "values": ["billing"]}),
    }
}

fn rule(w: usize, r: usize) -> Result<RoutingRule> {
    let mut spec = json!({
        "workstreamRef": {"name": format!("ws-{w:02}")},
        "order": (r * 37) % 1000,
        "match": {"all": [condition(w, r)], "any": [condition(w, r + 1), condition(w, r + 3)]},
    });
    if r.is_multiple_of(2) {
        spec["stage"] = json!("Classification");
        spec["set"] = json!({"attributes": {format!("topic{}", r % 7): "billing"}, "priority": "High", "skills": ["turkish"]});
    } else if r.is_multiple_of(3) {
        spec["stage"] = json!("RouteToQueue");
        spec["routeTo"] = json!({"split": [{"queue": "q1", "percent": 60}, {"queue": "q2", "percent": 40}]});
    } else {
        spec["stage"] = json!("RouteToQueue");
        spec["routeTo"] = json!({"queue": format!("q{}", r % QUEUES_PER_WORKSTREAM)});
    }
    object("RoutingRule", &format!("ws-{w:02}-rule-{r:03}"), spec, json!({}))
}

fn template(i: usize) -> Result<MessageTemplate> {
    let spec = json!({
        "accountRef": {"name": "contoso"},
        "templateName": format!("template_{i}"),
        "category": "Utility",
        "defaultLanguage": "en",
        "localizations": [
            {"language": "en", "body": "Hi {{1}}, your appointment is at {{2}}."},
            {"language": "tr", "body": "Merhaba {{1}}, randevunuz {{2}}."},
        ],
        "sampleValues": {"1": "Ann", "2": "10:00"},
    });
    let status = json!({"localizations": [
        {"language": "en", "contentSid": format!("HX{i:032x}"), "approval": "Approved"},
        {"language": "tr", "contentSid": format!("HX{:032x}", i + 1000), "approval": "Pending"},
    ]});
    object("MessageTemplate", &format!("template-{i:02}"), spec, status)
}

/// Compiles every rule's match, as the controller does before it accepts a rule.
fn compile_all(rules: &[RoutingRule]) -> Result<Vec<CompiledMatch>> {
    let mut compiled = Vec::with_capacity(rules.len());
    for rule in rules {
        let errors = |e: Vec<FieldError>| e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        compiled.push(compile_match(&rule.spec).map_err(errors)?);
    }
    Ok(compiled)
}

/// The fastest and the median of `RUNS` runs of `f`.
fn measure<T>(mut f: impl FnMut() -> Result<T>) -> Result<(Duration, Duration)> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        black_box(f()?);
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[0], times[RUNS / 2]))
}

fn report(step: &str, (min, median): (Duration, Duration)) {
    println!("{step:<34} min {:>9.2} ms   median {:>9.2} ms", min.as_secs_f64() * 1e3, median.as_secs_f64() * 1e3);
}

fn main() -> Result<()> {
    let account = account()?;
    let workstreams = (0..WORKSTREAMS).map(workstream).collect::<Result<Vec<_>>>()?;
    let templates = (0..TEMPLATES).map(template).collect::<Result<Vec<_>>>()?;
    for per_workstream in SIZES {
        let rules = (0..WORKSTREAMS).flat_map(|w| (0..per_workstream).map(move |r| rule(w, r))).collect::<Result<Vec<_>>>()?;
        println!("{WORKSTREAMS} workstreams, {} routing rules, {TEMPLATES} templates; {RUNS} runs each", rules.len());
        report("(a) compile every rule's match", measure(|| compile_all(&rules))?);
        report("(b) render", measure(|| Ok(config::render(&account, &workstreams, &rules, &templates)?))?);
        let whole = measure(|| {
            let rendered = config::render(&account, &workstreams, &rules, &templates)?;
            Ok((rendered.config.to_compressed(), rendered.config.hash()))
        })?;
        report("(c) render + compress + hash", whole);
        if rules.len() == 5_000 {
            let met = if whole.1 <= RENDER_TARGET { "met" } else { "NOT met" };
            println!("    target: median under {} ms at 5,000 rules: {met}", RENDER_TARGET.as_millis());
        }
        let rendered = config::render(&account, &workstreams, &rules, &templates)?;
        let (json, compressed) = (rendered.config.to_json(), rendered.config.to_compressed());
        let fits = if compressed.len() <= config::MAX_COMPRESSED_BYTES { "fits" } else { "does not fit" };
        println!(
            "    JSON {} bytes ({} a rule), compressed {} bytes ({:.1}x); {fits} in one ConfigMap ({} bytes)",
            json.len(),
            json.len() / rules.len(),
            compressed.len(),
            json.len() as f64 / compressed.len() as f64,
            config::MAX_COMPRESSED_BYTES
        );
    }
    Ok(())
}
