//! Durability on SQLite, within one process: executions survive a restart of the
//! engine, acknowledged calls are committed, running steps run again with the
//! next attempt number, timers keep their due times, and the workflow-version rule
//! of recovery (continue when every step of the old version is unchanged,
//! otherwise park with a reason).
//!
//! The test of a real `kill -9` of a process is in `kill.rs`.
//!
//! These tests use the real clock: the store works on its own thread, and tokio's
//! paused clock would jump ahead while it waits for that thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::{ExecutionQuery, SqliteStore, Store, StoreError};
use sagaflow::{EngineError, ExecutionState, StepStatus, WorkflowDef};

/// Counts the runs of each step and keeps the attempt numbers they saw.
#[derive(Default, Debug)]
struct Runs {
    runs: Mutex<HashMap<String, Vec<u32>>>,
}

impl Runs {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn record(&self, ctx: &Context) {
        let step = ctx.step().unwrap_or_default().to_owned();
        self.runs.lock().unwrap().entry(step).or_default().push(ctx.attempt());
    }

    fn attempts(&self, step: &str) -> Vec<u32> {
        self.runs.lock().unwrap().get(step).cloned().unwrap_or_default()
    }

    /// A step that records its run and outputs `{name: attempt}`.
    fn step(self: &Arc<Self>) -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + 'static {
        let runs = Arc::clone(self);
        move |ctx: Context| {
            runs.record(&ctx);
            let name = ctx.step().unwrap_or_default().to_owned();
            std::future::ready(Ok(json!({ name: ctx.attempt() }).into()))
        }
    }

    /// A step that records its run and waits for `resume`.
    fn approval(self: &Arc<Self>) -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + 'static {
        let runs = Arc::clone(self);
        move |ctx: Context| {
            runs.record(&ctx);
            std::future::ready(Ok(Outcome::await_resume()))
        }
    }

    /// A step that records its run and, on its first attempt, never finishes.
    fn hangs_once(self: &Arc<Self>) -> impl Fn(Context) -> StepFuture + Send + Sync + 'static {
        let runs = Arc::clone(self);
        move |ctx: Context| {
            runs.record(&ctx);
            Box::pin(async move {
                if ctx.attempt() == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(json!({ "hung_attempt": ctx.attempt() }).into())
            })
        }
    }
}

type StepFuture = std::pin::Pin<Box<dyn std::future::Future<Output = StepResult> + Send>>;

fn unix_millis() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_millis() as i64
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("sagaflow.db")
}

async fn engine(path: &Path, def: WorkflowDef) -> Engine {
    Engine::builder().store_url(url(path)).register(def).build().await.expect("the engine starts on SQLite")
}

/// Polls `get_state` until `pred` holds (real time, at most 10 s).
async fn eventually(engine: &Engine, id: ExecutionId, what: &str, pred: impl Fn(&ExecutionState) -> bool) {
    for _ in 0..1000 {
        let state = engine.get_state(id).await.expect("state");
        if pred(&state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still {:?}", engine.get_state(id).await.map(|s| s.status));
}

/// Polls `cond` until it holds (real time, at most 10 s).
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// `create → approve (awaits) → finish`, plus whatever `extra` adds.
fn approval_flow(runs: &Arc<Runs>, extra: impl FnOnce(Workflow) -> Workflow) -> WorkflowDef {
    let wf = Workflow::new("approval")
        .step("create", runs.step())
        .step_with("approve", runs.approval(), Step::opts().after("create"))
        .step_with("finish", runs.step(), Step::opts().after("approve"));
    extra(wf).build().expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_calls_are_in_the_file_when_they_return() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let def = approval_flow(&runs, |w| w.step_with("second_approval", runs.approval(), Step::opts().after("finish")));
    let engine = engine(&db(&dir), def).await;
    assert!(db(&dir).exists(), "the file is created on first use");
    let id = engine.start("approval", json!({ "order": 7 })).await.unwrap();
    // A second connection sees the execution as soon as `start` returned.
    let reader = SqliteStore::open_read_only(db(&dir)).await.unwrap();
    let live = reader.unfinished().await.unwrap();
    assert_eq!(live.iter().map(|e| e.execution.id).collect::<Vec<_>>(), [id]);
    assert_eq!(live[0].execution.input["order"], 7);
    eventually(&engine, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine.resume(id, json!({ "approved": true })).await.unwrap();
    let events = reader.unfinished().await.unwrap().remove(0).events;
    assert!(
        events.iter().any(|e| e.event.contains("\"resumed\"") && e.event.contains("approved")),
        "the resume is committed when `resume` returns: {events:?}"
    );
    eventually(&engine, id, "awaiting again", |s| s.awaiting.iter().any(|a| a.step == "second_approval")).await;
    engine.cancel(id, CancelOptions::reason("changed my mind")).await.unwrap();
    let committed = reader.unfinished().await.unwrap().pop().map(|e| e.events);
    let cancelled_in_journal =
        committed.as_ref().is_some_and(|events| events.iter().any(|e| e.event.contains("changed my mind")));
    let ended = reader.finished(id).await.unwrap();
    assert!(
        cancelled_in_journal || ended.is_some_and(|s| s.status == Status::Cancelled),
        "the cancel is committed when `cancel` returns (journaled, or the execution already ended)"
    );
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    let history = reader.list_finished(&ExecutionQuery::default()).await.unwrap();
    assert_eq!(history.iter().map(|s| s.id).collect::<Vec<_>>(), [id], "the final state is in the history");
    assert!(reader.unfinished().await.unwrap().is_empty(), "an ended execution leaves the live tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awaiting_execution_survives_a_restart_without_running_completed_steps_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = Runs::new();
    let engine1 = engine(&db(&dir), approval_flow(&first, |w| w)).await;
    let id = engine1.start("approval", json!({ "order": 7 })).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine1.shutdown().await;

    let second = Runs::new();
    let engine2 = engine(&db(&dir), approval_flow(&second, |w| w)).await;
    let state = engine2.get_state(id).await.unwrap();
    assert_eq!(state.status, Status::Awaiting, "the execution is back, still awaiting");
    assert_eq!(state.context["create"], 1, "the output of the completed step came back from the journal");
    assert_eq!(state.parked, None);
    engine2.resume(id, json!({ "approved": true })).await.unwrap();
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["approved"], true);
    assert!(second.attempts("create").is_empty(), "the completed step did not run again");
    assert!(second.attempts("approve").is_empty(), "the awaiting step was not run again: it was resumed");
    assert_eq!(second.attempts("finish"), [1]);
    assert_eq!(first.attempts("create"), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_step_runs_again_with_the_next_attempt_number() {
    let dir = tempfile::tempdir().unwrap();
    let build = |runs: &Arc<Runs>| {
        Workflow::new("hang")
            .step("first", runs.step())
            .step_with("hangs", runs.hangs_once(), Step::opts().after("first").timeout("infinity"))
            .step_with("last", runs.step(), Step::opts().after("hangs"))
            .build()
            .unwrap()
    };
    let first = Runs::new();
    let engine1 = engine(&db(&dir), build(&first)).await;
    let id = engine1.start("hang", json!({})).await.unwrap();
    eventually(&engine1, id, "`hangs` running", |s| s.running.iter().any(|r| r == "hangs")).await;
    engine1.shutdown().await;

    let second = Runs::new();
    let engine2 = engine(&db(&dir), build(&second)).await;
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(second.attempts("hangs"), [2], "the interrupted step ran again as attempt 2");
    assert!(second.attempts("first").is_empty(), "the completed step did not");
    assert_eq!(state.context["hung_attempt"], 2);
    engine2.shutdown().await;

    // A third start finds nothing to do, and the attempt numbers stayed committed.
    let third = Runs::new();
    let engine3 = engine(&db(&dir), build(&third)).await;
    assert_eq!(engine3.get_state(id).await.unwrap().status, Status::Completed);
    assert!(engine3.list_running("hang").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_crash_never_reuses_an_attempt_number() {
    let dir = tempfile::tempdir().unwrap();
    let build = |runs: &Arc<Runs>| {
        let r = Arc::clone(runs);
        Workflow::new("stuck")
            .step_with(
                "stuck",
                move |ctx: Context| {
                    r.record(&ctx);
                    async move {
                        if ctx.attempt() < 3 {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, StepError>(())
                    }
                },
                Step::opts().timeout("infinity"),
            )
            .build()
            .unwrap()
    };
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), build(&runs)).await;
    let id = engine1.start("stuck", json!({})).await.unwrap();
    eventually(&engine1, id, "running", |s| !s.running.is_empty()).await;
    engine1.shutdown().await;
    // The second engine starts attempt 2 and "crashes" (is abandoned) at once.
    let engine2 = engine(&db(&dir), build(&runs)).await;
    until("attempt 2 started", || runs.attempts("stuck").len() == 2).await;
    engine2.shutdown().await;
    let engine3 = engine(&db(&dir), build(&runs)).await;
    assert_eq!(engine3.wait(id).await.unwrap().status, Status::Completed);
    assert_eq!(runs.attempts("stuck"), [1, 2, 3], "each start of the step had its own attempt number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_await_timeout_fires_at_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let build = |runs: &Arc<Runs>| {
        let r = Arc::clone(runs);
        Workflow::new("deadline")
            .step_with(
                "wait",
                move |ctx: Context| {
                    r.record(&ctx);
                    std::future::ready(Ok::<Outcome, StepError>(Outcome::await_for("300ms")))
                },
                Step::opts()
                    .await_approval(true)
                    .on_timeout(|_ctx: Context| async { Ok::<_, StepError>(json!({ "timed_out": true })) }),
            )
            .build()
            .unwrap()
    };
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), build(&runs)).await;
    let id = engine1.start("deadline", json!({})).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    let due = engine1.get_state(id).await.unwrap().started_at + Duration::from_millis(300);
    engine1.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let engine2 = engine(&db(&dir), build(&Runs::new())).await;
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["timed_out"], true, "the await timed out and `on_timeout` ran");
    let ended = state.ended_at.expect("ended");
    assert!(ended >= due, "not before the original due time ({ended} < {due})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_keeps_its_due_time_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let build = |runs: &Arc<Runs>| {
        let r = Arc::clone(runs);
        Workflow::new("nap")
            .step("nap", move |ctx: Context| {
                r.record(&ctx);
                let now = unix_millis();
                std::future::ready(Ok::<_, StepError>(if ctx.attempt() == 1 {
                    Outcome::snooze("700ms")
                } else {
                    json!({ "woke_at": now }).into()
                }))
            })
            .build()
            .unwrap()
    };
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), build(&runs)).await;
    let id = engine1.start("nap", json!({})).await.unwrap();
    eventually(&engine1, id, "snoozed", |s| s.steps.iter().any(|s| s.status == StepStatus::Snoozed)).await;
    let snoozed_at = engine1.get_state(id).await.unwrap().started_at;
    engine1.shutdown().await;

    let later = Runs::new();
    let engine2 = engine(&db(&dir), build(&later)).await;
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(later.attempts("nap"), [2], "the snoozed step ran again in the new engine");
    let woke = state.context["woke_at"].as_i64().unwrap();
    assert!(
        woke >= snoozed_at.timestamp_millis() + 700,
        "it woke at its original due time or later, not at once ({} ms after the start)",
        woke - snoozed_at.timestamp_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compatible_new_version_takes_over_unfinished_executions() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = Runs::new();
    let engine1 = engine(&db(&dir), approval_flow(&v1, |w| w)).await;
    let id = engine1.start("approval", json!({})).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    let old_version = engine1.definition("approval").unwrap().version().to_owned();
    engine1.shutdown().await;

    // Version 2 declares a new first step (so every step index moves), adds a
    // step after `finish`, and changes a tag and a description.
    let v2 = Runs::new();
    let build_v2 = |runs: &Arc<Runs>| {
        Workflow::new("approval")
            .step("audit_start", runs.step())
            .step("create", runs.step())
            .step_with("approve", runs.approval(), Step::opts().after("create").description("a person approves"))
            .step_with("finish", runs.step(), Step::opts().after("approve"))
            .step_with("notify", runs.step(), Step::opts().after("finish"))
            .tags(["v2"])
            .build()
            .unwrap()
    };
    let def2 = build_v2(&v2);
    let new_version = def2.version().to_owned();
    assert_ne!(old_version, new_version);
    let engine2 = engine(&db(&dir), def2).await;
    let state = engine2.get_state(id).await.unwrap();
    assert_eq!(state.parked, None, "a compatible change does not park the execution");
    assert_eq!(state.status, Status::Awaiting);
    assert_eq!(state.version, new_version, "the execution moved to the new version");
    eventually(&engine2, id, "the added root step completed", |s| {
        s.steps.iter().any(|s| s.name == "audit_start" && s.status == StepStatus::Completed)
    })
    .await;
    engine2.shutdown().await;

    // The move is durable: a third engine replays the rewritten journal directly.
    let engine3 = engine(&db(&dir), build_v2(&v2)).await;
    assert_eq!(engine3.get_state(id).await.unwrap().status, Status::Awaiting);
    engine3.resume(id, json!({ "approved": true })).await.unwrap();
    let state = engine3.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert!(v2.attempts("create").is_empty(), "the completed step did not run again");
    assert_eq!(v2.attempts("finish"), [1]);
    assert_eq!(v2.attempts("notify"), [1], "the added step ran");
    assert_eq!(v2.attempts("audit_start").len(), 1, "the added root step ran once");
    assert_eq!(state.context["create"], 1, "outputs from before the move are kept");
    let store = SqliteStore::open_read_only(db(&dir)).await.unwrap();
    let versions = store.definition_version("approval", &old_version).await.unwrap();
    assert!(versions.is_some(), "the old version's snapshot is still in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_new_version_parks_executions_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), approval_flow(&runs, |w| w)).await;
    let id = engine1.start("approval", json!({})).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine1.shutdown().await;

    // `finish` is gone and `approve` got retries.
    let changed = Workflow::new("approval")
        .step("create", runs.step())
        .step_with("approve", runs.approval(), Step::opts().after("create").max_retries(5))
        .build()
        .unwrap();
    let engine2 = engine(&db(&dir), changed).await;
    let state = engine2.get_state(id).await.unwrap();
    let reason = state.parked.clone().expect("the execution is parked");
    assert!(reason.contains("step `finish` was removed"), "{reason}");
    assert!(reason.contains("step `approve` changed `max_retries` (3 → 5)"), "{reason}");
    assert!(engine2.list_running("approval").await.unwrap().is_empty(), "a parked execution does not run");
    match engine2.wait(id).await {
        Err(EngineError::InvalidState { reason, .. }) => assert!(reason.contains("parked"), "{reason}"),
        other => panic!("waiting on a parked execution is an error, got {other:?}"),
    }
    let err = engine2.resume(id, json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownExecution(_)), "{err}");
    engine2.shutdown().await;

    // Parking left it untouched: the original definition resumes it.
    let back = Runs::new();
    let engine3 = engine(&db(&dir), approval_flow(&back, |w| w)).await;
    assert_eq!(engine3.get_state(id).await.unwrap().parked, None);
    engine3.resume(id, json!({})).await.unwrap();
    assert_eq!(engine3.wait(id).await.unwrap().status, Status::Completed);
    assert_eq!(back.attempts("finish"), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_group_parks_the_steps_that_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let build = |runs: &Arc<Runs>, extra: bool| {
        let mut wf = Workflow::new("groups").step("a", runs.approval()).step_with(
            "b",
            runs.step(),
            Step::opts().after("a").group("g"),
        );
        if extra {
            wf = wf.step_with("c", runs.step(), Step::opts().after("a").group("g"));
        }
        wf.step_with("join", runs.step(), Step::opts().after_group("g")).build().unwrap()
    };
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), build(&runs, false)).await;
    let id = engine1.start("groups", json!({})).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine1.shutdown().await;
    let engine2 = engine(&db(&dir), build(&runs, true)).await;
    let reason = engine2.get_state(id).await.unwrap().parked.expect("parked");
    assert!(reason.contains("step `join` waits for group `g`, whose steps changed"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_workflow_parks_its_executions() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let engine1 = engine(&db(&dir), approval_flow(&runs, |w| w)).await;
    let id = engine1.start("approval", json!({})).await.unwrap();
    eventually(&engine1, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine1.shutdown().await;
    let other = Workflow::new("other").step("x", runs.step()).build().unwrap();
    let engine2 = engine(&db(&dir), other).await;
    let reason = engine2.get_state(id).await.unwrap().parked.expect("parked");
    assert!(reason.contains("workflow `approval` is not registered"), "{reason}");
}

#[tokio::test]
async fn store_urls_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!("sqlite://{}?synchronous=sometimes", db(&dir).display());
    let err = Engine::builder().store_url(bad).build().await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::InvalidUrl { .. })), "{err}");
    assert!(err.to_string().contains("`sometimes`"), "{err}");
    assert!(!db(&dir).exists(), "a rejected URL creates no file");

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database, ".repeat(64)).unwrap();
    let err = Engine::builder().store_url(url(&notes)).build().await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::Foreign { .. })), "{err}");
    assert!(err.to_string().contains("notes.txt"), "the error names the file: {err}");

    let err = Engine::builder().store_url("mysql://localhost/db").build().await.unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "the error lists the accepted forms: {err}");

    let normal = format!("sqlite://{}?synchronous=normal", dir.path().join("normal.db").display());
    let engine = Engine::builder().store_url(normal).build().await.expect("`synchronous=normal` is accepted");
    engine.shutdown().await;
}
