//! Signals and queries, as users see them:
//!
//! - a signal sent before anyone waits is buffered, in order, and received by the
//!   step that waits for it later; one sent during the wait completes the step
//!   (its await timeout disarmed); a parked step can run again on a signal and
//!   read it; a running step reads signals in the order they were sent;
//! - signals are visible in `get_state` until consumed, and in telemetry;
//! - bad signals are typed errors naming the culprit;
//! - on SQLite, a signal survives a crash: buffered, or taken by a running step
//!   (which receives it again in its next attempt; a step never sees a signal
//!   whose taking was not committed);
//! - on PostgreSQL, a signal sent from one node reaches an execution another node
//!   runs (parked or running), and a query on one node answers for an execution
//!   another node runs;
//! - queries answer from the current state and name the known ones when asked
//!   for an unknown one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::{ClusterOptions, SqliteStore, Write};
use sagaflow::{AwaitRequest, EngineError, ExecutionState, StepStatus, WorkflowDef, kinds};

use crate::faults::FaultStore;

async fn until(engine: &Engine, id: ExecutionId, what: &str, pred: impl Fn(&ExecutionState) -> bool) -> ExecutionState {
    for _ in 0..2000 {
        let state = engine.get_state(id).await.expect("state");
        if pred(&state) {
            return state;
        }
        assert!(!state.status.is_terminal(), "{what}: the execution ended first: {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: never; the state is {:?}", engine.get_state(id).await);
}

/// `wait` with a deadline, so a lost signal fails the test instead of hanging it.
async fn wait(engine: &Engine, id: ExecutionId) -> ExecutionState {
    tokio::time::timeout(Duration::from_secs(30), engine.wait(id)).await.expect("the execution ends").expect("wait")
}

/// `wait` on tokio's paused clock, which skips ahead through timeouts of days.
async fn finish(engine: &Engine, id: ExecutionId) -> ExecutionState {
    let month = Duration::from_secs(30 * 24 * 3600);
    tokio::time::timeout(month, engine.wait(id)).await.expect("the execution ends").expect("wait")
}

/// `prepare` (sleeps 5 s) → `approve` (awaits the signal `approval`, at most
/// a day) → `finish` (reads who approved).
fn approval_flow() -> WorkflowDef {
    Workflow::new("approval")
        .step("prepare", |_ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, StepError>(json!({ "prepared": true }))
        })
        .step_with(
            "approve",
            |_ctx: Context| async {
                Ok::<_, StepError>(Outcome::await_with(AwaitRequest::signal("approval").with_timeout("24h")))
            },
            Step::opts().after("prepare"),
        )
        .step_with(
            "finish",
            |ctx: Context| async move {
                let by: String = ctx.get("by")?;
                Ok::<_, StepError>(json!({ "approved_by": by }))
            },
            Step::opts().after("approve"),
        )
        .query("waiting_for", |s: &ExecutionState| {
            s.awaiting.iter().filter_map(|a| a.signal.clone()).collect::<Vec<_>>()
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_signal_sent_before_the_wait_is_buffered_and_received_when_the_step_waits() {
    let engine = Engine::builder().register(approval_flow()).build().await.unwrap();
    let mut events = engine.subscribe();
    let id = engine.start("approval", json!({})).await.unwrap();
    engine.signal(id, "approval", json!({ "by": "ada", "approved": true })).await.unwrap();
    engine.signal(id, "approval", json!({ "by": "grace" })).await.unwrap();
    let state = engine.get_state(id).await.unwrap();
    let buffered: Vec<&serde_json::Value> = state.buffered_signals("approval").map(|s| &s.payload).collect();
    assert_eq!(buffered, [&json!({ "by": "ada", "approved": true }), &json!({ "by": "grace" })], "in order");
    assert_eq!(state.step("prepare").unwrap().status, StepStatus::Running, "nobody waits yet");

    let done = finish(&engine, id).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["approved_by"], "ada", "the oldest signal is received first");
    assert_eq!(done.step("approve").unwrap().attempts, 1);
    assert_eq!(done.signals.len(), 1, "the second stays buffered: {:?}", done.signals);
    assert_eq!(done.signals[0].payload["by"], "grace");
    assert!(done.duration < Duration::from_secs(120), "no timeout was waited for: {:?}", done.duration);

    let mut seen = Vec::new();
    while let Some(e) = events.try_recv() {
        if let sagaflow::Event::SignalReceive { signal_name, step_name, .. } = e {
            seen.push((signal_name.to_string(), step_name.map(|s| s.to_string())));
        }
    }
    assert_eq!(
        seen,
        [
            ("approval".to_owned(), None),
            ("approval".to_owned(), None),
            ("approval".to_owned(), Some("approve".to_owned()))
        ],
        "two arrivals buffered, then the first handed to the step that waits"
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_sent_during_the_wait_completes_the_step_and_disarms_its_timeout() {
    let engine = Engine::builder().register(approval_flow()).build().await.unwrap();
    let id = engine.start("approval", json!({})).await.unwrap();
    let state = until(&engine, id, "awaiting", |s| s.status == Status::Awaiting).await;
    assert_eq!(state.awaiting[0].signal.as_deref(), Some("approval"), "get_state names the signal awaited");
    assert!(state.awaiting[0].timeout_at.is_some());
    assert_eq!(engine.query(id, "waiting_for").await.unwrap(), json!(["approval"]));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    engine.signal(id, "approval", json!({ "by": "ada" })).await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["approved_by"], "ada");
    assert_eq!(done.step("approve").unwrap().status, StepStatus::Completed);
    assert!(done.signals.is_empty(), "consumed");
    assert!(done.duration < Duration::from_secs(2 * 3600), "the day-long timeout never fired: {:?}", done.duration);
    assert_eq!(engine.query(id, "waiting_for").await.unwrap(), json!([]), "an ended execution answers queries");
}

#[tokio::test(start_paused = true)]
async fn an_await_for_a_signal_that_never_comes_times_out() {
    let engine = Engine::builder().register(approval_flow()).build().await.unwrap();
    let id = engine.start("approval", json!({})).await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.status, Status::Failed);
    let failure = done.failure.expect("a failure");
    assert_eq!(failure.step.as_deref(), Some("approve"));
    assert_eq!(failure.error.kind(), kinds::AWAIT_TIMEOUT);
    // A signal to an ended execution is refused, and says why.
    let late = engine.signal(id, "approval", json!({})).await.unwrap_err();
    assert!(
        matches!(&late, EngineError::InvalidState { status: Status::Failed, reason, .. } if reason == "it has ended"),
        "{late:?}"
    );
}

/// A step that reads the signal `approval` without holding an attempt while it
/// waits: when there is none, it parks until one arrives and runs again.
/// The attempts of `decide` and what each read.
type Decisions = Arc<Mutex<Vec<(u32, Option<bool>)>>>;

fn rerun_flow(runs: Decisions) -> WorkflowDef {
    Workflow::new("rerun")
        .step("decide", move |ctx: Context| {
            let runs = Arc::clone(&runs);
            async move {
                let decision = ctx.try_signal::<bool>("approval").await?;
                runs.lock().unwrap().push((ctx.attempt(), decision));
                Ok::<_, StepError>(match decision {
                    Some(approved) => Outcome::from(json!({ "approved": approved })),
                    None => Outcome::rerun_on_signal("approval"),
                })
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_step_parked_for_a_signal_runs_again_and_reads_it() {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder().register(rerun_flow(Arc::clone(&runs))).build().await.unwrap();
    let id = engine.start("rerun", json!({})).await.unwrap();
    let state = until(&engine, id, "parked", |s| s.status == Status::Awaiting).await;
    assert!(state.running.is_empty(), "no attempt runs while it waits");
    engine.signal(id, "approval", true).await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.context["approved"], true);
    assert_eq!(*runs.lock().unwrap(), [(1, None), (2, Some(true))]);
    assert_eq!(done.step("decide").unwrap().attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn resume_overrides_a_wait_for_a_signal() {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder().register(rerun_flow(Arc::clone(&runs))).build().await.unwrap();
    let id = engine.start("rerun", json!({})).await.unwrap();
    until(&engine, id, "parked", |s| s.status == Status::Awaiting).await;
    engine.resume(id, json!({ "approved": "by hand" })).await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.context["approved"], "by hand", "the resume context is the step's output");
    assert_eq!(*runs.lock().unwrap(), [(1, None)], "the step did not run again");
}

#[tokio::test(start_paused = true)]
async fn a_running_step_reads_signals_in_the_order_they_were_sent() {
    let def = Workflow::new("collect")
        .step_with(
            "collect",
            |ctx: Context| async move {
                let mut items = Vec::new();
                for _ in 0..3 {
                    items.push(ctx.signal::<u32>("item").await?);
                }
                let end: String = ctx.signal("end").timeout("1h").await?;
                Ok::<_, StepError>(json!({ "items": items, "end": end }))
            },
            Step::opts().timeout("infinity"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let mut events = engine.subscribe();
    let id = engine.start("collect", json!({})).await.unwrap();
    engine.signal(id, "item", 1).await.unwrap();
    until(&engine, id, "the first taken", |s| s.signals.iter().any(|p| p.step.as_deref() == Some("collect"))).await;
    engine.signal(id, "item", 2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    engine.signal(id, "item", 3).await.unwrap();
    engine.signal(id, "end", "done").await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.context["items"], json!([1, 2, 3]));
    assert_eq!(done.context["end"], "done");
    assert!(done.signals.is_empty(), "the step consumed them as it ended");
    let taken = std::iter::from_fn(|| events.try_recv())
        .filter(|e| matches!(e, sagaflow::Event::SignalTake { step_name, .. } if &**step_name == "collect"))
        .count();
    assert_eq!(taken, 4, "telemetry shows each signal the running step took");
}

#[tokio::test(start_paused = true)]
async fn a_running_step_waiting_for_a_signal_times_out_or_stops_on_cancel() {
    let def = Workflow::new("patient")
        .step_with(
            "wait",
            |ctx: Context| async move {
                let got: Result<u32, StepError> = ctx.signal("never").timeout("10m").await;
                let error = got.unwrap_err();
                assert_eq!(error.kind(), kinds::SIGNAL_TIMEOUT);
                assert_eq!(error.message(), "no signal `never` arrived within 10m (step `wait`)");
                // Waits again, until the execution is cancelled.
                ctx.signal::<u32>("never").await?;
                Ok::<_, StepError>(())
            },
            Step::opts().timeout("infinity"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("patient", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Running);
    engine.cancel(id, CancelOptions::reason("enough")).await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.status, Status::Cancelled);
    let step = done.step("wait").unwrap();
    assert_eq!(step.error.as_ref().map(|e| e.kind()), Some(kinds::CANCELLED), "{step:?}");
}

#[tokio::test(start_paused = true)]
async fn a_payload_of_the_wrong_type_fails_the_step_for_good_naming_the_signal() {
    let def = Workflow::new("typed")
        .step("read", |ctx: Context| async move {
            let n: u32 = ctx.signal("count").await?;
            Ok::<_, StepError>(json!({ "n": n }))
        })
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("typed", json!({})).await.unwrap();
    engine.signal(id, "count", "seven").await.unwrap();
    let done = finish(&engine, id).await;
    assert_eq!(done.status, Status::Failed);
    let error = done.failure.clone().unwrap().error;
    assert_eq!(error.kind(), kinds::INVALID_TYPE);
    assert!(error.message().starts_with("the payload of signal `count` (step `read`) is not a `u32`"), "{error}");
    assert_eq!(done.step("read").unwrap().attempts, 1, "not retried: the payload will not change");
}

#[tokio::test(start_paused = true)]
async fn bad_signals_are_typed_errors_that_name_the_culprit() {
    let engine = Engine::builder().register(approval_flow()).build().await.unwrap();
    let id = engine.start("approval", json!({})).await.unwrap();
    let empty = engine.signal(id, " ", json!({})).await.unwrap_err();
    assert!(matches!(&empty, EngineError::InvalidSignal { name, .. } if name == " "), "{empty:?}");
    assert_eq!(empty.to_string(), format!("cannot send signal ` ` to execution {id}: a signal name cannot be empty"));
    let mut keys = std::collections::HashMap::new();
    keys.insert((1, 2), "not a JSON object key");
    let unserializable = engine.signal(id, "approval", keys).await.unwrap_err();
    assert!(
        matches!(&unserializable, EngineError::InvalidSignal { reason, .. } if reason.starts_with("the payload does not serialize")),
        "{unserializable:?}"
    );
    let unknown = ExecutionId::new();
    assert!(
        matches!(engine.signal(unknown, "approval", 1).await, Err(EngineError::UnknownExecution(x)) if x == unknown)
    );
    let later = engine.schedule_execution("approval", json!({}), sagaflow::StartAt::delay("1h")).await.unwrap();
    let early = engine.signal(later, "approval", 1).await.unwrap_err();
    assert!(matches!(&early, EngineError::InvalidState { status: Status::Pending, .. }), "{early:?}");
    assert!(engine.get_state(id).await.unwrap().signals.is_empty(), "nothing refused was delivered");
}

#[tokio::test(start_paused = true)]
async fn a_signal_to_a_paused_execution_completes_the_wait_and_the_next_step_starts_on_resume() {
    let engine = Engine::builder().register(approval_flow()).build().await.unwrap();
    let id = engine.start("approval", json!({})).await.unwrap();
    until(&engine, id, "awaiting", |s| s.status == Status::Awaiting).await;
    engine.pause(id).await.unwrap();
    engine.signal(id, "approval", json!({ "by": "ada" })).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let state = engine.get_state(id).await.unwrap();
    assert_eq!(state.status, Status::Paused);
    assert_eq!(state.step("approve").unwrap().status, StepStatus::Completed);
    assert_eq!(state.step("finish").unwrap().status, StepStatus::Ready, "nothing starts while paused");
    engine.resume(id, json!({})).await.unwrap();
    assert_eq!(finish(&engine, id).await.context["approved_by"], "ada");
}

/// Queries: `status` counts steps; `boom` panics; `label` is a string.
fn queried() -> WorkflowDef {
    Workflow::new("queried")
        .step("hold", |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_signal("go")) })
        .step_with("after", |_ctx: Context| async { Ok::<_, StepError>(()) }, Step::opts().after("hold"))
        .query(
            "status",
            |s: &ExecutionState| json!({ "status": s.status, "done": s.progress.done, "total": s.progress.total }),
        )
        .query("boom", |_s: &ExecutionState| -> u32 { panic!("the query broke") })
        .query("label", |s: &ExecutionState| format!("{} is {}", s.workflow, s.status))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_query_answers_from_the_current_state_without_changing_it() {
    let engine = Engine::builder().register(queried()).build().await.unwrap();
    let id = engine.start("queried", json!({})).await.unwrap();
    until(&engine, id, "awaiting", |s| s.status == Status::Awaiting).await;
    let before = engine.get_state(id).await.unwrap();
    assert_eq!(engine.query(id, "status").await.unwrap(), json!({ "status": "awaiting", "done": 0, "total": 2 }));
    assert_eq!(engine.query_as::<String>(id, "label").await.unwrap(), "queried is awaiting");
    let mut after = engine.get_state(id).await.unwrap();
    after.duration = before.duration;
    assert_eq!(after, before, "queries change nothing");

    let unknown = engine.query(id, "stats").await.unwrap_err();
    match &unknown {
        EngineError::UnknownQuery { workflow, name, suggestion, known } => {
            assert_eq!((workflow.as_str(), name.as_str()), ("queried", "stats"));
            assert_eq!(suggestion.as_deref(), Some("status"));
            assert_eq!(known, &["boom", "label", "status"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        unknown.to_string(),
        "workflow `queried` has no query `stats` (did you mean `status`?); its queries: `boom`, `label`, `status`"
    );
    let failed = engine.query(id, "boom").await.unwrap_err();
    assert!(
        matches!(&failed, EngineError::QueryFailed { name, reason, .. } if name == "boom" && reason.contains("the query broke")),
        "{failed:?}"
    );
    let wrong = engine.query_as::<u32>(id, "label").await.unwrap_err();
    assert!(
        matches!(&wrong, EngineError::QueryFailed { reason, .. } if reason.starts_with("its answer `\"queried is awaiting\"` is not a `u32`")),
        "{wrong:?}"
    );
    assert!(matches!(engine.query(ExecutionId::new(), "status").await, Err(EngineError::UnknownExecution(_))));

    engine.signal(id, "go", json!({})).await.unwrap();
    finish(&engine, id).await;
    assert_eq!(engine.query(id, "status").await.unwrap(), json!({ "status": "completed", "done": 2, "total": 2 }));
}

#[test]
fn query_names_are_checked_when_the_workflow_is_built() {
    let build = |a: &str, b: &str| {
        Workflow::new("w")
            .step("s", |_ctx: Context| async { Ok::<_, StepError>(()) })
            .query(a, |s: &ExecutionState| s.progress.done)
            .query(b, |s: &ExecutionState| s.progress.total)
            .build()
    };
    assert_eq!(
        build("done", "done").unwrap_err(),
        sagaflow::BuildError::DuplicateQuery { workflow: "w".into(), query: "done".into() }
    );
    assert_eq!(
        build("done", "").unwrap_err().to_string(),
        "invalid `query` on workflow `w`: a query name cannot be empty"
    );
    assert_eq!(build("done", "total").unwrap().queries().collect::<Vec<_>>(), ["done", "total"]);
}

// ----- SQLite: crashes -----

/// Runs of the step that reads a signal: `(generation, attempt, payload)`.
#[derive(Default)]
struct Seen {
    generation: AtomicU32,
    runs: Mutex<Vec<(u32, u32, u32)>>,
}

/// `work` takes the signal `n` while it runs; its first attempt then hangs.
fn taker(seen: &Arc<Seen>) -> WorkflowDef {
    let seen = Arc::clone(seen);
    Workflow::new("taker")
        .step_with(
            "work",
            move |ctx: Context| {
                let seen = Arc::clone(&seen);
                async move {
                    let n: u32 = ctx.signal("n").await?;
                    let generation = seen.generation.load(Ordering::SeqCst);
                    seen.runs.lock().unwrap().push((generation, ctx.attempt(), n));
                    if ctx.attempt() == 1 {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, StepError>(json!({ "n": n }))
                }
            },
            Step::opts().timeout("infinity"),
        )
        .build()
        .unwrap()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("signals.db").display())
}

async fn faulty(dir: &tempfile::TempDir) -> Arc<FaultStore> {
    FaultStore::new(SqliteStore::open(dir.path().join("signals.db")).await.unwrap(), Duration::ZERO)
}

async fn until_crashed(store: &FaultStore) {
    for _ in 0..1000 {
        if store.crashed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store never crashed");
}

fn is_event(w: &Write, name: &str) -> bool {
    matches!(w, Write::Event(e) if e.event.contains(&format!(r#""event":"{name}""#)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_buffered_signal_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let flow = |release: Arc<tokio::sync::Notify>| {
        Workflow::new("approval")
            .step_with(
                "prepare",
                move |ctx: Context| {
                    let release = Arc::clone(&release);
                    async move {
                        if ctx.attempt() == 1 {
                            release.notified().await;
                        }
                        Ok::<_, StepError>(json!({ "prepared": ctx.attempt() }))
                    }
                },
                Step::opts().timeout("infinity"),
            )
            .step_with(
                "approve",
                |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_signal("approval")) },
                Step::opts().after("prepare"),
            )
            .build()
            .unwrap()
    };
    let engine = Engine::builder().store_arc(store.clone()).register(flow(Arc::clone(&release))).build().await.unwrap();
    let id = engine.start("approval", json!({})).await.unwrap();
    until(&engine, id, "prepare runs", |s| !s.running.is_empty()).await;
    engine.signal(id, "approval", json!({ "by": "ada" })).await.unwrap();
    // The process dies once `prepare`'s completion is committed: `approve`
    // may have started, but what it did is lost.
    store.crash_after(|w| is_event(w, "step_finished"));
    release.notify_one();
    until_crashed(&store).await;
    drop(engine);

    let engine = Engine::builder()
        .store_url(sqlite_url(&dir))
        .register(flow(Arc::new(tokio::sync::Notify::new())))
        .build()
        .await
        .unwrap();
    let state = engine.get_state(id).await.unwrap();
    assert!(state.signals.iter().any(|s| s.payload["by"] == "ada"), "the signal is in the recovered state: {state:?}");
    let done = wait(&engine, id).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["by"], "ada");
    assert_eq!(done.context["prepared"], 1, "the completed step did not run again");
    assert!(done.signals.is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_step_never_sees_a_signal_whose_taking_was_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir).await;
    let seen = Arc::new(Seen { generation: AtomicU32::new(1), ..Default::default() });
    let engine = Engine::builder().store_arc(store.clone()).register(taker(&seen)).build().await.unwrap();
    let id = engine.start("taker", json!({})).await.unwrap();
    until(&engine, id, "work runs", |s| !s.running.is_empty()).await;
    // The process dies right after committing the step's taking of the signal,
    // before it learns that the commit succeeded.
    store.crash_after(|w| is_event(w, "signal_taken"));
    // The signal may be committed in the batch that crashes, so its call may
    // never be answered: it is not awaited.
    let sender = engine.clone();
    let sent = tokio::spawn(async move { sender.signal(id, "n", 7).await });
    until_crashed(&store).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(seen.runs.lock().unwrap().is_empty(), "the step waited for the commit, which never answered");
    sent.abort();
    drop(engine);

    seen.generation.store(2, Ordering::SeqCst);
    let engine = Engine::builder().store_url(sqlite_url(&dir)).register(taker(&seen)).build().await.unwrap();
    let done = wait(&engine, id).await;
    assert_eq!(done.context["n"], 7);
    assert_eq!(*seen.runs.lock().unwrap(), [(2, 2, 7)], "the next attempt received it, from the journal");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_signal_a_step_took_is_received_again_by_the_attempt_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir).await;
    let seen = Arc::new(Seen { generation: AtomicU32::new(1), ..Default::default() });
    let engine = Engine::builder().store_arc(store.clone()).register(taker(&seen)).build().await.unwrap();
    let id = engine.start("taker", json!({})).await.unwrap();
    engine.signal(id, "n", 7).await.unwrap();
    for _ in 0..1000 {
        if !seen.runs.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.runs.lock().unwrap(), [(1, 1, 7)], "attempt 1 received it, then hung");
    // The next write is the last: a signal for nobody, committed as the process dies.
    store.crash_after(|w| is_event(w, "signalled"));
    let late = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.signal(id, "later", "unread").await })
    };
    until_crashed(&store).await;
    late.abort();
    drop(engine);

    seen.generation.store(2, Ordering::SeqCst);
    let engine = Engine::builder().store_url(sqlite_url(&dir)).register(taker(&seen)).build().await.unwrap();
    let done = wait(&engine, id).await;
    assert_eq!(done.context["n"], 7);
    assert_eq!(
        *seen.runs.lock().unwrap(),
        [(1, 1, 7), (2, 2, 7)],
        "the signal stayed with the step until it ended: the attempt after the crash received it again"
    );
    let left: Vec<(&str, &serde_json::Value)> = done.signals.iter().map(|s| (s.name.as_str(), &s.payload)).collect();
    assert_eq!(left, [("later", &json!("unread"))], "the committed signal nobody read survived too");
    engine.shutdown().await;
}

// ----- PostgreSQL: several nodes -----

fn cluster_flow(seen: &Arc<Mutex<Vec<String>>>) -> Vec<WorkflowDef> {
    let parked = Workflow::new("parked_approval")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_signal("approval")) },
            Step::opts().await_approval(true),
        )
        .step_with(
            "finish",
            |ctx: Context| async move { Ok::<_, StepError>(json!({ "finished_by": ctx.get::<String>("by")? })) },
            Step::opts().after("approve"),
        )
        .query("progress", |s: &ExecutionState| {
            json!({
                "done": s.progress.done,
                "waiting_for": s.awaiting.iter().filter_map(|a| a.signal.clone()).collect::<Vec<_>>(),
            })
        })
        .build()
        .unwrap();
    let seen = Arc::clone(seen);
    let running = Workflow::new("running_reader")
        .step_with(
            "read",
            move |ctx: Context| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(format!("started {}", ctx.attempt()));
                    let word: String = ctx.signal("word").await?;
                    seen.lock().unwrap().push(format!("read {word}"));
                    Ok::<_, StepError>(json!({ "word": word }))
                }
            },
            Step::opts().timeout("infinity"),
        )
        .query("reading", |s: &ExecutionState| s.running.clone())
        .build()
        .unwrap();
    vec![parked, running]
}

async fn node(url: &str, defs: Vec<WorkflowDef>, options: ClusterOptions) -> Engine {
    let mut builder = Engine::builder().store_url(url).cluster(options);
    for def in defs {
        builder = builder.register(def);
    }
    builder.build().await.expect("a node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_signal_from_one_node_completes_a_wait_parked_by_another() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = ClusterOptions::default().park_after(Duration::from_millis(100)).poll(Duration::from_millis(100));
    let runner = node(&schema.store_url(), cluster_flow(&seen), options).await;
    let client = node(&schema.store_url(), cluster_flow(&seen), ClusterOptions::default().capacity(0)).await;
    let id = client.start("parked_approval", json!({})).await.unwrap();
    let state = until(&client, id, "awaiting on the runner", |s| s.status == Status::Awaiting).await;
    assert_eq!(state.awaiting[0].signal.as_deref(), Some("approval"), "the client sees the wait from the journal");
    // Parked in the store: held by no node.
    let db = schema.client().await;
    let sql = format!("SELECT parked AND holder IS NULL FROM {}.executions WHERE id = $1", schema.name);
    let mut parked = false;
    for _ in 0..500 {
        if db.query_opt(&sql, &[&id.as_uuid()]).await.unwrap().is_some_and(|r| r.get::<_, bool>(0)) {
            parked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(parked, "the waiting execution is parked in the store");
    assert_eq!(
        client.query(id, "progress").await.unwrap(),
        json!({ "done": 0, "waiting_for": ["approval"] }),
        "a query on the client answers for the parked execution"
    );
    client.signal(id, "approval", json!({ "by": "ada" })).await.expect("the signal is carried out and committed");
    let done = wait(&client, id).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["finished_by"], "ada");
    assert!(done.signals.is_empty());
    client.shutdown().await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_step_running_on_one_node_reads_a_signal_sent_from_another() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let runner = node(&schema.store_url(), cluster_flow(&seen), options).await;
    let client = node(&schema.store_url(), cluster_flow(&seen), ClusterOptions::default().capacity(0)).await;
    let id = client.start("running_reader", json!({})).await.unwrap();
    until(&client, id, "the step runs on the runner", |s| s.running == ["read"]).await;
    assert_eq!(
        client.query(id, "reading").await.unwrap(),
        json!(["read"]),
        "a query on the client answers for the execution the runner runs"
    );
    client.signal(id, "word", "hello").await.expect("the signal is carried out and committed");
    let done = wait(&client, id).await;
    assert_eq!(done.context["word"], "hello");
    assert_eq!(*seen.lock().unwrap(), ["started 1", "read hello"], "the running attempt received it");
    let unknown = client.query(id, "redaing").await.unwrap_err();
    assert!(matches!(&unknown, EngineError::UnknownQuery { suggestion: Some(s), .. } if s == "reading"), "{unknown:?}");
    client.shutdown().await;
    runner.shutdown().await;
}

// ----- the dashboard -----

/// One HTTP/1.1 GET; returns the status and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    (head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line"), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_an_execution_waits_for_and_its_signals() {
    let engine = Engine::builder().register(queried()).build().await.unwrap();
    let id = engine.start("queried", json!({})).await.unwrap();
    engine.signal(id, "unrelated", json!({ "note": "for later" })).await.unwrap();
    until(&engine, id, "awaiting", |s| s.status == Status::Awaiting).await;
    let app = axum::Router::new().nest("/workflows", sagaflow::dashboard::router(engine.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = http_get(addr, &format!("/workflows/api/executions/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["state"]["awaiting"][0]["signal"], "go");
    assert_eq!(
        state["state"]["signals"],
        json!([{ "name": "unrelated", "payload": { "note": "for later" }, "received_at": state["state"]["signals"][0]["received_at"] }])
    );
    let (status, page) = http_get(addr, &format!("/workflows/executions/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<pre id="waiting">"#) && page.contains(r#"<pre id="signals">"#), "the page shows both");
    engine.shutdown().await;
}
