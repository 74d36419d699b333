//! Execution events: what happened to an execution. The machine's only input,
//! and the journal's content. (The public [`Event`](crate::Event) is telemetry:
//! what subscribers hear; it is built from these, and never journaled.)

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::ids::StepId;
use crate::model::{ExecutionId, StepBody, StepError, StepPolicy};

/// Identifies an armed timer within one execution.
pub(crate) type TimerId = u32;

/// What one step attempt produced, in the form the machine consumes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StepReport {
    /// Success without output.
    Done,
    /// Success with an output.
    Output { value: Value },
    /// The step skipped itself.
    Skip { reason: String },
    /// Park until resumed.
    Await { spec: Box<AwaitSpec> },
    /// Run again after the delay.
    Snooze {
        #[serde(with = "crate::model::serde_duration")]
        delay: Duration,
    },
    /// A graft added steps.
    Expand { steps: Vec<GraftedStep> },
    /// The attempt failed. `jitter` is a sample in `[0, 1)` drawn by the executor,
    /// so the machine itself stays deterministic.
    Failed { error: StepError, jitter: f64 },
}

/// A pending approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AwaitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub(crate) timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) notify: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) approvers: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub(crate) data: Map<String, Value>,
    /// Waits for this signal rather than for `resume` (see `machine/signal.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<Arc<str>>,
    /// When the signal arrives, the step runs again instead of completing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) rerun: bool,
}

/// A step added by a graft. The body and policy are not journaled: recovery gets
/// them back by running the graft function again.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct GraftedStep {
    pub(crate) name: Arc<str>,
    #[serde(skip)]
    pub(crate) body: Option<StepBody>,
    #[serde(skip)]
    pub(crate) policy: Option<Arc<StepPolicy>>,
}

impl std::fmt::Debug for GraftedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Which workflow-level handler finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the names are those of the workflow options
pub(crate) enum HandlerKind {
    OnFailure,
    OnSuccess,
    OnCancel,
}

impl HandlerKind {
    /// The option's name: `on_failure`, `on_success` or `on_cancel`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HandlerKind::OnFailure => "on_failure",
            HandlerKind::OnSuccess => "on_success",
            HandlerKind::OnCancel => "on_cancel",
        }
    }
}

/// Something that happened to an execution.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum ExecutionEvent {
    /// A step attempt ended.
    StepFinished { step: StepId, attempt: u32, report: StepReport, at: DateTime<Utc> },
    /// A timer came due.
    TimerFired { timer: TimerId, at: DateTime<Utc> },
    /// `resume`: unpause and/or complete awaiting steps with `data`.
    Resumed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        data: Map<String, Value>,
        at: DateTime<Utc>,
    },
    /// `pause`.
    Paused { at: DateTime<Utc> },
    /// `cancel`.
    Cancelled { reason: String, cleanup: bool, rollback: bool, at: DateTime<Utc> },
    /// A compensation attempt ended.
    CompensationFinished {
        step: StepId,
        attempt: u32,
        #[serde(with = "unit_result")]
        result: Result<(), StepError>,
        at: DateTime<Utc>,
    },
    /// A workflow-level handler ended.
    HandlerFinished {
        handler: HandlerKind,
        #[serde(with = "unit_result")]
        result: Result<(), StepError>,
        at: DateTime<Utc>,
    },
    /// A nested-workflow step started its child execution.
    ChildStarted { step: StepId, attempt: u32, child: ExecutionId, at: DateTime<Utc> },
    /// The process restarted: steps that were running run again.
    Recovered { at: DateTime<Utc> },
    /// The engine gave up on the execution (its driver failed, a bug): it ends
    /// `Failed` with this error.
    Aborted { error: StepError, at: DateTime<Utc> },
    /// `signal`: the signal `name` arrived with `payload` (see `machine/signal.rs`).
    Signalled { name: Arc<str>, payload: Value, at: DateTime<Utc> },
    /// Attempt `attempt` of the running step `step` took the oldest buffered
    /// signal `name` (`ctx.signal`): it stays with the step until the step ends.
    SignalTaken { step: StepId, attempt: u32, name: Arc<str>, at: DateTime<Utc> },
}

impl ExecutionEvent {
    /// When it happened.
    pub(crate) fn at(&self) -> DateTime<Utc> {
        match self {
            ExecutionEvent::StepFinished { at, .. }
            | ExecutionEvent::TimerFired { at, .. }
            | ExecutionEvent::Resumed { at, .. }
            | ExecutionEvent::Paused { at }
            | ExecutionEvent::Cancelled { at, .. }
            | ExecutionEvent::CompensationFinished { at, .. }
            | ExecutionEvent::HandlerFinished { at, .. }
            | ExecutionEvent::ChildStarted { at, .. }
            | ExecutionEvent::Recovered { at }
            | ExecutionEvent::Aborted { at, .. }
            | ExecutionEvent::Signalled { at, .. }
            | ExecutionEvent::SignalTaken { at, .. } => *at,
        }
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

mod unit_result {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::StepError;

    pub(crate) fn serialize<S: Serializer>(r: &Result<(), StepError>, s: S) -> Result<S::Ok, S::Error> {
        r.as_ref().err().serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Result<(), StepError>, D::Error> {
        Ok(match Option::<StepError>::deserialize(d)? {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }
}
