//! Steps' concurrency and rate limits by key, and priorities: the limit holds
//! across executions (and across nodes on PostgreSQL), keys get fair shares
//! whatever order their work arrives in, freed slots go to the highest priority
//! first, a missing key fails the step by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow::prelude::*;
use sagaflow::store::ClusterOptions;
use sagaflow::{ExecutionState, StartOptions, Status, WorkflowDef};

/// What the limited step saw: how many ran at once per tenant, at most, and the
/// order attempts finished in.
#[derive(Default)]
struct Tracker {
    running: HashMap<String, usize>,
    most: HashMap<String, usize>,
    finished: Vec<String>,
    /// The `name` of each attempt, in the order they started.
    started: Vec<String>,
}

/// The tracker, and a gate the step waits at before it counts itself (closed:
/// the attempts that took slots wait until every execution has been started).
struct Probe {
    t: Mutex<Tracker>,
    go: tokio::sync::watch::Sender<bool>,
}

type Shared = Arc<Probe>;

fn probe(open: bool) -> Shared {
    Arc::new(Probe { t: Mutex::default(), go: tokio::sync::watch::channel(open).0 })
}

/// `charge`: one step limited to `limit` at once per `tenant_id`, taking `ms`.
fn charge(tracker: &Shared, limit: u32, ms: u64) -> WorkflowDef {
    let tracker = Arc::clone(tracker);
    Workflow::new("charge")
        .step_with(
            "charge",
            move |ctx: Context| {
                let tracker = Arc::clone(&tracker);
                async move {
                    let tenant: String = ctx.get("tenant_id")?;
                    let mut go = tracker.go.subscribe();
                    let _ = go.wait_for(|open| *open).await;
                    {
                        let mut t = tracker.t.lock().unwrap();
                        let now = t.running.entry(tenant.clone()).or_default();
                        *now += 1;
                        let now = *now;
                        let most = t.most.entry(tenant.clone()).or_default();
                        *most = (*most).max(now);
                        t.started.push(ctx.get_or("name", String::new()));
                    }
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let mut t = tracker.t.lock().unwrap();
                    *t.running.get_mut(&tenant).expect("counted") -= 1;
                    t.finished.push(tenant);
                    Ok::<_, StepError>(json!({ "charged": true }))
                }
            },
            Step::opts().concurrency(limit).concurrency_key("tenant_id"),
        )
        .build()
        .expect("valid")
}

async fn wait_all(engine: &Engine, ids: &[ExecutionId]) -> Vec<ExecutionState> {
    let mut ended = Vec::with_capacity(ids.len());
    for id in ids {
        let state = tokio::time::timeout(Duration::from_secs(120), engine.wait(*id)).await.expect("in time").unwrap();
        assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
        ended.push(state);
    }
    ended
}

/// Starts `per_key` executions for each of `keys` tenants, all of the first
/// tenant first, then all of the second, and so on: the order that starves the
/// later tenants under a first-come, first-served queue.
async fn start_by_tenant(engines: &[&Engine], keys: usize, per_key: usize) -> Vec<(usize, ExecutionId)> {
    let mut ids = Vec::new();
    for k in 0..keys {
        for i in 0..per_key {
            let engine = engines[(k * per_key + i) % engines.len()];
            ids.push((k, engine.start("charge", json!({ "tenant_id": format!("t{k}") })).await.unwrap()));
        }
    }
    ids
}

/// Every tenant ran at most `limit` at once and reached it; among the first
/// `rounds × limit × keys` attempts to finish, each tenant has its equal share
/// within ±10 %.
/// `slack`: the deviation allowed when ±10 % of a small share is less than
/// one execution (nodes that end their work milliseconds apart).
fn assert_limited_and_fair(tracker: &Shared, keys: usize, limit: usize, rounds: usize, slack: f64) {
    let t = tracker.t.lock().unwrap();
    for k in 0..keys {
        let most = t.most.get(&format!("t{k}")).copied().unwrap_or(0);
        assert_eq!(most, limit, "tenant t{k} ran {most} at once (limit {limit})");
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
            "tenant t{k} finished {share} of the first {window} (equal share {equal}): {shares:?}"
        );
    }
}

async fn limits_hold_and_tenants_share_fairly(engine: &Engine, tracker: &Shared) {
    let ids = start_by_tenant(&[engine], 10, 8).await;
    tracker.go.send_replace(true);
    let ids: Vec<ExecutionId> = ids.into_iter().map(|(_, id)| id).collect();
    wait_all(engine, &ids).await;
    assert_limited_and_fair(tracker, 10, 2, 3, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_limit_holds_across_executions_and_every_tenant_gets_its_share() {
    let tracker = probe(false);
    let engine = Engine::builder().register(charge(&tracker, 2, 40)).build().await.unwrap();
    limits_hold_and_tenants_share_fairly(&engine, &tracker).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_keyed_limit_holds_and_tenants_share_fairly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    let tracker = probe(false);
    let engine = Engine::builder().store_url(&url).register(charge(&tracker, 2, 40)).build().await.unwrap();
    limits_hold_and_tenants_share_fairly(&engine, &tracker).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_slots_go_to_the_highest_priority_first() {
    let tracker = probe(true);
    let engine = Engine::builder().register(charge(&tracker, 1, 60)).build().await.unwrap();
    let mut ids = Vec::new();
    let first = engine.start("charge", json!({ "tenant_id": "first" })).await.unwrap();
    ids.push(first);
    // Wait until it holds the one slot, so that the others queue.
    let began = Instant::now();
    while tracker.t.lock().unwrap().started.is_empty() {
        assert!(began.elapsed() < Duration::from_secs(10), "the first attempt starts");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for (name, priority) in [("low_a", 0), ("low_b", 0), ("urgent", 10), ("low_c", 0)] {
        // One tenant for all of them: one queue.
        let options = StartOptions::new().priority(priority);
        let started = engine.start_with("charge", json!({ "tenant_id": "first", "name": name }), options).await;
        ids.push(started.unwrap().id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_all(&engine, &ids).await;
    {
        let t = tracker.t.lock().unwrap();
        assert_eq!(
            t.started[1..],
            ["urgent", "low_a", "low_b", "low_c"],
            "priority first, then the order they waited in"
        );
        assert_eq!(t.most["first"], 1, "one at a time");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_lets_count_start_per_window_per_key() {
    let starts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = Arc::clone(&starts);
    let def = Workflow::new("notify")
        .step_with(
            "send",
            move |ctx: Context| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((ctx.get::<String>("account")?, Instant::now()));
                    Ok::<_, StepError>(())
                }
            },
            Step::opts().rate_limit(2, "400ms").rate_limit_key("account"),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let began = Instant::now();
    let mut ids = Vec::new();
    for account in ["a", "a", "a", "a", "a", "b", "b"] {
        ids.push(engine.start("notify", json!({ "account": account })).await.unwrap());
    }
    wait_all(&engine, &ids).await;
    let starts = starts.lock().unwrap().clone();
    let after = |account: &str| -> Vec<Duration> {
        let mut at: Vec<Duration> =
            starts.iter().filter(|(a, _)| a == account).map(|(_, t)| t.duration_since(began)).collect();
        at.sort();
        at
    };
    let a = after("a");
    assert_eq!(a.len(), 5);
    // Two per 400 ms: the third and fourth wait a window, the fifth two.
    assert!(a[1] < Duration::from_millis(300), "a burst of two goes at once: {a:?}");
    assert!(a[2] >= Duration::from_millis(400) && a[3] >= Duration::from_millis(400), "{a:?}");
    assert!(a[4] >= Duration::from_millis(800), "{a:?}");
    let b = after("b");
    assert!(b[1] < Duration::from_millis(300), "another account has its own window: {b:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_fails_the_step_naming_it_and_bad_limits_do_not_build() {
    let tracker = probe(true);
    let engine = Engine::builder().register(charge(&tracker, 2, 1)).build().await.unwrap();
    let id = engine.start("charge", json!({ "customer": "c1" })).await.unwrap();
    let ended = engine.wait(id).await.unwrap();
    assert_eq!(ended.status, Status::Failed);
    let failure = ended.failure.expect("a failure");
    assert_eq!(failure.error.kind(), "limit_key_missing", "{failure:?}");
    assert!(
        failure.error.message().contains("step `charge`") && failure.error.message().contains("`tenant_id`"),
        "{}",
        failure.error.message()
    );
    engine.shutdown().await;

    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let zero = Workflow::new("w").step_with("s", noop, Step::opts().concurrency(0)).build().unwrap_err();
    assert!(zero.to_string().contains("concurrency") && zero.to_string().contains("`s`"), "{zero}");
    let keyless = Workflow::new("w").step_with("s", noop, Step::opts().concurrency_key("tenant")).build().unwrap_err();
    assert!(keyless.to_string().contains("`concurrency_key` is set without `concurrency`"), "{keyless}");
    let rate = Workflow::new("w").step_with("s", noop, Step::opts().rate_limit(5, "soon")).build().unwrap_err();
    assert!(rate.to_string().contains("rate_limit"), "{rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_nodes_hold_one_limit_and_share_it_fairly() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let tracker = probe(false);
    let options = ClusterOptions::default().poll(Duration::from_millis(50));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let node = Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(charge(&tracker, 2, 150))
            .build()
            .await;
        nodes.push(node.expect("a node starts"));
    }
    let refs: Vec<&Engine> = nodes.iter().collect();
    let ids = start_by_tenant(&refs, 10, 16).await;
    let client = schema.client().await;
    crate::cluster::until_queued_for_slots(&client, &schema, 160).await;
    tracker.go.send_replace(true);
    let began = Instant::now();
    for (_, id) in &ids {
        let state = tokio::time::timeout(Duration::from_secs(180), nodes[0].wait(*id)).await.expect("in time").unwrap();
        assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    }
    eprintln!("8 rounds of 150 ms took {:?}", began.elapsed());
    // A slot freed on any node is announced to every node: over five rounds
    // each tenant's share is within ±10 % of the equal one (10 of 100).
    assert_limited_and_fair(&tracker, 10, 2, 5, 0.0);
    let left: i64 =
        client.query_one(&format!("SELECT count(*) FROM {}.limit_slots", schema.name), &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "every slot was given back");
    for node in nodes {
        node.shutdown().await;
    }
}

/// `node`'s count of the slots of `key` freed, once its listener listens.
async fn freed_count(node: &sagaflow::store::PostgresStore, key: &str) -> tokio::sync::watch::Receiver<u64> {
    use sagaflow::store::Cluster as _;
    let began = Instant::now();
    loop {
        if let Some(count) = node.slots_freed("w.s", key) {
            return count;
        }
        assert!(began.elapsed() < Duration::from_secs(10), "the node listens");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `count` grew past `seen`; returns by how much.
async fn grew(count: &mut tokio::sync::watch::Receiver<u64>, seen: u64) -> u64 {
    tokio::time::timeout(Duration::from_secs(5), count.changed()).await.expect("announced in time").unwrap();
    count.borrow_and_update().wrapping_sub(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_slot_freed_on_one_node_is_announced_to_the_others_under_its_key() {
    use sagaflow::store::{Cluster as _, PostgresStore};
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let a = PostgresStore::connect(&schema.store_url()).await.unwrap();
    let b = PostgresStore::connect(&schema.store_url()).await.unwrap();
    for node in [&a, &b] {
        node.rejoin(Duration::from_secs(30)).await.unwrap();
    }
    // `a` holds the one slot of `t`; two tickets of `b` wait behind it.
    let held = a.queue_for_slot("w.s", "t", 0).await.unwrap();
    assert_eq!(a.take_slot_behind(held, "w.s", "t", 1).await.unwrap(), 0, "a free slot is taken");
    let first = b.queue_for_slot("w.s", "t", 0).await.unwrap();
    let second = b.queue_for_slot("w.s", "t", 0).await.unwrap();
    assert_eq!(b.take_slot_behind(first, "w.s", "t", 1).await.unwrap(), 1, "behind the held slot");
    assert_eq!(b.take_slot_behind(second, "w.s", "t", 1).await.unwrap(), 2, "and the first ticket");
    freed_count(&b, "t").await;
    // Past the wake-up of every count that the listener's start made.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut t, other) = (freed_count(&b, "t").await, freed_count(&b, "u").await);
    let seen = *t.borrow_and_update();
    let began = Instant::now();
    a.free_slot(held).await.unwrap();
    assert_eq!(grew(&mut t, seen).await, 1, "one slot freed, announced on the other node");
    eprintln!("a slot freed on one node was announced on another after {:?}", began.elapsed());
    assert!(!other.has_changed().unwrap(), "another key's waiters are not woken");
    assert_eq!(b.take_slot_behind(first, "w.s", "t", 1).await.unwrap(), 0, "the next ticket takes it");
    assert_eq!(b.take_slot_behind(second, "w.s", "t", 1).await.unwrap(), 1);
    // Leaving the queue is announced too: a ticket behind it may move up.
    let seen = *t.borrow_and_update();
    b.free_slot(second).await.unwrap();
    assert_eq!(grew(&mut t, seen).await, 1);

    // A key too long to name in a notification: every waiter is woken.
    let long = "k".repeat(9_000);
    let mut counted = freed_count(&b, &long).await;
    let seen = *counted.borrow_and_update();
    let ticket = a.queue_for_slot("w.s", &long, 0).await.unwrap();
    a.free_slot(ticket).await.unwrap();
    assert!(grew(&mut counted, seen).await >= 1, "a long key's slot is announced to all");
    b.free_slot(first).await.unwrap();
}

/// The nodes' `charge` runs of tenant `t` recorded so far, per node.
async fn charges(client: &tokio_postgres::Client, schema: &crate::cluster::Schema) -> Vec<String> {
    crate::cluster::runs(client, schema).await.into_iter().filter(|r| r.step == "charge").map(|r| r.node).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_killed_node_s_slots_return_within_its_lease() {
    use crate::cluster::{Node, node_binary, submitter};
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let binary = node_binary();
    const LEASE_MS: u64 = 1_500;
    // `b` holds both slots of tenant `t` with steps that never end.
    let mut b = Node::start(&binary, &schema, "b", 3_600_000, LEASE_MS);
    let engine = submitter(&schema).await;
    let client = schema.client().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(engine.start("limited", json!({ "tenant": "t" })).await.unwrap());
    }
    let began = Instant::now();
    while charges(&client, &schema).await.len() < 2 {
        assert!(began.elapsed() < Duration::from_secs(30), "node b takes both slots");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let others: Vec<Node> = ["a", "c"].iter().map(|n| Node::start(&binary, &schema, n, 20, LEASE_MS)).collect();
    for _ in 0..3 {
        ids.push(engine.start("limited", json!({ "tenant": "t" })).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(charges(&client, &schema).await, ["b", "b"], "while b lives, its two slots are the tenant's two");

    b.child.kill().expect("SIGKILL");
    b.child.wait().expect("the node is gone");
    let killed = Instant::now();
    while charges(&client, &schema).await.len() < 3 {
        assert!(killed.elapsed() < Duration::from_secs(30), "another node runs the tenant's next charge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let returned = killed.elapsed();
    // Within the lease, plus the pause between two asks for a slot and a claim.
    assert!(returned < Duration::from_millis(LEASE_MS + 2_000), "the slots came back after {returned:?}");
    for id in &ids {
        let state = tokio::time::timeout(Duration::from_secs(60), engine.wait(*id)).await.expect("in time").unwrap();
        assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    }
    eprintln!("a killed node's slots came back {returned:?} after the kill (lease {LEASE_MS} ms)");
    for node in others {
        node.drain();
    }
}
