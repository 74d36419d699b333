//! A test kit for your own workflows: an engine on tokio's paused clock that skips
//! time, steps replaced by fakes, and the timeline of what each execution did.
//!
//! Enabled by the `testing` feature (`sagaflow = { version = "0.x", features =
//! ["testing"] }` in `[dev-dependencies]`), which turns on tokio's `test-util`.
//!
//! ```
//! use sagaflow_runtime::testing::TestEnv;
//! use sagaflow_runtime::{AwaitRequest, Context, Outcome, Status, Step, StepError, Workflow, json};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let def = Workflow::new("expense")
//!     .step("charge_card", |_ctx: Context| async { Ok::<_, StepError>(json!({ "charged": "real money" })) })
//!     .step_with(
//!         "approve",
//!         |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_with(AwaitRequest::signal("decision").with_timeout("48h"))) },
//!         Step::opts().after("charge_card"),
//!     )
//!     .build()?;
//! let env = TestEnv::builder()
//!     .register(def)
//!     .mock_step("charge_card", |_ctx: Context| async { Ok::<_, StepError>(json!({ "charged": "fake" })) })
//!     .build()
//!     .await?;
//! let id = env.start("expense", json!({})).await?;
//! env.advance("47h").await?;                                   // two days pass in no time
//! assert_eq!(env.get_state(id).await?.status, Status::Awaiting);
//! env.signal(id, "decision", json!({ "approved": true })).await?;
//! let done = env.wait(id).await?;
//! assert_eq!(done.context["charged"], "fake");
//! assert_eq!(
//!     env.timeline(id).lines(),
//!     ["started", "attempt charge_card #1", "completed charge_card", "attempt approve #1", "waiting approve",
//!      "signal decision -> approve", "ended completed"],
//! );
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use crate::builder::{BuildError, suggest};
use crate::engine::{Clock, Engine, EngineError, WorkflowType};
use crate::model::execution::ExecutionState;
use crate::model::status::Status;
use crate::model::{DurationArg, DurationError, ExecutionId, IntoStepFn, StepBody, WorkflowDef, format_duration};
use crate::telemetry::Event;

/// Why a test kit call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The engine refused the call.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A workflow definition is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// `mock_step` names a step no registered workflow has.
    #[error("no registered workflow has a step `{step}`{}; steps: {}", did_you_mean(.suggestion), .known.join(", "))]
    UnknownStep {
        /// The name given.
        step: String,
        /// The closest step name.
        suggestion: Option<String>,
        /// Every step of the registered workflows, as `workflow.step`.
        known: Vec<String>,
    },
    /// `advance` was given a duration it cannot read.
    #[error("invalid duration for `advance`: {0}")]
    InvalidDuration(#[from] DurationError),
    /// `wait`: the execution waits for something only the test can give it (a
    /// signal, a resume), and nothing else can move it.
    #[error("execution {id} is {status} and nothing but the test can move it on: it waits for {waiting}")]
    Stuck {
        /// The execution.
        id: ExecutionId,
        /// Its status.
        status: Status,
        /// What it waits for (`signal \`approval\` in step \`approve\``, ...).
        waiting: String,
    },
    /// The kit runs on tokio's paused clock, which a multi-threaded runtime
    /// cannot have.
    #[error(
        "the test kit needs tokio's paused clock, which only a current-thread runtime has: use \
         `#[tokio::test]` or `#[tokio::test(start_paused = true)]`, not `flavor = \"multi_thread\"`"
    )]
    ClockNotPaused,
}

fn did_you_mean(s: &Option<String>) -> String {
    sagaflow_rules::suggest::in_parentheses(s.as_deref())
}

/// Configures a [`TestEnv`].
pub struct TestEnvBuilder {
    defs: Vec<Result<WorkflowDef, BuildError>>,
    mocks: Vec<(String, StepBody)>,
    start: Option<DateTime<Utc>>,
}

impl fmt::Debug for TestEnvBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnvBuilder")
            .field("definitions", &self.defs.len())
            .field("mocks", &self.mocks.iter().map(|(s, _)| s).collect::<Vec<_>>())
            .field("start", &self.start)
            .finish()
    }
}

impl TestEnvBuilder {
    /// Registers a definition built with [`Workflow`](crate::Workflow).
    pub fn register(mut self, def: WorkflowDef) -> Self {
        self.defs.push(Ok(def));
        self
    }

    /// Registers a `#[workflow]` type's value.
    pub fn workflow<W: WorkflowType>(mut self, value: W) -> Self {
        self.defs.push(W::definition(Arc::new(value)));
        self
    }

    /// Replaces the body of the step `step` (in every registered workflow that has
    /// one) by `fake`: any function a step may be (`async fn(Context)`, a closure).
    /// Everything else about the step stays: its dependencies, retries, timeout,
    /// rollback. A nested-workflow step becomes a plain step running `fake`.
    pub fn mock_step<M>(mut self, step: impl Into<String>, fake: impl IntoStepFn<M>) -> Self {
        self.mocks.push((step.into(), fake.into_step_fn()));
        self
    }

    /// The date the engine's clock reads when the environment starts (default: the
    /// system's time then). It moves only as the test lets it.
    pub fn start_at(mut self, at: DateTime<Utc>) -> Self {
        self.start = Some(at);
        self
    }

    /// Starts the engine (on an in-memory store) on tokio's paused clock: the
    /// clock is paused here when the test runs on a current-thread runtime that
    /// has not paused it (`#[tokio::test]`). Prefer
    /// `#[tokio::test(start_paused = true)]`: tokio's timers fire on whole
    /// milliseconds of its clock, so a clock paused mid-millisecond sees each
    /// timer up to a millisecond late, where one paused from the start sees
    /// every delay exactly.
    pub async fn build(self) -> Result<TestEnv, TestError> {
        pause_clock()?;
        let mut defs = Vec::with_capacity(self.defs.len());
        for def in self.defs {
            defs.push(def?);
        }
        for (step, body) in &self.mocks {
            replace(&mut defs, step, body)?;
        }
        let clock = match self.start {
            Some(at) => Clock::starting_at(at),
            None => Clock::system(),
        };
        let recorder = Arc::new(Recorder::default());
        let tap = {
            let recorder = Arc::clone(&recorder);
            Arc::new(move |e: &Event| recorder.record(clock.now(), e))
        };
        let mut builder = Engine::builder().tap(tap).clock(clock);
        for def in defs {
            builder = builder.register(def);
        }
        let engine = builder.build().await?;
        Ok(TestEnv { engine, recorder })
    }
}

/// Replaces the body of `step` in every definition that has it.
fn replace(defs: &mut [WorkflowDef], step: &str, body: &StepBody) -> Result<(), TestError> {
    let mut found = false;
    for def in defs.iter_mut() {
        found |= def.replace_body(step, Arc::clone(body));
    }
    if found {
        return Ok(());
    }
    let known: Vec<String> =
        defs.iter().flat_map(|d| d.steps().iter().map(move |s| format!("{}.{}", d.name(), s.name()))).collect();
    let names = defs.iter().flat_map(|d| d.steps().iter().map(|s| s.name()));
    Err(TestError::UnknownStep { step: step.to_owned(), suggestion: suggest(step, names), known })
}

/// Makes sure tokio's clock is paused: pauses it on a current-thread runtime.
fn pause_clock() -> Result<(), TestError> {
    // A paused clock does not move by itself: two reads a millisecond apart agree.
    let before = tokio::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1));
    if tokio::time::Instant::now() == before {
        return Ok(());
    }
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => {
            tokio::time::pause();
            Ok(())
        }
        _ => Err(TestError::ClockNotPaused),
    }
}

/// An engine for tests, on tokio's paused clock: time passes only when the test
/// lets it ([`advance`](Self::advance), [`wait`](Self::wait)), so an approval that
/// waits two days passes in milliseconds. Every [`Engine`] call is available on it
/// (it dereferences to its engine); see the [module documentation](self).
pub struct TestEnv {
    engine: Engine,
    recorder: Arc<Recorder>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv").field("engine", &self.engine).field("now", &self.now()).finish()
    }
}

impl std::ops::Deref for TestEnv {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl TestEnv {
    /// Configures a test environment.
    pub fn builder() -> TestEnvBuilder {
        TestEnvBuilder { defs: Vec::new(), mocks: Vec::new(), start: None }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The time on the engine's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.engine.clock().now()
    }

    /// Replaces the body of the step `step` by `fake` for the executions started
    /// from now on (see [`TestEnvBuilder::mock_step`]; executions that run already
    /// keep the body they started with, and so do schedules armed when the
    /// environment started: mock those on the builder).
    pub fn mock_step<M>(&self, step: &str, fake: impl IntoStepFn<M>) -> Result<(), TestError> {
        let body = fake.into_step_fn();
        let mut registry = self.engine.inner.registry.write();
        let mut defs: Vec<WorkflowDef> = registry.defs.values().cloned().collect();
        replace(&mut defs, step, &body)?;
        for def in defs {
            registry.defs.insert(Arc::clone(&def.inner.name), def);
        }
        Ok(())
    }

    /// Starts an execution (see [`Engine::start`]) and lets it run until it waits.
    pub async fn start(&self, workflow: &str, input: impl Serialize) -> Result<ExecutionId, TestError> {
        let id = self.engine.start(workflow, input).await?;
        self.run_until_idle().await;
        Ok(id)
    }

    /// Moves the clock forward by `by` (`"2h"`, a `Duration`...): every timer due on
    /// the way fires at its own instant (retry delays, snoozes, await timeouts,
    /// schedules, steps that sleep), in order, and what it starts runs; then
    /// [`run_until_idle`](Self::run_until_idle).
    pub async fn advance(&self, by: impl Into<DurationArg>) -> Result<(), TestError> {
        let by = by.into().to_duration()?;
        self.run_until_idle().await;
        // On the paused clock, a sleep lets tokio jump from one timer to the next,
        // running whatever each wakes, until this one's deadline.
        tokio::time::sleep(by).await;
        self.run_until_idle().await;
        Ok(())
    }

    /// Lets the engine run, without moving the clock, until nothing more happens
    /// at this instant: what is left waits for the clock (a timer, a step that
    /// sleeps) or for the test (a signal, a resume).
    pub async fn run_until_idle(&self) {
        let mut last = None;
        let mut calm = 0;
        for _ in 0..100_000 {
            for _ in 0..16 {
                tokio::task::yield_now().await;
            }
            let now = Some(self.fingerprint());
            if now == last {
                calm += 1;
                if calm == 3 {
                    return;
                }
            } else {
                calm = 0;
                last = now;
            }
        }
    }

    /// What changes whenever the engine does anything.
    fn fingerprint(&self) -> (usize, u64, usize, usize, usize, usize) {
        let inner = &self.engine.inner;
        let busy = inner
            .executions
            .iter()
            .map(|e| {
                let core = e.core.lock();
                usize::from(core.driver) + core.commands.len() + core.machine.running_steps().len()
            })
            .sum();
        (
            self.recorder.len(),
            inner.journal.last_ticket(),
            inner.executions.len(),
            inner.delayed.len(),
            inner.timers.len(),
            busy,
        )
    }

    /// Waits until the execution ends, moving the clock as far as it must (through
    /// retry delays, snoozes, await timeouts), and returns its final state. Fails
    /// with [`TestError::Stuck`] as soon as the execution waits for something only
    /// the test can give (a signal or a resume without a timeout), instead of
    /// waiting forever.
    pub async fn wait(&self, id: ExecutionId) -> Result<ExecutionState, TestError> {
        loop {
            self.run_until_idle().await;
            let state = self.engine.get_state(id).await?;
            if state.status.is_terminal() {
                return Ok(self.engine.wait(id).await?);
            }
            if let Some(waiting) = self.stuck(id, &state) {
                return Err(TestError::Stuck { id, status: state.status, waiting });
            }
            let changed = self.recorder.changed.notified();
            tokio::select! {
                ended = self.engine.wait(id) => {
                    self.run_until_idle().await;
                    return Ok(ended?);
                }
                _ = changed => {}
                // Should something change without telling (no telemetry), look
                // again an hour later on the clock.
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        }
    }

    /// What an execution waits for when nothing but the test can move it on.
    fn stuck(&self, id: ExecutionId, state: &ExecutionState) -> Option<String> {
        let exec = self.engine.inner.executions.get(&id).map(|e| Arc::clone(&e))?;
        let core = exec.core.lock();
        let m = &core.machine;
        let idle =
            !core.driver && core.commands.is_empty() && m.running_steps().is_empty() && m.timers().next().is_none();
        if !idle || !matches!(state.status, Status::Awaiting | Status::Paused) {
            return None;
        }
        let mut what: Vec<String> = state
            .awaiting
            .iter()
            .map(|a| match &a.signal {
                Some(signal) => format!("signal `{signal}` in step `{}`", a.step),
                None => format!("a resume of step `{}`", a.step),
            })
            .collect();
        if state.status == Status::Paused {
            what.push("a resume (it is paused)".into());
        }
        Some(what.join(", "))
    }

    /// What happened to an execution so far, in order: its attempts, waits,
    /// signals, compensations and end, each at its time on the engine's clock.
    pub fn timeline(&self, id: ExecutionId) -> Timeline {
        let records = self.recorder.records.lock();
        let mut entries = Vec::new();
        let mut started: Option<DateTime<Utc>> = None;
        for (at, event) in records.iter().filter(|(_, e)| e.execution_id() == id) {
            let Some(what) = Happened::of(event) else { continue };
            let origin = *started.get_or_insert(*at);
            let offset = (*at - origin).to_std().unwrap_or_default();
            entries.push(TimelineEntry { at: *at, offset, what });
        }
        Timeline { id, entries }
    }
}

/// Every telemetry event with its time, as the engine emitted it.
#[derive(Default)]
struct Recorder {
    records: Mutex<Vec<(DateTime<Utc>, Event)>>,
    changed: Notify,
}

impl Recorder {
    fn record(&self, at: DateTime<Utc>, event: &Event) {
        self.records.lock().push((at, event.clone()));
        self.changed.notify_waiters();
    }

    fn len(&self) -> usize {
        self.records.lock().len()
    }
}

/// What happened to one execution, in order (see [`TestEnv::timeline`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// The execution.
    pub id: ExecutionId,
    /// What happened, oldest first.
    pub entries: Vec<TimelineEntry>,
}

impl Timeline {
    /// Each entry in words, without its time: `attempt charge #1`, `waiting
    /// approve`, `signal decision -> approve`, `compensated reserve`, `ended
    /// rolled_back`... (what to compare with `assert_eq!`).
    pub fn lines(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.what.to_string()).collect()
    }

    /// How many attempts of `step` started (its compensations not counted).
    pub fn attempts(&self, step: &str) -> u32 {
        self.entries.iter().filter(|e| matches!(&e.what, Happened::Attempt { step: s, .. } if s == step)).count() as u32
    }

    /// The first entry whose words are `line` (see [`lines`](Self::lines)).
    pub fn find(&self, line: &str) -> Option<&TimelineEntry> {
        self.entries.iter().find(|e| e.what.to_string() == line)
    }

    /// How long after the start the first entry whose words are `line` happened.
    pub fn offset_of(&self, line: &str) -> Option<Duration> {
        self.find(line).map(|e| e.offset)
    }
}

/// One line per entry: its time after the start, then what happened.
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{:>10}  {}", format!("+{}", format_duration(e.offset)), e.what)?;
        }
        Ok(())
    }
}

/// One thing that happened to an execution.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    /// When, on the engine's clock.
    pub at: DateTime<Utc>,
    /// How long after the execution started.
    pub offset: Duration,
    /// What.
    pub what: Happened,
}

/// What happened (built from the engine's telemetry [`Event`]s).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Happened {
    /// The execution started.
    Started,
    /// An attempt of a step started.
    Attempt {
        /// The step.
        step: String,
        /// Its number, from 1.
        attempt: u32,
    },
    /// An attempt completed the step.
    Completed {
        /// The step.
        step: String,
    },
    /// The step parked: it waits for a resume or a signal.
    Waiting {
        /// The step.
        step: String,
    },
    /// The step snoozed: it runs again later.
    Snoozed {
        /// The step.
        step: String,
    },
    /// A graft added steps.
    Expanded {
        /// The graft.
        step: String,
    },
    /// The step was skipped.
    Skipped {
        /// The step.
        step: String,
        /// Why.
        reason: String,
    },
    /// An attempt failed.
    AttemptFailed {
        /// The step.
        step: String,
        /// The error's kind.
        kind: String,
        /// The error's message.
        message: String,
    },
    /// A signal arrived.
    Signal {
        /// Its name.
        name: String,
        /// The waiting step it went to; `None`: buffered.
        step: Option<String>,
    },
    /// A running step took a buffered signal.
    SignalTaken {
        /// Its name.
        name: String,
        /// The step.
        step: String,
    },
    /// The execution was paused.
    Paused,
    /// The execution was resumed.
    Resumed,
    /// The execution was cancelled.
    Cancelled {
        /// The reason given.
        reason: String,
    },
    /// The execution failed (before its rollback).
    Failed {
        /// The step that failed (`None`: a workflow timeout).
        step: Option<String>,
        /// The error's kind.
        kind: String,
    },
    /// The rollback began, for these steps in this order.
    RollbackStarted {
        /// The steps to compensate.
        steps: Vec<String>,
    },
    /// An attempt of a step's compensation started.
    Compensating {
        /// The step.
        step: String,
        /// The compensation's attempt, from 1.
        attempt: u32,
    },
    /// A step's compensation succeeded.
    Compensated {
        /// The step.
        step: String,
    },
    /// An attempt of a step's compensation failed.
    CompensationFailed {
        /// The step.
        step: String,
        /// The error's kind.
        kind: String,
    },
    /// The rollback ended.
    RollbackFinished,
    /// The execution ended.
    Ended {
        /// Its final status.
        status: Status,
    },
}

impl Happened {
    fn of(event: &Event) -> Option<Happened> {
        let s = |n: &Arc<str>| n.to_string();
        Some(match event {
            Event::WorkflowStart { .. } => Happened::Started,
            Event::WorkflowStop { state, .. } => Happened::Ended { status: *state },
            Event::WorkflowFail { error, error_step, .. } => {
                Happened::Failed { step: error_step.as_ref().map(s), kind: error.kind().to_owned() }
            }
            Event::WorkflowCancel { reason, .. } => Happened::Cancelled { reason: reason.clone() },
            Event::WorkflowPause { .. } => Happened::Paused,
            Event::WorkflowResume { .. } => Happened::Resumed,
            Event::StepStart { step_name, attempt, .. } => Happened::Attempt { step: s(step_name), attempt: *attempt },
            Event::StepStop { step_name, result, .. } => match *result {
                "await" => Happened::Waiting { step: s(step_name) },
                "snooze" => Happened::Snoozed { step: s(step_name) },
                "expand" => Happened::Expanded { step: s(step_name) },
                // The skip itself comes next, with its reason.
                "skip" => return None,
                _ => Happened::Completed { step: s(step_name) },
            },
            Event::StepSkip { step_name, reason, .. } => {
                Happened::Skipped { step: s(step_name), reason: reason.clone() }
            }
            Event::StepException { step_name, kind, reason, .. } => {
                Happened::AttemptFailed { step: s(step_name), kind: kind.clone(), message: reason.clone() }
            }
            Event::RollbackStart { steps, .. } => Happened::RollbackStarted { steps: steps.iter().map(s).collect() },
            Event::RollbackStepStart { step_name, attempt, .. } => {
                Happened::Compensating { step: s(step_name), attempt: *attempt }
            }
            Event::RollbackStepStop { step_name, error, .. } => match error {
                None => Happened::Compensated { step: s(step_name) },
                Some(e) => Happened::CompensationFailed { step: s(step_name), kind: e.kind().to_owned() },
            },
            Event::RollbackStop { .. } => Happened::RollbackFinished,
            Event::SignalReceive { signal_name, step_name, .. } => {
                Happened::Signal { name: s(signal_name), step: step_name.as_ref().map(s) }
            }
            Event::SignalTake { signal_name, step_name, .. } => {
                Happened::SignalTaken { name: s(signal_name), step: s(step_name) }
            }
        })
    }
}

/// In words, as [`Timeline::lines`] shows it.
impl fmt::Display for Happened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Happened::Started => f.write_str("started"),
            Happened::Attempt { step, attempt } => write!(f, "attempt {step} #{attempt}"),
            Happened::Completed { step } => write!(f, "completed {step}"),
            Happened::Waiting { step } => write!(f, "waiting {step}"),
            Happened::Snoozed { step } => write!(f, "snoozed {step}"),
            Happened::Expanded { step } => write!(f, "expanded {step}"),
            Happened::Skipped { step, .. } => write!(f, "skipped {step}"),
            Happened::AttemptFailed { step, kind, .. } => write!(f, "failed {step}: {kind}"),
            Happened::Signal { name, step: Some(step) } => write!(f, "signal {name} -> {step}"),
            Happened::Signal { name, step: None } => write!(f, "signal {name} (buffered)"),
            Happened::SignalTaken { name, step } => write!(f, "took signal {name} in {step}"),
            Happened::Paused => f.write_str("paused"),
            Happened::Resumed => f.write_str("resumed"),
            Happened::Cancelled { reason } => write!(f, "cancelled: {reason}"),
            Happened::Failed { step: Some(step), kind } => write!(f, "workflow failed at {step}: {kind}"),
            Happened::Failed { step: None, kind } => write!(f, "workflow failed: {kind}"),
            Happened::RollbackStarted { steps } => write!(f, "rollback {}", steps.join(", ")),
            Happened::Compensating { step, attempt } => write!(f, "compensating {step} #{attempt}"),
            Happened::Compensated { step } => write!(f, "compensated {step}"),
            Happened::CompensationFailed { step, kind } => write!(f, "compensation failed {step}: {kind}"),
            Happened::RollbackFinished => f.write_str("rollback finished"),
            Happened::Ended { status } => write!(f, "ended {status}"),
        }
    }
}
