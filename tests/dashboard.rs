//! The dashboard, served for real: its JSON, its authentication and its actions
//! over HTTP, the dashboard over a store alone, and its pages in Debian's Chromium
//! driven by Playwright (`tests/browser/dashboard.mjs`).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagaflow::dashboard::{self, Dashboard, DashboardError};
use sagaflow::prelude::*;
use sagaflow::store::{
    DeadLetter, Durability, ExecutionQuery, MemoryStore, SqliteStore, Store, StoreControl, StoreError, StoredExecution,
    Write,
};
use sagaflow::{DefinitionSnapshot, ExecutionState, Status, WorkflowDef};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

async fn engine_with_work(builder: sagaflow::EngineBuilder) -> (Engine, ExecutionId, ExecutionId) {
    let engine = builder.register(expense()).register(flaky()).register(nightly()).build().await.expect("engine");
    let awaiting = engine.start("expense", json!({ "amount": 120 })).await.expect("starts");
    let letter = engine.start("flaky", json!({})).await.expect("starts");
    assert_eq!(engine.wait(letter).await.expect("ends").status, Status::Failed);
    until(&engine, awaiting, |s| s.status == Status::Awaiting).await;
    (engine, awaiting, letter)
}

async fn serve(router: impl FnOnce(Engine) -> axum::Router) -> Served {
    let (engine, awaiting, letter) = engine_with_work(Engine::builder()).await;
    let addr = listen(router(engine.clone())).await;
    Served { engine, addr, awaiting, letter }
}

/// Serves `router` at `/workflows` on a free port.
async fn listen(router: axum::Router) -> SocketAddr {
    let app = axum::Router::new().nest("/workflows", router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    addr
}

fn guarded(engine: Engine) -> axum::Router {
    Dashboard::new(engine).bearer_token(TOKEN).expect("a valid token").router()
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

/// An answer: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        json_of(&self.body)
    }
}

fn request_text(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut extra = String::new();
    for (k, v) in headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// One HTTP/1.1 request with these headers.
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(request_text(addr, method, path, headers, body).as_bytes()).await.expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let (status, headers) = parse_head(head);
    Answer { status, headers, body: body.to_owned() }
}

/// A request with the token (`Some`) or without, and a JSON body.
async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let a = call(addr, method, path, &headers, body).await;
    (a.status, a.body)
}

/// Opens the event stream and reads its head only; the stream stays open as long
/// as the returned connection lives.
async fn open_stream(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, Option<String>, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let text = request_text(addr, "GET", "/workflows/events", headers, "").replace("connection: close\r\n", "");
    stream.write_all(text.as_bytes()).await.expect("writes");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.expect("a head").unwrap();
        assert!(n == 1, "the server closed before the head ended: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let (status, headers) = parse_head(String::from_utf8_lossy(&head).trim_end());
    let kind = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
    (status, kind, stream)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON expected ({e}): {body}"))
}

/// Every route of the dashboard, as (method, path, body) for the served fixture.
fn routes(s: &Served) -> Vec<(&'static str, String, &'static str)> {
    let (a, l) = (s.awaiting, s.letter);
    vec![
        ("GET", "/workflows".into(), ""),
        ("GET", "/workflows/expense".into(), ""),
        ("GET", format!("/workflows/executions/{a}"), ""),
        ("GET", "/workflows/api/overview".into(), ""),
        ("GET", "/workflows/api/workflows/expense".into(), ""),
        ("GET", format!("/workflows/api/executions/{a}"), ""),
        ("POST", format!("/workflows/api/executions/{a}/pause"), "{}"),
        ("POST", format!("/workflows/api/executions/{a}/resume"), r#"{"approver": "ann"}"#),
        ("POST", format!("/workflows/api/executions/{a}/cancel"), r#"{"reason": "duplicate"}"#),
        ("POST", format!("/workflows/api/executions/{l}/restart"), r#"{"step": "call"}"#),
        ("POST", format!("/workflows/api/dead-letters/{l}/retry"), "{}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_token_once_one_is_set() {
    let s = serve(guarded).await;
    let json = [("content-type", "application/json")];
    for (method, path, body) in routes(&s) {
        for headers in [
            vec![json[0]],
            vec![json[0], ("authorization", "Bearer wrong")],
            vec![json[0], ("authorization", "Bearer ")],
            vec![json[0], ("authorization", "Basic czNjcmV0")],
            vec![json[0], ("cookie", "sagaflow_dashboard=s3cret")],
        ] {
            let a = call(s.addr, method, &path, &headers, body).await;
            assert_eq!(a.status, 401, "{method} {path} with {headers:?}: {}", a.body);
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
            if path.contains("/api/") {
                assert!(a.json()["error"].as_str().unwrap().contains("bearer token"), "{}", a.body);
            } else {
                assert!(a.body.contains(r#"id="login-form""#), "a page answers with the login page: {}", a.body);
                assert!(!a.body.contains("expense"), "and shows nothing of the dashboard");
            }
        }
    }
    let (status, kind, _) = open_stream(s.addr, &[]).await;
    assert_eq!((status, kind.as_deref()), (401, Some("application/json")), "the event stream is guarded too");
    assert_eq!(s.engine.get_state(s.awaiting).await.unwrap().status, Status::Awaiting, "no action went through");
    assert_eq!(s.engine.dead_letters().list(None).await.unwrap().len(), 1);

    // With the token in the header, every route answers.
    let bearer = format!("Bearer {TOKEN}");
    let with = [json[0], ("authorization", bearer.as_str())];
    for (method, path, body) in routes(&s) {
        let a = call(s.addr, method, &path, &with, body).await;
        if method == "GET" {
            assert_eq!(a.status, 200, "{method} {path}: {}", a.body);
        } else {
            // The actions ran, in order: pause, resume, then cancel of the
            // execution the resume completed, which has ended (409); the retry.
            let expected = if path.ends_with("/cancel") { 409 } else { 200 };
            assert_eq!(a.status, expected, "{method} {path}: {}", a.body);
        }
    }
    let ended = s.engine.wait(s.awaiting).await.unwrap();
    assert_eq!((ended.status, ended.context["reimbursed_by"].as_str()), (Status::Completed, Some("ann")));
    let (status, kind, _) = open_stream(s.addr, &[("authorization", &bearer)]).await;
    assert_eq!((status, kind.as_deref()), (200, Some("text/event-stream")));

    // A browser logs in once: the cookie then opens the pages and the stream.
    let refused = call(s.addr, "POST", "/workflows/login", &json, r#"{"token": "wrong"}"#).await;
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_none());
    let form = call(
        s.addr,
        "POST",
        "/workflows/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=s3cret",
    )
    .await;
    assert_eq!(form.status, 415, "the login takes JSON only: {}", form.body);
    let login = call(s.addr, "POST", "/workflows/login", &json, &format!(r#"{{"token": "{TOKEN}"}}"#)).await;
    assert_eq!(login.status, 204, "{}", login.body);
    let cookie = login.header("set-cookie").expect("a cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/workflows"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie does not show the token as it is: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    for path in ["/workflows", "/workflows/api/overview", "/workflows/expense"] {
        let a = call(s.addr, "GET", path, &[("cookie", &pair)], "").await;
        assert_eq!(a.status, 200, "{path} with the cookie: {}", a.body);
    }
    let (status, _, _) = open_stream(s.addr, &[("cookie", &pair)]).await;
    assert_eq!(status, 200);
    let logout = call(s.addr, "POST", "/workflows/logout", &[], "").await;
    assert!(logout.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "{:?}", logout.headers);
}

#[tokio::test]
async fn an_empty_or_unusable_token_is_refused_when_the_dashboard_is_built() {
    let engine = Engine::builder().build().await.unwrap();
    assert_eq!(Dashboard::new(engine.clone()).bearer_token("").unwrap_err(), DashboardError::EmptyToken);
    assert_eq!(Dashboard::new(engine.clone()).bearer_token(" \t").unwrap_err(), DashboardError::EmptyToken);
    let padded = Dashboard::new(engine.clone()).bearer_token(" s3cret").unwrap_err();
    assert!(matches!(padded, DashboardError::InvalidToken { .. }), "{padded}");
    assert!(padded.to_string().contains("whitespace"), "{padded}");
    assert!(Dashboard::new(engine).bearer_token(TOKEN).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_cannot_trigger_an_action() {
    let s = serve(guarded).await;
    let cancel = format!("/workflows/api/executions/{}/cancel", s.awaiting);
    let login = call(
        s.addr,
        "POST",
        "/workflows/login",
        &[("content-type", "application/json")],
        &format!(r#"{{"token": "{TOKEN}"}}"#),
    )
    .await;
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    // What a form on another site can send, with the browser's cookie.
    for (kind, body) in [
        (Some("application/x-www-form-urlencoded"), "reason=gone"),
        (
            Some("multipart/form-data; boundary=x"),
            "--x\r\nContent-Disposition: form-data; name=\"reason\"\r\n\r\ngone\r\n--x--\r\n",
        ),
        (Some("text/plain"), r#"{"reason": "gone"}"#),
        (None, ""),
    ] {
        let mut headers = vec![("cookie", cookie.as_str())];
        if let Some(k) = kind {
            headers.push(("content-type", k));
        }
        let a = call(s.addr, "POST", &cancel, &headers, body).await;
        assert_eq!(a.status, 415, "{kind:?}: {}", a.body);
        assert!(a.json()["error"].as_str().unwrap().contains("application/json"), "{}", a.body);
    }
    let empty = call(s.addr, "POST", &cancel, &[("cookie", &cookie), ("content-type", "application/json")], "").await;
    assert_eq!(empty.status, 400, "a JSON action needs a body: {}", empty.body);
    let array =
        call(s.addr, "POST", &cancel, &[("cookie", &cookie), ("content-type", "application/json")], "[1]").await;
    assert_eq!(array.status, 422, "the body is a JSON object: {}", array.body);
    assert_eq!(s.engine.get_state(s.awaiting).await.unwrap().status, Status::Awaiting, "nothing happened");
    let ok = call(
        s.addr,
        "POST",
        &cancel,
        &[("cookie", &cookie), ("content-type", "application/json; charset=utf-8")],
        r#"{"reason": "duplicate"}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ended = s.engine.wait(s.awaiting).await.unwrap();
    assert_eq!((ended.status, ended.cancel_reason.as_deref()), (Status::Cancelled, Some("duplicate")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_serves_a_bounded_number_of_clients() {
    let s = serve(|engine| Dashboard::new(engine).max_event_streams(2).router()).await;
    let (first, _, one) = open_stream(s.addr, &[]).await;
    let (second, _, two) = open_stream(s.addr, &[]).await;
    assert_eq!((first, second), (200, 200));
    let (third, kind, _) = open_stream(s.addr, &[]).await;
    assert_eq!((third, kind.as_deref()), (503, Some("application/json")), "a third client is turned away");
    drop(one);
    // The server notices the client left when it next writes to it: events do.
    let mut freed = false;
    for _ in 0..50 {
        s.engine.start("expense", json!({})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let (status, _, stream) = open_stream(s.addr, &[]).await;
        if status == 200 {
            freed = true;
            drop(stream);
            break;
        }
    }
    assert!(freed, "a client that left frees its place");
    drop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reports_statistics_and_pages_its_lists() {
    let s = serve(guarded).await;
    let second = s.engine.start("expense", json!({ "amount": 7 })).await.unwrap();
    until(&s.engine, second, |st| st.status == Status::Awaiting).await;

    let (status, page) = http(s.addr, "GET", "/workflows", Some(TOKEN), "").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"const BASE = "/workflows";"#), "the page knows where it is mounted");

    let (status, body) = http(s.addr, "GET", "/workflows/api/overview", Some(TOKEN), "").await;
    assert_eq!(status, 200, "{body}");
    let overview = json_of(&body);
    let flaky = overview["workflows"].as_array().unwrap().iter().find(|w| w["name"] == "flaky").unwrap().clone();
    assert_eq!(flaky["stats"]["ended"], 1);
    assert_eq!(flaky["stats"]["success_rate"], 0.0);
    assert_eq!(flaky["stats"]["errors"]["broken"], 1);
    let expense = overview["workflows"].as_array().unwrap().iter().find(|w| w["name"] == "expense").unwrap().clone();
    assert_eq!(expense["running"], 2);
    assert_eq!(overview["running_total"], 2);
    assert_eq!(overview["running"][0]["id"], second.to_string(), "newest first");
    assert_eq!(overview["running"][0]["status"], "awaiting");
    assert_eq!(overview["dead_letters"][0]["id"], s.letter.to_string());

    let (_, body) = http(s.addr, "GET", "/workflows/api/overview?offset=1&limit=1", Some(TOKEN), "").await;
    let paged = json_of(&body);
    assert_eq!(paged["running"].as_array().unwrap().len(), 1);
    assert_eq!(paged["running"][0]["id"], s.awaiting.to_string());
    assert_eq!(paged["running_total"], 2);
    let (_, body) = http(s.addr, "GET", "/workflows/api/overview?limit=100000", Some(TOKEN), "").await;
    assert_eq!(json_of(&body)["running"].as_array().unwrap().len(), 2, "a page holds at most MAX_PAGE rows");
    let (status, _) = http(s.addr, "GET", "/workflows/api/overview?limit=lots", Some(TOKEN), "").await;
    assert_eq!(status, 400, "a bad page is refused");

    let (status, body) =
        http(s.addr, "GET", &format!("/workflows/api/executions/{}", s.awaiting), Some(TOKEN), "").await;
    assert_eq!(status, 200);
    let execution = json_of(&body);
    assert_eq!(execution["state"]["status"], "awaiting");
    assert_eq!(execution["stored"], false, "held here: its live state");
    assert!(execution["dag"].as_str().unwrap().contains(r#"class="step awaiting" data-step="approve""#));

    let (status, body) = http(s.addr, "GET", "/workflows/api/executions/not-an-id", Some(TOKEN), "").await;
    assert_eq!(status, 400);
    assert!(json_of(&body)["error"].as_str().unwrap().contains("not-an-id"), "the bad id is named: {body}");

    let cancel = format!("/workflows/api/executions/{}/cancel", s.awaiting);
    let (status, body) = http(s.addr, "POST", &cancel, Some(TOKEN), r#"{"reason": "duplicate"}"#).await;
    assert_eq!(status, 200, "{body}");
    let ended = s.engine.wait(s.awaiting).await.unwrap();
    assert_eq!((ended.status, ended.cancel_reason.as_deref()), (Status::Cancelled, Some("duplicate")));
    let (status, body) = http(s.addr, "POST", &cancel, Some(TOKEN), "{}").await;
    assert_eq!(status, 409, "cancelling an ended execution conflicts: {body}");
    let (_, body) = http(s.addr, "GET", "/workflows/api/overview", Some(TOKEN), "").await;
    assert_eq!(json_of(&body)["running_total"], 1, "an action refreshes the figures");
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
async fn the_hosts_layer_covers_every_route() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    async fn operators(req: Request, next: Next) -> Response {
        match req.headers().get("x-operator") {
            Some(_) => next.run(req).await,
            None => axum::http::StatusCode::FORBIDDEN.into_response(),
        }
    }
    let s = serve(|engine| Dashboard::new(engine).layer(middleware::from_fn(operators)).router()).await;
    for (method, path, body) in routes(&s) {
        let a = call(s.addr, method, &path, &[("content-type", "application/json")], body).await;
        assert_eq!(a.status, 403, "{method} {path}");
    }
    let (status, _, _) = open_stream(s.addr, &[]).await;
    assert_eq!(status, 403);
    let pause = format!("/workflows/api/executions/{}/pause", s.awaiting);
    let a = call(s.addr, "POST", &pause, &[("content-type", "application/json"), ("x-operator", "ann")], "{}").await;
    assert_eq!(a.status, 200, "the actions are there behind the host's layer: {}", a.body);
    assert_eq!(s.engine.get_state(s.awaiting).await.unwrap().status, Status::Paused);
}

/// A store whose reads fail as an unreachable PostgreSQL database's do.
#[derive(Debug)]
struct Unreachable {
    inner: MemoryStore,
    error: String,
}

#[async_trait]
impl Store for Unreachable {
    fn durability(&self) -> Durability {
        Durability::Durable
    }
    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.inner.write(batch).await
    }
    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError> {
        Err(StoreError::Unavailable(self.error.clone()))
    }
    async fn finished(&self, _id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        Err(StoreError::Unavailable(self.error.clone()))
    }
    async fn list_finished(&self, _q: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        Err(StoreError::Unavailable(self.error.clone()))
    }
    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner.dead_letters(workflow).await
    }
    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner.purge_dead_letters(now).await
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.inner.prune_finished(workflow, ended_before, limit).await
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        self.inner.ended_with_key(workflow, key, since).await
    }
    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        Ok(vec![expense().snapshot()])
    }
    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        self.inner.definition_version(name, version).await
    }
    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.claim_tick(key, fire_time).await
    }
    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.inner.last_ticks().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_passwords_never_reach_an_answer() {
    // What connecting to a database that is not there says, password and all.
    let url = "postgres://sagaflow@127.0.0.1:1/jobs?password=hunter2&connect_timeout=1";
    let error = match sagaflow::store::PostgresStore::connect(url).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(e) => e.to_string(),
    };
    let error = if error.contains("hunter2") { error } else { format!("{error} (from `{url}`)") };
    let store = Unreachable { inner: MemoryStore::new(), error };
    let addr = listen(Dashboard::over_store(Arc::new(store), None).router()).await;
    let id = ExecutionId::new();
    for path in [
        "/workflows/api/overview".to_owned(),
        "/workflows/api/workflows/expense".into(),
        format!("/workflows/api/executions/{id}"),
    ] {
        let (status, body) = http(addr, "GET", &path, None, "").await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.contains("127.0.0.1:1"), "the error says what failed: {body}");
        assert!(!body.contains("hunter2"), "{path} shows no password: {body}");
        assert!(body.contains("password=***"), "{body}");
    }
}

/// The dashboard over an SQLite file alone, beside the engine that holds it: it
/// reads the file read-only, shows a live execution from its row and journal, and
/// its actions reach the engine through the file's request queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_over_a_store_shows_and_controls_what_an_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.db");
    let url = format!("sqlite://{}", path.display());
    let (engine, awaiting, letter) = engine_with_work(Engine::builder().store_url(&url)).await;
    let reads: Arc<dyn Store> = Arc::new(SqliteStore::open_read_only(&path).await.unwrap());
    let control = StoreControl::sqlite(SqliteStore::open_control(&path).await.unwrap());
    let addr = listen(Dashboard::over_store(reads, Some(control)).bearer_token(TOKEN).unwrap().router()).await;

    // The engine knows the step awaits before its journal's entry is committed.
    let mut overview = Value::Null;
    for _ in 0..100 {
        let (status, body) = http(addr, "GET", "/workflows/api/overview", Some(TOKEN), "").await;
        assert_eq!(status, 200, "{body}");
        overview = json_of(&body);
        if overview["running"][0]["status"] == "awaiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(overview["running"][0]["id"], awaiting.to_string());
    assert_eq!(overview["running"][0]["status"], "awaiting", "as its journal shows");
    assert_eq!(overview["running"][0]["stored"], true);
    assert_eq!(overview["dead_letters"][0]["id"], letter.to_string());
    let flaky = overview["workflows"].as_array().unwrap().iter().find(|w| w["name"] == "flaky").unwrap().clone();
    assert_eq!(flaky["stats"]["errors"]["broken"], 1);

    let (_, body) = http(addr, "GET", &format!("/workflows/api/executions/{awaiting}"), Some(TOKEN), "").await;
    let shown = json_of(&body);
    assert_eq!(shown["stored"], true);
    assert_eq!(shown["state"]["status"], "awaiting");
    let timeline = shown["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert_eq!((timeline[0]["step"].as_str(), timeline[0]["outcome"].as_str()), (Some("submit"), Some("output")));
    assert_eq!((timeline[1]["step"].as_str(), timeline[1]["outcome"].as_str()), (Some("approve"), Some("await")));
    assert!(shown["dag"].as_str().unwrap().contains(r#"class="step awaiting" data-step="approve""#));

    let (_, body) = http(addr, "GET", "/workflows/api/workflows/nightly", Some(TOKEN), "").await;
    let next = &json_of(&body)["schedules"][0]["next"];
    assert_eq!(next.as_array().map(Vec::len), Some(5), "fire times from the stored ticks: {body}");

    let resume = format!("/workflows/api/executions/{awaiting}/resume");
    let (status, body) = http(addr, "POST", &resume, Some(TOKEN), r#"{"approver": "dashboard"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(json_of(&body)["note"].as_str().unwrap().contains("queued"), "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(10), engine.wait(awaiting)).await.unwrap().unwrap();
    assert_eq!(ended.context["reimbursed_by"], "dashboard", "the engine carried the resume out");
    let (status, body) = http(addr, "POST", &resume, Some(TOKEN), "{}").await;
    assert_eq!(status, 409, "an ended execution takes no more requests: {body}");
    assert!(body.contains("has ended (completed)"), "{body}");
    let (status, _) =
        http(addr, "POST", &format!("/workflows/api/dead-letters/{letter}/retry"), Some(TOKEN), "{}").await;
    assert_eq!(status, 200);
    for _ in 0..100 {
        if engine.dead_letters().list(None).await.unwrap().iter().all(|d| d.id != letter) {
            engine.shutdown().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the engine replayed the dead letter");
}

/// On a cluster, the dashboard of a node shows another node's execution from
/// its store row and journal: a GET runs no user code (its graft function, which
/// `get_state` would run again to rebuild the state, is never called).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_get_replays_no_journal() {
    let Some(base) = crate::cli::database() else { return };
    let schema = crate::cluster::Schema::new(base);
    let grafts = Arc::new(AtomicUsize::new(0));
    let def = |grafts: Arc<AtomicUsize>| {
        Workflow::new("fanout")
            .graft(
                "split",
                move |_ctx: Context| {
                    let grafts = Arc::clone(&grafts);
                    async move {
                        grafts.fetch_add(1, Ordering::SeqCst);
                        let part =
                            sagaflow::Task::new("part_1", |_ctx: Context| async { Ok::<_, StepError>(Outcome::Done) });
                        Ok::<_, StepError>(Outcome::expand(vec![part]))
                    }
                },
                Step::opts(),
            )
            .step_with(
                "approve",
                |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
                Step::opts().after_graft("split").await_approval(true),
            )
            .build()
            .expect("valid")
    };
    let worker =
        Engine::builder().store_url(schema.store_url()).register(def(Arc::clone(&grafts))).build().await.unwrap();
    let id = worker.start("fanout", json!({})).await.unwrap();
    until(&worker, id, |s| s.status == Status::Awaiting).await;
    let called = grafts.load(Ordering::SeqCst);
    let viewer_grafts = Arc::new(AtomicUsize::new(0));
    let viewer = Engine::builder()
        .store_url(schema.store_url())
        .cluster(sagaflow::store::ClusterOptions::default().capacity(0))
        .register(def(Arc::clone(&viewer_grafts)))
        .build()
        .await
        .unwrap();
    let addr = listen(Dashboard::new(viewer.clone()).bearer_token(TOKEN).unwrap().router()).await;
    let (status, body) = http(addr, "GET", &format!("/workflows/api/executions/{id}"), Some(TOKEN), "").await;
    assert_eq!(status, 200, "{body}");
    let shown = json_of(&body);
    assert_eq!(shown["stored"], true);
    assert_eq!(shown["state"]["status"], "awaiting");
    let (_, body) = http(addr, "GET", "/workflows/api/overview", Some(TOKEN), "").await;
    assert_eq!(json_of(&body)["running"][0]["id"], id.to_string());
    let (_, body) = http(addr, "GET", "/workflows/api/workflows/fanout", Some(TOKEN), "").await;
    assert_eq!(json_of(&body)["running"], 1);
    assert_eq!(viewer_grafts.load(Ordering::SeqCst), 0, "the viewer ran no graft function");
    assert_eq!(grafts.load(Ordering::SeqCst), called);
    viewer.shutdown().await;
    worker.shutdown().await;
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
    let s = serve(guarded).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_cancel_takes_the_options_of_engine_cancel() {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let booking = Workflow::new("booking")
        .on_cancel(move |_ctx: Context, reason: String| {
            l1.lock().unwrap().push(format!("on_cancel({reason})"));
            std::future::ready(Ok::<(), StepError>(()))
        })
        .step_with(
            "book",
            |_ctx: Context| async { Ok::<_, StepError>(json!({ "booked": true })) },
            Step::opts().rollback(move |_ctx: Context| {
                l2.lock().unwrap().push("unbook".to_owned());
                std::future::ready(Ok::<(), StepError>(()))
            }),
        )
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("book").await_approval(true),
        )
        .build()
        .expect("valid");
    let engine = Engine::builder().register(booking).build().await.expect("engine");
    let addr = listen(guarded(engine.clone())).await;
    let start = || async {
        let id = engine.start("booking", json!({})).await.expect("starts");
        until(&engine, id, |s| s.status == Status::Awaiting).await;
        format!("/workflows/api/executions/{id}/cancel")
    };

    // A flag that is not a boolean is refused, naming the field; nothing happens.
    let cancel = start().await;
    let (status, body) = http(addr, "POST", &cancel, Some(TOKEN), r#"{"rollback": "yes"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["error"].as_str().unwrap().contains("`rollback`"), "the field is named: {body}");
    let (status, body) = http(addr, "POST", &cancel, Some(TOKEN), r#"{"reason": 7}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["error"].as_str().unwrap().contains("`reason`"), "the field is named: {body}");
    assert!(log.lock().unwrap().is_empty());

    // Reason, cleanup and rollback reach the engine.
    let (status, body) =
        http(addr, "POST", &cancel, Some(TOKEN), r#"{"reason": "duplicate", "cleanup": true, "rollback": true}"#).await;
    assert_eq!(status, 200, "{body}");
    let id: ExecutionId = cancel.split('/').nth(4).unwrap().parse().unwrap();
    let ended = engine.wait(id).await.unwrap();
    assert_eq!((ended.status, ended.cancel_reason.as_deref()), (Status::Cancelled, Some("duplicate")));
    assert_eq!(ended.step("book").unwrap().status, sagaflow::StepStatus::Compensated);
    assert_eq!(*log.lock().unwrap(), ["unbook", "on_cancel(duplicate)"]);

    // Without them, a cancel neither compensates nor runs the handler.
    log.lock().unwrap().clear();
    let cancel = start().await;
    let (status, body) = http(addr, "POST", &cancel, Some(TOKEN), "{}").await;
    assert_eq!(status, 200, "{body}");
    let id: ExecutionId = cancel.split('/').nth(4).unwrap().parse().unwrap();
    let ended = engine.wait(id).await.unwrap();
    assert_eq!(ended.cancel_reason.as_deref(), Some("cancelled from the dashboard"));
    assert_eq!(ended.step("book").unwrap().status, sagaflow::StepStatus::Completed);
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_restarts_an_ended_execution_from_a_step() {
    let s = serve(guarded).await;
    let restart = |id: ExecutionId| format!("/workflows/api/executions/{id}/restart");
    let (status, body) = http(s.addr, "POST", &restart(s.letter), Some(TOKEN), r#"{"step": "call"}"#).await;
    assert_eq!(status, 200, "{body}");
    let new: ExecutionId = json_of(&body)["execution"].as_str().unwrap().parse().unwrap();
    let state = s.engine.wait(new).await.unwrap();
    assert_eq!(state.trigger, sagaflow::Trigger::Restart { of: s.letter, from: "call".into() });

    let (status, body) = http(s.addr, "POST", &restart(s.letter), Some(TOKEN), r#"{"step": "cal"}"#).await;
    assert_eq!(status, 404, "{body}");
    assert!(json_of(&body)["error"].as_str().unwrap().contains("did you mean `call`"), "{body}");
    let (status, body) = http(s.addr, "POST", &restart(s.letter), Some(TOKEN), r#"{"context": {}}"#).await;
    assert_eq!(status, 400, "the step is required: {body}");
    let (status, body) =
        http(s.addr, "POST", &restart(s.letter), Some(TOKEN), r#"{"step": "call", "context": 3}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(s.addr, "POST", &restart(s.awaiting), Some(TOKEN), r#"{"step": "approve"}"#).await;
    assert_eq!(status, 409, "a live execution is not restarted: {body}");
    let (status, _) = http(s.addr, "POST", &restart(s.letter), None, r#"{"step": "call"}"#).await;
    assert_eq!(status, 401);
    s.engine.shutdown().await;
}
