//! How long the gateway spends routing one work item: rules compiled with `compile_rules`, then
//! `evaluate` timed per message over varied work items.
//!
//! The rule sets are one-fifth classification rules (keywords with Contains and a few regexes on
//! `message.text`, all ignoring case) and four-fifths route-to-queue rules (on
//! `attributes.topic`, `customer.language`, `channel`, a few regexes and splits). Most rules do
//! not match a given message, so evaluation walks far into both stages; a fifth of the messages
//! match nothing at all and walk every rule.
//!
//! Prints, for 100, 1,000 and 10,000 rules, the mean, p50 and p99 per message (each message's
//! fastest of three passes).
//!
//! Run with `cargo bench --bench routing`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use switchboard::api::routing_rule::{Classification, Match, MatchCondition, Operator, Priority, RouteTo, SplitTarget};
use switchboard::config::{RuleConfig, RulesConfig};
use switchboard::routing::evaluate::{WorkItem, compile_rules, evaluate};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const MESSAGES: usize = 20_000;
const RUNS: usize = 3;
const LANGUAGES: [&str; 8] = ["en", "tr", "de", "ja", "EN", "Tr", "en-US", "pt-BR"];
const WORDS: [&str; 24] = [
    "hello", "please", "my", "order", "has", "not", "arrived", "yet", "can", "you", "help", "merhaba", "siparişim", "gelmedi", "danke", "bitte",
    "the", "app", "crashes", "when", "I", "open", "it", "thanks",
];

fn condition(field: &str, operator: Operator, values: &[String], ignore_case: bool) -> MatchCondition {
    MatchCondition { field: field.into(), operator, values: values.to_vec(), ignore_case }
}

fn keyword(rule: usize, n: usize) -> String {
    format!("kw{rule}x{n}")
}

fn rules(total: usize) -> RulesConfig {
    let classification_count = total / 5;
    let classification = (0..classification_count)
        .map(|i| {
            let text = if i % 10 == 9 {
                condition("message.text", Operator::Matches, &[format!(r"\b(case|ticket)\s*#?{i}-\d{{4}}\b")], true)
            } else {
                condition("message.text", Operator::Contains, &[keyword(i, 0), keyword(i, 1), keyword(i, 2)], true)
            };
            let set = Classification {
                attributes: BTreeMap::from([("topic".to_owned(), format!("topic-{i}")), ("score".to_owned(), (i % 10).to_string())]),
                priority: (i % 4 == 0).then_some(Priority::High),
                skills: vec![format!("skill-{}", i % 7)],
            };
            RuleConfig { name: format!("classify-{i}"), generation: 1, order: i as i32, match_: Match { all: vec![text], any: vec![] }, set: Some(set), route_to: None }
        })
        .collect();
    let route_to_queue = (0..total - classification_count)
        .map(|j| {
            let topic = format!("topic-{}", j % classification_count.max(1));
            let mut all = vec![condition("attributes.topic", Operator::Equals, &[topic], false)];
            all.push(condition("customer.language", Operator::In, &[LANGUAGES[j % 4].to_owned(), "az".to_owned()], true));
            if j % 3 == 0 {
                all.push(condition("channel", Operator::Equals, &["WhatsApp".to_owned()], false));
            }
            if j % 50 == 49 {
                all.push(condition("customer.displayName", Operator::Matches, &[r"^(Dr|Prof)\.?\s".to_owned()], true));
            }
            let any = if j % 7 == 0 { vec![condition("attributes.score", Operator::GreaterThan, &["4".to_owned()], false)] } else { vec![] };
            let route_to = if j % 20 == 19 {
                RouteTo { queue: None, split: Some(vec![SplitTarget { queue: format!("q{}a", j % 10), percent: 50 }, SplitTarget { queue: format!("q{}b", j % 10), percent: 50 }]) }
            } else {
                RouteTo { queue: Some(format!("q{}", j % 10)), split: None }
            };
            RuleConfig { name: format!("route-{j}"), generation: 1, order: j as i32, match_: Match { all, any }, set: None, route_to: Some(route_to) }
        })
        .collect();
    RulesConfig { classification, route_to_queue }
}

/// Owned fields of one work item, so that `WorkItem` can borrow them.
struct Message {
    channel: &'static str,
    customer_id: String,
    display_name: Option<String>,
    language: Option<&'static str>,
    text: String,
    known: bool,
}

fn messages(classification_count: usize, rng: &mut fastrand::Rng) -> Vec<Message> {
    (0..MESSAGES)
        .map(|n| {
            let mut words: Vec<String> = (0..rng.usize(8..30)).map(|_| WORDS[rng.usize(..WORDS.len())].to_owned()).collect();
            let rule = rng.usize(..classification_count.max(1));
            let at = rng.usize(..=words.len());
            match rng.u8(..10) {
                // A keyword of some rule, sometimes in capitals.
                0..=5 if rule % 10 != 9 => {
                    let word = keyword(rule, rng.usize(..3));
                    words.insert(at, if rng.bool() { word.to_uppercase() } else { word });
                }
                0..=7 => words.insert(at, format!("Ticket #{rule}-{:04}", rng.u16(..10_000))),
                _ => {}
            }
            Message {
                channel: if rng.bool() { "LINE" } else { "WhatsApp" },
                customer_id: format!("U{n:032x}"),
                display_name: (rng.u8(..10) != 0).then(|| if rng.u8(..10) == 0 { format!("Dr. Ayşe {n}") } else { format!("Customer {n}") }),
                language: (rng.u8(..10) != 0).then(|| LANGUAGES[rng.usize(..LANGUAGES.len())]),
                text: words.join(" "),
                known: rng.bool(),
            }
        })
        .collect()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(7);
    for total in SIZES {
        let config = rules(total);
        let started = Instant::now();
        let compiled = match compile_rules(&config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("routing {total} rules: {e}");
                std::process::exit(1);
            }
        };
        let compile_time = started.elapsed();
        let messages = messages(config.classification.len(), &mut rng);
        let items: Vec<WorkItem<'_>> = messages
            .iter()
            .map(|m| WorkItem {
                channel: m.channel,
                customer_id: &m.customer_id,
                customer_display_name: m.display_name.as_deref(),
                customer_language: m.language,
                customer_phone_number: None,
                customer_is_known: m.known,
                message_text: Some(&m.text),
                message_type: Some("text"),
                within_operating_hours: true,
                context: None,
            })
            .collect();

        // Warm caches and the allocator before timing.
        for (n, item) in items.iter().enumerate() {
            black_box(evaluate(&compiled, item, (n % 100) as u8));
        }
        // Each message's time is its fastest of RUNS passes, so that a pass preempted by another
        // process (a build on the same machine) does not count.
        let mut times = vec![Duration::MAX; items.len()];
        let (mut classified, mut routed) = (0usize, 0usize);
        for _ in 0..RUNS {
            (classified, routed) = (0, 0);
            for (n, item) in items.iter().enumerate() {
                let started = Instant::now();
                let outcome = evaluate(black_box(&compiled), black_box(item), (n % 100) as u8);
                times[n] = times[n].min(started.elapsed());
                classified += usize::from(!outcome.classified_by.is_empty());
                routed += usize::from(outcome.queue.is_some());
                black_box(outcome);
            }
        }
        times.sort_unstable();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        println!(
            "routing {total} rules: mean {:.2} µs/message, p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs ({} messages, {:.0}% classified, {:.0}% routed by a rule; compile {:.1} ms)",
            micros(mean),
            micros(pct(50)),
            micros(pct(99)),
            micros(times[times.len() - 1]),
            times.len(),
            classified as f64 * 100.0 / times.len() as f64,
            routed as f64 * 100.0 / times.len() as f64,
            compile_time.as_secs_f64() * 1e3,
        );
    }
}
