//! The desk down for a while: the gateway backs off desk-wide instead of hammering it, and
//! delivers everything, in order per conversation, once it is back.

use std::time::{Duration, Instant};

use crate::desk::Mode;
use crate::harness::{Bed, Provider, line_channel, line_user, run_concurrently, workstream};

const CUSTOMERS: usize = 20;
const PER_CUSTOMER: usize = 10;
const OUTAGE: Duration = Duration::from_secs(6);
/// A new customer turns up this often during the outage.
const ARRIVAL: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_outage_is_backed_off_and_everything_arrives_in_order_afterwards() {
    let started = Instant::now();
    let mut bed = Bed::new(Provider::Line, &["--retry-min", "200ms", "--retry-max", "2s"]).await;
    let ws = workstream("support-line", line_channel(), &bed.desk.url(), &["general"], None, vec![]);
    bed.start(&bed.config(vec![ws])).await;

    bed.desk.set_mode(Mode::Down);
    let outage_start = Instant::now();
    // Customers turn up one every 200 ms, throughout the outage, and each writes their
    // messages one after another.
    let bed_ref = &bed;
    let statuses = run_concurrently(CUSTOMERS, CUSTOMERS, |c| async move {
        tokio::time::sleep(ARRIVAL * c as u32).await;
        let mut statuses = Vec::new();
        for m in 0..PER_CUSTOMER {
            let answer = bed_ref.line_text(&line_user(c), &format!("Customer {c}"), &format!("c{c} m{m}")).await;
            statuses.push(answer["delivery"]["statusCode"].as_u64());
        }
        statuses
    })
    .await;
    let sent_in = outage_start.elapsed();
    assert!(statuses.iter().flatten().all(|s| *s == Some(200)), "every webhook is taken while the desk is down: {statuses:?}");
    assert!(sent_in < OUTAGE, "the {} webhooks took {sent_in:?}, longer than the outage", CUSTOMERS * PER_CUSTOMER);
    tokio::time::sleep(OUTAGE.saturating_sub(outage_start.elapsed())).await;
    let outage = outage_start.elapsed();
    let during: Vec<_> = bed.desk.attempts();
    bed.desk.set_mode(Mode::Up);
    let recovered = Instant::now();

    // The bound. The README: when a desk fails, all its events wait for a doubling delay (here
    // from --retry-min 200 ms, capped at --retry-max 2 s), so a desk that is down gets a probe per
    // delay, not a flood. From the first failure, probes are then due at 0, 0.2, 0.6, 1.4, 3.0 and
    // 5.0 s: six in a 6 s outage, eight with slack for timing ("bursts" below: attempts less than
    // 100 ms apart count as one). Counting attempts: eight probes, plus up to one first attempt
    // per conversation if a new conversation's first event were tried once as it arrives before
    // joining the wait (20), stays under 8 + 20 = 28; 40 leaves room for jitter. Retrying every
    // conversation at each delay instead gives some 20 per burst, and trying each new
    // conversation at once while the desk is known to be down gives a burst per arrival.
    let refused = during.iter().filter(|r| r.status == 503).count();
    let mut bursts: Vec<(u128, usize)> = Vec::new();
    for r in &during {
        let at = r.at.duration_since(outage_start).as_millis();
        match bursts.last_mut() {
            Some((first, n)) if at - *first < 100 => *n += 1,
            _ => bursts.push((at, 1)),
        }
    }
    let outage = outage.as_secs_f64();
    eprintln!("desk outage: {refused} attempts in {outage:.1} s, in {} bursts (ms from the outage's start, attempts): {bursts:?}", bursts.len());

    // Once the desk is back, every event arrives (the next probe is at most 2 s away).
    let expected = CUSTOMERS * PER_CUSTOMER;
    bed.desk.wait_messages(expected, Duration::from_secs(30)).await;
    let caught_up = recovered.elapsed();
    eprintln!("desk outage: all {expected} messages delivered {:.1} s after the desk recovered", caught_up.as_secs_f64());
    let conversations = bed.desk.by_conversation();
    assert_eq!(conversations.len(), CUSTOMERS);
    for (id, events) in &conversations {
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence()).collect();
        assert_eq!(sequences, (1..=(PER_CUSTOMER as i64 + 1)).collect::<Vec<_>>(), "conversation {id} arrived in order without gaps");
        let customer = events[0].body["conversation"]["customer"]["displayName"].as_str().unwrap().trim_start_matches("Customer ").to_owned();
        let texts: Vec<&str> = events[1..].iter().map(|e| e.text().unwrap()).collect();
        let written: Vec<String> = (0..PER_CUSTOMER).map(|m| format!("c{customer} m{m}")).collect();
        assert_eq!(texts, written, "the customer's messages in the order written");
    }
    assert!(caught_up < Duration::from_secs(10), "caught up only {caught_up:?} after the desk recovered");
    assert!(refused > 0, "the desk was tried during the outage");
    let n = bursts.len();
    assert!(n <= 8, "{n} bursts of attempts during a {outage:.1} s outage, at most 8 expected: the desk-wide delay is not kept ({bursts:?})");
    assert!(refused < 40, "{refused} attempts during a {outage:.1} s outage, fewer than 40 expected: no desk-wide backoff ({bursts:?})");
    eprintln!("a_desk_outage_is_backed_off_and_everything_arrives_in_order_afterwards: {:.1} s", started.elapsed().as_secs_f64());
    bed.finish().await;
}
