//! State machine tests: plain functions, no tokio runtime, no clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::command::{Command, Notice};
use super::event::{AwaitSpec, ExecutionEvent, GraftedStep, HandlerKind, StepReport};
use super::{Machine, TransitionError};
use crate::builder::Workflow;
use crate::model::context::Data;
use crate::model::status::{Status, StepStatus};
use crate::model::{Context, Outcome, Step, StepError, StepResult, WorkflowDef};

async fn noop(_: Context) -> StepResult {
    Ok(Outcome::Done)
}

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).single().unwrap()
}

/// Drives a machine by step names and records what it asks for.
struct Harness {
    m: Machine,
    now: i64,
    out: Vec<Command>,
}

impl Harness {
    fn start(def: &WorkflowDef) -> Self {
        Self::start_with(def, Data::new())
    }

    fn start_with(def: &WorkflowDef, input: Data) -> Self {
        let mut out = Vec::new();
        let m = Machine::start(def, input, t(0), &mut out);
        Harness { m, now: 0, out }
    }

    fn id(&self, name: &str) -> u32 {
        self.m.step_id(name).unwrap_or_else(|| panic!("no step {name}"))
    }

    fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    /// Names of steps the last events asked to run, in order.
    fn started(&mut self) -> Vec<String> {
        let cmds = self.take();
        let mut names = Vec::new();
        for c in &cmds {
            if let Command::RunStep { step, .. } | Command::StartChild { step, .. } = c {
                names.push(self.m.step_name(*step).to_string());
            }
        }
        self.out = cmds;
        names
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
    }

    fn apply(&mut self, e: ExecutionEvent) -> Result<(), TransitionError> {
        self.out.clear();
        self.m.apply(e, &mut self.out)
    }

    fn report(&mut self, name: &str, report: StepReport) {
        let step = self.id(name);
        let attempt = self.m.slot(step).attempt;
        self.apply(ExecutionEvent::StepFinished { step, attempt, report, at: t(self.now) }).unwrap();
    }

    fn done(&mut self, name: &str) {
        self.report(name, StepReport::Done);
    }

    fn output(&mut self, name: &str, value: Value) {
        self.report(name, StepReport::Output { value });
    }

    fn fail(&mut self, name: &str, kind: &str) {
        self.report(name, StepReport::Failed { error: StepError::new(kind.to_owned(), "boom"), jitter: 0.0 });
    }

    fn status(&self, name: &str) -> StepStatus {
        self.m.slot(self.id(name)).status
    }

    fn timers(&self) -> Vec<(u32, DateTime<Utc>)> {
        self.out
            .iter()
            .filter_map(|c| match c {
                Command::ArmTimer { timer, due } => Some((*timer, *due)),
                _ => None,
            })
            .collect()
    }

    fn fire(&mut self, timer: u32) {
        self.apply(ExecutionEvent::TimerFired { timer, at: t(self.now) }).unwrap();
    }

    fn finished(&self) -> Option<Status> {
        self.out.iter().find_map(|c| match c {
            Command::Finish { status } => Some(*status),
            _ => None,
        })
    }

    fn compensations(&self) -> Vec<String> {
        self.out
            .iter()
            .filter_map(|c| match c {
                Command::RunCompensation { step, .. } => Some(self.m.step_name(*step).to_string()),
                _ => None,
            })
            .collect()
    }

    fn compensate(&mut self, name: &str, result: Result<(), StepError>) {
        let step = self.id(name);
        let attempt = self
            .out
            .iter()
            .find_map(|c| match c {
                Command::RunCompensation { step: s, attempt } if *s == step => Some(*attempt),
                _ => None,
            })
            .unwrap_or(1);
        self.apply(ExecutionEvent::CompensationFinished { step, attempt, result, at: t(self.now) }).unwrap();
    }
}

fn chain(names: &[&str]) -> WorkflowDef {
    let mut wf = Workflow::new("chain").step_max_retries(0);
    for (i, n) in names.iter().enumerate() {
        let opts = if i == 0 { Step::opts() } else { Step::opts().after(names[i - 1]) };
        wf = wf.step_with(*n, noop, opts);
    }
    wf.build().unwrap()
}

#[test]
fn chain_runs_in_order_and_completes() {
    let def = chain(&["a", "b", "c"]);
    let mut h = Harness::start(&def);
    assert_eq!(h.started(), ["a"]);
    assert_eq!(h.m.status(), Status::Running);
    h.done("a");
    assert_eq!(h.started(), ["b"]);
    h.done("b");
    assert_eq!(h.started(), ["c"]);
    h.done("c");
    assert_eq!(h.finished(), Some(Status::Completed));
    assert_eq!(h.m.progress(), (3, 3));
}

#[test]
fn fan_out_starts_independent_steps_together_within_the_concurrency_limit() {
    let def = Workflow::new("fan")
        .step_concurrency(2)
        .step("root", noop)
        .step_with("x", noop, Step::opts().after("root"))
        .step_with("y", noop, Step::opts().after("root"))
        .step_with("z", noop, Step::opts().after("root"))
        .step_with("join", noop, Step::opts().after(["x", "y", "z"]))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    assert_eq!(h.started(), ["root"]);
    h.done("root");
    assert_eq!(h.started(), ["x", "y"], "only two at once");
    h.done("y");
    assert_eq!(h.started(), ["z"], "a freed slot starts the next ready step");
    h.done("x");
    assert!(h.started().is_empty(), "join waits for z");
    h.done("z");
    assert_eq!(h.started(), ["join"]);
}

#[test]
fn outputs_merge_into_the_context_or_under_context_key() {
    let def = Workflow::new("w")
        .step("a", noop)
        .step_with("b", noop, Step::opts().after("a").context_key("b_result"))
        .step_with("c", noop, Step::opts().after("b"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.output("a", json!({"user_id": 7, "name": "x"}));
    h.output("b", json!({"user_id": 8}));
    h.output("c", json!(42));
    let ctx = h.m.context();
    assert_eq!(ctx.get::<u32>("user_id").unwrap(), 7, "context_key keeps b out of the top level");
    assert_eq!(ctx.value("b_result"), Some(&json!({"user_id": 8})));
    assert_eq!(ctx.output("c"), Some(&json!(42)), "non-object outputs are kept per step");
    assert!(!ctx.contains("c"));
    assert_eq!(ctx.output("a"), Some(&json!({"user_id": 7, "name": "x"})));
}

#[test]
fn false_condition_skips_and_dependents_still_run() {
    let def = Workflow::new("w")
        .step("check", noop)
        .step_with("reserve", noop, Step::opts().after("check").when(|c: &Context| c.get_or("in_stock", false)))
        .step_with("after_reserve", noop, Step::opts().after("reserve"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.output("check", json!({"in_stock": false}));
    assert_eq!(h.started(), ["after_reserve"], "a skipped dependency counts as satisfied");
    assert_eq!(h.status("reserve"), StepStatus::Skipped);
    assert!(
        h.out.iter().any(
            |c| matches!(c, Command::Notify(n) if matches!(&**n, Notice::StepSkipped { reason, .. } if reason == "condition is false"))
        )
    );
}

#[test]
fn after_any_starts_on_the_first_completion_once() {
    let def = Workflow::new("race")
        .step("a", noop)
        .step_with("b", noop, Step::opts().after("a"))
        .step_with("c", noop, Step::opts().after("a"))
        .step_with("d", noop, Step::opts().after_any(["b", "c"]))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.done("a");
    assert_eq!(h.started(), ["b", "c"]);
    h.done("c");
    assert_eq!(h.started(), ["d"]);
    h.done("d");
    assert_eq!(h.finished(), None, "b is still running");
    h.done("b");
    assert!(h.started().is_empty(), "d does not start twice");
    assert_eq!(h.finished(), Some(Status::Completed));
}

#[test]
fn after_any_is_skipped_when_every_dependency_is_skipped() {
    let def = Workflow::new("w")
        .step_with("b", noop, Step::opts().when(|_: &Context| false))
        .step_with("c", noop, Step::opts().when(|_: &Context| false))
        .step_with("d", noop, Step::opts().after_any(["b", "c"]))
        .build()
        .unwrap();
    let h = Harness::start(&def);
    assert_eq!(h.status("d"), StepStatus::Skipped);
    assert_eq!(h.finished(), Some(Status::Completed));
}

#[test]
fn retries_wait_for_the_backoff_delay() {
    let def =
        Workflow::new("w").step_with("flaky", noop, Step::opts().max_retries(2).retry_delay("1s")).build().unwrap();
    let mut h = Harness::start(&def);
    h.fail("flaky", "timeout");
    let timers = h.timers();
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].1, t(1000), "first retry after 1s");
    assert_eq!(h.status("flaky"), StepStatus::Retrying);
    h.advance(1000);
    h.fire(timers[0].0);
    assert_eq!(h.started(), ["flaky"]);
    assert_eq!(h.m.slot(h.id("flaky")).attempt, 2);
    h.fail("flaky", "timeout");
    assert_eq!(h.timers()[0].1, t(3000), "exponential: then 2s");
    h.advance(2000);
    let timer = h.timers()[0].0;
    h.fire(timer);
    h.fail("flaky", "timeout");
    assert_eq!(h.finished(), Some(Status::Failed), "retries exhausted");
    assert_eq!(h.m.context().get::<u32>("__attempts__").unwrap(), 3);
    assert_eq!(h.m.context().get::<String>("__error_step__").unwrap(), "flaky");
}

#[test]
fn non_matching_errors_are_not_retried() {
    let def = Workflow::new("w")
        .step_with("s", noop, Step::opts().max_retries(5).retry_on("connection_error"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.fail("s", "validation_error");
    assert!(h.timers().is_empty());
    assert_eq!(h.finished(), Some(Status::Failed));
}

#[test]
fn on_error_skip_and_continue_let_dependents_run() {
    let def = Workflow::new("w")
        .step_max_retries(0)
        .step_with("optional", noop, Step::opts().on_error(crate::model::OnError::Skip))
        .step_with("notify", noop, Step::opts().on_error(crate::model::OnError::Continue))
        .step_with("last", noop, Step::opts().after(["optional", "notify"]))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.fail("optional", "boom");
    assert_eq!(h.status("optional"), StepStatus::Skipped);
    h.fail("notify", "boom");
    assert_eq!(h.status("notify"), StepStatus::Failed);
    assert_eq!(h.started(), ["last"]);
    h.done("last");
    assert_eq!(h.finished(), Some(Status::Completed));
}

fn saga() -> WorkflowDef {
    Workflow::new("payment")
        .step_max_retries(0)
        .step_with("reserve_inventory", noop, Step::opts().rollback(noop))
        .step_with("charge_payment", noop, Step::opts().after("reserve_inventory").rollback(noop))
        .step_with("create_order", noop, Step::opts().after("charge_payment").rollback(noop))
        .step_with("send_confirmation", noop, Step::opts().after("create_order"))
        .build()
        .unwrap()
}

#[test]
fn failure_compensates_completed_steps_in_reverse_order() {
    let def = saga();
    let mut h = Harness::start(&def);
    h.output("reserve_inventory", json!({"reservation_id": 1}));
    h.output("charge_payment", json!({"payment_id": 2}));
    h.done("create_order");
    h.fail("send_confirmation", "smtp");
    assert_eq!(h.m.status(), Status::RollingBack);
    let mut order = Vec::new();
    loop {
        let next = h.compensations();
        let Some(name) = next.first().cloned() else { break };
        order.push(name.clone());
        h.compensate(&name, Ok(()));
    }
    assert_eq!(order, ["create_order", "charge_payment", "reserve_inventory"]);
    assert_eq!(h.finished(), Some(Status::RolledBack));
    assert_eq!(h.status("charge_payment"), StepStatus::Compensated);
}

#[test]
fn compensation_sees_the_context_of_its_step_plus_the_error() {
    let def = saga();
    let mut h = Harness::start(&def);
    h.output("reserve_inventory", json!({"reservation_id": 1}));
    h.output("charge_payment", json!({"payment_id": 2}));
    h.fail("create_order", "db");
    let ctx = h.m.compensation_context(h.id("reserve_inventory"));
    assert!(!ctx.contains("payment_id"), "the context as it was when reserve_inventory completed");
    assert_eq!(ctx.get::<String>("__error_step__").unwrap(), "create_order");
}

#[test]
fn a_failed_compensation_is_recorded_and_the_others_still_run() {
    let def = saga();
    let mut h = Harness::start(&def);
    h.done("reserve_inventory");
    h.done("charge_payment");
    h.fail("create_order", "db");
    assert_eq!(h.compensations(), ["charge_payment"]);
    h.compensate("charge_payment", Err(StepError::new("refund_failed", "no").permanent()));
    assert_eq!(h.compensations(), ["reserve_inventory"]);
    h.compensate("reserve_inventory", Ok(()));
    assert_eq!(h.finished(), Some(Status::RollbackFailed));
    assert_eq!(h.status("charge_payment"), StepStatus::CompensationFailed);
}

#[test]
fn running_steps_finish_before_the_rollback_and_are_compensated() {
    let def = Workflow::new("w")
        .step_max_retries(0)
        .step_with("slow", noop, Step::opts().rollback(noop))
        .step("bad", noop)
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.fail("bad", "x");
    assert_eq!(h.m.status(), Status::Failing);
    assert!(h.compensations().is_empty(), "waits for `slow`");
    h.done("slow");
    assert_eq!(h.compensations(), ["slow"]);
}

#[test]
fn await_parks_until_resume_merges_the_context() {
    let def = Workflow::new("w")
        .step_with("approve", noop, Step::opts().await_approval(true))
        .step_with("pay", noop, Step::opts().after("approve"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    let spec = AwaitSpec { timeout: Some(Duration::from_secs(3600)), ..Default::default() };
    h.report("approve", StepReport::Await { spec: Box::new(spec) });
    assert_eq!(h.m.status(), Status::Awaiting);
    assert_eq!(h.timers()[0].1, t(3_600_000));
    let mut data = Map::new();
    data.insert("approved".into(), json!(true));
    h.apply(ExecutionEvent::Resumed { step: None, data, at: t(5) }).unwrap();
    assert_eq!(h.started(), ["pay"]);
    assert!(h.out.iter().any(|c| matches!(c, Command::CancelTimer { .. })), "the await timeout is disarmed");
    assert!(h.m.context().get::<bool>("approved").unwrap());
}

#[test]
fn await_timeout_fails_with_await_timeout() {
    let def = Workflow::new("w").step_with("approve", noop, Step::opts().await_approval(true)).build().unwrap();
    let mut h = Harness::start(&def);
    h.report(
        "approve",
        StepReport::Await { spec: Box::new(AwaitSpec { timeout: Some(Duration::from_secs(1)), ..Default::default() }) },
    );
    let timer = h.timers()[0].0;
    h.advance(1000);
    h.fire(timer);
    assert_eq!(h.finished(), Some(Status::Failed));
    let err = h.m.failure.as_ref().unwrap().error.clone();
    assert_eq!(err.kind(), "await_timeout");
}

#[test]
fn pause_holds_new_steps_and_resume_releases_them() {
    let def = chain(&["a", "b"]);
    let mut h = Harness::start(&def);
    h.apply(ExecutionEvent::Paused { at: t(1) }).unwrap();
    assert_eq!(h.m.status(), Status::Paused);
    assert_eq!(h.apply(ExecutionEvent::Paused { at: t(1) }), Err(TransitionError::AlreadyPaused));
    h.done("a");
    assert!(h.started().is_empty(), "paused: b does not start");
    assert_eq!(h.status("b"), StepStatus::Ready);
    h.apply(ExecutionEvent::Resumed { step: None, data: Map::new(), at: t(2) }).unwrap();
    assert_eq!(h.started(), ["b"]);
    assert_eq!(
        h.apply(ExecutionEvent::Resumed { step: None, data: Map::new(), at: t(2) }),
        Err(TransitionError::NotResumable)
    );
}

#[test]
fn snooze_reruns_without_spending_a_retry() {
    let def = Workflow::new("w").step_with("poll", noop, Step::opts().max_retries(0)).build().unwrap();
    let mut h = Harness::start(&def);
    h.report("poll", StepReport::Snooze { delay: Duration::from_secs(60) });
    assert_eq!(h.status("poll"), StepStatus::Snoozed);
    let (timer, due) = h.timers()[0];
    assert_eq!(due, t(60_000));
    h.fire(timer);
    assert_eq!(h.started(), ["poll"]);
    h.done("poll");
    assert_eq!(h.finished(), Some(Status::Completed));
}

#[test]
fn cancel_interrupts_cancellable_steps_and_waits_for_the_rest() {
    let def = Workflow::new("w")
        .step_with("long", noop, Step::opts().cancellable(true))
        .step("short", noop)
        .step_with("next", noop, Step::opts().after(["long", "short"]))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.apply(ExecutionEvent::Cancelled { reason: "user".into(), cleanup: false, rollback: false, at: t(1) }).unwrap();
    assert!(h.out.iter().any(|c| matches!(c, Command::Interrupt { step, .. } if *step == 0)));
    assert!(h.out.iter().any(|c| matches!(c, Command::SignalCancel)));
    assert_eq!(h.m.status(), Status::Cancelling);
    h.fail("long", "cancelled");
    assert_eq!(h.finished(), None, "short is still running");
    h.done("short");
    assert_eq!(h.finished(), Some(Status::Cancelled));
    assert_eq!(h.status("next"), StepStatus::Pending, "nothing new started");
}

#[test]
fn cancel_with_rollback_and_cleanup_compensates_then_runs_on_cancel() {
    let def = Workflow::new("w")
        .on_cancel(|_: Context, _: String| async { Ok::<(), StepError>(()) })
        .step_with("a", noop, Step::opts().rollback(noop))
        .step_with("b", noop, Step::opts().after("a"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.done("a");
    h.apply(ExecutionEvent::Cancelled { reason: "r".into(), cleanup: true, rollback: true, at: t(1) }).unwrap();
    h.done("b");
    assert_eq!(h.compensations(), ["a"]);
    h.compensate("a", Ok(()));
    assert!(h.out.iter().any(|c| matches!(c, Command::RunHandler { handler: HandlerKind::OnCancel })));
    h.apply(ExecutionEvent::HandlerFinished { handler: HandlerKind::OnCancel, result: Ok(()), at: t(2) }).unwrap();
    assert_eq!(h.finished(), Some(Status::Cancelled));
}

#[test]
fn grafts_add_steps_and_after_graft_waits_for_all_of_them() {
    let def = Workflow::new("batch")
        .step("fetch", noop)
        .graft("process", noop, Step::opts().after("fetch"))
        .step_with("summarize", noop, Step::opts().after_graft("process"))
        .build()
        .unwrap();
    let mut h = Harness::start(&def);
    h.done("fetch");
    let steps = (1..=3)
        .map(|i| GraftedStep {
            name: Arc::from(format!("item_{i}")),
            body: Some(crate::model::IntoStepFn::into_step_fn(noop)),
            policy: None,
        })
        .collect();
    h.report("process", StepReport::Expand { steps });
    assert_eq!(h.started(), ["item_1", "item_2", "item_3"]);
    assert_eq!(h.status("process"), StepStatus::Expanded);
    h.output("item_1", json!({"ok": 1}));
    h.done("item_2");
    assert!(h.started().is_empty());
    h.done("item_3");
    assert_eq!(h.started(), ["summarize"]);
    assert_eq!(h.m.context().value("item_1"), Some(&json!({"ok": 1})), "added steps' outputs go under their names");
    assert_eq!(h.m.progress(), (5, 6));
}

#[test]
fn workflow_timeout_fails_the_execution() {
    let def = Workflow::new("w").timeout("10s").step("slow", noop).build().unwrap();
    let mut h = Harness::start(&def);
    let (timer, due) = h.timers()[0];
    assert_eq!(due, t(10_000));
    h.fire(timer);
    assert_eq!(h.m.status(), Status::Failing);
    h.fail("slow", "cancelled");
    assert_eq!(h.finished(), Some(Status::Failed));
    assert_eq!(h.m.failure.as_ref().unwrap().error.kind(), "workflow_timeout");
}

#[test]
fn workflow_retries_restart_from_the_input() {
    let def =
        Workflow::new("w").max_retries(1).retry_delay("5s").step_max_retries(0).step("only", noop).build().unwrap();
    let mut input = Data::new();
    input.insert("k".into(), json!(1));
    let mut h = Harness::start_with(&def, input);
    h.output("only", json!({"k": 2}));
    assert_eq!(h.finished(), Some(Status::Completed));

    let mut h = Harness::start(&def);
    h.fail("only", "x");
    let (timer, due) = h.timers()[0];
    assert_eq!(due, t(5000));
    h.fire(timer);
    assert_eq!(h.started(), ["only"]);
    assert_eq!(h.m.workflow_attempt(), 2);
    h.fail("only", "x");
    assert_eq!(h.finished(), Some(Status::Failed));
}

#[test]
fn stale_results_are_ignored() {
    let def = chain(&["a"]);
    let mut h = Harness::start(&def);
    h.apply(ExecutionEvent::StepFinished { step: 0, attempt: 9, report: StepReport::Done, at: t(0) }).unwrap();
    assert_eq!(h.status("a"), StepStatus::Running);
}

#[test]
fn recovery_reruns_running_steps_with_the_next_attempt() {
    let def = chain(&["a", "b"]);
    let mut h = Harness::start(&def);
    h.done("a");
    h.apply(ExecutionEvent::Recovered { at: t(10) }).unwrap();
    assert!(h.out.iter().any(|c| matches!(c, Command::RunStep { step: 1, attempt: 2, .. })));
    assert_eq!(h.status("a"), StepStatus::Completed, "completed steps stay completed");
}
