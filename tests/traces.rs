//! Traces that survive hand-offs: an execution started inside an OpenTelemetry
//! span keeps that trace in its creation record, so the spans of its steps join
//! it after a SIGKILL and recovery in a new process, in a nested workflow, after
//! a restart and a resume, and on the node that takes it over. Spans are collected with the
//! SDK's in-memory exporter behind `tracing-opentelemetry`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sagaflow::prelude::*;
use sagaflow::store::{ClusterOptions, SqliteStore, Store};
use serde_json::Value;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::common::until_awaiting;

/// Builds the worker example and returns its path.
fn worker() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["build", "--example", "trace_worker", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "the trace_worker example builds");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "trace_worker")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the worker's executable")
}

#[test]
fn a_trace_survives_a_sigkill_and_the_recovery_in_another_process() {
    let bin = worker();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("traces.db");
    let mut first = Command::new(&bin).arg(&db).arg("start").stdout(Stdio::piped()).spawn().expect("starts");
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // `start` returns once the creation is committed, and the steps start from
    // then on too: the two lines come in either order.
    let mut two: Vec<String> = (0..2).map(|_| lines.next().expect("a line").expect("readable")).collect();
    let charging = two.iter().position(|l| l == "charging").expect("`charge` runs when the kill comes");
    two.remove(charging);
    let started = two.remove(0);
    let parts: Vec<&str> = started.split(' ').collect();
    assert_eq!(parts.len(), 4, "started <id> <trace> <span>: {started}");
    assert_eq!(parts[0], "started", "{started}");
    let (id, trace, root) = (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned());
    first.kill().expect("SIGKILL");
    first.wait().unwrap();

    // The trace is in the creation record that survived the kill.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stored = rt.block_on(async {
        let store = SqliteStore::open_read_only(&db).await.unwrap();
        store.unfinished().await.unwrap().remove(0).execution
    });
    assert_eq!(stored.id.to_string(), id);
    let kept = stored.trace.expect("the record keeps the trace");
    assert_eq!((kept.trace_id.as_str(), kept.span_id.as_str()), (trace.as_str(), root.as_str()));

    let second = Command::new(&bin).arg(&db).arg("resume").output().expect("runs");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let out = String::from_utf8_lossy(&second.stdout);
    assert_eq!(out.lines().last(), Some("done"), "{out}");
    let spans: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let steps: Vec<&Value> = spans.iter().filter(|s| s["name"] == "sagaflow.step").collect();
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step_name"].as_str()).collect();
    assert!(names.contains(&"charge") && names.contains(&"ship"), "the recovered steps ran: {names:?}");
    assert!(steps.iter().all(|s| s["trace_id"] == trace.as_str()), "every recovered step joins the trace: {spans:?}");
    let execution = spans.iter().find(|s| s["name"] == "sagaflow.execution").expect("the execution's span");
    assert_eq!(execution["trace_id"], trace.as_str());
    assert_eq!(execution["parent_span_id"], root.as_str(), "under the span the execution was started in");
    eprintln!("trace {trace}: {} step spans after the SIGKILL, all in it", steps.len());
}

/// A subscriber for this thread that sends spans to an in-memory exporter.
fn traced() -> (InMemorySpanExporter, SdkTracerProvider, tracing::subscriber::DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, provider, guard)
}

fn step_of(span: &SpanData) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == "step_name").map(|kv| kv.value.to_string())
}

fn execution_of(span: &SpanData) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == "execution_id").map(|kv| kv.value.to_string())
}

fn approval() -> sagaflow::WorkflowDef {
    Workflow::new("approval")
        .step("check", |_ctx: Context| async { Ok::<_, StepError>(json!({ "checked": true })) })
        .add_workflow("review", "review", Step::opts().after("check"))
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after("review").await_approval(true),
        )
        .step_with(
            "pay",
            |_ctx: Context| async { Ok::<_, StepError>(json!({ "paid": true })) },
            Step::opts().after("approve"),
        )
        .build()
        .unwrap()
}

fn review() -> sagaflow::WorkflowDef {
    Workflow::new("review")
        .step("read", |_ctx: Context| async { Ok::<_, StepError>(json!({ "read": true })) })
        .build()
        .unwrap()
}

// One thread: the subscriber set for this test sees every span of its engines.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_workflow_and_the_steps_after_a_restart_and_a_resume_join_the_callers_trace() {
    let (exporter, provider, _guard) = traced();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("traces.db").display());
    let engine = Engine::builder().store_url(&url).register(approval()).register(review()).build().await.unwrap();
    let span = tracing::info_span!("request");
    let root = span.context().span().span_context().clone();
    let id = engine.start("approval", json!({})).instrument(span).await.unwrap();
    until_awaiting(&engine, id).await;
    engine.shutdown().await;
    drop(engine);

    // Another engine recovers it; the resume comes from outside any span.
    let engine = Engine::builder().store_url(&url).register(approval()).register(review()).build().await.unwrap();
    engine.resume(id, json!({ "approved": true })).await.unwrap();
    let done = engine.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    let child = done.step("review").unwrap().child.expect("the nested execution");
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let steps: Vec<(String, String)> = spans
        .iter()
        .filter(|s| s.name == "sagaflow.step")
        .filter_map(|s| Some((execution_of(s)?, step_of(s)?)))
        .collect();
    for (execution, step) in [(id, "check"), (child, "read"), (id, "pay")] {
        assert!(steps.contains(&(execution.to_string(), step.to_owned())), "{step} ran: {steps:?}");
    }
    let trace = root.trace_id();
    let foreign: Vec<_> =
        spans.iter().filter(|s| s.name.starts_with("sagaflow.") && s.span_context.trace_id() != trace).collect();
    assert!(foreign.is_empty(), "every span of the execution and its child is in the caller's trace: {foreign:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn on_postgres_the_node_that_takes_an_execution_over_continues_its_trace() {
    let Some(url) = crate::cluster::database() else { return };
    let schema = crate::cluster::Schema::new(url);
    let (exporter, provider, _guard) = traced();
    let options = ClusterOptions::default().poll(Duration::from_millis(50)).park_after(Duration::from_millis(50));
    let node = || async {
        Engine::builder()
            .store_url(schema.store_url())
            .cluster(options.clone())
            .register(approval())
            .register(review())
            .build()
            .await
            .expect("a node starts")
    };
    let (a, b) = (node().await, node().await);
    let span = tracing::info_span!("request");
    let root = span.context().span().span_context().clone();
    let id = a.start("approval", json!({})).instrument(span).await.unwrap();
    until_awaiting(&a, id).await;
    // `a` leaves: its waiting execution goes back to the store, and `b` takes
    // it when the resume comes.
    a.drain().await;
    b.resume(id, json!({ "approved": true })).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), b.wait(id)).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    // The step's span closes as its task winds down, which may come just after
    // the final state is committed.
    let mut pay = None;
    for _ in 0..100 {
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        pay = spans.into_iter().find(|s| s.name == "sagaflow.step" && step_of(s).as_deref() == Some("pay"));
        if pay.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pay = pay.expect("`pay` ran after the takeover");
    assert_eq!(pay.span_context.trace_id(), root.trace_id(), "the step after the takeover is in the caller's trace");
    b.shutdown().await;
}
