//! Telemetry: a typed [`Event`] for every row of the reference's telemetry table,
//! delivered to [`Subscription`]s and logged through `tracing`.
//!
//! Every execution and every step attempt also runs inside a `tracing` span
//! (`sagaflow.execution`, `sagaflow.step`) carrying the workflow, execution id, step
//! and attempt, so log lines written by steps are attributed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::status::Status;
use crate::model::{ExecutionId, StepError};

/// Buffer of each subscription; a subscriber that falls this far behind loses the
/// oldest events instead of slowing the engine.
pub const SUBSCRIPTION_BUFFER: usize = 8192;

/// Something that happened, as observers see it. Field names follow the
/// reference's telemetry table (`[:events, :scheduler, :workflow, ...]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// `[:start]`: an execution started.
    WorkflowStart {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// `manual`, `scheduled`, `event`, `delayed`, `parent` or `replay`.
        trigger_type: &'static str,
    },
    /// `[:stop]`: an execution ended.
    WorkflowStop {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Its final status.
        state: Status,
        /// Measurement: time from start to end.
        #[serde(with = "crate::model::serde_duration")]
        duration: Duration,
    },
    /// `[:fail]`: an execution failed (before its rollback).
    WorkflowFail {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The error.
        error: StepError,
        /// The step that failed (`None` for a workflow timeout).
        error_step: Option<Arc<str>>,
    },
    /// `[:cancel]`: an execution was cancelled.
    WorkflowCancel {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The reason given.
        reason: String,
    },
    /// `[:pause]`: an execution was paused.
    WorkflowPause {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The step that was running, if any.
        step_name: Option<Arc<str>>,
    },
    /// `[:resume]`: a paused or awaiting execution was resumed.
    WorkflowResume {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
    },
    /// `[:step, :start]`: a step attempt started.
    StepStart {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Step.
        step_name: Arc<str>,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// `[:step, :stop]`: a step attempt succeeded.
    StepStop {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Step.
        step_name: Arc<str>,
        /// Measurement: the attempt's duration.
        #[serde(with = "crate::model::serde_duration")]
        duration: Duration,
        /// `ok`, `skip`, `await`, `snooze` or `expand`.
        result: &'static str,
    },
    /// `[:step, :skip]`: a step was skipped.
    StepSkip {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Step.
        step_name: Arc<str>,
        /// Why.
        reason: String,
    },
    /// `[:step, :exception]`: a step attempt failed.
    StepException {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Step.
        step_name: Arc<str>,
        /// Measurement: the attempt's duration.
        #[serde(with = "crate::model::serde_duration")]
        duration: Duration,
        /// The error kind.
        kind: String,
        /// The error message.
        reason: String,
    },
    /// `[:rollback, :start]`: compensations begin.
    RollbackStart {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Steps to compensate, in order.
        steps: Vec<Arc<str>>,
    },
    /// `[:rollback, :stop]`: compensations ended.
    RollbackStop {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// Measurement: time the rollback took.
        #[serde(with = "crate::model::serde_duration")]
        duration: Duration,
        /// Steps that were compensated.
        steps: Vec<Arc<str>>,
        /// Steps whose compensation failed.
        failed: Vec<Arc<str>>,
    },
    /// `[:rollback, :step, :start]`: an attempt of one step's compensation started.
    RollbackStepStart {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The step being compensated.
        step_name: Arc<str>,
        /// Attempt number of the compensation, from 1.
        attempt: u32,
    },
    /// `[:rollback, :step, :stop]`: an attempt of one step's compensation ended.
    RollbackStepStop {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The step being compensated.
        step_name: Arc<str>,
        /// Attempt number of the compensation, from 1.
        attempt: u32,
        /// Measurement: the attempt's duration.
        #[serde(with = "crate::model::serde_duration")]
        duration: Duration,
        /// Why it failed; `None` when it succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    /// `[:signal, :receive]`: a signal arrived ([`Engine::signal`](crate::Engine::signal)).
    SignalReceive {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The signal's name.
        signal_name: Arc<str>,
        /// The waiting step it completed or woke; `None` when it was buffered.
        step_name: Option<Arc<str>>,
    },
    /// `[:signal, :take]`: a running step took a buffered signal (`ctx.signal`).
    SignalTake {
        /// Workflow name.
        workflow_name: Arc<str>,
        /// Execution.
        execution_id: ExecutionId,
        /// The signal's name.
        signal_name: Arc<str>,
        /// The step.
        step_name: Arc<str>,
    },
}

impl Event {
    /// The reference's event name: `start`, `stop`, `step.start`, `rollback.stop`...
    pub fn name(&self) -> &'static str {
        match self {
            Event::WorkflowStart { .. } => "start",
            Event::WorkflowStop { .. } => "stop",
            Event::WorkflowFail { .. } => "fail",
            Event::WorkflowCancel { .. } => "cancel",
            Event::WorkflowPause { .. } => "pause",
            Event::WorkflowResume { .. } => "resume",
            Event::StepStart { .. } => "step.start",
            Event::StepStop { .. } => "step.stop",
            Event::StepSkip { .. } => "step.skip",
            Event::StepException { .. } => "step.exception",
            Event::RollbackStart { .. } => "rollback.start",
            Event::RollbackStop { .. } => "rollback.stop",
            Event::RollbackStepStart { .. } => "rollback.step.start",
            Event::RollbackStepStop { .. } => "rollback.step.stop",
            Event::SignalReceive { .. } => "signal.receive",
            Event::SignalTake { .. } => "signal.take",
        }
    }

    /// The execution it concerns.
    pub fn execution_id(&self) -> ExecutionId {
        match self {
            Event::WorkflowStart { execution_id, .. }
            | Event::WorkflowStop { execution_id, .. }
            | Event::WorkflowFail { execution_id, .. }
            | Event::WorkflowCancel { execution_id, .. }
            | Event::WorkflowPause { execution_id, .. }
            | Event::WorkflowResume { execution_id, .. }
            | Event::StepStart { execution_id, .. }
            | Event::StepStop { execution_id, .. }
            | Event::StepSkip { execution_id, .. }
            | Event::StepException { execution_id, .. }
            | Event::RollbackStart { execution_id, .. }
            | Event::RollbackStop { execution_id, .. }
            | Event::RollbackStepStart { execution_id, .. }
            | Event::RollbackStepStop { execution_id, .. }
            | Event::SignalReceive { execution_id, .. }
            | Event::SignalTake { execution_id, .. } => *execution_id,
        }
    }

    fn log(&self) {
        match self {
            Event::StepException { workflow_name, execution_id, step_name, kind, reason, .. } => tracing::warn!(
                target: "sagaflow::telemetry",
                event = self.name(), workflow = %workflow_name, %execution_id, step = %step_name, kind, reason,
                "step attempt failed"
            ),
            Event::WorkflowFail { workflow_name, execution_id, error, error_step } => tracing::warn!(
                target: "sagaflow::telemetry",
                event = self.name(), workflow = %workflow_name, %execution_id, error = %error,
                error_step = error_step.as_deref().unwrap_or("-"),
                "workflow failed"
            ),
            other => tracing::debug!(
                target: "sagaflow::telemetry",
                event = other.name(), execution_id = %other.execution_id(), detail = ?other,
                "workflow event"
            ),
        }
    }
}

/// A function that sees every event as it is emitted, on the engine's task (the
/// test kit's recorder: it must be quick and never block).
pub(crate) type Tap = Arc<dyn Fn(&Event) + Send + Sync>;

/// Fan-out of events to subscribers.
pub(crate) struct Bus {
    tx: broadcast::Sender<Event>,
    subscribers: Arc<AtomicUsize>,
    tap: Option<Tap>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.subscribers.load(Ordering::Relaxed))
            .field("tapped", &self.tap.is_some())
            .finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus { tx: broadcast::channel(SUBSCRIPTION_BUFFER).0, subscribers: Arc::new(AtomicUsize::new(0)), tap: None }
    }
}

impl Bus {
    /// A bus that also hands every event to `tap`, synchronously.
    pub(crate) fn tapped(tap: Option<Tap>) -> Self {
        Bus { tap, ..Bus::default() }
    }

    /// Whether anyone listens: building events is skipped otherwise.
    pub(crate) fn wanted(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
            || self.tap.is_some()
            || tracing::enabled!(target: "sagaflow::telemetry", tracing::Level::WARN)
    }

    pub(crate) fn emit(&self, event: Event) {
        event.log();
        if let Some(tap) = &self.tap {
            tap(&event);
        }
        if self.subscribers.load(Ordering::Relaxed) > 0 {
            let _ = self.tx.send(event);
        }
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription { rx: self.tx.subscribe(), count: Arc::clone(&self.subscribers), dropped: AtomicU64::new(0) }
    }
}

/// A stream of [`Event`]s. A subscriber that falls behind by more than
/// [`SUBSCRIPTION_BUFFER`] events loses the oldest ones (see [`dropped`](Self::dropped));
/// the engine never waits for it.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    count: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

impl Subscription {
    /// The next event; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return None,
            }
        }
    }

    /// How many events this subscriber lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The subscription as a `Stream`.
    pub fn into_stream(self) -> impl futures::Stream<Item = Event> + Send {
        futures::stream::unfold(self, |mut s| async move { s.recv().await.map(|e| (e, s)) })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}
