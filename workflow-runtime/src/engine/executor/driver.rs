//! The driver loop of one execution (`drive`): it feeds finished jobs to the
//! machine, holds what the machine asks for until it is durable, and carries it
//! out; starting drivers, parking idle executions and recording an execution's end.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::Instrument;

use crate::engine::EngineInner;
use crate::engine::timers::TimerTarget;
use crate::machine::command::Command;
use crate::machine::event::ExecutionEvent;
use crate::machine::report::report_of;
use crate::model::execution::ExecutionState;
use crate::model::status::Status;
use crate::model::{StepError, guard, kinds};
use crate::store::Write;
use crate::telemetry::Event as Telemetry;

use super::actions::Action;
use super::execution::{Core, Execution};
use super::jobs::{Finished, JobTag, Running, outcome_name};

/// The driver of one execution. If it panics (a bug in the engine: user code is
/// called through the guard), the execution ends `Failed` with kind
/// `"engine_panic"`, so that `wait` and `cancel` answer and the engine carries on.
pub(crate) async fn drive(engine: Arc<EngineInner>, exec: Arc<Execution>) {
    let span = exec.core.lock().span.as_deref().cloned().unwrap_or_else(tracing::Span::none);
    let driven = guard::run(async {
        // Held until the driver returns: while the execution has work in progress.
        let _slot = crate::engine::limits::workflow_turn(&engine.limits, &exec).await;
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
            core.commands.clear();
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
                    self.apply_locked(exec, &mut core, ExecutionEvent::Aborted { error: error.clone(), at }, &mut cmds)
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

/// A driver's working lists.
#[derive(Default)]
struct Lists {
    finished: Vec<Finished>,
    cmds: Vec<Command>,
    /// What the machine asked for, held until the events that asked are durable.
    held: Vec<Action>,
    emits: Vec<Telemetry>,
}

thread_local! {
    /// Lists that ended drivers gave back, for the next drivers on this thread.
    static SPARE: std::cell::RefCell<Vec<Lists>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A driver's [`Lists`]. A short execution's driver would spend a good part of
/// its time allocating them, so a driver that ends gives them back (empty), and
/// the next driver on the same thread takes them.
struct Buffers(Lists);

impl Buffers {
    /// How many spare sets a thread keeps.
    const SPARE_SETS: usize = 16;
    /// Lists grown beyond this (a wide fan-out) are not kept.
    const KEPT_CAPACITY: usize = 64;

    fn take() -> Self {
        let spare = SPARE.try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop())).ok().flatten();
        Buffers(spare.unwrap_or_else(|| Lists {
            finished: Vec::with_capacity(4),
            cmds: Vec::with_capacity(8),
            held: Vec::with_capacity(8),
            emits: Vec::new(),
        }))
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        let l = &mut self.0;
        let small = [l.finished.capacity(), l.cmds.capacity(), l.held.capacity(), l.emits.capacity()]
            .iter()
            .all(|&c| c <= Self::KEPT_CAPACITY);
        if !small {
            return;
        }
        // What a stopped driver still held goes now (its jobs were dropped).
        l.finished.clear();
        l.cmds.clear();
        l.held.clear();
        l.emits.clear();
        let lists = std::mem::take(l);
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut()
                && spare.len() < Self::SPARE_SETS
            {
                spare.push(lists);
            }
        });
    }
}

async fn run_driver(engine: Arc<EngineInner>, exec: Arc<Execution>) {
    let mut running = Running::default();
    let mut buffers = Buffers::take();
    let Lists { finished, cmds, held, emits } = &mut buffers.0;
    // The journal ticket `held` waits for, and the last one this task registered
    // a wake-up for.
    let mut gate = 0u64;
    let mut registered = 0u64;
    let mut waker = std::task::Waker::noop().clone();
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
                    let event = engine.event_of(&exec, done, at, wanted, emits);
                    if let Err(e) = engine.apply_locked(&exec, &mut core, event, cmds) {
                        tracing::debug!(error = %e, "ignoring a stale step result");
                    }
                }
            }
            cmds.append(&mut core.commands);
            engine.prepare(&exec, &mut core, cmds, held);
            if !held.is_empty() {
                gate = core.ticket;
            }
            if held.is_empty() && running.jobs.is_empty() && emits.is_empty() {
                core.driver = false;
                if core.final_state.is_none() {
                    // It may wait long: what it no longer needs goes now.
                    core.machine.compact();
                    core.commands = Vec::new();
                }
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
            // New jobs get their first poll as they start, with this task's waker.
            std::future::poll_fn(|cx| {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                Poll::Ready(())
            })
            .await;
            for a in held.drain(..ready) {
                engine.carry_out(&exec, a, &mut running, finished, now, &waker);
            }
        }
        if !finished.is_empty() || (running.jobs.is_empty() && held.is_empty()) {
            continue;
        }
        std::future::poll_fn(|cx| {
            if running.jobs.poll_finished(cx, finished).is_ready() {
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

impl EngineInner {
    pub(crate) fn ensure_driver(self: &Arc<Self>, exec: &Arc<Execution>, core: &mut Core) {
        if core.commands.is_empty() || core.abandoned {
            return;
        }
        if core.driver {
            exec.wake.signal();
        } else {
            core.driver = true;
            tokio::spawn(drive(Arc::clone(self), Arc::clone(exec)));
        }
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

    /// Turns a finished job into the machine event it reports.
    fn event_of(
        &self,
        exec: &Execution,
        done: Finished,
        (now, at): (Instant, DateTime<Utc>),
        wanted: bool,
        emits: &mut Vec<Telemetry>,
    ) -> ExecutionEvent {
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
                ExecutionEvent::StepFinished { step, attempt, report, at }
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
                ExecutionEvent::CompensationFinished { step, attempt, result: done.result.map(|_| ()), at }
            }
            JobTag::Handler(handler) => {
                ExecutionEvent::HandlerFinished { handler, result: done.result.map(|_| ()), at }
            }
        }
    }

    pub(super) fn finish(self: &Arc<Self>, exec: &Arc<Execution>, state: Arc<ExecutionState>) {
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
