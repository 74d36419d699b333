//! How schedules live in the [`Store`](crate::store::Store), through its two tick
//! methods only, so every store (memory, SQLite, PostgreSQL) keeps them the same way.
//!
//! Each schedule (the `index`-th of a workflow) has two records:
//!
//! - `"{workflow}#{index}"`, its **last tick**: a tick runs only after its
//!   `claim_tick` wins, so on a store shared by several engines each tick starts
//!   one execution, and after a restart the ticks after the last one are the
//!   missed ones. The next fire time is a pure function of it (see
//!   [`fire`](super::fire)), so it is not stored separately.
//! - `"{workflow}#{index}:armed"`, when the schedule was **first armed**: the
//!   anchor of `in`, and the start of the ticks that count as missed when none was
//!   ever claimed. The first engine to arm a schedule must win over later ones,
//!   while `claim_tick` keeps the *latest* value, so the instant is stored
//!   mirrored around [`MIRROR`]: an earlier instant is a later stored value.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::fire::SearchFrom;

/// The record of a schedule's last tick.
pub(crate) fn tick_key(workflow: &str, index: usize) -> String {
    format!("{workflow}#{index}")
}

/// The record of when a schedule was first armed.
pub(crate) fn armed_key(workflow: &str, index: usize) -> String {
    format!("{workflow}#{index}:armed")
}

/// Seconds from the Unix epoch to 2200-01-01T00:00:00Z: mirrored instants of the
/// years 1970–2200 stay within the same years, which every store can hold.
pub(crate) const MIRROR: i64 = 7_258_118_400;

fn mirror() -> DateTime<Utc> {
    DateTime::from_timestamp(MIRROR, 0).expect("2200-01-01 is a valid instant")
}

/// The instant recorded as "armed": `now` to the millisecond, the precision every
/// store keeps.
pub(crate) fn armed_instant(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

/// The stored form of an armed instant: earlier instants are later values.
pub(crate) fn encode_armed(armed: DateTime<Utc>) -> DateTime<Utc> {
    mirror() - (armed - DateTime::UNIX_EPOCH)
}

/// The armed instant from its stored form.
pub(crate) fn decode_armed(stored: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + (mirror() - stored)
}

/// Where a schedule resumes: after its last claimed tick, or at the instant it
/// was armed if no tick since then was claimed.
pub(crate) fn resume_point(last: Option<DateTime<Utc>>, armed: DateTime<Utc>) -> SearchFrom {
    match last {
        Some(last) if last >= armed => SearchFrom::After(last),
        _ => SearchFrom::AtOrAfter(armed),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_earliest_arming_is_the_largest_stored_value() {
        let a = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap() + TimeDelta::milliseconds(250);
        let b = a + TimeDelta::seconds(3);
        assert!(encode_armed(a) > encode_armed(b));
        assert_eq!(decode_armed(encode_armed(a)), a);
        assert_eq!(decode_armed(encode_armed(b)), b);
        assert!(encode_armed(a) > Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap());
        assert!(encode_armed(a) < mirror());
        assert_eq!(armed_instant(a + TimeDelta::microseconds(999)), a);
    }

    #[test]
    fn keys_and_resume_points() {
        assert_eq!(tick_key("daily_report", 1), "daily_report#1");
        assert_eq!(armed_key("daily_report", 1), "daily_report#1:armed");
        let armed = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap();
        assert_eq!(resume_point(None, armed), SearchFrom::AtOrAfter(armed));
        let last = armed + TimeDelta::minutes(5);
        assert_eq!(resume_point(Some(last), armed), SearchFrom::After(last));
        let stale = armed - TimeDelta::days(1);
        assert_eq!(resume_point(Some(stale), armed), SearchFrom::AtOrAfter(armed));
    }
}
