//! Many nodes on PostgreSQL: three node processes (`examples/cluster_node.rs`)
//! share one database, in a schema of the test's own that is dropped afterwards.
//! The test process starts, inspects and controls executions through an engine
//! that runs nothing itself (capacity 0).
//!
//! The database comes from `SAGAFLOW_TEST_DATABASE_URL`; without it these tests
//! say loudly that they were skipped, and under `CI=true` they fail instead.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::DurationRound;

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{ExecutionState, Status, WorkflowDef};

const URL_VAR: &str = "SAGAFLOW_TEST_DATABASE_URL";

/// The test database's URL; `None` (said loudly) when not configured, a failure
/// under `CI=true`.
pub fn database() -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty());
    let install = format!("set {URL_VAR}=postgres://user@host:5432/database (or run .ci/run)");
    crate::tools::require("PostgreSQL for the cluster tests", url.is_some(), &install).then_some(url).flatten()
}

/// A schema of the test's own, dropped when the test ends (passed or failed).
pub struct Schema {
    pub url: String,
    pub name: String,
    /// Held while the test uses the database server (see [`DATABASE`]).
    _server: Server,
}

/// How a test uses the database server.
enum Server {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

/// Tests that use the database server share it; one that restarts the server
/// takes it alone.
static DATABASE: std::sync::RwLock<()> = std::sync::RwLock::new(());

impl Schema {
    pub fn new(url: String) -> Self {
        let shared = DATABASE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = format!("sf_cluster_{}", uuid::Uuid::now_v7().simple());
        Schema { url, name, _server: Server::Shared(shared) }
    }

    /// A schema for a test that restarts the database server: it waits until no
    /// other test uses the server, and keeps them out until it ends.
    pub fn exclusive(url: String) -> Self {
        let alone = DATABASE.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = format!("sf_cluster_{}", uuid::Uuid::now_v7().simple());
        Schema { url, name, _server: Server::Alone(alone) }
    }

    /// The store URL of the schema.
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("the test database is reachable");
        tokio::spawn(connection);
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let mut client = postgres_blocking(&url);
            client(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("the test schema could not be dropped");
        }
    }
}

/// Runs statements on a fresh runtime (for `Drop`, when the test's may be gone).
fn postgres_blocking(url: &str) -> impl FnMut(&str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (client, connection) =
        rt.block_on(tokio_postgres::connect(url, tokio_postgres::NoTls)).expect("the test database is reachable");
    rt.spawn(connection);
    move |sql: &str| rt.block_on(client.batch_execute(sql)).expect("the statement runs")
}

/// Builds the node example and returns its path.
pub fn node_binary() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "cluster_node", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the cluster_node example builds");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cluster_node")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the example's executable")
}

/// One node process.
pub struct Node {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Node {
    pub fn start(binary: &PathBuf, schema: &Schema, name: &str, step_ms: u64, lease_ms: u64) -> Node {
        Node::start_with(
            binary,
            schema,
            &schema.url,
            name,
            &[("SAGAFLOW_STEP_MS", step_ms.to_string()), ("SAGAFLOW_LEASE_MS", lease_ms.to_string())],
        )
    }

    /// A node that reaches the database at `url`, with more settings in `env`.
    pub fn start_with(binary: &PathBuf, schema: &Schema, url: &str, name: &str, env: &[(&str, String)]) -> Node {
        let mut child = Command::new(binary)
            .args([url, &schema.name, name])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the node starts");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the node writes");
        assert_eq!(line.trim(), format!("ready {name}"), "node {name} starts");
        Node { name: name.to_owned(), child, stdin, stdout }
    }

    /// Asks the node to drain and waits for it to exit.
    pub fn drain(mut self) {
        let mut stdin = self.stdin.take().expect("stdin");
        writeln!(stdin, "drain").expect("the node reads");
        drop(stdin);
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the node writes");
        assert_eq!(line.trim(), format!("drained {}", self.name), "node {} drains", self.name);
        let status = self.child.wait().expect("the node exits");
        assert!(status.success(), "node {} exits cleanly after draining: {status}", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nodes' workflows as the submitting engine sees them: the same shapes, with
/// bodies that never run here.
pub fn definitions() -> Vec<WorkflowDef> {
    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let parts: Vec<String> = (0..8).map(|i| format!("part_{i}")).collect();
    let mut fan_out = Workflow::new("fan_out").step("split", noop);
    for part in &parts {
        fan_out = fan_out.step_with(part.as_str(), noop, Step::opts().after("split"));
    }
    let fan_out = fan_out.step_with("join", noop, Step::opts().after(parts)).build().expect("valid");
    let hold = Workflow::new("hold").step_with("hold", noop, Step::opts().cancellable(true)).build().expect("valid");
    let approval = Workflow::new("approval")
        .step_with("request", noop, Step::opts().await_approval(true))
        .step_with("finish", noop, Step::opts().after("request"))
        .build()
        .expect("valid");
    let limited = Workflow::new("limited")
        .step_with("charge", noop, Step::opts().concurrency(2).concurrency_key("tenant"))
        .build()
        .expect("valid");
    vec![fan_out, hold, approval, limited]
}

/// An engine on the schema that submits and controls, and runs nothing.
pub async fn submitter(schema: &Schema) -> Engine {
    let mut builder = Engine::builder().store_url(schema.store_url()).cluster(ClusterOptions::default().capacity(0));
    for def in definitions() {
        builder = builder.register(def);
    }
    builder.build().await.expect("the submitting engine starts")
}

/// Starts `n` executions of `fan_out`, a few at a time.
pub async fn start_many(engine: &Engine, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let started =
            futures::future::join_all(chunk.iter().map(|i| engine.start("fan_out", json!({ "slot": i })))).await;
        ids.extend(started.into_iter().map(|r| r.expect("the start is acknowledged")));
    }
    ids
}

/// Waits until `n` executions have ended (the history table), at most `limit`.
pub async fn until_ended(client: &tokio_postgres::Client, schema: &Schema, n: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}.history", schema.name), &[])
            .await
            .expect("history reads");
        let ended: i64 = row.get(0);
        if ended >= n {
            return;
        }
        assert!(started.elapsed() < limit, "{ended} of {n} executions ended within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `n` attempts hold or wait for a slot of a concurrency limit
/// (every execution was claimed and queued): from then on, who goes next is
/// the limit's choice alone, not how fast each node claimed its share.
pub async fn until_queued_for_slots(client: &tokio_postgres::Client, schema: &Schema, n: i64) {
    let began = Instant::now();
    loop {
        let sql = format!("SELECT count(*) FROM {}.limit_slots", schema.name);
        let queued: i64 = client.query_one(&sql, &[]).await.expect("counts").get(0);
        if queued >= n {
            return;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{queued} of {n} attempts queued for a slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One row of `step_runs`.
#[derive(Debug, Clone)]
pub struct Run {
    pub execution: uuid::Uuid,
    pub step: String,
    pub attempt: i32,
    pub node: String,
}

pub async fn runs(client: &tokio_postgres::Client, schema: &Schema) -> Vec<Run> {
    client
        .query(&format!("SELECT execution, step, attempt, node FROM {}.step_runs", schema.name), &[])
        .await
        .expect("step_runs reads")
        .iter()
        .map(|r| Run { execution: r.get(0), step: r.get(1), attempt: r.get(2), node: r.get(3) })
        .collect()
}

pub async fn all_completed(engine: &Engine, ids: &[ExecutionId], all_runs: &[Run]) {
    let history = engine.history(&Default::default()).await.expect("history");
    let by_id: HashMap<ExecutionId, &ExecutionState> = history.iter().map(|s| (s.id, s)).collect();
    for id in ids {
        let state = by_id.get(id).unwrap_or_else(|| panic!("execution {id} ended"));
        let ran: Vec<&Run> = all_runs.iter().filter(|r| r.execution == id.as_uuid()).collect();
        assert_eq!(state.status, Status::Completed, "execution {id} completed: {:?}; its runs: {ran:?}", state.failure);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_a_thousand_executions() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let binary = node_binary();
    let nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| Node::start(&binary, &schema, n, 2, 15_000)).collect();
    let engine = submitter(&schema).await;
    let client = schema.client().await;

    let ids = start_many(&engine, 1000).await;
    until_ended(&client, &schema, 1000, Duration::from_secs(180)).await;
    let runs = runs(&client, &schema).await;
    all_completed(&engine, &ids, &runs).await;

    assert_eq!(runs.len(), 10_000, "every step of every execution ran exactly once (10 steps × 1,000)");
    // `step_runs`' primary key (execution, step, attempt, node) already refuses an
    // attempt run twice on one node; this refuses a step run by two nodes.
    let distinct: HashSet<(uuid::Uuid, &str)> = runs.iter().map(|r| (r.execution, r.step.as_str())).collect();
    assert_eq!(distinct.len(), 10_000, "no step ran twice");
    assert!(runs.iter().all(|r| r.attempt == 1), "no step needed a second attempt");
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for r in &runs {
        *per_node.entry(r.node.as_str()).or_default() += 1;
    }
    for n in ["a", "b", "c"] {
        assert!(per_node.get(n).copied().unwrap_or(0) > 0, "node {n} did part of the work: {per_node:?}");
    }
    // The steps of one execution run on one node: the node that holds it.
    let mut holder: HashMap<uuid::Uuid, &str> = HashMap::new();
    for r in &runs {
        let first = *holder.entry(r.execution).or_insert(r.node.as_str());
        assert_eq!(first, r.node, "execution {} ran on one node", r.execution);
    }
    eprintln!("steps per node: {per_node:?}");
    for node in nodes {
        node.drain();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_steps_run_again_elsewhere() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let binary = node_binary();
    let mut nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| Node::start(&binary, &schema, n, 40, 1_500)).collect();
    let engine = submitter(&schema).await;
    let client = schema.client().await;

    let ids = start_many(&engine, 300).await;
    // Kill `b` once it has work in flight.
    let started = Instant::now();
    loop {
        let seen = runs(&client, &schema).await;
        if seen.iter().filter(|r| r.node == "b").count() >= 30 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "node b starts running steps");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut b = nodes.remove(1);
    b.child.kill().expect("SIGKILL");
    b.child.wait().expect("the node is gone");
    let killed_at = chrono::Utc::now();

    until_ended(&client, &schema, 300, Duration::from_secs(180)).await;
    let runs = runs(&client, &schema).await;
    all_completed(&engine, &ids, &runs).await;

    let by_step: HashMap<(uuid::Uuid, &str), Vec<&Run>> = runs.iter().fold(HashMap::new(), |mut m, r| {
        m.entry((r.execution, r.step.as_str())).or_default().push(r);
        m
    });
    assert_eq!(by_step.len(), 3000, "every step of every execution ran");
    // At least once: only the killed node's work ran twice, once there and again
    // elsewhere. A step the journal knew to be running gets the next attempt
    // number; one that started after the node's last commit runs again as the
    // same attempt (the journal never saw it start).
    for ((execution, step), attempts) in &by_step {
        if attempts.len() > 1 {
            assert!(
                attempts.iter().filter(|r| r.node == "b").count() == 1
                    && attempts.iter().filter(|r| r.node != "b").count() == attempts.len() - 1,
                "step {step} of {execution} ran more than once only because b was killed: {attempts:?}"
            );
        }
    }
    let rerun: Vec<_> = by_step
        .values()
        .filter(|attempts| {
            attempts.iter().any(|r| r.node == "b" && r.attempt == 1)
                && attempts.iter().any(|r| r.node != "b" && r.attempt > 1)
        })
        .collect();
    assert!(!rerun.is_empty(), "steps in flight on the killed node ran again elsewhere with a higher attempt");
    let after_kill = client
        .query_one(
            // An insert already on its way to the server when the node died may
            // land a moment after the kill: allow half a second.
            &format!(
                "SELECT count(*) FROM {}.step_runs WHERE node = 'b' AND at > $1::timestamptz + interval '500 milliseconds'",
                schema.name
            ),
            &[&killed_at],
        )
        .await
        .expect("reads");
    assert_eq!(after_kill.get::<_, i64>(0), 0, "nothing ran on the killed node after the kill");
    eprintln!("steps run again after the kill: {}", rerun.len());
    for node in nodes {
        node.drain();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_on_one_node_acts_on_another() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let binary = node_binary();
    let node = Node::start(&binary, &schema, "worker", 2, 15_000);
    let engine = submitter(&schema).await;

    // Cancel: the step runs on the worker; the call is made here.
    let id = engine.start("hold", json!({})).await.expect("starts");
    let state = until(&engine, id, |s| s.status == Status::Running && !s.running.is_empty()).await;
    assert_eq!(state.running, vec!["hold".to_owned()], "get_state here shows the step running there");
    let listed = engine.list_running("hold").await.expect("lists");
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id], "list_running here sees it");
    engine.cancel(id, CancelOptions::reason("stopped from elsewhere")).await.expect("cancel is accepted");
    let ended = tokio::time::timeout(Duration::from_secs(30), engine.wait(id))
        .await
        .expect("the cancelled execution ends")
        .expect("waits");
    assert_eq!(ended.status, Status::Cancelled);
    assert_eq!(ended.cancel_reason.as_deref(), Some("stopped from elsewhere"));

    // Pause and resume an execution that awaits approval, then approve it.
    let id = engine.start("approval", json!({})).await.expect("starts");
    until(&engine, id, |s| s.status == Status::Awaiting).await;
    let refused = engine.resume_step(id, "no_such_step", json!({})).await;
    assert!(
        matches!(&refused, Err(sagaflow::EngineError::InvalidState { reason, .. }) if reason.contains("no_such_step")),
        "a resume naming an unknown step is refused here, before it reaches the node: {refused:?}"
    );
    engine.pause(id).await.expect("pause is accepted");
    until(&engine, id, |s| s.status == Status::Paused).await;
    engine.resume(id, json!({ "approver": "ops@example.com" })).await.expect("resume is accepted");
    let ended = tokio::time::timeout(Duration::from_secs(30), engine.wait(id))
        .await
        .expect("the approved execution ends")
        .expect("waits");
    assert_eq!(ended.status, Status::Completed);
    assert_eq!(ended.context["approved_by"], "ops@example.com");
    let again = engine.cancel(id, CancelOptions::default()).await;
    assert!(
        matches!(again, Err(sagaflow::EngineError::InvalidState { status: Status::Completed, .. })),
        "controlling an ended execution is refused: {again:?}"
    );
    node.drain();
}

/// Polls `get_state` until `done` holds (at most 30 s).
async fn until(engine: &Engine, id: ExecutionId, done: impl Fn(&ExecutionState) -> bool) -> ExecutionState {
    let started = Instant::now();
    loop {
        let state = engine.get_state(id).await.expect("get_state");
        if done(&state) {
            return state;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "execution {id} reached the state; last: {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A chain of `n` steps that count their runs in `counter`.
fn counted_chain(name: &str, n: usize, counter: &Arc<Mutex<HashMap<(ExecutionId, String), u32>>>) -> WorkflowDef {
    let mut wf = Workflow::new(name);
    for i in 0..n {
        let counter = Arc::clone(counter);
        let step = move |ctx: Context| {
            let counter = Arc::clone(&counter);
            async move {
                *counter
                    .lock()
                    .unwrap()
                    .entry((ctx.execution_id(), ctx.step().unwrap_or_default().to_owned()))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
                Ok::<_, StepError>(())
            }
        };
        let opts = if i == 0 { Step::opts() } else { Step::opts().after(format!("s{}", i - 1)) };
        wf = wf.step_with(format!("s{i}"), step, opts);
    }
    wf.build().expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_carry_on_when_the_database_drops_their_connections() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let app = format!("sf_conn_{}", uuid::Uuid::now_v7().simple());
    let counter = Arc::new(Mutex::new(HashMap::new()));
    let engine = Engine::builder()
        .store_url(format!("{}&application_name={app}", schema.store_url()))
        .cluster(ClusterOptions::default().lease(Duration::from_secs(60)).poll(Duration::from_millis(100)))
        .register(counted_chain("chain", 5, &counter))
        .build()
        .await
        .expect("the node starts");
    let admin = schema.client().await;

    let mut ids = Vec::new();
    let mut terminated = 0;
    for round in 0..4 {
        for _ in 0..50 {
            ids.push(engine.start("chain", json!({ "round": round })).await.expect("the start is acknowledged"));
        }
        // The database drops every connection of the node, mid-run.
        let rows = admin
            .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&app])
            .await
            .expect("terminates");
        terminated += rows.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(terminated >= 4, "the node's connections were dropped ({terminated} terminated)");
    for id in &ids {
        let state = tokio::time::timeout(Duration::from_secs(60), engine.wait(*id))
            .await
            .expect("the execution ends once the database is back")
            .expect("waits");
        assert_eq!(state.status, Status::Completed, "execution {id} completed");
    }
    let counts = counter.lock().unwrap().clone();
    for id in &ids {
        for i in 0..5 {
            let n = counts.get(&(*id, format!("s{i}"))).copied().unwrap_or(0);
            assert_eq!(n, 1, "step s{i} of {id} ran once: the node kept its executions through the outage");
        }
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_start_each_tick_of_an_every_second_schedule_once() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let ticking = |ran: &Arc<Mutex<Vec<ExecutionId>>>| {
        let ran = Arc::clone(ran);
        Workflow::new("tick")
            .schedule(Schedule::every("1s").expect("valid"))
            .step("tick", move |ctx: Context| {
                let ran = Arc::clone(&ran);
                async move {
                    ran.lock().unwrap().push(ctx.execution_id());
                    Ok::<_, StepError>(())
                }
            })
            .build()
            .expect("valid")
    };
    let mut engines = Vec::new();
    for _ in 0..3 {
        let engine =
            Engine::builder().store_url(schema.store_url()).register(ticking(&ran)).build().await.expect("starts");
        engines.push(engine);
    }
    let from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(10_300)).await;
    let to = chrono::Utc::now();
    // Every whole second strictly inside the window is a tick.
    let mut expected = Vec::new();
    let mut tick =
        from.duration_trunc(chrono::TimeDelta::seconds(1)).expect("truncates") + chrono::TimeDelta::seconds(1);
    while tick < to {
        expected.push(tick);
        tick += chrono::TimeDelta::seconds(1);
    }
    assert!(expected.len() >= 9, "about ten ticks are checked: {}", expected.len());
    // Wait for the executions of the last ticks to end, then stop the engines.
    let mut by_tick: HashMap<chrono::DateTime<chrono::Utc>, Vec<ExecutionId>> = HashMap::new();
    for _ in 0..100 {
        let history = engines[0].history(&sagaflow::store::ExecutionQuery::default()).await.expect("history");
        by_tick.clear();
        for s in &history {
            if let sagaflow::Trigger::Scheduled { fire_time, .. } = &s.trigger {
                assert_eq!(s.status, Status::Completed);
                by_tick.entry(*fire_time).or_default().push(s.id);
            }
        }
        if expected.iter().all(|t| by_tick.contains_key(t)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for e in &engines {
        e.shutdown().await;
    }
    for tick in &expected {
        let started = by_tick.get(tick).map_or(0, Vec::len);
        assert_eq!(started, 1, "the tick at {tick} started exactly one execution across the three engines");
    }
    assert!(by_tick.values().all(|ids| ids.len() == 1), "no tick started two executions: {by_tick:?}");
    let ran = ran.lock().unwrap().clone();
    for ids in by_tick.values() {
        assert_eq!(ran.iter().filter(|r| **r == ids[0]).count(), 1, "each tick's execution ran its step once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_start_runs_on_whichever_node_is_free() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let counter = Arc::new(Mutex::new(HashMap::new()));
    let submitter = Engine::builder()
        .store_url(schema.store_url())
        .cluster(ClusterOptions::default().capacity(0))
        .register(counted_chain("later", 1, &counter))
        .build()
        .await
        .expect("starts");
    let node = Engine::builder()
        .store_url(schema.store_url())
        .register(counted_chain("later", 1, &counter))
        .build()
        .await
        .expect("starts");
    let id = submitter.schedule_execution("later", json!({}), Duration::from_millis(500)).await.expect("scheduled");
    assert_eq!(node.get_state(id).await.expect("seen elsewhere").status, Status::Pending);
    let ended = tokio::time::timeout(Duration::from_secs(10), submitter.wait(id))
        .await
        .expect("the delayed execution runs")
        .expect("waits");
    assert_eq!(ended.status, Status::Completed);
    assert!(
        matches!(ended.trigger, sagaflow::Trigger::Delayed { at } if ended.started_at >= at),
        "it started at its time, not before: {:?} at {}",
        ended.trigger,
        ended.started_at
    );
    assert_eq!(counter.lock().unwrap().get(&(id, "s0".to_owned())), Some(&1), "it ran once, on the node");
    node.shutdown().await;
    submitter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_waiting_executions_to_another() {
    let Some(url) = database() else { return };
    let schema = Schema::new(url);
    let approval = || {
        Workflow::new("approval")
            .step_with(
                "request",
                |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
                Step::opts().await_approval(true),
            )
            .step_with(
                "finish",
                |ctx: Context| async move {
                    let approver: String = ctx.get("approver")?;
                    Ok::<_, StepError>(json!({ "approved_by": approver }))
                },
                Step::opts().after("request"),
            )
            .build()
            .expect("valid")
    };
    let first = Engine::builder().store_url(schema.store_url()).register(approval()).build().await.expect("starts");
    let id = first.start("approval", json!({})).await.expect("starts");
    until(&first, id, |s| s.status == Status::Awaiting).await;
    let second = Engine::builder().store_url(schema.store_url()).register(approval()).build().await.expect("starts");
    tokio::time::timeout(Duration::from_secs(10), first.drain()).await.expect("an idle node drains at once");
    second.resume(id, json!({ "approver": "night-shift" })).await.expect("resume is accepted");
    let ended = tokio::time::timeout(Duration::from_secs(10), second.wait(id))
        .await
        .expect("the other node finishes it")
        .expect("waits");
    assert_eq!(ended.status, Status::Completed);
    assert_eq!(ended.context["approved_by"], "night-shift");
    second.shutdown().await;
}
