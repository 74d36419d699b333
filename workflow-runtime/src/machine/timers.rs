//! Timers: arming and disarming them, and what each kind does when it fires.

use chrono::{DateTime, Utc};

use super::command::{Command, TimerKind};
use super::event::TimerId;
use super::slots::Stamp;
use super::{Machine, Phase};
use crate::model::status::StepStatus;
use crate::model::{StepError, format_duration, kinds};

impl Machine {
    /// Armed timers with their due times (to re-arm them after recovery).
    pub(crate) fn timers(&self) -> impl Iterator<Item = (TimerId, DateTime<Utc>)> + '_ {
        self.timers.iter().map(|(id, _, due)| (*id, *due))
    }

    pub(super) fn arm(&mut self, kind: TimerKind, due: DateTime<Utc>, out: &mut Vec<Command>) {
        let timer = self.next_timer;
        self.next_timer += 1;
        self.timers.push((timer, kind, due));
        out.push(Command::ArmTimer { timer, due });
    }

    pub(super) fn disarm(&mut self, pred: impl Fn(TimerKind) -> bool, out: &mut Vec<Command>) {
        self.timers.retain(|(timer, kind, due)| {
            let keep = !pred(*kind);
            if !keep {
                out.push(Command::CancelTimer { timer: *timer, due: *due });
            }
            keep
        });
    }
    pub(super) fn on_timer(&mut self, timer: TimerId, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let Some(pos) = self.timers.iter().position(|(id, _, _)| *id == timer) else { return };
        let (_, kind, _) = self.timers.remove(pos);
        match kind {
            TimerKind::Retry(s) | TimerKind::Snooze(s) => {
                let slot = &mut self.slots[s as usize];
                if self.phase == Phase::Running && matches!(slot.status, StepStatus::Retrying | StepStatus::Snoozed) {
                    slot.status = StepStatus::Ready;
                    self.ready.push_back(s);
                }
            }
            TimerKind::AwaitTimeout(s) => {
                if self.slots[s as usize].status != StepStatus::Awaiting {
                    return;
                }
                if self.step_policy(s).on_timeout.is_some() {
                    let slot = &mut self.slots[s as usize];
                    slot.status = StepStatus::Running;
                    slot.on_timeout = true;
                    self.running += 1;
                    out.push(Command::RunStep { step: s, attempt: slot.attempt, on_timeout: true });
                } else {
                    let waited = self.slots[s as usize]
                        .detail
                        .as_ref()
                        .and_then(|d| d.await_timeout)
                        .map(format_duration)
                        .unwrap_or_default();
                    let err = StepError::new(
                        kinds::AWAIT_TIMEOUT,
                        format!("step `{}` was not resumed within {waited}", self.step_name(s)),
                    )
                    .permanent();
                    let attempt = self.slots[s as usize].attempt;
                    self.fail_attempt(s, attempt, err, 0.0, at, out);
                }
            }
            TimerKind::WorkflowTimeout => {
                if self.phase == Phase::Running {
                    let limit = self.def.policy.timeout.map(format_duration).unwrap_or_default();
                    let err = StepError::new(
                        kinds::WORKFLOW_TIMEOUT,
                        format!("workflow `{}` exceeded its timeout of {limit}", self.def.name),
                    )
                    .permanent();
                    self.begin_failure(None, err, self.workflow_attempt, at, out);
                }
            }
            TimerKind::WorkflowRetry => {
                if self.phase == Phase::Restarting {
                    self.restart(at, out);
                }
            }
            TimerKind::CompensationRetry(s) => {
                if self.phase == Phase::Compensating
                    && let Some(rb) = self.rollback.as_mut()
                    && let Some((cur, attempt)) = rb.current.as_mut()
                    && *cur == s
                {
                    *attempt += 1;
                    self.compensation_started = Stamp::of(at);
                    out.push(Command::RunCompensation { step: s, attempt: *attempt });
                }
            }
        }
    }
}
