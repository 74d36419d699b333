//! Recovery on start: every execution that had not ended is rebuilt by replaying
//! its journal, then continues.
//!
//! Rules:
//! - completed steps are never run again; steps that were running run again with
//!   the next attempt number (at-least-once);
//! - timers fire at their original due time, or at once if it has passed;
//! - steps added by a graft get their functions back by running the graft function
//!   again on the context it saw (graft functions must be deterministic);
//! - an execution whose workflow is no longer registered, or whose definition
//!   version differs from the code's, is *parked*: it stays in the store untouched,
//!   and `get_state` shows it with the reason. It never runs against a definition it
//!   did not start with.

use std::collections::HashMap;
use std::sync::Arc;

use super::executor::Execution;
use super::timers::TimerTarget;
use super::{Delayed, EngineError, EngineInner, pending_state};
use crate::machine::Machine;
use crate::machine::event::{Event, StepReport};
use crate::model::context::Data;
use crate::model::def::StepKind;
use crate::model::{Outcome, WorkflowDef};
use crate::store::StoredExecution;

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// Executions resumed.
    pub(crate) resumed: usize,
    /// Delayed executions waiting for their start time.
    pub(crate) scheduled: usize,
    /// Executions parked, with the reason.
    pub(crate) parked: Vec<(crate::model::ExecutionId, String)>,
}

impl EngineInner {
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, EngineError> {
        let mut report = RecoveryReport::default();
        for stored in self.store.unfinished().await? {
            let id = stored.execution.id;
            let def = self.registry.read().get(&stored.execution.workflow).cloned();
            let result = match def {
                None => Err(format!("workflow `{}` is not registered", stored.execution.workflow)),
                Some(def) if def.version() != stored.execution.version => Err(format!(
                    "workflow `{}` changed since this execution started (version {} then, {} now); \
                     register the old definition under its name to finish it",
                    def.name(),
                    stored.execution.version,
                    def.version()
                )),
                Some(def) if !stored.started => {
                    let at = stored.execution.start_at.unwrap_or(stored.execution.created_at);
                    self.timers.arm(TimerTarget::Start(id), self.clock.instant_at(at));
                    self.delayed.insert(id, Delayed { def, new: stored.execution.clone() });
                    report.scheduled += 1;
                    continue;
                }
                Some(def) => self.resume_stored(def, &stored).await,
            };
            match result {
                Ok(()) => report.resumed += 1,
                Err(reason) => {
                    tracing::error!(%id, reason, "execution parked during recovery");
                    let mut state = pending_state(&stored.execution);
                    state.status = crate::machine::state::Status::Running;
                    state.parked = Some(reason.clone());
                    self.parked.insert(id, state);
                    report.parked.push((id, reason));
                }
            }
        }
        Ok(report)
    }

    async fn resume_stored(self: &Arc<Self>, def: WorkflowDef, stored: &StoredExecution) -> Result<(), String> {
        let n = &stored.execution;
        let data: Data = n.input.clone().into_iter().collect();
        let mut discard = Vec::new();
        let mut machine = Machine::start(&def, data, n.created_at, &mut discard);
        for entry in &stored.events {
            let mut event: Event = serde_json::from_str(&entry.event)
                .map_err(|e| format!("journal entry {} cannot be read: {e}", entry.seq))?;
            if let Event::StepFinished { step, report: StepReport::Expand { steps }, .. } = &mut event {
                restore_graft(&def, &machine, *step, steps).await?;
            }
            discard.clear();
            machine
                .apply(event, &mut discard)
                .map_err(|e| format!("journal entry {} does not apply: {e}", entry.seq))?;
        }
        let exec = Arc::new(Execution::new(n.id, def, machine, n.trigger.clone(), n.parent.clone()));
        let mut core = exec.core.lock();
        core.seq = stored.events.last().map_or(0, |e| e.seq);
        let mut cmds = Vec::new();
        let at = self.clock.now();
        self.apply_locked(&exec, &mut core, Event::Recovered { at }, &mut cmds)
            .map_err(|e| format!("cannot resume: {e}"))?;
        for (timer, due) in core.machine.timers() {
            self.timers.arm(TimerTarget::Execution(n.id, timer), self.clock.instant_at(due));
        }
        core.pending = cmds;
        self.executions.insert(n.id, Arc::clone(&exec));
        if core.machine.is_finished() {
            return Ok(());
        }
        self.ensure_driver(&exec, &mut core);
        Ok(())
    }
}

/// Runs a graft function again to get back the functions and options of the steps
/// it added, which the journal does not hold.
async fn restore_graft(
    def: &WorkflowDef,
    machine: &Machine,
    step: u32,
    steps: &mut [crate::machine::event::Expanded],
) -> Result<(), String> {
    let Some(StepKind::Graft(body)) = def.inner.steps.get(step as usize).map(|s| &s.kind) else {
        return Err(format!("step {step} expanded but is not a graft"));
    };
    let mut ctx = machine.context();
    ctx.step = Some(Arc::clone(machine.step_name(step)));
    ctx.attempt = machine.slot(step).attempt;
    let name = machine.step_name(step).to_string();
    let tasks = match body(ctx).await {
        Ok(Outcome::Expand(tasks)) => tasks,
        other => return Err(format!("graft `{name}` did not expand again during recovery: {other:?}")),
    };
    let report = crate::machine::report::report_of(&name, Ok(Outcome::Expand(tasks)), &def.inner.policy, 0.0);
    let StepReport::Expand { steps: again } = report else {
        return Err(format!("graft `{name}` produced invalid steps during recovery"));
    };
    let mut by_name: HashMap<Arc<str>, crate::machine::event::Expanded> =
        again.into_iter().map(|x| (Arc::clone(&x.name), x)).collect();
    for x in steps.iter_mut() {
        let found =
            by_name.remove(&x.name).ok_or_else(|| format!("graft `{name}` no longer adds step `{}`", x.name))?;
        x.body = found.body;
        x.policy = found.policy;
    }
    Ok(())
}
