//! A small user-onboarding workflow written with the attribute macros: create the
//! account, then set up the profile and send the welcome email in parallel, then
//! finish. Each step prints as it runs; the final context is printed at the end.
//!
//! It runs on SQLite, the embedded durable store: the file `quickstart.db` next to
//! this example is created on the first run and keeps every execution's history
//! (and any execution a crash interrupted, which resumes on the next run).
//!
//! Run with `cargo run --example quickstart`.

use sagaflow::prelude::*;

/// The workflow's value holds what its steps need (here a sender address; in a real
/// program a database pool or an HTTP client), reached through `&self`.
struct UserOnboarding {
    sender: String,
}

#[workflow(name = "user_onboarding", timeout = "1h")]
impl UserOnboarding {
    #[step]
    async fn create_account(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        println!("  create_account       creating an account for {email}");
        Ok(json!({ "user_id": 123 }).into())
    }

    #[step(after = create_account)]
    async fn setup_profile(&self, ctx: &Context) -> StepResult {
        let user_id: u64 = ctx.get("user_id")?;
        println!("  setup_profile        profile for user {user_id}");
        Ok(json!({ "profile_id": 456 }).into())
    }

    #[step(after = create_account, timeout = "30s", max_retries = 5)]
    async fn send_welcome_email(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        println!("  send_welcome_email   welcome mail from {} to {email}", self.sender);
        Ok(json!({ "welcome_sent": true }).into())
    }

    #[step(after = [setup_profile, send_welcome_email])]
    async fn activate(&self, ctx: &Context) -> StepResult {
        println!("  activate             user {} is ready", ctx.get::<u64>("user_id")?);
        Ok(json!({ "active": true }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let onboarding = UserOnboarding { sender: "welcome@example.com".into() };
    // The embedded, durable default: one SQLite file next to this example,
    // created on the first run.
    let database = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.db");
    let engine = Engine::builder().store_url(format!("sqlite://{database}")).workflow(onboarding).build().await?;

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
