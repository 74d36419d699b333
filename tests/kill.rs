//! The kill test: a worker process (`examples/kill_worker.rs`) runs 500 executions
//! of a 5-step workflow with short sleeps against an SQLite file, plus one snoozed
//! and one awaiting execution; the test kills it with SIGKILL while they run,
//! starts it again, and checks what ran against what the store recorded:
//!
//! - all 500 executions completed;
//! - every step's completion is recorded exactly once: for each step, exactly one
//!   run with the attempt number the store holds as its last attempt;
//! - no completed step ran twice: every step completion that was committed when
//!   the worker was killed (read from the file between the two runs) is the step's
//!   final attempt, and the second process never ran that step; no step ran with a
//!   higher attempt number than its final one;
//! - the timers armed before the kill (a 3 s snooze, a 3 s await timeout) fired in
//!   the second process, not before their original due time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagaflow::store::{ExecutionQuery, SqliteStore, Store};
use sagaflow::{ExecutionState, Status, StepStatus};

/// Builds the worker example and returns its path.
fn worker() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "kill_worker", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the kill_worker example builds");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "kill_worker")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the worker's executable")
}

/// One line of the worker's side file.
#[derive(Debug, Clone)]
struct Record {
    kind: String,
    execution: String,
    step: String,
    attempt: u32,
    pid: u32,
    unix_ms: i64,
}

/// The complete lines of the side file (while the worker runs, a reader can see
/// a line that is still being written: it is left for the next read).
fn records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 6, "a record has six fields: {l:?}");
            Record {
                kind: f[0].to_owned(),
                execution: f[1].to_owned(),
                step: f[2].to_owned(),
                attempt: f[3].parse().expect("attempt"),
                pid: f[4].parse().expect("pid"),
                unix_ms: f[5].parse().expect("time"),
            }
        })
        .collect()
}

fn spawn(worker: &Path, db: &Path, records: &Path, mode: &str) -> Child {
    Command::new(worker)
        .args([db.as_os_str(), records.as_os_str(), mode.as_ref()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the worker starts")
}

/// Waits for the child to exit (at most `limit`), killing it if it does not.
fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The step completions committed in the file: `(execution, step) → attempt`,
/// from the journals of live executions and the final states of ended ones.
fn committed_completions(db: &Path) -> HashMap<(String, String), u32> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).await.expect("the database opens");
        let mut done = HashMap::new();
        for e in store.unfinished().await.unwrap() {
            if e.execution.workflow != "five_steps" {
                continue;
            }
            for entry in &e.events {
                let event: serde_json::Value = serde_json::from_str(&entry.event).unwrap();
                if event["event"] == "step_finished" && event["report"]["type"] == "done" {
                    let step = format!("s{}", event["step"].as_u64().unwrap() + 1);
                    let attempt = event["attempt"].as_u64().unwrap() as u32;
                    done.insert((e.execution.id.to_string(), step), attempt);
                }
            }
        }
        let query = ExecutionQuery { workflow: Some("five_steps".into()), limit: 0 };
        for state in store.list_finished(&query).await.unwrap() {
            for step in &state.steps {
                done.insert((state.id.to_string(), step.name.to_string()), step.attempts);
            }
        }
        done
    })
}

fn final_states(db: &Path) -> HashMap<String, Vec<ExecutionState>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db).await.expect("the database opens");
        assert!(store.unfinished().await.unwrap().is_empty(), "no execution is left unfinished");
        let mut by_workflow: HashMap<String, Vec<ExecutionState>> = HashMap::new();
        for s in store.list_finished(&ExecutionQuery::default()).await.unwrap() {
            by_workflow.entry(s.workflow.clone()).or_default().push(s);
        }
        by_workflow
    })
}

#[test]
fn a_killed_worker_loses_nothing_and_repeats_no_completed_step() {
    let worker = worker();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let side = dir.path().join("records.log");

    // First run: start everything, let about a third of the steps complete, kill.
    let mut first = spawn(&worker, &db, &side, "start");
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started", "the worker acknowledged its starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(&side).iter().filter(|r| r.kind == "step").count() < 800 {
        assert!(Instant::now() < deadline, "the worker makes progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(first.try_wait().unwrap().is_none(), "the worker is still running when it is killed");
    first.kill().expect("SIGKILL");
    let status = first.wait().unwrap();
    assert!(!status.success(), "the worker died of the signal");
    let first_pid = first.id();
    let before_kill = records(&side);
    let committed = committed_completions(&db);
    assert!(committed.len() >= 700, "most completions before the kill were committed ({})", committed.len());

    // Second run: recovery, then everything finishes.
    let mut second = spawn(&worker, &db, &side, "resume");
    let mut out = String::new();
    let stdout = second.stdout.take().unwrap();
    let status = wait_with_limit(&mut second, Duration::from_secs(120));
    std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out).unwrap();
    assert!(status.success(), "the second run ends well");
    assert_eq!(out.trim(), "done");
    let second_pid = second.id();

    let states = final_states(&db);
    let runs = records(&side);
    let text = std::fs::read_to_string(&side).unwrap();
    assert!(text.ends_with('\n'), "every record was written whole");

    // All 500 completed, and each of their steps completed once.
    let five = &states["five_steps"];
    assert_eq!(five.len(), 500, "all 500 executions ended");
    let mut interrupted = 0;
    for state in five {
        assert_eq!(state.status, Status::Completed, "execution {} completed", state.id);
        assert_eq!(state.steps.len(), 5);
        for step in &state.steps {
            assert_eq!(step.status, StepStatus::Completed, "{}/{} completed", state.id, step.name);
            let id = state.id.to_string();
            let mine: Vec<&Record> =
                runs.iter().filter(|r| r.kind == "step" && r.execution == id && r.step == step.name).collect();
            let last = step.attempts;
            let completions = mine.iter().filter(|r| r.attempt == last).count();
            assert_eq!(completions, 1, "{id}/{}: one recorded run of its final attempt {last}: {mine:?}", step.name);
            assert!(
                mine.iter().all(|r| r.attempt <= last),
                "{id}/{}: no run after the committed completion (final attempt {last}): {mine:?}",
                step.name
            );
            if last > 1 {
                interrupted += 1;
            }
            if let Some(&attempt) = committed.get(&(id.clone(), step.name.to_string())) {
                assert_eq!(attempt, last, "{id}/{}: its committed completion stayed its final attempt", step.name);
                assert!(
                    mine.iter().all(|r| r.pid == first_pid),
                    "{id}/{}: completed before the kill, it did not run again: {mine:?}",
                    step.name
                );
            }
        }
    }
    let step_runs = runs.iter().filter(|r| r.kind == "step").count();
    assert!(step_runs >= 2500, "every step ran at least once ({step_runs} runs)");
    assert!(interrupted > 0, "the kill interrupted running steps, which ran again with a new attempt number");
    assert!(before_kill.iter().all(|r| r.pid == first_pid));

    // The timers armed before the kill fired after it, not before their due time.
    let nap = &states["nap"];
    assert_eq!(nap.len(), 1);
    assert_eq!(nap[0].status, Status::Completed);
    let naps: Vec<&Record> = runs.iter().filter(|r| r.kind == "nap").collect();
    assert_eq!(naps.len(), 2, "the snoozed step ran twice: {naps:?}");
    assert_eq!((naps[0].attempt, naps[0].pid), (1, first_pid), "it snoozed in the first process");
    assert_eq!((naps[1].attempt, naps[1].pid), (2, second_pid), "it woke in the second process");
    assert!(naps[1].unix_ms >= naps[0].unix_ms + 3000 - 20, "it woke at its due time: {naps:?}");

    let deadline = &states["deadline"];
    assert_eq!(deadline.len(), 1);
    assert_eq!(deadline[0].status, Status::Completed);
    assert_eq!(deadline[0].context["timed_out"], true);
    let awaited: Vec<&Record> = runs.iter().filter(|r| r.kind == "await").collect();
    let timeouts: Vec<&Record> = runs.iter().filter(|r| r.kind == "timeout").collect();
    assert_eq!(awaited.len(), 1, "the awaiting step ran once: {awaited:?}");
    assert_eq!(awaited[0].pid, first_pid);
    assert_eq!(timeouts.len(), 1, "its timeout fired once: {timeouts:?}");
    assert_eq!(timeouts[0].pid, second_pid, "in the second process");
    assert!(timeouts[0].unix_ms >= awaited[0].unix_ms + 3000 - 20, "at its due time: {awaited:?} {timeouts:?}");
}
