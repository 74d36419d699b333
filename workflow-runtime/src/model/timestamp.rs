//! Dates from microsecond timestamps, the form the engine's clock and the
//! machine's slots keep times in.
//!
//! Turning a timestamp into a calendar date is the costly part of
//! `DateTime::from_timestamp_micros` (a year and day-of-year computation), and
//! an execution's times nearly always fall on the same day. So each thread
//! keeps the last day it converted, and a timestamp on that day only needs its
//! time of day.

use std::cell::Cell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

thread_local! {
    /// The day (since the Unix epoch) last converted on this thread, and its date.
    static LAST_DAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
}

/// `DateTime::from_timestamp_micros(micros)`, with the same result (`None`
/// outside chrono's range), cheaper for times on the day converted last.
pub(crate) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    let secs = micros.div_euclid(MICROS_PER_SECOND);
    let sub_micros = micros.rem_euclid(MICROS_PER_SECOND);
    let day = secs.div_euclid(SECONDS_PER_DAY);
    let second_of_day = secs.rem_euclid(SECONDS_PER_DAY);
    let date = match LAST_DAY.try_with(Cell::get) {
        Ok((last, date)) if last == day => date,
        cached => {
            // A whole day is in chrono's range or none of it is.
            let date = DateTime::from_timestamp(day.checked_mul(SECONDS_PER_DAY)?, 0)?.date_naive();
            if cached.is_ok() {
                let _ = LAST_DAY.try_with(|last| last.set((day, date)));
            }
            date
        }
    };
    // In range by construction: under a day's seconds, under a second's nanoseconds.
    let time = NaiveTime::from_num_seconds_from_midnight_opt(second_of_day as u32, (sub_micros * 1_000) as u32)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_as_chrono_does_on_the_same_day_and_across_days() {
        let base = DateTime::parse_from_rfc3339("2026-03-01T23:59:58.999999Z").expect("a date").timestamp_micros();
        let mut samples = vec![0, -1, 1, i64::MIN, i64::MAX, -MICROS_PER_SECOND * SECONDS_PER_DAY, base];
        // Through midnight, back and forth, a microsecond or a second at a time.
        for step in [1, 999, MICROS_PER_SECOND, 3_600 * MICROS_PER_SECOND] {
            samples.extend((0..64).map(|i| base + i * step));
            samples.extend((0..64).map(|i| base - i * step));
        }
        // Chrono's range ends and what lies just beyond.
        for edge in [DateTime::<Utc>::MIN_UTC.timestamp_micros(), DateTime::<Utc>::MAX_UTC.timestamp_micros()] {
            samples.extend((-3..=3).map(|d| edge.saturating_add(d)));
            samples.extend((-3..=3).map(|d| edge.saturating_add(d * MICROS_PER_SECOND * SECONDS_PER_DAY)));
        }
        for &micros in samples.iter().chain(samples.iter().rev()) {
            assert_eq!(from_micros(micros), DateTime::from_timestamp_micros(micros), "{micros}");
        }
    }
}
