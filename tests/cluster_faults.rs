//! The cluster under the faults of real deployments, with three node processes
//! (`examples/cluster_node.rs`) on the local PostgreSQL:
//!
//! - one node cut off from the database (a TCP proxy that blackholes it) for three
//!   times its lease while it runs steps, then healed;
//! - a node stopped with SIGSTOP for longer than its lease, then SIGCONT;
//! - the database server restarted in the middle of a run.
//!
//! Steps log their start and end (also when their future is dropped unfinished)
//! to a side file per node with wall-clock times; the checks hold those against
//! the guarantees: no step attempt runs on two nodes at once (the cut-off node
//! stops before its work is taken over), a resumed node starts nothing, every
//! execution ends, none is lost or doubled. Each test prints its figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sagaflow::{ExecutionId, Status};

use crate::cluster::{Node, Schema, all_completed, database, node_binary, runs, start_many, submitter, until_ended};
use crate::proxy::Proxy;

/// One line of a node's side file.
#[derive(Clone, Debug)]
struct Effect {
    kind: String,
    execution: String,
    step: String,
    attempt: u32,
    node: String,
    /// The node's identity in the cluster when the step started.
    identity: String,
    us: u64,
}

fn effects(path: &Path) -> Vec<Effect> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 7, "an effect line has seven fields: {l:?}");
            Effect {
                kind: f[0].into(),
                execution: f[1].into(),
                step: f[2].into(),
                attempt: f[3].parse().expect("attempt"),
                node: f[4].into(),
                identity: f[5].into(),
                us: f[6].parse().expect("time"),
            }
        })
        .collect()
}

/// One run of a step attempt: node, attempt, start and end (µs).
type Attempt = (String, u32, u64, u64);

/// The runs of each step (by execution and step) as `[start, end]` intervals in
/// µs; a run with no end yet lasts until `now`.
fn intervals(all: &[Effect], now: u64) -> HashMap<(String, String), Vec<Attempt>> {
    let mut open: HashMap<(String, String, u32, String), u64> = HashMap::new();
    let mut out: HashMap<(String, String), Vec<Attempt>> = HashMap::new();
    for e in all {
        let key = (e.execution.clone(), e.step.clone(), e.attempt, e.node.clone());
        match e.kind.as_str() {
            "start" => {
                open.insert(key, e.us);
            }
            _ => {
                let start = open.remove(&key).unwrap_or(e.us);
                out.entry((e.execution.clone(), e.step.clone())).or_default().push((
                    e.node.clone(),
                    e.attempt,
                    start,
                    e.us,
                ));
            }
        }
    }
    for ((execution, step, attempt, node), start) in open {
        out.entry((execution, step)).or_default().push((node, attempt, start, now));
    }
    out
}

/// Checks that no step attempt ran on two nodes at once; returns how many steps
/// ran more than once.
fn no_overlap(all: &[Effect]) -> usize {
    let now = unix_us();
    let mut reruns = 0;
    for ((execution, step), mut runs) in intervals(all, now) {
        runs.sort_by_key(|r| r.2);
        reruns += runs.len() - 1;
        for pair in runs.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.0 == b.0 || a.3 <= b.2, "{execution}/{step} ran on {} and {} at once: {runs:?}", a.0, b.0);
        }
    }
    reruns
}

fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// The database URL with its host and port replaced by the proxy's.
fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (auth, rest) = match rest.split_once('@') {
        Some((auth, rest)) => (format!("{auth}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.find(['/', '?']).map_or("", |i| &rest[i..]);
    format!("{scheme}://{auth}127.0.0.1:{port}{path}")
}

/// The address the URL names (host and port).
fn address(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
    let host = host.replace("localhost", "127.0.0.1");
    host.parse().expect("the test database is addressed as ip:port")
}

fn side_files(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(format!("{n}.effects"))).collect()
}

fn node_env(lease_ms: u64, step_ms: u64, effects: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SAGAFLOW_STEP_MS", step_ms.to_string()),
        ("SAGAFLOW_LEASE_MS", lease_ms.to_string()),
        ("SAGAFLOW_EFFECTS", effects.display().to_string()),
    ]
}

/// Waits until the side file at `path` holds at least `n` starts.
async fn until_started(path: &Path, n: usize, what: &str) {
    let started = Instant::now();
    while effects(path).iter().filter(|e| e.kind == "start").count() < n {
        assert!(started.elapsed() < Duration::from_secs(60), "{what} starts running steps");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_before_its_work_is_taken_over() {
    let Some(url) = database() else { return };
    // Timing matters here (short leases): no other test shares the server meanwhile.
    let schema = Schema::exclusive(url.clone());
    let binary = node_binary();
    let dir = tempfile::tempdir().unwrap();
    let files = side_files(dir.path(), &["a", "b", "c"]);
    // Leases of 3 s: short for a test, long enough that the other nodes renew
    // theirs on a loaded machine.
    const LEASE_MS: u64 = 3_000;
    // Long enough that `c` still holds work in flight when the fault hits.
    const STEP_MS: u64 = 1_000;
    let proxy = Proxy::start(address(&url)).await;
    // `c` starts first, so that it holds work when it is cut off.
    let c =
        Node::start_with(&binary, &schema, &through(&url, proxy.port), "c", &node_env(LEASE_MS, STEP_MS, &files[2]));
    let engine = submitter(&schema).await;
    let client = schema.client().await;
    let ids = start_many(&engine, 60).await;
    until_started(&files[2], 5, "the node behind the proxy").await;
    let nodes_sql = format!("SELECT count(*) FROM {}.nodes", schema.name);
    let before: i64 = client.query_one(&nodes_sql, &[]).await.unwrap().get(0);
    let a = Node::start_with(&binary, &schema, &url, "a", &node_env(LEASE_MS, STEP_MS, &files[0]));
    let b = Node::start_with(&binary, &schema, &url, "b", &node_env(LEASE_MS, STEP_MS, &files[1]));
    // The fault hits a running cluster: on a loaded machine the other nodes may
    // take a while to join.
    let joining = Instant::now();
    while client.query_one(&nodes_sql, &[]).await.unwrap().get::<_, i64>(0) < before + 2 {
        assert!(joining.elapsed() < Duration::from_secs(60), "nodes a and b join the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... while `c` runs steps, whose executions the others must then take over.
    let busy = Instant::now();
    loop {
        let c_effects = effects(&files[2]);
        let count = |kind: &str| c_effects.iter().filter(|e| e.kind == kind).count();
        if count("start") > count("end") {
            break;
        }
        assert!(busy.elapsed() < Duration::from_secs(60), "c runs steps");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.blackhole();
    let cut = unix_us();
    tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
    let healed = unix_us();
    proxy.heal();

    until_ended(&client, &schema, ids.len() as i64, Duration::from_secs(120)).await;
    let all_runs = runs(&client, &schema).await;
    all_completed(&engine, &ids, &all_runs).await;
    let all: Vec<Effect> = files.iter().flat_map(|f| effects(f)).collect();
    let reruns = no_overlap(&all);
    // Once its lease may have run out, the cut-off node starts nothing until it
    // can reach the database again.
    let lapsed = cut + LEASE_MS * 1000;
    let late: Vec<&Effect> =
        all.iter().filter(|e| e.node == "c" && e.kind == "start" && e.us > lapsed && e.us < healed).collect();
    assert!(late.is_empty(), "c started steps while cut off past its lease: {late:?}");
    let c_during = all.iter().filter(|e| e.node == "c" && e.kind == "start" && e.us > cut && e.us < healed).count();
    let taken_over = all.iter().filter(|e| e.node != "c" && e.kind == "start" && e.us > cut && e.us < healed).count();
    assert!(taken_over > 0, "the other nodes took c's work over while it was cut off");
    eprintln!(
        "blackhole: {} executions, {reruns} step re-runs, {c_during} starts on c while cut off (none past its lease), \
         {taken_over} on the others meanwhile, duplicates (overlapping attempts) 0, lost 0",
        ids.len()
    );
    for node in [a, b, c] {
        node.drain();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_starts_nothing_when_it_resumes() {
    let Some(url) = database() else { return };
    // Timing matters here (leases of 2 s): no other test shares the server meanwhile.
    let schema = Schema::exclusive(url.clone());
    let binary = node_binary();
    let dir = tempfile::tempdir().unwrap();
    let files = side_files(dir.path(), &["a", "b", "c"]);
    const LEASE_MS: u64 = 2_000;
    // Long enough that `c` still holds work in flight when the fault hits.
    const STEP_MS: u64 = 1_000;
    // `c` starts first, so that it holds work when it is stopped.
    let c = Node::start_with(&binary, &schema, &url, "c", &node_env(LEASE_MS, STEP_MS, &files[2]));
    let engine = submitter(&schema).await;
    let client = schema.client().await;
    let ids = start_many(&engine, 60).await;
    until_started(&files[2], 5, "node c").await;
    let mut nodes: Vec<Node> = ["a", "b"]
        .iter()
        .zip(&files)
        .map(|(n, f)| Node::start_with(&binary, &schema, &url, n, &node_env(LEASE_MS, STEP_MS, f)))
        .collect();
    nodes.push(c);
    let pid = nodes[2].child.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let stopped_at = unix_us();
    tokio::time::sleep(Duration::from_millis(3 * LEASE_MS)).await;
    let resumed_at = unix_us();
    signal("-CONT");

    until_ended(&client, &schema, ids.len() as i64, Duration::from_secs(120)).await;
    let all_runs = runs(&client, &schema).await;
    all_completed(&engine, &ids, &all_runs).await;
    let all: Vec<Effect> = files.iter().flat_map(|f| effects(f)).collect();
    // What c had started before the stop, under the identity it had then: after
    // SIGCONT nothing starts under that identity (it may join again under a new
    // one and claim work afresh, including executions it held).
    let c_starts: Vec<&Effect> = all.iter().filter(|e| e.node == "c" && e.kind == "start").collect();
    let before: Vec<&&Effect> = c_starts.iter().filter(|e| e.us <= stopped_at).collect();
    let old_identity = before.last().map(|e| e.identity.clone()).expect("c ran steps before it was stopped");
    let held_then: Vec<(&str, &str)> = before.iter().map(|e| (e.execution.as_str(), e.step.as_str())).collect();
    let stale: Vec<&&Effect> = c_starts.iter().filter(|e| e.us > resumed_at && e.identity == old_identity).collect();
    assert!(stale.is_empty(), "after SIGCONT c started nothing under its old identity: {stale:?}");
    let rejoined = c_starts.iter().filter(|e| e.us > resumed_at).count();
    let elsewhere = all.iter().filter(|e| e.node != "c" && held_then.iter().any(|(x, _)| *x == e.execution)).count();
    assert!(elsewhere > 0, "the stopped node's executions finished elsewhere");
    let reruns: usize = intervals(&all, unix_us()).values().map(|r| r.len() - 1).sum();
    eprintln!(
        "sigstop: {} executions, {reruns} step re-runs, {} steps held by c when stopped, 0 started under its old \
         identity after SIGCONT ({rejoined} under its new one), lost 0",
        ids.len(),
        held_then.len()
    );
    let c = nodes.pop().expect("c");
    c.drain();
    for node in nodes {
        node.drain();
    }
}

/// The cluster of the local server, as `pg_ctlcluster` names it.
fn local_cluster() -> Option<String> {
    let versions = std::fs::read_dir("/etc/postgresql").ok()?;
    versions.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_and_doubles_nothing() {
    let Some(url) = database() else { return };
    let Some(version) = local_cluster() else {
        crate::tools::require(
            "a local PostgreSQL server to restart (pg_ctlcluster)",
            false,
            "apt-get install postgresql",
        );
        return;
    };
    let schema = Schema::exclusive(url.clone());
    let binary = node_binary();
    let dir = tempfile::tempdir().unwrap();
    let files = side_files(dir.path(), &["a", "b", "c"]);
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .zip(&files)
        .map(|(n, f)| Node::start_with(&binary, &schema, &url, n, &node_env(10_000, 20, f)))
        .collect();
    let engine = submitter(&schema).await;
    let client = schema.client().await;

    let ids = start_many(&engine, 300).await;
    until_started(&files[0], 50, "node a").await;
    let restart = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(restart.success(), "the server restarts");
    let restarted_at = Instant::now();

    drop(client);
    let client = loop {
        match tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(_) if restarted_at.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the server is back within 30 s: {e}"),
        }
    };
    until_ended(&client, &schema, ids.len() as i64, Duration::from_secs(150)).await;
    let all_runs = runs(&client, &schema).await;
    all_completed(&engine, &ids, &all_runs).await;
    let history = engine.history(&Default::default()).await.expect("history");
    let ended: Vec<ExecutionId> = history.iter().map(|s| s.id).collect();
    assert_eq!(ended.len(), ids.len(), "no execution was lost or created twice");
    assert!(history.iter().all(|s| s.status == Status::Completed && s.steps.len() == 10));
    let all: Vec<Effect> = files.iter().flat_map(|f| effects(f)).collect();
    let reruns = no_overlap(&all);
    eprintln!(
        "restart: {} executions, {reruns} step attempts beyond the first (retries, re-runs), duplicates 0, lost 0, \
         all ended {:.1} s after the restart",
        ids.len(),
        restarted_at.elapsed().as_secs_f64()
    );
    for node in nodes {
        node.drain();
    }
}
