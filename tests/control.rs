//! Runtime control: await/resume, pause, snooze, grafts, nested workflows,
//! cancellation and delayed starts. Timers run on tokio's paused clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{AwaitRequest, EngineError, StartAt, StepStatus, Task, Trigger, WorkflowDef};
use tokio::time::Instant;

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

async fn engine_with(defs: Vec<WorkflowDef>) -> Engine {
    let mut b = Engine::builder();
    for d in defs {
        b = b.register(d);
    }
    b.build().await.unwrap()
}

/// Polls until `f` holds (the engine runs on other tasks).
async fn until(
    engine: &Engine,
    id: ExecutionId,
    f: impl Fn(&sagaflow::ExecutionState) -> bool,
) -> sagaflow::ExecutionState {
    for _ in 0..10_000 {
        let s = engine.get_state(id).await.unwrap();
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition never held for {id}: {:?}", engine.get_state(id).await.unwrap());
}

// ----- human in the loop -----

async fn submit_expense(ctx: Context) -> StepResult {
    let amount: u64 = ctx.get("amount")?;
    Ok(json!({ "expense_id": 42, "amount": amount }).into())
}

async fn await_manager_approval(ctx: Context) -> StepResult {
    let amount: u64 = ctx.get("amount")?;
    if amount > 10_000 {
        let request = AwaitRequest::timeout("48h").notify("email").approvers(ctx.get::<String>("manager_email")?);
        Ok(Outcome::await_with(request))
    } else {
        Ok(json!({ "approved": true, "approver": "auto" }).into())
    }
}

async fn process_reimbursement(ctx: Context) -> StepResult {
    if ctx.get_or("approved", false) {
        Ok(json!({ "reimbursed": ctx.get::<u64>("amount")? }).into())
    } else {
        Err(StepError::new("rejected", "the expense was rejected").permanent())
    }
}

fn expense_approval() -> WorkflowDef {
    Workflow::new("expense_approval")
        .step("submit_expense", submit_expense)
        .step_with(
            "await_manager_approval",
            await_manager_approval,
            Step::opts().after("submit_expense").await_approval(true),
        )
        .step_with("process_reimbursement", process_reimbursement, Step::opts().after("await_manager_approval"))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn expense_approval_auto_approves_small_amounts() {
    let engine = engine_with(vec![expense_approval()]).await;
    let id = engine.start("expense_approval", json!({ "amount": 500, "manager_email": "m@x" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["approver"], "auto");
    assert_eq!(state.context["reimbursed"], 500);
}

#[tokio::test(start_paused = true)]
async fn expense_approval_awaits_and_resumes() {
    let engine = engine_with(vec![expense_approval()]).await;
    let id = engine.start("expense_approval", json!({ "amount": 25_000, "manager_email": "boss@x" })).await.unwrap();
    let state = until(&engine, id, |s| s.status == Status::Awaiting).await;
    assert_eq!(state.awaiting.len(), 1);
    let info = &state.awaiting[0];
    assert_eq!(info.step, "await_manager_approval");
    assert_eq!(info.notify, Some(json!("email")));
    assert_eq!(info.approvers, Some(json!("boss@x")));
    assert_eq!(info.timeout_at.unwrap() - state.started_at, chrono::Duration::hours(48));
    assert_eq!(state.step("process_reimbursement").unwrap().status, StepStatus::Pending);

    engine.resume(id, json!({ "approved": true, "approver": "manager@company.com" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["approver"], "manager@company.com");
    assert_eq!(state.context["reimbursed"], 25_000);
    assert_eq!(
        state.step("await_manager_approval").map(|s| s.status),
        Some(StepStatus::Completed),
        "resume completes the awaiting step"
    );
    let err = engine.resume(id, json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownExecution(_) | EngineError::InvalidState { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_resumes_into_a_failure() {
    let engine = engine_with(vec![expense_approval()]).await;
    let id = engine.start("expense_approval", json!({ "amount": 25_000, "manager_email": "boss@x" })).await.unwrap();
    until(&engine, id, |s| s.status == Status::Awaiting).await;
    engine.resume(id, json!({ "approved": false })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Failed);
    assert_eq!(state.failure.unwrap().error.kind(), "rejected");
}

#[tokio::test(start_paused = true)]
async fn await_timeout_fails_or_runs_on_timeout() {
    let engine = engine_with(vec![expense_approval()]).await;
    let started = Instant::now();
    let id = engine.start("expense_approval", json!({ "amount": 25_000, "manager_email": "boss@x" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(48 * 3600));
    let failure = state.failure.unwrap();
    assert_eq!(failure.error.kind(), "await_timeout");
    assert_eq!(failure.step.as_deref(), Some("await_manager_approval"));

    let resends = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&resends);
    let resend_or_expire = move |ctx: Context| {
        let n = r.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = ctx;
        std::future::ready(if n < 2 {
            Ok::<Outcome, StepError>(Outcome::await_for("24h"))
        } else {
            Ok(json!({ "email_verified": false, "expired": true }).into())
        })
    };
    let onboarding = Workflow::new("verify_email")
        .step_with(
            "await_email_verification",
            |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_for("24h")) },
            Step::opts().await_approval(true).on_timeout_named("resend_or_expire", resend_or_expire),
        )
        .step_with("finish", noop, Step::opts().after("await_email_verification"))
        .build()
        .unwrap();
    let engine = engine_with(vec![onboarding]).await;
    let started = Instant::now();
    let id = engine.start("verify_email", json!({})).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed, "on_timeout's output lets the workflow continue");
    assert_eq!(state.context["expired"], true);
    assert_eq!(resends.load(Ordering::SeqCst), 2, "the first on_timeout awaited again");
    assert_eq!(started.elapsed(), Duration::from_secs(48 * 3600));
}

// ----- pause -----

#[tokio::test(start_paused = true)]
async fn pause_lets_running_steps_finish_and_starts_no_new_ones() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let step = |name: &'static str| {
        let ran = Arc::clone(&ran);
        move |_ctx: Context| {
            let ran = Arc::clone(&ran);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ran.lock().unwrap().push(name);
                Ok::<(), StepError>(())
            }
        }
    };
    let def = Workflow::new("pausable")
        .step("a", step("a"))
        .step_with("b", step("b"), Step::opts().after("a"))
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("pausable", json!({})).await.unwrap();
    until(&engine, id, |s| s.running == ["a"]).await;
    engine.pause(id).await.unwrap();
    let err = engine.pause(id).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidState { action: "pause", status: Status::Paused, .. }), "{err}");

    tokio::time::sleep(Duration::from_secs(10)).await;
    let state = engine.get_state(id).await.unwrap();
    assert_eq!(state.status, Status::Paused);
    assert_eq!(*ran.lock().unwrap(), ["a"], "a finished; b did not start");
    assert_eq!(state.step("b").unwrap().status, StepStatus::Ready);

    engine.resume(id, json!({ "note": "go on" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["note"], "go on");
    let err = engine.pause(id).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidState { .. } | EngineError::UnknownExecution(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn resuming_a_running_execution_is_a_typed_error() {
    let def = Workflow::new("busy")
        .step("slow", |_ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), StepError>(())
        })
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("busy", json!({})).await.unwrap();
    let err = engine.resume(id, json!({})).await.unwrap_err();
    let EngineError::InvalidState { action, status, reason, .. } = &err else { panic!("{err}") };
    assert_eq!((*action, *status), ("resume", Status::Running));
    assert_eq!(reason, "the execution is neither paused nor awaiting");
    assert!(err.to_string().starts_with(&format!("cannot resume execution {id}: ")), "{err}");
    let err = engine.resume(ExecutionId::new(), json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownExecution(_)));
}

// ----- snooze -----

#[tokio::test(start_paused = true)]
async fn snooze_runs_the_step_again_without_spending_a_retry() {
    let polls = Arc::new(Mutex::new(Vec::new()));
    let p = Arc::clone(&polls);
    let wait_for_external_event = move |ctx: Context| {
        p.lock().unwrap().push((Instant::now(), ctx.attempt()));
        let n = p.lock().unwrap().len();
        std::future::ready(if n < 3 {
            Ok::<Outcome, StepError>(Outcome::snooze("5m"))
        } else {
            Ok(json!({ "external_status": "completed" }).into())
        })
    };
    let def = Workflow::new("poller")
        .step_with("wait_for_external_event", wait_for_external_event, Step::opts().max_retries(0))
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("poller", json!({})).await.unwrap();
    let state = until(&engine, id, |s| s.step("wait_for_external_event").unwrap().status == StepStatus::Snoozed).await;
    assert_eq!(state.status, Status::Running);
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    let polls = polls.lock().unwrap().clone();
    assert_eq!(polls.len(), 3);
    assert_eq!(polls[1].0 - polls[0].0, Duration::from_secs(300));
    assert_eq!(polls[2].0 - polls[1].0, Duration::from_secs(300));
}

// ----- grafts -----

async fn fetch_batch(ctx: Context) -> StepResult {
    let n: u32 = ctx.get("count")?;
    Ok(json!({ "items": (1..=n).collect::<Vec<_>>() }).into())
}

fn batch_processor(concurrency: u32, running: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> WorkflowDef {
    let (running, peak) = (Arc::clone(running), Arc::clone(peak));
    let process_items = move |ctx: Context| {
        let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
        async move {
            let items: Vec<u32> = ctx.get("items")?;
            Ok::<_, StepError>(Outcome::expand(items.into_iter().map(move |id| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                Task::new(format!("process_item_{id}"), move |_ctx: Context| {
                    let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, StepError>(json!({ "id": id, "result": id * 2 }))
                    }
                })
            })))
        }
    };
    let summarize = |ctx: Context| async move {
        let items: Vec<u32> = ctx.get("items")?;
        let mut total = 0;
        for id in &items {
            let out: serde_json::Value = ctx.get(&format!("process_item_{id}"))?;
            total += out["result"].as_u64().unwrap();
            assert_eq!(ctx.output(&format!("process_item_{id}")), Some(&out));
        }
        Ok::<_, StepError>(json!({ "summary": { "count": items.len(), "total": total } }))
    };
    Workflow::new("batch_processor")
        .step_concurrency(concurrency)
        .step("fetch_batch", fetch_batch)
        .graft("process_items", process_items, Step::opts().after("fetch_batch"))
        .step_with("summarize", summarize, Step::opts().after_graft("process_items"))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn batch_processor_grafts_steps_and_after_graft_waits_for_them() {
    let (running, peak) = (Arc::default(), Arc::default());
    let engine = engine_with(vec![batch_processor(10, &running, &peak)]).await;
    let started = Instant::now();
    let id = engine.start("batch_processor", json!({ "count": 50 })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["summary"], json!({ "count": 50, "total": 2550 }));
    assert_eq!(peak.load(Ordering::SeqCst), 10, "the added steps run under step_concurrency");
    assert_eq!(started.elapsed(), Duration::from_millis(50), "50 steps of 10 ms, 10 at a time");
    assert_eq!(state.progress.total, 53);
    assert_eq!(state.step("process_item_7").unwrap().graft.as_deref(), Some("process_items"));
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_grafted_steps() {
    let (running, peak) = (Arc::default(), Arc::default());
    let engine = engine_with(vec![batch_processor(1000, &running, &peak)]).await;
    let id = engine.start("batch_processor", json!({ "count": 10_000 })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["summary"]["count"], 10_000);
    assert_eq!(state.context["summary"]["total"], 10_000u64 * 10_001);
    assert_eq!(state.progress, sagaflow::Progress { done: 10_003, total: 10_003 });
}

// ----- nested workflows -----

fn send_notification(fail_first: Option<Arc<AtomicU32>>) -> WorkflowDef {
    Workflow::new("send_notification")
        .step("format_message", |ctx: Context| async move {
            let template: String = ctx.get("template")?;
            let order: u64 = ctx.get("order_id")?;
            Ok::<_, StepError>(json!({ "message": format!("{template} for order {order}") }))
        })
        .step_with(
            "send",
            move |ctx: Context| {
                let fail_first = fail_first.clone();
                async move {
                    if let Some(n) = fail_first
                        && n.fetch_add(1, Ordering::SeqCst) == 0
                    {
                        return Err(StepError::new("smtp_down", "mail server unreachable"));
                    }
                    let to: String = ctx.get("recipient")?;
                    Ok(json!({ "sent_to": to }))
                }
            },
            Step::opts().after("format_message").max_retries(0),
        )
        .step_with("log", noop, Step::opts().after("send"))
        .build()
        .unwrap()
}

fn order_workflow(retries: u32) -> WorkflowDef {
    Workflow::new("order_workflow")
        .step_retry_delay("1s")
        .step("create_order", |_ctx: Context| async { Ok::<_, StepError>(json!({ "order_id": 77 })) })
        .add_workflow_with(
            "notify_customer",
            "send_notification",
            |ctx: Context| async move {
                Ok::<_, StepError>(json!({
                    "template": "order_confirmation",
                    "channel": "email",
                    "recipient": ctx.get::<String>("customer_email")?,
                }))
            },
            Step::opts().after("create_order").max_retries(retries),
        )
        .step_with("complete", noop, Step::opts().after("notify_customer"))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn nested_workflow_gets_the_context_and_merges_back() {
    let engine = engine_with(vec![send_notification(None), order_workflow(0)]).await;
    let id = engine.start("order_workflow", json!({ "customer_email": "c@x" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["message"], "order_confirmation for order 77");
    assert_eq!(state.context["sent_to"], "c@x");
    let child = state.step("notify_customer").unwrap().child.expect("the step records its child");
    assert_eq!(state.children(), [child]);
    let child_state = engine.get_state(child).await.unwrap();
    assert_eq!(child_state.workflow, "send_notification");
    assert_eq!(child_state.parent, Some(id));
    assert_eq!(child_state.trigger, Trigger::Parent { execution: id, step: "notify_customer".into() });
    assert_eq!(child_state.context["order_id"], 77, "the child starts with the parent's context");
}

#[tokio::test(start_paused = true)]
async fn a_child_failure_is_the_step_failure_and_parent_retries_apply() {
    let failures = Arc::new(AtomicU32::new(0));
    let engine = engine_with(vec![send_notification(Some(Arc::clone(&failures))), order_workflow(1)]).await;
    let id = engine.start("order_workflow", json!({ "customer_email": "c@x" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed, "the parent retried the step, starting a new child: {state:#?}");
    assert_eq!(state.step("notify_customer").unwrap().attempts, 2);

    let failures = Arc::new(AtomicU32::new(0));
    let engine = engine_with(vec![send_notification(Some(failures)), order_workflow(0)]).await;
    let id = engine.start("order_workflow", json!({ "customer_email": "c@x" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Failed);
    let failure = state.failure.unwrap();
    assert_eq!(failure.step.as_deref(), Some("notify_customer"));
    assert_eq!(failure.error.kind(), "child_failed");
    assert!(failure.error.message().contains("smtp_down"), "{}", failure.error);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_cancels_the_child() {
    let slow_child = Workflow::new("slow_child")
        .step("wait", |_ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), StepError>(())
        })
        .build()
        .unwrap();
    let parent = Workflow::new("parent").add_workflow("run_child", "slow_child", Step::opts()).build().unwrap();
    let engine = engine_with(vec![slow_child, parent]).await;
    let id = engine.start("parent", json!({})).await.unwrap();
    let state = until(&engine, id, |s| s.step("run_child").unwrap().child.is_some()).await;
    let child = state.step("run_child").unwrap().child.unwrap();
    engine.cancel(id, CancelOptions::reason("customer left")).await.unwrap();
    let parent_state = engine.wait(id).await.unwrap();
    assert_eq!(parent_state.status, Status::Cancelled);
    let child_state = engine.wait(child).await.unwrap();
    assert_eq!(child_state.status, Status::Cancelled);
    assert_eq!(child_state.cancel_reason.as_deref(), Some("customer left"));
}

// ----- cancellation -----

#[tokio::test(start_paused = true)]
async fn cancel_with_cleanup_and_rollback() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let def = Workflow::new("booking")
        .on_cancel(move |ctx: Context, reason: String| {
            l1.lock().unwrap().push(format!("on_cancel({reason}) booked={}", ctx.get_or("booked", false)));
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
            "wait",
            |_ctx: Context| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), StepError>(())
            },
            Step::opts().after("book").cancellable(true),
        )
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("booking", json!({})).await.unwrap();
    until(&engine, id, |s| s.running == ["wait"]).await;
    engine.cancel(id, CancelOptions::reason("user_requested").cleanup(true).rollback(true)).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.cancel_reason.as_deref(), Some("user_requested"));
    assert_eq!(*log.lock().unwrap(), ["unbook", "on_cancel(user_requested) booked=true"]);
    assert_eq!(state.step("book").unwrap().status, StepStatus::Compensated);
    assert_eq!(state.step("wait").unwrap().status, StepStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn cancellable_steps_are_interrupted_and_others_finish_first() {
    let interrupted = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (i, f) = (Arc::clone(&interrupted), Arc::clone(&finished));
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let def = Workflow::new("mixed")
        .step_with(
            "interruptible",
            move |_ctx: Context| {
                let guard = OnDrop(Arc::clone(&i));
                async move {
                    let _g = guard;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<(), StepError>(())
                }
            },
            Step::opts().cancellable(true).timeout("infinity"),
        )
        .step_with(
            "uninterruptible",
            move |_ctx: Context| {
                let f = Arc::clone(&f);
                async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    f.store(true, Ordering::SeqCst);
                    Ok::<(), StepError>(())
                }
            },
            Step::opts(),
        )
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("mixed", json!({})).await.unwrap();
    until(&engine, id, |s| s.running.len() == 2).await;
    let t0 = Instant::now();
    engine.cancel(id, CancelOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!interrupted.load(Ordering::SeqCst), "the cancellable step has its grace period to return");
    tokio::time::sleep(sagaflow::defaults::CANCEL_GRACE).await;
    assert!(interrupted.load(Ordering::SeqCst), "the cancellable step was dropped once its grace period passed");
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Cancelling);
    let state = engine.wait(id).await.unwrap();
    assert!(finished.load(Ordering::SeqCst), "the other step ran to completion");
    assert_eq!(t0.elapsed(), Duration::from_secs(10));
    assert_eq!(state.status, Status::Cancelled);
    assert_eq!(state.step("uninterruptible").unwrap().status, StepStatus::Completed);
    assert_eq!(state.step("interruptible").unwrap().status, StepStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn cooperative_cancellation_inside_a_step() {
    let processed = Arc::new(AtomicU32::new(0));
    let p = Arc::clone(&processed);
    let process_large_batch = move |ctx: Context| {
        let p = Arc::clone(&p);
        async move {
            let mut done = Vec::new();
            for item in 0..1000u32 {
                if ctx.is_cancelled() {
                    return Ok::<_, StepError>(json!({ "partial": done.len() }));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                p.fetch_add(1, Ordering::SeqCst);
                done.push(item);
            }
            Ok(json!({ "partial": done.len() }))
        }
    };
    let waiter = |ctx: Context| async move {
        tokio::select! {
            _ = ctx.cancelled() => Ok::<_, StepError>(json!({ "woke_on_cancel": true })),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(json!({ "woke_on_cancel": false })),
        }
    };
    let def = Workflow::new("cooperative")
        .step_with("process_large_batch", process_large_batch, Step::opts().timeout("1h"))
        .step("waiter", waiter)
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let id = engine.start("cooperative", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(105)).await;
    engine.cancel(id, CancelOptions::reason("enough")).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    let n = processed.load(Ordering::SeqCst);
    assert!((10..=11).contains(&n), "stopped after about 100 ms of work, processed {n}");
    assert_eq!(state.context["partial"], n);
    assert_eq!(state.context["woke_on_cancel"], true);
}

#[tokio::test(start_paused = true)]
async fn cancel_all_cancels_every_unfinished_execution_of_a_workflow() {
    let def = Workflow::new("long")
        .step("wait", |_ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), StepError>(())
        })
        .build()
        .unwrap();
    let other = Workflow::new("other")
        .step("wait", |_ctx: Context| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), StepError>(())
        })
        .build()
        .unwrap();
    let engine = engine_with(vec![def, other]).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(engine.start("long", json!({})).await.unwrap());
    }
    let later = engine.schedule_execution("long", json!({}), StartAt::delay("1h")).await.unwrap();
    let unrelated = engine.start("other", json!({})).await.unwrap();
    assert_eq!(engine.list_running("long").await.unwrap().len(), 6);
    assert_eq!(engine.cancel_all("long", "maintenance").await.unwrap(), 6);
    for id in ids.into_iter().chain([later]) {
        let s = engine.wait(id).await.unwrap();
        assert_eq!((s.status, s.cancel_reason.as_deref()), (Status::Cancelled, Some("maintenance")));
    }
    assert_eq!(engine.wait(unrelated).await.unwrap().status, Status::Completed);
    assert!(engine.list_running("long").await.unwrap().is_empty());
    assert!(engine.cancel_all("nope", "x").await.is_err());
}

// ----- delayed starts -----

#[tokio::test(start_paused = true)]
async fn schedule_execution_at_and_in() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&starts);
    let def = Workflow::new("later")
        .step("go", move |ctx: Context| {
            s.lock().unwrap().push((Instant::now(), ctx.get::<u32>("n").unwrap()));
            std::future::ready(Ok::<(), StepError>(()))
        })
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let t0 = Instant::now();
    let now = engine.clock().now();
    let a = engine.schedule_execution("later", json!({ "n": 1 }), StartAt::delay("30m")).await.unwrap();
    let b = engine.schedule_execution("later", json!({ "n": 2 }), now + chrono::Duration::hours(2)).await.unwrap();
    let pending = engine.get_state(a).await.unwrap();
    assert_eq!(pending.status, Status::Pending);
    assert_eq!(pending.trigger, Trigger::Delayed { at: now + chrono::Duration::minutes(30) });
    engine.wait(a).await.unwrap();
    engine.wait(b).await.unwrap();
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0], (t0 + Duration::from_secs(1800), 1));
    assert_eq!(starts[1], (t0 + Duration::from_secs(7200), 2));
    let err = engine.schedule_execution("later", json!({}), StartAt::delay("soon")).await.unwrap_err();
    assert!(err.to_string().contains("invalid delay"), "{err}");
}

// ----- isolation -----

#[tokio::test(start_paused = true)]
async fn controlling_some_executions_leaves_a_thousand_others_untouched() {
    let def = Workflow::new("busy")
        .step("first", |ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, StepError>(json!({ "first": ctx.get::<u32>("n")? }))
        })
        .step_with(
            "gate",
            |ctx: Context| async move {
                if ctx.get_or("hold", false) { Ok::<_, StepError>(Outcome::await_for("1h")) } else { Ok(Outcome::Done) }
            },
            Step::opts().after("first"),
        )
        .step_with(
            "last",
            |ctx: Context| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, StepError>(json!({ "last": ctx.get::<u32>("n")? * 2 }))
            },
            Step::opts().after("gate"),
        )
        .build()
        .unwrap();
    let engine = engine_with(vec![def]).await;
    let mut others = Vec::new();
    for n in 0..1000u32 {
        others.push((n, engine.start("busy", json!({ "n": n })).await.unwrap()));
    }
    let awaited = engine.start("busy", json!({ "n": 5000, "hold": true })).await.unwrap();
    let paused = engine.start("busy", json!({ "n": 5001 })).await.unwrap();
    let cancelled = engine.start("busy", json!({ "n": 5002 })).await.unwrap();
    engine.pause(paused).await.unwrap();
    engine.cancel(cancelled, CancelOptions::reason("test")).await.unwrap();
    until(&engine, awaited, |s| s.status == Status::Awaiting).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.resume(awaited, json!({ "approved": true })).await.unwrap();
    engine.resume(paused, json!({})).await.unwrap();

    for (n, id) in others {
        let s = engine.wait(id).await.unwrap();
        assert_eq!(s.status, Status::Completed);
        assert_eq!((s.context["first"].as_u64(), s.context["last"].as_u64()), (Some(n as u64), Some(n as u64 * 2)));
        assert!(s.cancel_reason.is_none() && !s.context.contains_key("approved"));
    }
    assert_eq!(engine.wait(awaited).await.unwrap().context["approved"], true);
    assert_eq!(engine.wait(paused).await.unwrap().status, Status::Completed);
    assert_eq!(engine.wait(cancelled).await.unwrap().status, Status::Cancelled);
}
