//! SPEC's daily ETL pipeline, run once now against simulated databases and
//! destinations on a SQLite file, with a live view, the execution's report and its
//! Mermaid diagram; its 2 AM schedule is armed and its next fire times shown.
//!
//! ```sh
//! cargo run --example etl_pipeline                      # extract, transform, load, report
//! cargo run --example etl_pipeline -- --flaky-warehouse # the warehouse drops twice (retries)
//! cargo run --example etl_pipeline -- --orphan-sales    # validation fails; the data team is paged
//! ```

#[path = "scenarios/etl_pipeline.rs"]
mod etl_pipeline;
#[path = "support/mod.rs"]
mod support;

use sagaflow::prelude::*;

use etl_pipeline::{DailyDataPipeline, DataPlatform, PlatformFaults};
use support::live::LiveView;
use support::run::{Database, Flags, print_outcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(
        "etl_pipeline",
        "Runs yesterday's ETL against a simulated data platform.",
        &[
            ("--flaky-warehouse", "the warehouse drops the connection twice (the load is retried)"),
            ("--orphan-sales", "three sales have no customer: validation fails and pages the data team"),
        ],
    )?;
    let platform = DataPlatform::new(PlatformFaults {
        orphan_sales: if flags.has("--orphan-sales") { 3 } else { 0 },
        warehouse_drops: if flags.has("--flaky-warehouse") { 2 } else { 0 },
    });

    let db = Database::for_program("etl_pipeline")?;
    println!("store: {} (simulated data platform)\n", db.url());
    let engine = Engine::builder()
        .store_url(db.url())
        .workflow(DailyDataPipeline { platform: platform.clone() })
        .build()
        .await?;
    for schedule in engine.schedules() {
        let def = engine.definition(&schedule.workflow).expect("a scheduled workflow is registered");
        let next: Vec<String> = def.triggers().schedules[schedule.index]
            .upcoming(chrono::Utc::now())
            .take(3)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .collect();
        println!("schedule {}: {} — next runs {}", schedule.key, schedule.schedule, next.join(", "));
    }
    println!("running it once now instead of waiting for 2 AM:\n");

    let view = LiveView::watch(&engine);
    let printer = view.printer();
    platform.ledger.observe(move |entry| printer.service(entry));
    let id = engine.start("daily_data_pipeline", json!({})).await?;
    let state = engine.wait(id).await?;
    view.finish().await;

    print_outcome(&engine, &state).await?;
    engine.shutdown().await;
    Ok(())
}
