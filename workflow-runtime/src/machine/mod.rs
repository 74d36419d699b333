//! The pure state machine of one execution: `(state, event) -> (state, commands)`.
//!
//! No I/O, no clock, no randomness: time arrives inside events, random samples too.
//! The executor carries out the commands and feeds back what happened; the store
//! journals the same events, so recovery is replay.

pub(crate) mod command;
pub(crate) mod event;
pub(crate) mod report;
pub(crate) mod signal;
pub(crate) mod view;

mod control;
mod failure;
mod graft;
mod readiness;
mod recovery;
mod rollback;
mod slots;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use self::command::{Command, Notice, TimerKind};
pub(crate) use self::control::CancelInfo;
use self::event::{ExecutionEvent, HandlerKind, StepReport, TimerId};
pub(crate) use self::failure::Failure;
use self::graft::GraftedSteps;
pub(crate) use self::graft::Runnable;
pub(crate) use self::rollback::Rollback;
pub(crate) use self::slots::{AttemptLog, Slot, Stamp};
use crate::model::context::{Data, Outputs};
use crate::model::def::DefInner;
use crate::model::ids::StepId;
use crate::model::status::{Status, StepStatus};
use crate::model::{Context, StepError, WorkflowDef};

/// An event that is not valid in the execution's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransitionError {
    #[error("the execution has already ended ({0})")]
    Finished(Status),
    #[error("the execution is {0}, not running")]
    NotRunning(Status),
    #[error("the execution is already paused")]
    AlreadyPaused,
    #[error("the execution is neither paused nor awaiting")]
    NotResumable,
    #[error("step `{0}` is not awaiting")]
    StepNotAwaiting(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Failing or cancelling: waiting for running steps to end.
    Draining,
    Compensating,
    Handler(HandlerKind),
    /// Waiting to restart the workflow after a failure.
    Restarting,
    Done(Status),
}

/// The state of one execution.
pub(crate) struct Machine {
    def: Arc<DefInner>,
    phase: Phase,
    paused: bool,
    slots: Vec<Slot>,
    /// Steps added by grafts (most executions have none).
    grafted: Option<Box<GraftedSteps>>,
    pub(crate) data: Data,
    pub(crate) outputs: Outputs,
    input: Data,
    ready: VecDeque<StepId>,
    running: u32,
    ended: u32,
    completed: Vec<StepId>,
    timers: Vec<(TimerId, TimerKind, DateTime<Utc>)>,
    next_timer: TimerId,
    workflow_attempt: u32,
    pub(crate) failure: Option<Box<Failure>>,
    pub(crate) cancel: Option<Box<CancelInfo>>,
    pub(crate) rollback: Option<Box<Rollback>>,
    /// Errors of workflow-level handlers (rare: boxed).
    pub(crate) handler_errors: Option<Box<[(HandlerKind, StepError)]>>,
    /// Earlier attempts and compensations (see [`AttemptLog`]); none for most
    /// executions, whose steps each ran once.
    #[allow(clippy::box_collection)] // one word in every parked execution, not three
    pub(crate) attempt_log: Option<Box<Vec<AttemptLog>>>,
    /// When the running compensation attempt started.
    compensation_started: Stamp,
    pub(crate) started_at: DateTime<Utc>,
    ended_at: Stamp,
    /// Signals sent to the execution (see `signal.rs`; most executions have none).
    signals: Option<Box<signal::Signals>>,
    /// For an execution restarted from a step of another: the steps it begins
    /// with completed (see [`Seed`]).
    seed: Option<Seed>,
}

/// The steps an execution restarted from a step of an ended one begins with
/// completed, each with the output it recorded there (`None`: it had none). A
/// seeded step is completed, not run, when its dependencies are satisfied, in
/// every attempt of the workflow.
pub(crate) type Seed = Arc<HashMap<StepId, Option<Value>>>;

impl Machine {
    /// A new execution of `def` with `input`, started at `at`.
    #[cfg(test)]
    pub(crate) fn start(def: &WorkflowDef, input: Data, at: DateTime<Utc>, out: &mut Vec<Command>) -> Machine {
        Machine::start_seeded(def, input, None, at, out)
    }

    /// A new execution of `def` with `input` that begins with the steps of `seed`
    /// completed, started at `at`.
    pub(crate) fn start_seeded(
        def: &WorkflowDef,
        input: Data,
        seed: Option<Seed>,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Machine {
        let inner = Arc::clone(&def.inner);
        let n = inner.steps.len();
        let mut m = Machine {
            slots: Vec::with_capacity(n),
            def: inner,
            phase: Phase::Running,
            paused: false,
            grafted: None,
            data: input.clone(),
            outputs: Outputs::new(),
            input,
            ready: VecDeque::new(),
            running: 0,
            ended: 0,
            completed: Vec::new(),
            timers: Vec::new(),
            next_timer: 0,
            workflow_attempt: 1,
            failure: None,
            cancel: None,
            rollback: None,
            handler_errors: None,
            attempt_log: None,
            compensation_started: Stamp::NONE,
            started_at: at,
            ended_at: Stamp::NONE,
            signals: None,
            seed,
        };
        m.begin_attempt(at, out);
        m
    }

    fn begin_attempt(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let def = Arc::clone(&self.def);
        self.slots.clear();
        self.slots.extend(def.steps.iter().map(|s| Slot::new(s.all.len() as u32, s.any.len() as u32)));
        if let Some(t) = def.policy.timeout {
            self.arm(TimerKind::WorkflowTimeout, later(at, t), out);
        }
        for &r in &def.roots {
            if let Some(skipped) = self.decide(r, at, out) {
                self.end(skipped, at, out);
            }
        }
        self.settle(at, out);
    }

    // ----- views -----

    /// The execution's status.
    pub(crate) fn status(&self) -> Status {
        match self.phase {
            Phase::Done(s) => s,
            Phase::Running if self.paused => Status::Paused,
            Phase::Running => {
                if self.slots.iter().any(|s| s.status == StepStatus::Awaiting) {
                    Status::Awaiting
                } else {
                    Status::Running
                }
            }
            Phase::Draining if self.cancel.is_some() => Status::Cancelling,
            Phase::Draining | Phase::Restarting => Status::Failing,
            Phase::Compensating => Status::RollingBack,
            Phase::Handler(_) if self.cancel.is_some() => Status::Cancelling,
            Phase::Handler(HandlerKind::OnFailure) => Status::Failing,
            Phase::Handler(_) => Status::Running,
        }
    }

    /// When the execution ended.
    pub(crate) fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.ended_at.get()
    }

    pub(crate) fn def(&self) -> &Arc<DefInner> {
        &self.def
    }

    /// Steps that have ended, and steps in all (graft additions included).
    pub(crate) fn progress(&self) -> (u32, u32) {
        (self.ended, self.slots.len() as u32)
    }

    pub(crate) fn workflow_attempt(&self) -> u32 {
        self.workflow_attempt
    }

    /// Gives back memory held for work that is over (called when the execution
    /// parks with nothing running).
    pub(crate) fn compact(&mut self) {
        self.ready.shrink_to_fit();
        self.timers.shrink_to_fit();
    }

    /// The context a step attempt (or handler) sees.
    pub(crate) fn context(&self) -> Context {
        Context {
            data: self.data.clone(),
            outputs: self.outputs.clone(),
            input: self.input.clone(),
            grafts: self.grafted.as_ref().map(|g| g.by_graft.clone()).unwrap_or_default(),
            meta: None,
            step: None,
            attempt: 0,
        }
    }

    /// A field of the execution's input.
    pub(crate) fn input_value(&self, field: &str) -> Option<&Value> {
        self.input.get(field)
    }

    /// The execution's input as a JSON map (for dead letters and replay).
    pub(crate) fn input_map(&self) -> Map<String, Value> {
        if self.input.is_empty() {
            return Map::new();
        }
        self.input.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    // ----- transitions -----

    /// Applies an event, appending the resulting commands to `out`.
    pub(crate) fn apply(&mut self, event: ExecutionEvent, out: &mut Vec<Command>) -> Result<(), TransitionError> {
        let at = event.at();
        match event {
            ExecutionEvent::StepFinished { step, attempt, report, at } => {
                let signal_wait = match &report {
                    StepReport::Await { spec } => spec.signal.clone().map(|name| (name, spec.rerun)),
                    _ => None,
                };
                self.on_step_finished(step, attempt, report, at, out);
                if let Some(wait) = signal_wait {
                    self.begin_signal_wait(step, attempt, wait, at, out);
                }
            }
            ExecutionEvent::TimerFired { timer, at } => self.on_timer(timer, at, out),
            ExecutionEvent::Resumed { step, data, at } => self.on_resume(step, data, at, out)?,
            ExecutionEvent::Paused { .. } => self.on_pause(out)?,
            ExecutionEvent::Cancelled { reason, cleanup, rollback, at } => {
                self.on_cancel(reason, cleanup, rollback, at, out)?
            }
            ExecutionEvent::CompensationFinished { step, attempt, result, at } => {
                self.on_compensation(step, attempt, result, at, out)
            }
            ExecutionEvent::HandlerFinished { handler, result, at } => self.on_handler(handler, result, at, out),
            ExecutionEvent::Recovered { at } => self.recover(at, out),
            ExecutionEvent::Aborted { error, at } => self.abort(error, at, out)?,
            ExecutionEvent::ChildStarted { step, attempt, child, .. } => {
                let slot = &mut self.slots[step as usize];
                if slot.attempt == attempt {
                    let d = slot.detail();
                    d.child = Some(Box::new((child, attempt)));
                }
            }
            ExecutionEvent::Signalled { name, payload, at } => self.on_signal(name, payload, at, out)?,
            ExecutionEvent::SignalTaken { step, attempt, name, .. } => self.on_signal_taken(step, attempt, &name, out),
        }
        self.settle(at, out);
        self.sweep_signals();
        Ok(())
    }

    fn on_step_finished(
        &mut self,
        step: StepId,
        attempt: u32,
        report: StepReport,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        let Some(slot) = self.slots.get_mut(step as usize) else { return };
        if slot.status != StepStatus::Running || slot.attempt != attempt {
            return;
        }
        slot.on_timeout = false;
        self.running -= 1;
        let live = self.phase == Phase::Running;
        match report {
            StepReport::Done => self.complete(step, None, at, out),
            StepReport::Output { value } => self.complete(step, Some(value), at, out),
            StepReport::Skip { reason } => self.skip(step, reason, at, out),
            StepReport::Await { spec } if live => {
                // An await that gives no timeout waits at most the step's own.
                let timeout = spec.timeout.or(self.step_policy(step).await_timeout);
                let due = timeout.map(|t| later(at, t));
                let slot = &mut self.slots[step as usize];
                slot.status = StepStatus::Awaiting;
                let d = slot.detail();
                d.await_timeout = timeout;
                d.await_due = due.map_or(Stamp::NONE, Stamp::of);
                let has_info = spec.notify.is_some() || spec.approvers.is_some() || !spec.data.is_empty();
                d.await_info = has_info.then_some(spec);
                if let Some(due) = due {
                    self.arm(TimerKind::AwaitTimeout(step), due, out);
                }
                out.push(Command::notify(Notice::StepAwaiting { step }));
            }
            StepReport::Snooze { delay } if live => {
                self.log_attempt(step, "snoozed", None, at);
                self.slots[step as usize].status = StepStatus::Snoozed;
                self.arm(TimerKind::Snooze(step), later(at, delay), out);
                out.push(Command::notify(Notice::StepSnoozed { step, delay }));
            }
            StepReport::Await { .. } | StepReport::Snooze { .. } => self.end_as(step, StepStatus::Cancelled, at),
            StepReport::Expand { steps } => self.expand(step, steps, at, out),
            StepReport::Failed { error, jitter } => self.fail_attempt(step, attempt, error, jitter, at, out),
        }
    }

    fn on_handler(
        &mut self,
        handler: HandlerKind,
        result: Result<(), StepError>,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        if self.phase != Phase::Handler(handler) {
            return;
        }
        if let Err(e) = result {
            let mut errors = self.handler_errors.take().map(Vec::from).unwrap_or_default();
            errors.push((handler, e));
            self.handler_errors = Some(errors.into_boxed_slice());
        }
        let status = match handler {
            HandlerKind::OnSuccess => Status::Completed,
            HandlerKind::OnCancel => Status::Cancelled,
            HandlerKind::OnFailure => self.failure_status(),
        };
        self.finish(status, at, out);
    }

    // ----- phases -----

    /// Starts queued steps and moves between phases once nothing is running.
    fn settle(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        match self.phase {
            Phase::Running => {
                if !self.paused {
                    let limit = self.def.policy.step_concurrency.unwrap_or(u32::MAX);
                    while self.running < limit {
                        let Some(s) = self.ready.pop_front() else { break };
                        let slot = &mut self.slots[s as usize];
                        slot.status = StepStatus::Running;
                        slot.attempt += 1;
                        slot.started = Stamp::of(at);
                        self.running += 1;
                        let attempt = slot.attempt;
                        out.push(self.run_command(s, attempt));
                    }
                }
                if self.running == 0 && self.ended as usize == self.slots.len() {
                    self.disarm(|k| k == TimerKind::WorkflowTimeout, out);
                    if self.def.policy.on_success.is_some() {
                        self.phase = Phase::Handler(HandlerKind::OnSuccess);
                        out.push(Command::RunHandler { handler: HandlerKind::OnSuccess });
                    } else {
                        self.finish(Status::Completed, at, out);
                    }
                }
            }
            Phase::Draining if self.running == 0 => {
                let rollback = match &self.cancel {
                    Some(c) => c.rollback,
                    None => true,
                };
                if rollback {
                    self.start_rollback(at, out);
                } else {
                    self.after_rollback(at, out);
                }
            }
            _ => {}
        }
    }

    fn restart(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
        self.workflow_attempt += 1;
        self.phase = Phase::Running;
        self.grafted = None;
        self.data = self.input.clone();
        self.outputs = Outputs::new();
        self.ready.clear();
        self.running = 0;
        self.ended = 0;
        self.completed.clear();
        self.failure = None;
        self.rollback = None;
        self.begin_attempt(at, out);
    }

    fn finish(&mut self, status: Status, at: DateTime<Utc>, out: &mut Vec<Command>) {
        self.phase = Phase::Done(status);
        self.ended_at = Stamp::of(at);
        for (timer, _, due) in self.timers.drain(..) {
            out.push(Command::CancelTimer { timer, due });
        }
        out.push(Command::Finish { status });
    }
}

/// `at` plus `d`, saturating at the latest instant chrono represents. Durations
/// are range-checked where users give them ([`MAX_DURATION`](crate::model::MAX_DURATION)),
/// so this only keeps the arithmetic from overflowing.
pub(crate) fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d).ok().and_then(|d| at.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
