//! A workflow using most options compiles without a single warning.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]

use std::time::Duration;

use sagaflow::prelude::*;

/// A workflow holding a resource.
pub struct Onboarding {
    /// A stand-in for a connection pool.
    pub pool: Vec<String>,
}

#[workflow(
    name = "user_onboarding",
    timeout = "7d",
    step_timeout = "10m",
    on_failure = cleanup_failed_signup,
    on_success = signed_up,
    on_cancel = cancelled,
    on_step_error = step_failed,
    dead_letter,
    dead_letter_ttl = "30d",
    tags = ["critical"],
    metadata(owner = "growth"),
    step_concurrency = 8,
    schedule(cron = "0 6 * * *", timezone = "UTC"),
    on_event = "user.signed_up"
)]
impl Onboarding {
    #[step(rollback = delete_account, retry_backoff = exponential, retry_on = [timeout, connection_error])]
    async fn create_account(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        Ok(json!({ "user_id": self.pool.len(), "email": email }).into())
    }

    #[step(after = create_account, timeout = "30s", max_retries = 5, retry_backoff = backoff)]
    async fn send_verification_email(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = send_verification_email, await_approval, on_timeout = verification_expired)]
    async fn await_email_verification(&self) -> StepResult {
        Ok(Outcome::await_for("24h"))
    }

    #[step(after = await_email_verification, group = setup, when = email_verified, timeout = setup_timeout)]
    fn create_default_settings(ctx: Context) -> Result<(), StepError> {
        let _ = ctx;
        Ok(())
    }

    #[graft(after = await_email_verification, group = setup)]
    async fn import_contacts(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::expand([]))
    }

    #[subworkflow(send_welcome, after_group = setup, circuit_breaker = mailer)]
    fn welcome(&self, ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "recipient": ctx.get::<String>("email")? }))
    }

    #[step(after_graft = import_contacts, after_any = [welcome], on_error = continue)]
    async fn create_trial_subscription(&self) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "trial": true }))
    }

    fn email_verified(ctx: &Context) -> bool {
        ctx.get_or("email_verified", false)
    }

    fn setup_timeout(&self, _ctx: &Context) -> Duration {
        Duration::from_secs(60)
    }

    fn backoff(attempt: u32, base: Duration) -> Duration {
        base * attempt
    }

    async fn delete_account(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn verification_expired(&self) -> StepResult {
        Ok(json!({ "email_verified": false }).into())
    }

    async fn cleanup_failed_signup(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    fn signed_up(&self) -> Result<(), StepError> {
        Ok(())
    }

    fn cancelled(&self, _ctx: &Context, _reason: &str) -> Result<(), StepError> {
        Ok(())
    }

    async fn step_failed(&self, _ctx: &Context, _step: &str, _error: &StepError, _attempt: u32) -> StepResult {
        Ok(Outcome::Done)
    }
}

/// A workflow without resources registers itself.
#[derive(Default)]
pub struct SendWelcome;

#[workflow(name = "send_welcome")]
impl SendWelcome {
    #[step]
    fn send(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "sent_to": ctx.get::<String>("recipient")? }))
    }
}

fn main() {
    let def = Onboarding { pool: Vec::new() }.into_definition().unwrap();
    assert_eq!(def.steps().len(), 7);
    assert_eq!(Onboarding::NAME, "user_onboarding");
    assert!(sagaflow::registrations().iter().any(|r| r.name == "send_welcome"));
}
