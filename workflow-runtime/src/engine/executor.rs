//! The imperative shell around the state machine: one driver task per active
//! execution polls its step futures, feeds results to the machine and carries out
//! the machine's commands.
//!
//! An execution whose steps are all parked (awaiting, snoozed, waiting for a retry)
//! has no task at all: its state sits in the engine's table and the next event (a
//! timer, `resume`, `cancel`) starts a driver again.
//!
//! The write-ahead rule lives here, where commands leave the machine: the driver
//! holds what the machine asked for until the journal ticket of the events that
//! asked for it (the execution's creation included) is durable, then carries it
//! all out. One group commit wakes every driver it made ready.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use super::EngineInner;
use super::breaker::{Permit, Ticket};
use super::journal::Ack;
use super::limits::{Admission, Keys};
use super::timers::TimerTarget;
use crate::machine::command::{Command, Notice};
use crate::machine::event::{Event, HandlerKind};
use crate::machine::report::report_of;
use crate::machine::view::Identity;
use crate::machine::{Machine, Runnable, TransitionError};
use crate::model::TraceContext;
use crate::model::context::ExecMeta;
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::ids::StepId;
use crate::model::status::Status;
use crate::model::{
    BoxStepFuture, BreakerOptions, CancelHandler, Context, ExecutionId, Outcome, StepBody, StepError, StepErrorHandler,
    StepLimits, StepResult, Timeout, WorkflowDef, guard, kinds,
};
use crate::store::{JournalEntry, ParentRef, Write};
use crate::telemetry::Event as Telemetry;

/// One execution known to this engine.
pub(crate) struct Execution {
    pub(crate) id: ExecutionId,
    pub(crate) def: WorkflowDef,
    pub(crate) meta: Arc<ExecMeta>,
    /// How it was started; `None` for a manual start (kept small: most are).
    trigger: Option<Box<Trigger>>,
    /// The trace its spans join (see `engine::trace`).
    pub(crate) trace: Option<Box<TraceContext>>,
    pub(crate) core: Mutex<Core>,
    /// Where it waits, higher goes first ([`StartOptions::priority`](crate::StartOptions::priority)).
    pub(crate) priority: i32,
    /// Wakes the driver when an outside event queued commands.
    pub(crate) wake: Wake,
    /// Wakes `wait()` callers when the execution ends.
    pub(crate) done: Notify,
}

/// The mutable part of an execution.
pub(crate) struct Core {
    pub(crate) machine: Machine,
    /// Commands from outside events, for the driver.
    pub(crate) pending: Vec<Command>,
    /// Whether a driver task is running.
    pub(crate) driver: bool,
    /// Last journal sequence number.
    pub(crate) seq: u64,
    /// The journal ticket of the latest write for this execution (its creation,
    /// its events): what it asks for next waits until this ticket is durable.
    pub(crate) ticket: u64,
    /// Another node holds the execution now: the driver stops.
    pub(crate) abandoned: bool,
    /// On a shared store: the node is letting go of the waiting execution (its
    /// `Park` write is queued); calls about it go through the store.
    pub(crate) parking: bool,
    /// The execution was cancelled while it waited for its workflow's slot:
    /// the next turn begins none of the steps it was about to start.
    pub(crate) withdrawing: bool,
    /// The final state, once ended.
    pub(crate) final_state: Option<Arc<ExecutionState>>,
    /// The `sagaflow.execution` span: one per execution, closed when it ends (none
    /// when no subscriber listens, to keep parked executions small).
    span: Option<Box<tracing::Span>>,
}

impl Execution {
    pub(crate) fn new(
        id: ExecutionId,
        def: WorkflowDef,
        machine: Machine,
        trigger: Trigger,
        parent: Option<ParentRef>,
        trace: Option<TraceContext>,
        priority: i32,
    ) -> Self {
        let meta = Arc::new(ExecMeta {
            id,
            workflow: Arc::clone(&def.inner.name),
            cancel: Default::default(),
            parent: parent.as_ref().map(|p| p.execution),
            signals: Default::default(),
        });
        let span = tracing::info_span!(
            "sagaflow.execution",
            workflow_name = %def.name(),
            execution_id = %id,
            trigger_type = trigger.kind(),
            state = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        if let Some(t) = &trace
            && !span.is_disabled()
        {
            span.record("trace_id", t.trace_id.as_str());
            span.record("parent_span_id", t.span_id.as_str());
            super::trace::adopt(&span, t);
        }
        let span = (!span.is_disabled()).then(|| Box::new(span));
        Execution {
            id,
            def,
            meta,
            trigger: (trigger != Trigger::Manual).then(|| Box::new(trigger)),
            trace: trace.map(Box::new),
            priority,
            core: Mutex::new(Core {
                machine,
                pending: Vec::new(),
                driver: false,
                seq: 0,
                ticket: 0,
                abandoned: false,
                parking: false,
                withdrawing: false,
                final_state: None,
                span,
            }),
            wake: Wake::default(),
            done: Notify::new(),
        }
    }

    pub(crate) fn workflow(&self) -> &Arc<str> {
        &self.meta.workflow
    }

    /// Whether the node is letting go of the execution (see `Core::parking`).
    pub(crate) fn is_parking(&self) -> bool {
        self.core.lock().parking
    }

    /// The public view of the execution now.
    pub(crate) fn state(&self, now: DateTime<Utc>) -> ExecutionState {
        let core = self.core.lock();
        match &core.final_state {
            Some(s) => (**s).clone(),
            None => core.machine.view(self.identity(), now),
        }
    }

    /// The public view, or, if building it fails (the machine broke: a bug), the
    /// facts the execution's record holds.
    fn state_or_minimal(&self, now: DateTime<Utc>) -> ExecutionState {
        let core = self.core.lock();
        if let Ok(state) = guard::call(|| core.machine.view(self.identity(), now)) {
            return state;
        }
        super::pending_state(&crate::store::NewExecution {
            id: self.id,
            workflow: self.workflow().to_string(),
            version: self.def.version().to_owned(),
            input: serde_json::Map::new(),
            parent: None,
            trigger: self.trigger.as_deref().cloned().unwrap_or_default(),
            created_at: core.machine.started_at,
            start_at: None,
            unique_key: None,
            debounce_key: None,
            kept: Vec::new(),
            priority: 0,
            trace: None,
        })
    }

    pub(crate) fn identity(&self) -> Identity<'_> {
        const MANUAL: &Trigger = &Trigger::Manual;
        Identity {
            id: self.id,
            parent: self.meta.parent,
            trigger: self.trigger.as_deref().unwrap_or(MANUAL),
            parked: None,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.core.lock().final_state.is_some()
    }

    /// Stops the driver (its running jobs are dropped) and wakes the waiters.
    pub(crate) fn abandon(&self) {
        let mut core = self.core.lock();
        core.abandoned = true;
        core.pending.clear();
        drop(core);
        self.wake.signal();
        self.done.notify_waiters();
    }

    fn step_context(&self, machine: &Machine, step: StepId, attempt: u32) -> Context {
        let mut ctx = machine.context();
        ctx.meta = Some(Arc::clone(&self.meta));
        ctx.step = Some(Arc::clone(machine.step_name(step)));
        ctx.attempt = attempt;
        ctx
    }

    fn handler_context(&self, machine: &Machine) -> Context {
        let mut ctx = machine.context();
        ctx.meta = Some(Arc::clone(&self.meta));
        ctx
    }
}

/// The driver's wake-up: an outside event queued commands for it. Cheaper than a
/// `Notify` on the driver's hot path: registering is two atomic operations.
#[derive(Default)]
pub(crate) struct Wake {
    signalled: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl Wake {
    pub(crate) fn signal(&self) {
        self.signalled.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn poll(&self, cx: &mut TaskContext<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.signalled.swap(false, std::sync::atomic::Ordering::AcqRel) { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// What a job is for.
#[derive(Clone, Debug)]
enum JobTag {
    Step { step: StepId, attempt: u32, name: Arc<str>, breaker: Option<Arc<Ticket>> },
    Compensation { step: StepId, attempt: u32, name: Arc<str> },
    Handler(HandlerKind),
}

/// A step, compensation or handler future with its deadline. Deadlines are
/// enforced by one timer per driver (see [`Jobs`]), so a step costs no timer of
/// its own.
struct Job {
    tag: JobTag,
    fut: JobFuture,
    limit: Option<Duration>,
    deadline: Option<Instant>,
    expired: bool,
    /// The waker of the last pending poll, to wake the job when it expires.
    waker: Option<Waker>,
    started: Instant,
    span: tracing::Span,
    /// A limited step's admission (see `engine::limits`), before its function runs.
    gate: Option<Box<Gate>>,
}

/// A job that waits for its step's concurrency slot and rate limit turn first:
/// its timeout counts from its admission, on a timer of its own.
struct Gate {
    admit: Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>,
    admitted: Option<Admission>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Job {
    fn new(tag: JobTag, fut: JobFuture, limit: Option<Duration>, span: tracing::Span, started: Instant) -> Self {
        Job {
            tag,
            fut,
            limit,
            deadline: limit.and_then(|l| started.checked_add(l)),
            expired: false,
            waker: None,
            started,
            span,
            gate: None,
        }
    }

    /// A job that runs `fut` once `admit` let it.
    fn gated(
        tag: JobTag,
        fut: JobFuture,
        limit: Option<Duration>,
        span: tracing::Span,
        started: Instant,
        admit: Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>,
    ) -> Self {
        let mut job = Job::new(tag, fut, None, span, started);
        job.limit = limit;
        job.gate = Some(Box::new(Gate { admit, admitted: None, timer: None }));
        job
    }

    /// For a gated job: `Ready(Some(result))` when it ends before running
    /// (refused, or timed out on its own timer), `Pending` while it waits.
    fn poll_gate(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<StepResult>> {
        let Some(gate) = &mut self.gate else { return Poll::Ready(None) };
        if gate.admitted.is_none() {
            match gate.admit.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(admission)) => {
                    gate.admitted = Some(admission);
                    self.started = Instant::now();
                    gate.timer = self.limit.map(|l| Box::pin(tokio::time::sleep(l)));
                }
            }
        }
        if let Some(timer) = &mut gate.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            self.expired = true;
        }
        Poll::Ready(None)
    }

    /// Marks the job timed out and wakes it so that it reports so.
    fn expire(&mut self) {
        self.expired = true;
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

enum JobFuture {
    Plain(BoxStepFuture),
    Abortable(Abortable<BoxStepFuture>),
}

/// The running jobs of one execution. Most executions run one step at a time, so
/// the first job is polled directly with the driver's own waker; only further
/// concurrent jobs pay for a `FuturesUnordered` slot.
///
/// Timeouts: one timer serves every job, armed at the earliest deadline of the
/// jobs that are still pending. Jobs that finish at their first poll never touch
/// it, and a new job with a later deadline than the armed one costs nothing.
#[derive(Default)]
struct Jobs {
    first: Option<Job>,
    /// Created on first use: an empty `FuturesUnordered` still allocates.
    rest: Option<FuturesUnordered<Job>>,
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// Earliest deadline of the jobs pushed since the timer was last armed.
    earliest_new: Option<Instant>,
}

impl Jobs {
    fn push(&mut self, job: Job) {
        if let Some(d) = job.deadline {
            self.earliest_new = Some(self.earliest_new.map_or(d, |e| e.min(d)));
        }
        if self.first.is_none() {
            self.first = Some(job);
        } else {
            self.rest.get_or_insert_with(FuturesUnordered::new).push(job);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    /// Polls the jobs; collects the finished ones, and times out expired ones.
    fn poll_finished(&mut self, cx: &mut TaskContext<'_>, out: &mut Vec<Finished>) -> Poll<()> {
        loop {
            if let Some(job) = &mut self.first
                && let Poll::Ready(done) = Pin::new(job).poll(cx)
            {
                self.first = None;
                out.push(done);
            }
            if let Some(rest) = &mut self.rest {
                while let Poll::Ready(Some(done)) = rest.poll_next_unpin(cx) {
                    out.push(done);
                }
            }
            if !out.is_empty() {
                return Poll::Ready(());
            }
            if let Some(d) = self.earliest_new.take()
                && self.armed.is_none_or(|a| d < a)
            {
                self.arm(d);
            }
            let Some(timer) = self.timer.as_mut().filter(|_| self.armed.is_some()) else { return Poll::Pending };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.armed = None;
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for job in self.first.iter_mut().chain(self.rest.iter_mut().flat_map(|r| r.iter_mut())) {
                match job.deadline {
                    Some(d) if d <= now => job.expire(),
                    Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                    None => {}
                }
            }
            if let Some(n) = next {
                self.arm(n);
            }
        }
    }

    fn arm(&mut self, at: Instant) {
        match &mut self.timer {
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = Some(at);
    }
}

/// What a driver runs: its jobs, the abort handles of its cancellable steps, and
/// the `on_step_error` hooks that the next attempt of their step waits for.
#[derive(Default)]
struct Running {
    jobs: Jobs,
    aborts: HashMap<StepId, AbortHandle>,
    hooks: HashMap<StepId, tokio::task::JoinHandle<()>>,
}

/// A finished job.
struct Finished {
    tag: JobTag,
    result: StepResult,
    started: Instant,
}

impl Future for Job {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Finished> {
        let this = &mut *self;
        match this.poll_gate(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(result)) => {
                return Poll::Ready(Finished { tag: this.tag.clone(), result, started: this.started });
            }
            Poll::Ready(None) => {}
        }
        if this.expired {
            // Drop the step's future now: the timed-out work stops here.
            this.fut = JobFuture::Plain(Box::pin(std::future::pending()));
            let limit = this.limit.unwrap_or_default();
            let err = StepError::timeout(format!("did not finish within {}", crate::model::format_duration(limit)));
            return Poll::Ready(Finished { tag: this.tag.clone(), result: Err(err), started: this.started });
        }
        let polled = {
            let _entered = this.span.enter();
            guard::call(|| match &mut this.fut {
                JobFuture::Plain(f) => f.as_mut().poll(cx),
                JobFuture::Abortable(f) => match Pin::new(f).poll(cx) {
                    Poll::Ready(Ok(r)) => Poll::Ready(r),
                    Poll::Ready(Err(_)) => {
                        Poll::Ready(Err(
                            StepError::new(kinds::CANCELLED, "interrupted: the execution was cancelled").permanent()
                        ))
                    }
                    Poll::Pending => Poll::Pending,
                },
            })
        };
        let result = match polled {
            Ok(Poll::Ready(r)) => r,
            Ok(Poll::Pending) => {
                if this.deadline.is_some() && !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    this.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Err(panicked) => Err(panicked.into_error(None)),
        };
        this.span.record("result", result.as_ref().map_or("error", outcome_name));
        Poll::Ready(Finished { tag: this.tag.clone(), result, started: this.started })
    }
}

/// How an event is journaled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Journaling {
    /// Queued for the next group commit; drivers wait on its ticket.
    Plain,
    /// The same, and the caller learns what became of it (an acknowledged call).
    Acknowledged,
    /// The effect of this queued command: the command is marked carried out in
    /// the same transaction.
    Command(i64),
}

/// Work decided under the execution's lock and carried out after releasing it.
enum Action {
    Run {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        body: Option<StepBody>,
        ctx: Context,
        timeout: Timeout,
        cancellable: bool,
        breaker: Option<(Arc<str>, BreakerOptions)>,
        limits: Option<Arc<StepLimits>>,
    },
    Child {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        workflow: Arc<str>,
        input: Option<StepBody>,
        ctx: Context,
        existing: Option<ExecutionId>,
        timeout: Timeout,
        limits: Option<Arc<StepLimits>>,
    },
    /// Interrupt a cancellable step once its grace period has passed.
    Interrupt(StepId, Duration),
    /// A step start interrupted before it began: it reports the interruption
    /// without its function being called.
    Withdrawn {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
    },
    CancelChild(ExecutionId, String),
    Compensate {
        step: StepId,
        attempt: u32,
        name: Arc<str>,
        body: StepBody,
        ctx: Context,
        timeout: Timeout,
    },
    Handler {
        kind: HandlerKind,
        run: HandlerRun,
        ctx: Context,
    },
    /// Run `on_step_error`; the step's next attempt waits for it.
    Hook {
        handler: StepErrorHandler,
        ctx: Context,
        step: String,
        error: StepError,
        attempt: u32,
        id: StepId,
    },
    Emit(Telemetry),
    Finish(Arc<ExecutionState>),
}

impl Action {
    /// Whether the action only records what happened (telemetry, the final state)
    /// and starts no work.
    fn only_records(&self) -> bool {
        matches!(self, Action::Emit(_) | Action::Finish(_))
    }
}

enum HandlerRun {
    Body(StepBody),
    Cancel(CancelHandler, String),
}

impl EngineInner {
    /// Applies an event under the lock, journaling it first when the store is
    /// durable. Returns the journal ticket.
    pub(crate) fn apply_locked(
        &self,
        exec: &Execution,
        core: &mut Core,
        event: Event,
        out: &mut Vec<Command>,
    ) -> Result<Option<u64>, TransitionError> {
        Ok(self.apply_journaled(exec, core, event, out, Journaling::Plain)?.map(|(ticket, _)| ticket))
    }

    /// Applies an event under the lock and journals it as `how` says; returns the
    /// journal ticket, and the acknowledgement if one was asked for.
    pub(crate) fn apply_journaled(
        &self,
        exec: &Execution,
        core: &mut Core,
        event: Event,
        out: &mut Vec<Command>,
        how: Journaling,
    ) -> Result<Option<(u64, Option<Ack>)>, TransitionError> {
        let json = if self.durable { serde_json::to_string(&event).ok() } else { None };
        core.machine.apply(event, out)?;
        Ok(json.map(|event| {
            core.seq += 1;
            let entry = JournalEntry { execution: exec.id, seq: core.seq, event };
            let (ticket, ack) = match how {
                Journaling::Plain => (self.journal.append(Write::Event(entry)), None),
                Journaling::Acknowledged => {
                    let (t, ack) = self.journal.submit(Write::Event(entry));
                    (t, Some(ack))
                }
                Journaling::Command(command) => {
                    let (t, ack) = self.journal.submit(Write::CommandEvent { entry, command });
                    (t, Some(ack))
                }
            };
            core.ticket = ticket;
            (ticket, ack)
        }))
    }

    /// Delivers an outside event (timer, resume, pause, cancel, child start) and
    /// makes sure a driver carries out what follows.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        event: Event,
    ) -> Result<Option<u64>, TransitionError> {
        Ok(self.deliver_journaled(exec, event, Journaling::Plain)?.map(|(ticket, _)| ticket))
    }

    /// [`deliver`](Self::deliver), journaling the event as `how` says. `Err(None)`:
    /// the execution is no longer driven here (another node holds it now).
    pub(crate) fn deliver_journaled(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        event: Event,
        how: Journaling,
    ) -> Result<Option<(u64, Option<Ack>)>, TransitionError> {
        let mut core = exec.core.lock();
        let mut cmds = Vec::new();
        let ticket = self.apply_journaled(exec, &mut core, event, &mut cmds, how)?;
        core.pending.append(&mut cmds);
        self.ensure_driver(exec, &mut core);
        Ok(ticket)
    }

    /// On a shared store: lets go of an execution whose driver stopped with
    /// nothing running and nothing due for at least `idle` (it awaits an approval,
    /// a long timer). Its timers here are disarmed; the `Park` write, queued after
    /// its events, releases it in the store, where any node claims it when it is
    /// due or a command arrives; the flush of that write removes it here.
    fn park_if_idle(&self, exec: &Execution, core: &mut Core, idle: Duration) {
        let m = &core.machine;
        if core.final_state.is_some() || core.abandoned || core.parking || !m.running_steps().is_empty() {
            return;
        }
        let now = self.clock.now();
        let wake_at = m.timers().map(|(_, due)| due).min();
        if wake_at.is_some_and(|due| due < crate::machine::later(now, idle)) {
            return;
        }
        core.parking = true;
        for (timer, due) in m.timers() {
            self.timers.cancel(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
        }
        if let Some(due) = wake_at {
            // This node looks for due work then, as every node does.
            self.timers.arm(TimerTarget::Claim, self.clock.instant_at(due));
        }
        tracing::debug!(execution_id = %exec.id, ?wake_at, "parking an idle execution in the store");
        core.ticket = self.journal.append(Write::Park { id: exec.id, wake_at });
    }

    pub(crate) fn ensure_driver(self: &Arc<Self>, exec: &Arc<Execution>, core: &mut Core) {
        if core.pending.is_empty() || core.abandoned {
            return;
        }
        if core.driver {
            exec.wake.signal();
        } else {
            core.driver = true;
            tokio::spawn(drive(Arc::clone(self), Arc::clone(exec)));
        }
    }

    /// Turns commands into actions; must run under the execution's lock.
    fn prepare(&self, exec: &Execution, core: &mut Core, cmds: &mut Vec<Command>, actions: &mut Vec<Action>) {
        let wanted = self.bus.wanted();
        for cmd in cmds.drain(..) {
            let m = &core.machine;
            match cmd {
                Command::RunStep { step, attempt, on_timeout } => {
                    let policy = m.step_policy(step);
                    let body = if on_timeout {
                        policy.on_timeout.as_ref().map(|h| Arc::clone(&h.f))
                    } else {
                        match m.runnable(step) {
                            Runnable::Task(b) | Runnable::Graft(b) => Some(Arc::clone(b)),
                            Runnable::Workflow { .. } | Runnable::Missing => None,
                        }
                    };
                    actions.push(Action::Run {
                        step,
                        attempt,
                        name: Arc::clone(m.step_name(step)),
                        body,
                        ctx: exec.step_context(m, step, attempt),
                        timeout: policy.timeout.clone(),
                        cancellable: policy.cancellable,
                        breaker: policy.circuit_breaker.clone(),
                        limits: policy.limits.clone(),
                    });
                }
                Command::StartChild { step, attempt } => {
                    if let Runnable::Workflow { workflow, input } = m.runnable(step) {
                        actions.push(Action::Child {
                            step,
                            attempt,
                            name: Arc::clone(m.step_name(step)),
                            workflow: Arc::clone(workflow),
                            input: input.cloned(),
                            ctx: exec.step_context(m, step, attempt),
                            existing: m.current_child(step),
                            timeout: m.step_policy(step).timeout.clone(),
                            limits: m.step_policy(step).limits.clone(),
                        });
                    }
                }
                Command::ArmTimer { timer, due } => {
                    self.timers.arm(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
                }
                Command::CancelTimer { timer, due } => {
                    self.timers.cancel(TimerTarget::Execution(exec.id, timer), self.clock.instant_at(due));
                }
                Command::Interrupt { step, graceful } => {
                    // A cancel gives the step its grace period; a failing execution
                    // (a workflow timeout, a failed step) interrupts it at once. An
                    // execution cancelled while it waited for its workflow's slot
                    // begins none of the steps it was about to start.
                    let held = match core.withdrawing {
                        true => actions.iter().position(|a| matches!(a, Action::Run { step: s, .. } if *s == step)),
                        false => None,
                    };
                    if let Some(at) = held
                        && let Action::Run { step, attempt, name, .. } = actions.remove(at)
                    {
                        actions.insert(at, Action::Withdrawn { step, attempt, name });
                        continue;
                    }
                    let grace = if graceful { m.step_policy(step).cancel_grace } else { Duration::ZERO };
                    actions.push(Action::Interrupt(step, grace));
                }
                Command::CancelChild { child, reason } => actions.push(Action::CancelChild(child, reason)),
                Command::SignalCancel => exec.meta.cancel.cancel(),
                Command::RunCompensation { step, attempt } => {
                    let policy = m.step_policy(step);
                    if let Some(rb) = &policy.rollback {
                        let mut ctx = m.compensation_context(step);
                        ctx.meta = Some(Arc::clone(&exec.meta));
                        ctx.step = Some(Arc::clone(m.step_name(step)));
                        ctx.attempt = attempt;
                        actions.push(Action::Compensate {
                            step,
                            attempt,
                            name: Arc::clone(m.step_name(step)),
                            body: Arc::clone(&rb.f),
                            ctx,
                            timeout: policy.timeout.clone(),
                        });
                    }
                }
                Command::RunHandler { handler } => {
                    let p = &exec.def.inner.policy;
                    let run = match handler {
                        HandlerKind::OnFailure => p.on_failure.as_ref().map(|h| HandlerRun::Body(Arc::clone(&h.f))),
                        HandlerKind::OnSuccess => p.on_success.as_ref().map(|h| HandlerRun::Body(Arc::clone(&h.f))),
                        HandlerKind::OnCancel => p.on_cancel.as_ref().map(|h| {
                            let reason = m.cancel.as_ref().map(|c| c.reason.clone()).unwrap_or_default();
                            HandlerRun::Cancel(Arc::clone(&h.f), reason)
                        }),
                    };
                    if let Some(run) = run {
                        actions.push(Action::Handler { kind: handler, run, ctx: exec.handler_context(m) });
                    }
                }
                Command::StepErrorHook { step, error, attempt } => {
                    if let Some(h) = &exec.def.inner.policy.on_step_error {
                        actions.push(Action::Hook {
                            handler: Arc::clone(&h.f),
                            ctx: exec.step_context(m, step, attempt),
                            step: m.step_name(step).to_string(),
                            error,
                            attempt,
                            id: step,
                        });
                    }
                }
                Command::Notify(notice) => {
                    if wanted && let Some(event) = self.telemetry_of(exec, core, *notice) {
                        actions.push(Action::Emit(event));
                    }
                }
                Command::Finish { status } => {
                    tracing::debug!(execution_id = %exec.id, %status, "execution ended");
                    let state = Arc::new(core.machine.view(exec.identity(), self.clock.now()));
                    core.final_state = Some(Arc::clone(&state));
                    actions.push(Action::Finish(state));
                }
            }
        }
        core.withdrawing = false;
    }

    fn telemetry_of(&self, exec: &Execution, core: &Core, notice: Notice) -> Option<Telemetry> {
        let m = &core.machine;
        let workflow_name = Arc::clone(exec.workflow());
        let execution_id = exec.id;
        let name = |s: StepId| Arc::clone(m.step_name(s));
        Some(match notice {
            Notice::StepSkipped { step, reason } => {
                Telemetry::StepSkip { workflow_name, execution_id, step_name: name(step), reason }
            }
            Notice::WorkflowFailed { step, error } => {
                Telemetry::WorkflowFail { workflow_name, execution_id, error, error_step: step.map(name) }
            }
            Notice::Cancelling { reason } => Telemetry::WorkflowCancel { workflow_name, execution_id, reason },
            Notice::Paused { running } => {
                Telemetry::WorkflowPause { workflow_name, execution_id, step_name: running.first().map(|&s| name(s)) }
            }
            Notice::Resumed => Telemetry::WorkflowResume { workflow_name, execution_id },
            Notice::RollbackStarted { steps } => {
                Telemetry::RollbackStart { workflow_name, execution_id, steps: steps.into_iter().map(name).collect() }
            }
            Notice::RollbackFinished { compensated, failed, duration } => Telemetry::RollbackStop {
                workflow_name,
                execution_id,
                duration,
                steps: compensated.into_iter().map(name).collect(),
                failed: failed.into_iter().map(name).collect(),
            },
            Notice::StepRetrying { step, attempt, delay, error } => {
                tracing::info!(%execution_id, step = %name(step), attempt, ?delay, %error, "step failed; retrying");
                return None;
            }
            Notice::StepFailed { step, attempt, error } => {
                tracing::info!(%execution_id, step = %name(step), attempt, %error, "step failed for good");
                return None;
            }
            Notice::StepAwaiting { step } => {
                tracing::info!(%execution_id, step = %name(step), "step awaiting resume");
                return None;
            }
            Notice::StepSnoozed { step, delay } => {
                tracing::debug!(%execution_id, step = %name(step), ?delay, "step snoozed");
                return None;
            }
            Notice::StepExpanded { step, added } => {
                tracing::debug!(%execution_id, step = %name(step), added, "graft added steps");
                return None;
            }
            Notice::Restarting { attempt, delay } => {
                tracing::info!(%execution_id, attempt, ?delay, "workflow failed; restarting");
                return None;
            }
            Notice::SignalReceived { name: signal_name, step } => {
                Telemetry::SignalReceive { workflow_name, execution_id, signal_name, step_name: step.map(name) }
            }
            Notice::SignalTaken { name: signal_name, step } => {
                Telemetry::SignalTake { workflow_name, execution_id, signal_name, step_name: name(step) }
            }
        })
    }

    /// Turns a finished job into the machine event it reports.
    fn event_of(
        &self,
        exec: &Execution,
        done: Finished,
        (now, at): (Instant, DateTime<Utc>),
        wanted: bool,
        emits: &mut Vec<Telemetry>,
    ) -> Event {
        match done.tag {
            JobTag::Step { step, attempt, name, breaker } => {
                if let Some(ticket) = &breaker {
                    let ok = done.result.as_ref().map_or_else(|e| e.kind() == kinds::CIRCUIT_OPEN, |_| true);
                    ticket.record(ok);
                }
                if wanted {
                    let workflow_name = Arc::clone(exec.workflow());
                    let elapsed = now.saturating_duration_since(done.started);
                    emits.push(match &done.result {
                        Ok(o) => Telemetry::StepStop {
                            workflow_name,
                            execution_id: exec.id,
                            step_name: Arc::clone(&name),
                            duration: elapsed,
                            result: outcome_name(o),
                        },
                        Err(e) => Telemetry::StepException {
                            workflow_name,
                            execution_id: exec.id,
                            step_name: Arc::clone(&name),
                            duration: elapsed,
                            kind: e.kind().to_owned(),
                            reason: e.message().to_owned(),
                        },
                    });
                }
                let report = report_of(&name, done.result, &exec.def.inner.policy, fastrand::f64());
                Event::StepFinished { step, attempt, report, at }
            }
            JobTag::Compensation { step, attempt, name } => {
                if wanted {
                    emits.push(Telemetry::RollbackStepStop {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: name,
                        attempt,
                        duration: now.saturating_duration_since(done.started),
                        error: done.result.as_ref().err().cloned(),
                    });
                }
                Event::CompensationFinished { step, attempt, result: done.result.map(|_| ()), at }
            }
            JobTag::Handler(handler) => Event::HandlerFinished { handler, result: done.result.map(|_| ()), at },
        }
    }

    /// Carries out an action outside the lock.
    fn carry_out(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        action: Action,
        running: &mut Running,
        immediate: &mut Vec<Finished>,
        now: Instant,
    ) {
        let Running { jobs, aborts, hooks } = running;
        match action {
            Action::Run { step, attempt, name, body, ctx, timeout, cancellable, breaker, limits } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::StepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let mut tag = JobTag::Step { step, attempt, name: Arc::clone(&name), breaker: None };
                // Where the step's `ctx.signal` reads (created once per execution).
                self.signal_port(exec);
                let Some(body) = body else {
                    let err = StepError::new(
                        kinds::VERSION_MISMATCH,
                        format!("the function of step `{name}` is not available after recovery"),
                    )
                    .permanent();
                    immediate.push(Finished { tag, result: Err(err), started: now });
                    return;
                };
                if let Some((b, opts)) = &breaker {
                    let permit = self.breakers.acquire(b, opts);
                    if permit == Permit::Reject {
                        let err = StepError::new(kinds::CIRCUIT_OPEN, format!("circuit breaker `{b}` is open"));
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                    let ticket = self.breakers.ticket(b, permit);
                    tag = JobTag::Step { step, attempt, name: Arc::clone(&name), breaker: Some(ticket) };
                }
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let admit = match self.admission(exec, &name, limits.as_ref(), &ctx) {
                    Ok(admit) => admit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let span = step_span(exec, &name, attempt);
                let hook = hooks.remove(&step);
                let fut: BoxStepFuture = match hook {
                    // An `on_step_error` hook for the attempt before ends first,
                    // and a limited step is admitted first: only then is the
                    // step's function called.
                    hook if hook.is_some() || admit.is_some() => Box::pin(async move {
                        if let Some(hook) = hook {
                            let _ = hook.await;
                        }
                        match guard::call(|| body(ctx)) {
                            Ok(f) => f.await,
                            Err(panicked) => Err(panicked.into_error(None)),
                        }
                    }),
                    _ => match guard::call(|| body(ctx)) {
                        Ok(f) => f,
                        Err(panicked) => {
                            immediate.push(Finished { tag, result: Err(panicked.into_error(None)), started: now });
                            return;
                        }
                    },
                };
                let fut = if cancellable {
                    let (handle, reg) = AbortHandle::new_pair();
                    aborts.insert(step, handle);
                    JobFuture::Abortable(Abortable::new(fut, reg))
                } else {
                    JobFuture::Plain(fut)
                };
                jobs.push(match admit {
                    None => Job::new(tag, fut, limit, span, now),
                    Some(admit) => Job::gated(tag, fut, limit, span, now, admit),
                });
            }
            Action::Child { step, attempt, name, workflow, input, ctx, existing, timeout, limits } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::StepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        let tag = JobTag::Step { step, attempt, name, breaker: None };
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let admit = match self.admission(exec, &name, limits.as_ref(), &ctx) {
                    Ok(admit) => admit,
                    Err(err) => {
                        let tag = JobTag::Step { step, attempt, name, breaker: None };
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let span = step_span(exec, &name, attempt);
                let fut = run_child(Arc::clone(self), Arc::clone(exec), step, attempt, workflow, input, ctx, existing);
                let tag = JobTag::Step { step, attempt, name, breaker: None };
                let fut = JobFuture::Plain(Box::pin(fut));
                jobs.push(match admit {
                    None => Job::new(tag, fut, limit, span, now),
                    Some(admit) => Job::gated(tag, fut, limit, span, now, admit),
                });
            }
            Action::Withdrawn { step, attempt, name } => {
                let tag = JobTag::Step { step, attempt, name, breaker: None };
                let err = StepError::new(kinds::CANCELLED, "interrupted before it began: the execution was cancelled");
                immediate.push(Finished { tag, result: Err(err.permanent()), started: now });
            }
            Action::Interrupt(step, grace) => {
                // The step saw the cancellation already (`SignalCancel`); it gets
                // its grace period to return, then it is dropped.
                if let Some(h) = aborts.remove(&step) {
                    if grace.is_zero() {
                        h.abort();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            h.abort();
                        });
                    }
                }
            }
            Action::CancelChild(child, reason) => {
                let engine = Arc::clone(self);
                tokio::spawn(async move {
                    let options = super::CancelOptions::reason(reason);
                    if let Err(e) = engine.cancel(child, options).await {
                        tracing::debug!(%child, error = %e, "cancelling a child execution");
                    }
                });
            }
            Action::Compensate { step, attempt, name, body, ctx, timeout } => {
                if self.bus.wanted() {
                    self.bus.emit(Telemetry::RollbackStepStart {
                        workflow_name: Arc::clone(exec.workflow()),
                        execution_id: exec.id,
                        step_name: Arc::clone(&name),
                        attempt,
                    });
                }
                let tag = JobTag::Compensation { step, attempt, name: Arc::clone(&name) };
                let limit = match step_limit(&name, &timeout, &ctx) {
                    Ok(limit) => limit,
                    Err(err) => {
                        immediate.push(Finished { tag, result: Err(err), started: now });
                        return;
                    }
                };
                let fut = match guard::call(|| body(ctx)) {
                    Ok(f) => f,
                    Err(panicked) => {
                        let what = format!("the rollback of step `{name}`");
                        immediate.push(Finished { tag, result: Err(panicked.into_error(Some(&what))), started: now });
                        return;
                    }
                };
                let span = tracing::info_span!(
                    "sagaflow.rollback",
                    workflow_name = %exec.workflow(),
                    execution_id = %exec.id,
                    step_name = %name,
                    attempt,
                    result = tracing::field::Empty,
                );
                jobs.push(Job::new(tag, JobFuture::Plain(fut), limit, span, now));
            }
            Action::Handler { kind, run, ctx } => {
                let tag = JobTag::Handler(kind);
                let fut: BoxStepFuture = match guard::call(|| match run {
                    HandlerRun::Body(b) => b(ctx),
                    HandlerRun::Cancel(h, reason) => Box::pin(h(ctx, reason).map(|r| r.map(|()| Outcome::Done))),
                }) {
                    Ok(f) => f,
                    Err(panicked) => {
                        let what = format!("the `{}` handler", kind.as_str());
                        immediate.push(Finished { tag, result: Err(panicked.into_error(Some(&what))), started: now });
                        return;
                    }
                };
                jobs.push(Job::new(tag, JobFuture::Plain(fut), None, tracing::Span::none(), now));
            }
            Action::Hook { handler, ctx, step, error, attempt, id } => {
                let fut = guard::call(|| handler(ctx, step, error, attempt));
                let done = tokio::spawn(async move {
                    let result = match fut {
                        Ok(fut) => guard::run(fut).await.unwrap_or_else(|p| Err(p.into_error(None))),
                        Err(panicked) => Err(panicked.into_error(None)),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "on_step_error handler failed");
                    }
                });
                hooks.insert(id, done);
            }
            Action::Emit(event) => self.bus.emit(event),
            Action::Finish(state) => self.finish(exec, state),
        }
    }

    /// The admission a limited step's attempt waits for (`None`: not limited).
    ///
    /// # Errors
    ///
    /// The context lacks a field a limit counts by.
    #[allow(clippy::type_complexity)] // the gate's future, named where it is built
    fn admission(
        &self,
        exec: &Execution,
        step: &str,
        limits: Option<&Arc<StepLimits>>,
        ctx: &Context,
    ) -> Result<Option<Pin<Box<dyn Future<Output = Result<Admission, StepError>> + Send>>>, StepError> {
        let Some(limits) = limits else { return Ok(None) };
        let keys = Keys::of(step, limits, ctx)?;
        let scope: Arc<str> = Arc::from(format!("{}.{step}", exec.workflow()));
        Ok(Some(Box::pin(Arc::clone(&self.limits).admit(scope, Arc::clone(limits), keys, exec.priority))))
    }

    fn finish(self: &Arc<Self>, exec: &Arc<Execution>, state: Arc<ExecutionState>) {
        if let Some(span) = exec.core.lock().span.take() {
            span.record("state", state.status.as_str());
        }
        if self.bus.wanted() {
            self.bus.emit(Telemetry::WorkflowStop {
                workflow_name: Arc::clone(exec.workflow()),
                execution_id: exec.id,
                state: state.status,
                duration: state.duration,
            });
        }
        let policy = &exec.def.inner.policy;
        if state.status.is_failure() && policy.dead_letter {
            let failed_at = state.ended_at.unwrap_or_else(|| self.clock.now());
            let input = exec.core.lock().machine.input_map();
            let letter = crate::store::DeadLetter {
                id: exec.id,
                workflow: exec.workflow().to_string(),
                input,
                error: state.failure.as_ref().map(|f| f.error.clone()),
                error_step: state.failure.as_ref().and_then(|f| f.step.clone()),
                failed_at,
                expires_at: failed_at + policy.dead_letter_ttl,
                state: (*state).clone(),
            };
            self.journal.append(Write::DeadLetter(Box::new(letter)));
        }
        self.journal.append(Write::Finish(state));
        exec.done.notify_waiters();
    }
}

/// The time limit of a step attempt (or compensation) from its timeout, which may
/// be a function of the context: called through the guard, and range-checked.
fn step_limit(step: &str, timeout: &Timeout, ctx: &Context) -> Result<Option<Duration>, StepError> {
    let limit = guard::call(|| timeout.resolve(ctx))
        .map_err(|panicked| panicked.into_error(Some(&format!("the timeout function of step `{step}`"))).permanent())?;
    match limit {
        Some(d) if d > crate::model::MAX_DURATION => Err(StepError::new(
            kinds::INVALID_DURATION,
            format!(
                "the timeout function of step `{step}` returned {d:?}, longer than the longest supported ({})",
                crate::model::format_duration(crate::model::MAX_DURATION)
            ),
        )
        .permanent()),
        limit => Ok(limit),
    }
}

/// The `sagaflow.step` span of one step attempt, a child of the execution's span.
/// `result` is recorded when the attempt ends (`ok`, `skip`, ..., `error`).
fn step_span(exec: &Execution, name: &str, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        "sagaflow.step",
        workflow_name = %exec.workflow(),
        execution_id = %exec.id,
        step_name = %name,
        attempt,
        result = tracing::field::Empty,
    )
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done | Outcome::Output(_) => "ok",
        Outcome::Skip(_) => "skip",
        Outcome::Await(_) => "await",
        Outcome::Expand(_) => "expand",
        Outcome::Snooze(_) => "snooze",
    }
}

/// The future of a nested-workflow step: computes the child's input, starts the
/// child (or re-attaches to it after recovery), and waits for it. Dropping it
/// before the child ends (a timeout) cancels the child.
#[allow(clippy::too_many_arguments)] // one call site, every argument distinct
async fn run_child(
    engine: Arc<EngineInner>,
    parent: Arc<Execution>,
    step: StepId,
    attempt: u32,
    workflow: Arc<str>,
    input: Option<StepBody>,
    ctx: Context,
    existing: Option<ExecutionId>,
) -> StepResult {
    let child = match existing {
        Some(id) => id,
        None => {
            let mut data = ctx.data.clone();
            if let Some(f) = input {
                match f(ctx.clone()).await? {
                    Outcome::Output(serde_json::Value::Object(map)) => {
                        for (k, v) in map {
                            data.insert(k, v);
                        }
                    }
                    Outcome::Done | Outcome::Output(serde_json::Value::Null) => {}
                    other => {
                        return Err(StepError::new(
                            kinds::INVALID_OUTCOME,
                            format!(
                                "the input function of a nested workflow returned {other:?}; expected a JSON object"
                            ),
                        )
                        .permanent());
                    }
                }
            }
            let trigger = Trigger::Parent { execution: parent.id, step: ctx.step().unwrap_or_default().to_owned() };
            let link = ParentRef { execution: parent.id, step, attempt };
            let id = engine.start_child(&workflow, data, trigger, link).await.map_err(|e| {
                StepError::new(kinds::CHILD_FAILED, format!("could not start workflow `{workflow}`: {e}")).permanent()
            })?;
            let at = engine.clock.now();
            if let Err(e) = engine.deliver(&parent, Event::ChildStarted { step, attempt, child: id, at }) {
                tracing::debug!(error = %e, "recording a child start");
            }
            id
        }
    };
    let guard = CancelOnDrop { engine: Arc::clone(&engine), child: Some(child) };
    let state = engine.wait_for(child).await;
    let mut guard = guard;
    guard.child = None;
    let state = state.map_err(|e| StepError::new(kinds::CHILD_FAILED, e.to_string()))?;
    match state.status {
        Status::Completed => Ok(Outcome::Output(serde_json::Value::Object(state.context))),
        Status::Cancelled => Err(StepError::new(
            kinds::CANCELLED,
            format!("child execution {child} of workflow `{workflow}` was cancelled"),
        )
        .permanent()),
        status => {
            let cause = state.failure.map(|f| f.error.to_string()).unwrap_or_else(|| status.to_string());
            Err(StepError::new(
                kinds::CHILD_FAILED,
                format!("child execution {child} of workflow `{workflow}` ended {status}: {cause}"),
            )
            .with_details(serde_json::json!({ "child": child, "status": status })))
        }
    }
}

struct CancelOnDrop {
    engine: Arc<EngineInner>,
    child: Option<ExecutionId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let engine = Arc::clone(&self.engine);
            tokio::spawn(async move {
                let _ = engine
                    .cancel(child, super::CancelOptions::reason("parent step timed out or was interrupted"))
                    .await;
            });
        }
    }
}

/// The driver of one execution. If it panics (a bug in the engine: user code is
/// called through the guard), the execution ends `Failed` with kind
/// `"engine_panic"`, so that `wait` and `cancel` answer and the engine carries on.
pub(crate) async fn drive(engine: Arc<EngineInner>, exec: Arc<Execution>) {
    let span = exec.core.lock().span.as_deref().cloned().unwrap_or_else(tracing::Span::none);
    let driven = guard::run(async {
        // Held until the driver returns: while the execution has work in progress.
        let _slot = super::limits::workflow_turn(&engine.limits, &exec).await;
        run_driver(Arc::clone(&engine), Arc::clone(&exec)).await;
    })
    .instrument(span)
    .await;
    if let Err(panicked) = driven {
        engine.driver_failed(&exec, panicked);
    }
}

impl EngineInner {
    /// Ends an execution whose driver panicked: an `Aborted` event is journaled
    /// and the final state recorded. Its running jobs were dropped with the driver.
    fn driver_failed(self: &Arc<Self>, exec: &Arc<Execution>, panicked: guard::Panicked) {
        tracing::error!(execution_id = %exec.id, panic = %panicked.0, "the execution's driver panicked; it ends failed");
        let error = StepError::new(
            kinds::ENGINE_PANIC,
            format!("the engine failed while driving the execution: {}", panicked.0),
        )
        .with_details(serde_json::json!({ "stacktrace": format!("panicked: {}", panicked.0) }))
        .permanent();
        let mut actions = Vec::new();
        let ended = {
            let mut core = exec.core.lock();
            core.driver = false;
            core.pending.clear();
            if core.abandoned {
                return;
            }
            match &core.final_state {
                // It had ended; its end may not be recorded yet.
                Some(state) => {
                    let state = Arc::clone(state);
                    drop(core);
                    self.finish(exec, state);
                    return;
                }
                None => guard::call(|| {
                    let mut cmds = Vec::new();
                    let at = self.clock.now();
                    self.apply_locked(exec, &mut core, Event::Aborted { error: error.clone(), at }, &mut cmds)
                        .map(|_| self.prepare(exec, &mut core, &mut cmds, &mut actions))
                }),
            }
        };
        match ended {
            Ok(Ok(())) => {
                for action in actions {
                    if let Action::Emit(event) = action {
                        self.bus.emit(event);
                    } else if let Action::Finish(state) = action {
                        self.finish(exec, state);
                    }
                }
            }
            // The machine itself cannot take the event: record the end without it.
            other => {
                tracing::error!(execution_id = %exec.id, outcome = ?other.map(|r| r.err()), "recording a failed driver's end");
                let mut state = exec.state_or_minimal(self.clock.now());
                state.status = Status::Failed;
                state.ended_at = Some(self.clock.now());
                state.failure = Some(crate::model::execution::FailureInfo { step: None, error, attempts: 1 });
                let state = Arc::new(state);
                exec.core.lock().final_state = Some(Arc::clone(&state));
                self.finish(exec, state);
            }
        }
    }
}

async fn run_driver(engine: Arc<EngineInner>, exec: Arc<Execution>) {
    let mut running = Running::default();
    let mut finished: Vec<Finished> = Vec::with_capacity(4);
    let mut cmds: Vec<Command> = Vec::with_capacity(8);
    // What the machine asked for, held until the events that asked are durable.
    let mut held: Vec<Action> = Vec::with_capacity(8);
    let mut emits: Vec<Telemetry> = Vec::new();
    // The journal ticket `held` waits for, and the last one this task registered
    // a wake-up for.
    let mut gate = 0u64;
    let mut registered = 0u64;
    loop {
        // One clock read per turn serves every result and every job started in it.
        let now = Instant::now();
        {
            let wanted = engine.bus.wanted();
            let mut core = exec.core.lock();
            if core.abandoned {
                core.driver = false;
                return;
            }
            if !finished.is_empty() {
                let at = (now, engine.clock.at(now));
                for done in finished.drain(..) {
                    if let JobTag::Step { step, .. } = &done.tag
                        && !running.aborts.is_empty()
                    {
                        running.aborts.remove(step);
                    }
                    let event = engine.event_of(&exec, done, at, wanted, &mut emits);
                    if let Err(e) = engine.apply_locked(&exec, &mut core, event, &mut cmds) {
                        tracing::debug!(error = %e, "ignoring a stale step result");
                    }
                }
            }
            cmds.append(&mut core.pending);
            engine.prepare(&exec, &mut core, &mut cmds, &mut held);
            if !held.is_empty() {
                gate = core.ticket;
            }
            if held.is_empty() && running.jobs.is_empty() && emits.is_empty() {
                core.driver = false;
                core.machine.compact();
                core.pending = Vec::new();
                if let Some(node) = &engine.node {
                    engine.park_if_idle(&exec, &mut core, node.options.park_after);
                }
                return;
            }
        }
        for e in emits.drain(..) {
            engine.bus.emit(e);
        }
        // The write-ahead rule: nothing the machine asked for starts before the
        // events that asked for it are committed. What only records what happened
        // (telemetry, the final state, itself a journal write queued behind those
        // events) goes at once, in order, up to the first action that starts work.
        if !held.is_empty() {
            let ready = if engine.journal.is_durable(gate) {
                // Read after the durability check: a flush that dropped this
                // execution's writes (another node holds it) marked it first.
                if engine.durable && exec.core.lock().abandoned {
                    continue;
                }
                // On a shared store, work starts only under a live lease: a node
                // that was stopped or cut off past its lease starts nothing.
                if let Some(node) = &engine.node
                    && !node.holds_lease()
                {
                    engine.fence();
                    continue;
                }
                held.len()
            } else {
                held.iter().take_while(|a| a.only_records()).count()
            };
            for a in held.drain(..ready) {
                engine.carry_out(&exec, a, &mut running, &mut finished, now);
            }
        }
        if !finished.is_empty() || (running.jobs.is_empty() && held.is_empty()) {
            continue;
        }
        std::future::poll_fn(|cx| {
            if running.jobs.poll_finished(cx, &mut finished).is_ready() {
                return Poll::Ready(());
            }
            if !held.is_empty() {
                if gate > registered {
                    registered = gate;
                    if engine.journal.poll_durable(gate, cx).is_ready() {
                        return Poll::Ready(());
                    }
                } else if engine.journal.is_durable(gate) {
                    return Poll::Ready(());
                }
            }
            exec.wake.poll(cx)
        })
        .await;
    }
}
