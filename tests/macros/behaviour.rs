//! Workflows written with the macros, run through the engine: every method shape,
//! handlers and compensations reaching `&self`, grafts, nested workflows, approvals,
//! events, dynamic timeouts and custom backoffs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, StepStatus, Task, Trigger};
use serde::Serialize;
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

async fn run(engine: &Engine, workflow: &str, input: serde_json::Value) -> ExecutionState {
    let id = engine.start(workflow, input).await.unwrap();
    engine.wait(id).await.unwrap()
}

async fn engine_with<W: WorkflowType>(value: W) -> Engine {
    Engine::builder().workflow(value).build().await.unwrap()
}

// ----- method shapes -----

pub struct Shapes {
    prefix: String,
}

#[derive(Serialize)]
struct Summary {
    summary: String,
}

#[workflow(name = "method_shapes")]
impl Shapes {
    #[step]
    async fn async_self_borrowed(&self, ctx: &Context) -> StepResult {
        let input: String = ctx.get("input")?;
        Ok(json!({ "a": format!("{}{input}", self.prefix) }).into())
    }

    #[step(after = async_self_borrowed)]
    async fn async_self_owned(&self, ctx: Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "b": ctx.get::<String>("a")?.len() }))
    }

    #[step(after = async_self_owned)]
    async fn async_self_no_context(&self) -> Result<(), StepError> {
        Ok(())
    }

    #[step(after = async_self_no_context)]
    async fn async_associated(ctx: &Context) -> Result<Summary, std::io::Error> {
        Ok(Summary { summary: format!("b={}", ctx.get_or("b", 0)) })
    }

    #[step(after = async_associated)]
    fn sync_self_borrowed(&self, ctx: &Context) -> StepResult {
        Ok(json!({ "c": format!("{}{}", self.prefix, ctx.get::<String>("summary")?) }).into())
    }

    #[step(after = sync_self_borrowed)]
    fn sync_associated_owned(ctx: Context) -> Result<Outcome, StepError> {
        Ok(if ctx.contains("c") { Outcome::skip("nothing left to do") } else { Outcome::Done })
    }

    #[step(after = sync_associated_owned)]
    fn sync_associated_no_context() -> Result<Vec<u32>, StepError> {
        Ok(vec![1, 2, 3])
    }

    // A step named like a method of `Arc` still calls this method.
    #[allow(clippy::should_implement_trait)] // a step name, not a `Clone` impl
    #[step(after = sync_associated_no_context, when = has_input)]
    async fn clone(&self) -> StepResult {
        Ok(json!({ "cloned": self.prefix }).into())
    }

    fn has_input(&self, ctx: Context) -> bool {
        ctx.contains("input") && !self.prefix.is_empty()
    }
}

#[tokio::test(start_paused = true)]
async fn steps_of_every_shape_run() {
    let engine = engine_with(Shapes { prefix: "x-".into() }).await;
    let state = run(&engine, "method_shapes", json!({ "input": "data" })).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(state.get::<String>("a").as_deref(), Some("x-data"));
    assert_eq!(state.get::<u64>("b"), Some(6));
    assert_eq!(state.get::<String>("summary").as_deref(), Some("b=6"));
    assert_eq!(state.get::<String>("c").as_deref(), Some("x-b=6"));
    let skipped = state.step("sync_associated_owned").unwrap();
    assert_eq!(skipped.status, StepStatus::Skipped);
    assert_eq!(skipped.skip_reason.as_deref(), Some("nothing left to do"));
    assert_eq!(state.step("sync_associated_no_context").unwrap().status, StepStatus::Completed);
    assert!(!state.context.contains_key("0"), "a non-object output is not merged");
    assert_eq!(state.get::<String>("cloned").as_deref(), Some("x-"));
}

// ----- handlers and compensations -----

pub struct PaymentWorkflow {
    log: Log,
}

#[workflow(
    name = "payment_workflow",
    on_failure = handle_failure,
    on_success = handle_success,
    on_step_error = handle_step_error
)]
impl PaymentWorkflow {
    #[step(rollback = release_inventory)]
    async fn reserve_inventory(&self) -> StepResult {
        Ok(json!({ "reservation_id": 1 }).into())
    }

    #[step(after = reserve_inventory, rollback = refund_payment)]
    async fn charge_payment(&self) -> StepResult {
        Ok(json!({ "payment_id": 2 }).into())
    }

    #[step(after = charge_payment, max_retries = 2, retry_delay = "1s", retry_backoff = fixed)]
    async fn send_confirmation(&self, ctx: &Context) -> StepResult {
        if ctx.get_or("mail_down", false) {
            return Err(StepError::new("smtp_down", "mail server unreachable"));
        }
        Ok(Outcome::Done)
    }

    fn release_inventory(&self, ctx: &Context) -> Result<(), StepError> {
        self.log.lock().unwrap().push(format!("release_inventory {}", ctx.get::<u64>("reservation_id")?));
        Ok(())
    }

    async fn refund_payment(&self, ctx: Context) -> StepResult {
        self.log.lock().unwrap().push(format!("refund_payment {}", ctx.get::<u64>("payment_id")?));
        Ok(Outcome::Done)
    }

    async fn handle_failure(&self, ctx: &Context) -> StepResult {
        let step: String = ctx.get("__error_step__")?;
        self.log.lock().unwrap().push(format!("on_failure after {step}"));
        Ok(Outcome::Done)
    }

    fn handle_success(&self) -> Result<(), StepError> {
        self.log.lock().unwrap().push("on_success".into());
        Ok(())
    }

    async fn handle_step_error(&self, _ctx: Context, step: String, error: StepError, attempt: u32) -> StepResult {
        self.log.lock().unwrap().push(format!("{step} attempt {attempt}: {}", error.kind()));
        Ok(Outcome::Done)
    }
}

#[tokio::test(start_paused = true)]
async fn compensations_and_handlers_reach_the_value() {
    let log = log();
    let engine = engine_with(PaymentWorkflow { log: log.clone() }).await;
    let started = Instant::now();
    let state = run(&engine, "payment_workflow", json!({ "mail_down": true })).await;
    assert_eq!(state.status, Status::RolledBack);
    // `on_step_error` runs beside the engine (after the final attempt it may run while
    // compensating); compensations run in reverse completion order, then `on_failure`.
    let (step_errors, saga): (Vec<String>, Vec<String>) =
        entries(&log).into_iter().partition(|e| e.starts_with("send_confirmation attempt"));
    assert_eq!(
        step_errors,
        [
            "send_confirmation attempt 1: smtp_down",
            "send_confirmation attempt 2: smtp_down",
            "send_confirmation attempt 3: smtp_down",
        ]
    );
    assert_eq!(saga, ["refund_payment 2", "release_inventory 1", "on_failure after send_confirmation"]);
    assert_eq!(started.elapsed(), Duration::from_secs(2), "two fixed 1 s retry delays");
    assert_eq!(state.rollback.unwrap().compensated, ["charge_payment", "reserve_inventory"]);

    log.lock().unwrap().clear();
    let state = run(&engine, "payment_workflow", json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(entries(&log), ["on_success"]);
}

pub struct Cancellable {
    log: Log,
}

#[workflow(name = "cancellable_job", on_cancel = handle_cancel)]
impl Cancellable {
    #[step(cancellable)]
    async fn long_running(&self, ctx: &Context) -> StepResult {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(json!({ "interrupted": ctx.is_cancelled() }).into())
    }

    async fn handle_cancel(&self, _ctx: &Context, reason: &str) -> Result<(), StepError> {
        self.log.lock().unwrap().push(format!("cancelled: {reason}"));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn on_cancel_gets_the_reason() {
    let log = log();
    let engine = engine_with(Cancellable { log: log.clone() }).await;
    let id = engine.start("cancellable_job", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.cancel(id, CancelOptions::reason("maintenance").cleanup(true)).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(entries(&log), ["cancelled: maintenance"]);
}

// ----- grafts -----

pub struct BatchProcessor;

#[workflow(name = "batch_processor")]
impl BatchProcessor {
    #[step]
    fn fetch_batch(ctx: &Context) -> Result<serde_json::Value, StepError> {
        let n: u32 = ctx.get("batch_size")?;
        Ok(json!({ "items": (1..=n).collect::<Vec<_>>() }))
    }

    #[graft(after = fetch_batch)]
    async fn process_items(&self, ctx: &Context) -> StepResult {
        let items: Vec<u32> = ctx.get("items")?;
        Ok(Outcome::expand(items.into_iter().map(|item| {
            Task::new(format!("process_item_{item}"), move |_ctx: Context| async move {
                Ok::<_, StepError>(json!(item * 10))
            })
        })))
    }

    #[step(after_graft = process_items)]
    fn summarize(ctx: &Context) -> Result<serde_json::Value, StepError> {
        let items: Vec<u32> = ctx.get("items")?;
        // Each expanded step's output is stored under its own name.
        let total: u32 = items.iter().map(|i| ctx.get::<u32>(&format!("process_item_{i}"))).sum::<Result<u32, _>>()?;
        Ok(json!({ "summary": total }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_graft_expands_and_after_graft_waits_for_the_expansion() {
    let engine = engine_with(BatchProcessor).await;
    let state = run(&engine, "batch_processor", json!({ "batch_size": 4 })).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(state.get::<u32>("summary"), Some(100));
    assert_eq!(state.step("process_item_3").unwrap().graft.as_deref(), Some("process_items"));
}

// ----- nested workflows -----

pub struct SendNotification;

#[workflow(name = "send_notification")]
impl SendNotification {
    #[step]
    fn format_message(ctx: &Context) -> Result<serde_json::Value, StepError> {
        let template: String = ctx.get("template")?;
        let order: u64 = ctx.get("order_id")?;
        Ok(json!({ "message": format!("{template} #{order}") }))
    }

    #[step(after = format_message)]
    fn send(ctx: &Context) -> Result<serde_json::Value, StepError> {
        let recipient: String = ctx.get("recipient")?;
        Ok(json!({ "sent_to": recipient }))
    }
}

pub struct OrderWorkflow;

#[workflow(name = "order_workflow")]
impl OrderWorkflow {
    #[step]
    fn create_order() -> Result<serde_json::Value, StepError> {
        Ok(json!({ "order_id": 42 }))
    }

    // The nested workflow receives the current context plus what this returns.
    #[subworkflow(send_notification, after = create_order)]
    fn notify_customer(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "template": "order_confirmation", "recipient": ctx.get::<String>("customer_email")? }))
    }

    #[step(after = notify_customer)]
    fn complete(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "completed": ctx.get::<String>("sent_to")? }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_subworkflow_runs_the_child_with_the_additions() {
    let engine = Engine::builder().workflow(SendNotification).workflow(OrderWorkflow).build().await.unwrap();
    let state = run(&engine, "order_workflow", json!({ "customer_email": "bob@example.com" })).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(state.get::<String>("message").as_deref(), Some("order_confirmation #42"));
    assert_eq!(state.get::<String>("completed").as_deref(), Some("bob@example.com"));
    let child = engine.get_state(state.children()[0]).await.unwrap();
    assert_eq!(child.workflow, "send_notification");
    assert_eq!(child.trigger, Trigger::Parent { execution: state.id, step: "notify_customer".into() });
}

// ----- human in the loop -----

pub struct ExpenseApproval;

#[workflow(name = "expense_approval")]
impl ExpenseApproval {
    #[step]
    fn submit_expense(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "expense_id": 7, "amount": ctx.get::<u64>("amount")? }))
    }

    #[step(after = submit_expense, await_approval, on_timeout = auto_reject)]
    fn await_manager_approval(ctx: &Context) -> Result<Outcome, StepError> {
        if ctx.get::<u64>("amount")? > 10_000 {
            Ok(Outcome::await_with(sagaflow::AwaitRequest::timeout("48h").notify("email")))
        } else {
            Ok(json!({ "approved": true, "approver": "auto" }).into())
        }
    }

    #[step(after = await_manager_approval)]
    fn process_reimbursement(ctx: &Context) -> Result<serde_json::Value, StepError> {
        if ctx.get_or("approved", false) {
            Ok(json!({ "reimbursed": true }))
        } else {
            Err(StepError::new("rejected", "the expense was not approved").permanent())
        }
    }

    fn auto_reject() -> Result<serde_json::Value, StepError> {
        Ok(json!({ "approved": false, "approver": "timeout" }))
    }
}

#[tokio::test(start_paused = true)]
async fn approvals_resume_or_time_out() {
    let engine = engine_with(ExpenseApproval).await;
    assert_eq!(run(&engine, "expense_approval", json!({ "amount": 50 })).await.status, Status::Completed);

    let id = engine.start("expense_approval", json!({ "amount": 20_000 })).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Awaiting);
    engine.resume(id, json!({ "approved": true, "approver": "manager@example.com" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.get::<String>("approver").as_deref(), Some("manager@example.com"));

    let id = engine.start("expense_approval", json!({ "amount": 20_000 })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Failed, "the on_timeout method rejected it after 48 h");
    assert_eq!(state.get::<String>("approver").as_deref(), Some("timeout"));
    assert_eq!(state.failure.unwrap().error.kind(), "rejected");
}

// ----- events, dynamic timeouts, custom backoffs, conditions on `&self` -----

pub struct OrderProcessor;

#[workflow(name = "order_processor", on_event = "order.created")]
impl OrderProcessor {
    #[step]
    fn process_order(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "processed": ctx.get::<u64>("order_id")? }))
    }
}

#[tokio::test(start_paused = true)]
async fn on_event_starts_the_workflow() {
    let engine = engine_with(OrderProcessor).await;
    let ids = engine.emit("order.created", json!({ "order_id": 5 })).await.unwrap();
    assert_eq!(ids.len(), 1);
    let state = engine.wait(ids[0]).await.unwrap();
    assert_eq!(state.get::<u64>("processed"), Some(5));
    assert_eq!(state.trigger, Trigger::Event { name: "order.created".into() });
    assert!(engine.emit("order.deleted", json!({})).await.unwrap().is_empty());
}

pub struct FlakyApi {
    attempts: Mutex<Vec<Instant>>,
    base_ms: u64,
    enabled: bool,
}

#[workflow(name = "flaky_api")]
impl FlakyApi {
    #[step(timeout = limit_from_context, max_retries = 0)]
    async fn bounded(&self) -> StepResult {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(json!({ "bounded": true }).into())
    }

    #[step(after = bounded, max_retries = 3, retry_delay = "1s", retry_backoff = grow, when = is_enabled)]
    async fn call_api(&self) -> StepResult {
        let mut attempts = self.attempts.lock().unwrap();
        attempts.push(Instant::now());
        if attempts.len() < 3 {
            return Err(StepError::new("connection_error", "try again"));
        }
        Ok(json!({ "called": attempts.len() }).into())
    }

    fn limit_from_context(ctx: &Context) -> Option<Duration> {
        ctx.get_opt::<u64>("limit_ms").ok().flatten().map(Duration::from_millis)
    }

    fn grow(&self, attempt: u32, _base: Duration) -> Duration {
        Duration::from_millis(self.base_ms * u64::from(attempt))
    }

    fn is_enabled(&self, _ctx: &Context) -> bool {
        self.enabled
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_backoffs_and_conditions_call_the_methods() {
    let flaky = |enabled| FlakyApi { attempts: Mutex::new(Vec::new()), base_ms: 100, enabled };
    let engine = engine_with(flaky(true)).await;

    let state = run(&engine, "flaky_api", json!({ "limit_ms": 500 })).await;
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.failure.unwrap().error.kind(), "timeout", "the timeout method gave 500 ms");

    let state = run(&engine, "flaky_api", json!({})).await;
    assert_eq!(state.status, Status::Completed, "no limit when the method returns None");
    assert_eq!(state.get::<u64>("called"), Some(3));

    let engine = engine_with(flaky(false)).await;
    let state = run(&engine, "flaky_api", json!({})).await;
    assert_eq!(state.step("call_api").unwrap().status, StepStatus::Skipped);
    assert_eq!(state.step("call_api").unwrap().skip_reason.as_deref(), Some("condition `is_enabled` is false"));
}

#[tokio::test(start_paused = true)]
async fn custom_backoff_sets_the_retry_delays() {
    let flaky = Arc::new(FlakyApi { attempts: Mutex::new(Vec::new()), base_ms: 100, enabled: true });
    let def = FlakyApi::definition(flaky.clone()).unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let state = run(&engine, "flaky_api", json!({})).await;
    assert_eq!(state.status, Status::Completed);
    let attempts = flaky.attempts.lock().unwrap().clone();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [Duration::from_millis(100), Duration::from_millis(200)]);
}
