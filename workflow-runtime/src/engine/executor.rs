//! The imperative shell around the state machine: one driver task per active
//! execution polls its step futures, feeds results to the machine and carries out
//! the machine's commands.
//!
//! An execution whose steps are all parked (awaiting, snoozed, waiting for a retry)
//! has no task at all: its state sits in the engine's table and the next event (a
//! timer, `resume`, `cancel`) starts a driver again.
//!
//! The write-ahead rule lives here, where commands leave the machine: the driver
//! holds what the machine asked for until the journal ticket of the events that
//! asked for it (the execution's creation included) is durable, then carries it
//! all out. One group commit wakes every driver it made ready.

mod actions;
mod carry_out;
mod child;
mod driver;
mod execution;
mod jobs;
mod journaling;

pub(crate) use self::driver::drive;
pub(crate) use self::execution::Execution;
pub(crate) use self::journaling::Journaling;
