//! `sagaflow::testing` on SPEC's five real-world workflows (the programs of
//! `examples/`), as examples of how users test theirs: time skips through a
//! day-long verification window, a 48-hour approval, retry delays and snoozes;
//! fakes replace the steps that would call real services; the timeline shows
//! attempts, waits, signals and compensations in order, each at its time.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sagaflow::prelude::*;
use sagaflow::testing::{Happened, TestEnv, TestError};
use sagaflow::{ExecutionState, StepStatus};
use serde::Deserialize;

use crate::real_world::batch_images::{ImageFaults, ImageProcessing, ImageService};
use crate::real_world::etl_pipeline::{DailyDataPipeline, DataPlatform, PlatformFaults};
use crate::real_world::order_processing::{OrderProcessing, Shop, ShopFaults, Verdict};
use crate::real_world::tenant_migration::{Platform, TenantFaults, TenantMigration};
use crate::real_world::user_onboarding::{AccountFaults, Accounts, UserOnboarding};

/// `lines` holds `expected` in this order (other lines may come between).
fn in_order(lines: &[String], expected: &[&str]) {
    let mut rest = lines.iter();
    for e in expected {
        assert!(rest.any(|l| l == e), "`{e}` missing or out of order in\n{}", lines.join("\n"));
    }
}

/// A fixed morning, so that no daily schedule fires during a test.
fn morning() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).single().unwrap()
}

// ----- the 48-hour approval -----

#[derive(Debug, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
}

/// An expense: submitted, approved by a manager within 48 hours (a signal), paid.
#[derive(Default)]
pub struct ExpenseApproval {
    pub payments: Mutex<Vec<String>>,
}

#[workflow(name = "expense_report")]
impl ExpenseApproval {
    #[step]
    fn submit(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "amount": ctx.get::<u64>("amount")?, "submitted": true }))
    }

    #[step(after = submit, await_approval = true, on_timeout = escalate)]
    fn approve(#[signal("decision", timeout = "48h")] decision: &Decision) -> Result<serde_json::Value, StepError> {
        if !decision.approved {
            return Err(StepError::new("rejected", format!("rejected by {}", decision.by)).permanent());
        }
        Ok(json!({ "approved_by": decision.by }))
    }

    #[step(after = approve)]
    fn pay(&self, ctx: &Context) -> Result<(), StepError> {
        self.payments.lock().unwrap().push(format!("paid {}", ctx.get::<u64>("amount")?));
        Ok(())
    }

    fn escalate(ctx: &Context) -> Result<(), StepError> {
        Err(StepError::new("no_decision", format!("nobody decided on {} in 48 hours", ctx.get::<u64>("amount")?))
            .permanent())
    }

    #[query]
    fn waiting_for(&self, state: &ExecutionState) -> Vec<String> {
        state.awaiting.iter().filter_map(|a| a.signal.clone()).collect()
    }

    #[query]
    fn approved_by(state: &ExecutionState) -> Option<String> {
        state.get("approved_by")
    }
}

#[tokio::test(start_paused = true)]
async fn a_48_hour_approval_runs_in_milliseconds() {
    let wall = std::time::Instant::now();
    let env = TestEnv::builder().workflow(ExpenseApproval::default()).build().await.unwrap();
    let started = env.now();
    let id = env.start("expense_report", json!({ "amount": 120 })).await.unwrap();
    assert_eq!(env.query(id, "waiting_for").await.unwrap(), json!(["decision"]));
    env.advance("47h").await.unwrap();
    assert_eq!(env.get_state(id).await.unwrap().status, Status::Awaiting, "still within the 48 hours");
    env.signal(id, "decision", json!({ "approved": true, "by": "ada" })).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(env.query_as::<Option<String>>(id, "approved_by").await.unwrap().as_deref(), Some("ada"));
    let timeline = env.timeline(id);
    assert_eq!(
        timeline.lines(),
        [
            "started",
            "attempt submit #1",
            "completed submit",
            "attempt approve #1",
            "waiting approve",
            "signal decision -> approve",
            "attempt approve #2",
            "completed approve",
            "attempt pay #1",
            "completed pay",
            "ended completed",
        ]
    );
    assert_eq!(timeline.offset_of("signal decision -> approve"), Some(Duration::from_secs(47 * 3600)));
    assert!(env.now() - started >= chrono::Duration::hours(47), "the engine's clock moved two days");
    assert!(wall.elapsed() < Duration::from_secs(10), "in no time: {:?}", wall.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_approval_nobody_gives_escalates_after_48_hours() {
    let env = TestEnv::builder().workflow(ExpenseApproval::default()).build().await.unwrap();
    let id = env.start("expense_report", json!({ "amount": 120 })).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.failure.as_ref().unwrap().error.kind(), "no_decision");
    let timeline = env.timeline(id);
    in_order(
        &timeline.lines(),
        &["waiting approve", "attempt approve #1", "failed approve: no_decision", "ended failed"],
    );
    let escalated = timeline.entries.iter().filter(|e| e.what.to_string() == "attempt approve #1").nth(1).unwrap();
    assert_eq!(escalated.offset, Duration::from_secs(48 * 3600), "`escalate` ran 48 hours after the wait began");
}

// A plain `#[tokio::test]`: the kit pauses the clock itself.
#[tokio::test]
async fn a_fake_replaces_a_step_and_a_wait_nothing_can_end_is_reported() {
    let paid = std::sync::Arc::new(Mutex::new(Vec::new()));
    let log = paid.clone();
    let env = TestEnv::builder()
        .workflow(ExpenseApproval::default())
        .mock_step("pay", move |ctx: Context| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!("fake payment of {}", ctx.get::<u64>("amount")?));
                Ok::<_, StepError>(())
            }
        })
        .build()
        .await
        .unwrap();
    let id = env.start("expense_report", json!({ "amount": 80 })).await.unwrap();
    env.signal(id, "decision", json!({ "approved": true, "by": "lin" })).await.unwrap();
    env.wait(id).await.unwrap();
    assert_eq!(*paid.lock().unwrap(), ["fake payment of 80"]);

    // A wait without a timeout: `wait` says what the execution needs instead of
    // waiting forever.
    let def = Workflow::new("forever")
        .step("hold", |_ctx: Context| async { Ok::<_, StepError>(Outcome::await_signal("go")) })
        .build()
        .unwrap();
    let env = TestEnv::builder().register(def).build().await.unwrap();
    let id = env.start("forever", json!({})).await.unwrap();
    let stuck = env.wait(id).await.unwrap_err();
    assert!(matches!(&stuck, TestError::Stuck { status: Status::Awaiting, .. }), "{stuck:?}");
    assert_eq!(
        stuck.to_string(),
        format!(
            "execution {id} is awaiting and nothing but the test can move it on: it waits for signal `go` in step `hold`"
        )
    );
    let unknown = env.mock_step("hodl", |_ctx: Context| async { Ok::<_, StepError>(()) }).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no registered workflow has a step `hodl` (did you mean `hold`?); steps: forever.hold"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_refuses_a_runtime_whose_clock_cannot_be_paused() {
    let refused = TestEnv::builder().workflow(ExpenseApproval::default()).build().await.unwrap_err();
    assert!(matches!(refused, TestError::ClockNotPaused), "{refused:?}");
}

// ----- SPEC's real-world workflows -----

#[tokio::test(start_paused = true)]
async fn order_processing_a_declined_card_rolls_back_what_completed() {
    let shop = Shop::new(ShopFaults::default());
    let env = TestEnv::builder()
        .workflow(OrderProcessing { shop: shop.clone() })
        .mock_step("authorize_payment", |_ctx: Context| async {
            Err::<(), _>(StepError::new("card_declined", "the bank declined the card").permanent())
        })
        .build()
        .await
        .unwrap();
    let id = env.start("order_processing", json!({ "order_id": "ord-1001" })).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::RolledBack);
    let lines = env.timeline(id).lines();
    in_order(
        &lines,
        &[
            "attempt validate_order #1",
            "completed check_fraud",
            "failed authorize_payment: card_declined",
            "workflow failed at authorize_payment: card_declined",
            "rollback reserve_inventory",
            "compensating reserve_inventory #1",
            "compensated reserve_inventory",
            "rollback finished",
            "ended rolled_back",
        ],
    );
    assert!(!lines.iter().any(|l| l.contains("capture_payment")), "nothing was captured");
    assert!(shop.ledger.actions("payments").is_empty(), "the fake stood in for the bank");
}

#[tokio::test(start_paused = true)]
async fn order_processing_a_review_waits_for_the_fraud_team_within_the_order_s_30_minutes() {
    let shop = Shop::new(ShopFaults { fraud: Verdict::Review, ..ShopFaults::default() });
    let env = TestEnv::builder().workflow(OrderProcessing { shop }).build().await.unwrap();
    let reviewed = env.start("order_processing", json!({ "order_id": "ord-1001" })).await.unwrap();
    env.advance("20m").await.unwrap();
    assert_eq!(env.get_state(reviewed).await.unwrap().status, Status::Awaiting);
    env.resume(reviewed, json!({ "fraud_check": "passed_review" })).await.unwrap();
    assert_eq!(env.wait(reviewed).await.unwrap().status, Status::Completed);
    in_order(&env.timeline(reviewed).lines(), &["waiting check_fraud", "resumed", "attempt capture_payment #1"]);

    let forgotten = env.start("order_processing", json!({ "order_id": "ord-1001" })).await.unwrap();
    let done = env.wait(forgotten).await.unwrap();
    // The review may take a day, but the order as a whole has 30 minutes.
    assert_eq!(done.failure.unwrap().error.kind(), sagaflow::kinds::WORKFLOW_TIMEOUT);
    let timeline = env.timeline(forgotten);
    let failed = timeline.entries.iter().find(|e| matches!(e.what, Happened::Failed { .. })).unwrap();
    assert_eq!(failed.offset, Duration::from_secs(30 * 60), "{timeline}");
}

#[tokio::test(start_paused = true)]
async fn user_onboarding_an_expired_link_deletes_the_account() {
    let accounts = Accounts::new(AccountFaults::default());
    let env = TestEnv::builder().workflow(UserOnboarding::new(accounts.clone())).build().await.unwrap();
    let input = json!({ "email": "alice@example.com", "name": "Alice", "password": "hunter2" });
    let id = env.start("user_onboarding", input).await.unwrap();
    env.advance("23h59m").await.unwrap();
    let state = env.get_state(id).await.unwrap();
    assert_eq!(state.step("await_email_verification").unwrap().status, StepStatus::Awaiting, "a minute left");
    env.advance("1m").await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::RolledBack);
    let timeline = env.timeline(id);
    in_order(
        &timeline.lines(),
        &[
            "waiting await_email_verification",
            "attempt await_email_verification #1",
            "failed await_email_verification: verification_expired",
            "compensating create_account #1",
            "compensated create_account",
            "ended rolled_back",
        ],
    );
    assert!(
        timeline.offset_of("compensating create_account #1").unwrap() >= Duration::from_secs(24 * 3600),
        "{timeline}"
    );
    assert!(accounts.ledger.actions("users").iter().any(|a| a.starts_with("hard-deleted")));
}

#[tokio::test(start_paused = true)]
async fn etl_pipeline_a_flaky_warehouse_is_retried_with_backoff() {
    let platform = DataPlatform::new(PlatformFaults::default());
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = tries.clone();
    let env = TestEnv::builder()
        .start_at(morning())
        .workflow(DailyDataPipeline { platform })
        .mock_step("load_to_warehouse", move |_ctx: Context| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < 2 {
                    return Err(StepError::new("connection_error", "the warehouse dropped the connection"));
                }
                Ok(json!({ "warehouse_rows": 42 }))
            }
        })
        .build()
        .await
        .unwrap();
    let id = env.start("daily_data_pipeline", json!({ "date": "2025-06-01" })).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.context["warehouse_rows"], 42);
    let timeline = env.timeline(id);
    assert_eq!(timeline.attempts("load_to_warehouse"), 3);
    let first = timeline.offset_of("attempt load_to_warehouse #1").unwrap();
    let third = timeline.offset_of("attempt load_to_warehouse #3").unwrap();
    assert!(third - first >= Duration::from_millis(500 + 1000), "two growing retry delays: {timeline}");
    in_order(
        &timeline.lines(),
        &["failed load_to_warehouse: connection_error", "completed load_to_warehouse", "attempt generate_report #1"],
    );
}

#[tokio::test(start_paused = true)]
async fn batch_images_a_graft_adds_one_step_per_image() {
    let images = ImageService::new(ImageFaults::default());
    let env = TestEnv::builder().workflow(ImageProcessing { images }).build().await.unwrap();
    let id = env.start("batch_image_processing", json!({ "batch_id": "b-1", "batch_size": 12 })).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    let timeline = env.timeline(id);
    in_order(
        &timeline.lines(),
        &["expanded process_images", "attempt process_img01 #1", "attempt aggregate_results #1"],
    );
    let added = timeline
        .entries
        .iter()
        .filter(|e| matches!(&e.what, Happened::Attempt { step, .. } if step.starts_with("process_img")))
        .count();
    assert_eq!(added, 12, "one step per image");
}

#[tokio::test(start_paused = true)]
async fn tenant_migration_the_drain_snoozes_a_minute_between_rounds() {
    let platform = Platform::new(TenantFaults { active_sessions: 3, corrupt_rows: false });
    let env = TestEnv::builder().workflow(TenantMigration::new(platform)).build().await.unwrap();
    let input = json!({ "tenant_id": "acme", "migration_version": "2025_06_01" });
    let id = env.start("tenant_migration", input).await.unwrap();
    let done = env.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    let timeline = env.timeline(id);
    let snoozed = timeline.offset_of("snoozed wait_for_active_sessions").unwrap();
    let again = timeline.offset_of("attempt wait_for_active_sessions #2").unwrap();
    assert_eq!(again - snoozed, Duration::from_secs(60), "{timeline}");
    assert!(snoozed >= Duration::from_secs(5 * 60), "a 5-minute round first");
    in_order(&timeline.lines(), &["completed wait_for_active_sessions", "attempt migrate_data #1", "ended completed"]);
}
