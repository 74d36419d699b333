//! SPEC's "User Onboarding with Verification": create the account, mail a
//! verification link, wait (up to a day) for the user to click it, then set up
//! settings, a workspace and storage in parallel, grant a 14-day trial and start
//! the welcome series. A link that expires, or a setup that fails, deletes the
//! account (its rollback) and marks the signup failed (`cleanup_failed_signup`).
//!
//! Users, tokens, mail, settings, workspaces, storage, subscriptions and analytics
//! are simulations (see [`Accounts`]).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaflow::AwaitRequest;
use sagaflow::prelude::*;

use super::support::sim::{Faults, Ledger, latency};

/// Failures the simulated services are told to produce.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AccountFaults {
    /// The storage service has no capacity left.
    pub(crate) storage_full: bool,
    /// The mail provider refuses the welcome mail.
    pub(crate) welcome_mail_down: bool,
}

/// The simulated account services.
#[derive(Debug)]
pub(crate) struct Accounts {
    /// What the services did.
    pub(crate) ledger: Arc<Ledger>,
    /// The failures to produce, per e-mail address.
    pub(crate) faults: Faults<AccountFaults>,
}

impl Accounts {
    /// Services with these faults.
    pub(crate) fn new(faults: AccountFaults) -> Arc<Accounts> {
        Arc::new(Accounts { ledger: Ledger::new(), faults: Faults::new(faults) })
    }
}

/// A stand-in for a password hash, so the simulation stores no password. It is not
/// a password hash: a real service uses bcrypt or argon2.
fn simulated_password_hash(password: &str) -> String {
    let mut h = DefaultHasher::new();
    password.hash(&mut h);
    format!("sim${:016x}", h.finish())
}

/// The workflow, bound to its services. `verification_window` is how long the
/// verification link stays valid: SPEC's 24 hours unless changed.
#[derive(Debug)]
pub(crate) struct UserOnboarding {
    /// The services the steps call.
    pub(crate) accounts: Arc<Accounts>,
    /// How long the user has to click the link.
    pub(crate) verification_window: Duration,
}

impl UserOnboarding {
    /// The workflow with SPEC's 24-hour verification window.
    pub(crate) fn new(accounts: Arc<Accounts>) -> UserOnboarding {
        UserOnboarding { accounts, verification_window: Duration::from_secs(24 * 3600) }
    }
}

#[workflow(name = "user_onboarding", timeout = "7d", on_failure = cleanup_failed_signup)]
impl UserOnboarding {
    // Step 1: create the account.
    #[step(rollback = delete_account)]
    async fn create_account(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        let name: String = ctx.get("name")?;
        let password_hash = simulated_password_hash(&ctx.get::<String>("password")?);
        latency(180).await;
        let user_id = self.accounts.ledger.next_id("usr");
        self.accounts.ledger.record("users", format!("created {user_id} for {email}"));
        Ok(json!({
            "user_id": user_id,
            "user": { "id": user_id, "email": email, "name": name, "password_hash": password_hash },
        })
        .into())
    }

    // Step 2: send the verification email.
    #[step(after = create_account)]
    async fn send_verification_email(&self, ctx: &Context) -> StepResult {
        let user_id: String = ctx.get("user_id")?;
        let token = format!("verify-{user_id}-{}", ctx.execution_id().to_string().split('-').next().unwrap_or(""));
        latency(220).await;
        self.accounts.ledger.record("mailer", format!("sent the verification link to {}", ctx.get::<String>("email")?));
        Ok(json!({ "verification_token": token }).into())
    }

    // Step 3: wait for the click (human in the loop); `resume` with
    // `{"email_verified": true}` when the user clicks the link.
    #[step(after = send_verification_email, await_approval = true, on_timeout = resend_or_expire)]
    async fn await_email_verification(&self, ctx: &Context) -> StepResult {
        Ok(Outcome::await_with(
            AwaitRequest::timeout(self.verification_window).notify(json!({ "email": ctx.get::<String>("email")? })),
        ))
    }

    // Step 4: set up the profile, in parallel, for verified users.
    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn create_default_settings(&self, ctx: &Context) -> StepResult {
        latency(90).await;
        let id = self.accounts.ledger.next_id("set");
        self.accounts.ledger.record("settings", format!("created defaults {id} for {}", ctx.get::<String>("user_id")?));
        Ok(json!({ "settings_id": id }).into())
    }

    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn create_default_workspace(&self, ctx: &Context) -> StepResult {
        latency(260).await;
        let id = self.accounts.ledger.next_id("wsp");
        self.accounts.ledger.record("workspaces", format!("created {id} for {}", ctx.get::<String>("user_id")?));
        Ok(json!({ "workspace_id": id }).into())
    }

    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn provision_storage(&self, ctx: &Context) -> StepResult {
        latency(400).await;
        let user_id: String = ctx.get("user_id")?;
        if self.accounts.faults.of(&ctx.get::<String>("email")?).storage_full {
            return Err(StepError::new("storage_unavailable", "no storage capacity left in the region").permanent());
        }
        let bucket = format!("user-{user_id}");
        self.accounts.ledger.record("storage", format!("provisioned bucket {bucket}"));
        Ok(json!({ "storage_bucket": bucket }).into())
    }

    // Step 5: grant the trial.
    #[step(after_group = setup)]
    async fn create_trial_subscription(&self, ctx: &Context) -> StepResult {
        latency(150).await;
        let id = self.accounts.ledger.next_id("sub");
        let ends = Utc::now() + chrono::Duration::days(14);
        self.accounts
            .ledger
            .record("billing", format!("started a 14-day trial {id} for {}", ctx.get::<String>("user_id")?));
        Ok(json!({ "subscription_id": id, "trial_ends_at": ends }).into())
    }

    // Step 6: the welcome series; failures here do not undo the signup.
    #[step(after = create_trial_subscription, on_error = continue)]
    async fn send_welcome_email(&self, ctx: &Context) -> StepResult {
        latency(200).await;
        let email: String = ctx.get("email")?;
        if self.accounts.faults.of(&email).welcome_mail_down {
            return Err(StepError::new("smtp_unavailable", "the mail provider refused the connection").permanent());
        }
        let ends: chrono::DateTime<Utc> = ctx.get("trial_ends_at")?;
        self.accounts
            .ledger
            .record("mailer", format!("sent the welcome mail to {email} (trial ends {})", ends.date_naive()));
        Ok(Outcome::Done)
    }

    #[step(after = create_trial_subscription, on_error = continue)]
    async fn schedule_onboarding_emails(&self, ctx: &Context) -> StepResult {
        latency(80).await;
        let series =
            ["day 1: getting_started", "day 3: first_project", "day 7: power_features", "day 12: trial_ending"];
        self.accounts
            .ledger
            .record("sequences", format!("scheduled {} for {}", series.join(", "), ctx.get::<String>("user_id")?));
        Ok(Outcome::Done)
    }

    // Step 7: analytics.
    #[step(after = send_welcome_email, on_error = continue)]
    async fn track_signup(&self, ctx: &Context) -> StepResult {
        latency(40).await;
        let source = ctx.get_opt::<String>("source")?.unwrap_or_else(|| "organic".into());
        let referrer = ctx.get_opt::<String>("referrer")?.unwrap_or_else(|| "-".into());
        self.accounts.ledger.record(
            "analytics",
            format!("user_signup {} source={source} referrer={referrer}", ctx.get::<String>("user_id")?),
        );
        Ok(Outcome::Done)
    }

    fn email_verified(ctx: &Context) -> bool {
        ctx.get_or("email_verified", false)
    }

    // The link expired: the user is told, and the signup fails (which deletes the
    // account and runs `cleanup_failed_signup`).
    async fn resend_or_expire(&self, ctx: &Context) -> StepResult {
        let email: String = ctx.get("email")?;
        latency(150).await;
        self.accounts.ledger.record("mailer", format!("sent `your link expired, please sign up again` to {email}"));
        Err(StepError::new("verification_expired", format!("{email} did not verify within the window")).permanent())
    }

    // Rollback and cleanup.
    async fn delete_account(&self, ctx: &Context) -> StepResult {
        latency(120).await;
        self.accounts.ledger.record("users", format!("hard-deleted {}", ctx.get::<String>("user_id")?));
        Ok(Outcome::Done)
    }

    async fn cleanup_failed_signup(&self, ctx: &Context) -> StepResult {
        if let Some(user_id) = ctx.get_opt::<String>("user_id")? {
            latency(60).await;
            self.accounts.ledger.record("users", format!("marked the signup of {user_id} failed"));
        }
        Ok(Outcome::Done)
    }
}
