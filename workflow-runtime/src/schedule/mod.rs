//! Scheduling, pure: when schedules fire, which due ticks run, and how schedules
//! are kept in the store. The engine's scheduler task (`engine::scheduler`) fires
//! them.
//!
//! - [`fire`]: fire times as pure functions of a [`Schedule`](crate::Schedule) (cron
//!   in a time zone, interval grids, one-off times, windows).
//! - [`misfire`]: which due ticks to run, by misfire policy (pure).
//! - [`durable`]: how schedules are kept in the [`Store`](crate::store::Store).
//! - [`ScheduleInfo`]: a schedule as an engine runs it.
//! - [`stored_schedules`]: schedules and their next fire times as a store shows
//!   them, for tools without the workflows' code.

mod board;
pub(crate) mod durable;
pub(crate) mod fire;
mod info;
pub(crate) mod misfire;

pub use self::board::{StoredSchedule, stored_schedules};
pub use self::fire::Upcoming;
pub use self::info::ScheduleInfo;
