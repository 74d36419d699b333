//! Control from outside: pause, resume, cancel, and abort.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::command::{Command, Notice, TimerKind};
use super::failure::Failure;
use super::slots::Stamp;
use super::{Machine, Phase, TransitionError};
use crate::model::StepError;
use crate::model::ids::StepId;
use crate::model::status::{Status, StepStatus};

#[derive(Clone, Debug)]
pub(crate) struct CancelInfo {
    pub(crate) reason: String,
    pub(crate) cleanup: bool,
    pub(crate) rollback: bool,
}

impl Machine {
    pub(super) fn on_resume(
        &mut self,
        step: Option<StepId>,
        data: Map<String, Value>,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        match self.phase {
            Phase::Running => {}
            Phase::Done(s) => return Err(TransitionError::Finished(s)),
            _ => return Err(TransitionError::NotRunning(self.status())),
        }
        let awaiting: Vec<StepId> = self
            .slots()
            .filter(|(i, s)| s.status == StepStatus::Awaiting && step.is_none_or(|w| w == *i))
            .map(|(i, _)| i)
            .collect();
        if let Some(w) = step
            && awaiting.is_empty()
        {
            return Err(TransitionError::StepNotAwaiting(self.step_name(w).to_string()));
        }
        if !self.paused && awaiting.is_empty() {
            return Err(TransitionError::NotResumable);
        }
        // One `resume` notice per call, whether it ends a pause, an await, or both.
        if std::mem::replace(&mut self.paused, false) || !awaiting.is_empty() {
            out.push(Command::notify(Notice::Resumed));
        }
        if awaiting.is_empty() {
            for (k, v) in data {
                self.data.insert(k, v);
            }
            return Ok(());
        }
        for s in awaiting {
            self.disarm(|k| k == TimerKind::AwaitTimeout(s), out);
            self.complete(s, Some(Value::Object(data.clone())), at, out);
        }
        Ok(())
    }

    pub(super) fn on_pause(&mut self, out: &mut Vec<Command>) -> Result<(), TransitionError> {
        match self.phase {
            Phase::Running if self.paused => Err(TransitionError::AlreadyPaused),
            Phase::Running => {
                self.paused = true;
                out.push(Command::notify(Notice::Paused { running: self.running_steps() }));
                Ok(())
            }
            Phase::Done(s) => Err(TransitionError::Finished(s)),
            _ => Err(TransitionError::NotRunning(self.status())),
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        reason: String,
        cleanup: bool,
        rollback: bool,
        _at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        if let Phase::Done(s) = self.phase {
            return Err(TransitionError::Finished(s));
        }
        if self.cancel.is_some() {
            return Ok(());
        }
        self.cancel = Some(Box::new(CancelInfo { reason: reason.clone(), cleanup, rollback }));
        out.push(Command::notify(Notice::Cancelling { reason }));
        out.push(Command::SignalCancel);
        if matches!(self.phase, Phase::Running | Phase::Restarting) {
            self.phase = Phase::Draining;
            self.paused = false;
            self.stop_everything(out);
        }
        Ok(())
    }

    /// The engine gave up on the execution (its driver failed): it ends `Failed`
    /// with `error`, whatever it was doing.
    pub(super) fn abort(
        &mut self,
        error: StepError,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        if let Phase::Done(s) = self.phase {
            return Err(TransitionError::Finished(s));
        }
        for id in 0..self.slots.len() {
            let slot = &mut self.slots[id];
            if matches!(
                slot.status,
                StepStatus::Pending
                    | StepStatus::Ready
                    | StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Snoozed
                    | StepStatus::Awaiting
                    | StepStatus::Expanded
            ) {
                slot.status = StepStatus::Cancelled;
                slot.ended = Stamp::of(at);
            }
        }
        self.ready.clear();
        self.running = 0;
        self.ended = self.slots.len() as u32;
        self.set_error_keys(None, &error, self.workflow_attempt);
        out.push(Command::notify(Notice::WorkflowFailed { step: None, error: error.clone() }));
        self.failure = Some(Box::new(Failure { step: None, error, attempts: self.workflow_attempt }));
        self.finish(Status::Failed, at, out);
        Ok(())
    }

    /// Disarms timers, cancels waiting steps, and interrupts what can be interrupted.
    pub(super) fn stop_everything(&mut self, out: &mut Vec<Command>) {
        for (timer, _, due) in self.timers.drain(..) {
            out.push(Command::CancelTimer { timer, due });
        }
        for id in 0..self.slots.len() as StepId {
            let slot = &mut self.slots[id as usize];
            match slot.status {
                StepStatus::Ready | StepStatus::Retrying | StepStatus::Snoozed | StepStatus::Awaiting => {
                    slot.status = StepStatus::Cancelled;
                    self.ended += 1;
                }
                StepStatus::Running => {
                    if let Some(&(child, _)) = slot.detail.as_ref().and_then(|d| d.child.as_deref()) {
                        let reason =
                            self.cancel.as_ref().map(|c| c.reason.clone()).unwrap_or_else(|| "parent failed".into());
                        out.push(Command::CancelChild { child, reason });
                    } else {
                        out.push(Command::Interrupt { step: id, graceful: self.cancel.is_some() });
                    }
                }
                _ => {}
            }
        }
        self.ready.clear();
    }
}
