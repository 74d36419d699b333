//! A small user-onboarding workflow written with the attribute macros: create the
//! account, then set up the profile and send the welcome email in parallel (a
//! group), then activate. The mail server drops the first connection, so the email
//! step is retried; a signup for a plan that does not exist fails at activation,
//! and the account is deleted again (a rollback). Each step prints as it runs.
//!
//! It runs on SQLite, the embedded durable store: the file `quickstart.db` next to
//! this example is created on the first run and keeps every execution's history
//! (and any execution a crash interrupted, which resumes on the next run).
//!
//! Run with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU32, Ordering};

use sagaflow::prelude::*;

/// The workflow's value holds what its steps need (here a sender address and a
/// stand-in for a flaky mail server; in a real program a database pool or an HTTP
/// client), reached through `&self`.
struct UserOnboarding {
    sender: String,
    mail_connections: AtomicU32,
}

#[workflow(name = "user_onboarding", timeout = "1h")]
impl UserOnboarding {
    #[step(rollback = delete_account)]
    async fn create_account(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        println!("  create_account       creating an account for {email}");
        Ok(json!({ "user_id": 123 }).into())
    }

    #[step(after = create_account, group = setup)]
    async fn setup_profile(&self, ctx: &Context) -> StepResult {
        let user_id: u64 = ctx.get("user_id")?;
        println!("  setup_profile        profile for user {user_id}");
        Ok(json!({ "profile_id": 456 }).into())
    }

    #[step(after = create_account, group = setup, timeout = "30s", max_retries = 3, retry_delay = "200ms")]
    async fn send_welcome_email(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        // The (simulated) mail server drops every other connection.
        if self.mail_connections.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            println!("  send_welcome_email   attempt {}: the mail server dropped the connection", ctx.attempt());
            return Err(StepError::new("connection_error", "connection reset by the mail server"));
        }
        println!("  send_welcome_email   attempt {}: welcome mail from {} to {email}", ctx.attempt(), self.sender);
        Ok(json!({ "welcome_sent": true }).into())
    }

    #[step(after_group = setup, max_retries = 0)]
    async fn activate(&self, ctx: &Context) -> StepResult {
        let plan: String = ctx.get("plan")?;
        if plan != "free" && plan != "pro" {
            println!("  activate             there is no plan `{plan}`");
            return Err(StepError::new("unknown_plan", format!("there is no plan `{plan}`")));
        }
        println!("  activate             user {} is ready on the {plan} plan", ctx.get::<u64>("user_id")?);
        Ok(json!({ "active": true }).into())
    }

    async fn delete_account(&self, ctx: &Context) -> StepResult {
        println!("  ↩ delete_account     undoing create_account for user {}", ctx.get::<u64>("user_id")?);
        Ok(Outcome::Done)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let onboarding = UserOnboarding { sender: "welcome@example.com".into(), mail_connections: AtomicU32::new(0) };
    // The embedded, durable default: one SQLite file next to this example,
    // created on the first run.
    let database = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.db");
    let engine = Engine::builder().store_url(format!("sqlite://{database}")).workflow(onboarding).build().await?;

    for (email, plan) in [("alice@example.com", "pro"), ("bob@example.com", "platinum")] {
        println!("starting user_onboarding for {email} ({plan} plan)");
        let id = engine.start("user_onboarding", json!({ "email": email, "plan": plan })).await?;
        let state = engine.wait(id).await?;
        println!("execution {id} ended: {}", state.status);
        if let Some(rollback) = &state.rollback {
            let failed = state.context.get("__error_step__").and_then(|s| s.as_str()).unwrap_or("-");
            println!("  failed at {failed}; compensated {:?}", rollback.compensated);
        } else {
            println!("  final context: {}", serde_json::to_string(&state.context)?);
        }
        println!();
    }
    let earlier = engine.history(&Default::default()).await?.len();
    println!("{earlier} executions recorded in {database}");
    engine.shutdown().await;
    Ok(())
}
