//! Restarting an ended execution from a step: the steps before it keep their
//! outputs and never run again; the step and those after it run again, with
//! overrides merged into the input; on SQLite across a restart of the engine and
//! on PostgreSQL from another node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{EngineError, ExecutionState, StepStatus, Trigger, WorkflowDef};
use serde_json::Value;

use crate::common::until_awaiting;

/// How many times each step ran.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn ran(&self, step: &str) {
        *self.0.lock().unwrap().entry(step.to_owned()).or_default() += 1;
    }
    fn of(&self, step: &str) -> usize {
        self.0.lock().unwrap().get(step).copied().unwrap_or(0)
    }
}

/// `fetch` → (`parse`, `audit`) → `load`: `load` fails for good unless the
/// context says `fixed`.
fn import(runs: &Runs) -> WorkflowDef {
    let step = |name: &'static str, output: Value| {
        let runs = runs.clone();
        move |_ctx: Context| {
            runs.ran(name);
            let output = output.clone();
            async move { Ok::<_, StepError>(Outcome::Output(output)) }
        }
    };
    let load = {
        let runs = runs.clone();
        move |ctx: Context| {
            runs.ran("load");
            async move {
                if !ctx.get_or("fixed", false) {
                    return Err(StepError::new("bad_row", "row 2 is malformed").permanent());
                }
                let rows: u64 = ctx.output_as::<Value>("fetch")?["rows"].as_u64().unwrap_or(0);
                Ok::<Outcome, StepError>(json!({ "loaded": rows, "parsed": ctx.get::<bool>("parsed")? }).into())
            }
        }
    };
    Workflow::new("import")
        .step("fetch", step("fetch", json!({ "rows": 3 })))
        .step_with("parse", step("parse", json!({ "parsed": true })), Step::opts().after("fetch"))
        .step_with("audit", step("audit", json!({ "audited": true })), Step::opts().after("fetch"))
        .step_with("load", load, Step::opts().after(["parse", "audit"]))
        .build()
        .expect("valid")
}

async fn failed_import(engine: &Engine) -> ExecutionId {
    let id = engine.start("import", json!({ "source": "s3://bucket/day.csv" })).await.unwrap();
    assert_eq!(engine.wait(id).await.unwrap().status, Status::Failed);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_what_came_before_the_step_and_runs_it_and_what_follows_again() {
    let runs = Runs::default();
    let engine = Engine::builder().register(import(&runs)).build().await.unwrap();
    let failed = failed_import(&engine).await;

    let again = engine.restart_from(failed, "load", json!({ "fixed": true })).await.unwrap();
    let done: ExecutionState = engine.wait(again).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!((runs.of("fetch"), runs.of("parse"), runs.of("audit"), runs.of("load")), (1, 1, 1, 2));
    assert_eq!(done.context["loaded"], 3, "the kept output is read with output_as");
    assert_eq!(done.context["source"], "s3://bucket/day.csv", "the input is the ended execution's");
    for kept in ["fetch", "parse", "audit"] {
        let s = done.step(kept).unwrap();
        assert_eq!((s.status, s.attempts), (StepStatus::Completed, 0), "`{kept}` is kept, not run");
    }
    assert_eq!(done.trigger, Trigger::Restart { of: failed, from: "load".into() });
    assert_eq!(engine.get_state(failed).await.unwrap().status, Status::Failed, "the ended one is left as it was");

    // From a step in the middle: it and the steps after it run again, a
    // sibling that does not follow it is kept.
    let from_parse = engine.restart_from(again, "parse", json!({})).await.unwrap();
    assert_eq!(engine.wait(from_parse).await.unwrap().status, Status::Completed);
    assert_eq!((runs.of("fetch"), runs.of("parse"), runs.of("audit"), runs.of("load")), (1, 2, 1, 3));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_restarts_are_typed_errors_naming_the_culprit() {
    let runs = Runs::default();
    let approval = Workflow::new("approval")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(import(&runs)).register(approval).build().await.unwrap();
    let failed = failed_import(&engine).await;

    let typo = engine.restart_from(failed, "laod", json!({})).await.unwrap_err();
    assert!(
        matches!(&typo, EngineError::UnknownStep { step, suggestion: Some(s), .. } if step == "laod" && s == "load"),
        "{typo}"
    );
    assert!(typo.to_string().contains("did you mean `load`"), "{typo}");
    let not_an_object = engine.restart_from(failed, "load", json!([1, 2])).await.unwrap_err();
    assert!(matches!(not_an_object, EngineError::InvalidInput { .. }), "{not_an_object}");
    let live = engine.start("approval", json!({})).await.unwrap();
    let running = engine.restart_from(live, "approve", json!({})).await.unwrap_err();
    assert!(matches!(running, EngineError::InvalidState { action: "restart", .. }), "{running}");
    let nobody = ExecutionId::new();
    let unknown = engine.restart_from(nobody, "load", json!({})).await.unwrap_err();
    assert!(matches!(unknown, EngineError::UnknownExecution(id) if id == nobody), "{unknown}");
    engine.shutdown().await;
}

/// `book` → `confirm` (waits for a resume) → `notify`.
fn booking(runs: &Runs) -> WorkflowDef {
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs.clone());
    Workflow::new("booking")
        .step("book", move |_ctx: Context| {
            r1.ran("book");
            async { Ok::<Outcome, StepError>(json!({ "seat": "12A" }).into()) }
        })
        .step_with(
            "confirm",
            move |_ctx: Context| {
                r2.ran("confirm");
                async { Ok::<_, StepError>(Outcome::await_resume()) }
            },
            Step::opts().after("book").await_approval(true),
        )
        .step_with(
            "notify",
            move |ctx: Context| {
                r3.ran("notify");
                async move { Ok::<Outcome, StepError>(json!({ "told": ctx.get::<String>("seat")? }).into()) }
            },
            Step::opts().after("confirm"),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_restarted_execution_keeps_its_kept_steps_across_an_engine_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("restart.db").display());
    let runs = Runs::default();
    let engine = Engine::builder().store_url(&url).register(booking(&runs)).build().await.unwrap();
    let first = engine.start("booking", json!({})).await.unwrap();
    until_awaiting(&engine, first).await;
    engine.cancel(first, CancelOptions::reason("the customer called")).await.unwrap();
    engine.wait(first).await.unwrap();
    let again = engine.restart_from(first, "confirm", json!({})).await.unwrap();
    until_awaiting(&engine, again).await;
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::builder().store_url(&url).register(booking(&runs)).build().await.unwrap();
    engine.resume(again, json!({})).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), engine.wait(again)).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["told"], "12A", "the kept step's output survived the restart");
    assert_eq!(runs.of("book"), 1, "the kept step never ran again, not even at recovery");
    assert_eq!(runs.of("notify"), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_restart_asked_on_one_node_is_run_by_whichever_claims_it() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let runs = Runs::default();
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node = Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(import(&runs))
            .build()
            .await
            .expect("a node starts");
        nodes.push(node);
    }
    let failed = failed_import(&nodes[0]).await;
    let again = nodes[1].restart_from(failed, "load", json!({ "fixed": true })).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), nodes[2].wait(again)).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.context["loaded"], 3);
    assert_eq!((runs.of("fetch"), runs.of("load")), (1, 2), "kept steps ran on no node");
    for node in nodes {
        node.shutdown().await;
    }
}
