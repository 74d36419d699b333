//! Schedules as a store shows them, without the workflows' code: the schedules of
//! each definition snapshot (kept as their [`Schedule::describe`] text), the
//! store's records of their ticks (see [`durable`](super::durable)), and from both
//! the next fire times, computed as an engine computes them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::durable::{armed_key, decode_armed, resume_point, tick_key};
use super::fire::SearchFrom;
use crate::model::{DefinitionSnapshot, Misfire, Schedule, ScheduleError, parse_duration};

/// One schedule of a stored definition and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoredSchedule {
    /// The workflow it starts.
    pub workflow: String,
    /// Its position among the workflow's schedules.
    pub index: usize,
    /// Its key in the store (`"{workflow}#{index}"`).
    pub key: String,
    /// What it is: `cron 0 6 * * *`, `every 5m from ...`.
    pub schedule: String,
    /// Its misfire policy (`None` if the description cannot be read).
    pub misfire: Option<Misfire>,
    /// When an engine first armed it (`None`: not yet).
    pub armed_at: Option<DateTime<Utc>>,
    /// The last tick an engine claimed.
    pub last_fire: Option<DateTime<Utc>>,
    /// The next fire times, soonest first (empty once a one-off schedule fired
    /// or a window closed). The first is in the past when no engine has fired it
    /// yet: one will as soon as it runs, by the misfire policy.
    pub next: Vec<DateTime<Utc>>,
    /// Why the fire times cannot be computed (a description this build cannot
    /// read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The schedules of `defs` with their next `count` fire times, from the store's
/// last ticks (`Store::last_ticks`), as of `now` (for schedules not armed yet).
pub fn stored_schedules(
    defs: &[DefinitionSnapshot],
    ticks: &[(String, DateTime<Utc>)],
    now: DateTime<Utc>,
    count: usize,
) -> Vec<StoredSchedule> {
    let tick = |key: &str| ticks.iter().find(|(k, _)| k == key).map(|(_, t)| *t);
    let mut out = Vec::new();
    for def in defs {
        for (index, text) in def.schedules.iter().enumerate() {
            let key = tick_key(&def.name, index);
            let last_fire = tick(&key);
            let armed_at = tick(&armed_key(&def.name, index)).map(decode_armed);
            let mut row = StoredSchedule {
                workflow: def.name.clone(),
                index,
                key,
                schedule: text.clone(),
                misfire: None,
                armed_at,
                last_fire,
                next: Vec::new(),
                problem: None,
            };
            match Schedule::from_description(text) {
                Ok(schedule) => {
                    row.misfire = Some(schedule.misfire_policy());
                    let armed = armed_at.unwrap_or(now);
                    let mut from = resume_point(last_fire, armed);
                    while row.next.len() < count {
                        let Some(fire) = schedule.next_fire(from, armed) else { break };
                        row.next.push(fire.at);
                        from = SearchFrom::After(fire.at);
                    }
                }
                Err(e) => row.problem = Some(e.to_string()),
            }
            out.push(row);
        }
    }
    out
}

impl Schedule {
    /// Reads back what [`describe`](Self::describe) wrote (without the input of
    /// the executions, which a description does not carry): `cron 0 6 * * *
    /// (Europe/Paris)`, `every 5m from 2025-01-01T00:00:00+00:00`, `at ...`,
    /// `in 30m, misfire skip`.
    ///
    /// ```
    /// use sagaflow_runtime::{Misfire, Schedule};
    /// let s = Schedule::cron("0 6 * * 1")?.timezone("Europe/Paris")?.misfire(Misfire::Skip);
    /// assert_eq!(Schedule::from_description(&s.describe()), Ok(s));
    /// # Ok::<(), sagaflow_runtime::ScheduleError>(())
    /// ```
    pub fn from_description(text: &str) -> Result<Schedule, ScheduleError> {
        let fail = |reason: String| ScheduleError::Description { text: text.to_owned(), reason };
        let mut rest = text.trim();
        let mut misfire = Misfire::RunOnce;
        if let Some(r) = rest.strip_suffix(", misfire skip") {
            (rest, misfire) = (r, Misfire::Skip);
        } else if let Some(r) = rest.strip_suffix(", misfire run_all") {
            (rest, misfire) = (r, Misfire::RunAll);
        }
        let instant = |t: &str| {
            DateTime::parse_from_rfc3339(t.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| fail(format!("`{t}` is not an RFC 3339 time: {e}")))
        };
        let mut end_at = None;
        if let Some((r, t)) = rest.rsplit_once(" until ") {
            end_at = Some(instant(t)?);
            rest = r;
        }
        let mut start_at = None;
        if let Some((r, t)) = rest.rsplit_once(" from ") {
            start_at = Some(instant(t)?);
            rest = r;
        }
        let duration = |d: &str| match parse_duration(d) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(fail("an infinite duration".into())),
            Err(e) => Err(fail(e.to_string())),
        };
        let (word, arg) = rest.split_once(' ').ok_or_else(|| fail("expected `cron`, `every`, `at` or `in`".into()))?;
        let mut schedule = match word {
            "cron" => {
                let (patterns, zone) = match arg.strip_suffix(')').and_then(|a| a.rsplit_once(" (")) {
                    Some((p, z)) => (p, Some(z)),
                    None => (arg, None),
                };
                let s = Schedule::cron_many(patterns.split(", ")).map_err(|e| fail(e.to_string()))?;
                match zone {
                    Some(z) => s.timezone(z).map_err(|e| fail(e.to_string()))?,
                    None => s,
                }
            }
            "every" => Schedule::every(duration(arg)?).map_err(|e| fail(e.to_string()))?,
            "at" => Schedule::at(instant(arg)?),
            "in" => Schedule::in_(duration(arg)?).map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("unknown kind `{other}`; expected `cron`, `every`, `at` or `in`"))),
        };
        if let Some(t) = start_at {
            schedule = schedule.start_at(t).map_err(|e| fail(e.to_string()))?;
        }
        if let Some(t) = end_at {
            schedule = schedule.end_at(t).map_err(|e| fail(e.to_string()))?;
        }
        Ok(schedule.misfire(misfire))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::schedule::durable::encode_armed;

    #[test]
    fn descriptions_read_back() {
        let t = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap();
        let all = [
            Schedule::cron("0 6 * * *").unwrap(),
            Schedule::cron_many(["0 6,12 * * *", "*/15 9-17 * * 1-5"]).unwrap().timezone("America/New_York").unwrap(),
            Schedule::every("1h30m").unwrap().start_at(t).unwrap().end_at(t + chrono::TimeDelta::days(3)).unwrap(),
            Schedule::every("250ms").unwrap().misfire(Misfire::RunAll),
            Schedule::at(t),
            Schedule::in_("30m").unwrap().misfire(Misfire::Skip),
        ];
        for s in all {
            assert_eq!(Schedule::from_description(&s.describe()).as_ref(), Ok(&s), "{}", s.describe());
        }
        let err = Schedule::from_description("fortnightly").unwrap_err();
        assert!(matches!(&err, ScheduleError::Description { text, .. } if text == "fortnightly"), "{err:?}");
        assert!(err.to_string().contains("`fortnightly`"), "{err}");
        assert!(Schedule::from_description("every soon").is_err());
    }

    #[test]
    fn next_fires_follow_the_stored_ticks() {
        let def = |schedules: Vec<String>| {
            let mut d = crate::builder::Workflow::new("nightly")
                .step("s", |_ctx: crate::model::Context| async {
                    Ok::<_, crate::model::StepError>(crate::model::Outcome::Done)
                })
                .build()
                .unwrap()
                .snapshot();
            d.schedules = schedules;
            d
        };
        let now = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).unwrap();
        let armed = now - chrono::TimeDelta::days(10);
        let last = Utc.with_ymd_and_hms(2025, 6, 1, 3, 0, 0).unwrap();
        let defs = [def(vec!["cron 0 3 * * *".into(), "in 1h".into(), "hourly".into()])];
        let ticks = vec![
            ("nightly#0".to_owned(), last),
            ("nightly#0:armed".to_owned(), encode_armed(armed)),
            ("nightly#1:armed".to_owned(), encode_armed(armed)),
        ];
        let rows = stored_schedules(&defs, &ticks, now, 3);
        assert_eq!(rows.len(), 3);
        let day = |d| Utc.with_ymd_and_hms(2025, 6, d, 3, 0, 0).unwrap();
        assert_eq!(rows[0].next, vec![day(2), day(3), day(4)], "after the last tick, missed ones first");
        assert_eq!(
            (rows[0].armed_at, rows[0].last_fire, rows[0].misfire),
            (Some(armed), Some(last), Some(Misfire::RunOnce))
        );
        assert_eq!(rows[1].next, vec![armed + chrono::TimeDelta::hours(1)], "`in` counts from the arming");
        assert!(rows[2].problem.as_deref().is_some_and(|p| p.contains("hourly")), "{:?}", rows[2].problem);
        assert!(rows[2].next.is_empty());
    }
}
