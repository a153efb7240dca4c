//! The gateway's one clock: every worker and handler takes it as a field rather than calling
//! the system clock, so that tests can run them at a fixed time and move it (a day ahead, say).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch: the system's, a test's, or the system's moved ahead (the
/// local demo's development clock).
#[derive(Clone, Default)]
pub struct Clock {
    source: Source,
}

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    /// A test's: the time itself.
    Fixed(Arc<AtomicI64>),
    /// The system's plus this many ms.
    Ahead(Arc<AtomicI64>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::System => f.write_str("Clock(system)"),
            Source::Fixed(t) => write!(f, "Clock(fixed at {})", t.load(Ordering::Relaxed)),
            Source::Ahead(by) => write!(f, "Clock(system + {} ms)", by.load(Ordering::Relaxed)),
        }
    }
}

/// A time in milliseconds since the epoch as RFC 3339, as events and the API show times.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { source: Source::System }
    }

    /// A clock showing whatever `time` holds.
    pub fn fixed(time: Arc<AtomicI64>) -> Self {
        Self { source: Source::Fixed(time) }
    }

    /// The system clock moved ahead by whatever `offset` holds (ms).
    pub fn ahead(offset: Arc<AtomicI64>) -> Self {
        Self { source: Source::Ahead(offset) }
    }

    /// The time now.
    pub fn now_ms(&self) -> i64 {
        match &self.source {
            Source::System => jiff::Timestamp::now().as_millisecond(),
            Source::Fixed(t) => t.load(Ordering::Relaxed),
            Source::Ahead(by) => jiff::Timestamp::now().as_millisecond().saturating_add(by.load(Ordering::Relaxed)),
        }
    }

    /// The time another party checks against its own clock (a delivery's signature timestamp,
    /// which a receiver refuses when it is far off): the development clock's offset is left
    /// out, a test's fixed time is not.
    pub fn wall_ms(&self) -> i64 {
        match &self.source {
            Source::Ahead(_) => Clock::system().now_ms(),
            Source::System | Source::Fixed(_) => self.now_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_ahead_is_the_system_clock_plus_its_offset() {
        let offset = Arc::new(AtomicI64::new(0));
        let (clock, system) = (Clock::ahead(Arc::clone(&offset)), Clock::system());
        assert!((clock.now_ms() - system.now_ms()).abs() < 1_000);
        offset.store(25 * 3_600_000, Ordering::Relaxed);
        let ahead = clock.now_ms() - system.now_ms();
        assert!((25 * 3_600_000 - 1_000..=25 * 3_600_000 + 1_000).contains(&ahead), "{ahead}");
        assert_eq!(format!("{clock:?}"), "Clock(system + 90000000 ms)");
        assert!((clock.wall_ms() - system.now_ms()).abs() < 1_000, "the wall time is the system's");
        let fixed = Clock::fixed(Arc::new(AtomicI64::new(5)));
        assert_eq!((fixed.now_ms(), fixed.wall_ms()), (5, 5));
    }
}
