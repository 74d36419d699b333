//! The `sagaflow` command line, built and run as a user runs it, against stores a
//! test engine is using: an SQLite file that the engine in this process holds
//! (the command line reads it read-only, and its control calls reach the engine
//! through the file's request queue), and a PostgreSQL schema (control calls go
//! to the node that holds the execution).
//!
//! The PostgreSQL test takes its database from `SAGAFLOW_TEST_DATABASE_URL`;
//! without it it says loudly that it was skipped, and under `CI=true` it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, Status, WorkflowDef};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const URL_VAR: &str = "SAGAFLOW_TEST_DATABASE_URL";

/// The test database's URL; `None` (said loudly) when not configured, a failure
/// under `CI=true`.
pub fn database() -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty());
    let install = format!("set {URL_VAR}=postgres://user@host:5432/database (or run .ci/run)");
    crate::tools::require("PostgreSQL for the command-line and dashboard cluster tests", url.is_some(), &install)
        .then_some(url)
        .flatten()
}

/// Builds the command line (feature `cli`) once and returns its path.
fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["build", "--features", "cli", "--bin", "sagaflow", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "the sagaflow binary builds");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "sagaflow")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the binary")
    })
    .clone()
}

/// What one run printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("JSON expected ({e}): {self:?}"))
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "the command succeeds: {self:?}");
        self
    }
}

/// Runs `sagaflow --store <store> <args>`.
async fn sagaflow(store: Option<&str>, args: &[&str]) -> Run {
    let bin = tokio::task::spawn_blocking(binary).await.expect("builds");
    let mut cmd = tokio::process::Command::new(bin);
    if let Some(s) = store {
        cmd.args(["--store", s]);
    }
    cmd.args(args).env_remove("SAGAFLOW_STORE").env_remove("SAGAFLOW_DASHBOARD_TOKEN").env_remove("NO_COLOR");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("it ends").expect("it runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn expense() -> WorkflowDef {
    Workflow::new("expense")
        .step("submit", |_ctx: Context| async { Ok::<_, StepError>(json!({ "submitted": true })) })
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("submit").await_approval(true),
        )
        .step_with(
            "reimburse",
            |ctx: Context| async move {
                let approver: String = ctx.get("approver")?;
                Ok::<_, StepError>(json!({ "reimbursed_by": approver }))
            },
            Step::opts().after("approve"),
        )
        .build()
        .expect("valid")
}

fn flaky() -> WorkflowDef {
    Workflow::new("flaky")
        .dead_letter(true)
        .step("call", |_ctx: Context| async {
            Err::<Outcome, _>(StepError::new("broken", "the service is down").permanent())
        })
        .build()
        .expect("valid")
}

fn nightly() -> WorkflowDef {
    Workflow::new("nightly")
        .schedule(Schedule::cron("0 3 * * *").expect("a valid pattern"))
        .step("vacuum", |_ctx: Context| async { Ok::<_, StepError>(Outcome::Done) })
        .build()
        .expect("valid")
}

async fn until(engine: &Engine, id: ExecutionId, done: impl Fn(&ExecutionState) -> bool) -> ExecutionState {
    for _ in 0..1000 {
        let state = engine.get_state(id).await.expect("state");
        if done(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {id} did not reach the state");
}

/// An engine with an expense awaiting approval, a dead letter and a schedule.
async fn engine_on(url: &str) -> (Engine, ExecutionId, ExecutionId) {
    let engine = Engine::builder()
        .store_url(url)
        .register(expense())
        .register(flaky())
        .register(nightly())
        .build()
        .await
        .expect("engine");
    let awaiting = engine.start("expense", json!({ "amount": 120 })).await.expect("starts");
    let letter = engine.start("flaky", json!({})).await.expect("starts");
    assert_eq!(engine.wait(letter).await.expect("ends").status, Status::Failed);
    until(&engine, awaiting, |s| s.status == Status::Awaiting).await;
    (engine, awaiting, letter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_and_controls_an_sqlite_file_an_engine_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.db");
    let url = format!("sqlite://{}", path.display());
    let (engine, awaiting, letter) = engine_on(&url).await;
    let store = Some(url.as_str());

    // Workflows, from the definition snapshots.
    let listed = sagaflow(store, &["workflows", "list", "--json"]).await.ok().json();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["expense", "flaky", "nightly"]);
    let table = sagaflow(store, &["workflows", "show", "expense"]).await.ok();
    assert!(table.stdout.contains("approve") && table.stdout.contains("reimburse"), "{}", table.stdout);
    let mermaid = sagaflow(store, &["workflows", "show", "expense", "--format", "mermaid"]).await.ok();
    assert!(mermaid.stdout.starts_with("graph TD"), "{}", mermaid.stdout);
    let dot = sagaflow(store, &["workflows", "show", "expense", "--format", "dot"]).await.ok();
    assert!(dot.stdout.contains("digraph"), "{}", dot.stdout);
    let unknown = sagaflow(store, &["workflows", "show", "expens"]).await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stderr.contains("`expense`"), "the known names are listed: {}", unknown.stderr);

    // Executions: the live one from its journal, the ended one from its final state.
    let rows = sagaflow(store, &["executions", "list", "--json"]).await.ok().json();
    let row = |id: ExecutionId| rows.as_array().unwrap().iter().find(|r| r["id"] == id.to_string()).cloned();
    let live = row(awaiting).expect("the live execution is listed");
    assert_eq!((live["status"].as_str(), live["ended"].as_bool()), (Some("awaiting"), Some(false)));
    assert_eq!((live["done"].as_u64(), live["total"].as_u64()), (Some(1), Some(3)), "submit ended, approve awaits");
    let failed = row(letter).expect("the ended execution is listed");
    assert_eq!((failed["status"].as_str(), failed["error_step"].as_str()), (Some("failed"), Some("call")));
    let only = sagaflow(store, &["executions", "list", "--status", "awaiting", "--json"]).await.ok().json();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let text = sagaflow(store, &["executions", "list"]).await.ok();
    let header = text.stdout.lines().next().unwrap();
    assert!(header.starts_with("EXECUTION") && header.contains("STATUS"), "{}", text.stdout);
    assert!(!text.stdout.contains('\x1b'), "no colour when the output is not a terminal");
    let coloured = sagaflow(store, &["--color", "always", "executions", "list"]).await.ok();
    assert!(coloured.stdout.contains("\x1b[34mawaiting\x1b[0m"), "{}", coloured.stdout);
    let bad = sagaflow(store, &["executions", "list", "--status", "sleeping"]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("`sleeping`"), "{}", bad.stderr);

    let shown = sagaflow(store, &["executions", "show", &awaiting.to_string(), "--json"]).await.ok().json();
    assert_eq!(shown["ended"], false);
    let timeline = shown["execution"]["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert_eq!((timeline[1]["step"].as_str(), timeline[1]["outcome"].as_str()), (Some("approve"), Some("await")));
    let text = sagaflow(store, &["executions", "show", &awaiting.to_string()]).await.ok();
    assert!(text.stdout.contains("timeline") && text.stdout.contains("\"amount\": 120"), "{}", text.stdout);
    let ended = sagaflow(store, &["executions", "show", &letter.to_string(), "--json"]).await.ok().json();
    assert_eq!((ended["ended"].as_bool(), ended["state"]["status"].as_str()), (Some(true), Some("failed")));
    let text = sagaflow(store, &["executions", "show", &letter.to_string()]).await.ok();
    assert!(text.stdout.contains("broken: the service is down"), "{}", text.stdout);

    let nobody = ExecutionId::new().to_string();
    let missing = sagaflow(store, &["executions", "show", &nobody]).await;
    assert_eq!(missing.code, 4, "{missing:?}");
    assert!(missing.stderr.contains(&nobody));
    let garbled = sagaflow(store, &["executions", "show", "not-an-id"]).await;
    assert_eq!(garbled.code, 2);
    assert!(garbled.stderr.contains("`not-an-id` is not an execution id"), "{}", garbled.stderr);

    // Schedules and dead letters.
    let schedules = sagaflow(store, &["schedules", "list", "--json"]).await.ok().json();
    let nightly = &schedules.as_array().unwrap()[0];
    assert_eq!(nightly["schedule"], "cron 0 3 * * *");
    let next: Vec<chrono::DateTime<chrono::Utc>> = serde_json::from_value(nightly["next"].clone()).unwrap();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|t| t.format("%H:%M").to_string() == "03:00" && *t > chrono::Utc::now()), "{next:?}");
    let letters = sagaflow(store, &["dead-letters", "list", "--json"]).await.ok().json();
    assert_eq!(letters[0]["id"], letter.to_string());

    // Control calls reach the engine that holds the file.
    let id = awaiting.to_string();
    let signalled = sagaflow(store, &["executions", "signal", &id, "note", "--payload", r#"{"from": "ops"}"#]).await;
    assert!(signalled.ok().stdout.contains("applied"), "the engine took the signal");
    let buffered = engine.get_state(awaiting).await.unwrap();
    assert_eq!(
        buffered.buffered_signals("note").map(|s| s.payload.clone()).collect::<Vec<_>>(),
        [json!({ "from": "ops" })]
    );
    let shown = sagaflow(store, &["executions", "show", &id, "--json"]).await.ok().json();
    let last = shown["execution"]["timeline"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last["event"].as_str(), last["detail"].as_str()),
        (Some("signalled"), Some("signal `note` (buffered)"))
    );
    let bad_payload = sagaflow(store, &["executions", "signal", &id, "note", "--payload", "{oops"]).await;
    assert_eq!(bad_payload.code, 2);
    assert!(bad_payload.stderr.contains("`--payload` is not JSON"), "{}", bad_payload.stderr);
    let paused = sagaflow(store, &["executions", "pause", &id]).await.ok();
    assert!(paused.stdout.contains("queued for the engine that holds the file"), "{}", paused.stdout);
    assert!(paused.stdout.contains("applied"), "{}", paused.stdout);
    assert_eq!(engine.get_state(awaiting).await.unwrap().status, Status::Paused);
    let again = sagaflow(store, &["executions", "pause", &id]).await;
    assert_eq!(again.code, 5, "pausing a paused execution does not apply: {again:?}");
    let bad_context = sagaflow(store, &["executions", "resume", &id, "--context", "[1]"]).await;
    assert_eq!(bad_context.code, 2);
    assert!(bad_context.stderr.contains("must be a JSON object"), "{}", bad_context.stderr);
    let resumed =
        sagaflow(store, &["executions", "resume", &id, "--context", r#"{"approver": "cli"}"#, "--json"]).await;
    let resumed = resumed.ok().json();
    assert_eq!((resumed["taken"].as_bool(), resumed["applied"].as_bool()), (Some(true), Some(true)), "{resumed}");
    let done = tokio::time::timeout(Duration::from_secs(10), engine.wait(awaiting)).await.unwrap().unwrap();
    assert_eq!((done.status, done.context["reimbursed_by"].as_str()), (Status::Completed, Some("cli")));
    let late = sagaflow(store, &["executions", "cancel", &id]).await;
    assert_eq!(late.code, 5, "{late:?}");
    assert!(late.stderr.contains("has ended (completed)"), "{}", late.stderr);
    let missing = sagaflow(store, &["executions", "cancel", &nobody]).await;
    assert_eq!(missing.code, 4, "{missing:?}");

    let replayed = sagaflow(store, &["dead-letters", "replay", &letter.to_string()]).await.ok();
    assert!(replayed.stdout.contains("applied: new execution"), "{}", replayed.stdout);
    assert!(engine.dead_letters().list(None).await.unwrap().iter().all(|d| d.id != letter), "the letter was used");
    let history = engine.history(&Default::default()).await.unwrap();
    assert!(history.iter().any(|h| h.trigger == sagaflow::Trigger::Replay { of: letter }), "the engine replayed it");
    let purge = sagaflow(store, &["dead-letters", "purge"]).await;
    assert_eq!(purge.code, 2, "{purge:?}");

    // A restart from a step goes to the engine that holds the file.
    let restarted = sagaflow(store, &["executions", "restart", &letter.to_string(), "--from", "call", "--json"]).await;
    let restarted = restarted.ok().json();
    assert_eq!(restarted["applied"], true, "{restarted}");
    let new: ExecutionId = restarted["effect"].as_str().unwrap().trim_start_matches("new execution ").parse().unwrap();
    let state = tokio::time::timeout(Duration::from_secs(10), engine.wait(new)).await.unwrap().unwrap();
    assert_eq!(state.trigger, sagaflow::Trigger::Restart { of: letter, from: "call".into() });
    let unknown = sagaflow(store, &["executions", "restart", &letter.to_string(), "--from", "cal"]).await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stderr.contains("no step `cal`"), "{}", unknown.stderr);

    // Ended executions are purged through the engine; live ones stay.
    let bad_age = sagaflow(store, &["executions", "purge", "--older-than", "a while"]).await;
    assert_eq!(bad_age.code, 2, "{bad_age:?}");
    assert!(bad_age.stderr.contains("`--older-than a while`"), "{}", bad_age.stderr);
    let none = sagaflow(store, &["executions", "purge", "--older-than", "1h", "--json"]).await.ok().json();
    assert_eq!(none["applied"], true, "{none}");
    assert!(engine.get_state(awaiting).await.is_ok(), "what ended within the hour is kept");
    let purged = sagaflow(store, &["executions", "purge", "--older-than", "0s", "--workflow", "expense"]).await.ok();
    assert!(purged.stdout.contains("no execution that ended before"), "{}", purged.stdout);
    assert_eq!(sagaflow(store, &["executions", "show", &id]).await.code, 4, "the ended expense is gone");
    assert!(engine.get_state(letter).await.is_ok(), "other workflows are kept");

    // What goes wrong is said, with an exit code by kind.
    let none = sagaflow(None, &["executions", "list"]).await;
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("SAGAFLOW_STORE"), "{}", none.stderr);
    let gone = format!("sqlite://{}", dir.path().join("nope.db").display());
    let gone = sagaflow(Some(&gone), &["executions", "list"]).await;
    assert_eq!(gone.code, 3, "{gone:?}");
    assert!(gone.stderr.contains("nope.db"), "{}", gone.stderr);
    let scheme = sagaflow(Some("mysql://root:hunter2@db/x"), &["workflows", "list", "--json"]).await;
    assert_eq!(scheme.code, 2, "{scheme:?}");
    let err: Value = serde_json::from_str(scheme.stderr.trim()).expect("a JSON error");
    assert_eq!(err["code"], 2);
    assert!(!scheme.stderr.contains("hunter2"), "{}", scheme.stderr);
    let pg =
        sagaflow(Some("postgres://sagaflow@127.0.0.1:1/x?password=hunter2&connect_timeout=1"), &["workflows", "list"])
            .await;
    assert_eq!(pg.code, 3, "{pg:?}");
    assert!(pg.stderr.contains("127.0.0.1:1") && !pg.stderr.contains("hunter2"), "{}", pg.stderr);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_guards_the_dashboard_and_refuses_an_open_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let (engine, awaiting, _) = engine_on(&url).await;
    let open = sagaflow(Some(&url), &["serve", "--listen", "0.0.0.0:0"]).await;
    assert_eq!(open.code, 2, "{open:?}");
    assert!(open.stderr.contains("refusing to serve on 0.0.0.0:0 without authentication"), "{}", open.stderr);
    let empty = sagaflow(Some(&url), &["serve", "--listen", "0.0.0.0:0", "--token", ""]).await;
    assert_eq!(empty.code, 2, "an empty token is no token: {empty:?}");

    let bin = tokio::task::spawn_blocking(binary).await.unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args(["--store", &url, "--json", "serve", "--listen", "127.0.0.1:0", "--token", "t0ken", "--path", "/ops"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("serves");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut head = String::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap() {
        head.push_str(&line);
        if line.trim() == "}" {
            break;
        }
    }
    let started: Value = serde_json::from_str(&head).expect("it says where it listens");
    let base = started["listening"].as_str().unwrap().to_owned();
    let addr = base.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let get = |path: String, token: Option<&'static str>| {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
            let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            let status: u16 = answer.split(' ').nth(1).unwrap().parse().unwrap();
            (status, answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
        }
    };
    assert_eq!(get("/ops/api/overview".into(), None).await.0, 401);
    let (status, body) = get("/ops/api/overview".into(), Some("t0ken")).await;
    assert_eq!(status, 200, "{body}");
    let overview: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["running"][0]["id"], awaiting.to_string());
    assert_eq!(overview["running"][0]["status"], "awaiting");
    child.kill().await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_controls_executions_that_a_cluster_node_holds() {
    let Some(base) = database() else { return };
    let schema = crate::cluster::Schema::new(base);
    let url = schema.store_url();
    let (engine, awaiting, letter) = engine_on(&url).await;
    let store = Some(url.as_str());

    let shown = sagaflow(store, &["executions", "show", &awaiting.to_string(), "--json"]).await.ok().json();
    assert_eq!(shown["ended"], false);
    assert_eq!(shown["execution"]["status"], "awaiting");
    let rows = sagaflow(store, &["executions", "list", "--workflow", "expense", "--json"]).await.ok().json();
    assert_eq!(rows[0]["id"], awaiting.to_string());

    let cancelled =
        sagaflow(store, &["executions", "cancel", &awaiting.to_string(), "--reason", "from ops"]).await.ok();
    assert!(cancelled.stdout.contains("queued for the node that holds the execution"), "{}", cancelled.stdout);
    let ended = tokio::time::timeout(Duration::from_secs(15), engine.wait(awaiting)).await.unwrap().unwrap();
    assert_eq!((ended.status, ended.cancel_reason.as_deref()), (Status::Cancelled, Some("from ops")));
    let late = sagaflow(store, &["executions", "pause", &awaiting.to_string()]).await;
    assert_eq!(late.code, 5, "{late:?}");

    // A restart from a step is written to the shared tables; a node claims it.
    let restarted =
        sagaflow(store, &["executions", "restart", &awaiting.to_string(), "--from", "approve", "--json"]).await;
    let new: ExecutionId = restarted.ok().json()["new_execution"].as_str().unwrap().parse().unwrap();
    let state = until(&engine, new, |s| s.status == Status::Awaiting).await;
    assert_eq!(state.trigger, sagaflow::Trigger::Restart { of: awaiting, from: "approve".into() });
    assert_eq!(state.step("submit").unwrap().attempts, 0, "the step before `approve` is kept, not run");
    let unknown = sagaflow(store, &["executions", "restart", &awaiting.to_string(), "--from", "aprove"]).await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stderr.contains("no step `aprove`") && unknown.stderr.contains("approve"), "{}", unknown.stderr);
    let live = sagaflow(store, &["executions", "restart", &new.to_string(), "--from", "approve"]).await;
    assert_eq!(live.code, 5, "only an ended execution restarts: {live:?}");
    engine.cancel(new, CancelOptions::reason("done")).await.unwrap();

    let replayed = sagaflow(store, &["dead-letters", "replay", &letter.to_string(), "--json"]).await.ok().json();
    let new: ExecutionId = replayed["new_execution"].as_str().unwrap().parse().unwrap();
    let state = tokio::time::timeout(Duration::from_secs(15), engine.wait(new)).await.unwrap().unwrap();
    assert_eq!((state.status, state.trigger.clone()), (Status::Failed, sagaflow::Trigger::Replay { of: letter }));

    let typo = format!("{}{}", url, "x");
    let typo = sagaflow(Some(&typo), &["workflows", "list"]).await;
    assert_eq!(typo.code, 3, "a schema that does not exist is not created: {typo:?}");
    assert!(typo.stderr.contains("holds no sagaflow tables"), "{}", typo.stderr);
    engine.shutdown().await;
}
