//! [`Clock`]: the engine's single source of time.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::time::Instant;

/// The engine's clock: wall-clock time anchored to tokio's monotonic clock.
///
/// All engine time comes from here. Under tokio's paused test clock
/// (`#[tokio::test(start_paused = true)]`) the engine's time advances exactly as
/// tokio's does, so retry, snooze and timeout schedules are exact. Durable due
/// times are stored as UTC timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_instant: Instant,
    base_utc: DateTime<Utc>,
    /// `base_utc` in microseconds since the Unix epoch.
    base_micros: i64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::anchored(Utc::now())
    }

    /// A clock that reads `start` now and advances with tokio's clock (for tests
    /// with a paused clock and a fixed date).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self::anchored(start)
    }

    fn anchored(start: DateTime<Utc>) -> Self {
        let base_utc = start.trunc_subsecs(6);
        Clock { base_instant: Instant::now(), base_utc, base_micros: base_utc.timestamp_micros() }
    }

    /// The current time, to the microsecond (the resolution stores keep).
    pub fn now(&self) -> DateTime<Utc> {
        self.at(Instant::now())
    }

    /// The wall-clock time of a tokio instant (for reusing one clock read), to
    /// the microsecond.
    pub fn at(&self, instant: Instant) -> DateTime<Utc> {
        // In whole microseconds: cheaper than adding a `Duration` to a date and
        // truncating it (this runs for every step).
        let elapsed = instant.saturating_duration_since(self.base_instant);
        i64::try_from(elapsed.as_micros())
            .ok()
            .and_then(|us| self.base_micros.checked_add(us))
            .and_then(crate::model::timestamp::from_micros)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The tokio instant at which `at` arrives. The same `at` always maps to the
    /// same instant; a time before the clock's start maps to its start.
    pub fn instant_at(&self, at: DateTime<Utc>) -> Instant {
        let ahead = (at - self.base_utc).to_std().unwrap_or(Duration::ZERO);
        // Beyond what `Instant` holds: far enough that it never comes.
        self.base_instant.checked_add(ahead).unwrap_or_else(|| self.base_instant + crate::model::MAX_DURATION * 4)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn times_advance_with_tokio_and_keep_whole_microseconds() {
        let start = DateTime::parse_from_rfc3339("2026-03-01T12:00:00.123456789Z").expect("a date").to_utc();
        let clock = Clock::starting_at(start);
        let base = clock.now();
        assert_eq!(base, start.trunc_subsecs(6));
        tokio::time::advance(Duration::from_nanos(2_500_999)).await;
        assert_eq!(clock.now() - base, chrono::TimeDelta::microseconds(2_500));
        let later = Instant::now() + Duration::from_secs(86_400 * 400);
        assert_eq!(clock.at(later) - base, chrono::TimeDelta::days(400) + chrono::TimeDelta::microseconds(2_500));
        assert_eq!(clock.instant_at(clock.at(later)), later - Duration::from_nanos(999));
    }
}
