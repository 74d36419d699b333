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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use self::command::{Command, Notice, TimerKind};
use self::event::{AwaitSpec, Event, Expanded, HandlerKind, StepReport, TimerId};
use crate::model::context::{Data, Grafts, Outputs};
use crate::model::def::{DefInner, StepKind};
use crate::model::ids::StepId;
use crate::model::status::{Status, StepStatus};
use crate::model::{
    Context, ExecutionId, OnError, StepBody, StepError, StepPolicy, WorkflowDef, format_duration, guard, kinds,
};

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

#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) step: Option<StepId>,
    pub(crate) error: StepError,
    pub(crate) attempts: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct CancelInfo {
    pub(crate) reason: String,
    pub(crate) cleanup: bool,
    pub(crate) rollback: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Rollback {
    queue: VecDeque<StepId>,
    current: Option<(StepId, u32)>,
    pub(crate) planned: Vec<StepId>,
    pub(crate) compensated: Vec<StepId>,
    pub(crate) failed: Vec<StepId>,
    started_at: Option<DateTime<Utc>>,
}

/// A moment stored in 8 bytes: microseconds since the Unix epoch, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(i64);

impl Default for Stamp {
    fn default() -> Self {
        Stamp::NONE
    }
}

impl Stamp {
    pub(crate) const NONE: Stamp = Stamp(i64::MIN);

    pub(crate) fn of(at: DateTime<Utc>) -> Self {
        Stamp(at.timestamp_micros())
    }

    pub(crate) fn get(self) -> Option<DateTime<Utc>> {
        if self == Self::NONE { None } else { DateTime::from_timestamp_micros(self.0) }
    }
}

/// Per-step facts that most steps never need.
#[derive(Clone, Debug, Default)]
pub(crate) struct Detail {
    pub(crate) error: Option<StepError>,
    pub(crate) skip_reason: Option<Box<str>>,
    /// Who to notify and other data of a pending approval, when the step gave any.
    pub(crate) await_info: Option<Box<AwaitSpec>>,
    pub(crate) await_timeout: Option<Duration>,
    pub(crate) await_due: Stamp,
    /// The context as it was when the step completed (steps with a rollback only).
    pub(crate) snapshot: Option<Data>,
    /// The child execution of a nested-workflow step, and the attempt that started it.
    pub(crate) child: Option<Box<(ExecutionId, u32)>>,
    pub(crate) compensation_error: Option<StepError>,
}

#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) status: StepStatus,
    any_done: bool,
    /// The running attempt is the `on_timeout` handler of an await, not the body.
    on_timeout: bool,
    pub(crate) attempt: u32,
    retries: u32,
    pending: u32,
    any_left: u32,
    graft_left: u32,
    started: Stamp,
    ended: Stamp,
    pub(crate) detail: Option<Box<Detail>>,
}

impl Slot {
    fn new(pending: u32, any: u32) -> Self {
        Slot {
            status: StepStatus::Pending,
            attempt: 0,
            retries: 0,
            pending,
            any_left: any,
            any_done: false,
            on_timeout: false,
            graft_left: 0,
            started: Stamp::NONE,
            ended: Stamp::NONE,
            detail: None,
        }
    }

    fn detail(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(Default::default)
    }

    pub(crate) fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started.get()
    }

    pub(crate) fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.ended.get()
    }
}

/// A step added by a graft.
#[derive(Clone)]
pub(crate) struct ExtraStep {
    pub(crate) name: Arc<str>,
    pub(crate) parent: StepId,
    pub(crate) body: Option<StepBody>,
    pub(crate) policy: Arc<StepPolicy>,
}

/// The steps grafts added, and their names.
#[derive(Default)]
struct Grafted {
    steps: Vec<ExtraStep>,
    names: HashMap<Arc<str>, StepId>,
    /// The names each graft added, in order, as steps see them (`Context::graft_steps`).
    by_graft: Grafts,
}

/// An attempt that ended without ending its step (a failure that is retried, a
/// snooze, an attempt cut short by a crash), or an attempt of a compensation:
/// what the timeline of every attempt shows beside each step's latest attempt.
#[derive(Clone, Debug)]
pub(crate) struct AttemptLog {
    pub(crate) step: StepId,
    pub(crate) attempt: u32,
    /// A compensation's attempt, not the step's.
    pub(crate) compensation: bool,
    pub(crate) started: Stamp,
    pub(crate) ended: Stamp,
    /// `error`, `snoozed`, `interrupted` (the process stopped), `ok`.
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<StepError>,
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

/// The state of one execution.
pub(crate) struct Machine {
    def: Arc<DefInner>,
    phase: Phase,
    paused: bool,
    slots: Vec<Slot>,
    /// Steps added by grafts (most executions have none).
    grafted: Option<Box<Grafted>>,
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

thread_local! {
    /// Scratch list of steps to end, reused across transitions.
    static WORK: std::cell::Cell<Vec<StepId>> = const { std::cell::Cell::new(Vec::new()) };
}

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

    pub(crate) fn step_count(&self) -> usize {
        self.slots.len()
    }

    /// Steps that have ended, and steps in all (graft additions included).
    pub(crate) fn progress(&self) -> (u32, u32) {
        (self.ended, self.slots.len() as u32)
    }

    pub(crate) fn workflow_attempt(&self) -> u32 {
        self.workflow_attempt
    }

    pub(crate) fn slot(&self, id: StepId) -> &Slot {
        &self.slots[id as usize]
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = (StepId, &Slot)> {
        self.slots.iter().enumerate().map(|(i, s)| (i as StepId, s))
    }

    fn extra(&self, index: usize) -> &ExtraStep {
        &self.grafted.as_ref().expect("a step id past the definition's steps is a grafted step").steps[index]
    }

    /// Gives back memory held for work that is over (called when the execution
    /// parks with nothing running).
    pub(crate) fn compact(&mut self) {
        self.ready.shrink_to_fit();
        self.timers.shrink_to_fit();
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

    /// A field of the execution's input.
    pub(crate) fn input_value(&self, field: &str) -> Option<&Value> {
        self.input.get(field)
    }

    /// The execution's input as a JSON map (for dead letters and replay).
    pub(crate) fn input_map(&self) -> Map<String, Value> {
        self.input.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Armed timers with their due times (to re-arm them after recovery).
    pub(crate) fn timers(&self) -> impl Iterator<Item = (TimerId, DateTime<Utc>)> + '_ {
        self.timers.iter().map(|(id, _, due)| (*id, *due))
    }

    /// The child execution started by the current attempt of a nested-workflow step.
    pub(crate) fn current_child(&self, step: StepId) -> Option<ExecutionId> {
        let slot = &self.slots[step as usize];
        slot.detail.as_ref().and_then(|d| d.child.as_deref()).filter(|c| c.1 == slot.attempt).map(|c| c.0)
    }

    pub(crate) fn running_steps(&self) -> Vec<StepId> {
        self.slots().filter(|(_, s)| s.status == StepStatus::Running).map(|(i, _)| i).collect()
    }

    /// When the running compensation attempt started.
    pub(crate) fn compensation_started_at(&self) -> Option<DateTime<Utc>> {
        self.compensation_started.get()
    }

    /// Records an attempt that ended without ending its step.
    fn log_attempt(&mut self, step: StepId, outcome: &'static str, error: Option<StepError>, at: DateTime<Utc>) {
        let slot = &self.slots[step as usize];
        let entry = AttemptLog {
            step,
            attempt: slot.attempt,
            compensation: false,
            started: slot.started,
            ended: Stamp::of(at),
            outcome,
            error,
        };
        self.attempt_log.get_or_insert_with(Default::default).push(entry);
    }

    // ----- transitions -----

    /// Applies an event, appending the resulting commands to `out`.
    pub(crate) fn apply(&mut self, event: Event, out: &mut Vec<Command>) -> Result<(), TransitionError> {
        let at = event.at();
        match event {
            Event::StepFinished { step, attempt, report, at } => {
                let signal_wait = match &report {
                    StepReport::Await { spec } => spec.signal.clone().map(|name| (name, spec.rerun)),
                    _ => None,
                };
                self.on_step_finished(step, attempt, report, at, out);
                if let Some(wait) = signal_wait {
                    self.begin_signal_wait(step, attempt, wait, at, out);
                }
            }
            Event::TimerFired { timer, at } => self.on_timer(timer, at, out),
            Event::Resumed { step, data, at } => self.on_resume(step, data, at, out)?,
            Event::Paused { .. } => self.on_pause(out)?,
            Event::Cancelled { reason, cleanup, rollback, at } => self.on_cancel(reason, cleanup, rollback, at, out)?,
            Event::CompensationFinished { step, attempt, result, at } => {
                self.on_compensation(step, attempt, result, at, out)
            }
            Event::HandlerFinished { handler, result, at } => self.on_handler(handler, result, at, out),
            Event::Recovered { at } => self.recover(at, out),
            Event::Aborted { error, at } => self.abort(error, at, out)?,
            Event::ChildStarted { step, attempt, child, .. } => {
                let slot = &mut self.slots[step as usize];
                if slot.attempt == attempt {
                    let d = slot.detail();
                    d.child = Some(Box::new((child, attempt)));
                }
            }
            Event::Signalled { name, payload, at } => self.on_signal(name, payload, at, out)?,
            Event::SignalTaken { step, attempt, name, .. } => self.on_signal_taken(step, attempt, &name, out),
        }
        self.settle(at, out);
        self.sweep_signals();
        Ok(())
    }

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
    fn recover(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    /// The engine gave up on the execution (its driver failed): it ends `Failed`
    /// with `error`, whatever it was doing.
    fn abort(&mut self, error: StepError, at: DateTime<Utc>, out: &mut Vec<Command>) -> Result<(), TransitionError> {
        if let Phase::Done(s) = self.phase {
            return Err(TransitionError::Finished(s));
        }
        for id in 0..self.slots.len() {
            let slot = &mut self.slots[id];
            if matches!(
                slot.status,
                StepStatus::Pending
                    | StepStatus::Ready
                    | StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Snoozed
                    | StepStatus::Awaiting
                    | StepStatus::Expanded
            ) {
                slot.status = StepStatus::Cancelled;
                slot.ended = Stamp::of(at);
            }
        }
        self.ready.clear();
        self.running = 0;
        self.ended = self.slots.len() as u32;
        self.set_error_keys(None, &error, self.workflow_attempt);
        out.push(Command::notify(Notice::WorkflowFailed { step: None, error: error.clone() }));
        self.failure = Some(Box::new(Failure { step: None, error, attempts: self.workflow_attempt }));
        self.finish(Status::Failed, at, out);
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

    fn complete(&mut self, step: StepId, output: Option<Value>, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    fn skip(&mut self, step: StepId, reason: String, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let slot = &mut self.slots[step as usize];
        slot.status = StepStatus::Skipped;
        slot.ended = Stamp::of(at);
        slot.detail().skip_reason = Some(reason.clone().into_boxed_str());
        out.push(Command::notify(Notice::StepSkipped { step, reason }));
        self.end(step, at, out);
    }

    fn end_as(&mut self, step: StepId, status: StepStatus, at: DateTime<Utc>) {
        let slot = &mut self.slots[step as usize];
        slot.status = status;
        slot.ended = Stamp::of(at);
        self.ended += 1;
    }

    /// Marks `step` ended and, while running, makes its dependents ready or skipped.
    fn end(&mut self, step: StepId, at: DateTime<Utc>, out: &mut Vec<Command>) {
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
                    ds.pending -= 1;
                }
                if ds.status != StepStatus::Pending || ds.pending > 0 {
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
    fn decide(&mut self, step: StepId, at: DateTime<Utc>, out: &mut Vec<Command>) -> Option<StepId> {
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

    fn expand(&mut self, step: StepId, steps: Vec<Expanded>, at: DateTime<Utc>, out: &mut Vec<Command>) {
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
            grafted.steps.push(ExtraStep {
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

    fn fail_attempt(
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

    fn fail_final(&mut self, step: StepId, attempt: u32, error: StepError, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    fn begin_failure(
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
    fn set_error_keys(&mut self, step: Option<StepId>, error: &StepError, attempts: u32) {
        let step_name = step.map(|s| Value::String(self.step_name(s).to_string())).unwrap_or(Value::Null);
        self.data.insert("__error__".into(), error.to_json());
        self.data.insert("__error_step__".into(), step_name);
        self.data.insert("__attempts__".into(), Value::from(attempts));
        let trace = error.details().and_then(|d| d.get("stacktrace")).cloned().unwrap_or(Value::Null);
        self.data.insert("__stacktrace__".into(), trace);
    }

    /// Disarms timers, cancels waiting steps, and interrupts what can be interrupted.
    fn stop_everything(&mut self, out: &mut Vec<Command>) {
        for (timer, _, due) in self.timers.drain(..) {
            out.push(Command::CancelTimer { timer, due });
        }
        for id in 0..self.slots.len() as StepId {
            let slot = &mut self.slots[id as usize];
            match slot.status {
                StepStatus::Ready | StepStatus::Retrying | StepStatus::Snoozed | StepStatus::Awaiting => {
                    slot.status = StepStatus::Cancelled;
                    self.ended += 1;
                }
                StepStatus::Running => {
                    if let Some(&(child, _)) = slot.detail.as_ref().and_then(|d| d.child.as_deref()) {
                        let reason =
                            self.cancel.as_ref().map(|c| c.reason.clone()).unwrap_or_else(|| "parent failed".into());
                        out.push(Command::CancelChild { child, reason });
                    } else {
                        out.push(Command::Interrupt { step: id, graceful: self.cancel.is_some() });
                    }
                }
                _ => {}
            }
        }
        self.ready.clear();
    }

    fn on_timer(&mut self, timer: TimerId, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    fn on_resume(
        &mut self,
        step: Option<StepId>,
        data: Map<String, Value>,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        match self.phase {
            Phase::Running => {}
            Phase::Done(s) => return Err(TransitionError::Finished(s)),
            _ => return Err(TransitionError::NotRunning(self.status())),
        }
        let awaiting: Vec<StepId> = self
            .slots()
            .filter(|(i, s)| s.status == StepStatus::Awaiting && step.is_none_or(|w| w == *i))
            .map(|(i, _)| i)
            .collect();
        if let Some(w) = step
            && awaiting.is_empty()
        {
            return Err(TransitionError::StepNotAwaiting(self.step_name(w).to_string()));
        }
        if !self.paused && awaiting.is_empty() {
            return Err(TransitionError::NotResumable);
        }
        // One `resume` notice per call, whether it ends a pause, an await, or both.
        if std::mem::replace(&mut self.paused, false) || !awaiting.is_empty() {
            out.push(Command::notify(Notice::Resumed));
        }
        if awaiting.is_empty() {
            for (k, v) in data {
                self.data.insert(k, v);
            }
            return Ok(());
        }
        for s in awaiting {
            self.disarm(|k| k == TimerKind::AwaitTimeout(s), out);
            self.complete(s, Some(Value::Object(data.clone())), at, out);
        }
        Ok(())
    }

    fn on_pause(&mut self, out: &mut Vec<Command>) -> Result<(), TransitionError> {
        match self.phase {
            Phase::Running if self.paused => Err(TransitionError::AlreadyPaused),
            Phase::Running => {
                self.paused = true;
                out.push(Command::notify(Notice::Paused { running: self.running_steps() }));
                Ok(())
            }
            Phase::Done(s) => Err(TransitionError::Finished(s)),
            _ => Err(TransitionError::NotRunning(self.status())),
        }
    }

    fn on_cancel(
        &mut self,
        reason: String,
        cleanup: bool,
        rollback: bool,
        _at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        if let Phase::Done(s) = self.phase {
            return Err(TransitionError::Finished(s));
        }
        if self.cancel.is_some() {
            return Ok(());
        }
        self.cancel = Some(Box::new(CancelInfo { reason: reason.clone(), cleanup, rollback }));
        out.push(Command::notify(Notice::Cancelling { reason }));
        out.push(Command::SignalCancel);
        if matches!(self.phase, Phase::Running | Phase::Restarting) {
            self.phase = Phase::Draining;
            self.paused = false;
            self.stop_everything(out);
        }
        Ok(())
    }

    fn on_compensation(
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

    fn run_command(&self, step: StepId, attempt: u32) -> Command {
        match self.runnable_kind(step) {
            RunKind::Child => Command::StartChild { step, attempt },
            RunKind::Body => Command::RunStep { step, attempt, on_timeout: false },
        }
    }

    fn runnable_kind(&self, step: StepId) -> RunKind {
        match self.runnable(step) {
            Runnable::Workflow { .. } => RunKind::Child,
            _ => RunKind::Body,
        }
    }

    fn start_rollback(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    fn after_rollback(&mut self, at: DateTime<Utc>, out: &mut Vec<Command>) {
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

    fn failure_status(&self) -> Status {
        match &self.rollback {
            Some(rb) if !rb.planned.is_empty() && rb.failed.is_empty() => Status::RolledBack,
            Some(rb) if !rb.planned.is_empty() => Status::RollbackFailed,
            _ => Status::Failed,
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

    fn arm(&mut self, kind: TimerKind, due: DateTime<Utc>, out: &mut Vec<Command>) {
        let timer = self.next_timer;
        self.next_timer += 1;
        self.timers.push((timer, kind, due));
        out.push(Command::ArmTimer { timer, due });
    }

    fn disarm(&mut self, pred: impl Fn(TimerKind) -> bool, out: &mut Vec<Command>) {
        self.timers.retain(|(timer, kind, due)| {
            let keep = !pred(*kind);
            if !keep {
                out.push(Command::CancelTimer { timer: *timer, due: *due });
            }
            keep
        });
    }
}

enum RunKind {
    Body,
    Child,
}

/// `at` plus `d`, saturating at the latest instant chrono represents. Durations
/// are range-checked where users give them ([`MAX_DURATION`](crate::model::MAX_DURATION)),
/// so this only keeps the arithmetic from overflowing.
pub(crate) fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d).ok().and_then(|d| at.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Context keys set when an execution fails.
pub(crate) const ERROR_KEYS: [&str; 4] = ["__error__", "__error_step__", "__attempts__", "__stacktrace__"];

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
