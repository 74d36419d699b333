//! What an engine shows of a schedule it runs.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::Misfire;

/// One schedule as an engine runs it (see [`Engine::schedules`](crate::Engine::schedules)).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The workflow it starts.
    pub workflow: String,
    /// Its position among the workflow's schedules.
    pub index: usize,
    /// Its key in the store (`"{workflow}#{index}"`).
    pub key: String,
    /// What it is: `cron 0 6 * * *`, `every 5m from ...`.
    pub schedule: String,
    /// Its misfire policy.
    pub misfire: Misfire,
    /// When it was first armed, on this engine or another sharing the store.
    pub armed_at: DateTime<Utc>,
    /// The last tick known to be claimed (by this engine, or found in the store
    /// when the schedule was armed).
    pub last_fire: Option<DateTime<Utc>>,
    /// The next tick, or `None` once a one-off schedule has fired or a window has
    /// closed.
    pub next_fire: Option<DateTime<Utc>>,
}
