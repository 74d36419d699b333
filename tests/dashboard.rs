//! The dashboard, served for real: its JSON and actions over HTTP, and its pages in
//! Debian's Chromium driven by Playwright (`tests/browser/dashboard.mjs`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sagaflow::dashboard::{self, Dashboard};
use sagaflow::prelude::*;
use sagaflow::{ExecutionState, Status, WorkflowDef};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tools;

const TOKEN: &str = "s3cret";

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

/// An engine with one expense awaiting approval, one dead letter and a nightly
/// schedule, and its dashboard served at `/workflows`.
struct Served {
    engine: Engine,
    addr: SocketAddr,
    awaiting: ExecutionId,
    letter: ExecutionId,
}

async fn serve(router: impl FnOnce(Engine) -> axum::Router) -> Served {
    let engine =
        Engine::builder().register(expense()).register(flaky()).register(nightly()).build().await.expect("engine");
    let awaiting = engine.start("expense", json!({ "amount": 120 })).await.expect("starts");
    let letter = engine.start("flaky", json!({})).await.expect("starts");
    assert_eq!(engine.wait(letter).await.expect("ends").status, Status::Failed);
    until(&engine, awaiting, |s| s.status == Status::Awaiting).await;
    let app = axum::Router::new().nest("/workflows", router(engine.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    Served { engine, addr, awaiting, letter }
}

async fn until(engine: &Engine, id: ExecutionId, done: impl Fn(&ExecutionState) -> bool) -> ExecutionState {
    for _ in 0..500 {
        let state = engine.get_state(id).await.expect("state");
        if done(&state) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {id} did not reach the state");
}

/// One HTTP/1.1 request; returns the status and the body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, body.to_owned())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON expected ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_statistics_and_guards_actions() {
    let s = serve(|engine| Dashboard::new(engine).bearer_token(TOKEN).router()).await;

    let (status, page) = http(s.addr, "GET", "/workflows", None, "").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"const BASE = "/workflows";"#), "the page knows where it is mounted");

    let (status, body) = http(s.addr, "GET", "/workflows/api/overview", None, "").await;
    assert_eq!(status, 200, "{body}");
    let overview = json_of(&body);
    let flaky = overview["workflows"].as_array().unwrap().iter().find(|w| w["name"] == "flaky").unwrap().clone();
    assert_eq!(flaky["stats"]["ended"], 1);
    assert_eq!(flaky["stats"]["success_rate"], 0.0);
    assert_eq!(flaky["stats"]["errors"]["broken"], 1);
    assert_eq!(overview["running"][0]["id"], s.awaiting.to_string());
    assert_eq!(overview["dead_letters"][0]["id"], s.letter.to_string());

    let (status, body) = http(s.addr, "GET", &format!("/workflows/api/executions/{}", s.awaiting), None, "").await;
    assert_eq!(status, 200);
    let execution = json_of(&body);
    assert_eq!(execution["state"]["status"], "awaiting");
    assert!(execution["dag"].as_str().unwrap().contains(r#"class="step awaiting" data-step="approve""#));

    let (status, body) = http(s.addr, "GET", "/workflows/api/executions/not-an-id", None, "").await;
    assert_eq!(status, 400);
    assert!(json_of(&body)["error"].as_str().unwrap().contains("not-an-id"), "the bad id is named: {body}");

    let cancel = format!("/workflows/api/executions/{}/cancel", s.awaiting);
    let (status, _) = http(s.addr, "POST", &cancel, None, "{}").await;
    assert_eq!(status, 401, "an action without the token is refused");
    let (status, _) = http(s.addr, "POST", &cancel, Some("wrong"), "{}").await;
    assert_eq!(status, 401, "an action with a wrong token is refused");
    assert_eq!(s.engine.get_state(s.awaiting).await.unwrap().status, Status::Awaiting, "nothing happened");
    let (status, body) = http(s.addr, "POST", &cancel, Some(TOKEN), r#"{"reason": "duplicate"}"#).await;
    assert_eq!(status, 200, "{body}");
    let ended = s.engine.wait(s.awaiting).await.unwrap();
    assert_eq!((ended.status, ended.cancel_reason.as_deref()), (Status::Cancelled, Some("duplicate")));
    let (status, body) = http(s.addr, "POST", &cancel, Some(TOKEN), "{}").await;
    assert_eq!(status, 409, "cancelling an ended execution conflicts: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_page_shows_its_dag_schedule_statistics_and_executions() {
    let s = serve(dashboard::router).await;
    let (status, page) = http(s.addr, "GET", "/workflows/flaky", None, "").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"const NAME = "flaky";"#), "the page knows its workflow");

    let (status, body) = http(s.addr, "GET", "/workflows/api/workflows/flaky", None, "").await;
    assert_eq!(status, 200, "{body}");
    let flaky = json_of(&body);
    assert!(flaky["dag"].as_str().unwrap().contains(r#"data-step="call""#), "its DAG");
    assert_eq!(flaky["stats"]["ended"], 1);
    assert_eq!(flaky["stats"]["errors"]["broken"], 1);
    assert_eq!(flaky["steps"][0]["name"], "call");
    assert_eq!((flaky["steps"][0]["runs"].clone(), flaky["steps"][0]["failed"].clone()), (json!(1), json!(1)));
    assert_eq!(flaky["executions"][0]["id"], s.letter.to_string());
    assert_eq!(flaky["executions"][0]["status"], "failed");
    assert_eq!(flaky["executions"][0]["error_step"], "call");
    assert_eq!(flaky["schedules"], json!([]), "no schedule");

    let (_, body) = http(s.addr, "GET", "/workflows/api/workflows/expense", None, "").await;
    let expense = json_of(&body);
    assert_eq!(expense["running"], 1);
    assert_eq!(expense["executions"][0]["status"], "awaiting", "running executions come first");

    let (_, body) = http(s.addr, "GET", "/workflows/api/workflows/nightly", None, "").await;
    let nightly = json_of(&body);
    assert_eq!(nightly["schedules"][0]["schedule"], "cron 0 3 * * *");
    let next: Vec<chrono::DateTime<chrono::Utc>> =
        serde_json::from_value(nightly["schedules"][0]["next"].clone()).expect("fire times");
    assert_eq!(next.len(), 5);
    assert!(next.iter().all(|t| t.format("%H:%M:%S").to_string() == "03:00:00"), "{next:?}");
    assert!(next.windows(2).all(|w| w[1] - w[0] == chrono::Duration::days(1)), "one day apart: {next:?}");
    assert!(next[0] > chrono::Utc::now(), "the first is still to come");

    let (status, body) = http(s.addr, "GET", "/workflows/api/workflows/nope", None, "").await;
    assert_eq!(status, 404);
    assert!(body.contains("`nope`"), "{body}");
    let (status, _) = http(s.addr, "GET", "/workflows/nope", None, "").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_router_has_no_actions() {
    let s = serve(dashboard::router).await;
    let (status, _) = http(s.addr, "GET", "/workflows/api/overview", None, "").await;
    assert_eq!(status, 200);
    let resume = format!("/workflows/api/executions/{}/resume", s.awaiting);
    let (status, _) = http(s.addr, "POST", &resume, Some(TOKEN), "{}").await;
    assert_eq!(status, 404, "no action routes without an authentication layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_watches_an_execution_resume_and_retries_a_dead_letter() {
    let browser = tools::root().join("tests/browser");
    let installed = std::path::Path::new("/usr/bin/chromium").is_file()
        && browser.join("node_modules/playwright-core/package.json").is_file();
    if !tools::require(
        "Chromium and Playwright (tests/browser)",
        installed,
        "apt-get install chromium && cd tests/browser && npm ci (or run .ci/run)",
    ) {
        return;
    }
    let s = serve(|engine| Dashboard::new(engine).bearer_token(TOKEN).router()).await;
    let url = format!("http://{}/workflows", s.addr);
    let (awaiting, letter) = (s.awaiting.to_string(), s.letter.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser.join("dashboard.mjs"))
            .args([&url, TOKEN, &awaiting, &letter])
            .output()
            .expect("node runs")
    })
    .await
    .expect("joins");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser session passed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(stdout.lines().last().unwrap_or("{}"));
    assert_eq!(report["ok"], true, "{report}");

    let ended = s.engine.wait(s.awaiting).await.expect("ends");
    assert_eq!(ended.status, Status::Completed, "the browser's resume completed the execution");
    assert_eq!(ended.context["reimbursed_by"], "browser");
    let letters = s.engine.dead_letters().list(None).await.unwrap();
    assert!(letters.iter().all(|d| d.id != s.letter), "the browser's retry used up the dead letter");
    let history = s.engine.history(&Default::default()).await.unwrap();
    assert!(
        history.iter().any(|h| h.trigger == sagaflow::Trigger::Replay { of: s.letter }),
        "the retry started the workflow again (and it failed again, leaving a new dead letter)"
    );
}
