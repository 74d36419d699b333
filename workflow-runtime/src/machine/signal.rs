//! Signals: named data sent to a running execution from outside
//! (`Engine::signal`), as the machine keeps them.
//!
//! A signal is an event (`Signalled`), so it is journaled, replayed and taken over
//! with the rest of the execution. Where it goes:
//!
//! - to the step that has waited longest for a signal of that name
//!   (`Outcome::await_signal`, `Outcome::rerun_on_signal`): the step completes
//!   with the payload as its output, or becomes ready to run again;
//! - otherwise into the *buffer*, in arrival order. A step that starts waiting
//!   for a name that is buffered receives the oldest one at once, and a running
//!   step takes the oldest one with `ctx.signal` (`SignalTaken`).
//!
//! A signal a step received and that it has not finished with stays with the step
//! (its *inbox*) until the step ends: a retry, a run again after a snooze, or the
//! attempt that recovery starts after a crash, receives the same signals again,
//! in the same order. So a step consumes a signal exactly when it ends, whatever
//! prefix of the journal survived.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::command::{Command, Notice, TimerKind};
use super::{Machine, Phase, TransitionError};
use crate::model::execution::PendingSignal;
use crate::model::ids::StepId;
use crate::model::status::StepStatus;

/// The signals of one execution (most executions have none: boxed, on demand).
#[derive(Clone, Debug, Default)]
pub(crate) struct Signals {
    /// Numbers the signals in arrival order.
    next: u64,
    /// Signals no step has received yet, in arrival order.
    buffer: VecDeque<Received>,
    /// Signals received by a step that has not ended, in the order received.
    inbox: Vec<(StepId, Received)>,
    /// Parked steps waiting for a signal, in the order they began to wait.
    waiting: Vec<Waiter>,
}

/// One signal as received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    seq: u64,
    name: Arc<str>,
    payload: Value,
    at: DateTime<Utc>,
}

/// A step parked until a signal arrives.
#[derive(Clone, Debug)]
struct Waiter {
    step: StepId,
    attempt: u32,
    name: Arc<str>,
    rerun: bool,
}

impl Machine {
    fn signals_mut(&mut self) -> &mut Signals {
        self.signals.get_or_insert_with(Default::default)
    }

    /// `Event::Signalled`: hands the signal to the step waiting longest for it, or
    /// buffers it. An ended execution takes no signal.
    pub(super) fn on_signal(
        &mut self,
        name: Arc<str>,
        payload: Value,
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<(), TransitionError> {
        if let Phase::Done(status) = self.phase {
            return Err(TransitionError::Finished(status));
        }
        let signals = self.signals_mut();
        let seq = signals.next;
        signals.next += 1;
        let received = Received { seq, name, payload, at };
        match self.take_waiter(&received.name) {
            Some(waiter) => self.hand_over(waiter, received, at, out),
            None => {
                out.push(Command::notify(Notice::SignalReceived { name: Arc::clone(&received.name), step: None }));
                self.signals_mut().buffer.push_back(received);
            }
        }
        Ok(())
    }

    /// After attempt `attempt` of `step` reported an await for the signal `name`:
    /// the step waits for it, or receives the oldest buffered one at once.
    pub(super) fn begin_signal_wait(
        &mut self,
        step: StepId,
        attempt: u32,
        (name, rerun): (Arc<str>, bool),
        at: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        let awaits =
            self.slots.get(step as usize).is_some_and(|s| s.status == StepStatus::Awaiting && s.attempt == attempt);
        if !awaits {
            return;
        }
        let waiter = Waiter { step, attempt, name, rerun };
        let buffered = self.signals.as_ref().and_then(|s| s.buffer.iter().position(|r| r.name == waiter.name));
        match buffered {
            Some(pos) => {
                let received = self.signals_mut().buffer.remove(pos).expect("the position was just found");
                self.hand_over(waiter, received, at, out);
            }
            None => self.signals_mut().waiting.push(waiter),
        }
    }

    /// `Event::SignalTaken`: the running attempt takes the oldest buffered signal
    /// `name` into its step's inbox. A stale attempt, or a name with nothing
    /// buffered, changes nothing (the engine checks before it records the event).
    pub(super) fn on_signal_taken(&mut self, step: StepId, attempt: u32, name: &str, out: &mut Vec<Command>) {
        let running =
            self.slots.get(step as usize).is_some_and(|s| s.status == StepStatus::Running && s.attempt == attempt);
        if !running {
            return;
        }
        let Some(signals) = self.signals.as_mut() else { return };
        let Some(pos) = signals.buffer.iter().position(|r| &*r.name == name) else { return };
        let received = signals.buffer.remove(pos).expect("the position was just found");
        out.push(Command::notify(Notice::SignalTaken { name: Arc::clone(&received.name), step }));
        signals.inbox.push((step, received));
    }

    /// The first step still waiting for `name`, removed from the waiting list
    /// (with the entries of steps that no longer wait).
    fn take_waiter(&mut self, name: &str) -> Option<Waiter> {
        if self.phase != Phase::Running {
            return None;
        }
        let slots = &self.slots;
        let signals = self.signals.as_mut()?;
        signals.waiting.retain(|w| waits(slots, w));
        let pos = signals.waiting.iter().position(|w| &*w.name == name)?;
        Some(signals.waiting.remove(pos))
    }

    /// Gives a signal to a step that waited for it: the step completes with the
    /// payload as its output, or (`rerun`) becomes ready and keeps the signal.
    fn hand_over(&mut self, waiter: Waiter, received: Received, at: DateTime<Utc>, out: &mut Vec<Command>) {
        let step = waiter.step;
        self.disarm(|k| k == TimerKind::AwaitTimeout(step), out);
        out.push(Command::notify(Notice::SignalReceived { name: Arc::clone(&received.name), step: Some(step) }));
        if waiter.rerun {
            self.slots[step as usize].status = StepStatus::Ready;
            self.ready.push_back(step);
            self.signals_mut().inbox.push((step, received));
        } else {
            self.complete(step, Some(received.payload), at, out);
        }
    }

    /// Forgets what steps are done with: the signals of steps that ended (they
    /// consumed them) and the waits of steps that no longer wait (resumed,
    /// cancelled, timed out). Called after every event.
    pub(super) fn sweep_signals(&mut self) {
        let Some(signals) = self.signals.as_mut() else { return };
        let slots = &self.slots;
        signals.inbox.retain(|(step, _)| slots.get(*step as usize).is_some_and(|s| !s.status.is_ended()));
        signals.waiting.retain(|w| waits(slots, w));
    }

    /// The `index`-th signal named `name` that `step` holds (from 0), for the
    /// attempt that reads its signals again after a retry or a recovery.
    pub(crate) fn held_signal(&self, step: StepId, name: &str, index: usize) -> Option<&Value> {
        let signals = self.signals.as_ref()?;
        signals.inbox.iter().filter(|(s, r)| *s == step && &*r.name == name).nth(index).map(|(_, r)| &r.payload)
    }

    /// The oldest buffered signal named `name`.
    pub(crate) fn buffered_signal(&self, name: &str) -> Option<&Value> {
        self.signals.as_ref()?.buffer.iter().find(|r| &*r.name == name).map(|r| &r.payload)
    }

    /// The signal `step` is parked for, if it waits for one.
    pub(crate) fn awaited_signal(&self, step: StepId) -> Option<&str> {
        let signals = self.signals.as_ref()?;
        signals.waiting.iter().find(|w| w.step == step && waits(&self.slots, w)).map(|w| &*w.name)
    }

    /// Signals not consumed yet, in arrival order: buffered ones, and those a step
    /// that has not ended holds.
    pub(crate) fn pending_signals(&self) -> Vec<PendingSignal> {
        let Some(signals) = self.signals.as_ref() else { return Vec::new() };
        let mut all: Vec<(Option<StepId>, &Received)> =
            signals.buffer.iter().map(|r| (None, r)).chain(signals.inbox.iter().map(|(s, r)| (Some(*s), r))).collect();
        all.sort_by_key(|(_, r)| r.seq);
        all.into_iter()
            .map(|(step, r)| PendingSignal {
                name: r.name.to_string(),
                payload: r.payload.clone(),
                received_at: r.at,
                step: step.map(|s| self.step_name(s).to_string()),
            })
            .collect()
    }
}

/// Whether the waiter's step still waits, in the attempt that began to wait.
fn waits(slots: &[super::Slot], w: &Waiter) -> bool {
    slots.get(w.step as usize).is_some_and(|s| s.status == StepStatus::Awaiting && s.attempt == w.attempt)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use serde_json::{Map, json};

    use super::*;
    use crate::builder::Workflow;
    use crate::machine::event::{AwaitSpec, ExecutionEvent, StepReport};
    use crate::machine::view::Identity;
    use crate::model::context::Data;
    use crate::model::execution::Trigger;
    use crate::model::status::Status;
    use crate::model::{Context, ExecutionId, Outcome, Step, StepResult, WorkflowDef};

    async fn noop(_: Context) -> StepResult {
        Ok(Outcome::Done)
    }

    /// `ask → after`, and `other` beside them.
    fn def() -> WorkflowDef {
        Workflow::new("signals")
            .step("ask", noop)
            .step_with("after", noop, Step::opts().after("ask"))
            .step("other", noop)
            .build()
            .unwrap()
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).single().unwrap()
    }

    struct Run {
        m: Machine,
        out: Vec<Command>,
    }

    impl Run {
        fn new() -> Run {
            let mut out = Vec::new();
            let m = Machine::start(&def(), Data::new(), t(0), &mut out);
            Run { m, out }
        }

        fn apply(&mut self, e: ExecutionEvent) -> Result<(), TransitionError> {
            self.out.clear();
            self.m.apply(e, &mut self.out)
        }

        fn finish(&mut self, step: StepId, report: StepReport, at: i64) {
            let attempt = self.m.slot(step).attempt;
            self.apply(ExecutionEvent::StepFinished { step, attempt, report, at: t(at) }).unwrap();
        }

        fn await_signal(&mut self, step: StepId, name: &str, rerun: bool, timeout: Option<u64>, at: i64) {
            let spec = AwaitSpec {
                signal: Some(Arc::from(name)),
                rerun,
                timeout: timeout.map(Duration::from_secs),
                ..Default::default()
            };
            self.finish(step, StepReport::Await { spec: Box::new(spec) }, at);
        }

        fn signal(&mut self, name: &str, payload: Value, at: i64) -> Result<(), TransitionError> {
            self.apply(ExecutionEvent::Signalled { name: Arc::from(name), payload, at: t(at) })
        }

        fn status(&self, step: StepId) -> StepStatus {
            self.m.slot(step).status
        }

        fn view(&self) -> crate::model::execution::ExecutionState {
            let trigger = Trigger::Manual;
            self.m.view(Identity { id: ExecutionId::new(), parent: None, trigger: &trigger, parked: None }, t(100))
        }

        fn runs(&self) -> Vec<(StepId, u32)> {
            self.out
                .iter()
                .filter_map(|c| match c {
                    Command::RunStep { step, attempt, .. } => Some((*step, *attempt)),
                    _ => None,
                })
                .collect()
        }
    }

    const ASK: StepId = 0;
    const AFTER: StepId = 1;
    const OTHER: StepId = 2;

    #[test]
    fn a_signal_completes_the_step_waiting_for_it_with_its_payload() {
        let mut r = Run::new();
        r.await_signal(ASK, "approval", false, Some(3600), 1);
        assert_eq!(r.status(ASK), StepStatus::Awaiting);
        assert_eq!(r.view().awaiting[0].signal.as_deref(), Some("approval"));
        r.signal("approval", json!({ "approved": true, "by": "ada" }), 5).unwrap();
        assert_eq!(r.status(ASK), StepStatus::Completed);
        assert_eq!(r.m.data.get("by"), Some(&json!("ada")), "an object payload is merged into the context");
        assert!(r.out.iter().any(|c| matches!(c, Command::CancelTimer { .. })), "the await's timeout is disarmed");
        assert_eq!(r.runs(), [(AFTER, 1)], "its dependent starts");
        assert!(r.view().signals.is_empty(), "the signal was consumed");
    }

    #[test]
    fn signals_sent_before_the_wait_are_buffered_in_order() {
        let mut r = Run::new();
        r.signal("approval", json!(1), 1).unwrap();
        r.signal("other", json!("x"), 2).unwrap();
        r.signal("approval", json!(2), 3).unwrap();
        let pending = r.view().signals;
        let names: Vec<(&str, &Value)> = pending.iter().map(|s| (s.name.as_str(), &s.payload)).collect();
        assert_eq!(names, [("approval", &json!(1)), ("other", &json!("x")), ("approval", &json!(2))]);
        assert!(pending.iter().all(|s| s.step.is_none()));
        assert_eq!(pending[1].received_at, t(2));
        r.await_signal(ASK, "approval", false, Some(60), 4);
        assert_eq!(r.status(ASK), StepStatus::Completed, "the oldest buffered signal is received at once");
        assert_eq!(r.m.outputs.get("ask"), Some(&json!(1)));
        let left: Vec<Value> = r.view().signals.into_iter().map(|s| s.payload).collect();
        assert_eq!(left, [json!("x"), json!(2)]);
    }

    #[test]
    fn the_step_waiting_longest_receives_the_signal() {
        let mut r = Run::new();
        r.await_signal(OTHER, "go", false, None, 1);
        r.await_signal(ASK, "go", false, None, 2);
        r.signal("go", json!({ "first": true }), 3).unwrap();
        assert_eq!((r.status(OTHER), r.status(ASK)), (StepStatus::Completed, StepStatus::Awaiting));
        r.signal("go", json!({ "second": true }), 4).unwrap();
        assert_eq!(r.status(ASK), StepStatus::Completed);
    }

    #[test]
    fn a_rerun_wait_runs_the_step_again_and_the_new_attempt_holds_the_signal_until_it_ends() {
        let mut r = Run::new();
        r.await_signal(ASK, "approval", true, Some(60), 1);
        r.signal("approval", json!({ "ok": true }), 2).unwrap();
        assert_eq!(r.runs(), [(ASK, 2)], "the step runs again");
        assert_eq!(r.m.held_signal(ASK, "approval", 0), Some(&json!({ "ok": true })));
        assert_eq!(r.m.held_signal(ASK, "approval", 1), None);
        assert_eq!(r.view().signals[0].step.as_deref(), Some("ask"), "shown as held by the step");
        // The attempt fails and is retried: the signal is still there.
        r.finish(ASK, StepReport::Failed { error: crate::model::StepError::new("flaky", "again"), jitter: 0.0 }, 3);
        assert_eq!(r.status(ASK), StepStatus::Retrying);
        assert!(r.m.held_signal(ASK, "approval", 0).is_some());
        // A crash: recovery runs the step again; the signal is still held.
        let retry = r.m.timers().next().unwrap().0;
        r.apply(ExecutionEvent::TimerFired { timer: retry, at: t(10) }).unwrap();
        r.apply(ExecutionEvent::Recovered { at: t(11) }).unwrap();
        assert!(r.m.held_signal(ASK, "approval", 0).is_some());
        r.finish(ASK, StepReport::Done, 12);
        assert_eq!(r.m.held_signal(ASK, "approval", 0), None, "consumed when the step ended");
        assert!(r.view().signals.is_empty());
    }

    #[test]
    fn a_running_step_takes_buffered_signals_and_keeps_them_until_it_ends() {
        let mut r = Run::new();
        r.signal("chunk", json!(1), 1).unwrap();
        r.signal("chunk", json!(2), 2).unwrap();
        let attempt = r.m.slot(ASK).attempt;
        let take = |at| ExecutionEvent::SignalTaken { step: ASK, attempt, name: Arc::from("chunk"), at: t(at) };
        r.apply(take(3)).unwrap();
        assert_eq!(r.m.held_signal(ASK, "chunk", 0), Some(&json!(1)));
        assert_eq!(r.m.buffered_signal("chunk"), Some(&json!(2)));
        // A stale attempt takes nothing.
        r.apply(ExecutionEvent::SignalTaken { step: ASK, attempt: attempt + 1, name: Arc::from("chunk"), at: t(4) })
            .unwrap();
        assert_eq!(r.m.buffered_signal("chunk"), Some(&json!(2)));
        r.apply(take(5)).unwrap();
        assert_eq!(r.m.held_signal(ASK, "chunk", 1), Some(&json!(2)));
        assert_eq!(r.m.buffered_signal("chunk"), None);
        // Nothing buffered: nothing taken.
        r.apply(take(6)).unwrap();
        r.finish(ASK, StepReport::Done, 7);
        assert!(r.view().signals.is_empty());
    }

    #[test]
    fn a_resumed_or_timed_out_wait_takes_no_signal() {
        let mut r = Run::new();
        r.await_signal(ASK, "approval", false, Some(60), 1);
        r.apply(ExecutionEvent::Resumed { step: Some(ASK), data: Map::new(), at: t(2) }).unwrap();
        r.signal("approval", json!(true), 3).unwrap();
        assert_eq!(r.view().signals.len(), 1, "buffered: nobody waits any more");
        let mut r = Run::new();
        r.await_signal(ASK, "approval", false, Some(60), 1);
        let timeout = r.m.timers().find(|(_, due)| *due == t(61)).unwrap().0;
        r.apply(ExecutionEvent::TimerFired { timer: timeout, at: t(61) }).unwrap();
        assert_eq!(r.view().status, Status::Failing);
        r.signal("approval", json!(true), 62).unwrap();
        assert_eq!(r.view().signals.len(), 1);
    }

    #[test]
    fn an_ended_execution_takes_no_signal() {
        let mut r = Run::new();
        r.finish(ASK, StepReport::Done, 1);
        r.finish(OTHER, StepReport::Done, 1);
        r.finish(AFTER, StepReport::Done, 2);
        assert_eq!(r.view().status, Status::Completed);
        assert_eq!(r.signal("late", json!(1), 3), Err(TransitionError::Finished(Status::Completed)));
    }

    #[test]
    fn replaying_the_journal_rebuilds_the_signals() {
        let mut r = Run::new();
        let mut journal = Vec::new();
        let mut push = |r: &mut Run, e: ExecutionEvent| {
            journal.push(e.clone());
            r.apply(e).unwrap();
        };
        push(&mut r, ExecutionEvent::Signalled { name: Arc::from("a"), payload: json!(1), at: t(1) });
        let attempt = r.m.slot(OTHER).attempt;
        push(&mut r, ExecutionEvent::SignalTaken { step: OTHER, attempt, name: Arc::from("a"), at: t(2) });
        push(&mut r, ExecutionEvent::Signalled { name: Arc::from("b"), payload: json!(2), at: t(3) });
        let spec = AwaitSpec { signal: Some(Arc::from("c")), rerun: true, ..Default::default() };
        let attempt = r.m.slot(ASK).attempt;
        push(
            &mut r,
            ExecutionEvent::StepFinished {
                step: ASK,
                attempt,
                report: StepReport::Await { spec: Box::new(spec) },
                at: t(4),
            },
        );
        let mut out = Vec::new();
        let mut fresh = Machine::start(&def(), Data::new(), t(0), &mut out);
        for e in journal {
            fresh.apply(e, &mut out).unwrap();
        }
        let trigger = Trigger::Manual;
        let id = ExecutionId::new();
        let who = || Identity { id, parent: None, trigger: &trigger, parked: None };
        assert_eq!(fresh.view(who(), t(9)), r.m.view(who(), t(9)));
        assert_eq!(fresh.awaited_signal(ASK), Some("c"));
        assert_eq!(fresh.held_signal(OTHER, "a", 0), Some(&json!(1)));
    }
}
