//! Controlling executions: pause, resume, cancel (and [`CancelOptions`]), here
//! or, on a shared store, through the node that holds them.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::executor::Execution;
use super::timers::TimerTarget;
use super::watch::pending_state;
use super::{Engine, EngineError, EngineInner, executor};
use crate::machine::TransitionError;
use crate::machine::event::ExecutionEvent;
use crate::model::ExecutionId;
use crate::model::status::Status;
use crate::store::{ControlCall, Write};

/// How to cancel an execution.
///
/// ```
/// use sagaflow_runtime::CancelOptions;
/// let opts = CancelOptions::reason("user_requested").cleanup(true).rollback(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct CancelOptions {
    pub(crate) reason: String,
    pub(crate) cleanup: bool,
    pub(crate) rollback: bool,
}

impl Default for CancelOptions {
    fn default() -> Self {
        CancelOptions { reason: "cancelled".into(), cleanup: false, rollback: false }
    }
}

impl From<&str> for CancelOptions {
    fn from(reason: &str) -> Self {
        CancelOptions::reason(reason)
    }
}

impl From<String> for CancelOptions {
    fn from(reason: String) -> Self {
        CancelOptions::reason(reason)
    }
}

impl CancelOptions {
    /// Cancel with a reason (kept on the execution and passed to `on_cancel`).
    pub fn reason(reason: impl Into<String>) -> Self {
        CancelOptions { reason: reason.into(), ..Default::default() }
    }

    /// Run the workflow's `on_cancel` handler.
    pub fn cleanup(mut self, yes: bool) -> Self {
        self.cleanup = yes;
        self
    }

    /// Run the compensations of completed steps (saga rollback).
    pub fn rollback(mut self, yes: bool) -> Self {
        self.rollback = yes;
        self
    }
}

impl Engine {
    /// Pauses an execution: running steps finish, no new step starts.
    pub async fn pause(&self, id: ExecutionId) -> Result<(), EngineError> {
        self.inner.control(id, ControlCall::Pause).await
    }

    /// Resumes a paused execution, and completes its awaiting steps with `context`
    /// (merged into the execution's context). Steps parked for a signal
    /// ([`signal`](Self::signal)) are completed too, with `context` as their
    /// output and without running again: `resume` overrides the wait.
    pub async fn resume(&self, id: ExecutionId, context: impl Serialize) -> Result<(), EngineError> {
        let context = self.inner.resume_data(id, context)?;
        self.inner.control(id, ControlCall::Resume { step: None, context }).await
    }

    /// Completes one awaiting step (when several await at once).
    pub async fn resume_step(&self, id: ExecutionId, step: &str, context: impl Serialize) -> Result<(), EngineError> {
        let context = self.inner.resume_data(id, context)?;
        self.inner.control(id, ControlCall::Resume { step: Some(step.to_owned()), context }).await
    }

    /// Cancels an execution. Cancellable steps are interrupted, others finish first;
    /// then the rollback runs if asked for, then `on_cancel` if `cleanup` is set.
    pub async fn cancel(&self, id: ExecutionId, options: CancelOptions) -> Result<(), EngineError> {
        self.inner.cancel(id, options).await
    }

    /// Cancels every execution of `workflow` that has not ended, with the same
    /// options as [`cancel`](Self::cancel) (a reason alone converts into them);
    /// returns how many.
    ///
    /// ```
    /// # async fn run(engine: sagaflow_runtime::Engine) -> Result<(), sagaflow_runtime::EngineError> {
    /// use sagaflow_runtime::CancelOptions;
    /// engine.cancel_all("nightly_export", "maintenance").await?;
    /// engine.cancel_all("checkout", CancelOptions::reason("outage").rollback(true).cleanup(true)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_all(&self, workflow: &str, options: impl Into<CancelOptions>) -> Result<usize, EngineError> {
        self.inner.definition(workflow)?;
        let options = options.into();
        let ids: Vec<ExecutionId> = self.list_running(workflow).await?.into_iter().map(|s| s.id).collect();
        let mut count = 0;
        for id in ids {
            if self.inner.cancel(id, options.clone()).await.is_ok() {
                count += 1;
            }
        }
        Ok(count)
    }
}

impl EngineInner {
    pub(super) fn resume_data(
        &self,
        id: ExecutionId,
        context: impl Serialize,
    ) -> Result<Map<String, Value>, EngineError> {
        let value = serde_json::to_value(context).map_err(|e| EngineError::InvalidInput {
            workflow: String::new(),
            reason: format!("resume context of {id}: {e}"),
        })?;
        match value {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(Map::new()),
            other => Err(EngineError::InvalidInput {
                workflow: String::new(),
                reason: format!("the resume context of {id} must be a JSON object, got `{other}`"),
            }),
        }
    }

    /// Applies a control command to an execution held here, or sends it to the
    /// node that holds it; returns once it is durable.
    pub(super) async fn control(self: &Arc<Self>, id: ExecutionId, command: ControlCall) -> Result<(), EngineError> {
        if let Some(e) = self.rejected_error(id) {
            return Err(e);
        }
        match self.live(id) {
            // Let go of, in the store: whoever claims it carries the call out.
            Ok(exec) if exec.is_parking() => self.control_remote(id, command).await,
            // Another node took it over meanwhile: the call goes to it.
            Ok(exec) => match self.control_here(&exec, command.clone(), None).await {
                Err(EngineError::NotHeld(_)) if self.node.is_some() => self.control_remote(id, command).await,
                done => done,
            },
            Err(e) if self.parked.contains_key(&id) => Err(e),
            Err(_) if self.node.is_some() => self.control_remote(id, command).await,
            Err(_) => Err(self.ended_or_unknown(id).await),
        }
    }

    /// Applies a control command to an execution held here (`queued`: the
    /// command's place in a shared store's queue, marked carried out with its
    /// event); returns once it is committed.
    pub(crate) async fn control_here(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        command: ControlCall,
        queued: Option<i64>,
    ) -> Result<(), EngineError> {
        let (action, event) = self.command_event(exec, command)?;
        let signalled = matches!(event, ExecutionEvent::Signalled { .. });
        let how = queued.map_or(executor::Journaling::Acknowledged, executor::Journaling::Command);
        let journaled = self.deliver_journaled(exec, event, how).map_err(|e| self.invalid(exec, action, e))?;
        if signalled {
            self.signal_arrived(exec);
        }
        if let Some((_, Some(ack))) = journaled {
            self.acknowledged(ack, action).await?;
        }
        Ok(())
    }

    pub(super) fn invalid(&self, exec: &Execution, action: &'static str, e: TransitionError) -> EngineError {
        EngineError::InvalidState {
            id: exec.id,
            action,
            status: exec.state(self.clock.now()).status,
            reason: e.to_string(),
        }
    }

    pub(crate) async fn cancel(self: &Arc<Self>, id: ExecutionId, options: CancelOptions) -> Result<(), EngineError> {
        if let dashmap::Entry::Occupied(entry) = self.delayed.entry(id) {
            // Its end is queued before it leaves `delayed`, so that a waiter
            // that finds it in neither finds the end once the journal flushed.
            let new = &entry.get().new;
            let at = new.start_at.unwrap_or(new.created_at);
            self.timers.cancel(TimerTarget::Start(id), self.clock.instant_at(at));
            let mut state = pending_state(new);
            state.status = Status::Cancelled;
            state.cancel_reason = Some(options.reason);
            state.ended_at = Some(self.clock.now());
            let (_, ack) = self.journal.submit(Write::Finish(Arc::new(state)));
            let (_, d) = entry.remove_entry();
            self.debounce_done(&d.new);
            return self.acknowledged(ack, "cancel").await;
        }
        let command =
            ControlCall::Cancel { reason: options.reason, cleanup: options.cleanup, rollback: options.rollback };
        self.control(id, command).await
    }
}
