//! Acknowledged calls mean committed, and errors have a class — driven by the
//! fault-injecting store (`faults.rs`) on SQLite, and by engines sharing the
//! local PostgreSQL for what only a cluster does:
//!
//! - a write the store refuses for good fails only its execution (the call that
//!   made it gets a typed error; every other execution goes on);
//! - transient failures are retried; a commit whose answer was lost is retried
//!   without writing anything twice;
//! - a call that cannot commit in time fails with a typed timeout;
//! - a call whose effect the store dropped (another node holds the execution)
//!   does not answer `Ok`;
//! - replaying a dead letter twice at once starts one execution;
//! - on a cluster: a cancel sent before any node claimed an execution keeps its
//!   first step from running; an execution that waits is parked in the store and
//!   finished by whichever node claims it when it is resumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::{ClusterOptions, SqliteStore, Store, StoreError, Write};
use sagaflow::{EngineError, StepStatus};

use crate::faults::FaultStore;

fn noop() -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + Clone + 'static {
    |_ctx: Context| std::future::ready(Ok(Outcome::Done))
}

/// `a → b`, where `b` outputs `{"b": <input "tag">}`.
fn pair() -> sagaflow::WorkflowDef {
    Workflow::new("pair")
        .step("a", noop())
        .step_with(
            "b",
            |ctx: Context| async move {
                let tag: String = ctx.get_or("tag", String::new());
                Ok::<_, StepError>(json!({ "b": tag }))
            },
            Step::opts().after("a"),
        )
        .build()
        .unwrap()
}

async fn sqlite_faults(dir: &tempfile::TempDir) -> Arc<FaultStore> {
    FaultStore::new(SqliteStore::open(dir.path().join("calls.db")).await.unwrap(), Duration::ZERO)
}

async fn wait(engine: &Engine, id: ExecutionId) -> Result<sagaflow::ExecutionState, EngineError> {
    tokio::time::timeout(Duration::from_secs(20), engine.wait(id)).await.expect("`wait` answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_store_refuses_fails_only_its_execution() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_faults(&dir).await;
    // Refused: the creation of an execution whose input says so, and the event
    // of another whose step output does.
    store.reject_when(|w| match w {
        Write::Create(n) => n.input.get("tag").is_some_and(|t| t == "poison-start"),
        Write::Event(e) => e.event.contains("poison-output"),
        _ => false,
    });
    let engine = Engine::builder().store_arc(store.clone()).register(pair()).build().await.unwrap();

    let err = engine.start("pair", json!({ "tag": "poison-start" })).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::Rejected(_))), "the start is refused: {err:?}");

    let poisoned = engine.start("pair", json!({ "tag": "poison-output" })).await.unwrap();
    let fine: Vec<ExecutionId> =
        futures::future::join_all((0..5).map(|i| engine.start("pair", json!({ "tag": i.to_string() }))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let err = wait(&engine, poisoned).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(StoreError::Rejected(_))), "its wait names the refusal: {err:?}");
    assert!(matches!(engine.get_state(poisoned).await, Err(EngineError::Store(StoreError::Rejected(_)))));
    for id in fine {
        assert_eq!(wait(&engine, id).await.unwrap().status, Status::Completed, "every other execution goes on");
    }
    let later = engine.start("pair", json!({ "tag": "later" })).await.unwrap();
    assert_eq!(wait(&engine, later).await.unwrap().status, Status::Completed, "and so does the engine");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_lost_answer_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_faults(&dir).await;
    let approval = Workflow::new("approval")
        .step("first", noop())
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("first").await_approval(true),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().store_arc(store.clone()).register(approval).build().await.unwrap();
    store.fail_next(3);
    let id = engine.start("approval", json!({})).await.unwrap();
    store.commit_then_fail(2);
    for _ in 0..500 {
        if engine.get_state(id).await.unwrap().status == Status::Awaiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Awaiting);
    // The journal holds each entry once, though batches were committed twice.
    let reader = SqliteStore::open_read_only(dir.path().join("calls.db")).await.unwrap();
    let live = reader.unfinished().await.unwrap();
    let seqs: Vec<u64> = live[0].events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no entry twice, none missing");
    engine.resume(id, json!({})).await.unwrap();
    assert_eq!(wait(&engine, id).await.unwrap().status, Status::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_commit_in_time_fails_with_a_typed_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_faults(&dir).await;
    let engine = Engine::builder()
        .store_arc(store.clone())
        .register(pair())
        .call_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    store.set_delay(Duration::from_secs(2));
    let err = engine.start("pair", json!({})).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Timeout { action: "start", after } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "start did not complete within 200ms");
    store.set_delay(Duration::ZERO);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_effect_the_store_dropped_does_not_answer_ok() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_faults(&dir).await;
    let wait_here = Workflow::new("waits")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().store_arc(store.clone()).register(wait_here).build().await.unwrap();
    let id = engine.start("waits", json!({})).await.unwrap();
    // Awaiting, and that committed: a write still in flight when the fault is
    // set would be refused too, and the execution dropped before the cancel.
    let mut committed = false;
    for _ in 0..500 {
        let stored = store.unfinished().await.unwrap();
        committed = stored
            .iter()
            .any(|e| e.execution.id == id && e.events.iter().any(|entry| entry.event.contains(r#""type":"await""#)));
        if committed && engine.get_state(id).await.unwrap().status == Status::Awaiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(committed, "the await is committed");
    // As if another node had taken the execution over: its writes are refused.
    store.not_held_when(move |w| w.execution() == Some(id));
    let err = engine.cancel(id, CancelOptions::reason("stop")).await.unwrap_err();
    assert!(matches!(err, EngineError::NotHeld(x) if x == id), "cancel does not answer Ok: {err:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_dead_letter_twice_at_once_starts_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let def = Workflow::new("flaky")
        .step_with(
            "call",
            move |ctx: Context| {
                counted.fetch_add(1, Ordering::SeqCst);
                let replayed = ctx.get_or("replayed", false);
                async move {
                    if replayed {
                        return Ok(Outcome::Done);
                    }
                    Err(StepError::new("down", "the service is down").permanent())
                }
            },
            Step::opts().max_retries(0),
        )
        .dead_letter(true)
        .build()
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("letters.db").display());
    let engine = Engine::builder().store_url(url).register(def).build().await.unwrap();
    let id = engine.start("flaky", json!({ "replayed": false })).await.unwrap();
    assert_eq!(wait(&engine, id).await.unwrap().status, Status::Failed);
    assert_eq!(engine.dead_letters().list(None).await.unwrap().len(), 1);

    let letters = engine.dead_letters();
    let (first, second) = tokio::join!(letters.replay(id), letters.replay(id));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first, second, "both replays name the same execution");
    assert_eq!(first, ExecutionId::replay_of(id));
    wait(&engine, first).await.unwrap();
    let replays: Vec<_> = engine
        .history(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|s| matches!(s.trigger, sagaflow::Trigger::Replay { of } if of == id))
        .collect();
    assert_eq!(replays.len(), 1, "one execution replays the letter");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the step ran once per execution");
    assert_eq!(letters.replay(id).await.unwrap(), first, "a later replay names it again");
    engine.shutdown().await;
}

/// Runs of the cluster tests' steps, by step name.
#[derive(Default)]
struct Counts(parking_lot::Mutex<std::collections::HashMap<String, usize>>);

impl Counts {
    fn step(
        self: &Arc<Self>,
        name: &'static str,
    ) -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + 'static {
        let counts = Arc::clone(self);
        move |_ctx: Context| {
            *counts.0.lock().entry(name.to_owned()).or_default() += 1;
            std::future::ready(Ok(Outcome::Done))
        }
    }

    fn get(&self, name: &str) -> usize {
        self.0.lock().get(name).copied().unwrap_or(0)
    }
}

fn cluster_defs(counts: &Arc<Counts>) -> Vec<sagaflow::WorkflowDef> {
    let once = Workflow::new("once").step("only", counts.step("only")).build().unwrap();
    let approval = Workflow::new("approval")
        .step("request", counts.step("request"))
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("request").await_approval(true),
        )
        .step_with("finish", counts.step("finish"), Step::opts().after("approve"))
        .build()
        .unwrap();
    vec![once, approval]
}

async fn node(url: &str, defs: Vec<sagaflow::WorkflowDef>, options: ClusterOptions) -> Engine {
    let mut builder = Engine::builder().store_url(url).cluster(options);
    for def in defs {
        builder = builder.register(def);
    }
    builder.build().await.expect("a node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_cancel_before_the_claim_keeps_the_first_step_from_running() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let counts = Arc::new(Counts::default());
    let client = node(&schema.store_url(), cluster_defs(&counts), ClusterOptions::default().capacity(0)).await;
    let id = client.start("once", json!({})).await.unwrap();
    // No node runs anything yet: the cancel waits in the store for the claim.
    let cancel = {
        let client = client.clone();
        tokio::spawn(async move { client.cancel(id, CancelOptions::reason("changed my mind")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let runner = node(&schema.store_url(), cluster_defs(&counts), ClusterOptions::default()).await;
    cancel.await.unwrap().expect("the cancel is carried out once a node claims the execution");
    let state = wait(&client, id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.cancel_reason.as_deref(), Some("changed my mind"));
    assert_eq!(counts.get("only"), 0, "its first step never ran");
    runner.shutdown().await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_waiting_execution_is_parked_and_finished_by_whoever_claims_it() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let counts = Arc::new(Counts::default());
    let options = ClusterOptions::default().park_after(Duration::from_millis(100)).poll(Duration::from_millis(100));
    let first = node(&schema.store_url(), cluster_defs(&counts), options.clone()).await;
    let id = first.start("approval", json!({})).await.unwrap();
    // It runs on `first`, awaits, and is parked: nobody holds it in the store.
    let db = schema.client().await;
    let sql = format!("SELECT parked, holder IS NULL FROM {}.executions WHERE id = $1", schema.name);
    let mut parked = false;
    for _ in 0..500 {
        let row = db.query_opt(&sql, &[&id.as_uuid()]).await.unwrap();
        if row.is_some_and(|r| r.get::<_, bool>(0) && r.get::<_, bool>(1)) {
            parked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(parked, "the awaiting execution is parked in the store, held by no node");
    let state = first.get_state(id).await.unwrap();
    assert_eq!(state.step("approve").map(|s| s.status), Some(StepStatus::Awaiting), "it awaits, parked");
    // `first` leaves; another node takes the resume and finishes it.
    first.shutdown().await;
    let second = node(&schema.store_url(), cluster_defs(&counts), options).await;
    second.resume(id, json!({ "approved": true })).await.expect("the resume is carried out by the claimer");
    let state = wait(&second, id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!((counts.get("request"), counts.get("finish")), (1, 1), "each step ran once");
    second.shutdown().await;
}
