//! Readiness: steps completing, skipped or ended, and the dependents that
//! become ready (or skipped) as they do.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::command::{Command, Notice};
use super::slots::Stamp;
use super::{Machine, Phase};
use crate::model::guard;
use crate::model::ids::StepId;
use crate::model::status::StepStatus;

thread_local! {
    /// Scratch list of steps to end, reused across transitions.
    static WORK: std::cell::Cell<Vec<StepId>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Machine {
    pub(super) fn complete(&mut self, step: StepId, output: Option<Value>, at: DateTime<Utc>, out: &mut Vec<Command>) {
        self.keep(step, output, at);
        self.end(step, at, out);
    }

    /// Records `step` completed with `output` (the caller ends it).
    fn keep(&mut self, step: StepId, output: Option<Value>, at: DateTime<Utc>) {
        if let Some(v) = output {
            self.store_output(step, v);
        }
        let has_rollback = self.step_policy(step).rollback.is_some();
        let slot = &mut self.slots[step as usize];
        slot.status = StepStatus::Completed;
        slot.ended = Stamp::of(at);
        if has_rollback {
            slot.detail().snapshot = Some(self.data.clone());
        }
        self.completed.push(step);
    }

    fn store_output(&mut self, step: StepId, value: Value) {
        let name = Arc::clone(self.step_name(step));
        let is_extra = step as usize >= self.def.steps.len();
        let key = self.step_policy(step).context_key.clone();
        match (&key, &value) {
            (Some(k), _) => {
                self.data.insert(k.to_string(), value.clone());
            }
            (None, _) if is_extra => {
                self.data.insert(name.to_string(), value.clone());
            }
            (None, Value::Object(map)) => {
                for (k, v) in map {
                    self.data.insert(k.clone(), v.clone());
                }
            }
            (None, _) => {}
        }
        self.outputs.insert(name, value);
    }

    pub(super) fn skip(&mut self, step: StepId, reason: String, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let slot = &mut self.slots[step as usize];
        slot.status = StepStatus::Skipped;
        slot.ended = Stamp::of(at);
        slot.detail().skip_reason = Some(reason.clone().into_boxed_str());
        out.push(Command::notify(Notice::StepSkipped { step, reason }));
        self.end(step, at, out);
    }

    pub(super) fn end_as(&mut self, step: StepId, status: StepStatus, at: DateTime<Utc>) {
        let slot = &mut self.slots[step as usize];
        slot.status = status;
        slot.ended = Stamp::of(at);
        self.ended += 1;
    }

    /// Marks `step` ended and, while running, makes its dependents ready or skipped.
    pub(super) fn end(&mut self, step: StepId, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let def = Arc::clone(&self.def);
        let n = def.steps.len();
        let mut work = WORK.take();
        work.push(step);
        while let Some(s) = work.pop() {
            self.ended += 1;
            if let Some(e) = (s as usize).checked_sub(n) {
                let parent = self.extra(e).parent;
                let p = &mut self.slots[parent as usize];
                p.graft_left -= 1;
                if p.status == StepStatus::Expanded && p.graft_left == 0 {
                    p.status = StepStatus::Completed;
                    p.ended = Stamp::of(at);
                    if def.steps[parent as usize].policy.rollback.is_some() {
                        p.detail().snapshot = Some(self.data.clone());
                    }
                    self.completed.push(parent);
                    work.push(parent);
                }
                continue;
            }
            if self.phase != Phase::Running {
                continue;
            }
            let completed = self.slots[s as usize].status == StepStatus::Completed;
            for &(d, is_any) in &def.dependents[s as usize] {
                let ds = &mut self.slots[d as usize];
                if is_any {
                    ds.any_left -= 1;
                    ds.any_done |= completed;
                } else {
                    ds.unmet -= 1;
                }
                if ds.status != StepStatus::Pending || ds.unmet > 0 {
                    continue;
                }
                let has_any = !def.steps[d as usize].any.is_empty();
                if !has_any || ds.any_done {
                    if let Some(skipped) = self.decide(d, at, out) {
                        work.push(skipped);
                    }
                } else if ds.any_left == 0 {
                    let reason = "no step in `after_any` completed".to_owned();
                    let ds = &mut self.slots[d as usize];
                    ds.status = StepStatus::Skipped;
                    ds.ended = Stamp::of(at);
                    ds.detail().skip_reason = Some(reason.clone().into_boxed_str());
                    out.push(Command::notify(Notice::StepSkipped { step: d, reason }));
                    work.push(d);
                }
            }
        }
        WORK.set(work);
    }

    /// A step whose dependencies are satisfied: evaluates its condition and queues
    /// it, or marks it skipped and returns it (the caller ends it).
    pub(super) fn decide(&mut self, step: StepId, at: DateTime<Utc>, out: &mut Vec<Command>) -> Option<StepId> {
        if let Some(output) = self.seed.as_ref().and_then(|s| s.get(&step)).cloned() {
            self.keep(step, output, at);
            return Some(step);
        }
        let verdict = match &self.step_policy(step).when {
            None => Ok(true),
            Some(cond) => {
                let ctx = self.context();
                let f = Arc::clone(&cond.f);
                guard::call(|| f(&ctx))
            }
        };
        match verdict {
            Ok(true) => {
                self.slots[step as usize].status = StepStatus::Ready;
                self.ready.push_back(step);
                None
            }
            Ok(false) => {
                let name = self.step_policy(step).when.as_ref().and_then(|w| w.name.clone());
                let reason = match name {
                    Some(n) => format!("condition `{n}` is false"),
                    None => "condition is false".to_owned(),
                };
                let slot = &mut self.slots[step as usize];
                slot.status = StepStatus::Skipped;
                slot.ended = Stamp::of(at);
                slot.detail().skip_reason = Some(reason.clone().into_boxed_str());
                out.push(Command::notify(Notice::StepSkipped { step, reason }));
                Some(step)
            }
            Err(panicked) => {
                let err =
                    panicked.into_error(Some(&format!("the condition of step `{}`", self.step_name(step)))).permanent();
                self.slots[step as usize].status = StepStatus::Running;
                self.fail_final(step, 0, err, at, out);
                None
            }
        }
    }
}
