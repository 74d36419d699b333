//! Retention: ended executions of a workflow with a `retention` are pruned in
//! the background, so the store's tables stay bounded under a steady load, on
//! SQLite and on PostgreSQL with several nodes pruning one schema; the purge API
//! and its errors; the options' checks.

use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::{ClusterOptions, ExecutionQuery, SqliteStore, Store};
use sagaflow::{EngineError, ExecutionState, Status, WorkflowDef};

fn ping() -> WorkflowDef {
    Workflow::new("ping")
        .retention("1s")
        .step("pong", |_ctx: Context| async { Ok::<_, StepError>(Outcome::Done) })
        .build()
        .expect("valid")
}

fn keep() -> WorkflowDef {
    Workflow::new("keep")
        .step("stay", |_ctx: Context| async { Ok::<_, StepError>(Outcome::Done) })
        .build()
        .expect("valid")
}

async fn count(store: &dyn Store, workflow: &str) -> usize {
    let query = ExecutionQuery { workflow: Some(workflow.into()), limit: 0 };
    store.list_finished(&query).await.expect("the store reads").len()
}

/// Runs `waves` waves of `per_wave` pings (and one `keep`) through `engine`,
/// 100 ms apart, each waited for as it is started; returns the most ended pings
/// `store` held after any wave.
async fn steady_load(engine: &Engine, store: &dyn Store, waves: usize, per_wave: usize) -> usize {
    let mut peak = 0;
    for _ in 0..waves {
        let runs = (0..=per_wave).map(|i| async move {
            let id = engine.start(if i == 0 { "keep" } else { "ping" }, json!({})).await.expect("starts");
            assert_eq!(engine.wait(id).await.expect("ends").status, Status::Completed);
        });
        futures::future::join_all(runs).await;
        peak = peak.max(count(store, "ping").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

async fn until_pruned(store: &dyn Store, workflow: &str) {
    for _ in 0..200 {
        if count(store, workflow).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ended `{workflow}` executions were not all pruned within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_ended_executions_past_their_retention_are_pruned_and_the_table_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retention.db");
    let engine = Engine::builder()
        .store_url(format!("sqlite://{}", path.display()))
        .register(ping())
        .register(keep())
        .housekeeping_every(Duration::from_millis(100))
        .build()
        .await
        .expect("engine");
    let reader = SqliteStore::open_read_only(&path).await.expect("a reader beside the engine");
    let (waves, per_wave) = (40, 30);
    let peak = steady_load(&engine, &reader, waves, per_wave).await;
    // 1,200 pings ended over at least 4 s; about 1.1 s of them (retention and
    // one housekeeping period) can be in the table at once.
    assert!(peak < waves * per_wave / 2, "the table stays bounded: at most {peak} of {} held", waves * per_wave);
    until_pruned(&reader, "ping").await;
    assert_eq!(count(&reader, "keep").await, waves, "a workflow without retention keeps every execution");
    eprintln!("retention on SQLite: {} pings ended, at most {peak} held at once, 0 left", waves * per_wave);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_nodes_pruning_one_schema_keep_it_bounded() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let options = ClusterOptions::default().poll(Duration::from_millis(100));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node = Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(ping())
            .register(keep())
            .housekeeping_every(Duration::from_millis(100))
            .build()
            .await
            .expect("a node starts");
        nodes.push(node);
    }
    let client = schema.client().await;
    let rows = |workflow: &'static str| {
        let (client, name) = (&client, &schema.name);
        async move {
            let sql = format!("SELECT count(*) FROM {name}.history WHERE workflow = $1");
            client.query_one(&sql, &[&workflow]).await.expect("counts").get::<_, i64>(0) as usize
        }
    };
    let (waves, per_wave) = (40, 20);
    let mut peak = 0;
    for wave in 0..waves {
        let node = &nodes[wave % 3];
        let runs = (0..=per_wave).map(|i| async move {
            let id = node.start(if i == 0 { "keep" } else { "ping" }, json!({})).await.expect("starts");
            let ended = tokio::time::timeout(Duration::from_secs(30), node.wait(id)).await.expect("in time");
            assert_eq!(ended.expect("ends").status, Status::Completed);
        });
        futures::future::join_all(runs).await;
        peak = peak.max(rows("ping").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(peak < waves * per_wave / 2, "the table stays bounded: at most {peak} of {} held", waves * per_wave);
    for _ in 0..200 {
        if rows("ping").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows("ping").await, 0, "every ended ping was pruned");
    assert_eq!(rows("keep").await, waves, "a workflow without retention keeps every execution");
    eprintln!(
        "retention on PostgreSQL, 2 nodes: {} pings ended, at most {peak} held at once, 0 left",
        waves * per_wave
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_history_deletes_what_ended_before_the_cut_off_and_nothing_live() {
    let approval = Workflow::new("approval")
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .build()
        .expect("valid");
    let engine = Engine::builder().register(keep()).register(approval).build().await.expect("engine");
    let first = engine.start("keep", json!({})).await.unwrap();
    engine.wait(first).await.unwrap();
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = engine.start("keep", json!({})).await.unwrap();
    engine.wait(second).await.unwrap();
    let waiting = engine.start("approval", json!({})).await.unwrap();
    for _ in 0..500 {
        if engine.get_state(waiting).await.unwrap().status == Status::Awaiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let typo = engine.purge_history(Some("kepe"), cut).await.unwrap_err();
    assert!(
        matches!(&typo, EngineError::UnknownWorkflow { suggestion: Some(s), .. } if s == "keep"),
        "the unknown workflow is named with the closest one: {typo}"
    );
    assert_eq!(engine.purge_history(Some("keep"), cut).await.unwrap(), 1, "only what ended before the cut-off");
    assert_eq!(engine.get_state(first).await.unwrap_err().to_string(), format!("unknown execution {first}"));
    assert_eq!(engine.get_state(second).await.unwrap().status, Status::Completed);
    assert_eq!(engine.purge_history(None, chrono::Utc::now()).await.unwrap(), 1, "every workflow with `None`");
    let live: ExecutionState = engine.get_state(waiting).await.unwrap();
    assert_eq!(live.status, Status::Awaiting, "a live execution is never purged");
    engine.shutdown().await;
}

#[tokio::test]
async fn retention_and_housekeeping_are_checked() {
    let zero = Workflow::new("w").retention("0s").step("s", |_ctx: Context| async { Ok::<_, StepError>(()) }).build();
    let err = zero.unwrap_err().to_string();
    assert!(err.contains("retention") && err.contains("longer than zero"), "{err}");
    let bad =
        Workflow::new("w").retention("forever").step("s", |_ctx: Context| async { Ok::<_, StepError>(()) }).build();
    assert!(bad.unwrap_err().to_string().contains("retention"), "the option is named");
    let never = Engine::builder().housekeeping_every(Duration::ZERO).build().await.unwrap_err();
    assert!(
        matches!(never, EngineError::InvalidOption { option: "housekeeping_every", .. }),
        "the option is named: {never}"
    );
}

struct Reports;

#[workflow(name = "reports", retention = "7d")]
impl Reports {
    #[step]
    async fn render(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

#[tokio::test]
async fn the_macro_takes_a_retention() {
    let engine = Engine::builder().workflow(Reports).build().await.unwrap();
    let def = engine.definitions().into_iter().find(|d| d.name() == "reports").expect("registered");
    assert_eq!(def.policy().retention(), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(keep().policy().retention(), None, "kept for good by default");
}
