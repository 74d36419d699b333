//! Durable execution on SQLite: journal throughput with `synchronous=FULL` and
//! `NORMAL`, how long recovery takes after a `kill -9`, and the file's size under
//! a steady load with a retention.
//!
//! The recovery workload re-runs this benchmark binary as a child process (the
//! "victim", selected by the `SAGAFLOW_BENCH_VICTIM` environment variable), lets it
//! bring 10,000 executions in flight, kills it with SIGKILL and times the recovery
//! in this process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sagaflow::WorkflowDef;
use sagaflow::prelude::*;
use sagaflow::store::{SqliteStore, Store};
use tokio::time::Instant;

use crate::{Table, chain, median, ms, noop};

const VICTIM_ENV: &str = "SAGAFLOW_BENCH_VICTIM";
const IN_FLIGHT: usize = 10_000;

pub(crate) async fn run(table: &mut Table) {
    for (mode, target) in [("full", "≥ 40,000/s"), ("normal", "≥ 60,000/s")] {
        let name = format!("SQLite {mode}: 1,000 × 100-step chain");
        if table.wants(&name) {
            throughput(table, &name, mode, target).await;
        }
    }
    for mode in ["full", "normal"] {
        let name = format!("SQLite {mode}: one 10-step chain alone");
        if table.wants(&name) {
            lone_chain(table, &name, mode).await;
        }
    }
    let name = "SQLite: recovery of 10,000 in-flight executions after SIGKILL";
    if table.wants(name) {
        recovery(table, name).await;
    }
    let name = "SQLite normal: 1,000,000 executions, 1 s retention";
    if table.wants(name) {
        retention(table, name).await;
    }
}

/// 1,000 executions of a 100-step chain of no-op steps, all started at once:
/// 100,000 journaled steps.
async fn throughput(table: &mut Table, name: &str, mode: &str, target: &str) {
    const EXECUTIONS: usize = 1_000;
    const STEPS: usize = 100;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}?synchronous={mode}", dir.path().join("bench.db").display());
        let engine = Engine::builder().store_url(url).register(chain(STEPS)).build().await.expect("engine");
        let start = Instant::now();
        let ids = futures::future::join_all((0..EXECUTIONS).map(|_| engine.start("chain", json!({})))).await;
        let ends = futures::future::join_all(ids.into_iter().map(|id| engine.wait(id.expect("start")))).await;
        assert!(ends.into_iter().all(|s| s.expect("wait").status == Status::Completed));
        let elapsed = start.elapsed();
        engine.shutdown().await;
        rates.push(Duration::from_secs_f64(elapsed.as_secs_f64() / (EXECUTIONS * STEPS) as f64));
    }
    let per_step = median(rates);
    table.add(name, "durable steps/s", format!("{:.0}/s", 1.0 / per_step.as_secs_f64()), target);
}

/// One execution of a 10-step chain of no-op steps at a time: its wall time from
/// `start` to the end of `wait`, beside the cost of one commit of this file system
/// (each step's completion is committed before the next step starts, so the
/// chain costs about ten commits).
async fn lone_chain(table: &mut Table, name: &str, mode: &str) {
    const STEPS: usize = 10;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}?synchronous={mode}", dir.path().join("bench.db").display());
    let engine = Engine::builder().store_url(url).register(chain(STEPS)).build().await.expect("engine");
    let mut runs = Vec::new();
    for i in 0..25 {
        let start = Instant::now();
        let id = engine.start("chain", json!({})).await.expect("start");
        let state = engine.wait(id).await.expect("wait");
        assert_eq!(state.status, Status::Completed);
        if i > 0 {
            runs.push(start.elapsed());
        }
    }
    engine.shutdown().await;
    table.add(name, "start + wait", ms(median(runs)), "≤ 10 commits + 2 ms");
    if mode == "full" {
        table.add(name, "one commit (fsync) here", ms(fsync_cost(dir.path())), "-");
    }
}

/// The median time to append a small record to a file and `fdatasync` it.
fn fsync_cost(dir: &Path) -> Duration {
    use std::io::Write as _;
    let mut file = std::fs::File::create(dir.join("fsync.probe")).expect("probe file");
    let mut runs = Vec::new();
    for _ in 0..25 {
        let start = std::time::Instant::now();
        file.write_all(&[0u8; 128]).expect("write");
        file.sync_data().expect("fdatasync");
        runs.push(start.elapsed());
    }
    median(runs)
}

/// The workflow of the recovery workload: `s1` completes, `s2` hangs on its
/// first attempt (so it is running when the victim is killed) and counts its
/// later attempts, `s3` completes.
fn in_flight(s1_runs: Arc<AtomicUsize>, s2_starts: Arc<AtomicUsize>) -> WorkflowDef {
    Workflow::new("in_flight")
        .step("s1", move |_ctx: Context| {
            s1_runs.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, StepError>(()) }
        })
        .step_with(
            "s2",
            move |ctx: Context| {
                s2_starts.fetch_add(1, Ordering::Relaxed);
                async move {
                    if ctx.attempt() == 1 {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, StepError>(())
                }
            },
            Step::opts().after("s1").timeout("infinity"),
        )
        .step_with("s3", noop, Step::opts().after("s2"))
        .build()
        .expect("builds")
}

/// Entry point of the victim process, if this process is one.
pub(crate) fn victim_main() -> bool {
    let Ok(path) = std::env::var(VICTIM_ENV) else { return false };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(victim(Path::new(&path)));
    true
}

/// Brings [`IN_FLIGHT`] executions to the point where `s2` runs, waits until the
/// journal holds `s1`'s completion for all of them, says `ready` and waits to be
/// killed.
async fn victim(path: &Path) {
    let s2 = Arc::new(AtomicUsize::new(0));
    let def = in_flight(Arc::new(AtomicUsize::new(0)), Arc::clone(&s2));
    let url = format!("sqlite://{}", path.display());
    let engine = Engine::builder().store_url(url).register(def).build().await.expect("victim engine");
    let ids = futures::future::join_all((0..IN_FLIGHT).map(|_| engine.start("in_flight", json!({})))).await;
    assert!(ids.iter().all(Result::is_ok), "every start succeeds");
    while s2.load(Ordering::Relaxed) < IN_FLIGHT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reader = SqliteStore::open_read_only(path).await.expect("reader");
    loop {
        let live = reader.unfinished().await.expect("unfinished");
        if live.len() == IN_FLIGHT && live.iter().all(|e| !e.events.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ready");
    std::future::pending::<()>().await;
}

/// Kills a victim holding [`IN_FLIGHT`] executions in flight, then times a new
/// engine until every execution's interrupted step has started again.
async fn recovery(table: &mut Table, name: &str) {
    let mut builds = Vec::new();
    let mut resumed = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("victim.db");
        let exe = std::env::current_exe().expect("the benchmark binary");
        let mut child = Command::new(exe)
            .env(VICTIM_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the victim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("victim output");
        assert_eq!(line.trim(), "ready", "the victim reports its executions in flight");
        child.kill().expect("SIGKILL");
        child.wait().expect("the victim is gone");

        let s1 = Arc::new(AtomicUsize::new(0));
        let s2 = Arc::new(AtomicUsize::new(0));
        let def = in_flight(Arc::clone(&s1), Arc::clone(&s2));
        let start = Instant::now();
        let url = format!("sqlite://{}", path.display());
        let engine = Engine::builder().store_url(url).register(def).build().await.expect("engine");
        builds.push(start.elapsed());
        while s2.load(Ordering::Relaxed) < IN_FLIGHT {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        resumed.push(start.elapsed());
        assert_eq!(s1.load(Ordering::Relaxed), 0, "no completed step ran again");
        engine.shutdown().await;
    }
    table.add(name, "engine built (replayed)", ms(median(builds)), "-");
    table.add(name, "all steps re-dispatched", ms(median(resumed)), "≤ 1 s");
}

/// 1,000,000 one-step executions through an SQLite file, 1,000 at a time, of a
/// workflow whose ended executions are kept for one second: how many ended
/// executions the file holds at most, and how big it is after the first 100,000
/// and after the last, which retention keeps flat.
async fn retention(table: &mut Table, name: &str) {
    const TOTAL: usize = 1_000_000;
    const AT_ONCE: usize = 1_000;
    const SAMPLE_EVERY: usize = 100_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bench.db");
    let def = Workflow::new("kept").retention("1s").step("s0", noop).build().expect("builds");
    let engine = Engine::builder()
        .store_url(format!("sqlite://{}?synchronous=normal", path.display()))
        .register(def)
        .housekeeping_every(Duration::from_millis(250))
        .build()
        .await
        .expect("engine");
    let reader = SqliteStore::open_read_only(&path).await.expect("reader");
    let size = || {
        let wal = path.with_extension("db-wal");
        std::fs::metadata(&path).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
    };
    let (mut held, mut first_size) = (0, 0);
    let start = Instant::now();
    for done in (AT_ONCE..=TOTAL).step_by(AT_ONCE) {
        let ids = futures::future::join_all((0..AT_ONCE).map(|_| engine.start("kept", json!({})))).await;
        let ends = futures::future::join_all(ids.into_iter().map(|id| engine.wait(id.expect("start")))).await;
        assert!(ends.into_iter().all(|s| s.expect("wait").status == Status::Completed));
        if done % SAMPLE_EVERY == 0 {
            let query = sagaflow::store::ExecutionQuery { workflow: Some("kept".into()), limit: 0 };
            held = held.max(reader.list_finished(&query).await.expect("reads").len());
            if done == SAMPLE_EVERY {
                first_size = size();
            }
        }
    }
    let elapsed = start.elapsed();
    engine.shutdown().await;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    table.add(name, "executions/s", format!("{:.0}/s", TOTAL as f64 / elapsed.as_secs_f64()), "-");
    table.add(name, "ended ones held, most", held.to_string(), "about 1 s of them");
    table.add(name, "file after 100,000", mib(first_size), "-");
    table.add(name, "file after 1,000,000", mib(size()), "flat (≈ after 100,000)");
}
