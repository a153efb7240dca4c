//! The gateway's one clock: every worker and handler takes it as a field rather than calling
//! the system clock, so that tests can run them at a fixed time and move it (a day ahead, say).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, from the system or from a test.
#[derive(Clone, Default)]
pub struct Clock {
    /// Set in tests: the time, instead of the system's.
    fixed: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").field("fixed", &self.fixed.as_ref().map(|t| t.load(Ordering::Relaxed))).finish()
    }
}

/// A time in milliseconds since the epoch as RFC 3339, as events and the API show times.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock showing whatever `time` holds.
    pub fn fixed(time: Arc<AtomicI64>) -> Self {
        Self { fixed: Some(time) }
    }

    /// The time now.
    pub fn now_ms(&self) -> i64 {
        match &self.fixed {
            Some(t) => t.load(Ordering::Relaxed),
            None => jiff::Timestamp::now().as_millisecond(),
        }
    }
}
