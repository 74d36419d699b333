//! A small user-onboarding workflow: create the account, then set up the profile
//! and send the welcome email in parallel, then finish. Each step prints as it
//! runs; the final context is printed at the end.
//!
//! It runs on SQLite, the embedded durable store: the file `quickstart.db` next to
//! this example is created on the first run and keeps every execution's history
//! (and any execution a crash interrupted, which resumes on the next run).
//!
//! Run with `cargo run --example quickstart`.

use sagaflow::prelude::*;

async fn create_account(ctx: Context) -> StepResult {
    let email: String = ctx.get("email")?;
    println!("  create_account       creating an account for {email}");
    Ok(json!({ "user_id": 123 }).into())
}

async fn setup_profile(ctx: Context) -> StepResult {
    let user_id: u64 = ctx.get("user_id")?;
    println!("  setup_profile        profile for user {user_id}");
    Ok(json!({ "profile_id": 456 }).into())
}

async fn send_welcome_email(ctx: Context) -> StepResult {
    let email: String = ctx.get("email")?;
    println!("  send_welcome_email   welcome mail to {email}");
    Ok(json!({ "welcome_sent": true }).into())
}

async fn activate(ctx: Context) -> StepResult {
    println!("  activate             user {} is ready", ctx.get::<u64>("user_id")?);
    Ok(json!({ "active": true }).into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let onboarding = Workflow::new("user_onboarding")
        .step("create_account", create_account)
        .step_with("setup_profile", setup_profile, Step::opts().after("create_account"))
        .step_with("send_welcome_email", send_welcome_email, Step::opts().after("create_account"))
        .step_with("activate", activate, Step::opts().after(["setup_profile", "send_welcome_email"]))
        .build()?;

    let database = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.db");
    let engine = Engine::builder().store_url(format!("sqlite://{database}")).register(onboarding).build().await?;

    println!("starting user_onboarding");
    let id = engine.start("user_onboarding", json!({ "email": "alice@example.com", "name": "Alice" })).await?;
    let state = engine.wait(id).await?;

    println!("execution {id} ended: {}", state.status);
    println!("final context:\n{}", serde_json::to_string_pretty(&state.context)?);
    let earlier = engine.history(&Default::default()).await?.len();
    println!("{earlier} executions recorded in {database}");
    engine.shutdown().await;
    Ok(())
}
