//! Recovery: after a restart of the process, asking again for what was in flight.

use chrono::{DateTime, Utc};

use super::command::{Command, TimerKind};
use super::graft::RunKind;
use super::slots::Stamp;
use super::{Machine, Phase};
use crate::model::status::StepStatus;

impl Machine {
    /// After a restart of the process (or a takeover by another node): derives
    /// from the state what was in flight and asks for it again, so that whatever
    /// prefix of the journal survived, the execution goes on to its end or its
    /// next wait.
    ///
    /// - An end that was decided but not recorded is finished again.
    /// - Every step that was running runs again with the next attempt number (a
    ///   nested workflow re-attaches to its child; an await's `on_timeout`
    ///   handler runs again as itself). A cancellable step of an execution being
    ///   cancelled was being interrupted: it ends cancelled instead.
    /// - A running compensation or workflow-level handler runs again; one waiting
    ///   for its retry timer waits on.
    /// - Timers are re-armed by the caller from [`timers`](Self::timers).
    pub(super) fn recover(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        if let Phase::Done(status) = self.phase {
            out.push(Command::Finish { status });
            return;
        }
        let cancelling = self.cancel.is_some() && self.phase == Phase::Draining;
        if self.cancel.is_some() {
            out.push(Command::SignalCancel);
        }
        for id in self.running_steps() {
            let is_child = matches!(self.runnable_kind(id), RunKind::Child);
            let has_child = self.current_child(id).is_some();
            let cancellable = self.step_policy(id).cancellable;
            let slot = &mut self.slots[id as usize];
            if is_child && has_child {
                // The child execution survives on its own: re-attach to it.
                out.push(Command::StartChild { step: id, attempt: slot.attempt });
                continue;
            }
            if slot.on_timeout {
                out.push(Command::RunStep { step: id, attempt: slot.attempt, on_timeout: true });
                continue;
            }
            if cancelling && cancellable {
                self.running -= 1;
                self.end_as(id, StepStatus::Cancelled, at);
                continue;
            }
            self.log_attempt(id, "interrupted", None, at);
            let slot = &mut self.slots[id as usize];
            slot.attempt += 1;
            slot.started = Stamp::of(at);
            let attempt = slot.attempt;
            out.push(self.run_command(id, attempt));
        }
        match self.phase {
            Phase::Compensating => {
                if let Some((step, attempt)) = self.rollback.as_ref().and_then(|r| r.current) {
                    let retrying = self.timers.iter().any(|(_, k, _)| *k == TimerKind::CompensationRetry(step));
                    if !retrying {
                        self.compensation_started = Stamp::of(at);
                        out.push(Command::RunCompensation { step, attempt });
                    }
                }
            }
            Phase::Handler(handler) => out.push(Command::RunHandler { handler }),
            _ => {}
        }
    }
}
