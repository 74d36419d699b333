//! The dashboard example's traffic: SPEC's five workflows (and a stock sync that a
//! cron schedule starts every minute) run on a loop against their simulated
//! services, some succeeding, some retrying, some failing and rolling back, some
//! left awaiting approval. Shared with the tests, which serve the same thing.

use std::sync::Arc;
use std::time::Duration;

use sagaflow::prelude::*;
use tokio::task::JoinSet;

use super::batch_images::{ImageFaults, ImageProcessing, ImageService};
use super::etl_pipeline::{DailyDataPipeline, DataPlatform, PlatformFaults};
use super::order_processing::{OrderProcessing, Shop, ShopFaults, Verdict};
use super::support::sim::{Ledger, latency};
use super::tenant_migration::{Platform, TenantFaults, TenantMigration};
use super::user_onboarding::{AccountFaults, Accounts, UserOnboarding};

/// A stock sync the dashboard shows as scheduled: every minute it reads the
/// (simulated) warehouse's stock levels.
#[derive(Debug)]
pub(crate) struct StockSync {
    ledger: Arc<Ledger>,
}

#[workflow(name = "stock_sync", schedule(cron = "* * * * *"), tags = "inventory")]
impl StockSync {
    #[step(timeout = "30s")]
    async fn read_stock_levels(&self) -> StepResult {
        latency(300).await;
        self.ledger.record("inventory", "read the stock levels of 4 SKUs");
        Ok(json!({ "skus": 4 }).into())
    }

    #[step(after = read_stock_levels)]
    async fn publish_levels(&self, ctx: &Context) -> StepResult {
        latency(120).await;
        self.ledger.record("search", format!("published {} stock levels", ctx.get::<u32>("skus")?));
        Ok(Outcome::Done)
    }
}

/// The simulated world every workflow of the demo runs against.
#[derive(Debug)]
pub(crate) struct World {
    shop: Arc<Shop>,
    platform: Arc<DataPlatform>,
    accounts: Arc<Accounts>,
    images: Arc<ImageService>,
    tenants: Arc<Platform>,
    stock: Arc<Ledger>,
}

impl World {
    /// Fresh simulated services, without faults until the loops ask for some.
    pub(crate) fn new() -> World {
        World {
            shop: Shop::new(ShopFaults::default()),
            platform: DataPlatform::new(PlatformFaults::default()),
            accounts: Accounts::new(AccountFaults::default()),
            images: ImageService::new(ImageFaults::default()),
            tenants: Platform::new(TenantFaults::default()),
            stock: Ledger::new(),
        }
    }

    /// The engine's builder with every workflow of the demo registered. Waits are
    /// shortened so that something happens on each page within seconds: sessions
    /// drain in 1 s rounds, snoozes last 2 s, verification links expire after 10 min.
    pub(crate) fn register(&self, builder: sagaflow::EngineBuilder) -> sagaflow::EngineBuilder {
        let mut migration = TenantMigration::new(self.tenants.clone());
        migration.drain_timeout = Duration::from_secs(1);
        migration.drain_retry = Duration::from_secs(2);
        let mut onboarding = UserOnboarding::new(self.accounts.clone());
        onboarding.verification_window = Duration::from_secs(600);
        builder
            .workflow(OrderProcessing { shop: self.shop.clone() })
            .workflow(DailyDataPipeline { platform: self.platform.clone() })
            .workflow(onboarding)
            .workflow(ImageProcessing { images: self.images.clone() })
            .workflow(migration)
            .workflow(StockSync { ledger: self.stock.clone() })
    }
}

/// Resumes `id` once it awaits, after `after`.
async fn resume_later(engine: Engine, id: ExecutionId, after: Duration, context: serde_json::Value) {
    loop {
        match engine.get_state(id).await {
            Ok(s) if s.status == Status::Awaiting => break,
            Ok(s) if s.status.is_terminal() => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return,
        }
    }
    tokio::time::sleep(after).await;
    let _ = engine.resume(id, context).await;
}

/// Starts the loops; they run until the returned set is dropped or aborted.
/// `pace` stretches the pauses between executions (1.0 for the program).
pub(crate) fn run_loops(engine: &Engine, world: &World, pace: f64) -> JoinSet<()> {
    let every = move |ms: u64| Duration::from_millis((ms as f64 * pace) as u64);
    let mut loops = JoinSet::new();

    let (e, shop) = (engine.clone(), world.shop.clone());
    loops.spawn(async move {
        for n in 1u32.. {
            let id = format!("ord-{}", 2000 + n);
            shop.add_order(Shop::sample_order(&id));
            let faults = match n % 6 {
                1 => ShopFaults { gateway_timeouts: 2, ..ShopFaults::default() },
                2 => ShopFaults { decline_card: true, ..ShopFaults::default() },
                3 => ShopFaults { fraud: Verdict::Review, ..ShopFaults::default() },
                4 => ShopFaults { carrier_down: true, sms_down: true, ..ShopFaults::default() },
                5 => ShopFaults { fraud: Verdict::Review, sms_down: true, ..ShopFaults::default() },
                0 if n % 12 == 0 => ShopFaults { fraud: Verdict::Reject, ..ShopFaults::default() },
                _ => ShopFaults::default(),
            };
            shop.faults.set(id.clone(), faults);
            let Ok(exec) = e.start("order_processing", json!({ "order_id": id })).await else { return };
            // The fraud team clears reviews after a while, except the first few,
            // which stay waiting for them.
            if faults.fraud == Verdict::Review && n > 12 {
                tokio::spawn(resume_later(
                    e.clone(),
                    exec,
                    Duration::from_secs(8),
                    json!({ "fraud_check": "passed_review", "reviewed_by": "fraud-team@example.com" }),
                ));
            }
            tokio::time::sleep(every(4_000)).await;
        }
    });

    let (e, platform) = (engine.clone(), world.platform.clone());
    loops.spawn(async move {
        for n in 1i64.. {
            let date = chrono::Utc::now().date_naive() - chrono::Duration::days(n);
            let faults = match n % 4 {
                1 => PlatformFaults { warehouse_drops: 1, ..PlatformFaults::default() },
                3 => PlatformFaults { orphan_sales: 2, ..PlatformFaults::default() },
                _ => PlatformFaults::default(),
            };
            platform.faults.set(date.to_string(), faults);
            if e.start("daily_data_pipeline", json!({ "date": date })).await.is_err() {
                return;
            }
            tokio::time::sleep(every(15_000)).await;
        }
    });

    let (e, accounts) = (engine.clone(), world.accounts.clone());
    loops.spawn(async move {
        for n in 1u32.. {
            let email = format!("user{n}@example.com");
            accounts
                .faults
                .set(email.clone(), AccountFaults { storage_full: n % 5 == 2, welcome_mail_down: n % 5 == 3 });
            let input = json!({ "email": email, "name": format!("User {n}"), "password": "demo", "source": "ads" });
            let Ok(exec) = e.start("user_onboarding", input).await else { return };
            // Every fifth user never clicks the link (the execution keeps waiting).
            if n % 5 != 0 {
                tokio::spawn(resume_later(e.clone(), exec, Duration::from_secs(3), json!({ "email_verified": true })));
            }
            tokio::time::sleep(every(6_000)).await;
        }
    });

    let (e, images) = (engine.clone(), world.images.clone());
    loops.spawn(async move {
        let ids = |list: &[u32]| list.iter().map(|i| format!("img{i:02}")).collect();
        for n in 1u32.. {
            let batch = format!("batch-{n:03}");
            let faults = ImageFaults {
                corrupt: if n % 2 == 0 { ids(&[3, 11]) } else { Default::default() },
                flaky_uploads: ids(&[n % 12 + 1, (n * 5) % 12 + 1]),
                upload_down: n % 7 == 0,
            };
            images.faults.set(batch.clone(), faults);
            if e.start("batch_image_processing", json!({ "batch_id": batch, "batch_size": 12 })).await.is_err() {
                return;
            }
            tokio::time::sleep(every(20_000)).await;
        }
    });

    let (e, tenants) = (engine.clone(), world.tenants.clone());
    loops.spawn(async move {
        for n in 1u32.. {
            let tenant = format!("tenant-{n:03}");
            let faults = TenantFaults { active_sessions: if n % 3 == 1 { 3 } else { 0 }, corrupt_rows: n % 4 == 3 };
            tenants.faults.set(tenant.clone(), faults);
            let input = json!({ "tenant_id": tenant, "migration_version": "2025_06_01" });
            if e.start("tenant_migration", input).await.is_err() {
                return;
            }
            tokio::time::sleep(every(12_000)).await;
        }
    });
    loops
}
