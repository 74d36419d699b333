//! Commands: what the executor must do next. Notices: what the machine decided, for
//! telemetry.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::event::{HandlerKind, TimerId};
use crate::model::ids::StepId;
use crate::model::status::Status;
use crate::model::{ExecutionId, StepError};

/// Why a timer was armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Run a failed step again.
    Retry(StepId),
    /// Run a snoozed step again.
    Snooze(StepId),
    /// An awaiting step was not resumed in time.
    AwaitTimeout(StepId),
    /// The whole execution ran out of time.
    WorkflowTimeout,
    /// Restart the workflow after a failure.
    WorkflowRetry,
    /// Run a failed compensation again.
    CompensationRetry(StepId),
}

/// Something the executor must carry out.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    /// Run attempt `attempt` of a task or graft step (`on_timeout`: run the step's
    /// await-timeout handler instead of its body).
    RunStep { step: StepId, attempt: u32, on_timeout: bool },
    /// Start (or, after recovery, re-attach to) the child execution of a
    /// nested-workflow step.
    StartChild { step: StepId, attempt: u32 },
    /// Wake the executor at `due`.
    ArmTimer { timer: TimerId, due: DateTime<Utc> },
    /// The timer is no longer needed.
    CancelTimer { timer: TimerId, due: DateTime<Utc> },
    /// Stop a running step: a step that has not begun never does, a
    /// cancellable one's future is dropped, a step that is not cancellable
    /// runs to its end.
    Interrupt {
        step: StepId,
        /// Cancelled (not failing): the step gets its grace period first.
        graceful: bool,
    },
    /// Cancel a child execution.
    CancelChild { child: ExecutionId, reason: String },
    /// Tell running steps that the execution is being cancelled (`ctx.is_cancelled()`).
    SignalCancel,
    /// Run the compensation of a completed step.
    RunCompensation { step: StepId, attempt: u32 },
    /// Run a workflow-level handler.
    RunHandler { handler: HandlerKind },
    /// Run `on_step_error` for a failed attempt (fire and forget).
    StepErrorHook { step: StepId, error: StepError, attempt: u32 },
    /// Something worth telling observers.
    Notify(Box<Notice>),
    /// The execution ended.
    Finish { status: Status },
}

impl Command {
    /// A notice for observers.
    pub(crate) fn notify(notice: Notice) -> Self {
        Command::Notify(Box::new(notice))
    }
}

/// A decision of the machine that observers (telemetry, subscribers) care about.
#[derive(Clone, Debug)]
pub(crate) enum Notice {
    StepSkipped {
        step: StepId,
        reason: String,
    },
    StepRetrying {
        step: StepId,
        attempt: u32,
        delay: Duration,
        error: StepError,
    },
    StepFailed {
        step: StepId,
        attempt: u32,
        error: StepError,
    },
    StepAwaiting {
        step: StepId,
    },
    StepSnoozed {
        step: StepId,
        delay: Duration,
    },
    StepExpanded {
        step: StepId,
        added: u32,
    },
    Paused {
        running: Vec<StepId>,
    },
    Resumed,
    Cancelling {
        reason: String,
    },
    RollbackStarted {
        steps: Vec<StepId>,
    },
    RollbackFinished {
        compensated: Vec<StepId>,
        failed: Vec<StepId>,
        duration: Duration,
    },
    Restarting {
        attempt: u32,
        delay: Duration,
    },
    WorkflowFailed {
        step: Option<StepId>,
        error: StepError,
    },
    /// A signal arrived: it completed or woke the waiting `step`, or was buffered.
    SignalReceived {
        name: std::sync::Arc<str>,
        step: Option<StepId>,
    },
    /// A running step took a buffered signal.
    SignalTaken {
        name: std::sync::Arc<str>,
        step: StepId,
    },
}
