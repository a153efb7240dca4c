//! Retry timing: per-object exponential backoff after failures (capped, jittered, reset on
//! success), and jitter for periodic re-checks so that objects created together do not call
//! the provider together.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// Bounds of the exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first): `min`·2^(failures−1),
    /// capped at `max`, scaled by `jitter` (clamped to [0.5, 1]).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let raw = self.min.saturating_mul(1u32 << doublings).min(self.max);
        raw.mul_f64(jitter.clamp(0.5, 1.0))
    }

    /// The delay before attempt `attempts + 1` of a queued item: doubling from `min`, capped,
    /// without jitter (the retries of one gateway are few).
    pub fn after_attempts(&self, attempts: u32) -> Duration {
        self.delay(attempts.saturating_add(1), 1.0)
    }
}

/// Consecutive failures per object, keyed by a string that names it.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts one more failure of `key` and returns the count.
    pub fn failed(&self, key: &str) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// The consecutive failures of `key` so far (0 after a success).
    pub fn count(&self, key: &str) -> u32 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or_default()
    }

    /// The keys with at least one failure: the objects waiting for a retry. Deleted objects may
    /// linger here (nothing reconciles them again), so callers match these against their stores.
    pub fn failing(&self) -> HashSet<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}

/// `interval` scaled by a random factor in [0.9, 1.1].
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff { min: Duration::from_secs(5), max: Duration::from_secs(300) };

    #[test]
    fn doubles_from_min_and_stops_at_max() {
        assert_eq!(BACKOFF.delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(BACKOFF.delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(BACKOFF.delay(4, 1.0), Duration::from_secs(40));
        assert_eq!(BACKOFF.delay(7, 1.0), Duration::from_secs(300));
        assert_eq!(BACKOFF.delay(u32::MAX, 1.0), Duration::from_secs(300));
    }

    #[test]
    fn retries_after_attempts_double_and_are_capped() {
        let b = Backoff { min: Duration::from_secs(1), max: Duration::from_secs(60) };
        assert_eq!(b.after_attempts(0), Duration::from_secs(1));
        assert_eq!(b.after_attempts(3), Duration::from_secs(8));
        assert_eq!(b.after_attempts(10), Duration::from_secs(60));
        assert_eq!(b.after_attempts(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_is_clamped_to_half_or_more() {
        assert_eq!(BACKOFF.delay(2, 0.5), Duration::from_secs(5));
        assert_eq!(BACKOFF.delay(2, 0.0), Duration::from_secs(5));
        assert_eq!(BACKOFF.delay(2, 7.0), Duration::from_secs(10));
    }

    #[test]
    fn failures_count_up_and_reset() {
        let failures = Failures::default();
        assert_eq!(failures.failed("a"), 1);
        assert_eq!(failures.failed("a"), 2);
        assert_eq!(failures.failed("b"), 1);
        assert_eq!(failures.count("a"), 2);
        assert_eq!(failures.failing(), HashSet::from(["a".to_owned(), "b".to_owned()]));
        failures.succeeded("a");
        assert_eq!(failures.count("a"), 0);
        assert_eq!(failures.failing(), HashSet::from(["b".to_owned()]));
        assert_eq!(failures.failed("a"), 1);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110), "{d:?}");
        }
    }
}
