//! Which due ticks run: the misfire policy as a pure function.
//!
//! A tick is *due* once its time has come. Normally exactly one tick of a schedule
//! is due when the scheduler looks (it wakes at that tick), and it runs whatever
//! its lateness, except under [`Misfire::Skip`] when it is later than [`GRACE`].
//! When several ticks are due at once (the engine was down, or stalled), the
//! policy decides:
//!
//! - [`Misfire::RunOnce`] (default): one run, for the latest due tick;
//! - [`Misfire::Skip`]: nothing, unless the latest due tick is within [`GRACE`]
//!   (then it is simply on time);
//! - [`Misfire::RunAll`]: one run per due tick, oldest first, at most
//!   [`RUN_ALL_BATCH`] per pass.

use chrono::{DateTime, TimeDelta, Utc};

use super::fire::{Fire, SearchFrom};
use crate::model::{Misfire, Schedule};

/// How late a tick may be and still count as on time under [`Misfire::Skip`]. It
/// covers an engine that starts while another one sharing the store is about to
/// fire the same tick: the tick still runs (once, by whichever claims it).
pub(crate) const GRACE: TimeDelta = TimeDelta::seconds(1);

/// The most ticks [`Misfire::RunAll`] runs in one pass; the rest stay due and run
/// in the next pass, so a long backlog never holds the scheduler for long.
pub(crate) const RUN_ALL_BATCH: usize = 1_000;

/// What to do now for one schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    /// The ticks to run, oldest first (each claimed before it runs).
    pub(crate) run: Vec<Fire>,
    /// The first due tick that will not run, when some were dropped.
    pub(crate) dropped_from: Option<DateTime<Utc>>,
    /// The schedule's next tick after these, if any.
    pub(crate) next: Option<Fire>,
}

/// Decides what runs at `now` for a schedule whose next tick `next` is due
/// (`next.at <= now`).
pub(crate) fn due(schedule: &Schedule, armed: DateTime<Utc>, next: Fire, now: DateTime<Utc>) -> Due {
    let following = schedule.next_fire(SearchFrom::After(next.at), armed);
    let several = following.is_some_and(|f| f.at <= now);
    let policy = schedule.misfire_policy();
    if !several {
        if policy == Misfire::Skip && now - next.at > GRACE {
            return Due { run: Vec::new(), dropped_from: Some(next.at), next: following };
        }
        return Due { run: vec![next], dropped_from: None, next: following };
    }
    match policy {
        Misfire::RunAll => {
            let mut run = vec![next];
            let mut cursor = following;
            while let Some(f) = cursor
                && f.at <= now
                && run.len() < RUN_ALL_BATCH
            {
                run.push(f);
                cursor = schedule.next_fire(SearchFrom::After(f.at), armed);
            }
            Due { run, dropped_from: None, next: cursor }
        }
        Misfire::RunOnce | Misfire::Skip => {
            // `following` is due, so there is a latest tick at or after it.
            let latest = schedule.last_fire_until(now, armed).filter(|l| l.at >= next.at).unwrap_or(next);
            let after = schedule.next_fire(SearchFrom::After(latest.at), armed);
            if policy == Misfire::Skip && now - latest.at > GRACE {
                return Due { run: Vec::new(), dropped_from: Some(next.at), next: after };
            }
            Due { run: vec![latest], dropped_from: Some(next.at), next: after }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(min: i64, sec: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap() + TimeDelta::minutes(min) + TimeDelta::seconds(sec)
    }

    fn fire(at: DateTime<Utc>) -> Fire {
        Fire { at, pattern: 0 }
    }

    fn minutely(policy: Misfire) -> Schedule {
        Schedule::cron("* * * * *").unwrap().misfire(policy)
    }

    #[test]
    fn one_due_tick_runs_however_late_unless_skipped() {
        let armed = t(0, 0);
        for policy in [Misfire::RunOnce, Misfire::RunAll] {
            let d = due(&minutely(policy), armed, fire(t(1, 0)), t(1, 30));
            assert_eq!(d, Due { run: vec![fire(t(1, 0))], dropped_from: None, next: Some(fire(t(2, 0))) });
        }
        let skip = minutely(Misfire::Skip);
        let on_time = due(&skip, armed, fire(t(1, 0)), t(1, 0) + TimeDelta::milliseconds(3));
        assert_eq!(on_time.run, vec![fire(t(1, 0))]);
        let late = due(&skip, armed, fire(t(1, 0)), t(1, 30));
        assert_eq!(late, Due { run: vec![], dropped_from: Some(t(1, 0)), next: Some(fire(t(2, 0))) });
    }

    #[test]
    fn missed_ticks_follow_the_policy() {
        let armed = t(0, 0);
        // Ticks 12:01 .. 12:10 are due at 12:10:30.
        let now = t(10, 30);
        let once = due(&minutely(Misfire::RunOnce), armed, fire(t(1, 0)), now);
        assert_eq!(once, Due { run: vec![fire(t(10, 0))], dropped_from: Some(t(1, 0)), next: Some(fire(t(11, 0))) });
        let skip = due(&minutely(Misfire::Skip), armed, fire(t(1, 0)), now);
        assert_eq!(skip, Due { run: vec![], dropped_from: Some(t(1, 0)), next: Some(fire(t(11, 0))) });
        let all = due(&minutely(Misfire::RunAll), armed, fire(t(1, 0)), now);
        assert_eq!(all.run, (1..=10).map(|m| fire(t(m, 0))).collect::<Vec<_>>());
        assert_eq!(all.next, Some(fire(t(11, 0))));
        // Skip still runs a latest tick that is within the grace period.
        let skip = due(&minutely(Misfire::Skip), armed, fire(t(1, 0)), t(10, 0) + TimeDelta::milliseconds(200));
        assert_eq!(skip.run, vec![fire(t(10, 0))]);
    }

    #[test]
    fn run_all_works_through_a_long_backlog_in_passes() {
        let s = Schedule::every("1s").unwrap().misfire(Misfire::RunAll);
        let armed = t(0, 0);
        let now = t(60, 0); // 3,600 ticks due
        let first = due(&s, armed, fire(t(0, 1)), now);
        assert_eq!(first.run.len(), RUN_ALL_BATCH);
        let resume = first.next.unwrap();
        assert_eq!(resume.at, t(0, 1) + TimeDelta::seconds(RUN_ALL_BATCH as i64));
        let mut total = first.run.len();
        let mut next = Some(resume);
        while let Some(n) = next
            && n.at <= now
        {
            let d = due(&s, armed, n, now);
            total += d.run.len();
            next = d.next;
        }
        assert_eq!(total, 3_600, "every missed tick runs exactly once");
    }

    #[test]
    fn one_off_and_windowed_schedules_end() {
        let s = Schedule::at(t(5, 0));
        let d = due(&s, t(0, 0), fire(t(5, 0)), t(50, 0));
        assert_eq!(d, Due { run: vec![fire(t(5, 0))], dropped_from: None, next: None });
        let s = Schedule::cron("* * * * *").unwrap().end_at(t(3, 0)).unwrap();
        let d = due(&s, t(0, 0), fire(t(1, 0)), t(50, 0));
        assert_eq!(d, Due { run: vec![fire(t(3, 0))], dropped_from: Some(t(1, 0)), next: None });
    }
}
