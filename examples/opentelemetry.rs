//! Traces of sagaflow executions in an OpenTelemetry backend (Jaeger, Tempo,
//! Honeycomb, an OpenTelemetry Collector...), over OTLP/HTTP.
//!
//! ```text
//! cargo run --example opentelemetry                       # exports to http://127.0.0.1:4318
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 cargo run --example opentelemetry
//! ```
//!
//! In an application: `sagaflow = { version = "0.1", features = ["opentelemetry"] }`,
//! then install a `tracing-opentelemetry` layer as below. An execution started
//! inside a span joins that span's trace; the trace is kept with the execution in
//! the store, so the spans of its steps join it after a crash and recovery, on the
//! node that takes it over, in a nested workflow and after a resume
//! (`sagaflow.execution` has the fields `trace_id` and `parent_span_id`).
//!
//! The program runs one order (a parallel pair of steps, an approval it gives
//! itself, a shipment), then flushes the spans. With no collector listening it
//! finishes all the same and says that the export failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use sagaflow::prelude::*;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The OTLP exporter, counting the spans it delivered and those it could not.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() { &self.sent } else { &self.failed };
        counter.fetch_add(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
}

fn order() -> sagaflow::WorkflowDef {
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    Workflow::new("order")
        .step("validate", move |_ctx: Context| async move {
            pause(20).await;
            Ok::<_, StepError>(json!({ "valid": true }))
        })
        .step_with(
            "reserve_stock",
            move |_ctx: Context| async move {
                pause(40).await;
                Ok::<_, StepError>(json!({ "reserved": true }))
            },
            Step::opts().after("validate"),
        )
        .step_with(
            "authorize_payment",
            move |_ctx: Context| async move {
                pause(60).await;
                Ok::<_, StepError>(json!({ "authorized": true }))
            },
            Step::opts().after("validate"),
        )
        .step_with(
            "approve",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_resume()) },
            Step::opts().after(["reserve_stock", "authorize_payment"]).await_approval(true),
        )
        .step_with(
            "ship",
            move |_ctx: Context| async move {
                pause(30).await;
                Ok::<_, StepError>(json!({ "shipped": true }))
            },
            Step::opts().after("approve"),
        )
        .build()
        .expect("the workflow is valid")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4318".into());
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(2))
        .build()?;
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let exporter = Counted { inner: otlp, sent: Arc::clone(&sent), failed: Arc::clone(&failed) };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("sagaflow-example").build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("sagaflow-example"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    let engine = Engine::builder().register(order()).build().await?;
    let request = tracing::info_span!("POST /orders");
    let trace = request.context().span().span_context().trace_id();
    let id = engine.start("order", json!({ "order_id": 1042 })).instrument(request).await?;
    println!("execution {id} in trace {trace}");
    for _ in 0..200 {
        if engine.get_state(id).await?.status == Status::Awaiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The approval comes later, from elsewhere: the steps after it stay in the trace.
    engine.resume(id, json!({ "approved_by": "ops" })).await?;
    let done = engine.wait(id).await?;
    println!("{} in {:?}", done.status, done.duration);
    engine.shutdown().await;

    let flushed = provider.shutdown();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    match (flushed, failed) {
        (Ok(()), 0) => println!("{sent} spans sent to {endpoint}: look for trace {trace}"),
        (Ok(()), _) => {
            println!("{failed} spans could not be sent to {endpoint} ({sent} were); is a collector listening?")
        }
        (Err(e), _) => println!("the spans could not be flushed to {endpoint}: {e}"),
    }
    Ok(())
}
