//! A worker process for the trace test (`tests/traces.rs`): one execution of a
//! three-step workflow on an SQLite file, traced with OpenTelemetry (the SDK's
//! in-memory exporter behind `tracing-opentelemetry`), so that a test can kill
//! it with SIGKILL mid-execution, start it again, and check that the spans of
//! the recovered steps belong to the trace the execution was started in.
//!
//! ```text
//! cargo run --example trace_worker -- <database> start|resume
//! ```
//!
//! `start` starts the execution inside a `checkout` span and prints
//! `started <execution> <trace id> <checkout span id>`; its step `charge` then
//! hangs (the process is to be killed) and the worker prints `charging` when it
//! does. `resume` recovers the execution, lets it end, and prints every span the
//! exporter saw as one JSON line each (`name`, `trace_id`, `span_id`,
//! `parent_span_id`, `step_name`), then `done`.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use sagaflow::prelude::*;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn checkout(resumed: bool) -> sagaflow::WorkflowDef {
    Workflow::new("checkout")
        .step("reserve", |_ctx: Context| async { Ok::<_, StepError>(json!({ "reserved": true })) })
        .step_with(
            "charge",
            move |_ctx: Context| async move {
                if !resumed {
                    println!("charging");
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok::<_, StepError>(json!({ "charged": true }))
            },
            Step::opts().after("reserve").timeout("infinity"),
        )
        .step_with(
            "ship",
            |_ctx: Context| async { Ok::<_, StepError>(json!({ "shipped": true })) },
            Step::opts().after("charge"),
        )
        .build()
        .expect("the workflow is valid")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (db, mode) = (args.next().expect("a database path"), args.next().expect("start or resume"));
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("trace_worker")));
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");

    let resumed = mode == "resume";
    let engine = Engine::builder()
        .store_url(format!("sqlite://{db}"))
        .register(checkout(resumed))
        .build()
        .await
        .expect("the engine starts");
    if !resumed {
        let span = tracing::info_span!("checkout");
        let cx = span.context();
        let root = cx.span().span_context().clone();
        let id = engine.start("checkout", json!({ "order": 1042 })).instrument(span).await.expect("starts");
        println!("started {id} {} {}", root.trace_id(), root.span_id());
        std::future::pending::<()>().await;
    }
    for running in engine.list_running("checkout").await.expect("lists") {
        let done = engine.wait(running.id).await.expect("ends");
        assert_eq!(done.status, Status::Completed);
    }
    let _ = provider.force_flush();
    for span in exporter.get_finished_spans().expect("the exporter holds the spans") {
        let step = span.attributes.iter().find(|kv| kv.key.as_str() == "step_name").map(|kv| kv.value.to_string());
        let line = json!({
            "name": span.name,
            "trace_id": span.span_context.trace_id().to_string(),
            "span_id": span.span_context.span_id().to_string(),
            "parent_span_id": span.parent_span_id.to_string(),
            "step_name": step,
        });
        println!("{line}");
    }
    println!("done");
    engine.shutdown().await;
}
