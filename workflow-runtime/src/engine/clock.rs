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
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { base_instant: Instant::now(), base_utc: Utc::now().trunc_subsecs(6) }
    }

    /// A clock that reads `start` now and advances with tokio's clock (for tests
    /// with a paused clock and a fixed date).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Clock { base_instant: Instant::now(), base_utc: start.trunc_subsecs(6) }
    }

    /// The current time, to the microsecond (the resolution stores keep).
    pub fn now(&self) -> DateTime<Utc> {
        (self.base_utc + self.base_instant.elapsed()).trunc_subsecs(6)
    }

    /// The wall-clock time of a tokio instant (for reusing one clock read).
    pub fn at(&self, instant: Instant) -> DateTime<Utc> {
        (self.base_utc + instant.saturating_duration_since(self.base_instant)).trunc_subsecs(6)
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
