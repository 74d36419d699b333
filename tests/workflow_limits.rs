//! A workflow's own concurrency and rate limits by key: at most `n` executions
//! of a tenant in progress at once (on PostgreSQL, across nodes), tenants served
//! fairly whatever order their starts came in, a queued execution cancelled at
//! once, a waiting one giving its slot up, a start without the key refused by
//! name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{EngineError, ExecutionState, Status, WorkflowDef};

/// What the executions saw: how many of each tenant were between their first
/// step's start and their last step's end at once, at most, and the order they
/// ended in.
#[derive(Default)]
struct Tracker {
    running: HashMap<String, usize>,
    most: HashMap<String, usize>,
    finished: Vec<String>,
}

/// The tracker, and a gate the first step waits at before it counts itself
/// (closed: the executions that took slots wait until every one is started).
struct Probe {
    t: Mutex<Tracker>,
    go: tokio::sync::watch::Sender<bool>,
}

fn probe(open: bool) -> Arc<Probe> {
    Arc::new(Probe { t: Mutex::default(), go: tokio::sync::watch::channel(open).0 })
}

/// `import`: two steps, at most `limit` executions at once per `tenant_id`; the
/// second step takes `ms`.
fn import(probe: &Arc<Probe>, limit: u32, ms: u64) -> WorkflowDef {
    let (begin, end) = (Arc::clone(probe), Arc::clone(probe));
    Workflow::new("import")
        .concurrency(limit)
        .concurrency_key("tenant_id")
        .step("begin", move |ctx: Context| {
            let probe = Arc::clone(&begin);
            async move {
                let tenant: String = ctx.get("tenant_id")?;
                let mut go = probe.go.subscribe();
                let _ = go.wait_for(|open| *open).await;
                let mut t = probe.t.lock().unwrap();
                let now = t.running.entry(tenant.clone()).or_default();
                *now += 1;
                let now = *now;
                let most = t.most.entry(tenant).or_default();
                *most = (*most).max(now);
                Ok::<_, StepError>(())
            }
        })
        .step_with(
            "end",
            move |ctx: Context| {
                let probe = Arc::clone(&end);
                async move {
                    let tenant: String = ctx.get("tenant_id")?;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let mut t = probe.t.lock().unwrap();
                    *t.running.get_mut(&tenant).expect("counted") -= 1;
                    t.finished.push(tenant);
                    Ok::<_, StepError>(())
                }
            },
            Step::opts().after("begin"),
        )
        .build()
        .expect("valid")
}

async fn ended(engine: &Engine, id: ExecutionId) -> ExecutionState {
    tokio::time::timeout(Duration::from_secs(180), engine.wait(id)).await.expect("in time").unwrap()
}

/// Starts `per_key` executions for each of `keys` tenants, all of the first
/// tenant's first: the order that starves later tenants under a plain queue.
async fn start_by_tenant(engines: &[&Engine], keys: usize, per_key: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for k in 0..keys {
        for i in 0..per_key {
            let engine = engines[(k * per_key + i) % engines.len()];
            ids.push(engine.start("import", json!({ "tenant_id": format!("t{k}") })).await.unwrap());
        }
    }
    ids
}

/// Every tenant had at most `limit` executions in progress and reached it;
/// among the first `rounds × limit × keys` to end, each tenant has its equal
/// share within ±10 %.
/// `slack`: the deviation allowed when ±10 % of a small share is less than
/// one execution (nodes that end their work milliseconds apart).
fn assert_limited_and_fair(probe: &Probe, keys: usize, limit: usize, rounds: usize, slack: f64) {
    let t = probe.t.lock().unwrap();
    for k in 0..keys {
        let most = t.most.get(&format!("t{k}")).copied().unwrap_or(0);
        assert_eq!(most, limit, "tenant t{k} had {most} executions in progress at once (limit {limit})");
    }
    let window = rounds * limit * keys;
    let mut shares: HashMap<&str, usize> = HashMap::new();
    for tenant in &t.finished[..window] {
        *shares.entry(tenant.as_str()).or_default() += 1;
    }
    let equal = (rounds * limit) as f64;
    let mut seen: Vec<(&str, usize)> = shares.iter().map(|(k, n)| (*k, *n)).collect();
    seen.sort_unstable();
    eprintln!("shares of the first {window} to end (equal share {equal}): {seen:?}");
    for k in 0..keys {
        let share = shares.get(format!("t{k}").as_str()).copied().unwrap_or(0) as f64;
        assert!(
            (share - equal).abs() <= (equal * 0.1).max(slack),
            "tenant t{k} ended {share} of the first {window} (equal share {equal}): {shares:?}"
        );
    }
}

async fn limit_holds_and_tenants_share_fairly(engine: &Engine, probe: &Probe) {
    let ids = start_by_tenant(&[engine], 10, 8).await;
    probe.go.send_replace(true);
    for id in ids {
        let state = ended(engine, id).await;
        assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    }
    assert_limited_and_fair(probe, 10, 2, 3, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_s_keyed_limit_holds_across_its_steps_and_tenants_share_fairly() {
    let probe = probe(false);
    let engine = Engine::builder().register(import(&probe, 2, 30)).build().await.unwrap();
    limit_holds_and_tenants_share_fairly(&engine, &probe).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_workflow_s_keyed_limit_holds_and_tenants_share_fairly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("workflow-limits.db").display());
    let probe = probe(false);
    let engine = Engine::builder().store_url(&url).register(import(&probe, 2, 30)).build().await.unwrap();
    limit_holds_and_tenants_share_fairly(&engine, &probe).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_execution_cancelled_ends_at_once_and_a_singleton_runs_its_queue_in_order() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let order: Arc<Mutex<Vec<u32>>> = Arc::default();
    let (wait, seen) = (Arc::clone(&gate), Arc::clone(&order));
    let def = Workflow::new("singleton")
        .concurrency(1)
        .concurrency_key("tenant_id")
        .step("work", move |ctx: Context| {
            let (gate, seen) = (Arc::clone(&wait), Arc::clone(&seen));
            async move {
                let n: u32 = ctx.get("n")?;
                seen.lock().unwrap().push(n);
                if n == 0 {
                    gate.notified().await;
                }
                Ok::<_, StepError>(())
            }
        })
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let first = engine.start("singleton", json!({ "tenant_id": "t", "n": 0 })).await.unwrap();
    let began = Instant::now();
    while order.lock().unwrap().is_empty() {
        assert!(began.elapsed() < Duration::from_secs(10), "the first one starts");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut queued = Vec::new();
    for n in 1..=3 {
        queued.push(engine.start("singleton", json!({ "tenant_id": "t", "n": n })).await.unwrap());
    }
    let doomed = engine.start("singleton", json!({ "tenant_id": "t", "n": 99 })).await.unwrap();
    let other = engine.start("singleton", json!({ "tenant_id": "u", "n": 7 })).await.unwrap();
    assert_eq!(ended(&engine, other).await.status, Status::Completed, "another key has its own slot");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*order.lock().unwrap(), [0, 7], "the queued ones of `t` wait while the first holds the slot");

    engine.cancel(doomed, "not needed".into()).await.unwrap();
    let state = tokio::time::timeout(Duration::from_secs(5), engine.wait(doomed)).await.expect("at once").unwrap();
    assert_eq!(state.status, Status::Cancelled, "cancelled while it waited, with the slot still held");
    gate.notify_one();
    for id in queued.into_iter().chain([first]) {
        assert_eq!(ended(&engine, id).await.status, Status::Completed);
    }
    assert_eq!(*order.lock().unwrap(), [0, 7, 1, 2, 3], "one at a time, in the order they came; 99 never ran");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_waiting_for_approval_gives_its_slot_up_and_takes_one_again_to_go_on() {
    let runs: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&runs);
    let after = Arc::clone(&runs);
    let def = Workflow::new("review")
        .concurrency(1)
        .concurrency_key("tenant_id")
        .step_with(
            "approve",
            |_ctx| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().await_approval(true),
        )
        .step_with(
            "publish",
            move |ctx: Context| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push(ctx.get("doc")?);
                    Ok::<_, StepError>(())
                }
            },
            Step::opts().after("approve"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let waiting = engine.start("review", json!({ "tenant_id": "t", "doc": "a" })).await.unwrap();
    let began = Instant::now();
    while engine.get_state(waiting).await.unwrap().status != Status::Awaiting {
        assert!(began.elapsed() < Duration::from_secs(10), "the first one waits for approval");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let next = engine.start("review", json!({ "tenant_id": "t", "doc": "b" })).await.unwrap();
    let began = Instant::now();
    while engine.get_state(next).await.unwrap().status != Status::Awaiting {
        assert!(began.elapsed() < Duration::from_secs(10), "the slot of a waiting execution is free for the next");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.resume(next, json!({})).await.unwrap();
    assert_eq!(ended(&engine, next).await.status, Status::Completed);
    engine.resume(waiting, json!({})).await.unwrap();
    assert_eq!(ended(&engine, waiting).await.status, Status::Completed, "it takes a slot again and goes on");
    assert_eq!(*after.lock().unwrap(), ["b", "a"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_s_rate_limit_spaces_its_executions_per_key() {
    let begins: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = Arc::clone(&begins);
    let def = Workflow::new("sync")
        .rate_limit(2, "400ms")
        .rate_limit_key("account")
        .step("pull", move |ctx: Context| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push((ctx.get::<String>("account")?, Instant::now()));
                Ok::<_, StepError>(())
            }
        })
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let began = Instant::now();
    let mut ids = Vec::new();
    for account in ["a", "a", "a", "a", "a", "b", "b"] {
        ids.push(engine.start("sync", json!({ "account": account })).await.unwrap());
    }
    for id in ids {
        assert_eq!(ended(&engine, id).await.status, Status::Completed);
    }
    let begins = begins.lock().unwrap().clone();
    let of = |account: &str| -> Vec<Duration> {
        let mut at: Vec<Duration> =
            begins.iter().filter(|(a, _)| a == account).map(|(_, t)| t.duration_since(began)).collect();
        at.sort();
        at
    };
    let a = of("a");
    assert!(a[1] < Duration::from_millis(300), "a burst of two goes at once: {a:?}");
    assert!(a[2] >= Duration::from_millis(400) && a[3] >= Duration::from_millis(400), "{a:?}");
    assert!(a[4] >= Duration::from_millis(800), "{a:?}");
    let b = of("b");
    assert!(b[1] < Duration::from_millis(300), "another account has its own window: {b:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_the_key_is_refused_by_name_and_bad_limits_do_not_build() {
    let probe = probe(true);
    let engine = Engine::builder().register(import(&probe, 2, 1)).build().await.unwrap();
    let refused = engine.start("import", json!({ "customer": "c1" })).await.unwrap_err();
    assert!(matches!(refused, EngineError::InvalidInput { ref workflow, .. } if workflow == "import"), "{refused:?}");
    assert!(
        refused.to_string().contains("`tenant_id`") && refused.to_string().contains("concurrency_key"),
        "{refused}"
    );
    engine.shutdown().await;

    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let zero = Workflow::new("w").concurrency(0).step("s", noop).build().unwrap_err();
    assert!(zero.to_string().contains("`concurrency`") && zero.to_string().contains("at least 1"), "{zero}");
    let keyless = Workflow::new("w").concurrency_key("tenant").step("s", noop).build().unwrap_err();
    assert!(keyless.to_string().contains("`concurrency_key` is set without `concurrency`"), "{keyless}");
    let rate = Workflow::new("w").rate_limit(5, "soon").step("s", noop).build().unwrap_err();
    assert!(rate.to_string().contains("rate_limit"), "{rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_nodes_hold_a_workflow_s_limit_and_share_it_fairly() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let probe = probe(false);
    let options = ClusterOptions::default().poll(Duration::from_millis(50));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node = Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(import(&probe, 2, 150))
            .build()
            .await;
        nodes.push(node.expect("a node starts"));
    }
    let refs: Vec<&Engine> = nodes.iter().collect();
    let ids = start_by_tenant(&refs, 10, 16).await;
    let client = schema.client().await;
    crate::cluster::until_queued_for_slots(&client, &schema, 160).await;
    probe.go.send_replace(true);
    let began = Instant::now();
    for id in ids {
        let state = ended(&nodes[0], id).await;
        assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    }
    eprintln!("8 rounds of 150 ms took {:?}", began.elapsed());
    // A slot freed on any node is announced to every node: over five rounds
    // each tenant's share is within ±10 % of the equal one (10 of 100).
    assert_limited_and_fair(&probe, 10, 2, 5, 0.0);
    let left: i64 =
        client.query_one(&format!("SELECT count(*) FROM {}.limit_slots", schema.name), &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "every slot was given back");
    for node in nodes {
        node.shutdown().await;
    }
}
