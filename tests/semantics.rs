//! Where SPEC's semantics are precise: cooperative cancellation with a grace
//! period, a step's timeout bounding an await that gives none, what
//! `retry_max_delay` caps, `on_step_error` awaited before the retry it precedes
//! (and never while the execution fails), `cancel_all` with `cancel`'s options,
//! and `schedule(on_event = [...])`. On tokio's paused clock, so times are exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, StepStatus, WorkflowDef};
use tokio::time::Instant;

async fn run_until_end(engine: &Engine, id: ExecutionId) -> ExecutionState {
    tokio::time::timeout(Duration::from_secs(24 * 3600), engine.wait(id)).await.expect("it ends").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_step_sees_the_cancellation_and_its_partial_result_is_kept() {
    let def = Workflow::new("render")
        .step_with(
            "render",
            |ctx: Context| async move {
                // Works until cancelled, then returns what it has.
                ctx.cancelled().await;
                Ok::<_, StepError>(json!({ "frames_done": 12 }))
            },
            Step::opts().cancellable(true).timeout("infinity"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("render", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.cancel(id, CancelOptions::reason("stop")).await.unwrap();
    let state = run_until_end(&engine, id).await;
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.context["frames_done"], 12, "the partial result is kept");
    assert_eq!(state.step("render").unwrap().status, StepStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_step_that_ignores_it_is_interrupted_after_its_grace() {
    let def = Workflow::new("stubborn")
        .step_with(
            "spin",
            |_ctx: Context| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, StepError>(())
            },
            Step::opts().cancellable(true).cancel_grace("2s").timeout("infinity"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("stubborn", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let cancelled_at = Instant::now();
    engine.cancel(id, CancelOptions::reason("stop")).await.unwrap();
    let state = run_until_end(&engine, id).await;
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.step("spin").unwrap().status, StepStatus::Cancelled);
    let waited = Instant::now() - cancelled_at;
    assert_eq!(waited.as_secs(), 2, "interrupted once its grace period passed: {waited:?}");
}

#[test]
fn a_grace_period_needs_a_cancellable_step() {
    let err = Workflow::new("w")
        .step_with("s", |_ctx: Context| async { Ok::<_, StepError>(()) }, Step::opts().cancel_grace("1s"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`cancel_grace` is set but `cancellable` is off"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_steps_timeout_bounds_an_await_that_gives_none() {
    let def = Workflow::new("approval")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true).timeout("2h"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let started = Instant::now();
    let id = engine.start("approval", json!({})).await.unwrap();
    let state = run_until_end(&engine, id).await;
    assert_eq!(state.status, Status::Failed);
    let error = state.step("approve").unwrap().error.clone().unwrap();
    assert_eq!(error.kind(), sagaflow::kinds::AWAIT_TIMEOUT);
    assert_eq!((Instant::now() - started).as_secs(), 7200, "it waited the step's timeout");

    // Without a timeout of its own, an await waits for as long as it takes.
    let open = Workflow::new("open")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .build()
        .unwrap();
    engine.register(open).unwrap();
    let id = engine.start("open", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30 * 86_400)).await;
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Awaiting);
}

async fn retry_gaps(opts: sagaflow::StepOptions) -> Vec<u64> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&times);
    let def = Workflow::new("retry")
        .step_with(
            "flaky",
            move |_ctx: Context| {
                t.lock().unwrap().push(Instant::now());
                std::future::ready(Err::<Outcome, _>(StepError::new("timeout", "always fails")))
            },
            opts,
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("retry", json!({})).await.unwrap();
    run_until_end(&engine, id).await;
    let t = times.lock().unwrap().clone();
    t.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect()
}

#[tokio::test(start_paused = true)]
async fn retry_max_delay_caps_growing_delays_only() {
    let fixed =
        retry_gaps(Step::opts().max_retries(2).retry_delay("10m").retry_backoff(Backoff::Fixed).retry_max_delay("20m"))
            .await;
    assert_eq!(fixed, [600_000, 600_000], "a fixed delay is used as given");
    let custom = retry_gaps(
        Step::opts().max_retries(2).retry_delay("1m").retry_backoff_fn(|_n, base| base * 30).retry_max_delay("5m"),
    )
    .await;
    assert_eq!(custom, [1_800_000, 1_800_000], "so is what a backoff function computes");
    let growing = retry_gaps(
        Step::opts().max_retries(4).retry_delay("1m").retry_backoff(Backoff::Exponential).retry_max_delay("3m"),
    )
    .await;
    assert_eq!(growing, [60_000, 120_000, 180_000, 180_000], "exponential delays are capped");
}

#[tokio::test(start_paused = true)]
async fn on_step_error_finishes_before_the_retry_and_never_runs_while_the_execution_fails() {
    let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let (hook_log, step_log, other_log) = (Arc::clone(&log), Arc::clone(&log), Arc::clone(&log));
    let def: WorkflowDef = Workflow::new("hooked")
        .on_step_error(move |_ctx: Context, step: String, _error: StepError, attempt: u32| {
            let log = Arc::clone(&hook_log);
            async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                log.lock().unwrap().push((format!("hook {step} #{attempt}"), Instant::now()));
                Ok::<(), StepError>(())
            }
        })
        .step_with(
            "flaky",
            move |ctx: Context| {
                step_log.lock().unwrap().push((format!("flaky #{}", ctx.attempt()), Instant::now()));
                let attempt = ctx.attempt();
                async move { if attempt == 1 { Err(StepError::new("flaky", "once")) } else { Ok(Outcome::Done) } }
            },
            Step::opts().max_retries(1).retry_delay(0),
        )
        .step_with(
            "doomed",
            move |_ctx: Context| {
                other_log.lock().unwrap().push(("doomed".into(), Instant::now()));
                std::future::ready(Err::<Outcome, _>(StepError::new("fatal", "no").permanent()))
            },
            Step::opts().after("flaky"),
        )
        .step_with(
            "slow",
            |_ctx: Context| async {
                // Fails after `doomed` failed the execution: while it drains.
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err::<Outcome, _>(StepError::new("late", "too late").permanent())
            },
            Step::opts().timeout("1h"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("hooked", json!({})).await.unwrap();
    let state = run_until_end(&engine, id).await;
    assert_eq!(state.status, Status::Failed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let log = log.lock().unwrap().clone();
    let names: Vec<&str> = log.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["flaky #1", "hook flaky #1", "flaky #2"], "the retry waited for the hook: {names:?}");
    assert!(log[1].1 <= log[2].1);
    assert_eq!(
        names.iter().filter(|n| n.starts_with("hook doomed")).count(),
        1,
        "the failure that ends the execution is reported once: {names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("hook slow")), "no hook while the execution fails: {names:?}");
    assert_eq!(state.step("slow").unwrap().status, StepStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn cancel_all_takes_the_options_of_cancel() {
    let compensated: Arc<Mutex<Vec<String>>> = Arc::default();
    let c = Arc::clone(&compensated);
    let def = Workflow::new("booking")
        .step_with(
            "reserve",
            |_ctx: Context| async { Ok::<_, StepError>(()) },
            Step::opts().rollback(move |ctx: Context| {
                c.lock().unwrap().push(ctx.execution_id().to_string());
                async { Ok::<_, StepError>(()) }
            }),
        )
        .step_with(
            "confirm",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("reserve").await_approval(true),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let a = engine.start("booking", json!({})).await.unwrap();
    let b = engine.start("booking", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let n = engine.cancel_all("booking", CancelOptions::reason("closed").rollback(true)).await.unwrap();
    assert_eq!(n, 2);
    for id in [a, b] {
        let state = run_until_end(&engine, id).await;
        assert_eq!(state.status, Status::Cancelled);
        assert_eq!(state.cancel_reason.as_deref(), Some("closed"));
    }
    let mut got = compensated.lock().unwrap().clone();
    got.sort();
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(got, want, "both were rolled back");
    assert_eq!(engine.cancel_all("booking", "a reason alone still works").await.unwrap(), 0);
}

struct Listener;

#[workflow(name = "listener", schedule(on_event = ["order.created", "order.updated"]))]
impl Listener {
    #[step]
    async fn handle(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

#[tokio::test(start_paused = true)]
async fn schedule_on_event_subscribes_the_workflow_as_spec_writes_it() {
    let engine = Engine::builder().workflow(Listener).build().await.unwrap();
    let def = engine.definition("listener").unwrap();
    assert_eq!(def.triggers().events, ["order.created", "order.updated"]);
    let started = engine.emit("order.updated", json!({ "id": 7 })).await.unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(run_until_end(&engine, started[0]).await.status, Status::Completed);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_of_every_step_and_compensation_is_kept_for_the_timeline() {
    let def = Workflow::new("attempts")
        .step_with(
            "flaky",
            |ctx: Context| {
                let attempt = ctx.attempt();
                async move { if attempt < 3 { Err(StepError::new("busy", "try again")) } else { Ok(Outcome::Done) } }
            },
            Step::opts().max_retries(3).retry_delay("1s").retry_backoff(Backoff::Fixed).rollback(|ctx: Context| {
                let attempt = ctx.attempt();
                async move { if attempt == 1 { Err(StepError::new("locked", "later")) } else { Ok(Outcome::Done) } }
            }),
        )
        .step_with(
            "nap",
            |ctx: Context| {
                let first = ctx.attempt() == 1;
                async move { Ok::<_, StepError>(if first { Outcome::snooze("1m") } else { Outcome::Done }) }
            },
            Step::opts().after("flaky"),
        )
        .step_with(
            "fail",
            |_ctx: Context| async { Err::<(), _>(StepError::new("fatal", "no").permanent()) },
            Step::opts().after("nap"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("attempts", json!({})).await.unwrap();
    let state = run_until_end(&engine, id).await;
    assert_eq!(state.status, Status::RolledBack);

    let outcomes = |h: &[sagaflow::AttemptInfo]| h.iter().map(|a| (a.attempt, a.outcome.clone())).collect::<Vec<_>>();
    // Earlier attempts are the history; the latest is the step's own fields.
    let flaky = state.step("flaky").unwrap();
    assert_eq!(outcomes(&flaky.history), [(1, "error".into()), (2, "error".into())]);
    assert_eq!(flaky.history[0].error.as_ref().unwrap().kind(), "busy");
    let gap = flaky.history[1].started_at.unwrap() - flaky.history[0].ended_at.unwrap();
    assert_eq!(gap.num_seconds(), 1, "the retry delay lies between the bars");
    assert_eq!(flaky.attempts, 3);
    let gap = flaky.started_at.unwrap() - flaky.history[1].ended_at.unwrap();
    assert_eq!(gap.num_seconds(), 1, "and before the latest attempt");
    assert_eq!(outcomes(&flaky.compensations), [(1, "error".into()), (2, "ok".into())]);
    let nap = state.step("nap").unwrap();
    assert_eq!(outcomes(&nap.history), [(1, "snoozed".into())]);
    let gap = nap.started_at.unwrap() - nap.history[0].ended_at.unwrap();
    assert_eq!(gap.num_seconds(), 60, "the snooze lies between the bars");
    let fail = state.step("fail").unwrap();
    assert!(fail.history.is_empty(), "a step that ran once has no history");
    assert_eq!(fail.error.as_ref().unwrap().kind(), "fatal");
}

/// The tokio task each step ran in, by step name.
type TaskLog = Arc<Mutex<Vec<(String, Option<tokio::task::Id>)>>>;

/// Step bodies that record the tokio task they run in (`wait` sleeps a minute).
fn task_recorder(tasks: &TaskLog) -> impl Fn(&str) -> StepFn + '_ {
    move |name: &str| {
        let (tasks, name) = (Arc::clone(tasks), name.to_owned());
        Arc::new(move |_ctx: Context| {
            let (tasks, name) = (Arc::clone(&tasks), name.clone());
            Box::pin(async move {
                tasks.lock().unwrap().push((name.clone(), tokio::task::try_id()));
                if name == "wait" {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, StepError>(Outcome::Output(json!({ name: true })))
            })
        })
    }
}

type StepFn = Arc<dyn Fn(Context) -> futures::future::BoxFuture<'static, StepResult> + Send + Sync>;

#[tokio::test(start_paused = true)]
async fn run_takes_a_short_execution_to_its_end_in_the_calling_task() {
    let tasks = TaskLog::default();
    let step = task_recorder(&tasks);
    let (a, b, c) = (step("a"), step("b"), step("c"));
    let def = Workflow::new("short")
        .step("a", move |ctx| a(ctx))
        .step_with("b", move |ctx| b(ctx), Step::opts().after("a"))
        .step_with("c", move |ctx| c(ctx), Step::opts().after("a"))
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let (caller, state) = tokio::spawn(async move {
        let state = engine.run("short", json!({ "order": 7 })).await.unwrap();
        (tokio::task::id(), state)
    })
    .await
    .unwrap();
    assert_eq!(state.status, Status::Completed, "{state:?}");
    assert_eq!((state.context["order"].clone(), state.context["b"].clone()), (json!(7), json!(true)));
    let tasks = tasks.lock().unwrap().clone();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|(_, t)| *t == Some(caller)), "every step ran in the caller's task: {tasks:?}");
}

#[tokio::test(start_paused = true)]
async fn run_hands_an_execution_that_waits_to_a_task_of_its_own() {
    let tasks = TaskLog::default();
    let step = task_recorder(&tasks);
    let (first, wait, last) = (step("first"), step("wait"), step("last"));
    let def = Workflow::new("slow")
        .step("first", move |ctx| first(ctx))
        .step_with("wait", move |ctx| wait(ctx), Step::opts().after("first").timeout("2m"))
        .step_with("last", move |ctx| last(ctx), Step::opts().after("wait"))
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let started = Instant::now();
    let (caller, state) = tokio::spawn(async move {
        let state = engine.run("slow", json!({})).await.unwrap();
        (tokio::task::id(), state)
    })
    .await
    .unwrap();
    assert_eq!(state.status, Status::Completed, "{state:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(60), "the sleeping step's wake-up reached its new task");
    let tasks = tasks.lock().unwrap().clone();
    let task_of = |name: &str| tasks.iter().find(|(n, _)| n == name).and_then(|(_, t)| *t);
    assert_eq!(task_of("first"), Some(caller), "the first turn ran in the caller");
    assert_ne!(task_of("last"), Some(caller), "after the wait the driver ran in a task of its own");
    assert!(task_of("last").is_some());
}

#[tokio::test]
async fn run_on_a_durable_store_returns_the_committed_end() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("run.db").display());
    let def = Workflow::new("short")
        .step("a", |_ctx| async { Ok::<_, StepError>(json!({ "a": 1 })) })
        .step_with("b", |_ctx| async { Ok::<_, StepError>(json!({ "b": 2 })) }, Step::opts().after("a"))
        .build()
        .unwrap();
    let engine = Engine::builder().store_url(&url).register(def).build().await.unwrap();
    let state = engine.run("short", json!({})).await.unwrap();
    assert_eq!(state.status, Status::Completed, "{state:?}");
    let stored = engine.get_state(state.id).await.unwrap();
    assert_eq!((stored.status, stored.context["b"].clone()), (Status::Completed, json!(2)), "the end is committed");
    let err = engine.run("nope", json!({})).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
