//! SPEC's e-commerce order processing, run against simulated services (payments,
//! inventory, shipping, mail, SMS, fraud check) on a SQLite file, with a live view
//! of every step, retry, wait and compensation, and the execution's report and
//! Mermaid diagram at the end.
//!
//! ```sh
//! cargo run --example order_processing                   # the order ships
//! cargo run --example order_processing -- --decline-card # the bank says no: stock released
//! cargo run --example order_processing -- --carrier-down # refund, void, release, mail the customer
//! cargo run --example order_processing -- --help         # every flag
//! ```

#[path = "scenarios/order_processing.rs"]
mod order_processing;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use sagaflow::prelude::*;

use order_processing::{OrderProcessing, Shop, ShopFaults, Verdict};
use support::live::LiveView;
use support::run::{Database, Flags, print_outcome, resume_when_awaiting};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(
        "order_processing",
        "Processes order ord-1001 against simulated shop services.",
        &[
            ("--fraud-review", "the fraud service asks for a review; the fraud team approves after 2 s"),
            ("--fraud-reject", "the fraud service rejects the order"),
            ("--decline-card", "the bank declines the card (the stock reservation is released)"),
            ("--flaky-gateway", "the payment gateway times out twice before answering (retries)"),
            ("--out-of-stock", "the warehouse has none left (the card authorization is voided)"),
            ("--carrier-down", "the carrier refuses the shipment after the payment was captured"),
            ("--sms-down", "the SMS provider fails (on_error = continue: the order still completes)"),
        ],
    )?;
    let shop = Shop::new(ShopFaults {
        fraud: if flags.has("--fraud-reject") {
            Verdict::Reject
        } else if flags.has("--fraud-review") {
            Verdict::Review
        } else {
            Verdict::Clear
        },
        decline_card: flags.has("--decline-card"),
        gateway_timeouts: if flags.has("--flaky-gateway") { 2 } else { 0 },
        out_of_stock: flags.has("--out-of-stock"),
        carrier_down: flags.has("--carrier-down"),
        sms_down: flags.has("--sms-down"),
    });

    let db = Database::for_program("order_processing")?;
    println!("store: {} (simulated services; nothing real is charged or shipped)\n", db.url());
    let engine = Engine::builder().store_url(db.url()).workflow(OrderProcessing { shop: shop.clone() }).build().await?;

    let view = LiveView::watch(&engine);
    let printer = view.printer();
    shop.ledger.observe(move |entry| printer.service(entry));
    let id = engine.start("order_processing", json!({ "order_id": "ord-1001" })).await?;
    // The fraud team, played by the program, clears a flagged order.
    let reviewer = resume_when_awaiting(
        &engine,
        id,
        Duration::from_secs(2),
        view.printer(),
        "the fraud team",
        json!({ "fraud_check": "passed_review", "reviewed_by": "fraud-team@example.com" }),
    );
    let state = engine.wait(id).await?;
    reviewer.abort();
    view.finish().await;

    print_outcome(&engine, &state).await?;
    let letters = engine.dead_letters().list(Some("order_processing")).await?;
    if !letters.is_empty() {
        println!("dead letters kept: {} (`engine.dead_letters().replay(id)` runs one again)", letters.len());
    }
    engine.shutdown().await;
    Ok(())
}
