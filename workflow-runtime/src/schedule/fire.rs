//! Fire times: pure functions of a [`Schedule`], a starting point and the instant
//! the schedule was armed. No clock, no I/O.
//!
//! Every fire time is computed from absolute instants (the cron pattern read in
//! its time zone, or the interval grid), never by adding a period to the time a
//! previous fire happened, so a late fire never shifts the ones after it.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::model::{CronExpr, Schedule, ScheduleKind};

/// Where a search for the next fire starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchFrom {
    /// Strictly after this instant.
    After(DateTime<Utc>),
    /// At this instant or after it.
    AtOrAfter(DateTime<Utc>),
}

impl SearchFrom {
    fn instant(self) -> DateTime<Utc> {
        match self {
            SearchFrom::After(t) | SearchFrom::AtOrAfter(t) => t,
        }
    }

    fn admits(self, t: DateTime<Utc>) -> bool {
        match self {
            SearchFrom::After(b) => t > b,
            SearchFrom::AtOrAfter(b) => t >= b,
        }
    }
}

/// One fire of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Fire {
    /// The tick.
    pub(crate) at: DateTime<Utc>,
    /// Which cron pattern matched (the first one, when several match the same
    /// instant); 0 for other kinds.
    pub(crate) pattern: usize,
}

impl Schedule {
    /// The first fire admitted by `from`, within the window. `armed` is when the
    /// schedule was first armed (the anchor of `in`).
    pub(crate) fn next_fire(&self, from: SearchFrom, armed: DateTime<Utc>) -> Option<Fire> {
        let from = match self.start_at {
            Some(start) if start > from.instant() => SearchFrom::AtOrAfter(start),
            _ => from,
        };
        let fire = match &self.kind {
            ScheduleKind::Cron(exprs) => first_of(
                exprs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| cron_next(e, self.timezone, from).map(|at| Fire { at, pattern: i })),
            ),
            ScheduleKind::Every(d) => {
                let anchor = self.start_at.unwrap_or(DateTime::UNIX_EPOCH);
                every_next(anchor, d.as_nanos() as i128, from).map(|at| Fire { at, pattern: 0 })
            }
            ScheduleKind::At(at) => from.admits(*at).then_some(Fire { at: *at, pattern: 0 }),
            ScheduleKind::In(d) => {
                let at = armed.checked_add_signed(TimeDelta::from_std(*d).ok()?)?;
                from.admits(at).then_some(Fire { at, pattern: 0 })
            }
        }?;
        let in_window = self.start_at.is_none_or(|s| fire.at >= s) && self.end_at.is_none_or(|e| fire.at <= e);
        in_window.then_some(fire)
    }

    /// The last fire at or before `t`, within the window.
    pub(crate) fn last_fire_until(&self, t: DateTime<Utc>, armed: DateTime<Utc>) -> Option<Fire> {
        let t = match self.end_at {
            Some(end) if end < t => end,
            _ => t,
        };
        let fire = match &self.kind {
            ScheduleKind::Cron(exprs) => {
                // The latest instant wins; among patterns matching it, the first.
                let mut best: Option<Fire> = None;
                for (i, e) in exprs.iter().enumerate() {
                    if let Some(at) = cron_prev(e, self.timezone, t)
                        && best.is_none_or(|b| at > b.at)
                    {
                        best = Some(Fire { at, pattern: i });
                    }
                }
                best
            }
            ScheduleKind::Every(d) => {
                let anchor = self.start_at.unwrap_or(DateTime::UNIX_EPOCH);
                every_prev(anchor, d.as_nanos() as i128, t).map(|at| Fire { at, pattern: 0 })
            }
            ScheduleKind::At(at) => (*at <= t).then_some(Fire { at: *at, pattern: 0 }),
            ScheduleKind::In(d) => {
                let at = armed.checked_add_signed(TimeDelta::from_std(*d).ok()?)?;
                (at <= t).then_some(Fire { at, pattern: 0 })
            }
        }?;
        self.start_at.is_none_or(|s| fire.at >= s).then_some(fire)
    }

    /// The fire times strictly after `after`, in order, as an engine would see them
    /// if it armed the schedule at `after` (so `in` counts from `after`).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use sagaflow_runtime::Schedule;
    ///
    /// let monday_six = Schedule::cron("0 6 * * 1")?;
    /// let from = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap(); // a Wednesday
    /// let next: Vec<_> = monday_six.upcoming(from).take(2).collect();
    /// assert_eq!(next, [
    ///     Utc.with_ymd_and_hms(2025, 6, 9, 6, 0, 0).unwrap(),
    ///     Utc.with_ymd_and_hms(2025, 6, 16, 6, 0, 0).unwrap(),
    /// ]);
    /// # Ok::<(), sagaflow_runtime::ScheduleError>(())
    /// ```
    pub fn upcoming(&self, after: DateTime<Utc>) -> Upcoming<'_> {
        Upcoming { schedule: self, armed: after, from: SearchFrom::After(after) }
    }
}

/// The fire times of a schedule, from [`Schedule::upcoming`].
#[derive(Debug, Clone)]
pub struct Upcoming<'a> {
    schedule: &'a Schedule,
    armed: DateTime<Utc>,
    from: SearchFrom,
}

impl Iterator for Upcoming<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let fire = self.schedule.next_fire(self.from, self.armed)?;
        self.from = SearchFrom::After(fire.at);
        Some(fire.at)
    }
}

fn first_of(fires: impl Iterator<Item = Fire>) -> Option<Fire> {
    // `min` keeps the first of equal elements, and `Fire` orders by instant first.
    fires.min_by_key(|f| f.at)
}

/// Cron patterns match whole seconds: a bound with a fraction of a second becomes
/// "after the whole second below it", which admits the same matches.
fn whole_seconds(from: SearchFrom) -> (DateTime<Utc>, bool) {
    match from {
        SearchFrom::AtOrAfter(t) if t.timestamp_subsec_nanos() == 0 => (t, true),
        SearchFrom::After(t) | SearchFrom::AtOrAfter(t) => (t.trunc_subsecs(0), false),
    }
}

fn cron_next(expr: &CronExpr, tz: Option<Tz>, from: SearchFrom) -> Option<DateTime<Utc>> {
    let (t, inclusive) = whole_seconds(from);
    match tz {
        None | Some(Tz::UTC) => expr.cron.find_next_occurrence(&t, inclusive).ok(),
        Some(tz) => {
            expr.cron.find_next_occurrence(&t.with_timezone(&tz), inclusive).ok().map(|d| d.with_timezone(&Utc))
        }
    }
}

fn cron_prev(expr: &CronExpr, tz: Option<Tz>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = t.trunc_subsecs(0);
    match tz {
        None | Some(Tz::UTC) => expr.cron.find_previous_occurrence(&t, true).ok(),
        Some(tz) => expr.cron.find_previous_occurrence(&t.with_timezone(&tz), true).ok().map(|d| d.with_timezone(&Utc)),
    }
}

fn nanos_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
    let secs = i128::from(to.timestamp()) - i128::from(from.timestamp());
    secs * 1_000_000_000 + i128::from(to.timestamp_subsec_nanos()) - i128::from(from.timestamp_subsec_nanos())
}

fn add_nanos(t: DateTime<Utc>, nanos: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let rest = nanos.rem_euclid(1_000_000_000) as i64;
    t.checked_add_signed(TimeDelta::try_seconds(secs)?)?.checked_add_signed(TimeDelta::nanoseconds(rest))
}

/// The first grid point `anchor + n × period` (n ≥ 0) admitted by `from`.
fn every_next(anchor: DateTime<Utc>, period: i128, from: SearchFrom) -> Option<DateTime<Utc>> {
    if from.admits(anchor) {
        return Some(anchor);
    }
    let offset = nanos_between(anchor, from.instant());
    let n = offset.div_euclid(period);
    let on_grid = offset.rem_euclid(period) == 0;
    let n = if on_grid && matches!(from, SearchFrom::AtOrAfter(_)) { n } else { n + 1 };
    add_nanos(anchor, n * period)
}

/// The last grid point at or before `t`.
fn every_prev(anchor: DateTime<Utc>, period: i128, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if t < anchor {
        return None;
    }
    add_nanos(anchor, nanos_between(anchor, t).div_euclid(period) * period)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::model::Misfire;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next_n(s: &Schedule, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        s.upcoming(after).take(n).collect()
    }

    #[test]
    fn common_patterns_of_the_reference() {
        // Wednesday 2025-06-04 12:34:56 UTC.
        let from = utc(2025, 6, 4, 12, 34, 56);
        let cases: [(&str, [DateTime<Utc>; 3]); 6] = [
            ("* * * * *", [utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 36, 0), utc(2025, 6, 4, 12, 37, 0)]),
            ("0 * * * *", [utc(2025, 6, 4, 13, 0, 0), utc(2025, 6, 4, 14, 0, 0), utc(2025, 6, 4, 15, 0, 0)]),
            ("0 0 * * *", [utc(2025, 6, 5, 0, 0, 0), utc(2025, 6, 6, 0, 0, 0), utc(2025, 6, 7, 0, 0, 0)]),
            ("0 6 * * 1", [utc(2025, 6, 9, 6, 0, 0), utc(2025, 6, 16, 6, 0, 0), utc(2025, 6, 23, 6, 0, 0)]),
            ("0 0 1 * *", [utc(2025, 7, 1, 0, 0, 0), utc(2025, 8, 1, 0, 0, 0), utc(2025, 9, 1, 0, 0, 0)]),
            ("0 0 1 1 *", [utc(2026, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0), utc(2028, 1, 1, 0, 0, 0)]),
        ];
        for (pattern, expected) in cases {
            assert_eq!(next_n(&Schedule::cron(pattern).unwrap(), from, 3), expected, "{pattern}");
        }
        let daily = Schedule::cron("0 6 * * *").unwrap();
        assert_eq!(next_n(&daily, from, 2), [utc(2025, 6, 5, 6, 0, 0), utc(2025, 6, 6, 6, 0, 0)]);
    }

    #[test]
    fn shorthands_match_their_patterns() {
        let from = utc(2025, 6, 4, 12, 34, 56);
        for (short, long) in [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
        ] {
            let a = next_n(&Schedule::cron(short).unwrap(), from, 4);
            let b = next_n(&Schedule::cron(long).unwrap(), from, 4);
            assert_eq!(a, b, "{short}");
        }
        assert_eq!(next_n(&Schedule::cron("@weekly").unwrap(), from, 1), [utc(2025, 6, 8, 0, 0, 0)], "a Sunday");
    }

    #[test]
    fn several_patterns_merge_in_order_and_coinciding_ticks_fire_once() {
        let s = Schedule::cron_many(["0 6 * * *", "0 12 * * *", "0 18 * * *", "0 */6 * * *"]).unwrap();
        let from = utc(2025, 6, 4, 7, 0, 0);
        assert_eq!(
            next_n(&s, from, 5),
            [
                utc(2025, 6, 4, 12, 0, 0),
                utc(2025, 6, 4, 18, 0, 0),
                utc(2025, 6, 5, 0, 0, 0),
                utc(2025, 6, 5, 6, 0, 0),
                utc(2025, 6, 5, 12, 0, 0)
            ]
        );
        assert_eq!(
            s.next_fire(SearchFrom::After(from), from).unwrap().pattern,
            1,
            "the first matching pattern is named"
        );
        let midnight = s.next_fire(SearchFrom::After(utc(2025, 6, 4, 20, 0, 0)), from).unwrap();
        assert_eq!(midnight.pattern, 3, "only the last pattern matches midnight");
    }

    #[test]
    fn seconds_field() {
        let s = Schedule::cron("*/15 * * * * *").unwrap();
        let from = utc(2025, 6, 4, 12, 0, 7);
        assert_eq!(
            next_n(&s, from, 4),
            [
                utc(2025, 6, 4, 12, 0, 15),
                utc(2025, 6, 4, 12, 0, 30),
                utc(2025, 6, 4, 12, 0, 45),
                utc(2025, 6, 4, 12, 1, 0)
            ]
        );
        let odd = Schedule::cron("30 0 6 * * *").unwrap();
        assert_eq!(next_n(&odd, from, 1), [utc(2025, 6, 5, 6, 0, 30)]);
    }

    #[test]
    fn fractions_of_a_second_are_handled() {
        let s = Schedule::cron("* * * * * *").unwrap();
        let t = utc(2025, 6, 4, 12, 0, 7) + TimeDelta::milliseconds(400);
        assert_eq!(s.next_fire(SearchFrom::After(t), t).unwrap().at, utc(2025, 6, 4, 12, 0, 8));
        assert_eq!(s.next_fire(SearchFrom::AtOrAfter(t), t).unwrap().at, utc(2025, 6, 4, 12, 0, 8));
        let whole = utc(2025, 6, 4, 12, 0, 7);
        assert_eq!(s.next_fire(SearchFrom::AtOrAfter(whole), t).unwrap().at, whole);
        assert_eq!(s.last_fire_until(t, t).unwrap().at, whole);
    }

    #[test]
    fn spring_forward_runs_a_skipped_fixed_time_right_after_the_gap() {
        // New York, 2025-03-09: 02:00 EST jumps to 03:00 EDT.
        let s = Schedule::cron("30 2 * * *").unwrap().timezone("America/New_York").unwrap();
        let from = utc(2025, 3, 8, 12, 0, 0);
        // 03-08 02:30 EST has passed at `from`; 03-09 02:30 does not exist, so the
        // job runs at 03:00 EDT (07:00 UTC); then 02:30 EDT (06:30 UTC) again.
        assert_eq!(
            next_n(&s, from, 3),
            [utc(2025, 3, 9, 7, 0, 0), utc(2025, 3, 10, 6, 30, 0), utc(2025, 3, 11, 6, 30, 0)]
        );
        // A time outside the gap is untouched on that day.
        let s = Schedule::cron("0 6 * * *").unwrap().timezone("America/New_York").unwrap();
        assert_eq!(next_n(&s, from, 2), [utc(2025, 3, 9, 10, 0, 0), utc(2025, 3, 10, 10, 0, 0)]);
        // Interval-like patterns follow real time: no run is invented in the gap.
        let s = Schedule::cron("*/30 * * * *").unwrap().timezone("America/New_York").unwrap();
        let before_gap = utc(2025, 3, 9, 6, 15, 0); // 01:15 EST
        assert_eq!(
            next_n(&s, before_gap, 3),
            [utc(2025, 3, 9, 6, 30, 0), utc(2025, 3, 9, 7, 0, 0), utc(2025, 3, 9, 7, 30, 0)]
        );
    }

    #[test]
    fn fall_back_runs_a_repeated_fixed_time_once() {
        // New York, 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let s = Schedule::cron("30 1 * * *").unwrap().timezone("America/New_York").unwrap();
        let from = utc(2025, 11, 1, 12, 0, 0);
        // 01:30 EDT is 05:30 UTC; the repeat at 01:30 EST (06:30 UTC) does not fire.
        assert_eq!(
            next_n(&s, from, 3),
            [utc(2025, 11, 2, 5, 30, 0), utc(2025, 11, 3, 6, 30, 0), utc(2025, 11, 4, 6, 30, 0)]
        );
        // Starting inside the repeated hour, after the first 01:30, does not fire the second.
        let between = utc(2025, 11, 2, 6, 0, 0); // 01:00 EST, the second pass
        assert_eq!(next_n(&s, between, 1), [utc(2025, 11, 3, 6, 30, 0)]);
        // Paris, 2025-10-26: 03:00 CEST falls back to 02:00 CET.
        let s = Schedule::cron("15 2 * * *").unwrap().timezone("Europe/Paris").unwrap();
        let from = utc(2025, 10, 25, 12, 0, 0);
        assert_eq!(next_n(&s, from, 2), [utc(2025, 10, 26, 0, 15, 0), utc(2025, 10, 27, 1, 15, 0)]);
        // An hourly pattern runs in both passes of the repeated hour (real time).
        let s = Schedule::cron("0 * * * *").unwrap().timezone("America/New_York").unwrap();
        let from = utc(2025, 11, 2, 4, 30, 0); // 00:30 EDT
        assert_eq!(
            next_n(&s, from, 3),
            [utc(2025, 11, 2, 5, 0, 0), utc(2025, 11, 2, 6, 0, 0), utc(2025, 11, 2, 7, 0, 0)]
        );
    }

    #[test]
    fn intervals_sit_on_an_absolute_grid() {
        let s = Schedule::every("5m").unwrap();
        let from = utc(2025, 6, 4, 12, 34, 56);
        assert_eq!(
            next_n(&s, from, 3),
            [utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 40, 0), utc(2025, 6, 4, 12, 45, 0)]
        );
        let s = Schedule::every("30s").unwrap();
        assert_eq!(next_n(&s, from, 2), [utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 35, 30)]);
        let s = Schedule::every("1h").unwrap();
        assert_eq!(next_n(&s, from, 2), [utc(2025, 6, 4, 13, 0, 0), utc(2025, 6, 4, 14, 0, 0)]);
        // On the grid: `after` is exclusive.
        assert_eq!(next_n(&s, utc(2025, 6, 4, 13, 0, 0), 1), [utc(2025, 6, 4, 14, 0, 0)]);
        // A million ticks later, still exact: no drift.
        let s = Schedule::every("7s").unwrap();
        let t = s.upcoming(from).nth(1_000_000).unwrap();
        assert_eq!(nanos_between(DateTime::UNIX_EPOCH, t) % 7_000_000_000, 0);
    }

    #[test]
    fn windows_bound_every_kind() {
        // The reference's combined schedule: hourly through January 2025.
        let start = utc(2025, 1, 1, 0, 0, 0);
        let end = utc(2025, 1, 31, 23, 59, 59);
        let s = Schedule::every("1h").unwrap().start_at(start).unwrap().end_at(end).unwrap();
        let before = utc(2024, 12, 20, 0, 0, 0);
        let all: Vec<_> = s.upcoming(before).collect();
        assert_eq!(all.len(), 31 * 24);
        assert_eq!(all[0], start, "the window start is a fire time");
        assert_eq!(*all.last().unwrap(), utc(2025, 1, 31, 23, 0, 0));
        // The grid is anchored at start_at.
        let s = Schedule::every("1h").unwrap().start_at(utc(2025, 1, 1, 0, 20, 0)).unwrap();
        assert_eq!(next_n(&s, before, 2), [utc(2025, 1, 1, 0, 20, 0), utc(2025, 1, 1, 1, 20, 0)]);
        // Cron in a window.
        let s = Schedule::cron("0 6 * * *").unwrap().start_at(start).unwrap().end_at(utc(2025, 1, 3, 6, 0, 0)).unwrap();
        assert_eq!(
            next_n(&s, before, 5),
            [utc(2025, 1, 1, 6, 0, 0), utc(2025, 1, 2, 6, 0, 0), utc(2025, 1, 3, 6, 0, 0)]
        );
        assert_eq!(s.last_fire_until(utc(2025, 3, 1, 0, 0, 0), before).unwrap().at, utc(2025, 1, 3, 6, 0, 0));
        assert_eq!(s.last_fire_until(utc(2025, 1, 1, 5, 0, 0), before), None);
        // A start_at strictly inside the search bound does not bring back older ticks.
        let s = Schedule::every("1m").unwrap().start_at(start).unwrap();
        let later = utc(2025, 1, 1, 0, 10, 30);
        assert_eq!(next_n(&s, later, 1), [utc(2025, 1, 1, 0, 11, 0)]);
        assert_eq!(s.next_fire(SearchFrom::After(start), start).unwrap().at, utc(2025, 1, 1, 0, 1, 0));
        assert_eq!(s.next_fire(SearchFrom::AtOrAfter(start), start).unwrap().at, start);
    }

    #[test]
    fn one_off_times() {
        let at = utc(2025, 12, 25, 0, 0, 0);
        let s = Schedule::at(at);
        assert_eq!(next_n(&s, utc(2025, 12, 1, 0, 0, 0), 3), [at]);
        assert!(next_n(&s, at, 1).is_empty());
        let s = Schedule::in_("30m").unwrap();
        let armed = utc(2025, 6, 4, 12, 0, 0);
        assert_eq!(s.next_fire(SearchFrom::AtOrAfter(armed), armed).unwrap().at, utc(2025, 6, 4, 12, 30, 0));
        assert_eq!(s.last_fire_until(utc(2025, 6, 4, 13, 0, 0), armed).unwrap().at, utc(2025, 6, 4, 12, 30, 0));
        assert_eq!(s.last_fire_until(utc(2025, 6, 4, 12, 29, 0), armed), None);
        assert_eq!(next_n(&Schedule::in_("2h").unwrap(), armed, 2), [utc(2025, 6, 4, 14, 0, 0)]);
        let _ = Misfire::default();
    }

    fn schedules() -> Vec<Schedule> {
        let paris = |s: Schedule| s.timezone("Europe/Paris").unwrap();
        vec![
            Schedule::cron("* * * * *").unwrap(),
            Schedule::cron("0 6 * * 1").unwrap(),
            Schedule::cron("*/20 * * * * *").unwrap(),
            paris(Schedule::cron("30 2 * * *").unwrap()),
            paris(Schedule::cron("0 * * * *").unwrap()),
            Schedule::cron_many(["0 6 * * *", "15 6 * * *"]).unwrap(),
            Schedule::every("7m").unwrap(),
            Schedule::every("1500ms").unwrap().start_at(utc(2023, 3, 1, 0, 0, 0)).unwrap(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The next fire after the last fire until `t` is after `t`: the two searches
        /// agree, so catch-up computations never skip or repeat a tick.
        #[test]
        fn next_and_last_agree(secs in 1_704_067_200i64..1_767_225_600, ms in 0u32..1000, which in 0usize..8) {
            let t = Utc.timestamp_opt(secs, ms * 1_000_000).unwrap();
            let s = &schedules()[which];
            let armed = utc(2024, 1, 1, 0, 0, 0);
            let next = s.next_fire(SearchFrom::After(t), armed).unwrap();
            prop_assert!(next.at > t);
            let last = s.last_fire_until(t, armed).unwrap();
            prop_assert!(last.at <= t);
            prop_assert_eq!(s.next_fire(SearchFrom::After(last.at), armed).unwrap(), next);
            prop_assert!(s.last_fire_until(next.at, armed).unwrap().at == next.at);
        }
    }
}
