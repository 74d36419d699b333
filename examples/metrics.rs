//! Telemetry as Prometheus metrics: a task subscribes to the engine's events and
//! records them with the `metrics` facade; `metrics-exporter-prometheus` renders
//! them in Prometheus' text format, as a scrape endpoint would serve them.
//!
//! A small checkout workflow runs a dozen times: some runs retry the payment,
//! some skip the gift wrap, some fail at shipping and roll back. The metrics are
//! printed at the end.
//!
//! Run with `cargo run --example metrics`.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use sagaflow::prelude::*;
use sagaflow::{Event, Subscription};

/// Records one telemetry event as metrics. Every row of the telemetry table maps
/// to a counter, and the measured ones (durations) to a histogram in seconds.
fn record(event: &Event) {
    match event {
        Event::WorkflowStart { workflow_name, trigger_type, .. } => {
            let workflow = workflow_name.to_string();
            counter!("sagaflow_workflow_started_total", "workflow" => workflow.clone(), "trigger_type" => *trigger_type)
                .increment(1);
            gauge!("sagaflow_executions_running", "workflow" => workflow).increment(1.0);
        }
        Event::WorkflowStop { workflow_name, state, duration, .. } => {
            let workflow = workflow_name.to_string();
            let state = state.as_str();
            counter!("sagaflow_workflow_finished_total", "workflow" => workflow.clone(), "state" => state).increment(1);
            histogram!("sagaflow_workflow_duration_seconds", "workflow" => workflow.clone(), "state" => state)
                .record(duration.as_secs_f64());
            gauge!("sagaflow_executions_running", "workflow" => workflow).decrement(1.0);
        }
        Event::WorkflowFail { workflow_name, error, error_step, .. } => {
            let step = error_step.as_deref().unwrap_or("-").to_owned();
            counter!("sagaflow_workflow_failed_total", "workflow" => workflow_name.to_string(),
                "error_step" => step, "kind" => error.kind().to_owned())
            .increment(1);
        }
        Event::WorkflowCancel { workflow_name, .. } => {
            counter!("sagaflow_workflow_cancelled_total", "workflow" => workflow_name.to_string()).increment(1);
        }
        Event::WorkflowPause { workflow_name, .. } => {
            counter!("sagaflow_workflow_paused_total", "workflow" => workflow_name.to_string()).increment(1);
        }
        Event::WorkflowResume { workflow_name, .. } => {
            counter!("sagaflow_workflow_resumed_total", "workflow" => workflow_name.to_string()).increment(1);
        }
        Event::StepStart { workflow_name, step_name, attempt, .. } => {
            let labels = [("workflow", workflow_name.to_string()), ("step", step_name.to_string())];
            counter!("sagaflow_step_attempts_total", &labels).increment(1);
            if *attempt > 1 {
                counter!("sagaflow_step_retries_total", &labels).increment(1);
            }
        }
        Event::StepStop { workflow_name, step_name, duration, result, .. } => {
            histogram!("sagaflow_step_duration_seconds", "workflow" => workflow_name.to_string(),
                "step" => step_name.to_string(), "result" => *result)
            .record(duration.as_secs_f64());
        }
        Event::StepException { workflow_name, step_name, duration, kind, .. } => {
            let (workflow, step) = (workflow_name.to_string(), step_name.to_string());
            counter!("sagaflow_step_exceptions_total", "workflow" => workflow.clone(), "step" => step.clone(),
                "kind" => kind.clone())
            .increment(1);
            histogram!("sagaflow_step_duration_seconds", "workflow" => workflow, "step" => step, "result" => "error")
                .record(duration.as_secs_f64());
        }
        Event::StepSkip { workflow_name, step_name, .. } => {
            counter!("sagaflow_step_skipped_total", "workflow" => workflow_name.to_string(),
                "step" => step_name.to_string())
            .increment(1);
        }
        Event::RollbackStart { workflow_name, .. } => {
            counter!("sagaflow_rollback_started_total", "workflow" => workflow_name.to_string()).increment(1);
        }
        Event::RollbackStop { workflow_name, duration, failed, .. } => {
            let workflow = workflow_name.to_string();
            histogram!("sagaflow_rollback_duration_seconds", "workflow" => workflow.clone())
                .record(duration.as_secs_f64());
            counter!("sagaflow_compensation_failed_total", "workflow" => workflow).increment(failed.len() as u64);
        }
        // `Event` may grow; new kinds are counted by name until mapped.
        other => {
            counter!("sagaflow_other_events_total", "event" => other.name()).increment(1);
        }
    }
}

fn describe() {
    describe_counter!("sagaflow_workflow_started_total", "Executions started");
    describe_counter!("sagaflow_workflow_finished_total", "Executions ended, by final state");
    describe_histogram!(
        "sagaflow_workflow_duration_seconds",
        metrics::Unit::Seconds,
        "Time from an execution's start to its end"
    );
    describe_gauge!("sagaflow_executions_running", "Executions started and not ended yet");
    describe_counter!("sagaflow_workflow_failed_total", "Executions failed, by step and error kind");
    describe_counter!("sagaflow_workflow_cancelled_total", "Executions cancelled");
    describe_counter!("sagaflow_workflow_paused_total", "Executions paused");
    describe_counter!("sagaflow_workflow_resumed_total", "Executions resumed (from a pause or an await)");
    describe_counter!("sagaflow_step_attempts_total", "Step attempts started");
    describe_counter!("sagaflow_step_retries_total", "Step attempts after the first");
    describe_counter!("sagaflow_step_exceptions_total", "Step attempts failed, by error kind");
    describe_counter!("sagaflow_step_skipped_total", "Steps skipped");
    describe_histogram!("sagaflow_step_duration_seconds", metrics::Unit::Seconds, "Duration of one step attempt");
    describe_counter!("sagaflow_rollback_started_total", "Rollbacks started");
    describe_histogram!("sagaflow_rollback_duration_seconds", metrics::Unit::Seconds, "Duration of a rollback");
    describe_counter!("sagaflow_compensation_failed_total", "Compensations that failed");
    describe_counter!("sagaflow_other_events_total", "Events of kinds this exporter does not map yet");
    describe_counter!("sagaflow_telemetry_events_lost_total", "Events the metrics task lost by falling behind");
}

/// Records every event of the subscription until the engine goes away, and how
/// many events it lost if it ever fell behind (the engine never waits for it).
async fn export(mut events: Subscription) {
    let mut lost = 0;
    while let Some(event) = events.recv().await {
        record(&event);
        if events.dropped() > lost {
            counter!("sagaflow_telemetry_events_lost_total").increment(events.dropped() - lost);
            lost = events.dropped();
        }
    }
}

async fn reserve(_ctx: Context) -> StepResult {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(json!({ "reservation": "r-1" }).into())
}

async fn charge(ctx: Context) -> StepResult {
    tokio::time::sleep(Duration::from_millis(10)).await;
    let order: u64 = ctx.get("order")?;
    if order.is_multiple_of(3) && ctx.attempt() == 1 {
        return Err(StepError::new("connection_error", "payment gateway did not answer"));
    }
    Ok(json!({ "payment": format!("p-{order}") }).into())
}

async fn gift_wrap(_ctx: Context) -> StepResult {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(Outcome::Done)
}

async fn ship(ctx: Context) -> StepResult {
    tokio::time::sleep(Duration::from_millis(8)).await;
    let order: u64 = ctx.get("order")?;
    if order.is_multiple_of(4) {
        return Err(StepError::new("validation_error", "no carrier serves this address").permanent());
    }
    Ok(json!({ "tracking": format!("t-{order}") }).into())
}

async fn undo(_ctx: Context) -> StepResult {
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(Outcome::Done)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    describe();

    let checkout = Workflow::new("checkout")
        .step_with("reserve", reserve, Step::opts().rollback_named("release", undo))
        .step_with(
            "charge",
            charge,
            Step::opts().after("reserve").retry_delay("20ms").retry_jitter(false).rollback_named("refund", undo),
        )
        .step_with("gift_wrap", gift_wrap, Step::opts().after("charge").when(|ctx: &Context| ctx.get_or("gift", false)))
        .step_with("ship", ship, Step::opts().after("gift_wrap"))
        .build()?;
    let engine = Engine::builder().register(checkout).build().await?;
    let exporter = tokio::spawn(export(engine.subscribe()));

    let mut ids = Vec::new();
    for order in 1..=12u64 {
        ids.push(engine.start("checkout", json!({ "order": order, "gift": order % 2 == 0 })).await?);
    }
    for id in ids {
        let state = engine.wait(id).await?;
        println!("execution {id}: {}", state.status);
    }

    // Let the exporter catch up, then stop it with the engine.
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.shutdown().await;
    drop(engine);
    exporter.abort();

    prometheus.run_upkeep();
    println!("\n{}", prometheus.render());
    Ok(())
}
