//! The chaos test: a worker process (`examples/chaos_worker.rs`) runs 510
//! executions of six shapes (chains, fan-out/fan-in, a retried step, a snooze,
//! an await resumed from outside, a saga that rolls back) on an SQLite file; the
//! test kills it with SIGKILL at random moments, at least ten times, starting it
//! again each time, and then holds the side effects the steps logged against the
//! guarantees:
//!
//! - every execution reaches its expected final state, none is lost;
//! - a step ran again only after a kill: its runs are in distinct processes, so at
//!   most once per kill;
//! - no step's side effect comes before the last run of any step it follows (the
//!   write-ahead rule: a step starts only once the results it follows are
//!   committed, so those never run again);
//! - compensations ran for exactly the steps that completed;
//! - while a worker runs, the file is locked against a second engine, naming the
//!   worker's process, and readable read-only.
//!
//! The kill moments come from a seed, printed at the start; set
//! `SAGAFLOW_CHAOS_SEED` to replay a run.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagaflow::store::{ExecutionQuery, SqliteStore, Store, StoreError};
use sagaflow::{ExecutionState, Status, StepStatus};

const EXECUTIONS: usize = 510;
const KILLS: usize = 10;

/// Builds the worker example and returns its path.
fn worker() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "chaos_worker", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the chaos_worker example builds");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "chaos_worker")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the worker's executable")
}

/// One side effect.
#[derive(Clone, Debug)]
struct Effect {
    kind: String,
    execution: String,
    step: String,
    pid: u32,
}

fn effects(path: &Path) -> Vec<Effect> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "every line was written whole");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 5, "a side-effect line has five fields: {l:?}");
            Effect { kind: f[0].into(), execution: f[1].into(), step: f[2].into(), pid: f[4].parse().expect("pid") }
        })
        .collect()
}

/// A worker, once it says it is ready (its engine has recovered the file).
fn spawn(worker: &Path, db: &Path, side: &Path) -> Child {
    let mut child = Command::new(worker)
        .args([db.as_os_str(), side.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).expect("the worker's first line");
    assert_eq!(line.trim(), "ready", "the worker's engine started");
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    child
}

/// A small deterministic generator (xorshift), so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The steps each step follows, by shape.
fn dependencies(shape: &str) -> Vec<(&'static str, Vec<&'static str>)> {
    match shape {
        "chain" => vec![("c2", vec!["c1"]), ("c3", vec!["c2"]), ("c4", vec!["c3"]), ("c5", vec!["c4"])],
        "fan" => vec![
            ("branch0", vec!["root"]),
            ("branch1", vec!["root"]),
            ("branch2", vec!["root"]),
            ("branch3", vec!["root"]),
            ("join", vec!["branch0", "branch1", "branch2", "branch3"]),
        ],
        "retry" => vec![("flaky", vec!["prepare"]), ("finish", vec!["flaky"])],
        "nap" => vec![("nap", vec!["prepare"]), ("wake", vec!["nap"])],
        "approval" => vec![("approve", vec!["submit"]), ("ship", vec!["approve"])],
        "saga" => vec![("charge", vec!["reserve"]), ("ship", vec!["charge"])],
        other => panic!("unknown shape {other}"),
    }
}

#[test]
fn a_worker_killed_at_random_moments_loses_nothing_and_repeats_only_what_was_in_flight() {
    let seed = std::env::var("SAGAFLOW_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("chaos seed {seed} (SAGAFLOW_CHAOS_SEED={seed} replays the kill moments)");
    let mut rng = Rng(seed | 1);
    let worker = worker();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chaos.db");
    let side = dir.path().join("effects.log");
    let started = Instant::now();

    let mut child = spawn(&worker, &db, &side);
    let mut kills = 0;
    let mut pids = vec![child.id()];
    while kills < KILLS {
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        if kills == 0 {
            held_while_running(&db, child.id());
        }
        assert!(child.try_wait().unwrap().is_none(), "the worker is still at work when it is killed ({kills} kills)");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        kills += 1;
        child = spawn(&worker, &db, &side);
        pids.push(child.id());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the last worker did not finish within 120 s (seed {seed})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the last worker finished its work (seed {seed})");

    let states = final_states(&db);
    let effects = effects(&side);
    let mut by_step: HashMap<(&str, &str), Vec<(usize, &Effect)>> = HashMap::new();
    for (i, e) in effects.iter().enumerate() {
        by_step.entry((e.execution.as_str(), e.step.as_str())).or_default().push((i, e));
    }
    let runs_of = |execution: &str, step: &str| -> Vec<(usize, &Effect)> {
        by_step
            .get(&(execution, step))
            .map(|v| v.iter().filter(|(_, e)| e.kind == "run" || e.kind == "await").cloned().collect())
            .unwrap_or_default()
    };

    // Every execution ended as its shape says; none is missing.
    assert_eq!(states.len(), EXECUTIONS, "every execution started and ended (seed {seed})");
    let mut reruns = 0;
    for state in states.values() {
        let id = state.id.to_string();
        let shape = state.workflow.as_str();
        let expected = if shape == "saga" { Status::RolledBack } else { Status::Completed };
        assert_eq!(state.status, expected, "{shape} {id} (seed {seed})");

        // Runs again only after kills: one run per process at most.
        for step in &state.steps {
            let runs = runs_of(&id, &step.name);
            let processes: HashSet<u32> = runs.iter().map(|(_, e)| e.pid).collect();
            assert_eq!(processes.len(), runs.len(), "{id}/{}: ran twice in one process: {runs:?}", step.name);
            if step.status == StepStatus::Completed || step.status == StepStatus::Compensated {
                assert!(!runs.is_empty(), "{id}/{}: completed without running", step.name);
            }
            reruns += runs.len().saturating_sub(1);
        }

        // Nothing ran before the last run of what it follows: no attempt of a
        // step (failed, snoozed or not) precedes any attempt of its dependencies.
        let attempts_of = |step: &str| -> Vec<usize> {
            by_step
                .get(&(id.as_str(), step))
                .map(|v| v.iter().filter(|(_, e)| e.kind != "compensate").map(|(i, _)| *i).collect())
                .unwrap_or_default()
        };
        for (step, after) in dependencies(shape) {
            let Some(&first) = attempts_of(step).first() else { continue };
            for dep in after {
                let last = attempts_of(dep).last().copied();
                assert!(
                    last.is_some_and(|l| l < first),
                    "{shape} {id}: `{step}` ran before the last run of `{dep}` (seed {seed}): {:?} / {:?}",
                    by_step.get(&(id.as_str(), dep)),
                    by_step.get(&(id.as_str(), step))
                );
            }
        }

        // Compensations: exactly the steps that completed.
        let compensated: HashSet<&str> =
            effects.iter().filter(|e| e.kind == "compensate" && e.execution == id).map(|e| e.step.as_str()).collect();
        if shape == "saga" {
            assert_eq!(compensated, HashSet::from(["reserve", "charge"]), "{id} (seed {seed})");
            let rollback = state.rollback.as_ref().expect("a rollback report");
            assert_eq!(rollback.compensated, ["charge", "reserve"], "{id}: in reverse order");
        } else {
            assert!(compensated.is_empty(), "{id}: no compensation outside the saga");
        }
    }
    assert!(effects.iter().all(|e| pids.contains(&e.pid)), "every effect comes from one of the workers");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "chaos: {kills} kills, {} executions, {} side effects, {reruns} step re-runs, lost 0, {seconds:.1} s (seed {seed})",
        states.len(),
        effects.len()
    );
}

/// While a worker holds the file: a second store cannot open it for writing and
/// learns which process holds it; a read-only store reads it.
fn held_while_running(db: &Path, pid: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let err = SqliteStore::open(db).await.expect_err("the worker holds the file");
        match err {
            StoreError::Locked { holder, .. } => {
                assert!(holder.contains(&format!("process {pid}")), "the holder is the worker: {holder}")
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let reader = SqliteStore::open_read_only(db).await.expect("a read-only store opens beside the worker");
        reader.unfinished().await.expect("and reads");
    });
}

fn final_states(db: &Path) -> HashMap<String, ExecutionState> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).await.expect("the file opens once the worker is gone");
        let left = store.unfinished().await.unwrap();
        assert!(
            left.is_empty(),
            "no execution is left unfinished: {:?}",
            left.iter().map(|e| (&e.execution.workflow, e.execution.id, e.events.len())).collect::<Vec<_>>()
        );
        let all = store.list_finished(&ExecutionQuery::default()).await.unwrap();
        all.into_iter().map(|s| (s.id.to_string(), s)).collect()
    })
}
