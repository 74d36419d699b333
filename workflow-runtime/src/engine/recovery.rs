//! Recovery on start: every execution that had not ended is rebuilt by replaying
//! its journal, then continues.
//!
//! Rules (documented for users in `docs/durability.md`, on the `store` module):
//! - completed steps are never run again; steps that were running run again with
//!   the next attempt number (at-least-once). The `Recovered` events that assign
//!   those attempt numbers are committed before any step runs (the driver's
//!   write-ahead rule), so a second crash never hands out the same attempt number
//!   twice;
//! - whatever prefix of a journal survived, the machine derives what comes next
//!   (see `Machine::recover`): an end decided but not recorded is recorded, a
//!   compensation or handler in flight runs again;
//! - timers fire at their original due time, or at once if it has passed;
//! - steps added by a graft get their functions back by running the graft function
//!   again on the context it saw (graft functions must be deterministic);
//! - an execution whose definition version differs from the code's continues on
//!   the code's definition if every step of the version it started with exists
//!   there unchanged (see [`incompatibilities`]); its journal is then rewritten
//!   for the new step order ([`Write::Upgrade`]). Otherwise, or when its workflow
//!   is not registered, it is *parked*: it stays in the store untouched, and
//!   `get_state` shows it with the reason. It never runs against a definition
//!   that does not match what it already did.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::executor::Execution;
use super::park::ParkReason;
use super::timers::TimerTarget;
use super::{Delayed, EngineError, EngineInner, pending_state};
use crate::machine::Machine;
use crate::machine::event::{ExecutionEvent, StepReport};
use crate::model::context::Data;
use crate::model::def::StepKind;
use crate::model::{DefinitionSnapshot, ExecutionId, Outcome, WorkflowDef};
use crate::store::{JournalEntry, StoredExecution, Upgrade, Write};

/// What recovery did.
#[derive(Debug, Default)]
pub(crate) struct RecoveryReport {
    /// Executions resumed.
    pub(crate) resumed: usize,
    /// Executions moved onto the registered version of their definition.
    pub(crate) upgraded: usize,
    /// Delayed executions waiting for their start time.
    pub(crate) scheduled: usize,
    /// Executions parked, with the reason.
    pub(crate) parked: Vec<(ExecutionId, ParkReason)>,
}

/// What became of one stored execution.
enum Adopted {
    /// Rebuilt; it runs once the recovery's journal writes are committed.
    Resumed(Arc<Execution>),
    /// A delayed execution, waiting for its start time again.
    Scheduled,
}

impl EngineInner {
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, EngineError> {
        let stored = self.store.unfinished().await?;
        Ok(self.resume_all(stored).await)
    }

    /// Rebuilds executions read from the store and lets them continue.
    pub(crate) async fn resume_all(self: &Arc<Self>, all: Vec<StoredExecution>) -> RecoveryReport {
        let mut report = RecoveryReport::default();
        let mut resumed = Vec::new();
        for stored in all {
            let id = stored.execution.id;
            if self.node.is_none()
                && let Some(key) = &stored.execution.unique_key
            {
                self.unique.hold(&stored.execution.workflow, key, id);
            }
            if self.node.is_none()
                && !stored.started
                && let Some(key) = &stored.execution.debounce_key
            {
                self.debounced.hold(&stored.execution.workflow, key, id);
            }
            let def = self.registry.read().get(&stored.execution.workflow).cloned();
            let outcome = match def {
                None => Err(ParkReason::NotRegistered { workflow: stored.execution.workflow.clone() }),
                Some(def) => {
                    let upgrade = def.version() != stored.execution.version;
                    let adopted = self.adopt(def, &stored).await;
                    if upgrade && adopted.is_ok() {
                        report.upgraded += 1;
                    }
                    adopted
                }
            };
            match outcome {
                Ok(Adopted::Resumed(exec)) => {
                    resumed.push(exec);
                    report.resumed += 1;
                }
                Ok(Adopted::Scheduled) => report.scheduled += 1,
                Err(reason) => {
                    tracing::error!(%id, %reason, "execution parked during recovery");
                    let mut state = pending_state(&stored.execution);
                    state.status = crate::model::status::Status::Running;
                    state.parked = Some(reason.to_string());
                    self.parked.insert(id, state);
                    report.parked.push((id, reason));
                }
            }
        }
        // Their drivers run nothing before the upgrades and the new attempt numbers
        // (the `Recovered` events) are committed: the write-ahead rule holds for
        // recovery as for everything else.
        for exec in resumed {
            let mut core = exec.core.lock();
            for (timer, due) in core.machine.timers() {
                self.timers.arm(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
            }
            self.ensure_driver(&exec, &mut core);
        }
        report
    }

    /// Rebuilds one execution on `def`, moving it onto `def`'s version first if it
    /// started with another one. `Err` is the reason to park it.
    async fn adopt(self: &Arc<Self>, def: WorkflowDef, stored: &StoredExecution) -> Result<Adopted, ParkReason> {
        let id = stored.execution.id;
        let changed = def.version() != stored.execution.version;
        let mut remap = None;
        if changed && stored.started {
            let old = self
                .store
                .definition_version(def.name(), &stored.execution.version)
                .await
                .map_err(ParkReason::SnapshotUnreadable)?
                .ok_or_else(|| ParkReason::NoSnapshot {
                    workflow: def.name().to_owned(),
                    then: stored.execution.version.clone(),
                    now: def.version().to_owned(),
                })?;
            let problems = incompatibilities(&old, &def);
            if !problems.is_empty() {
                return Err(ParkReason::Incompatible {
                    workflow: def.name().to_owned(),
                    then: old.version.clone(),
                    now: def.version().to_owned(),
                    problems,
                });
            }
            remap = Some(Remap::new(&old, &def));
        }
        if changed {
            tracing::info!(
                %id,
                workflow = def.name(),
                from = stored.execution.version,
                to = def.version(),
                "execution continues on the registered version of its workflow"
            );
        }
        if !stored.started {
            // Nothing ran yet: it simply starts on the registered definition.
            if changed {
                let upgrade = Upgrade { id, version: def.version().to_owned(), events: Vec::new() };
                self.journal.append(Write::Upgrade(Box::new(upgrade)));
            }
            let mut new = stored.execution.clone();
            new.version = def.version().to_owned();
            let at = new.start_at.unwrap_or(new.created_at);
            self.timers.arm(TimerTarget::Start(id), self.clock.instant_at(at));
            self.delayed.insert(id, Delayed { def, new });
            return Ok(Adopted::Scheduled);
        }
        self.resume_stored(def, stored, remap.as_ref()).await.map(Adopted::Resumed)
    }

    async fn resume_stored(
        self: &Arc<Self>,
        def: WorkflowDef,
        stored: &StoredExecution,
        remap: Option<&Remap>,
    ) -> Result<Arc<Execution>, ParkReason> {
        let n = &stored.execution;
        let (machine, rewritten) = replay(&def, stored, remap).await?;
        if remap.is_some() {
            let upgrade = Upgrade { id: n.id, version: def.version().to_owned(), events: rewritten };
            self.journal.append(Write::Upgrade(Box::new(upgrade)));
        }
        let exec = Arc::new(Execution::new(
            n.id,
            def,
            machine,
            n.trigger.clone(),
            n.parent.clone(),
            n.trace.clone(),
            n.priority,
        ));
        let mut core = exec.core.lock();
        core.seq = stored.events.last().map_or(0, |e| e.seq);
        let mut cmds = Vec::new();
        let at = self.clock.now();
        self.apply_locked(&exec, &mut core, ExecutionEvent::Recovered { at }, &mut cmds)
            .map_err(ParkReason::CannotResume)?;
        core.commands = cmds;
        drop(core);
        self.executions.insert(n.id, Arc::clone(&exec));
        Ok(exec)
    }
}

/// Rebuilds an execution's state machine from its journal on `def`, rewriting the
/// events' step indexes with `remap` (the rewritten journal is returned when it
/// is given).
pub(crate) async fn replay(
    def: &WorkflowDef,
    stored: &StoredExecution,
    remap: Option<&Remap>,
) -> Result<(Machine, Vec<JournalEntry>), ParkReason> {
    let n = &stored.execution;
    let data: Data = n.input.clone().into_iter().collect();
    let mut discard = Vec::new();
    let seed = super::restart::seed_of(def, &n.kept);
    let mut machine = Machine::start_seeded(def, data, seed, n.created_at, &mut discard);
    let mut rewritten = Vec::new();
    for entry in &stored.events {
        let seq = entry.seq;
        let mut event: ExecutionEvent =
            serde_json::from_str(&entry.event).map_err(|reason| ParkReason::Unreadable { seq, reason })?;
        if let Some(remap) = remap {
            remap.event(&mut event).map_err(|step| ParkReason::NoCounterpart { seq, step })?;
            let text = serde_json::to_string(&event).map_err(|reason| ParkReason::Unwritable { seq, reason })?;
            rewritten.push(JournalEntry { execution: n.id, seq: entry.seq, event: text });
        }
        if let ExecutionEvent::StepFinished { step, report: StepReport::Expand { steps }, .. } = &mut event {
            restore_graft(def, &machine, *step, steps).await?;
        }
        discard.clear();
        machine.apply(event, &mut discard).map_err(|reason| ParkReason::DoesNotApply { seq, reason })?;
    }
    Ok((machine, rewritten))
}

/// Step indexes of one definition version mapped onto another's, by step name.
/// Steps that grafts added follow the declared steps in both, in the same order.
pub(crate) struct Remap {
    declared: Vec<u32>,
    new_len: u32,
}

impl Remap {
    /// Only for compatible versions: every old step exists in `new`.
    fn new(old: &DefinitionSnapshot, new: &WorkflowDef) -> Remap {
        let declared =
            old.steps.iter().map(|s| new.inner.by_name.get(s.name.as_str()).copied().unwrap_or(u32::MAX)).collect();
        Remap { declared, new_len: new.inner.steps.len() as u32 }
    }

    /// The new index of step `old`; `Err(old)` when the new definition lacks it.
    fn step(&self, old: u32) -> Result<u32, u32> {
        let old_len = self.declared.len() as u32;
        match self.declared.get(old as usize) {
            Some(&u32::MAX) => Err(old),
            Some(&new) => Ok(new),
            None => Ok(old - old_len + self.new_len),
        }
    }

    /// Rewrites the step indexes an event carries. Every variant is listed, so an
    /// event added later must say here whether it names a step. `Err`: the step
    /// the new definition lacks.
    fn event(&self, event: &mut ExecutionEvent) -> Result<(), u32> {
        match event {
            ExecutionEvent::StepFinished { step, .. }
            | ExecutionEvent::CompensationFinished { step, .. }
            | ExecutionEvent::ChildStarted { step, .. }
            | ExecutionEvent::SignalTaken { step, .. } => *step = self.step(*step)?,
            ExecutionEvent::Resumed { step, .. } => {
                if let Some(step) = step {
                    *step = self.step(*step)?;
                }
            }
            ExecutionEvent::TimerFired { .. }
            | ExecutionEvent::Paused { .. }
            | ExecutionEvent::Cancelled { .. }
            | ExecutionEvent::HandlerFinished { .. }
            | ExecutionEvent::Recovered { .. }
            | ExecutionEvent::Aborted { .. }
            | ExecutionEvent::Signalled { .. } => {}
        }
        Ok(())
    }
}

/// Why an execution that started on `old` cannot continue on `new`; empty when it
/// can. The rule: every step of `old` exists in `new` unchanged (same snapshot but
/// for its description, and the same resolved group dependencies), the
/// workflow-level options that drive an execution are unchanged, and a workflow
/// that limits step concurrency adds no steps (an added step could take a slot
/// that an old step held when its events were written).
pub(crate) fn incompatibilities(old: &DefinitionSnapshot, new: &WorkflowDef) -> Vec<String> {
    let new = new.snapshot();
    let mut out = Vec::new();
    let workflow_fields = [
        ("timeout", json(&old.timeout), json(&new.timeout)),
        ("max_retries", json(&old.max_retries), json(&new.max_retries)),
        ("handlers", json(&old.handlers), json(&new.handlers)),
        ("step_concurrency", json(&old.step_concurrency), json(&new.step_concurrency)),
    ];
    for (field, was, now) in workflow_fields {
        if was != now {
            out.push(format!("the workflow's `{field}` changed ({} → {})", show(&was), show(&now)));
        }
    }
    let by_name: HashMap<&str, &crate::model::StepSnapshot> = new.steps.iter().map(|s| (s.name.as_str(), s)).collect();
    for step in &old.steps {
        let Some(now) = by_name.get(step.name.as_str()) else {
            out.push(format!("step `{}` was removed", step.name));
            continue;
        };
        let (Value::Object(was), Value::Object(is)) = (json(step), json(now)) else { continue };
        let keys: BTreeSet<&String> = was.keys().chain(is.keys()).collect();
        let changes: Vec<String> = keys
            .into_iter()
            .filter(|k| k.as_str() != "description")
            .filter_map(|k| {
                let (a, b) = (was.get(k).unwrap_or(&Value::Null), is.get(k).unwrap_or(&Value::Null));
                (a != b).then(|| format!("`{k}` ({} → {})", show(a), show(b)))
            })
            .collect();
        if !changes.is_empty() {
            out.push(format!("step `{}` changed {}", step.name, changes.join(", ")));
        }
        for group in &step.declared.after_group {
            let (was, now) = (old.groups.get(group), new.groups.get(group));
            if was != now {
                out.push(format!(
                    "step `{}` waits for group `{group}`, whose steps changed ({} → {})",
                    step.name,
                    show(&json(&was)),
                    show(&json(&now))
                ));
            }
        }
    }
    if old.step_concurrency.is_some() && new.steps.len() > old.steps.len() {
        out.push("steps were added to a workflow that limits `step_concurrency`".into());
    }
    out
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs a graft function again to get back the functions and options of the steps
/// it added, which the journal does not hold.
async fn restore_graft(
    def: &WorkflowDef,
    machine: &Machine,
    step: u32,
    steps: &mut [crate::machine::event::GraftedStep],
) -> Result<(), ParkReason> {
    let Some(StepKind::Graft(body)) = def.inner.steps.get(step as usize).map(|s| &s.kind) else {
        return Err(ParkReason::NotAGraft { step });
    };
    let mut ctx = machine.context();
    ctx.step = Some(Arc::clone(machine.step_name(step)));
    ctx.attempt = machine.slot(step).attempt;
    let name = machine.step_name(step).to_string();
    let expanded = match crate::model::guard::call(|| body(ctx)) {
        Ok(fut) => crate::model::guard::run(fut).await,
        Err(panicked) => Err(panicked),
    };
    let tasks = match expanded {
        Ok(Ok(Outcome::Expand(tasks))) => tasks,
        Ok(other) => return Err(ParkReason::GraftDidNotExpand { graft: name, got: format!("{other:?}") }),
        Err(panicked) => return Err(ParkReason::GraftPanicked { graft: name, message: panicked.0.to_string() }),
    };
    let report = crate::machine::report::report_of(&name, Ok(Outcome::Expand(tasks)), &def.inner.policy, 0.0);
    let StepReport::Expand { steps: again } = report else {
        return Err(ParkReason::GraftInvalid { graft: name });
    };
    let mut by_name: HashMap<Arc<str>, crate::machine::event::GraftedStep> =
        again.into_iter().map(|x| (Arc::clone(&x.name), x)).collect();
    for x in steps.iter_mut() {
        let found = by_name
            .remove(&x.name)
            .ok_or_else(|| ParkReason::GraftLostStep { graft: name.clone(), step: x.name.to_string() })?;
        x.body = found.body;
        x.policy = found.policy;
    }
    Ok(())
}
