//! The dashboard, served over a SQLite store while SPEC's five workflows run on a
//! loop against their simulated services: orders that ship, retry, get declined or
//! wait for the fraud team; nightly ETL runs, some failing validation; signups, some
//! never verified; image batches with flaky uploads; tenant migrations that snooze
//! or roll back; and a stock sync scheduled every minute.
//!
//! ```sh
//! cargo run --example dashboard     # then open the printed URL; Ctrl-C stops it
//! ```
//!
//! It listens on 127.0.0.1:3000 (`SAGAFLOW_DASHBOARD_ADDR` chooses another
//! address; port 0 picks a free one). Every page needs the bearer token it prints
//! (`SAGAFLOW_DASHBOARD_TOKEN` chooses it); the browser asks for it once.

#[path = "../scenarios/batch_images.rs"]
mod batch_images;
mod demo;
#[path = "../scenarios/etl_pipeline.rs"]
mod etl_pipeline;
#[path = "../scenarios/order_processing.rs"]
mod order_processing;
#[path = "../support/mod.rs"]
mod support;
#[path = "../scenarios/tenant_migration.rs"]
mod tenant_migration;
#[path = "../scenarios/user_onboarding.rs"]
mod user_onboarding;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use sagaflow::Event;
use sagaflow::dashboard::Dashboard;
use sagaflow::prelude::*;

use support::run::Database;

/// A token nobody can guess: two words of the standard library's per-process
/// random hash keys.
fn random_token() -> String {
    let word = || RandomState::new().build_hasher().finish();
    format!("{:016x}{:016x}", word(), word())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Database::for_program("dashboard")?;
    let world = demo::World::new();
    let engine = world.register(Engine::builder().store_url(db.url())).build().await?;
    let token = std::env::var("SAGAFLOW_DASHBOARD_TOKEN").unwrap_or_else(|_| random_token());

    let dashboard = Dashboard::new(engine.clone()).bearer_token(&token)?;
    let app = axum::Router::new().nest("/workflows", dashboard.router());
    let addr = std::env::var("SAGAFLOW_DASHBOARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let url = format!("http://{}/workflows", listener.local_addr()?);
    println!("sagaflow dashboard: {url}");
    println!("bearer token (the page asks for it once): {token}");
    println!("store: {} (the services are simulations)", db.url());
    println!("Ctrl-C stops it.\n");

    // One line per ended execution.
    let mut events = engine.subscribe();
    let log = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::WorkflowStop { workflow_name, execution_id, state, duration, .. } = event {
                println!("{workflow_name:<24} {execution_id}  {state:<13} {:>8.2} s", duration.as_secs_f64());
            }
        }
    });
    let mut loops = demo::run_loops(&engine, &world, 1.0);

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("\nstopping: no new executions; waiting for the engine to stop");
    loops.abort_all();
    while loops.join_next().await.is_some() {}
    engine.shutdown().await;
    log.abort();
    println!("stopped");
    Ok(())
}
