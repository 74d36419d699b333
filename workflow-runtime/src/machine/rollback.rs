//! Rollback (saga compensation): compensating completed steps in reverse order,
//! and what the execution does once rollback is over.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::command::{Command, Notice, TimerKind};
use super::event::HandlerKind;
use super::failure::ERROR_KEYS;
use super::slots::{AttemptLog, Stamp};
use super::{Machine, Phase, later};
use crate::model::ids::StepId;
use crate::model::status::{Status, StepStatus};
use crate::model::{Context, StepError};

#[derive(Clone, Debug, Default)]
pub(crate) struct Rollback {
    queue: VecDeque<StepId>,
    pub(super) current: Option<(StepId, u32)>,
    pub(crate) planned: Vec<StepId>,
    pub(crate) compensated: Vec<StepId>,
    pub(crate) failed: Vec<StepId>,
    started_at: Option<DateTime<Utc>>,
}

impl Machine {
    /// The context a compensation sees: the context as it was when its step
    /// completed, plus the error keys.
    pub(crate) fn compensation_context(&self, step: StepId) -> Context {
        let mut ctx = self.context();
        if let Some(snap) = self.slots[step as usize].detail.as_ref().and_then(|d| d.snapshot.as_ref()) {
            ctx.data = snap.clone();
            for key in ERROR_KEYS {
                if let Some(v) = self.data.get(key) {
                    ctx.data.insert(key.to_owned(), v.clone());
                }
            }
        }
        ctx
    }

    /// When the running compensation attempt started.
    pub(crate) fn compensation_started_at(&self) -> Option<DateTime<Utc>> {
        self.compensation_started.get()
    }

    pub(super) fn on_compensation(
        &mut self,
        step: StepId,
        attempt: u32,
        result: Result<(), StepError>,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        if self.phase != Phase::Compensating {
            return;
        }
        let Some(rb) = self.rollback.as_ref() else { return };
        if rb.current != Some((step, attempt)) {
            return;
        }
        let entry = AttemptLog {
            step,
            attempt,
            compensation: true,
            started: self.compensation_started,
            ended: Stamp::of(at),
            outcome: if result.is_ok() { "ok" } else { "error" },
            error: result.as_ref().err().cloned(),
        };
        self.attempt_log.get_or_insert_with(Default::default).push(entry);
        let rb = self.rollback.as_mut().expect("rollback in progress");
        match result {
            Ok(()) => {
                rb.compensated.push(step);
                rb.current = None;
                self.slots[step as usize].status = StepStatus::Compensated;
            }
            Err(error) => {
                let policy = self.step_policy(step);
                let (retry, error) = if policy.retry.should_retry(&error, attempt - 1) {
                    match policy.retry.guarded_delay_for(attempt, 0.0) {
                        Ok(delay) => (Some(delay), error),
                        Err(panicked) => {
                            let what = format!("the backoff function of step `{}`", self.step_name(step));
                            (None, panicked.into_error(Some(&what)))
                        }
                    }
                } else {
                    (None, error)
                };
                if let Some(delay) = retry {
                    self.slots[step as usize].detail().compensation_error = Some(error);
                    self.arm(TimerKind::CompensationRetry(step), later(at, delay), out);
                    return;
                }
                let rb = self.rollback.as_mut().expect("rollback in progress");
                rb.failed.push(step);
                rb.current = None;
                let slot = &mut self.slots[step as usize];
                slot.status = StepStatus::CompensationFailed;
                slot.detail().compensation_error = Some(error);
            }
        }
        self.next_compensation(at, out);
    }

    pub(super) fn start_rollback(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let queue: VecDeque<StepId> = self
            .completed
            .iter()
            .rev()
            .copied()
            .filter(|&s| {
                self.slots[s as usize].status == StepStatus::Completed && self.step_policy(s).rollback.is_some()
            })
            .collect();
        if queue.is_empty() {
            return self.after_rollback(at, out);
        }
        let planned: Vec<StepId> = queue.iter().copied().collect();
        out.push(Command::notify(Notice::RollbackStarted { steps: planned.clone() }));
        self.rollback =
            Some(Box::new(Rollback { queue, current: None, planned, started_at: Some(at), ..Default::default() }));
        self.phase = Phase::Compensating;
        self.next_compensation(at, out);
    }

    fn next_compensation(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let rb = self.rollback.as_mut().expect("rollback in progress");
        match rb.queue.pop_front() {
            Some(step) => {
                rb.current = Some((step, 1));
                self.compensation_started = Stamp::of(at);
                out.push(Command::RunCompensation { step, attempt: 1 });
            }
            None => {
                let took = rb.started_at.and_then(|s| (at - s).to_std().ok()).unwrap_or_default();
                out.push(Command::notify(Notice::RollbackFinished {
                    compensated: rb.compensated.clone(),
                    failed: rb.failed.clone(),
                    duration: took,
                }));
                self.after_rollback(at, out);
            }
        }
    }

    pub(super) fn after_rollback(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        if let Some(c) = &self.cancel {
            if c.cleanup && self.def.policy.on_cancel.is_some() {
                self.phase = Phase::Handler(HandlerKind::OnCancel);
                out.push(Command::RunHandler { handler: HandlerKind::OnCancel });
            } else {
                self.finish(Status::Cancelled, at, out);
            }
            return;
        }
        let retry = &self.def.policy.retry;
        if self.workflow_attempt <= retry.max_retries {
            // A panicking backoff function restarts at once rather than never.
            let delay: Duration = retry.guarded_delay_for(self.workflow_attempt, 0.0).unwrap_or_default();
            self.phase = Phase::Restarting;
            self.arm(TimerKind::WorkflowRetry, later(at, delay), out);
            out.push(Command::notify(Notice::Restarting { attempt: self.workflow_attempt + 1, delay }));
        } else if self.def.policy.on_failure.is_some() {
            self.phase = Phase::Handler(HandlerKind::OnFailure);
            out.push(Command::RunHandler { handler: HandlerKind::OnFailure });
        } else {
            let status = self.failure_status();
            self.finish(status, at, out);
        }
    }

    pub(super) fn failure_status(&self) -> Status {
        match &self.rollback {
            Some(rb) if !rb.planned.is_empty() && rb.failed.is_empty() => Status::RolledBack,
            Some(rb) if !rb.planned.is_empty() => Status::RollbackFailed,
            _ => Status::Failed,
        }
    }
}
