//! Introspection of the reference's e-commerce order processing workflow:
//! summary, report, Mermaid, DOT and the table, with and without an execution.
//! Mermaid output is parsed by mermaid.js and DOT output rendered by Graphviz in
//! `diagrams_parse` below; here the text is compared with golden files.

use std::collections::BTreeSet;
use std::time::Duration;

use sagaflow::introspect::{self, DiagramOptions, Direction, StateClass, TriggerType};
use sagaflow::prelude::*;
use sagaflow::{ExecutionState, Schedule, StepStatus, Task, WorkflowDef};

use crate::common::StepFuture;
use crate::tools::assert_golden;

/// A step of the order workflow: fails for good when the input's `fail` names it,
/// sleeps an hour when `hang` names it, otherwise outputs `{name: true}`.
fn step(name: &'static str) -> impl Fn(Context) -> StepFuture + Send + Sync + 'static {
    move |ctx: Context| {
        Box::pin(async move {
            if ctx.get_opt::<String>("fail")?.as_deref() == Some(name) {
                return Err(StepError::new("validation_error", format!("{name} refused the order")).permanent());
            }
            if ctx.get_opt::<String>("hang")?.as_deref() == Some(name) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(json!({ name: true }).into())
        })
    }
}

async fn release_inventory(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn void_authorization(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn refund_payment(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn cancel_shipment(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn handle_order_failure(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

/// SPEC's "E-Commerce Order Processing" workflow, step for step.
pub fn order_processing() -> WorkflowDef {
    let notify = || Step::opts().after("create_shipment").group("notifications").on_error(OnError::Continue);
    Workflow::new("order_processing")
        .timeout("30m")
        .on_failure(handle_order_failure)
        .dead_letter(true)
        .tags(["orders", "payments"])
        .step("validate_order", step("validate_order"))
        .step_with("check_fraud", step("check_fraud"), Step::opts().after("validate_order").timeout("10s"))
        .step_with(
            "reserve_inventory",
            step("reserve_inventory"),
            Step::opts().after("check_fraud").group("pre_fulfillment").rollback(release_inventory),
        )
        .step_with(
            "authorize_payment",
            step("authorize_payment"),
            Step::opts().after("check_fraud").group("pre_fulfillment").rollback(void_authorization),
        )
        .step_with(
            "capture_payment",
            step("capture_payment"),
            Step::opts().after_group("pre_fulfillment").rollback(refund_payment),
        )
        .step_with(
            "create_shipment",
            step("create_shipment"),
            Step::opts().after("capture_payment").rollback(cancel_shipment),
        )
        .step_with("send_confirmation_email", step("send_confirmation_email"), notify())
        .step_with("send_sms_notification", step("send_sms_notification"), notify())
        .step_with("update_analytics", step("update_analytics"), notify())
        .step_with("complete_order", step("complete_order"), Step::opts().after_group("notifications"))
        .build()
        .unwrap()
}

async fn engine() -> Engine {
    Engine::builder().register(order_processing()).build().await.unwrap()
}

/// An execution stopped in the middle: `reserve_inventory` still running,
/// `authorize_payment` done, the rest not started.
pub async fn running_state(engine: &Engine) -> ExecutionState {
    let id = engine.start("order_processing", json!({ "hang": "reserve_inventory" })).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let state = engine.get_state(id).await.unwrap();
    assert_eq!(state.status, Status::Running);
    state
}

/// An execution whose shipment failed: payment, reservation and authorization
/// compensated, notifications and completion never started.
pub async fn rolled_back_state(engine: &Engine) -> ExecutionState {
    let id = engine.start("order_processing", json!({ "fail": "create_shipment" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::RolledBack);
    state
}

#[tokio::test]
async fn table_matches_golden() {
    let engine = engine().await;
    let table = engine.to_table("order_processing").unwrap();
    assert_golden("order_processing.table.txt", &table);
    assert_eq!(table, introspect::to_table(&order_processing().snapshot()), "the engine wraps the pure function");
}

#[tokio::test]
async fn mermaid_of_the_definition_matches_golden() {
    let engine = engine().await;
    let plain = engine.to_mermaid("order_processing", DiagramOptions::new()).await.unwrap();
    assert_golden("order_processing.mmd", &plain);
    let groups = engine.to_mermaid("order_processing", DiagramOptions::new().show_groups(true)).await.unwrap();
    assert_golden("order_processing.groups.mmd", &groups);
    let lr = engine.to_mermaid("order_processing", DiagramOptions::new().direction(Direction::LeftRight)).await;
    assert_eq!(lr.unwrap(), plain.replacen("graph TD", "graph LR", 1));
}

#[tokio::test]
async fn dot_of_the_definition_matches_golden() {
    let engine = engine().await;
    let plain = engine.to_dot("order_processing", DiagramOptions::new()).await.unwrap();
    assert_golden("order_processing.dot", &plain);
    let groups = engine.to_dot("order_processing", DiagramOptions::new().show_groups(true)).await.unwrap();
    assert_golden("order_processing.groups.dot", &groups);
}

#[tokio::test(start_paused = true)]
async fn diagrams_of_a_running_execution_match_golden() {
    let engine = engine().await;
    let state = running_state(&engine).await;
    let opts = DiagramOptions::new().show_groups(true).execution(state.id);
    let mermaid = engine.to_mermaid("order_processing", opts.clone()).await.unwrap();
    assert_golden("order_processing.running.mmd", &mermaid);
    let dot = engine.to_dot("order_processing", opts).await.unwrap();
    assert_golden("order_processing.running.dot", &dot);
    // The same from the state alone, without the engine.
    let snapshot = order_processing().snapshot();
    assert_eq!(introspect::to_mermaid(&snapshot, &DiagramOptions::new().show_groups(true).state(state)), mermaid);
}

#[tokio::test(start_paused = true)]
async fn diagrams_of_a_rolled_back_execution_match_golden() {
    let engine = engine().await;
    let state = rolled_back_state(&engine).await;
    let mermaid = engine.to_mermaid("order_processing", DiagramOptions::new().execution(state.id)).await.unwrap();
    assert_golden("order_processing.rolled_back.mmd", &mermaid);
    let dot = engine.to_dot("order_processing", DiagramOptions::new().show_groups(true).state(state)).await.unwrap();
    assert_golden("order_processing.rolled_back.dot", &dot);
}

#[tokio::test(start_paused = true)]
async fn mermaid_classes_follow_every_step_state() {
    let engine = engine().await;
    let state = rolled_back_state(&engine).await;
    let chart = introspect::to_mermaid(&order_processing().snapshot(), &DiagramOptions::new().state(state.clone()));
    for s in &state.steps {
        let class = StateClass::of(s.status).as_str();
        assert!(chart.contains(&format!("  {}[", s.name)), "{} is drawn", s.name);
        assert!(chart.lines().any(|l| l.starts_with(&format!("  {}[", s.name)) && l.ends_with(&format!(":::{class}"))));
    }
    let by_status = |st: StepStatus| state.steps.iter().filter(|s| s.status == st).count();
    assert_eq!(by_status(StepStatus::Compensated), 3, "capture, reserve and authorize were compensated");
    assert_eq!(by_status(StepStatus::Failed), 1);
    assert_eq!(by_status(StepStatus::Pending), 4);
    for class in StateClass::ALL {
        assert!(chart.contains(&format!("  classDef {} fill:{}", class.as_str(), class.fill())));
    }
}

#[tokio::test]
async fn report_of_order_processing() {
    let engine = engine().await;
    let report = engine.report("order_processing").unwrap();
    assert_eq!(
        report.execution_order,
        [
            vec!["validate_order"],
            vec!["check_fraud"],
            vec!["reserve_inventory", "authorize_payment"],
            vec!["capture_payment"],
            vec!["create_shipment"],
            vec!["send_confirmation_email", "send_sms_notification", "update_analytics"],
            vec!["complete_order"],
        ]
    );
    assert_eq!(report.parallel_groups["pre_fulfillment"], ["reserve_inventory", "authorize_payment"]);
    assert_eq!(
        report.parallel_groups["notifications"],
        ["send_confirmation_email", "send_sms_notification", "update_analytics"]
    );
    assert!(report.grafts.is_empty() && report.nested_workflows.is_empty());
    assert_eq!(report.rollbacks["capture_payment"], "refund_payment");
    assert_eq!(report.rollbacks.len(), 4);
    // Every step has the 5 minute default but check_fraud (10s); ties go to the step
    // declared first.
    assert_eq!(
        report.critical_path,
        [
            "validate_order",
            "check_fraud",
            "reserve_inventory",
            "capture_payment",
            "create_shipment",
            "send_confirmation_email",
            "complete_order"
        ]
    );
    assert_eq!(report.total_timeout, Some(Duration::from_secs(6 * 300 + 10)));
    assert_eq!(report.workflow_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(report.estimated_timeout, Some(Duration::from_secs(1800)), "capped by the workflow's 30m");
    assert_eq!(report.handlers["on_failure"], "handle_order_failure");
    assert!(report.dead_letter);

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["total_timeout"], 1_810_000);
    assert_eq!(json["workflow_timeout"], 1_800_000);
    assert_eq!(json["trigger"], "manual");
    assert_eq!(json["execution_order"][2], json!(["reserve_inventory", "authorize_payment"]));
    assert_eq!(json["steps"][1]["timeout"], "10s");
    let back: introspect::Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[tokio::test]
async fn summary_of_order_processing() {
    let engine = engine().await;
    let summary = engine.summary("order_processing").unwrap();
    assert_eq!(summary.name, "order_processing");
    assert_eq!(summary.steps, 10);
    assert_eq!(summary.parallel_groups, 2);
    assert_eq!((summary.grafts, summary.nested_workflows), (0, 0));
    assert!(summary.has_rollback);
    assert_eq!(summary.estimated_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(summary.trigger, TriggerType::Manual);
    assert_eq!(summary.tags, ["orders", "payments"]);
    assert_eq!(summary.version, order_processing().version());
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        json,
        json!({
            "name": "order_processing", "version": order_processing().version(), "steps": 10,
            "parallel_groups": 2, "grafts": 0, "nested_workflows": 0, "has_rollback": true,
            "estimated_timeout": 1_800_000, "trigger": "manual", "schedules": [], "events": [],
            "tags": ["orders", "payments"]
        })
    );
}

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

fn diamond(b: &str, c: &str) -> WorkflowDef {
    Workflow::new("diamond")
        .step_with("a", noop, Step::opts().timeout("1s"))
        .step_with("b", noop, Step::opts().after("a").timeout(b))
        .step_with("c", noop, Step::opts().after("a").timeout(c))
        .step_with("d", noop, Step::opts().after(["b", "c"]).timeout("2s"))
        .build()
        .unwrap()
}

#[test]
fn critical_path_on_a_diamond_with_unequal_timeouts() {
    let report = introspect::report(&diamond("10s", "3s").snapshot());
    assert_eq!(report.execution_order, [vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert_eq!(report.critical_path, ["a", "b", "d"]);
    assert_eq!(report.total_timeout, Some(Duration::from_secs(13)));
    assert_eq!(report.estimated_timeout, Some(Duration::from_secs(13)), "no workflow timeout to cap it");

    let report = introspect::report(&diamond("3s", "1m").snapshot());
    assert_eq!(report.critical_path, ["a", "c", "d"]);
    assert_eq!(report.total_timeout, Some(Duration::from_secs(63)));
    assert_eq!(introspect::summary(&diamond("3s", "1m").snapshot()).estimated_timeout, Some(Duration::from_secs(63)));

    // A step that may run forever makes the total unbounded, and the path goes
    // through it.
    let report = introspect::report(&diamond("infinity", "1h").snapshot());
    assert_eq!(report.critical_path, ["a", "b", "d"]);
    assert_eq!(report.total_timeout, None);
    assert_eq!(serde_json::to_value(&report).unwrap()["total_timeout"], serde_json::Value::Null);
}

#[test]
fn after_any_waits_for_the_first_dependency() {
    let def = Workflow::new("race")
        .step_with("start", noop, Step::opts().timeout("1s"))
        .step_with("slow", noop, Step::opts().after("start").timeout("1h"))
        .step_with("fast", noop, Step::opts().after("start").timeout("5s"))
        .step_with("deeper", noop, Step::opts().after("slow").timeout("1s"))
        .step_with("winner", noop, Step::opts().after_any(["deeper", "fast"]).timeout("2s"))
        .build()
        .unwrap();
    let report = introspect::report(&def.snapshot());
    assert_eq!(report.execution_order, [vec!["start"], vec!["slow", "fast"], vec!["deeper", "winner"]]);
    // `winner` starts when `fast` can have ended (6s), so the longest chain is the
    // slow branch: 1s + 1h + 1s.
    assert_eq!(report.critical_path, ["start", "slow", "deeper"]);
    assert_eq!(report.total_timeout, Some(Duration::from_secs(3602)));
    let chart = introspect::to_mermaid(&def.snapshot(), &DiagramOptions::new());
    assert!(chart.contains("  deeper -.-> winner\n  fast -.-> winner\n"), "{chart}");
    let dot = introspect::to_dot(&def.snapshot(), &DiagramOptions::new());
    assert!(dot.contains("  fast -> winner [style=dashed];\n"), "{dot}");
}

#[tokio::test]
async fn list_all_shows_every_workflow_with_its_trigger() {
    let nightly = Workflow::new("nightly_report")
        .step("generate", noop)
        .schedule(Schedule::cron("0 6 * * *").unwrap())
        .tags(["reports"])
        .build()
        .unwrap();
    let on_order = Workflow::new("order_created").step("process", noop).on_event("order.created").build().unwrap();
    let engine =
        Engine::builder().register(order_processing()).register(nightly).register(on_order).build().await.unwrap();
    let all = engine.list_all();
    let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["nightly_report", "order_created", "order_processing"]);
    assert_eq!(all[0].trigger_type, TriggerType::Scheduled);
    assert_eq!(all[0].schedules.len(), 1);
    assert_eq!(all[1].trigger_type, TriggerType::Event);
    assert_eq!(all[1].events, ["order.created"]);
    assert_eq!(all[2].trigger_type, TriggerType::Manual);
    assert_eq!((all[2].steps, all[2].running), (10, 0));
    assert_eq!(engine.summary("nightly_report").unwrap().trigger, "scheduled");

    engine.start("order_processing", json!({ "hang": "validate_order" })).await.unwrap();
    let all = engine.list_all();
    assert_eq!(all[2].running, 1);
    let json = serde_json::to_value(&all[2]).unwrap();
    assert_eq!(json["trigger_type"], "manual");
    assert_eq!(json["steps"], 10);
    assert_eq!(json["running"], 1);
}

async fn add_two(_ctx: Context) -> StepResult {
    Ok(Outcome::expand([Task::new("part_1", noop), Task::new("part_2", noop)]))
}

/// A graft that adds two steps, and a nested workflow that waits for them.
pub fn signup() -> WorkflowDef {
    Workflow::new("signup")
        .step("create_user", noop)
        .graft("split_work", add_two, Step::opts().after("create_user"))
        .add_workflow("welcome", "send_notification", Step::opts().after_graft("split_work"))
        .build()
        .unwrap()
}

/// An engine with `signup` and the workflow it nests.
pub async fn signup_engine() -> Engine {
    let child = Workflow::new("send_notification").step("format", noop).build().unwrap();
    Engine::builder().register(child).register(signup()).build().await.unwrap()
}

#[tokio::test]
async fn grafts_and_nested_workflows_are_reported_and_drawn() {
    let engine = signup_engine().await;
    let report = engine.report("signup").unwrap();
    assert_eq!(report.grafts, ["split_work"]);
    assert_eq!(report.nested_workflows["welcome"], "send_notification");
    assert_eq!(report.execution_order, [vec!["create_user"], vec!["split_work"], vec!["welcome"]]);
    let summary = engine.summary("signup").unwrap();
    assert_eq!((summary.grafts, summary.nested_workflows), (1, 1));
    assert!(!summary.has_rollback);

    let id = engine.start("signup", json!({})).await.unwrap();
    assert_eq!(engine.wait(id).await.unwrap().status, Status::Completed);
    let chart = engine.to_mermaid("signup", DiagramOptions::new().execution(id)).await.unwrap();
    assert_golden("signup.completed.mmd", &chart);
    let dot = engine.to_dot("signup", DiagramOptions::new().execution(id)).await.unwrap();
    assert_golden("signup.completed.dot", &dot);
    assert!(engine.to_table("signup").unwrap().contains("│ welcome     │ graft(split_work) │"));
}

#[tokio::test]
async fn unknown_workflows_and_foreign_executions_are_errors() {
    let other = Workflow::new("other").step("only", noop).build().unwrap();
    let engine = Engine::builder().register(order_processing()).register(other).build().await.unwrap();
    let err = engine.summary("order_procesing").unwrap_err().to_string();
    assert!(err.contains("did you mean `order_processing`"), "{err}");
    assert!(engine.report("nope").is_err() && engine.to_table("nope").is_err());
    assert!(engine.to_dot("nope", DiagramOptions::new()).await.is_err());
    let id = engine.start("other", json!({})).await.unwrap();
    engine.wait(id).await.unwrap();
    let err = engine.to_mermaid("order_processing", DiagramOptions::new().execution(id)).await.unwrap_err();
    assert!(err.to_string().contains("it is an execution of workflow `other`, not of `order_processing`"), "{err}");
}

/// Names in several scripts, of several widths, and longer than the headers.
pub fn international() -> WorkflowDef {
    Workflow::new("international")
        .step_with("überprüfen_bestellung", noop, Step::opts().timeout("10s"))
        .step_with("注文を確認する", noop, Step::opts().after("überprüfen_bestellung").max_retries(0))
        .step_with(
            "envoyer_la_confirmation_au_client_très_longtemps",
            noop,
            Step::opts().after("注文を確認する").rollback(noop),
        )
        .step_with("📦_ship", noop, Step::opts().after_any(["注文を確認する", "überprüfen_bestellung"]))
        .step_with("e\u{301}tape", noop, Step::opts().after("📦_ship").timeout("infinity"))
        .build()
        .unwrap()
}

#[test]
fn table_aligns_non_ascii_names() {
    use unicode_width::UnicodeWidthStr;
    let table = introspect::to_table(&international().snapshot());
    assert_golden("international.table.txt", &table);
    let widths: BTreeSet<usize> = table.lines().map(UnicodeWidthStr::width).collect();
    assert_eq!(widths.len(), 1, "every line is as wide as the others:\n{table}");
    // The column separators stand in the same columns on every line.
    let columns = |line: &str| -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::new();
        for c in line.chars() {
            if "│┼┬┴├┤┌┐└┘".contains(c) {
                out.push(at);
            }
            at += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        }
        out
    };
    let first = columns(table.lines().next().unwrap());
    assert_eq!(first.len(), 6);
    for line in table.lines() {
        assert_eq!(columns(line), first, "misaligned line: {line}");
    }
}
