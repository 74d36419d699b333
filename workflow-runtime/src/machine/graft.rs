//! Grafts: steps added at run time, and what a step id names (a step of the
//! definition or a grafted one) and runs.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::command::{Command, Notice};
use super::event::GraftedStep;
use super::slots::Slot;
use super::{Machine, Phase};
use crate::model::context::Grafts;
use crate::model::def::StepKind;
use crate::model::ids::StepId;
use crate::model::status::StepStatus;
use crate::model::{StepBody, StepError, StepPolicy, kinds};

/// A step added by a graft, as the machine holds it (its journal record is a
/// [`GraftedStep`](super::event::GraftedStep)).
#[derive(Clone)]
pub(crate) struct GraftedSlot {
    pub(crate) name: Arc<str>,
    pub(crate) parent: StepId,
    pub(crate) body: Option<StepBody>,
    pub(crate) policy: Arc<StepPolicy>,
}

/// The steps grafts added, and their names.
#[derive(Default)]
pub(super) struct GraftedSteps {
    steps: Vec<GraftedSlot>,
    names: HashMap<Arc<str>, StepId>,
    /// The names each graft added, in order, as steps see them (`Context::graft_steps`).
    pub(super) by_graft: Grafts,
}

/// What a step id runs.
pub(crate) enum Runnable<'a> {
    Task(&'a StepBody),
    Graft(&'a StepBody),
    Workflow {
        workflow: &'a Arc<str>,
        input: Option<&'a StepBody>,
    },
    /// A graft-added step whose body is not known (after recovery, before the graft
    /// function ran again).
    Missing,
}

impl Machine {
    pub(super) fn extra(&self, index: usize) -> &GraftedSlot {
        &self.grafted.as_ref().expect("a step id past the definition's steps is a grafted step").steps[index]
    }

    pub(crate) fn step_name(&self, id: StepId) -> &Arc<str> {
        let n = self.def.steps.len();
        match (id as usize).checked_sub(n) {
            None => &self.def.steps[id as usize].name,
            Some(e) => &self.extra(e).name,
        }
    }

    pub(crate) fn step_policy(&self, id: StepId) -> &StepPolicy {
        let n = self.def.steps.len();
        match (id as usize).checked_sub(n) {
            None => &self.def.steps[id as usize].policy,
            Some(e) => &self.extra(e).policy,
        }
    }

    pub(crate) fn step_id(&self, name: &str) -> Option<StepId> {
        self.def.by_name.get(name).or_else(|| self.grafted.as_ref().and_then(|g| g.names.get(name))).copied()
    }

    pub(crate) fn graft_parent(&self, id: StepId) -> Option<StepId> {
        (id as usize).checked_sub(self.def.steps.len()).map(|e| self.extra(e).parent)
    }

    pub(crate) fn runnable(&self, id: StepId) -> Runnable<'_> {
        let n = self.def.steps.len();
        match (id as usize).checked_sub(n) {
            None => match &self.def.steps[id as usize].kind {
                StepKind::Task(b) => Runnable::Task(b),
                StepKind::Graft(b) => Runnable::Graft(b),
                StepKind::Workflow { workflow, input } => Runnable::Workflow { workflow, input: input.as_ref() },
            },
            Some(e) => match &self.extra(e).body {
                Some(b) => Runnable::Task(b),
                None => Runnable::Missing,
            },
        }
    }

    pub(super) fn run_command(&self, step: StepId, attempt: u32) -> Command {
        match self.runnable_kind(step) {
            RunKind::Child => Command::StartChild { step, attempt },
            RunKind::Body => Command::RunStep { step, attempt, on_timeout: false },
        }
    }

    pub(super) fn runnable_kind(&self, step: StepId) -> RunKind {
        match self.runnable(step) {
            Runnable::Workflow { .. } => RunKind::Child,
            _ => RunKind::Body,
        }
    }

    pub(super) fn expand(&mut self, step: StepId, steps: Vec<GraftedStep>, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let is_graft = matches!(self.runnable(step), Runnable::Graft(_));
        let mut problem =
            (!is_graft).then(|| format!("step `{}` returned an expansion but is not a graft", self.step_name(step)));
        if problem.is_none() {
            let mut seen = std::collections::HashSet::new();
            for x in &steps {
                if self.step_id(&x.name).is_some() || !seen.insert(Arc::clone(&x.name)) {
                    problem = Some(format!(
                        "graft `{}` added a step named `{}`, which already exists",
                        self.step_name(step),
                        x.name
                    ));
                    break;
                }
            }
        }
        if let Some(msg) = problem {
            let err = StepError::new(kinds::INVALID_OUTCOME, msg).permanent();
            return self.fail_attempt(step, self.slots[step as usize].attempt, err, 0.0, at, out);
        }
        let added = steps.len() as u32;
        let base = self.slots.len() as StepId;
        let default_policy = self.def.steps[step as usize].policy.clone();
        let names: Arc<[Arc<str>]> = steps.iter().map(|x| Arc::clone(&x.name)).collect();
        let graft = Arc::clone(self.step_name(step));
        self.grafted.get_or_insert_with(Default::default).by_graft.insert(graft, names);
        for (i, x) in steps.into_iter().enumerate() {
            let id = base + i as StepId;
            let grafted = self.grafted.get_or_insert_with(Default::default);
            grafted.names.insert(Arc::clone(&x.name), id);
            grafted.steps.push(GraftedSlot {
                name: x.name,
                parent: step,
                body: x.body,
                policy: x.policy.unwrap_or_else(|| Arc::clone(&default_policy)),
            });
            self.slots.push(Slot::new(0, 0));
        }
        let slot = &mut self.slots[step as usize];
        slot.graft_left = added;
        out.push(Command::notify(Notice::StepExpanded { step, added }));
        if added == 0 {
            self.complete(step, None, at, out);
            return;
        }
        slot.status = StepStatus::Expanded;
        if self.phase != Phase::Running {
            // Failing or cancelling: the added steps never start.
            for id in base..base + added {
                self.end_as(id, StepStatus::Cancelled, at);
            }
            let slot = &mut self.slots[step as usize];
            slot.graft_left = 0;
            slot.status = StepStatus::Cancelled;
            self.ended += 1;
            return;
        }
        for id in base..base + added {
            self.slots[id as usize].status = StepStatus::Ready;
            self.ready.push_back(id);
        }
    }
}

pub(super) enum RunKind {
    Body,
    Child,
}
