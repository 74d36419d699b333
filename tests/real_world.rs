//! SPEC's real-world examples, as the programs in `examples/` run them: the same
//! workflows and simulated services (`examples/scenarios/`), driven in-process on
//! tokio's paused clock, so SPEC's own timings (a 24-hour verification window, a
//! 5-minute drain round, a 1-minute snooze) pass in no time. Each test checks the
//! effects the simulated services recorded, the compensations, the handlers and
//! the error information the engine left in the context.

#[path = "../examples/scenarios/batch_images.rs"]
pub(crate) mod batch_images;
#[path = "../examples/dashboard/demo.rs"]
mod demo;
#[path = "../examples/scenarios/etl_pipeline.rs"]
pub(crate) mod etl_pipeline;
#[path = "../examples/scenarios/order_processing.rs"]
pub(crate) mod order_processing;
#[path = "../examples/support/mod.rs"]
pub(crate) mod support;
#[path = "../examples/scenarios/tenant_migration.rs"]
pub(crate) mod tenant_migration;
#[path = "../examples/scenarios/user_onboarding.rs"]
pub(crate) mod user_onboarding;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, StepStatus};
use serde_json::Value;

async fn until_awaiting(engine: &Engine, id: ExecutionId) -> ExecutionState {
    for _ in 0..1000 {
        let state = engine.get_state(id).await.unwrap();
        if state.status == Status::Awaiting {
            return state;
        }
        assert!(!state.status.is_terminal(), "ended before awaiting: {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {id} never awaited");
}

fn step<'a>(state: &'a ExecutionState, name: &str) -> &'a sagaflow::StepState {
    state.steps.iter().find(|s| &*s.name == name).unwrap_or_else(|| panic!("no step `{name}`"))
}

fn error_kind(state: &ExecutionState) -> String {
    state.context["__error__"]["kind"].as_str().unwrap_or_default().to_owned()
}

fn compensated(state: &ExecutionState) -> Vec<String> {
    state.rollback.as_ref().map(|r| r.compensated.clone()).unwrap_or_default()
}

mod orders {
    use super::order_processing::{OrderProcessing, Shop, ShopFaults, Verdict};
    use super::*;

    async fn run(faults: ShopFaults) -> (Engine, ExecutionState, std::sync::Arc<Shop>) {
        let shop = Shop::new(faults);
        let engine = Engine::builder().workflow(OrderProcessing { shop: shop.clone() }).build().await.unwrap();
        let id = engine.start("order_processing", json!({ "order_id": "ord-1001" })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        (engine, state, shop)
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_is_paid_shipped_and_announced() {
        let (engine, state, shop) = run(ShopFaults::default()).await;
        assert_eq!(state.status, Status::Completed, "{state:?}");
        assert_eq!(state.context["status"], "fulfilled");
        assert_eq!(state.context["fraud_check"], "passed");
        assert_eq!(
            shop.ledger.actions("payments"),
            ["authorized 33.90 EUR on card_tok_visa_4242 as auth-1", "captured auth-1 as pay-1"]
        );
        assert!(shop.ledger.has("shipping", "booked shp-1 for ord-1001 from res-1"));
        assert!(shop.ledger.has("sms", "sent \"Order ord-1001 shipped!\""));
        assert!(shop.ledger.has("analytics", "order_fulfilled ord-1001"));
        assert_eq!(shop.ledger.actions("orders"), ["marked ord-1001 fulfilled"]);
        assert!(engine.dead_letters().list(None).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_declined_card_releases_the_stock_and_fails_the_order() {
        let (engine, state, shop) = run(ShopFaults { decline_card: true, ..ShopFaults::default() }).await;
        assert_eq!(state.status, Status::RolledBack);
        assert_eq!(state.context["__error_step__"], "authorize_payment");
        assert_eq!(error_kind(&state), "payment_failed");
        assert_eq!(state.context["__error__"]["details"]["decline_code"], "insufficient_funds");
        assert_eq!(state.context["__attempts__"], 1, "a declined card is not retried");
        assert_eq!(compensated(&state), ["reserve_inventory"], "only the reservation had completed");
        assert_eq!(step(&state, "capture_payment").status, StepStatus::Pending);
        assert_eq!(shop.ledger.actions("inventory"), ["reserved mug-blue, tea-sencha-100g as res-1", "released res-1"]);
        assert!(!shop.ledger.has("payments", "captured"), "nothing was charged");
        // The handler ran after the rollback, with the error.
        assert_eq!(shop.ledger.actions("orders"), ["marked ord-1001 failed (payment_failed)"]);
        assert!(shop.ledger.has("mailer", "sent `order ord-1001 could not be completed` to ada@example.com"));
        let letters = engine.dead_letters().list(Some("order_processing")).await.unwrap();
        assert_eq!(letters.len(), 1, "dead_letter keeps the failed order");
        assert_eq!(letters[0].error_step.as_deref(), Some("authorize_payment"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_carrier_outage_after_the_capture_undoes_everything_in_reverse() {
        let (_engine, state, shop) = run(ShopFaults { carrier_down: true, ..ShopFaults::default() }).await;
        assert_eq!(state.status, Status::RolledBack);
        assert_eq!(state.context["__error_step__"], "create_shipment");
        assert_eq!(error_kind(&state), "carrier_unavailable");
        assert_eq!(compensated(&state), ["capture_payment", "authorize_payment", "reserve_inventory"]);
        let undo: Vec<String> = shop
            .ledger
            .entries()
            .into_iter()
            .map(|e| e.to_string())
            .filter(|e| e.contains("refunded") || e.contains("voided") || e.contains("released"))
            .collect();
        assert_eq!(undo, ["payments: refunded pay-1", "payments: voided auth-1", "inventory: released res-1"]);
        assert!(!shop.ledger.has("shipping", "cancelled"), "no shipment was booked, so none is cancelled");
        assert_eq!(shop.ledger.actions("orders"), ["marked ord-1001 failed (carrier_unavailable)"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flagged_order_waits_for_the_fraud_team() {
        let shop = Shop::new(ShopFaults { fraud: Verdict::Review, ..ShopFaults::default() });
        let engine = Engine::builder().workflow(OrderProcessing { shop: shop.clone() }).build().await.unwrap();
        let id = engine.start("order_processing", json!({ "order_id": "ord-1001" })).await.unwrap();
        let waiting = until_awaiting(&engine, id).await;
        assert_eq!(waiting.awaiting[0].step, "check_fraud");
        assert_eq!(waiting.awaiting[0].notify, Some(json!("fraud_team")));
        assert!(!shop.ledger.has("inventory", "reserved"), "nothing is reserved before the review");
        engine.resume(id, json!({ "fraud_check": "passed_review", "reviewed_by": "lin" })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        assert_eq!(state.status, Status::Completed);
        assert_eq!(
            (state.context["fraud_check"].clone(), state.context["reviewed_by"].clone()),
            (json!("passed_review"), json!("lin"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_order_fails_before_anything_moves() {
        let (_engine, state, shop) = run(ShopFaults { fraud: Verdict::Reject, ..ShopFaults::default() }).await;
        assert_eq!(state.status, Status::Failed, "nothing to compensate");
        assert_eq!(
            (state.context["__error_step__"].clone(), error_kind(&state)),
            (json!("check_fraud"), "fraud_detected".into())
        );
        assert!(shop.ledger.actions("payments").is_empty() && shop.ledger.actions("inventory").is_empty());
        assert_eq!(shop.ledger.actions("orders"), ["marked ord-1001 failed (fraud_detected)"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gateway_timeout_is_retried_and_a_failed_sms_does_not_fail_the_order() {
        let (_engine, state, shop) =
            run(ShopFaults { gateway_timeouts: 2, sms_down: true, ..ShopFaults::default() }).await;
        assert_eq!(state.status, Status::Completed);
        assert_eq!(step(&state, "authorize_payment").attempts, 3, "two timeouts, then success");
        let sms = step(&state, "send_sms_notification");
        assert_eq!(sms.status, StepStatus::Failed, "on_error = continue records the failure");
        assert_eq!(sms.error.as_ref().map(|e| e.kind().to_owned()).as_deref(), Some("sms_rejected"));
        assert_eq!(step(&state, "complete_order").status, StepStatus::Completed);
        assert_eq!(shop.ledger.actions("payments").len(), 2, "one authorization, one capture");
    }
}

mod etl {
    use super::etl_pipeline::{DailyDataPipeline, DataPlatform, PlatformFaults};
    use super::*;

    async fn run(faults: PlatformFaults) -> (Engine, ExecutionState, std::sync::Arc<DataPlatform>) {
        let platform = DataPlatform::new(faults);
        let engine =
            Engine::builder().workflow(DailyDataPipeline { platform: platform.clone() }).build().await.unwrap();
        let id = engine.start("daily_data_pipeline", json!({ "date": "2025-06-01" })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        (engine, state, platform)
    }

    #[tokio::test(start_paused = true)]
    async fn the_pipeline_extracts_joins_loads_and_reports() {
        let (engine, state, platform) = run(PlatformFaults::default()).await;
        assert_eq!(state.status, Status::Completed, "{state:?}");
        assert_eq!(state.context["record_count"], 48);
        assert_eq!(state.context["report_url"], "https://reports.example.com/daily/2025-06-01");
        assert_eq!(platform.ledger.actions("warehouse"), ["inserted 48 rows"]);
        assert_eq!(platform.ledger.actions("elasticsearch"), ["indexed 48 documents"]);
        let slack = platform.ledger.actions("slack");
        assert!(
            slack[0].starts_with("#data-team: ✅ Daily ETL Complete | Date: 2025-06-01 | Records: 48"),
            "{slack:?}"
        );
        assert!(platform.ledger.actions("pagerduty").is_empty());
        let schedules = engine.schedules();
        assert_eq!(schedules.len(), 1);
        assert_eq!(schedules[0].schedule, "cron 0 2 * * *");
        assert_eq!(engine.definition("daily_data_pipeline").unwrap().policy().tags(), ["etl", "daily"]);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_records_stop_the_load_and_page_the_data_team() {
        let (_engine, state, platform) = run(PlatformFaults { orphan_sales: 3, ..PlatformFaults::default() }).await;
        assert_eq!(state.status, Status::Failed);
        assert_eq!(state.context["__error_step__"], "validate_data");
        assert_eq!(error_kind(&state), "validation_failed");
        let errors = state.context["__error__"]["details"]["errors"].as_array().unwrap().clone();
        assert_eq!(
            errors,
            [json!("sale 1 has no customer"), json!("sale 2 has no customer"), json!("sale 3 has no customer")]
        );
        assert!(platform.ledger.actions("warehouse").is_empty(), "nothing was loaded");
        assert_eq!(step(&state, "load_to_warehouse").status, StepStatus::Pending);
        assert_eq!(
            platform.ledger.actions("pagerduty"),
            ["paged data_team: Daily ETL failed: validation_failed: 3 records are invalid"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_warehouse_connection_is_retried() {
        let (_engine, state, platform) = run(PlatformFaults { warehouse_drops: 2, ..PlatformFaults::default() }).await;
        assert_eq!(state.status, Status::Completed);
        assert_eq!(step(&state, "load_to_warehouse").attempts, 3);
        assert_eq!(platform.ledger.actions("warehouse"), ["inserted 48 rows"], "inserted once");
    }
}

mod onboarding {
    use std::sync::Arc;

    use super::user_onboarding::{AccountFaults, Accounts, UserOnboarding};
    use super::*;

    fn input() -> Value {
        json!({ "email": "alice@example.com", "name": "Alice", "password": "hunter2", "source": "newsletter" })
    }

    async fn start(faults: AccountFaults) -> (Engine, ExecutionId, Arc<Accounts>) {
        let accounts = Accounts::new(faults);
        let engine = Engine::builder().workflow(UserOnboarding::new(accounts.clone())).build().await.unwrap();
        let id = engine.start("user_onboarding", input()).await.unwrap();
        (engine, id, accounts)
    }

    #[tokio::test(start_paused = true)]
    async fn a_verified_user_is_set_up_and_welcomed() {
        let (engine, id, accounts) = start(AccountFaults::default()).await;
        let waiting = until_awaiting(&engine, id).await;
        assert_eq!(waiting.awaiting[0].step, "await_email_verification");
        assert!(waiting.awaiting[0].timeout_at.is_some(), "the link is valid for a limited time");
        assert!(!waiting.context.contains_key("password_hash"), "no password material at the top level");
        engine.resume(id, json!({ "email_verified": true })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        assert_eq!(state.status, Status::Completed, "{state:?}");
        for key in ["settings_id", "workspace_id", "storage_bucket", "subscription_id", "trial_ends_at"] {
            assert!(state.context.contains_key(key), "`{key}` is set");
        }
        assert!(accounts.ledger.has("mailer", "sent the welcome mail to alice@example.com"));
        assert_eq!(accounts.ledger.actions("analytics"), ["user_signup usr-1 source=newsletter referrer=-"]);
        assert!(!accounts.ledger.has("users", "hard-deleted"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unverified_user_gets_no_workspace() {
        let (engine, id, accounts) = start(AccountFaults::default()).await;
        until_awaiting(&engine, id).await;
        engine.resume(id, json!({ "email_verified": false })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        for name in ["create_default_settings", "create_default_workspace", "provision_storage"] {
            assert_eq!(step(&state, name).status, StepStatus::Skipped, "`when = email_verified` skips `{name}`");
        }
        assert!(accounts.ledger.actions("workspaces").is_empty() && accounts.ledger.actions("storage").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_link_deletes_the_account_then_marks_the_signup_failed() {
        let (engine, id, accounts) = start(AccountFaults::default()).await;
        let started = tokio::time::Instant::now();
        let state = engine.wait(id).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(24 * 3600), "SPEC's 24-hour window ran out first");
        assert_eq!(state.status, Status::RolledBack);
        assert_eq!(state.context["__error_step__"], "await_email_verification");
        assert_eq!(error_kind(&state), "verification_expired");
        assert_eq!(compensated(&state), ["create_account"]);
        assert_eq!(
            accounts.ledger.actions("users"),
            ["created usr-1 for alice@example.com", "hard-deleted usr-1", "marked the signup of usr-1 failed"]
        );
        assert!(accounts.ledger.has("mailer", "sent `your link expired, please sign up again`"), "on_timeout ran");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_setup_deletes_the_account() {
        let (engine, id, accounts) = start(AccountFaults { storage_full: true, ..AccountFaults::default() }).await;
        until_awaiting(&engine, id).await;
        engine.resume(id, json!({ "email_verified": true })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        assert_eq!(state.status, Status::RolledBack);
        assert_eq!(state.context["__error_step__"], "provision_storage");
        assert_eq!(error_kind(&state), "storage_unavailable");
        assert_eq!(compensated(&state), ["create_account"], "only steps with a rollback are compensated");
        assert!(accounts.ledger.has("users", "hard-deleted usr-1"));
        assert!(accounts.ledger.actions("billing").is_empty(), "no trial for a failed signup");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_welcome_mail_keeps_the_signup() {
        let (engine, id, accounts) = start(AccountFaults { welcome_mail_down: true, ..AccountFaults::default() }).await;
        until_awaiting(&engine, id).await;
        engine.resume(id, json!({ "email_verified": true })).await.unwrap();
        let state = engine.wait(id).await.unwrap();
        assert_eq!(state.status, Status::Completed);
        assert_eq!(step(&state, "send_welcome_email").status, StepStatus::Failed);
        assert_eq!(step(&state, "track_signup").status, StepStatus::Completed, "its dependent still ran");
        assert!(!accounts.ledger.has("users", "hard-deleted"));
    }
}

mod images {
    use super::batch_images::{ImageFaults, ImageProcessing, ImageService};
    use super::*;

    fn ids(list: &[u32]) -> HashSet<String> {
        list.iter().map(|i| format!("img{i:02}")).collect()
    }

    async fn run(faults: ImageFaults) -> (ExecutionState, std::sync::Arc<ImageService>) {
        let images = ImageService::new(faults);
        let engine = Engine::builder().workflow(ImageProcessing { images: images.clone() }).build().await.unwrap();
        let id = engine.start("batch_image_processing", json!({ "batch_id": "b-1", "batch_size": 24 })).await.unwrap();
        (engine.wait(id).await.unwrap(), images)
    }

    #[tokio::test(start_paused = true)]
    async fn every_image_gets_its_own_step_ten_at_a_time() {
        let (state, images) = run(ImageFaults::default()).await;
        assert_eq!(state.status, Status::Completed, "{state:?}");
        assert_eq!((state.context["processed"].clone(), state.context["failed"].clone()), (json!(24), json!(0)));
        let added: Vec<&sagaflow::StepState> =
            state.steps.iter().filter(|s| s.graft.as_deref() == Some("process_images")).collect();
        assert_eq!(added.len(), 24, "one step per image");
        assert_eq!(state.context["process_img07"]["url"], "https://cdn.example.com/800x600/img07.jpg");
        assert_eq!(images.peak_in_flight.load(Ordering::SeqCst), 10, "step_concurrency = 10");
        assert_eq!(images.ledger.actions("reports"), ["b-1: 24 of 24 processed, 0 failed"]);
    }

    #[tokio::test(start_paused = true)]
    async fn corrupt_files_are_counted_and_dropped_uploads_retried() {
        let (state, images) =
            run(ImageFaults { corrupt: ids(&[7, 19]), flaky_uploads: ids(&[5]), upload_down: false }).await;
        assert_eq!(state.status, Status::Completed);
        assert_eq!((state.context["processed"].clone(), state.context["failed"].clone()), (json!(22), json!(2)));
        assert_eq!(state.context["process_img19"]["status"], "error");
        assert_eq!(step(&state, "process_img05").attempts, 2, "the dropped upload was retried");
        assert_eq!(images.ledger.actions("reports"), ["b-1: 22 of 24 processed, 2 failed"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_service_that_stays_down_fails_the_batch() {
        let (state, images) = run(ImageFaults { upload_down: true, ..ImageFaults::default() }).await;
        assert_eq!(state.status, Status::Failed);
        assert!(state.context["__error_step__"].as_str().unwrap().starts_with("process_img"));
        assert_eq!(error_kind(&state), "connection_error");
        assert_eq!(state.context["__attempts__"], 4, "one attempt and three retries");
        assert!(images.ledger.actions("reports").is_empty(), "no report for a failed batch");
    }
}

mod tenants {
    use super::tenant_migration::{Platform, TenantFaults, TenantMigration};
    use super::*;

    async fn run(faults: TenantFaults) -> (ExecutionState, std::sync::Arc<Platform>, Duration) {
        let platform = Platform::new(faults);
        let engine = Engine::builder().workflow(TenantMigration::new(platform.clone())).build().await.unwrap();
        let started = tokio::time::Instant::now();
        let id = engine
            .start("tenant_migration", json!({ "tenant_id": "acme", "migration_version": "2025_06_01" }))
            .await
            .unwrap();
        let state = engine.wait(id).await.unwrap();
        (state, platform, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn active_sessions_snooze_the_drain_until_they_are_gone() {
        let (state, platform, took) = run(TenantFaults { active_sessions: 3, corrupt_rows: false }).await;
        assert_eq!(state.status, Status::Completed, "{state:?}");
        assert_eq!(
            platform.ledger.actions("sessions"),
            ["acme still has 1 active session(s)", "acme has no active session"]
        );
        // One 5-minute round that timed out, a 1-minute snooze, then the second round.
        assert!(took >= Duration::from_secs(6 * 60), "took {took:?}");
        assert_eq!(state.context["sessions_drained"], true);
        assert!(!*platform.maintenance.lock().unwrap(), "the tenant is unlocked");
        assert!(platform.ledger.has("mailer", "to the admins of acme: migration complete"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_validation_unlocks_restores_and_pages() {
        let (state, platform, _) = run(TenantFaults { active_sessions: 0, corrupt_rows: true }).await;
        assert_eq!(state.status, Status::RolledBack);
        assert_eq!(state.context["__error_step__"], "validate_migration");
        assert_eq!(error_kind(&state), "validation_failed");
        assert_eq!(state.context["__error__"]["details"]["issues"].as_array().unwrap().len(), 2);
        assert_eq!(compensated(&state), ["lock_tenant", "create_backup"]);
        let after_migration: Vec<String> = platform
            .ledger
            .entries()
            .into_iter()
            .skip_while(|e| e.service != "migration")
            .skip(1)
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            after_migration,
            [
                "tenants: maintenance mode off for acme",
                "backups: restored bak-1",
                "tenants: maintenance mode off for acme",
                "pagerduty: paged platform_team: Migration failed for tenant acme",
            ],
            "the rollbacks in reverse order, then `rollback_migration`"
        );
        assert!(!*platform.maintenance.lock().unwrap());
        assert_eq!(step(&state, "unlock_tenant").status, StepStatus::Pending, "the step itself never ran");
    }
}

/// The dashboard example (`examples/dashboard/`), served in process: its loops
/// run the workflows above (faster than the program does) while a browser opens
/// its pages and saves a screenshot of each, into `SAGAFLOW_SCREENSHOTS` when set
/// (the README's picture comes from there) or a temporary directory.
mod dashboard_example {
    use std::process::Command;

    use sagaflow::dashboard::Dashboard;

    use super::demo;
    use super::*;
    use crate::tools;

    /// An ended order whose steps were retried, once the loops produced one.
    async fn retried_order(engine: &Engine) -> ExecutionId {
        for _ in 0..600 {
            let history = engine.history(&Default::default()).await.unwrap();
            let retried =
                history.iter().find(|s| s.workflow == "order_processing" && s.steps.iter().any(|st| st.attempts > 1));
            if let Some(s) = retried
                && history.iter().filter(|s| s.workflow == "order_processing").count() >= 3
            {
                return s.id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no retried order within a minute");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_browser_opens_the_dashboard_examples_pages() {
        let browser = tools::root().join("tests/browser");
        let installed = std::path::Path::new("/usr/bin/chromium").is_file()
            && browser.join("node_modules/playwright-core/package.json").is_file();
        if !tools::require(
            "Chromium and Playwright (tests/browser)",
            installed,
            "apt-get install chromium && cd tests/browser && npm ci (or run .ci/run)",
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let world = demo::World::new();
        let url = format!("sqlite://{}", dir.path().join("dashboard.db").display());
        let engine = world.register(Engine::builder().store_url(url)).build().await.unwrap();
        let mut loops = demo::run_loops(&engine, &world, 0.25);
        let retried = retried_order(&engine).await;

        let app = axum::Router::new()
            .nest("/workflows", Dashboard::new(engine.clone()).bearer_token("t").expect("a valid token").router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/workflows", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let out = std::env::var_os("SAGAFLOW_SCREENSHOTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| dir.path().join("screenshots"));
        let (script, out_arg) = (browser.join("example.mjs"), out.clone());
        let run = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .arg(&base)
                .arg(&out_arg)
                .arg(retried.to_string())
                .arg("t")
                .output()
                .expect("node runs")
        })
        .await
        .unwrap();
        loops.abort_all();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "the browser session passed: {stdout}\n{}", String::from_utf8_lossy(&run.stderr));
        let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        for name in ["overview.png", "workflow.png", "execution.png"] {
            let png = std::fs::read(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{name} is a real screenshot");
        }
        engine.shutdown().await;
    }
}
