//! SPEC's multi-tenant data migration, run against a simulated platform on a
//! SQLite file, with a live view of the drain rounds (snoozes) and of the
//! rollback when validation fails.
//!
//! SPEC's drain step waits up to 5 minutes per round and snoozes a minute between
//! rounds; this program shortens both (1 s and 2 s) so that it ends in seconds.
//!
//! ```sh
//! cargo run --example tenant_migration                      # backed up, migrated, unlocked
//! cargo run --example tenant_migration -- --active-sessions # users still logged in: snoozes
//! cargo run --example tenant_migration -- --corrupt-rows    # validation fails: unlock, restore, page
//! ```

#[path = "support/mod.rs"]
mod support;
#[path = "scenarios/tenant_migration.rs"]
mod tenant_migration;

use std::time::Duration;

use sagaflow::prelude::*;

use support::live::LiveView;
use support::run::{Database, Flags, print_outcome};
use tenant_migration::{Platform, TenantFaults, TenantMigration};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(
        "tenant_migration",
        "Migrates tenant acme-corp to schema 2025_06_01 on a simulated platform.",
        &[
            ("--active-sessions", "three users are still logged in: the drain step snoozes until they leave"),
            ("--corrupt-rows", "the migrated data fails validation: the tenant is unlocked and restored"),
        ],
    )?;
    let platform = Platform::new(TenantFaults {
        active_sessions: if flags.has("--active-sessions") { 3 } else { 0 },
        corrupt_rows: flags.has("--corrupt-rows"),
    });
    let mut migration = TenantMigration::new(platform.clone());
    migration.drain_timeout = Duration::from_secs(1);
    migration.drain_retry = Duration::from_secs(2);

    let db = Database::for_program("tenant_migration")?;
    println!("store: {} (simulated platform)\n", db.url());
    let engine = Engine::builder().store_url(db.url()).workflow(migration).build().await?;

    let view = LiveView::watch(&engine);
    let printer = view.printer();
    platform.ledger.observe(move |entry| printer.service(entry));
    let id = engine
        .start("tenant_migration", json!({ "tenant_id": "acme-corp", "migration_version": "2025_06_01" }))
        .await?;
    let state = engine.wait(id).await?;
    view.finish().await;

    print_outcome(&engine, &state).await?;
    engine.shutdown().await;
    Ok(())
}
