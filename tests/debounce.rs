//! Debounced starts: of a burst of starts with one key, one execution runs, once,
//! with the last start's input, a window after the last start; a start after it
//! began schedules another. Rescheduled input survives a restart on SQLite, and
//! nodes debouncing one key on PostgreSQL schedule one execution.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{EngineError, ExecutionState, Started, WorkflowDef};

/// `reindex`: one step that records the `rev` it ran with.
fn reindex(runs: &Arc<Mutex<Vec<i64>>>) -> WorkflowDef {
    let runs = Arc::clone(runs);
    Workflow::new("reindex")
        .step("index", move |ctx: Context| {
            let runs = Arc::clone(&runs);
            async move {
                let rev: i64 = ctx.get("rev")?;
                runs.lock().unwrap().push(rev);
                Ok::<_, StepError>(())
            }
        })
        .build()
        .expect("valid")
}

fn debounced(window: &str) -> StartOptions {
    StartOptions::new().debounce("docs", window)
}

async fn ended(engine: &Engine, id: ExecutionId) -> ExecutionState {
    tokio::time::timeout(Duration::from_secs(60), engine.wait(id)).await.expect("in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_starts_runs_once_with_the_last_input_a_window_after_the_last_start() {
    let runs = Arc::default();
    let engine = Engine::builder().register(reindex(&runs)).build().await.unwrap();
    let first = engine.start_with("reindex", json!({ "rev": 0 }), debounced("400ms")).await.unwrap();
    assert!(!first.existing, "the first start schedules the execution");
    let mut last_call = chrono::Utc::now();
    for rev in 1..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last_call = chrono::Utc::now();
        let again = engine.start_with("reindex", json!({ "rev": rev }), debounced("400ms")).await.unwrap();
        assert_eq!((again.id, again.existing), (first.id, true), "start {rev} joins the waiting execution");
    }
    let pending = engine.get_state(first.id).await.unwrap();
    assert_eq!((pending.status, &pending.input["rev"]), (Status::Pending, &json!(4)), "it waits with the last input");
    let other = engine.start_with("reindex", json!({ "rev": 9 }), StartOptions::new().debounce("api", "400ms"));
    let other = other.await.unwrap();
    assert!(!other.existing && other.id != first.id, "another key schedules another execution");

    let state = ended(&engine, first.id).await;
    assert_eq!((state.status, &state.input["rev"]), (Status::Completed, &json!(4)));
    let began = state.started_at;
    assert!(began >= last_call + chrono::Duration::milliseconds(400), "each start moved it: began {began}");
    ended(&engine, other.id).await;
    let mut ran = runs.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, [4, 9], "each debounced execution ran once, with its last input");

    let after = engine.start_with("reindex", json!({ "rev": 5 }), debounced("50ms")).await.unwrap();
    assert!(!after.existing && after.id != first.id, "once it started, the key schedules another");
    assert_eq!(ended(&engine, after.id).await.input["rev"], 5);

    // Twenty starts at once: one execution.
    let racing = futures::future::join_all(
        (0..20).map(|rev| engine.start_with("reindex", json!({ "rev": 100 + rev }), debounced("300ms"))),
    )
    .await;
    let racing: Vec<Started> = racing.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(racing.iter().filter(|s| !s.existing).count(), 1, "one was scheduled");
    assert!(racing.iter().all(|s| s.id == racing[0].id), "all answer with it");
    ended(&engine, racing[0].id).await;
    assert_eq!(runs.lock().unwrap().len(), 4, "the burst ran once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_debounced_execution_frees_its_key_and_bad_options_are_refused_by_name() {
    let runs = Arc::default();
    let engine = Engine::builder().register(reindex(&runs)).build().await.unwrap();
    let first = engine.start_with("reindex", json!({ "rev": 1 }), debounced("10s")).await.unwrap();
    engine.cancel(first.id, "superseded".into()).await.unwrap();
    assert_eq!(engine.get_state(first.id).await.unwrap().status, Status::Cancelled);
    let next = engine.start_with("reindex", json!({ "rev": 2 }), debounced("50ms")).await.unwrap();
    assert!(!next.existing && next.id != first.id, "a cancelled execution holds no key");
    assert_eq!(ended(&engine, next.id).await.status, Status::Completed);

    let bad = engine.start_with("reindex", json!({ "rev": 3 }), debounced("3 parsecs")).await.unwrap_err();
    assert!(matches!(&bad, EngineError::InvalidInput { workflow, .. } if workflow == "reindex"), "{bad}");
    assert!(bad.to_string().contains("debounce window") && bad.to_string().contains("`docs`"), "{bad}");
    let both = engine.start_with("reindex", json!({ "rev": 3 }), debounced("1s").unique_key("k")).await.unwrap_err();
    assert!(matches!(both, EngineError::InvalidInput { .. }), "{both}");
    assert!(both.to_string().contains("not both"), "{both}");
    let unknown = engine.start_with("reindxe", json!({}), debounced("1s")).await.unwrap_err();
    assert!(matches!(unknown, EngineError::UnknownWorkflow { .. }), "{unknown}");
    assert_eq!(*runs.lock().unwrap(), [2], "nothing else ran");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_replaced_input_and_the_key_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("debounce.db").display());
    let runs = Arc::default();
    let engine = Engine::builder().store_url(&url).register(reindex(&runs)).build().await.unwrap();
    let first = engine.start_with("reindex", json!({ "rev": 1 }), debounced("5s")).await.unwrap();
    let again = engine.start_with("reindex", json!({ "rev": 2 }), debounced("5s")).await.unwrap();
    assert!(again.existing);
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::builder().store_url(&url).register(reindex(&runs)).build().await.unwrap();
    let pending = engine.get_state(first.id).await.unwrap();
    assert_eq!((pending.status, &pending.input["rev"]), (Status::Pending, &json!(2)), "the replaced input was stored");
    let third = engine.start_with("reindex", json!({ "rev": 3 }), debounced("200ms")).await.unwrap();
    assert_eq!((third.id, third.existing), (first.id, true), "the recovered execution still waits under its key");
    assert_eq!(ended(&engine, first.id).await.input["rev"], 3);
    assert_eq!(*runs.lock().unwrap(), [3], "it ran once, with the last input");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_nodes_debouncing_one_key_schedule_one_execution() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let runs = Arc::default();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node = Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(reindex(&runs))
            .build()
            .await;
        nodes.push(node.expect("a node starts"));
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // Alternating nodes, one after another: the last input wins.
    let mut ids = Vec::new();
    for rev in 0..6 {
        let node = [a, b, c][rev % 3];
        ids.push(node.start_with("reindex", json!({ "rev": rev }), debounced("1s")).await.unwrap());
    }
    assert!(!ids[0].existing && ids[1..].iter().all(|s| s.existing && s.id == ids[0].id), "{ids:?}");
    let client = schema.client().await;
    let sql = format!("SELECT count(*) FROM {}.executions WHERE debounce_key = 'docs'", schema.name);
    assert_eq!(client.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0), 1, "the store holds one");
    let state = ended(c, ids[0].id).await;
    assert_eq!((state.status, &state.input["rev"]), (Status::Completed, &json!(5)));

    // Both nodes at once: one execution.
    let starts = (0..10).flat_map(|rev| {
        [a, b, c].map(|node| async move { node.start_with("reindex", json!({ "rev": rev }), debounced("500ms")).await })
    });
    let started: Vec<Started> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(started.iter().filter(|s| !s.existing).count(), 1, "one execution was scheduled");
    assert!(started.iter().all(|s| s.id == started[0].id), "every call answers with it");
    assert_eq!(ended(a, started[0].id).await.status, Status::Completed);
    assert_eq!(runs.lock().unwrap().len(), 2, "each burst ran once: {:?}", runs.lock().unwrap());
    for node in nodes {
        node.shutdown().await;
    }
}
