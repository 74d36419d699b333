//! The dependency patterns of the reference: chain, fan-out, fan-in, diamond,
//! race and conditional branches. Each asserts the run order and that independent
//! steps overlapped in time (on tokio's paused clock, so timings are exact).

use sagaflow::prelude::*;
use sagaflow::{StepStatus, Task};

use crate::common::Recorder;

async fn run(def: sagaflow::WorkflowDef, input: serde_json::Value) -> sagaflow::ExecutionState {
    let name = def.name().to_owned();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start(&name, input).await.unwrap();
    engine.wait(id).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn chain_runs_one_after_another() {
    let rec = Recorder::new();
    let def = Workflow::new("chain")
        .step("step_a", rec.sleeper("step_a", 10))
        .step_with("step_b", rec.sleeper("step_b", 10), Step::opts().after("step_a"))
        .step_with("step_c", rec.sleeper("step_c", 10), Step::opts().after("step_b"))
        .step_with("step_d", rec.sleeper("step_d", 10), Step::opts().after("step_c"))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(rec.names(), ["step_a", "step_b", "step_c", "step_d"]);
    assert!(rec.before("step_a", "step_b") && rec.before("step_b", "step_c") && rec.before("step_c", "step_d"));
    assert_eq!(state.progress.done, 4);
}

#[tokio::test(start_paused = true)]
async fn fan_out_runs_the_group_in_parallel() {
    let rec = Recorder::new();
    let def = Workflow::new("fan_out")
        .step("step_a", rec.sleeper("step_a", 10))
        .step_with("step_b", rec.sleeper("step_b", 100), Step::opts().after("step_a").group("parallel"))
        .step_with("step_c", rec.sleeper("step_c", 100), Step::opts().after("step_a").group("parallel"))
        .step_with("step_d", rec.sleeper("step_d", 100), Step::opts().after("step_a").group("parallel"))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    for s in ["step_b", "step_c", "step_d"] {
        assert!(rec.before("step_a", s), "{s} waits for step_a");
    }
    assert!(
        rec.overlapped("step_b", "step_c") && rec.overlapped("step_c", "step_d") && rec.overlapped("step_b", "step_d")
    );
    assert_eq!(state.duration.as_millis(), 110, "three 100 ms steps in parallel take 100 ms");
}

#[tokio::test(start_paused = true)]
async fn fan_in_waits_for_every_branch() {
    let rec = Recorder::new();
    let def = Workflow::new("aggregation")
        .step("start", rec.sleeper("start", 5))
        .fan_out(
            "start",
            [
                Task::new("fetch_api_a", rec.sleeper("fetch_api_a", 30)),
                Task::new("fetch_api_b", rec.sleeper("fetch_api_b", 60)),
                Task::new("fetch_api_c", rec.sleeper("fetch_api_c", 90)),
            ],
        )
        .fan_in(["fetch_api_a", "fetch_api_b", "fetch_api_c"], "aggregate", rec.sleeper("aggregate", 5))
        .step_with("save", rec.sleeper("save", 5), Step::opts().after("aggregate"))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    for s in ["fetch_api_a", "fetch_api_b", "fetch_api_c"] {
        assert!(rec.before(s, "aggregate"), "aggregate waits for {s}");
    }
    assert!(rec.overlapped("fetch_api_a", "fetch_api_c") && rec.overlapped("fetch_api_b", "fetch_api_c"));
    assert!(rec.before("aggregate", "save"));
    assert!(state.context.contains_key("fetch_api_b") && state.context.contains_key("save"));
}

#[tokio::test(start_paused = true)]
async fn fan_in_by_group() {
    let rec = Recorder::new();
    let def = Workflow::new("uploads")
        .step("prepare", rec.sleeper("prepare", 5))
        .step_with("upload_s3", rec.sleeper("upload_s3", 40), Step::opts().after("prepare").group("uploads"))
        .step_with("upload_gcs", rec.sleeper("upload_gcs", 20), Step::opts().after("prepare").group("uploads"))
        .step_with("notify_complete", rec.sleeper("notify_complete", 5), Step::opts().after_group("uploads"))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert!(rec.overlapped("upload_s3", "upload_gcs"));
    assert!(rec.before("upload_s3", "notify_complete") && rec.before("upload_gcs", "notify_complete"));
}

#[tokio::test(start_paused = true)]
async fn diamond_joins_both_sides() {
    let rec = Recorder::new();
    let def = Workflow::new("diamond")
        .step("step_a", rec.sleeper("step_a", 10))
        .step_with("step_b", rec.sleeper("step_b", 50), Step::opts().after("step_a"))
        .step_with("step_c", rec.sleeper("step_c", 20), Step::opts().after("step_a"))
        .step_with("step_d", rec.sleeper("step_d", 10), Step::opts().after(["step_b", "step_c"]))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(rec.names()[0], "step_a");
    assert_eq!(rec.names()[3], "step_d");
    assert!(rec.overlapped("step_b", "step_c"));
    assert!(rec.before("step_b", "step_d") && rec.before("step_c", "step_d"));
    assert_eq!(state.duration.as_millis(), 70, "a(10) + max(b 50, c 20) + d(10)");
}

#[tokio::test(start_paused = true)]
async fn race_continues_when_the_first_completes() {
    let rec = Recorder::new();
    let def = Workflow::new("race")
        .step("step_a", rec.sleeper("step_a", 10))
        .step_with("step_b", rec.sleeper("step_b", 200), Step::opts().after("step_a").group("race"))
        .step_with("step_c", rec.sleeper("step_c", 30), Step::opts().after("step_a").group("race"))
        .step_with("step_d", rec.sleeper("step_d", 10), Step::opts().after_any(["step_b", "step_c"]))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert!(rec.overlapped("step_b", "step_c"));
    assert!(rec.before("step_c", "step_d"), "d starts when c, the first, completes");
    assert!(rec.overlapped("step_b", "step_d"), "d does not wait for b");
    assert_eq!(rec.count("step_d"), 1, "d runs once although b completes later");
}

fn in_stock(ctx: &Context) -> bool {
    ctx.get_or("in_stock", false)
}

fn out_of_stock(ctx: &Context) -> bool {
    !ctx.get_or("in_stock", false)
}

#[tokio::test(start_paused = true)]
async fn branches_run_only_when_their_condition_holds() {
    for stock in [true, false] {
        let rec = Recorder::new();
        let check = {
            let rec = rec.clone();
            let inner = rec.sleeper("check_stock", 10);
            move |ctx: Context| {
                let fut = inner(ctx);
                async move {
                    fut.await?;
                    Ok::<_, StepError>(json!({ "in_stock": stock }))
                }
            }
        };
        let def = Workflow::new("order_processing")
            .step("validate", rec.sleeper("validate", 10))
            .step_with("check_stock", check, Step::opts().after("validate"))
            .branch(
                "check_stock",
                [
                    Task::new("process_immediate", rec.sleeper("process_immediate", 20)).when(in_stock),
                    Task::new("backorder", rec.sleeper("backorder", 20)).when(out_of_stock),
                    Task::new("notify_vendor", rec.sleeper("notify_vendor", 30)).when(out_of_stock),
                ],
            )
            .step_with(
                "complete",
                rec.sleeper("complete", 5),
                Step::opts().after(["process_immediate", "backorder", "notify_vendor"]),
            )
            .build()
            .unwrap();
        let state = run(def, json!({ "order_id": 1 })).await;
        assert_eq!(state.status, Status::Completed);
        let ran = rec.names();
        if stock {
            assert_eq!(ran, ["validate", "check_stock", "process_immediate", "complete"]);
            assert_eq!(state.step("backorder").unwrap().status, StepStatus::Skipped);
            assert_eq!(
                state.step("backorder").unwrap().skip_reason.as_deref(),
                Some("condition `out_of_stock` is false")
            );
        } else {
            assert_eq!(rec.count("process_immediate"), 0);
            assert!(rec.overlapped("backorder", "notify_vendor"));
            assert!(rec.before("notify_vendor", "complete"));
        }
    }
}
