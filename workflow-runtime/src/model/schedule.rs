//! Schedules as data: cron patterns, intervals, one-off times and windows.
//! Computing fire times is the scheduler's job (`crate::schedule`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::duration::{DurationArg, DurationError, format_duration};

/// The shortest `every` interval: the engine's timers have millisecond resolution.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// An invalid schedule, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A cron pattern could not be parsed.
    #[error("invalid cron expression `{expr}`: {reason}")]
    Cron {
        /// The pattern as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `cron_many` was given no pattern.
    #[error("invalid `cron`: at least one pattern is required")]
    NoCronPattern,
    /// `every` is zero.
    #[error("invalid `every`: the interval must be greater than zero")]
    ZeroInterval,
    /// `every` is shorter than the engine's timer resolution.
    #[error("invalid `every`: {interval:?} is shorter than the minimum of 1ms")]
    IntervalTooShort {
        /// The interval given.
        interval: Duration,
    },
    /// A duration field could not be read.
    #[error("invalid `{field}`: {source}")]
    Duration {
        /// The field (`every`, `in`).
        field: &'static str,
        /// Why.
        source: DurationError,
    },
    /// `end_at` is not after `start_at`.
    #[error("invalid window: `end_at` ({end_at}) is not after `start_at` ({start_at})")]
    EmptyWindow {
        /// Start of the window.
        start_at: DateTime<Utc>,
        /// End of the window.
        end_at: DateTime<Utc>,
    },
    /// A one-off `at` time lies outside the window, so it would never fire.
    #[error("invalid `{field}`: `at` ({at}) is {side} the window's `{field}` ({bound})")]
    AtOutsideWindow {
        /// The window field that excludes it (`start_at` or `end_at`).
        field: &'static str,
        /// `before` or `after`.
        side: &'static str,
        /// The one-off time.
        at: DateTime<Utc>,
        /// The window bound.
        bound: DateTime<Utc>,
    },
    /// Unknown IANA time zone.
    #[error("invalid `timezone`: unknown time zone `{0}`")]
    TimeZone(String),
    /// The input of scheduled executions is not a JSON object.
    #[error("invalid `input`: scheduled executions need a JSON object as input, got `{0}`")]
    Input(String),
    /// A schedule's description (as [`Schedule::describe`] writes it) could not be
    /// read back.
    #[error("cannot read the schedule `{text}`: {reason}")]
    Description {
        /// The description as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One cron pattern, parsed once: 5 fields, 6 fields (seconds first), or a shorthand
/// such as `@daily`.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    pub(crate) cron: croner::Cron,
}

impl CronExpr {
    /// Parses a pattern.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build();
        let cron =
            parser.parse(expr).map_err(|e| ScheduleError::Cron { expr: expr.to_owned(), reason: e.to_string() })?;
        // A pattern such as `0 0 30 2 *` parses but names no real date.
        if cron.find_next_occurrence(&DateTime::<Utc>::UNIX_EPOCH, true).is_err() {
            return Err(ScheduleError::Cron { expr: expr.to_owned(), reason: "it never matches a date".to_owned() });
        }
        Ok(CronExpr { text: expr.trim().to_owned(), cron })
    }

    /// The first match strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for CronExpr {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

/// What happens to ticks missed while no engine was running (or while the
/// scheduler could not keep up): when an engine arms a schedule it resumes after
/// the last tick recorded in the store, so every tick since then is due at once.
///
/// A single due tick always runs, however late, except under [`Misfire::Skip`]
/// when it is more than a second late.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// One catch-up run, for the latest missed tick, as soon as an engine is back
    /// (the default); the executions it records name that tick.
    #[default]
    RunOnce,
    /// Drop missed ticks and wait for the next one (a tick less than a second late
    /// still runs: it is on time).
    Skip,
    /// One run per missed tick, oldest first, each recording its own tick.
    RunAll,
}

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleKind {
    /// At every match of any of these cron patterns (a tick matched by several
    /// patterns fires once).
    Cron(Vec<CronExpr>),
    /// Every fixed interval, on a grid anchored at `start_at`, or at the Unix epoch
    /// without one (so `every 5m` fires at :00, :05, :10...).
    Every(Duration),
    /// Once, at this instant.
    At(DateTime<Utc>),
    /// Once, this long after the schedule is first armed (the first time an engine
    /// registers the workflow on its store).
    In(Duration),
}

/// A schedule of a workflow: a trigger, an optional window, a time zone for cron
/// patterns, a misfire policy and the input of the executions it starts.
///
/// Invalid values are rejected where they are given, with an error that names the
/// field.
///
/// ```
/// use sagaflow_runtime::{Misfire, Schedule};
///
/// let daily = Schedule::cron("0 6 * * *")?.timezone("Europe/Paris")?;
/// let thrice = Schedule::cron_many(["0 6 * * *", "0 12 * * *", "0 18 * * *"])?;
/// let health = Schedule::every("5m")?.misfire(Misfire::Skip);
/// assert!(Schedule::cron("61 * * * *").is_err());
/// assert!(Schedule::every("0s").is_err());
/// # let _ = (daily, thrice, health);
/// # Ok::<(), sagaflow_runtime::ScheduleError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub(crate) kind: ScheduleKind,
    pub(crate) start_at: Option<DateTime<Utc>>,
    pub(crate) end_at: Option<DateTime<Utc>>,
    pub(crate) timezone: Option<Tz>,
    pub(crate) misfire: Misfire,
    pub(crate) input: Map<String, Value>,
}

impl Schedule {
    fn of(kind: ScheduleKind) -> Self {
        Schedule { kind, start_at: None, end_at: None, timezone: None, misfire: Misfire::default(), input: Map::new() }
    }

    /// Fires at every match of the cron pattern: 5 fields (`min hour dom mon dow`),
    /// 6 fields (seconds first), or a shorthand (`@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`).
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        Ok(Self::of(ScheduleKind::Cron(vec![CronExpr::parse(expr)?])))
    }

    /// Fires at every match of any of the patterns (once per instant, however many
    /// patterns match it).
    pub fn cron_many<S: AsRef<str>>(exprs: impl IntoIterator<Item = S>) -> Result<Self, ScheduleError> {
        let exprs = exprs.into_iter().map(|e| CronExpr::parse(e.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if exprs.is_empty() {
            return Err(ScheduleError::NoCronPattern);
        }
        Ok(Self::of(ScheduleKind::Cron(exprs)))
    }

    /// Fires every `interval` (at least 1ms), at absolute instants: `start_at +
    /// n × interval`, or multiples of the interval since the Unix epoch without a
    /// `start_at`. Every engine sharing a store agrees on the ticks, and they never
    /// drift.
    pub fn every(interval: impl Into<DurationArg>) -> Result<Self, ScheduleError> {
        let d = interval.into().to_duration().map_err(|source| ScheduleError::Duration { field: "every", source })?;
        if d.is_zero() {
            return Err(ScheduleError::ZeroInterval);
        }
        if d < MIN_INTERVAL {
            return Err(ScheduleError::IntervalTooShort { interval: d });
        }
        Ok(Self::of(ScheduleKind::Every(d)))
    }

    /// Fires once at `at`. A time already past when the schedule is first armed
    /// never fires; one passed while no engine ran follows the misfire policy.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self::of(ScheduleKind::At(at))
    }

    /// Fires once, `delay` after the schedule is first armed: when an engine first
    /// registers the workflow on its store. Restarts do not re-arm it.
    pub fn in_(delay: impl Into<DurationArg>) -> Result<Self, ScheduleError> {
        let d = delay.into().to_duration().map_err(|source| ScheduleError::Duration { field: "in", source })?;
        Ok(Self::of(ScheduleKind::In(d)))
    }

    /// Do not fire before `start_at` (inclusive). For `every`, the interval grid
    /// starts here.
    pub fn start_at(mut self, start_at: DateTime<Utc>) -> Result<Self, ScheduleError> {
        self.start_at = Some(start_at);
        self.check_window()?;
        Ok(self)
    }

    /// Do not fire after `end_at` (inclusive).
    pub fn end_at(mut self, end_at: DateTime<Utc>) -> Result<Self, ScheduleError> {
        self.end_at = Some(end_at);
        self.check_window()?;
        Ok(self)
    }

    /// The IANA time zone cron patterns are read in (UTC by default), such as
    /// `Europe/Paris`. Daylight-saving changes are handled as cron daemons do: a
    /// fixed time that a spring-forward day skips fires at the first instant after
    /// the gap, and a fixed time that a fall-back day repeats fires once, at its
    /// first occurrence. Patterns with a wildcard or a step in the second, minute or
    /// hour field follow real time: they skip the gap and run in both passes of
    /// a repeated hour. Intervals and one-off times are absolute and ignore it.
    pub fn timezone(mut self, tz: &str) -> Result<Self, ScheduleError> {
        let zone = tz.trim().parse::<Tz>().map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        self.timezone = Some(zone);
        Ok(self)
    }

    /// What to do with ticks missed while no engine was running (default
    /// [`Misfire::RunOnce`]).
    pub fn misfire(mut self, misfire: Misfire) -> Self {
        self.misfire = misfire;
        self
    }

    /// The input of every execution this schedule starts (a JSON object; an empty
    /// one by default).
    pub fn input(mut self, input: impl Serialize) -> Result<Self, ScheduleError> {
        match serde_json::to_value(input) {
            Ok(Value::Object(map)) => {
                self.input = map;
                Ok(self)
            }
            Ok(Value::Null) => {
                self.input = Map::new();
                Ok(self)
            }
            Ok(other) => Err(ScheduleError::Input(other.to_string())),
            Err(e) => Err(ScheduleError::Input(e.to_string())),
        }
    }

    fn check_window(&self) -> Result<(), ScheduleError> {
        if let (Some(start_at), Some(end_at)) = (self.start_at, self.end_at)
            && end_at <= start_at
        {
            return Err(ScheduleError::EmptyWindow { start_at, end_at });
        }
        if let ScheduleKind::At(at) = self.kind {
            if let Some(bound) = self.start_at
                && at < bound
            {
                return Err(ScheduleError::AtOutsideWindow { field: "start_at", side: "before", at, bound });
            }
            if let Some(bound) = self.end_at
                && at > bound
            {
                return Err(ScheduleError::AtOutsideWindow { field: "end_at", side: "after", at, bound });
            }
        }
        Ok(())
    }

    /// The trigger.
    pub fn kind(&self) -> &ScheduleKind {
        &self.kind
    }

    /// The window start.
    pub fn window_start(&self) -> Option<DateTime<Utc>> {
        self.start_at
    }

    /// The window end.
    pub fn window_end(&self) -> Option<DateTime<Utc>> {
        self.end_at
    }

    /// The time zone of cron patterns.
    pub fn tz_name(&self) -> &str {
        self.timezone.map_or("UTC", |tz| tz.name())
    }

    /// The misfire policy.
    pub fn misfire_policy(&self) -> Misfire {
        self.misfire
    }

    /// The input of the executions it starts.
    pub fn input_value(&self) -> &Map<String, Value> {
        &self.input
    }

    /// The trigger in short, as scheduled executions record it: `cron 0 6 * * *`,
    /// `cron 0 6 * * * (Europe/Paris)`, `every 5m`, `at 2025-12-25T00:00:00+00:00`,
    /// `in 30m`.
    pub fn label(&self) -> String {
        match &self.kind {
            ScheduleKind::Cron(exprs) => {
                let list: Vec<&str> = exprs.iter().map(CronExpr::as_str).collect();
                self.cron_label(&list.join(", "))
            }
            ScheduleKind::Every(d) => format!("every {}", format_duration(*d)),
            ScheduleKind::At(t) => format!("at {}", t.to_rfc3339()),
            ScheduleKind::In(d) => format!("in {}", format_duration(*d)),
        }
    }

    /// `cron <pattern>`, with the time zone when it is not UTC.
    pub(crate) fn cron_label(&self, pattern: &str) -> String {
        match self.timezone {
            Some(tz) if tz != Tz::UTC => format!("cron {pattern} ({})", tz.name()),
            _ => format!("cron {pattern}"),
        }
    }

    /// A full description: the [`label`](Self::label), then the window and a
    /// misfire policy other than the default: `every 1h from 2025-01-01T00:00:00+00:00
    /// until 2025-01-31T23:59:59+00:00`.
    pub fn describe(&self) -> String {
        let mut out = self.label();
        if let Some(s) = self.start_at {
            out.push_str(&format!(" from {}", s.to_rfc3339()));
        }
        if let Some(e) = self.end_at {
            out.push_str(&format!(" until {}", e.to_rfc3339()));
        }
        match self.misfire {
            Misfire::RunOnce => {}
            Misfire::Skip => out.push_str(", misfire skip"),
            Misfire::RunAll => out.push_str(", misfire run_all"),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bad_input_names_the_field() {
        let err = Schedule::cron("99 * * * *").unwrap_err();
        assert!(err.to_string().starts_with("invalid cron expression `99 * * * *`"), "{err}");
        assert_eq!(Schedule::every(0).unwrap_err(), ScheduleError::ZeroInterval);
        assert!(matches!(Schedule::every("5x"), Err(ScheduleError::Duration { field: "every", .. })));
        let t = Utc::now();
        let err = Schedule::every("1h").unwrap().start_at(t).unwrap().end_at(t).unwrap_err();
        assert!(matches!(err, ScheduleError::EmptyWindow { .. }));
        assert!(matches!(Schedule::every("1h").unwrap().timezone("Mars/Base"), Err(ScheduleError::TimeZone(_))));
        let err = Schedule::cron("0 0 30 2 *").unwrap_err();
        assert_eq!(err.to_string(), "invalid cron expression `0 0 30 2 *`: it never matches a date");
        assert_eq!(Schedule::cron_many(Vec::<String>::new()).unwrap_err(), ScheduleError::NoCronPattern);
        let err = Schedule::every(std::time::Duration::from_micros(10)).unwrap_err();
        assert_eq!(err.to_string(), "invalid `every`: 10µs is shorter than the minimum of 1ms");
        let err = Schedule::at(t).end_at(t - chrono::TimeDelta::hours(1)).unwrap_err();
        assert!(err.to_string().starts_with("invalid `end_at`: `at` ("), "{err}");
        assert!(matches!(
            Schedule::at(t).start_at(t + chrono::TimeDelta::hours(1)),
            Err(ScheduleError::AtOutsideWindow { field: "start_at", .. })
        ));
        assert!(matches!(Schedule::every("1m").unwrap().input(json!([1, 2])), Err(ScheduleError::Input(_))));
        let with_input = Schedule::every("1m").unwrap().input(json!({ "region": "eu" })).unwrap();
        assert_eq!(with_input.input_value()["region"], "eu");
    }

    #[test]
    fn accepts_fields_and_shorthands() {
        for ok in ["* * * * *", "*/5 * * * * *", "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "0 6 * * 1"] {
            assert!(Schedule::cron(ok).is_ok(), "{ok}");
        }
        assert_eq!(Schedule::every("5m").unwrap().describe(), "every 5m");
    }
}
