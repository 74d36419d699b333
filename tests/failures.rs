//! Failure handling: retries and backoff, retry rules, panics, timeouts, on_error,
//! handlers, saga rollback, circuit breakers, workflow timeouts and retries, and
//! dead letters. Time-dependent tests run on tokio's paused clock, so schedules are
//! asserted exactly.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{BreakerOptions, BreakerState, ExecutionState, StepOptions, StepStatus, WorkflowDef};
use tokio::time::Instant;

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

async fn run(def: WorkflowDef, input: serde_json::Value) -> ExecutionState {
    let name = def.name().to_owned();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start(&name, input).await.unwrap();
    engine.wait(id).await.unwrap()
}

/// A step that always fails with `kind` and records when each attempt started.
fn failing(
    kind: &'static str,
    times: &Arc<Mutex<Vec<Instant>>>,
) -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + 'static {
    let times = Arc::clone(times);
    move |_ctx| {
        times.lock().unwrap().push(Instant::now());
        std::future::ready(Err(StepError::new(kind, "always fails")))
    }
}

fn gaps(times: &[Instant]) -> Vec<u64> {
    times.windows(2).map(|w| (w[1] - w[0]).as_millis() as u64).collect()
}

async fn retry_gaps(opts: StepOptions) -> Vec<u64> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let def = Workflow::new("retry").step_with("flaky", failing("timeout", &times), opts).build().unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Failed);
    let t = times.lock().unwrap().clone();
    gaps(&t)
}

#[tokio::test(start_paused = true)]
async fn fixed_backoff() {
    let g = retry_gaps(Step::opts().max_retries(4).retry_delay("5s").retry_backoff(Backoff::Fixed)).await;
    assert_eq!(g, [5000, 5000, 5000, 5000]);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_is_capped() {
    let g = retry_gaps(
        Step::opts().max_retries(7).retry_delay("1s").retry_backoff(Backoff::Exponential).retry_max_delay("30s"),
    )
    .await;
    assert_eq!(g, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
}

#[tokio::test(start_paused = true)]
async fn linear_backoff_is_capped() {
    let g = retry_gaps(
        Step::opts().max_retries(5).retry_delay("10s").retry_backoff(Backoff::Linear).retry_max_delay("35s"),
    )
    .await;
    assert_eq!(g, [10000, 20000, 30000, 35000, 35000]);
}

#[tokio::test(start_paused = true)]
async fn custom_backoff_function() {
    let g = retry_gaps(Step::opts().max_retries(3).retry_delay("100ms").retry_backoff_fn(|n, base| base * (n * n + 1)))
        .await;
    assert_eq!(g, [200, 500, 1000]);
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_half_to_full_delay() {
    let g = retry_gaps(Step::opts().max_retries(20).retry_delay("1s").retry_backoff(Backoff::Fixed).retry_jitter(true))
        .await;
    assert_eq!(g.len(), 20);
    assert!(g.iter().all(|&d| (500..=1000).contains(&d)), "{g:?}");
    assert!(g.iter().any(|&d| d != g[0]), "jitter varies the delays: {g:?}");
}

#[tokio::test(start_paused = true)]
async fn workflow_step_defaults_apply_where_a_step_sets_none() {
    let times = Arc::new(Mutex::new(Vec::new()));
    let def = Workflow::new("defaults")
        .step_max_retries(2)
        .step_retry_delay("3s")
        .step_with("flaky", failing("timeout", &times), Step::opts().retry_backoff(Backoff::Fixed))
        .build()
        .unwrap();
    run(def, json!({})).await;
    assert_eq!(gaps(&times.lock().unwrap()), [3000, 3000]);
}

#[tokio::test(start_paused = true)]
async fn retry_on_and_no_retry_on_match_the_error_kind() {
    for (opts, kind, attempts) in [
        (Step::opts().max_retries(3).retry_on(["timeout", "connection_error"]), "validation_error", 1),
        (Step::opts().max_retries(3).retry_on(["timeout", "connection_error"]), "connection_error", 4),
        (Step::opts().max_retries(3).no_retry_on("validation_error"), "validation_error", 1),
        (Step::opts().max_retries(3).no_retry_on("validation_error"), "timeout", 4),
    ] {
        let times = Arc::new(Mutex::new(Vec::new()));
        let def = Workflow::new("rules").step_with("s", failing(kind, &times), opts).build().unwrap();
        let state = run(def, json!({})).await;
        assert_eq!(times.lock().unwrap().len(), attempts, "{kind}");
        assert_eq!(state.failure.unwrap().attempts, attempts as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_never_retried() {
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let def = Workflow::new("w")
        .step_with(
            "s",
            move |_ctx: Context| {
                a.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(StepError::new("declined", "card declined").permanent()) }
            },
            Step::opts().max_retries(5),
        )
        .build()
        .unwrap();
    run(def, json!({})).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_fails_with_kind_panic_and_the_engine_keeps_running() {
    let def = Workflow::new("panicky")
        .step_with(
            "explode",
            |_ctx: Context| async {
                if true {
                    panic!("the disk is on fire");
                }
                Ok::<(), StepError>(())
            },
            Step::opts().max_retries(0),
        )
        .build()
        .unwrap();
    let other = Workflow::new("calm").step("fine", noop).build().unwrap();
    let engine = Engine::builder().register(def).register(other).build().await.unwrap();
    let id = engine.start("panicky", json!({})).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Failed);
    let failure = state.failure.clone().unwrap();
    assert_eq!(failure.error.kind(), "panic");
    assert_eq!(failure.error.message(), "the disk is on fire");
    assert_eq!(state.context["__error_step__"], "explode");
    assert!(state.context["__stacktrace__"].as_str().unwrap().contains("the disk is on fire"));
    let ok = engine.start("calm", json!({})).await.unwrap();
    assert_eq!(engine.wait(ok).await.unwrap().status, Status::Completed);
}

struct DropGuard(Arc<AtomicBool>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_step_fails_with_kind_timeout_and_its_future_is_dropped() {
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (Arc::clone(&dropped), Arc::clone(&finished));
    let def = Workflow::new("slow")
        .step_with(
            "hang",
            move |_ctx: Context| {
                let guard = DropGuard(Arc::clone(&d));
                let f = Arc::clone(&f);
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    f.store(true, Ordering::SeqCst);
                    Ok::<(), StepError>(())
                }
            },
            Step::opts().timeout("2s").max_retries(0),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Failed);
    let err = state.failure.unwrap().error;
    assert_eq!(err.kind(), "timeout");
    assert_eq!(err.message(), "did not finish within 2s");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(dropped.load(Ordering::SeqCst), "the timed-out future was dropped");
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_dynamic_timeout_reads_the_context() {
    let def = Workflow::new("dyn")
        .step_with(
            "work",
            |_ctx: Context| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), StepError>(())
            },
            Step::opts()
                .max_retries(0)
                .timeout_fn(|ctx| Some(Duration::from_secs(if ctx.get_or("big", false) { 60 } else { 5 }))),
        )
        .build()
        .unwrap();
    assert_eq!(run(def.clone(), json!({ "big": true })).await.status, Status::Completed);
    assert_eq!(run(def, json!({ "big": false })).await.failure.unwrap().error.kind(), "timeout");
}

#[tokio::test(start_paused = true)]
async fn on_error_skip_and_continue() {
    let def = Workflow::new("w")
        .step_max_retries(0)
        .step_with("optional", failing("x", &Arc::default()), Step::opts().on_error(OnError::Skip))
        .step_with("analytics", failing("x", &Arc::default()), Step::opts().on_error(OnError::Continue))
        .step_with("complete", noop, Step::opts().after(["optional", "analytics"]))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.step("optional").unwrap().status, StepStatus::Skipped);
    assert_eq!(state.step("analytics").unwrap().status, StepStatus::Failed);
    assert_eq!(state.step("analytics").unwrap().error.as_ref().unwrap().kind(), "x");
    assert_eq!(state.step("complete").unwrap().status, StepStatus::Completed);
}

type Calls = Arc<Mutex<Vec<String>>>;

fn recording(
    calls: &Calls,
    name: &'static str,
    output: serde_json::Value,
) -> impl Fn(Context) -> std::future::Ready<StepResult> + Send + Sync + 'static {
    let calls = Arc::clone(calls);
    move |_ctx| {
        calls.lock().unwrap().push(name.to_owned());
        std::future::ready(Ok(output.clone().into()))
    }
}

/// The reference's PaymentWorkflow, with `fail_at` failing for good.
fn payment(calls: &Calls, fail_at: &'static str) -> WorkflowDef {
    let step = |name: &'static str, output: serde_json::Value| {
        let calls = Arc::clone(calls);
        move |_ctx: Context| {
            calls.lock().unwrap().push(name.to_owned());
            let out: StepResult = if name == fail_at {
                Err(StepError::new("boom", format!("{name} failed")))
            } else {
                Ok(output.clone().into())
            };
            std::future::ready(out)
        }
    };
    let on_failure = {
        let calls = Arc::clone(calls);
        move |ctx: Context| {
            let step: String = ctx.get("__error_step__").unwrap_or_default();
            calls.lock().unwrap().push(format!("on_failure({step})"));
            std::future::ready(Ok::<(), StepError>(()))
        }
    };
    Workflow::new("payment_workflow")
        .step_max_retries(0)
        .on_failure(on_failure)
        .step_with(
            "reserve_inventory",
            step("reserve_inventory", json!({ "reservation_id": 1 })),
            Step::opts().rollback_named("release_inventory", recording(calls, "release_inventory", json!(null))),
        )
        .step_with(
            "charge_payment",
            step("charge_payment", json!({ "payment_id": 2 })),
            Step::opts()
                .after("reserve_inventory")
                .rollback_named("refund_payment", recording(calls, "refund_payment", json!(null))),
        )
        .step_with(
            "create_order",
            step("create_order", json!({ "order_id": 3 })),
            Step::opts()
                .after("charge_payment")
                .rollback_named("cancel_order", recording(calls, "cancel_order", json!(null))),
        )
        .step_with("send_confirmation", step("send_confirmation", json!(null)), Step::opts().after("create_order"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn payment_saga_compensates_exactly_the_completed_steps_for_each_failure_position() {
    let expected: [(&str, &[&str]); 4] = [
        ("reserve_inventory", &["reserve_inventory", "on_failure(reserve_inventory)"]),
        ("charge_payment", &["reserve_inventory", "charge_payment", "release_inventory", "on_failure(charge_payment)"]),
        (
            "create_order",
            &[
                "reserve_inventory",
                "charge_payment",
                "create_order",
                "refund_payment",
                "release_inventory",
                "on_failure(create_order)",
            ],
        ),
        (
            "send_confirmation",
            &[
                "reserve_inventory",
                "charge_payment",
                "create_order",
                "send_confirmation",
                "cancel_order",
                "refund_payment",
                "release_inventory",
                "on_failure(send_confirmation)",
            ],
        ),
    ];
    for (fail_at, calls_expected) in expected {
        let calls: Calls = Arc::default();
        let state = run(payment(&calls, fail_at), json!({ "amount": 10 })).await;
        assert_eq!(*calls.lock().unwrap(), calls_expected, "failure at {fail_at}");
        let compensated = calls_expected.len() > 2;
        assert_eq!(state.status, if compensated { Status::RolledBack } else { Status::Failed }, "failure at {fail_at}");
        let report = state.rollback.unwrap_or_default();
        assert!(report.failed.is_empty() && report.remaining.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_retried_recorded_and_does_not_stop_the_others() {
    let calls: Calls = Arc::default();
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    let refund = move |_ctx: Context| {
        a.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err::<(), _>(StepError::new("refund_failed", "gateway down")))
    };
    let def = Workflow::new("saga")
        .step_with(
            "reserve",
            noop,
            Step::opts().max_retries(0).rollback_named("release", recording(&calls, "release", json!(null))),
        )
        .step_with(
            "charge",
            noop,
            Step::opts().after("reserve").max_retries(2).retry_delay("1s").rollback_named("refund", refund),
        )
        .step_with("ship", failing("x", &Arc::default()), Step::opts().after("charge").max_retries(0))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::RollbackFailed);
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "the compensation is retried per its step's policy");
    assert_eq!(*calls.lock().unwrap(), ["release"], "the other compensation still ran");
    assert_eq!(state.step("charge").unwrap().status, StepStatus::CompensationFailed);
    let report = state.rollback.unwrap();
    assert_eq!(report.compensated, ["reserve"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "charge");
    assert_eq!(report.failed[0].1.kind(), "refund_failed");
}

#[tokio::test]
async fn handlers_see_the_error_and_on_step_error_runs_per_failed_attempt() {
    let seen: Calls = Arc::default();
    let (s1, s2, s3) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
    let def = Workflow::new("handlers")
        .on_step_error(move |_ctx: Context, step: String, error: StepError, attempt: u32| {
            s1.lock().unwrap().push(format!("step_error {step} {} #{attempt}", error.kind()));
            std::future::ready(Ok::<(), StepError>(()))
        })
        .on_failure(move |ctx: Context| {
            let err: serde_json::Value = ctx.get("__error__").unwrap();
            let attempts: u32 = ctx.get("__attempts__").unwrap();
            s2.lock().unwrap().push(format!("failure {} after {attempts}", err["kind"].as_str().unwrap()));
            std::future::ready(Ok::<(), StepError>(()))
        })
        .on_success(move |_ctx: Context| {
            s3.lock().unwrap().push("success".into());
            std::future::ready(Ok::<(), StepError>(()))
        })
        .step_with("flaky", failing("timeout", &Arc::default()), Step::opts().max_retries(1).retry_delay(1))
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Failed);
    // The hook runs on its own task; give it a moment.
    for _ in 0..100 {
        if seen.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["failure timeout after 2", "step_error flaky timeout #1", "step_error flaky timeout #2"]);

    let ok = Workflow::new("fine")
        .on_success({
            let seen = Arc::clone(&seen);
            move |_ctx: Context| {
                seen.lock().unwrap().push("success".into());
                std::future::ready(Ok::<(), StepError>(()))
            }
        })
        .step("a", noop)
        .build()
        .unwrap();
    assert_eq!(run(ok, json!({})).await.status, Status::Completed);
    assert!(seen.lock().unwrap().contains(&"success".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_opens_half_opens_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let (h, c) = (Arc::clone(&healthy), Arc::clone(&calls));
    let call_api = move |_ctx: Context| {
        c.fetch_add(1, Ordering::SeqCst);
        let ok = h.load(Ordering::SeqCst);
        std::future::ready(if ok { Ok(Outcome::Done) } else { Err(StepError::new("connection_error", "refused")) })
    };
    let def = Workflow::new("api")
        .step_with(
            "call_api",
            call_api,
            Step::opts().max_retries(0).circuit_breaker("external_api").circuit_breaker_opts(
                BreakerOptions::default().failure_threshold(3).reset_timeout(Duration::from_secs(30)),
            ),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let run_once = || async {
        let id = engine.start("api", json!({})).await.unwrap();
        engine.wait(id).await.unwrap()
    };
    for _ in 0..3 {
        assert_eq!(run_once().await.failure.unwrap().error.kind(), "connection_error");
    }
    assert_eq!(engine.circuit_breaker("external_api"), Some(BreakerState::Open));
    let state = run_once().await;
    assert_eq!(state.failure.unwrap().error.kind(), "circuit_open");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "an open breaker does not call the step");

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(run_once().await.failure.unwrap().error.kind(), "connection_error", "the probe fails");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one probe call went through");
    assert_eq!(engine.circuit_breaker("external_api"), Some(BreakerState::Open), "a failed probe reopens");
    assert_eq!(run_once().await.failure.unwrap().error.kind(), "circuit_open");

    tokio::time::sleep(Duration::from_secs(30)).await;
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(run_once().await.status, Status::Completed, "a successful probe closes the breaker");
    assert_eq!(engine.circuit_breaker("external_api"), Some(BreakerState::Closed { failures: 0 }));
    assert_eq!(run_once().await.status, Status::Completed);
}

#[tokio::test(start_paused = true)]
async fn workflow_timeout_fails_the_execution_and_rolls_back() {
    let calls: Calls = Arc::default();
    let def = Workflow::new("bounded")
        .timeout("1m")
        .step_with("book", noop, Step::opts().rollback_named("unbook", recording(&calls, "unbook", json!(null))))
        .step_with(
            "wait_forever",
            |ctx: Context| async move {
                ctx.cancelled().await;
                Ok::<(), StepError>(())
            },
            Step::opts().after("book").timeout("infinity").cancellable(true),
        )
        .build()
        .unwrap();
    let started = Instant::now();
    let state = run(def, json!({})).await;
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(state.status, Status::RolledBack);
    assert_eq!(state.step("wait_forever").unwrap().status, StepStatus::Cancelled);
    let failure = state.failure.unwrap();
    assert_eq!(failure.error.kind(), "workflow_timeout");
    assert_eq!(failure.step, None);
    assert_eq!(*calls.lock().unwrap(), ["unbook"]);
}

#[tokio::test(start_paused = true)]
async fn workflow_retries_restart_the_whole_workflow() {
    let attempts = Arc::new(AtomicU32::new(0));
    let firsts = Arc::new(Mutex::new(Vec::new()));
    let (a, f) = (Arc::clone(&attempts), Arc::clone(&firsts));
    let def = Workflow::new("restartable")
        .max_retries(2)
        .retry_delay("10s")
        .retry_backoff(Backoff::Fixed)
        .step_max_retries(0)
        .step_with(
            "first",
            move |ctx: Context| {
                f.lock().unwrap().push((Instant::now(), ctx.contains("second_ran")));
                std::future::ready(Ok::<_, StepError>(json!({ "first_ran": true })))
            },
            Step::opts(),
        )
        .step_with(
            "second",
            move |_ctx: Context| {
                let n = a.fetch_add(1, Ordering::SeqCst) + 1;
                let out: StepResult =
                    if n < 3 { Err(StepError::msg("not yet")) } else { Ok(json!({ "second_ran": true }).into()) };
                std::future::ready(out)
            },
            Step::opts().after("first"),
        )
        .build()
        .unwrap();
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.attempt, 3);
    let firsts = firsts.lock().unwrap().clone();
    assert_eq!(firsts.len(), 3, "each restart runs every step again");
    assert!(firsts.iter().all(|(_, saw)| !saw), "a restart starts from the input, not the failed context");
    assert_eq!(gaps(&firsts.iter().map(|f| f.0).collect::<Vec<_>>()), [10_000, 10_000]);
}

#[tokio::test(start_paused = true)]
async fn dead_letters_keep_failures_until_their_ttl() {
    let def = Workflow::new("fragile")
        .dead_letter(true)
        .dead_letter_ttl("1h")
        .step_max_retries(0)
        .step_with("break", failing("boom", &Arc::default()), Step::opts())
        .build()
        .unwrap();
    let healthy = Workflow::new("sturdy").dead_letter(true).step("ok", noop).build().unwrap();
    let engine = Engine::builder().register(def).register(healthy).build().await.unwrap();
    let failed = engine.start("fragile", json!({ "order": 7 })).await.unwrap();
    engine.wait(failed).await.unwrap();
    let fine = engine.start("sturdy", json!({})).await.unwrap();
    engine.wait(fine).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;

    let letters = engine.dead_letters().list(None).await.unwrap();
    assert_eq!(letters.len(), 1, "only failures are kept");
    let letter = &letters[0];
    assert_eq!(letter.id, failed);
    assert_eq!(letter.workflow, "fragile");
    assert_eq!(letter.input["order"], 7);
    assert_eq!(letter.error_step.as_deref(), Some("break"));
    assert_eq!(letter.error.as_ref().unwrap().kind(), "boom");
    assert_eq!(letter.expires_at - letter.failed_at, chrono::Duration::hours(1));
    assert!(engine.dead_letters().get(failed).await.unwrap().is_some());

    let replayed = engine.dead_letters().replay(failed).await.unwrap();
    let again = engine.wait(replayed).await.unwrap();
    assert_eq!(again.context["order"], 7, "a replay starts with the same input");
    assert_eq!(again.trigger, sagaflow::Trigger::Replay { of: failed });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let letters = engine.dead_letters().list(Some("fragile")).await.unwrap();
    assert_eq!(letters.len(), 1, "the replay failed again and replaced the entry");
    assert_eq!(letters[0].id, replayed);

    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert_eq!(engine.dead_letters().purge_expired().await.unwrap(), 0, "not expired after 30 minutes");
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    assert!(engine.dead_letters().list(None).await.unwrap().is_empty(), "the periodic purge removed it after 1 hour");
}
