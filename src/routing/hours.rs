//! Queue operating hours, compiled once from a Workstream's `operatingHours` and then asked, per
//! work item, whether the queue is open at a given instant.
//!
//! Rules (the same for every window):
//! - Times are civil (wall-clock) times in the queue's time zone. When daylight saving time
//!   starts or ends the window follows the clock on the wall: a 09:00–18:00 window opens at
//!   09:00 local time on both sides of the change. Local times skipped by a spring-forward gap
//!   never occur, so a window lying entirely inside the gap is not open that day; local times
//!   repeated by a fall-back are inside a window both times.
//! - A window opens at `from` (inclusive) on each of its days and closes at the next `to`
//!   (exclusive) that follows on the clock; `24:00` is the midnight that ends the day.
//!   - `from < to`: open that day from `from` until `to`, e.g. Mon 09:00–18:00.
//!   - `to < from`: the window runs past midnight into the next day, e.g. Fri 22:00–06:00 is
//!     open from Friday 22:00 until Saturday 06:00. Only the day it opens has to be listed.
//!   - `from == to`: open for 24 hours starting at `from`, e.g. Mon 08:00–08:00 is open from
//!     Monday 08:00 until Tuesday 08:00 (and Mon 00:00–00:00 is all of Monday).
//! - The queue is open when any window is. A queue without operating hours is always open; an
//!   `operatingHours` without windows never is.
//!
//! The Workstream CRD (a CEL rule) currently only admits `from < to` or `to == 24:00`; the
//! overnight and 24-hour forms are defined here so that the API can admit them later without a
//! second implementation.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use thiserror::Error;

use crate::api::workstream::{OperatingHours, Weekday};

const MINUTES_PER_DAY: u16 = 24 * 60;

/// Why operating hours did not compile. The controller refuses these already (schema pattern
/// and time zone check), so at run time this only guards against a hand-edited configuration.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HoursError {
    /// The time zone is not in the time zone database.
    #[error("operatingHours.timeZone: unknown time zone {0:?}")]
    UnknownTimeZone(String),
    /// A `from` or `to` is not a time of day.
    #[error("operatingHours.weekly[{window}].{field}: {value:?} is not a time of day as HH:MM{}", if *field == "to" { " (or 24:00)" } else { "" })]
    BadTime {
        /// Index of the window in `weekly`.
        window: usize,
        /// `from` or `to`.
        field: &'static str,
        /// The text as written.
        value: String,
    },
}

/// Operating hours ready to query: the zone, and for each day of the week the minute ranges
/// (local time, `[start, end)`) during which the queue is open.
#[derive(Clone, Debug)]
pub struct CompiledHours {
    zone: TimeZone,
    /// Indexed Monday = 0. Overnight windows are split at compile time into a range on the
    /// opening day and one on the next, so that a query only looks at the current day.
    days: [Vec<(u16, u16)>; 7],
}

/// Compiles operating hours: looks the time zone up once and turns the windows into minutes.
pub fn compile(hours: &OperatingHours) -> Result<CompiledHours, HoursError> {
    let zone = TimeZone::get(&hours.time_zone).map_err(|_| HoursError::UnknownTimeZone(hours.time_zone.clone()))?;
    let mut days: [Vec<(u16, u16)>; 7] = Default::default();
    for (i, window) in hours.weekly.iter().enumerate() {
        let bad = |field: &'static str, value: &str| HoursError::BadTime { window: i, field, value: value.to_owned() };
        let from = parse_minutes(&window.from, false).ok_or_else(|| bad("from", &window.from))?;
        let to = parse_minutes(&window.to, true).ok_or_else(|| bad("to", &window.to))?;
        for day in &window.days {
            let d = day_index(*day);
            if from < to {
                days[d].push((from, to));
            } else {
                days[d].push((from, MINUTES_PER_DAY));
                // Sunday's overnight window ends on Monday.
                if to > 0 {
                    days[(d + 1) % 7].push((0, to));
                }
            }
        }
    }
    Ok(CompiledHours { zone, days })
}

impl CompiledHours {
    /// Whether the queue is open at `now`, judged by the wall clock in the queue's time zone.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local = self.zone.to_datetime(now);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let day = local.weekday().to_monday_zero_offset() as usize;
        self.days.get(day).is_some_and(|ranges| ranges.iter().any(|&(start, end)| start <= minute && minute < end))
    }
}

/// Whether a queue is open at `now`; a queue without operating hours always is.
pub fn queue_open(hours: Option<&CompiledHours>, now: Timestamp) -> bool {
    hours.is_none_or(|h| h.is_open(now))
}

fn day_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

/// Minutes since midnight of an `HH:MM` time; `24:00` only where it may end a window.
fn parse_minutes(text: &str, allow_24: bool) -> Option<u16> {
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let hours = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let minutes = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    match (hours, minutes) {
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        (24, 0) if allow_24 => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::workstream::WeeklyWindow;
    use Weekday::*;

    fn hours(zone: &str, windows: &[(&[Weekday], &str, &str)]) -> CompiledHours {
        let weekly = windows.iter().map(|(days, from, to)| WeeklyWindow { days: days.to_vec(), from: (*from).into(), to: (*to).into() }).collect();
        compile(&OperatingHours { time_zone: zone.into(), weekly }).expect("compiles")
    }

    fn at(utc: &str) -> Timestamp {
        utc.parse().expect("a timestamp")
    }

    const WEEKDAYS: &[Weekday] = &[Mon, Tue, Wed, Thu, Fri];

    #[test]
    fn istanbul_office_hours() {
        // Istanbul is UTC+3 all year: 09:00–18:00 local is 06:00–15:00 UTC. 2026-03-02 is a Monday.
        let h = hours("Europe/Istanbul", &[(WEEKDAYS, "09:00", "18:00")]);
        assert!(!h.is_open(at("2026-03-02T05:59:59Z")), "08:59:59 local");
        assert!(h.is_open(at("2026-03-02T06:00:00Z")), "09:00 local opens (inclusive)");
        assert!(h.is_open(at("2026-03-04T12:00:00Z")), "Wednesday 15:00 local");
        assert!(h.is_open(at("2026-03-06T14:59:59Z")), "Friday 17:59:59 local");
        assert!(!h.is_open(at("2026-03-06T15:00:00Z")), "18:00 local closes (exclusive)");
        assert!(!h.is_open(at("2026-03-01T21:30:00Z")), "Monday 00:30 local, but Sunday in UTC");
        assert!(!h.is_open(at("2026-03-02T20:59:00Z")), "Monday 23:59 local");
    }

    #[test]
    fn weekend_is_closed_unless_listed() {
        let h = hours("Europe/Istanbul", &[(WEEKDAYS, "09:00", "18:00")]);
        assert!(!h.is_open(at("2026-03-07T09:00:00Z")), "Saturday noon local");
        assert!(!h.is_open(at("2026-03-08T09:00:00Z")), "Sunday noon local");
        let with_saturday = hours("Europe/Istanbul", &[(WEEKDAYS, "09:00", "18:00"), (&[Sat], "10:00", "14:00")]);
        assert!(with_saturday.is_open(at("2026-03-07T09:00:00Z")), "Saturday noon local");
        assert!(!with_saturday.is_open(at("2026-03-07T11:00:00Z")), "Saturday 14:00 local");
        assert!(!with_saturday.is_open(at("2026-03-08T09:00:00Z")), "Sunday noon local");
    }

    #[test]
    fn overnight_window_runs_into_the_next_day() {
        // Fri 22:00–06:00 in UTC, to read the instants directly. 2026-03-06 is a Friday.
        let h = hours("UTC", &[(&[Fri], "22:00", "06:00")]);
        assert!(!h.is_open(at("2026-03-06T21:59:00Z")));
        assert!(h.is_open(at("2026-03-06T22:00:00Z")));
        assert!(h.is_open(at("2026-03-06T23:59:59Z")));
        assert!(h.is_open(at("2026-03-07T00:00:00Z")), "Saturday after midnight");
        assert!(h.is_open(at("2026-03-07T05:59:59Z")));
        assert!(!h.is_open(at("2026-03-07T06:00:00Z")));
        assert!(!h.is_open(at("2026-03-07T22:30:00Z")), "Saturday itself is not listed");
        assert!(!h.is_open(at("2026-03-06T03:00:00Z")), "Friday early morning belongs to Thursday's night");
        // Sunday night wraps to Monday.
        let sunday = hours("UTC", &[(&[Sun], "23:00", "01:00")]);
        assert!(sunday.is_open(at("2026-03-09T00:30:00Z")), "Monday 00:30");
        assert!(!sunday.is_open(at("2026-03-02T23:30:00Z")), "Monday 23:30");
    }

    #[test]
    fn equal_times_mean_24_hours_and_24_00_ends_the_day() {
        let h = hours("UTC", &[(&[Mon], "08:00", "08:00")]);
        assert!(!h.is_open(at("2026-03-02T07:59:00Z")));
        assert!(h.is_open(at("2026-03-02T08:00:00Z")));
        assert!(h.is_open(at("2026-03-03T07:59:00Z")), "Tuesday morning");
        assert!(!h.is_open(at("2026-03-03T08:00:00Z")));
        let all_monday = hours("UTC", &[(&[Mon], "00:00", "00:00")]);
        assert!(all_monday.is_open(at("2026-03-02T00:00:00Z")) && all_monday.is_open(at("2026-03-02T23:59:59Z")));
        assert!(!all_monday.is_open(at("2026-03-03T00:00:00Z")));
        let until_midnight = hours("UTC", &[(&[Mon], "20:00", "24:00")]);
        assert!(until_midnight.is_open(at("2026-03-02T23:59:59Z")));
        assert!(!until_midnight.is_open(at("2026-03-03T00:00:00Z")));
    }

    #[test]
    fn windows_follow_the_wall_clock_across_daylight_saving() {
        // Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on Sunday 2026-03-29.
        let h = hours("Europe/Berlin", &[(&[Sat, Sun], "09:00", "18:00"), (&[Sun], "02:00", "02:30")]);
        assert!(!h.is_open(at("2026-03-28T07:59:00Z")), "Saturday 08:59 CET");
        assert!(h.is_open(at("2026-03-28T08:00:00Z")), "Saturday 09:00 CET");
        assert!(h.is_open(at("2026-03-28T16:59:00Z")) && !h.is_open(at("2026-03-28T17:00:00Z")), "closes 18:00 CET");
        assert!(!h.is_open(at("2026-03-29T06:59:00Z")), "Sunday 08:59 CEST");
        assert!(h.is_open(at("2026-03-29T07:00:00Z")), "Sunday 09:00 CEST: one hour earlier in UTC");
        assert!(h.is_open(at("2026-03-29T08:00:00Z")), "Sunday 10:00 CEST");
        assert!(h.is_open(at("2026-03-29T15:59:00Z")) && !h.is_open(at("2026-03-29T16:00:00Z")), "closes 18:00 CEST");
        // 02:00–03:00 does not exist that night: 00:59:59 UTC is 01:59:59 CET, 01:00 UTC is 03:00 CEST.
        assert!(!h.is_open(at("2026-03-29T00:59:59Z")) && !h.is_open(at("2026-03-29T01:00:00Z")), "a window in the gap never opens");
    }

    #[test]
    fn no_hours_means_open_and_errors_are_reported() {
        assert!(queue_open(None, at("2026-03-08T03:00:00Z")));
        let h = hours("Europe/Istanbul", &[(WEEKDAYS, "09:00", "18:00")]);
        assert!(!queue_open(Some(&h), at("2026-03-08T03:00:00Z")));
        assert!(!hours("UTC", &[]).is_open(at("2026-03-02T12:00:00Z")), "no windows: never open");

        let bad = |zone: &str, from: &str, to: &str| {
            compile(&OperatingHours { time_zone: zone.into(), weekly: vec![WeeklyWindow { days: vec![Mon], from: from.into(), to: to.into() }] })
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(bad("Mars/Olympus", "09:00", "18:00"), "operatingHours.timeZone: unknown time zone \"Mars/Olympus\"");
        assert_eq!(bad("UTC", "24:00", "18:00"), "operatingHours.weekly[0].from: \"24:00\" is not a time of day as HH:MM");
        assert_eq!(bad("UTC", "09:00", "18:60"), "operatingHours.weekly[0].to: \"18:60\" is not a time of day as HH:MM (or 24:00)");
        for text in ["9:00", "09:00:00", "+9:00", "ab:cd", "", "٠٩:٠٠"] {
            assert_eq!(parse_minutes(text, true), None, "{text:?}");
        }
    }
}
