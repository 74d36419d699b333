//! Schedules as data: cron patterns, intervals, one-off times and windows.
//! Computing fire times is the scheduler's job (`crate::schedule`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::duration::{DurationArg, DurationError, format_duration};

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
    /// `every` is zero.
    #[error("invalid `every`: the interval must be greater than zero")]
    ZeroInterval,
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
    /// Unknown IANA time zone.
    #[error("invalid `timezone`: unknown time zone `{0}`")]
    TimeZone(String),
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

/// What happens to ticks missed while no engine was running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// One catch-up run for all the missed ticks (the default).
    #[default]
    RunOnce,
    /// Drop missed ticks; wait for the next one.
    Skip,
    /// Run once per missed tick.
    RunAll,
}

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleKind {
    /// At every match of any of these cron patterns.
    Cron(Vec<CronExpr>),
    /// Every fixed interval.
    Every(Duration),
    /// Once, at this instant.
    At(DateTime<Utc>),
    /// Once, this long after the engine registers the workflow.
    In(Duration),
}

/// A schedule of a workflow: a trigger, an optional window, a time zone for cron
/// patterns, and a misfire policy.
///
/// ```
/// use sagaflow_runtime::Schedule;
///
/// let daily = Schedule::cron("0 6 * * *")?;
/// let thrice = Schedule::cron_many(["0 6 * * *", "0 12 * * *", "0 18 * * *"])?;
/// let health = Schedule::every("5m")?;
/// assert!(Schedule::cron("61 * * * *").is_err());
/// # let _ = (daily, thrice, health);
/// # Ok::<(), sagaflow_runtime::ScheduleError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub(crate) kind: ScheduleKind,
    pub(crate) start_at: Option<DateTime<Utc>>,
    pub(crate) end_at: Option<DateTime<Utc>>,
    pub(crate) timezone: Option<String>,
    pub(crate) misfire: Misfire,
}

impl Schedule {
    fn of(kind: ScheduleKind) -> Self {
        Schedule { kind, start_at: None, end_at: None, timezone: None, misfire: Misfire::default() }
    }

    /// Fires at every match of the cron pattern.
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        Ok(Self::of(ScheduleKind::Cron(vec![CronExpr::parse(expr)?])))
    }

    /// Fires at every match of any of the patterns.
    pub fn cron_many<S: AsRef<str>>(exprs: impl IntoIterator<Item = S>) -> Result<Self, ScheduleError> {
        let exprs = exprs.into_iter().map(|e| CronExpr::parse(e.as_ref())).collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(ScheduleKind::Cron(exprs)))
    }

    /// Fires every `interval`.
    pub fn every(interval: impl Into<DurationArg>) -> Result<Self, ScheduleError> {
        let d = interval.into().to_duration().map_err(|source| ScheduleError::Duration { field: "every", source })?;
        if d.is_zero() {
            return Err(ScheduleError::ZeroInterval);
        }
        Ok(Self::of(ScheduleKind::Every(d)))
    }

    /// Fires once at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self::of(ScheduleKind::At(at))
    }

    /// Fires once, `delay` after the engine starts.
    pub fn in_(delay: impl Into<DurationArg>) -> Result<Self, ScheduleError> {
        let d = delay.into().to_duration().map_err(|source| ScheduleError::Duration { field: "in", source })?;
        Ok(Self::of(ScheduleKind::In(d)))
    }

    /// Do not fire before `start_at`.
    pub fn start_at(mut self, start_at: DateTime<Utc>) -> Result<Self, ScheduleError> {
        self.start_at = Some(start_at);
        self.check_window()?;
        Ok(self)
    }

    /// Do not fire after `end_at`.
    pub fn end_at(mut self, end_at: DateTime<Utc>) -> Result<Self, ScheduleError> {
        self.end_at = Some(end_at);
        self.check_window()?;
        Ok(self)
    }

    /// The IANA time zone cron patterns are read in (UTC by default).
    pub fn timezone(mut self, tz: &str) -> Result<Self, ScheduleError> {
        if tz != "UTC" && tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(ScheduleError::TimeZone(tz.to_owned()));
        }
        self.timezone = Some(tz.to_owned());
        Ok(self)
    }

    /// What to do with ticks missed while the engine was down.
    pub fn misfire(mut self, misfire: Misfire) -> Self {
        self.misfire = misfire;
        self
    }

    fn check_window(&self) -> Result<(), ScheduleError> {
        if let (Some(start_at), Some(end_at)) = (self.start_at, self.end_at)
            && end_at <= start_at
        {
            return Err(ScheduleError::EmptyWindow { start_at, end_at });
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
        self.timezone.as_deref().unwrap_or("UTC")
    }

    /// The misfire policy.
    pub fn misfire_policy(&self) -> Misfire {
        self.misfire
    }

    /// A short description: `cron 0 6 * * *`, `every 5m`, `at 2025-12-25T00:00:00Z`.
    pub fn describe(&self) -> String {
        match &self.kind {
            ScheduleKind::Cron(exprs) => {
                let list: Vec<&str> = exprs.iter().map(CronExpr::as_str).collect();
                format!("cron {}", list.join(", "))
            }
            ScheduleKind::Every(d) => format!("every {}", format_duration(*d)),
            ScheduleKind::At(t) => format!("at {}", t.to_rfc3339()),
            ScheduleKind::In(d) => format!("in {}", format_duration(*d)),
        }
    }
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn accepts_fields_and_shorthands() {
        for ok in ["* * * * *", "*/5 * * * * *", "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "0 6 * * 1"] {
            assert!(Schedule::cron(ok).is_ok(), "{ok}");
        }
        assert_eq!(Schedule::every("5m").unwrap().describe(), "every 5m");
    }
}
