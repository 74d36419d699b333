//! Slot storage: the per-step state of an execution, and the log of attempts
//! that ended without ending their step.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Machine;
use super::event::AwaitSpec;
use crate::model::context::Data;
use crate::model::ids::StepId;
use crate::model::status::StepStatus;
use crate::model::{ExecutionId, StepError};

/// A moment stored in 8 bytes: microseconds since the Unix epoch, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(i64);

impl Default for Stamp {
    fn default() -> Self {
        Stamp::NONE
    }
}

impl Stamp {
    pub(crate) const NONE: Stamp = Stamp(i64::MIN);

    pub(crate) fn of(at: DateTime<Utc>) -> Self {
        Stamp(at.timestamp_micros())
    }

    pub(crate) fn get(self) -> Option<DateTime<Utc>> {
        if self == Self::NONE { None } else { crate::model::timestamp::from_micros(self.0) }
    }
}

/// Per-step facts that most steps never need.
#[derive(Clone, Debug, Default)]
pub(crate) struct Detail {
    pub(crate) error: Option<StepError>,
    pub(crate) skip_reason: Option<Box<str>>,
    /// Who to notify and other data of a pending approval, when the step gave any.
    pub(crate) await_info: Option<Box<AwaitSpec>>,
    pub(crate) await_timeout: Option<Duration>,
    pub(crate) await_due: Stamp,
    /// The context as it was when the step completed (steps with a rollback only).
    pub(crate) snapshot: Option<Data>,
    /// The child execution of a nested-workflow step, and the attempt that started it.
    pub(crate) child: Option<Box<(ExecutionId, u32)>>,
    pub(crate) compensation_error: Option<StepError>,
}

#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) status: StepStatus,
    pub(super) any_done: bool,
    /// The running attempt is the `on_timeout` handler of an await, not the body.
    pub(super) on_timeout: bool,
    pub(crate) attempt: u32,
    pub(super) retries: u32,
    /// Dependencies (`after`) that have not completed yet.
    pub(super) unmet: u32,
    pub(super) any_left: u32,
    pub(super) graft_left: u32,
    pub(super) started: Stamp,
    pub(super) ended: Stamp,
    pub(crate) detail: Option<Box<Detail>>,
}

impl Slot {
    pub(super) fn new(unmet: u32, any: u32) -> Self {
        Slot {
            status: StepStatus::Pending,
            attempt: 0,
            retries: 0,
            unmet,
            any_left: any,
            any_done: false,
            on_timeout: false,
            graft_left: 0,
            started: Stamp::NONE,
            ended: Stamp::NONE,
            detail: None,
        }
    }

    pub(super) fn detail(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(Default::default)
    }

    pub(crate) fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started.get()
    }

    pub(crate) fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.ended.get()
    }
}

/// An attempt that ended without ending its step (a failure that is retried, a
/// snooze, an attempt cut short by a crash), or an attempt of a compensation:
/// what the timeline of every attempt shows beside each step's latest attempt.
#[derive(Clone, Debug)]
pub(crate) struct AttemptLog {
    pub(crate) step: StepId,
    pub(crate) attempt: u32,
    /// A compensation's attempt, not the step's.
    pub(crate) compensation: bool,
    pub(crate) started: Stamp,
    pub(crate) ended: Stamp,
    /// `error`, `snoozed`, `interrupted` (the process stopped), `ok`.
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<StepError>,
}

impl Machine {
    pub(crate) fn step_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn slot(&self, id: StepId) -> &Slot {
        &self.slots[id as usize]
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = (StepId, &Slot)> {
        self.slots.iter().enumerate().map(|(i, s)| (i as StepId, s))
    }

    /// The child execution started by the current attempt of a nested-workflow step.
    pub(crate) fn current_child(&self, step: StepId) -> Option<ExecutionId> {
        let slot = &self.slots[step as usize];
        slot.detail.as_ref().and_then(|d| d.child.as_deref()).filter(|c| c.1 == slot.attempt).map(|c| c.0)
    }

    pub(crate) fn running_steps(&self) -> Vec<StepId> {
        self.slots().filter(|(_, s)| s.status == StepStatus::Running).map(|(i, _)| i).collect()
    }

    /// Records an attempt that ended without ending its step.
    pub(super) fn log_attempt(
        &mut self,
        step: StepId,
        outcome: &'static str,
        error: Option<StepError>,
        at: DateTime<Utc>,
    ) {
        let slot = &self.slots[step as usize];
        let entry = AttemptLog {
            step,
            attempt: slot.attempt,
            compensation: false,
            started: slot.started,
            ended: Stamp::of(at),
            outcome,
            error,
        };
        self.attempt_log.get_or_insert_with(Default::default).push(entry);
    }
}
