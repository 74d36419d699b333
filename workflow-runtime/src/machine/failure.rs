//! Step failures: a retry or the final failure, `on_error`, and the failure of
//! the execution.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::command::{Command, Notice, TimerKind};
use super::slots::Stamp;
use super::{Machine, Phase, later};
use crate::model::ids::StepId;
use crate::model::status::StepStatus;
use crate::model::{OnError, StepError, kinds};

#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) step: Option<StepId>,
    pub(crate) error: StepError,
    pub(crate) attempts: u32,
}

impl Machine {
    pub(super) fn fail_attempt(
        &mut self,
        step: StepId,
        attempt: u32,
        error: StepError,
        jitter: f64,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        // Only while the execution runs: never while it fails, is cancelled or
        // compensates.
        if self.def.policy.on_step_error.is_some() && self.phase == Phase::Running {
            out.push(Command::StepErrorHook { step, error: error.clone(), attempt });
        }
        if self.phase != Phase::Running {
            let status = if error.kind() == kinds::CANCELLED { StepStatus::Cancelled } else { StepStatus::Failed };
            self.slots[step as usize].detail().error = Some(error);
            self.end_as(step, status, at);
            return;
        }
        let policy = self.step_policy(step);
        let retries = self.slots[step as usize].retries;
        if policy.retry.should_retry(&error, retries) {
            let delay = match policy.retry.guarded_delay_for(retries + 1, jitter) {
                Ok(delay) => delay,
                Err(panicked) => {
                    let what = format!("the backoff function of step `{}`", self.step_name(step));
                    return self.fail_final(step, attempt, panicked.into_error(Some(&what)).permanent(), at, out);
                }
            };
            self.log_attempt(step, "error", Some(error.clone()), at);
            let slot = &mut self.slots[step as usize];
            slot.retries += 1;
            slot.status = StepStatus::Retrying;
            slot.detail().error = Some(error.clone());
            self.arm(TimerKind::Retry(step), later(at, delay), out);
            out.push(Command::notify(Notice::StepRetrying { step, attempt, delay, error }));
            return;
        }
        self.fail_final(step, attempt, error, at, out);
    }

    pub(super) fn fail_final(
        &mut self,
        step: StepId,
        attempt: u32,
        error: StepError,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        out.push(Command::notify(Notice::StepFailed { step, attempt, error: error.clone() }));
        let on_error = self.step_policy(step).on_error;
        let slot = &mut self.slots[step as usize];
        slot.ended = Stamp::of(at);
        match on_error {
            OnError::Fail => {
                slot.status = StepStatus::Failed;
                slot.detail().error = Some(error.clone());
                let attempts = slot.attempt;
                self.begin_failure(Some(step), error, attempts, at, out);
                self.ended += 1;
            }
            OnError::Skip => {
                let reason = format!("failed ({error}); `on_error: skip`");
                slot.detail().error = Some(error);
                self.skip(step, reason, at, out);
            }
            OnError::Continue => {
                slot.status = StepStatus::Failed;
                slot.detail().error = Some(error);
                self.end(step, at, out);
            }
        }
    }

    pub(super) fn begin_failure(
        &mut self,
        step: Option<StepId>,
        error: StepError,
        attempts: u32,
        _at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        self.phase = Phase::Draining;
        self.set_error_keys(step, &error, attempts);
        out.push(Command::notify(Notice::WorkflowFailed { step, error: error.clone() }));
        self.failure = Some(Box::new(Failure { step, error, attempts }));
        self.stop_everything(out);
    }

    /// Sets the context keys that describe a failure.
    pub(super) fn set_error_keys(&mut self, step: Option<StepId>, error: &StepError, attempts: u32) {
        let step_name = step.map(|s| Value::String(self.step_name(s).to_string())).unwrap_or(Value::Null);
        self.data.insert("__error__".into(), error.to_json());
        self.data.insert("__error_step__".into(), step_name);
        self.data.insert("__attempts__".into(), Value::from(attempts));
        let trace = error.details().and_then(|d| d.get("stacktrace")).cloned().unwrap_or(Value::Null);
        self.data.insert("__stacktrace__".into(), trace);
    }
}

/// Context keys set when an execution fails.
pub(crate) const ERROR_KEYS: [&str; 4] = ["__error__", "__error_step__", "__attempts__", "__stacktrace__"];
