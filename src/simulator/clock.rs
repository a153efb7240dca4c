//! Wall-clock time and the date formats the providers use.

use std::time::Duration;

use jiff::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Time elapsed since `then` (zero when `then` is in the future).
pub fn since(then: Timestamp) -> Duration {
    Duration::try_from(now().duration_since(then)).unwrap_or(Duration::ZERO)
}

/// The time `ago` before now, saturating at the earliest representable time.
pub fn before_now(ago: Duration) -> Timestamp {
    let ago = jiff::SignedDuration::try_from(ago).unwrap_or(jiff::SignedDuration::MAX);
    now().checked_sub(ago).unwrap_or(Timestamp::MIN)
}

/// The time `later` after now, saturating at the latest representable time.
pub fn after_now(later: Duration) -> Timestamp {
    let later = jiff::SignedDuration::try_from(later).unwrap_or(jiff::SignedDuration::MAX);
    now().checked_add(later).unwrap_or(Timestamp::MAX)
}

/// RFC 2822 in GMT, as Twilio's 2010 API writes dates: `Thu, 30 Jul 2015 20:12:31 +0000`.
pub fn rfc2822(at: Timestamp) -> String {
    at.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// RFC 3339 in UTC to the second, as Twilio's newer APIs write dates: `2015-07-30T20:12:31Z`.
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 in UTC to the millisecond, as LINE writes them: `2020-09-30T05:38:20.031Z`.
pub fn rfc3339_millis(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Milliseconds since the epoch, as LINE's event timestamps.
pub fn millis(at: Timestamp) -> i64 {
    at.as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let at: Timestamp = "2015-07-30T20:12:31.031Z".parse().expect("a timestamp");
        assert_eq!(rfc2822(at), "Thu, 30 Jul 2015 20:12:31 +0000");
        assert_eq!(rfc3339(at), "2015-07-30T20:12:31Z");
        assert_eq!(rfc3339_millis(at), "2015-07-30T20:12:31.031Z");
        assert_eq!(millis(at), 1_438_287_151_031);
    }
}
