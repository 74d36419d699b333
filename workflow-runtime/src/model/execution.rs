//! [`ExecutionState`]: the public view of an execution (the machine builds it,
//! stores keep it), and the types it is made of.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::status::{Status, StepStatus};
use super::{ExecutionId, StepError, StepName};

/// How an execution was started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// `engine.start`.
    #[default]
    Manual,
    /// `engine.schedule_execution`, for this time.
    Delayed {
        /// When it was due.
        at: DateTime<Utc>,
    },
    /// A schedule fired.
    Scheduled {
        /// The schedule (`cron 0 6 * * *`, `every 5m`...).
        schedule: String,
        /// The tick this execution is for.
        fire_time: DateTime<Utc>,
    },
    /// `engine.emit` of this event.
    Event {
        /// The event name.
        name: String,
    },
    /// A nested-workflow step of a parent execution.
    Parent {
        /// The parent execution.
        execution: ExecutionId,
        /// The parent's step.
        step: String,
    },
    /// Replay of a dead letter.
    Replay {
        /// The dead execution replayed.
        of: ExecutionId,
    },
    /// `engine.restart_from`: a restart of an ended execution from one of its
    /// steps.
    Restart {
        /// The ended execution.
        of: ExecutionId,
        /// The step it restarts from.
        from: String,
    },
}

impl Trigger {
    /// `manual`, `delayed`, `scheduled`, `event`, `parent`, `replay` or `restart`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Delayed { .. } => "delayed",
            Trigger::Scheduled { .. } => "scheduled",
            Trigger::Event { .. } => "event",
            Trigger::Parent { .. } => "parent",
            Trigger::Replay { .. } => "replay",
            Trigger::Restart { .. } => "restart",
        }
    }
}

/// Done and total steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps that have ended (completed, skipped, failed).
    pub done: u32,
    /// All steps, including those added by grafts so far.
    pub total: u32,
}

/// One step of an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// Name.
    pub name: StepName,
    /// Status.
    pub status: StepStatus,
    /// Attempts started.
    pub attempts: u32,
    /// When the latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The latest error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// The graft that added it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graft: Option<String>,
    /// The child execution of a nested-workflow step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ExecutionId>,
    /// Why its compensation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_error: Option<StepError>,
    /// The step's earlier attempts, oldest first: failed attempts that were
    /// retried, snoozes, attempts cut short by a crash. The latest attempt is the
    /// step's own `attempts`, `started_at`, `ended_at`, `status` and `error`; a step
    /// that ran once has no history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptInfo>,
    /// Every attempt of its compensation, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensations: Vec<AttemptInfo>,
}

/// One attempt of a step or of its compensation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptInfo {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (`None` while it runs or waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended: `ok`, `error`, `snoozed`, `interrupted` (the process
    /// stopped), or `running` for a compensation still at work.
    pub outcome: String,
    /// Its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// A step waiting for `resume`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AwaitInfo {
    /// The step.
    pub step: String,
    /// Whom to notify (free-form, from the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Value>,
    /// Who may approve (free-form, from the step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Value>,
    /// Other data from the step.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    /// When the await times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_at: Option<DateTime<Utc>>,
    /// The signal the step waits for ([`Outcome::await_signal`](crate::Outcome::await_signal));
    /// `None` when it waits for `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// A signal sent to an execution ([`Engine::signal`](crate::Engine::signal)) and not
/// consumed yet: buffered until a step waits for it or takes it, or held by the
/// step that received it until that step ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// The signal's name.
    pub name: String,
    /// What was sent.
    pub payload: Value,
    /// When the execution received it.
    pub received_at: DateTime<Utc>,
    /// The step that received it and has not ended yet; `None` while it is
    /// buffered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Why an execution failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// The step that failed (`None` for a workflow timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The error.
    pub error: StepError,
    /// Attempts made.
    pub attempts: u32,
}

/// What the rollback did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackReport {
    /// Compensated steps, in the order their compensations ran.
    pub compensated: Vec<String>,
    /// Steps whose compensation failed, with the error.
    pub failed: Vec<(String, StepError)>,
    /// Compensations not run yet.
    pub remaining: Vec<String>,
}

/// The state of one execution, as `get_state` and `wait` return it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionState {
    /// Execution id.
    pub id: ExecutionId,
    /// Workflow name.
    pub workflow: String,
    /// Definition version the execution runs.
    pub version: String,
    /// Status.
    pub status: Status,
    /// Steps running now.
    pub running: Vec<String>,
    /// The first running step, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// Done / total steps.
    pub progress: Progress,
    /// The context.
    pub context: Map<String, Value>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Time from start to end (or to now, while it runs).
    #[serde(with = "crate::model::serde_duration")]
    pub duration: Duration,
    /// Workflow attempt (above 1 after workflow-level retries).
    pub attempt: u32,
    /// Every step.
    pub steps: Vec<StepState>,
    /// Steps waiting for `resume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<AwaitInfo>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureInfo>,
    /// What the rollback did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackReport>,
    /// Why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// Errors of `on_failure` / `on_success` / `on_cancel` handlers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handler_errors: Vec<StepError>,
    /// The parent execution, for a nested workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ExecutionId>,
    /// How it was started.
    pub trigger: Trigger,
    /// Why recovery parked it (its definition changed incompatibly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<String>,
    /// Signals not consumed yet, in arrival order (see [`PendingSignal`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<PendingSignal>,
    /// Its input: the context as it started.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input: Map<String, Value>,
    /// What each step that returned an output returned, by step name (what
    /// `ctx.output_as` reads, and what [`Engine::restart_from`](crate::Engine::restart_from)
    /// keeps).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub outputs: Map<String, Value>,
}

impl ExecutionState {
    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Children started by nested-workflow steps.
    pub fn children(&self) -> Vec<ExecutionId> {
        self.steps.iter().filter_map(|s| s.child).collect()
    }

    /// The context value under `key`, deserialized.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.context.get(key).and_then(|v| T::deserialize(v).ok())
    }

    /// The signals named `name` that no step has received yet, oldest first.
    pub fn buffered_signals<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PendingSignal> + 'a {
        self.signals.iter().filter(move |s| s.name == name && s.step.is_none())
    }
}
