//! Property tests of the pure machine, with no tokio and no clock: random DAGs
//! whose steps retry, skip, await (for `resume` or for a signal), snooze, read
//! signals while they run, fail and roll back, run by a deterministic simulated
//! executor that also sends the signals: before anyone waits, while a step
//! waits, while a step runs, or never.
//!
//! - The replay law: the journal of a run, applied to a fresh machine, rebuilds
//!   the state the machine had after each event.
//! - Recovery makes progress: cutting the journal at every point (a crash with
//!   only that prefix committed) and resuming, as recovery does, reaches the same
//!   final state as the uninterrupted run, and runs again only what was in flight
//!   at the cut: each running step once more, the running compensation or handler
//!   once more, nothing else.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::command::Command;
use super::event::{AwaitSpec, ExecutionEvent, HandlerKind, StepReport};
use super::view::Identity;
use super::{Machine, Phase};
use crate::builder::Workflow;
use crate::model::context::Data;
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::ids::StepId;
use crate::model::{Backoff, Context, ExecutionId, OnError, Outcome, Step, StepError, StepResult, WorkflowDef};

async fn noop(_: Context) -> StepResult {
    Ok(Outcome::Done)
}

/// What a step does each time it runs, by how many of its attempts ended before.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Succeed,
    /// Fails with a retryable error this many times, then succeeds.
    Flaky(u32),
    /// Fails for good.
    Fatal,
    /// Skips itself.
    Skip,
    /// Awaits (3 s at most); resumed by the executor, or left to time out.
    Await {
        resume: bool,
        on_timeout: bool,
    },
    /// Snoozes 1 s on its first attempt.
    SnoozeOnce,
    /// Awaits its signal (3 s at most): completes with its payload, or (`rerun`)
    /// runs again and succeeds.
    AwaitSignal {
        rerun: bool,
        send: Send,
    },
    /// Takes its signal while it runs (waiting for it), then succeeds.
    TakeSignal {
        early: bool,
    },
}

/// When the simulated executor sends a step's signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Send {
    /// First thing: buffered before anyone waits.
    AtStart,
    /// While the step waits for it.
    WhileWaiting,
    /// Never: the wait times out.
    Never,
}

#[derive(Clone, Debug)]
struct StepSpec {
    /// Indexes of earlier steps it runs after.
    after: Vec<usize>,
    plan: Plan,
    max_retries: u32,
    on_error: OnError,
    rollback: bool,
    /// Its first compensation attempt fails (retryable).
    rollback_flaky: bool,
    /// Its `when` condition holds.
    go: bool,
}

#[derive(Clone, Debug)]
struct Spec {
    steps: Vec<StepSpec>,
    restarts: u32,
    on_failure: bool,
    on_success: bool,
    timeout: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        4 => Just(Plan::Succeed),
        2 => (1u32..3).prop_map(Plan::Flaky),
        1 => Just(Plan::Fatal),
        1 => Just(Plan::Skip),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(resume, on_timeout)| Plan::Await { resume, on_timeout }),
        1 => Just(Plan::SnoozeOnce),
        2 => (any::<bool>(), prop_oneof![Just(Send::AtStart), Just(Send::WhileWaiting), Just(Send::Never)])
            .prop_map(|(rerun, send)| Plan::AwaitSignal { rerun, send }),
        1 => any::<bool>().prop_map(|early| Plan::TakeSignal { early }),
    ]
}

fn on_error() -> impl Strategy<Value = OnError> {
    prop_oneof![3 => Just(OnError::Fail), 1 => Just(OnError::Skip), 1 => Just(OnError::Continue)]
}

fn spec() -> impl Strategy<Value = Spec> {
    let step = (any::<u8>(), plan(), 0u32..3, on_error(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.85));
    (prop::collection::vec(step, 1..7), 0u32..2, any::<bool>(), any::<bool>(), prop::bool::weighted(0.2)).prop_map(
        |(steps, restarts, on_failure, on_success, timeout)| Spec {
            steps: steps
                .into_iter()
                .enumerate()
                .map(|(i, (bits, plan, max_retries, on_error, rollback, rollback_flaky, go))| StepSpec {
                    after: (0..i).filter(|j| bits & (1 << (j % 8)) != 0).collect(),
                    plan,
                    max_retries,
                    on_error,
                    rollback,
                    rollback_flaky,
                    go,
                })
                .collect(),
            restarts,
            on_failure,
            on_success,
            timeout,
        },
    )
}

fn name(i: usize) -> String {
    format!("s{i}")
}

fn definition(spec: &Spec) -> WorkflowDef {
    let mut wf = Workflow::new("random").max_retries(spec.restarts);
    if spec.restarts > 0 {
        wf = wf.retry_delay("1s");
    }
    if spec.on_failure {
        wf = wf.on_failure(noop);
    }
    if spec.on_success {
        wf = wf.on_success(noop);
    }
    if spec.timeout {
        wf = wf.timeout("5s");
    }
    for (i, s) in spec.steps.iter().enumerate() {
        let mut o = Step::opts()
            .after(s.after.iter().map(|&j| name(j)).collect::<Vec<_>>())
            .on_error(s.on_error)
            .max_retries(s.max_retries);
        if s.max_retries > 0 {
            o = o.retry_delay("1s").retry_backoff(Backoff::Fixed);
        }
        if s.rollback {
            o = o.rollback(noop);
        }
        if !s.go {
            o = o.when(|_ctx: &Context| false);
        }
        if let Plan::Await { on_timeout, .. } = s.plan {
            o = o.await_approval(true);
            if on_timeout {
                o = o.on_timeout(noop);
            }
        }
        if let Plan::AwaitSignal { .. } = s.plan {
            o = o.await_approval(true);
        }
        wf = wf.step_with(name(i), noop, o);
    }
    wf.build().expect("the random workflow builds")
}

fn t0() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000).single().unwrap()
}

/// What the executor has started and not heard back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Job {
    Step { step: StepId, attempt: u32, on_timeout: bool },
    Compensation { step: StepId, attempt: u32 },
    Handler(HandlerKind),
}

impl Job {
    /// Runs of the same work count together, whatever their attempt numbers.
    fn work(self) -> (u8, StepId) {
        match self {
            Job::Step { step, on_timeout, .. } => (u8::from(on_timeout), step),
            Job::Compensation { step, .. } => (2, step),
            Job::Handler(h) => (3, h as StepId),
        }
    }
}

/// A deterministic executor: it finishes the smallest running job first, then
/// resumes the first awaiting step meant to be resumed, then fires the earliest
/// timer. What a job reports depends only on the journal so far, so a run resumed
/// from a prefix of the journal sees the same outcomes as the original.
struct Sim<'a> {
    spec: &'a Spec,
    m: Machine,
    journal: Vec<ExecutionEvent>,
    jobs: BTreeSet<Job>,
    timers: BTreeMap<(DateTime<Utc>, u32), ()>,
    now: DateTime<Utc>,
    /// How many times each piece of work was started.
    starts: HashMap<(u8, StepId), u32>,
    /// The state after each journal event (for the replay law).
    views: Vec<Value>,
    finished: bool,
}

const ID: u128 = 7;

fn signal_name(step: StepId) -> std::sync::Arc<str> {
    std::sync::Arc::from(format!("sig{step}"))
}

fn signal_payload(step: StepId) -> Value {
    json!({ format!("from_sig{step}"): true })
}

fn identity(trigger: &Trigger) -> Identity<'_> {
    Identity { id: ExecutionId::from_uuid(uuid::Uuid::from_u128(ID)), parent: None, trigger, parked: None }
}

impl<'a> Sim<'a> {
    fn start(spec: &'a Spec, def: &WorkflowDef) -> Self {
        let mut out = Vec::new();
        let m = Machine::start(def, Data::new(), t0(), &mut out);
        let mut sim = Sim {
            spec,
            m,
            journal: Vec::new(),
            jobs: BTreeSet::new(),
            timers: BTreeMap::new(),
            now: t0(),
            starts: HashMap::new(),
            views: Vec::new(),
            finished: false,
        };
        sim.carry_out(out);
        sim
    }

    /// A new process after a crash that left `prefix` committed: the machine is
    /// rebuilt from it, its timers re-armed, and `Recovered` asks for what was in
    /// flight. `starts` are the starts the crashed process made.
    fn resume(
        spec: &'a Spec,
        def: &WorkflowDef,
        prefix: &[ExecutionEvent],
        starts: HashMap<(u8, StepId), u32>,
    ) -> Self {
        let mut discard = Vec::new();
        let mut m = Machine::start(def, Data::new(), t0(), &mut discard);
        for e in prefix {
            m.apply(e.clone(), &mut discard).expect("a journal prefix replays");
        }
        let now = prefix.last().map_or(t0(), ExecutionEvent::at);
        let timers = m.timers().map(|(id, due)| ((due, id), ())).collect();
        let mut sim = Sim {
            spec,
            m,
            journal: prefix.to_vec(),
            jobs: BTreeSet::new(),
            timers,
            now,
            starts,
            views: Vec::new(),
            finished: false,
        };
        sim.apply(ExecutionEvent::Recovered { at: now });
        sim
    }

    fn view(&self) -> ExecutionState {
        self.m.view(identity(&Trigger::Manual), self.now)
    }

    fn apply(&mut self, event: ExecutionEvent) {
        let mut out = Vec::new();
        self.m.apply(event.clone(), &mut out).expect("the simulated executor only sends valid events");
        self.journal.push(event);
        self.views.push(digest(&self.view()));
        self.carry_out(out);
    }

    fn carry_out(&mut self, out: Vec<Command>) {
        for c in out {
            let job = match c {
                Command::RunStep { step, attempt, on_timeout } => Job::Step { step, attempt, on_timeout },
                Command::RunCompensation { step, attempt } => Job::Compensation { step, attempt },
                Command::RunHandler { handler } => Job::Handler(handler),
                Command::ArmTimer { timer, due } => {
                    self.timers.insert((due, timer), ());
                    continue;
                }
                Command::CancelTimer { timer, due } => {
                    self.timers.remove(&(due, timer));
                    continue;
                }
                Command::Interrupt { .. } | Command::SignalCancel | Command::StepErrorHook { .. } => continue,
                Command::Notify(_) => continue,
                Command::StartChild { .. } | Command::CancelChild { .. } => unreachable!("no nested workflows here"),
                Command::Finish { .. } => {
                    self.finished = true;
                    continue;
                }
            };
            *self.starts.entry(job.work()).or_default() += 1;
            self.jobs.insert(job);
        }
    }

    /// How many attempts of `step` (or of its compensation) the journal holds.
    fn ended(&self, step: StepId, compensation: bool) -> u32 {
        let n = self
            .journal
            .iter()
            .filter(|e| match e {
                ExecutionEvent::StepFinished { step: s, .. } => !compensation && *s == step,
                ExecutionEvent::CompensationFinished { step: s, .. } => compensation && *s == step,
                _ => false,
            })
            .count();
        n as u32
    }

    fn report(&self, step: StepId) -> StepReport {
        let s = &self.spec.steps[step as usize];
        let k = self.ended(step, false);
        let output = || StepReport::Output { value: json!({ name(step as usize): k }) };
        let transient = || StepReport::Failed { error: StepError::new("flaky", "try again"), jitter: 0.0 };
        match s.plan {
            Plan::Succeed => output(),
            Plan::Flaky(n) if k < n => transient(),
            Plan::Flaky(_) => output(),
            Plan::Fatal => StepReport::Failed { error: StepError::new("fatal", "broken").permanent(), jitter: 0.0 },
            Plan::Skip => StepReport::Skip { reason: "nothing to do".into() },
            Plan::Await { .. } if k == 0 => StepReport::Await {
                spec: Box::new(AwaitSpec { timeout: Some(std::time::Duration::from_secs(3)), ..Default::default() }),
            },
            Plan::Await { .. } => output(),
            Plan::SnoozeOnce if k == 0 => StepReport::Snooze { delay: std::time::Duration::from_secs(1) },
            Plan::SnoozeOnce => output(),
            Plan::AwaitSignal { rerun, .. } if k == 0 => StepReport::Await {
                spec: Box::new(AwaitSpec {
                    timeout: Some(std::time::Duration::from_secs(3)),
                    signal: Some(signal_name(step)),
                    rerun,
                    ..Default::default()
                }),
            },
            Plan::AwaitSignal { .. } => output(),
            Plan::TakeSignal { .. } => {
                let took = self.m.held_signal(step, &signal_name(step), 0).cloned().unwrap_or(Value::Null);
                StepReport::Output { value: json!({ name(step as usize): k, format!("took_{step}"): took }) }
            }
        }
    }

    /// Whether the simulated executor has sent the signal of `step` in this
    /// attempt of the workflow (a restart consumed the earlier ones).
    fn sent(&self, step: StepId) -> bool {
        let name = signal_name(step);
        let sent = self
            .journal
            .iter()
            .filter(|e| matches!(e, ExecutionEvent::Signalled { name: n, .. } if *n == name))
            .count();
        sent >= self.m.workflow_attempt() as usize
    }

    /// The signal to send now, by the plan of its step.
    fn signal_due(&self, early: bool) -> Option<StepId> {
        if self.finished {
            return None;
        }
        (0..self.spec.steps.len() as StepId).find(|&step| {
            let status = self.m.slot(step).status;
            let due = match self.spec.steps[step as usize].plan {
                Plan::AwaitSignal { send: Send::AtStart, .. } | Plan::TakeSignal { early: true } => early,
                Plan::AwaitSignal { send: Send::WhileWaiting, .. } => {
                    !early && status == crate::model::status::StepStatus::Awaiting
                }
                Plan::TakeSignal { early: false } => !early && status == crate::model::status::StepStatus::Running,
                _ => false,
            };
            due && !self.sent(step)
        })
    }

    /// A running step waiting in `ctx.signal` whose signal is buffered: it takes
    /// it (a move of its own, as each move journals one event).
    fn takes_signal(&self) -> Option<ExecutionEvent> {
        self.jobs.iter().find_map(|job| match *job {
            Job::Step { step, attempt, on_timeout: false }
                if matches!(self.spec.steps[step as usize].plan, Plan::TakeSignal { .. }) =>
            {
                let name = signal_name(step);
                let take = self.m.held_signal(step, &name, 0).is_none() && self.m.buffered_signal(&name).is_some();
                take.then(|| ExecutionEvent::SignalTaken { step, attempt, name, at: self.now })
            }
            _ => None,
        })
    }

    /// A job that can end now: any but a step waiting in `ctx.signal` for a
    /// signal it does not hold yet.
    fn next_job(&mut self) -> Option<Job> {
        let ready = self.jobs.iter().copied().find(|job| match *job {
            Job::Step { step, on_timeout: false, .. }
                if matches!(self.spec.steps[step as usize].plan, Plan::TakeSignal { .. }) =>
            {
                self.m.held_signal(step, &signal_name(step), 0).is_some()
            }
            _ => true,
        })?;
        self.jobs.take(&ready)
    }

    /// One move of the executor; false once there is nothing left to do.
    fn step(&mut self) -> bool {
        if let Some(step) = self.signal_due(true) {
            self.apply(ExecutionEvent::Signalled {
                name: signal_name(step),
                payload: signal_payload(step),
                at: self.now,
            });
            return true;
        }
        if let Some(take) = self.takes_signal() {
            self.apply(take);
            return true;
        }
        if let Some(job) = self.next_job() {
            let at = self.now;
            let event = match job {
                Job::Step { step, attempt, on_timeout } => {
                    let report = if on_timeout {
                        StepReport::Output { value: json!({ "timed_out": step }) }
                    } else {
                        self.report(step)
                    };
                    ExecutionEvent::StepFinished { step, attempt, report, at }
                }
                Job::Compensation { step, attempt } => {
                    let flaky = self.spec.steps[step as usize].rollback_flaky && self.ended(step, true) == 0;
                    let result = if flaky { Err(StepError::new("busy", "later")) } else { Ok(()) };
                    ExecutionEvent::CompensationFinished { step, attempt, result, at }
                }
                Job::Handler(handler) => ExecutionEvent::HandlerFinished { handler, result: Ok(()), at },
            };
            self.apply(event);
            return true;
        }
        let awaiting = self.m.slots().find(|(i, s)| {
            s.status == crate::model::status::StepStatus::Awaiting
                && matches!(self.spec.steps[*i as usize].plan, Plan::Await { resume: true, .. })
        });
        if let Some((step, _)) = awaiting {
            let mut data = serde_json::Map::new();
            data.insert(format!("approved_{step}"), json!(true));
            self.apply(ExecutionEvent::Resumed { step: Some(step), data, at: self.now });
            return true;
        }
        if let Some(step) = self.signal_due(false) {
            self.apply(ExecutionEvent::Signalled {
                name: signal_name(step),
                payload: signal_payload(step),
                at: self.now,
            });
            return true;
        }
        if let Some(((due, timer), ())) = self.timers.pop_first() {
            self.now = self.now.max(due);
            self.apply(ExecutionEvent::TimerFired { timer, at: self.now });
            return true;
        }
        false
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the simulated run did not end");
    }
}

/// What must agree between two runs: everything but attempt numbers (also in the
/// context's `__attempts__`) and start times, which a recovery changes for the
/// steps it runs again.
fn digest(state: &ExecutionState) -> Value {
    let mut context = state.context.clone();
    context.remove("__attempts__");
    json!({
        "status": state.status,
        "context": context,
        "attempt": state.attempt,
        "ended_at": state.ended_at,
        "steps": state.steps.iter().map(|s| json!([
            s.name.to_string(), s.status, s.error.as_ref().map(|e| e.kind().to_owned()), s.skip_reason, s.ended_at,
            s.compensation_error.as_ref().map(|e| e.kind().to_owned()),
        ])).collect::<Vec<_>>(),
        "awaiting": state.awaiting.iter().map(|a| a.step.clone()).collect::<Vec<_>>(),
        "failure": state.failure.as_ref().map(|f| json!([f.step, f.error.kind()])),
        "rollback": state.rollback.as_ref().map(|r| json!([r.compensated, r.failed])),
        "handler_errors": state.handler_errors.len(),
        "signals": state.signals.iter().map(|s| json!([s.name, s.payload, s.step])).collect::<Vec<_>>(),
        "waiting_for": state.awaiting.iter().map(|a| a.signal.clone()).collect::<Vec<_>>(),
    })
}

/// Work in flight in a machine rebuilt from a journal prefix, as its executor
/// had it: the running steps, the compensation being run, the running handler.
fn in_flight(m: &Machine) -> BTreeSet<(u8, StepId)> {
    let mut out: BTreeSet<(u8, StepId)> = m
        .slots()
        .filter(|(_, s)| s.status == crate::model::status::StepStatus::Running)
        .map(|(i, s)| (u8::from(s.on_timeout), i))
        .collect();
    match m.phase {
        Phase::Compensating => {
            if let Some((step, _)) = m.rollback.as_ref().and_then(|r| r.current) {
                let waiting = m.timers.iter().any(|(_, k, _)| *k == super::command::TimerKind::CompensationRetry(step));
                if !waiting {
                    out.insert((2, step));
                }
            }
        }
        Phase::Handler(h) => {
            out.insert((3, h as StepId));
        }
        _ => {}
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_journal_replays_to_the_same_state_event_by_event(spec in spec()) {
        let def = definition(&spec);
        let mut sim = Sim::start(&spec, &def);
        sim.run();
        prop_assert!(sim.finished, "the run ended");
        let mut discard = Vec::new();
        let mut fresh = Machine::start(&def, Data::new(), t0(), &mut discard);
        for (i, event) in sim.journal.iter().enumerate() {
            fresh.apply(event.clone(), &mut discard).expect("the journal replays");
            // The original's views were taken at its clock, which is the time of
            // its latest event; so is the replay's.
            let replayed = digest(&fresh.view(identity(&Trigger::Manual), sim.journal[..=i].iter().map(ExecutionEvent::at).max().unwrap()));
            prop_assert_eq!(&sim.views[i], &replayed, "after event {}", i);
        }
    }

    #[test]
    fn recovery_from_any_prefix_ends_as_the_uninterrupted_run(spec in spec()) {
        let def = definition(&spec);
        // The uninterrupted run, with the starts it had made after each event.
        let mut original = Sim::start(&spec, &def);
        let mut starts_after = vec![original.starts.clone()];
        while original.step() {
            starts_after.push(original.starts.clone());
        }
        prop_assert!(original.finished, "the run ended");
        let expected = digest(&original.view());
        let total = original.starts.clone();

        for (cut, starts) in starts_after.iter().enumerate() {
            let prefix = &original.journal[..cut];
            let mut discard = Vec::new();
            let mut rebuilt = Machine::start(&def, Data::new(), t0(), &mut discard);
            for e in prefix {
                rebuilt.apply(e.clone(), &mut discard).unwrap();
            }
            let flying = in_flight(&rebuilt);
            let mut resumed = Sim::resume(&spec, &def, prefix, starts.clone());
            resumed.run();
            prop_assert!(resumed.finished, "cut at {}: the resumed run ended", cut);
            let mut got = digest(&resumed.view());
            // A recovered step starts again later than it first did; its end and the
            // execution's are the same events.
            if got != expected {
                got["cut"] = json!(cut);
                prop_assert_eq!(&got, &expected);
            }
            for (work, &n) in &resumed.starts {
                let before = total.get(work).copied().unwrap_or(0);
                let again = u32::from(flying.contains(work));
                prop_assert_eq!(n, before + again, "cut at {}: {:?} started {} times, {} without the crash", cut, work, n, before);
            }
            for work in total.keys() {
                prop_assert!(resumed.starts.contains_key(work), "cut at {}: {:?} never started after it", cut, work);
            }
        }
    }
}

/// The clock of a simulated run only moves when a timer fires: a sanity check
/// that the simulated executor ends in bounded time for a long retry chain.
#[test]
fn the_simulated_executor_ends_a_retried_chain() {
    let spec = Spec {
        steps: (0..3)
            .map(|i| StepSpec {
                after: if i == 0 { vec![] } else { vec![i - 1] },
                plan: Plan::Flaky(2),
                max_retries: 2,
                on_error: OnError::Fail,
                rollback: true,
                rollback_flaky: false,
                go: true,
            })
            .collect(),
        restarts: 0,
        on_failure: false,
        on_success: false,
        timeout: false,
    };
    let def = definition(&spec);
    let mut sim = Sim::start(&spec, &def);
    sim.run();
    assert!(sim.finished);
    assert_eq!(sim.view().status, crate::model::status::Status::Completed);
    assert_eq!(sim.now - t0(), TimeDelta::seconds(6), "two 1 s retries per step");
}
