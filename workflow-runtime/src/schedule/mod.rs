//! Scheduling: when schedules fire, and the service that fires them.
//!
//! - [`fire`]: fire times as pure functions of a [`Schedule`](crate::Schedule) (cron
//!   in a time zone, interval grids, one-off times, windows).
//! - [`misfire`]: which due ticks to run, by misfire policy (pure).
//! - [`durable`]: how schedules are kept in the [`Store`](crate::store::Store).
//! - [`service`]: the engine's scheduler task: one timer for every schedule.
//! - [`stored_schedules`]: schedules and their next fire times as a store shows
//!   them, for tools without the workflows' code.

mod board;
pub(crate) mod durable;
pub(crate) mod fire;
pub(crate) mod misfire;
pub(crate) mod service;

pub use self::board::{StoredSchedule, stored_schedules};
pub use self::fire::Upcoming;
pub use self::service::ScheduleInfo;
