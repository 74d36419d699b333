//! Unique starts: one live execution of a workflow per key, the key free again
//! once it ended; held across a restart on SQLite and across nodes racing on
//! PostgreSQL.

use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{EngineError, Started, WorkflowDef};

/// A refund waits for its approval, so it stays live until resumed.
fn refund() -> WorkflowDef {
    Workflow::new("refund")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .build()
        .expect("valid")
}

fn keyed(key: &str) -> StartOptions {
    StartOptions::new().unique_key(key)
}

async fn approve(engine: &Engine, id: ExecutionId) {
    crate::common::until_awaiting(engine, id).await;
    engine.resume(id, json!({})).await.expect("resumes");
    let ended = tokio::time::timeout(Duration::from_secs(30), engine.wait(id)).await.expect("in time").unwrap();
    assert_eq!(ended.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_live_execution_per_key_and_the_key_is_free_once_it_ended() {
    let engine = Engine::builder().register(refund()).build().await.unwrap();
    let first = engine.start_with("refund", json!({ "order": 1 }), keyed("order-1")).await.unwrap();
    assert!(!first.existing);
    let again = engine.start_with("refund", json!({ "order": 1 }), keyed("order-1")).await.unwrap();
    assert_eq!((again.id, again.existing), (first.id, true), "the live execution answers");
    let other = engine.start_with("refund", json!({ "order": 2 }), keyed("order-2")).await.unwrap();
    assert!(!other.existing && other.id != first.id, "another key starts another execution");
    let plain = engine.start_with("refund", json!({}), StartOptions::new()).await.unwrap();
    assert!(!plain.existing, "without a key, a plain start");

    let rejected =
        engine.start_with("refund", json!({}), keyed("order-1").on_duplicate(OnDuplicate::Reject)).await.unwrap_err();
    match &rejected {
        EngineError::Duplicate { workflow, key, existing } => {
            assert_eq!((workflow.as_str(), key.as_str(), *existing), ("refund", "order-1", first.id));
        }
        other => panic!("a typed duplicate error, not {other}"),
    }
    assert!(rejected.to_string().contains("`order-1`"), "the key is named: {rejected}");

    // Twenty starts at once with one key start one execution.
    let racing = futures::future::join_all(
        (0..20).map(|_| engine.start_with("refund", json!({ "order": 3 }), keyed("order-3"))),
    )
    .await;
    let racing: Vec<Started> = racing.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(racing.iter().filter(|s| !s.existing).count(), 1, "one was started");
    assert!(racing.iter().all(|s| s.id == racing[0].id), "all answer with it");

    approve(&engine, first.id).await;
    let after = engine.start_with("refund", json!({ "order": 1 }), keyed("order-1")).await.unwrap();
    assert!(!after.existing && after.id != first.id, "the key is free once its execution ended");
    let unknown = engine.start_with("refnud", json!({}), keyed("k")).await.unwrap_err();
    assert!(matches!(unknown, EngineError::UnknownWorkflow { .. }), "{unknown}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_key_stays_held_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("unique.db").display());
    let engine = Engine::builder().store_url(&url).register(refund()).build().await.unwrap();
    let first = engine.start_with("refund", json!({}), keyed("order-7")).await.unwrap();
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::builder().store_url(&url).register(refund()).build().await.unwrap();
    let again = engine.start_with("refund", json!({}), keyed("order-7")).await.unwrap();
    assert_eq!((again.id, again.existing), (first.id, true), "the recovered execution still holds its key");
    approve(&engine, first.id).await;
    let after = engine.start_with("refund", json!({}), keyed("order-7")).await.unwrap();
    assert!(!after.existing);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_nodes_racing_with_one_key_start_one_execution() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node =
            Engine::builder().store_url(schema.store_url()).cluster(options.clone()).register(refund()).build().await;
        nodes.push(node.expect("a node starts"));
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for round in 0..3 {
        let key = format!("order-{round}");
        let starts = (0..10).flat_map(|_| {
            [a, b, c].map(|node| {
                let key = key.clone();
                async move { node.start_with("refund", json!({}), keyed(&key)).await }
            })
        });
        let started: Vec<Started> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(started.iter().filter(|s| !s.existing).count(), 1, "round {round}: one execution was started");
        assert!(started.iter().all(|s| s.id == started[0].id), "round {round}: every call answers with it");
        let client = schema.client().await;
        let sql = format!("SELECT count(*) FROM {}.executions WHERE unique_key = $1", schema.name);
        let rows: i64 = client.query_one(&sql, &[&key]).await.unwrap().get(0);
        assert_eq!(rows, 1, "the store holds one live execution with the key");
        let rejected = b.start_with("refund", json!({}), keyed(&key).on_duplicate(OnDuplicate::Reject)).await;
        assert!(matches!(rejected, Err(EngineError::Duplicate { existing, .. }) if existing == started[0].id));
        approve(a, started[0].id).await;
        let after = b.start_with("refund", json!({}), keyed(&key)).await.unwrap();
        assert!(!after.existing, "round {round}: the key is free once its execution ended");
        approve(b, after.id).await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// `welcome`: one quick step.
fn welcome() -> WorkflowDef {
    Workflow::new("welcome").step("send", |_ctx: Context| async { Ok::<_, StepError>(()) }).build().expect("valid")
}

fn held_for(key: &str, window: &str) -> StartOptions {
    keyed(key).unique_window(window)
}

async fn completes(engine: &Engine, id: ExecutionId) {
    let ended = tokio::time::timeout(Duration::from_secs(30), engine.wait(id)).await.expect("in time").unwrap();
    assert_eq!(ended.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_window_keeps_the_key_held_after_its_execution_ended() {
    let engine = Engine::builder().register(welcome()).build().await.unwrap();
    let first = engine.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    completes(&engine, first.id).await;
    let again = engine.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    assert_eq!((again.id, again.existing), (first.id, true), "the ended execution answers within the window");
    let rejected = engine
        .start_with("welcome", json!({}), held_for("user-1", "1h").on_duplicate(OnDuplicate::Reject))
        .await
        .unwrap_err();
    assert!(matches!(rejected, EngineError::Duplicate { existing, .. } if existing == first.id), "{rejected}");
    let plain = engine.start_with("welcome", json!({}), keyed("user-1")).await.unwrap();
    assert!(!plain.existing, "without a window the key is free once its execution ended");
    completes(&engine, plain.id).await;
    let latest = engine.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    assert_eq!((latest.id, latest.existing), (plain.id, true), "the execution that ended last answers");

    let short = engine.start_with("welcome", json!({}), held_for("user-2", "150ms")).await.unwrap();
    completes(&engine, short.id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = engine.start_with("welcome", json!({}), held_for("user-2", "150ms")).await.unwrap();
    assert!(!later.existing && later.id != short.id, "after the window the key is free");

    let bad = engine.start_with("welcome", json!({}), held_for("user-3", "soon")).await.unwrap_err();
    assert!(matches!(bad, EngineError::InvalidInput { .. }) && bad.to_string().contains("`user-3`"), "{bad}");
    let keyless = engine.start_with("welcome", json!({}), StartOptions::new().unique_window("1h")).await.unwrap_err();
    assert!(keyless.to_string().contains("needs a unique key"), "{keyless}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_unique_window_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("window.db").display());
    let engine = Engine::builder().store_url(&url).register(welcome()).build().await.unwrap();
    let first = engine.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    completes(&engine, first.id).await;
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::builder().store_url(&url).register(welcome()).build().await.unwrap();
    let again = engine.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    assert_eq!((again.id, again.existing), (first.id, true), "the stored history holds the key");
    let other = engine.start_with("welcome", json!({}), held_for("user-2", "1h")).await.unwrap();
    assert!(!other.existing);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_unique_window_holds_across_nodes() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node =
            Engine::builder().store_url(schema.store_url()).cluster(options.clone()).register(welcome()).build().await;
        nodes.push(node.expect("a node starts"));
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let first = a.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    completes(a, first.id).await;
    let starts =
        (0..10).flat_map(|_| [a, b, c].map(|node| node.start_with("welcome", json!({}), held_for("user-1", "1h"))));
    let started: Vec<Started> = futures::future::join_all(starts).await.into_iter().map(|r| r.unwrap()).collect();
    assert!(started.iter().all(|s| s.existing && s.id == first.id), "every node answers with the ended one");
    let plain = b.start_with("welcome", json!({}), keyed("user-1")).await.unwrap();
    assert!(!plain.existing, "without a window the key is free");
    completes(b, plain.id).await;
    let latest = a.start_with("welcome", json!({}), held_for("user-1", "1h")).await.unwrap();
    assert_eq!(latest.id, plain.id, "the execution that ended last answers");
    for node in nodes {
        node.shutdown().await;
    }
}
