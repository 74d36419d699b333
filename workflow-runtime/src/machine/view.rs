//! Building an [`ExecutionState`] from the machine.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Map;

use super::Machine;
use crate::model::execution::{
    AttemptInfo, AwaitInfo, ExecutionState, FailureInfo, Progress, RollbackReport, StepState, Trigger,
};
use crate::model::status::StepStatus;
use crate::model::{ExecutionId, StepError, StepName};

fn info(log: &super::AttemptLog) -> AttemptInfo {
    AttemptInfo {
        attempt: log.attempt,
        started_at: log.started.get(),
        ended_at: log.ended.get(),
        outcome: log.outcome.to_owned(),
        error: log.error.clone(),
    }
}

impl Machine {
    /// A step's attempts: those the log holds, then the latest (unless it has not
    /// started).
    /// A step's earlier attempts (the latest is the step's own fields).
    fn history_of(&self, id: crate::model::ids::StepId) -> Vec<AttemptInfo> {
        match &self.attempt_log {
            None => Vec::new(),
            Some(log) => log.iter().filter(|l| l.step == id && !l.compensation).map(info).collect(),
        }
    }

    fn compensations_of(&self, id: crate::model::ids::StepId) -> Vec<AttemptInfo> {
        if self.attempt_log.is_none() && self.rollback.is_none() {
            return Vec::new();
        }
        let mut out: Vec<AttemptInfo> = self
            .attempt_log
            .iter()
            .flat_map(|l| l.iter())
            .filter(|l| l.step == id && l.compensation)
            .map(info)
            .collect();
        if let Some((step, attempt)) = self.rollback.as_ref().and_then(|r| r.current)
            && step == id
            && out.last().is_none_or(|l| l.attempt < attempt)
        {
            out.push(AttemptInfo {
                attempt,
                started_at: self.compensation_started_at(),
                ended_at: None,
                outcome: "running".to_owned(),
                error: None,
            });
        }
        out
    }
}

/// Facts about an execution that the machine does not hold.
pub(crate) struct Identity<'a> {
    pub(crate) id: ExecutionId,
    pub(crate) parent: Option<ExecutionId>,
    pub(crate) trigger: &'a Trigger,
    pub(crate) parked: Option<String>,
}

impl Machine {
    /// The public view of this execution at `now`.
    pub(crate) fn view(&self, who: Identity<'_>, now: DateTime<Utc>) -> ExecutionState {
        let def = self.def();
        let mut steps = Vec::with_capacity(self.step_count());
        let mut running = Vec::new();
        let mut awaiting = Vec::new();
        for (id, slot) in self.slots() {
            let name = StepName::from(Arc::clone(self.step_name(id)));
            let detail = slot.detail.as_deref();
            if slot.status == StepStatus::Running {
                running.push(name.to_string());
            }
            if slot.status == StepStatus::Awaiting {
                let info = detail.and_then(|d| d.await_info.as_deref());
                awaiting.push(AwaitInfo {
                    step: name.to_string(),
                    notify: info.and_then(|i| i.notify.clone()),
                    approvers: info.and_then(|i| i.approvers.clone()),
                    data: info.map(|i| i.data.clone()).unwrap_or_default(),
                    timeout_at: detail.and_then(|d| d.await_due.get()),
                    signal: self.awaited_signal(id).map(str::to_owned),
                });
            }
            steps.push(StepState {
                name,
                status: slot.status,
                attempts: slot.attempt,
                started_at: slot.started_at(),
                ended_at: slot.ended_at(),
                error: detail.and_then(|d| d.error.clone()),
                skip_reason: detail.and_then(|d| d.skip_reason.as_deref().map(String::from)),
                graft: self.graft_parent(id).map(|p| String::from(&**self.step_name(p))),
                child: detail.and_then(|d| d.child.as_deref()).map(|c| c.0),
                compensation_error: detail.and_then(|d| d.compensation_error.clone()),
                history: self.history_of(id),
                compensations: self.compensations_of(id),
            });
        }
        let (done, total) = self.progress();
        let ended = self.ended_at();
        let until = ended.unwrap_or(now);
        let name = |id| String::from(&**self.step_name(id));
        ExecutionState {
            id: who.id,
            workflow: String::from(&*def.name),
            version: def.version.clone(),
            status: self.status(),
            current_step: running.first().cloned(),
            running,
            progress: Progress { done, total },
            context: if self.data.is_empty() {
                Map::new()
            } else {
                self.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            },
            started_at: self.started_at,
            ended_at: ended,
            duration: (until - self.started_at).to_std().unwrap_or_default(),
            attempt: self.workflow_attempt(),
            steps,
            awaiting,
            failure: self.failure.as_ref().map(|f| FailureInfo {
                step: f.step.map(name),
                error: f.error.clone(),
                attempts: f.attempts,
            }),
            rollback: self.rollback.as_ref().map(|rb| RollbackReport {
                compensated: rb.compensated.iter().map(|&s| name(s)).collect(),
                failed: rb
                    .failed
                    .iter()
                    .map(|&s| {
                        let err = self.slot(s).detail.as_ref().and_then(|d| d.compensation_error.clone());
                        (name(s), err.unwrap_or_else(|| StepError::msg("compensation failed")))
                    })
                    .collect(),
                remaining: rb
                    .planned
                    .iter()
                    .filter(|s| !rb.compensated.contains(s) && !rb.failed.contains(s))
                    .map(|&s| name(s))
                    .collect(),
            }),
            cancel_reason: self.cancel.as_ref().map(|c| c.reason.clone()),
            handler_errors: self.handler_errors.iter().flat_map(|v| v.iter()).map(|(_, e)| e.clone()).collect(),
            parent: who.parent,
            trigger: who.trigger.clone(),
            parked: who.parked,
            signals: self.pending_signals(),
            input: self.input_map(),
            outputs: if self.outputs.is_empty() {
                Map::new()
            } else {
                self.outputs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
            },
        }
    }
}
