//! SPEC's "Multi-Tenant Data Migration": back the tenant up, put it in
//! maintenance mode, wait for its sessions to drain (snoozing while some remain),
//! migrate, validate, unlock and tell the tenant's admins. A failed validation
//! unlocks the tenant and restores the backup (the rollbacks), then
//! `rollback_migration` pages the platform team.
//!
//! Backups, tenants, sessions, the migration runner, mail and PagerDuty are
//! simulations (see [`Platform`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow::prelude::*;

use super::support::sim::{Faults, Ledger, latency};

/// Failures and conditions the simulated platform is told to produce.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TenantFaults {
    /// Users still logged in; each drain round logs this many out at most.
    pub(crate) active_sessions: u32,
    /// The migrated data fails validation.
    pub(crate) corrupt_rows: bool,
}

/// The simulated platform.
#[derive(Debug)]
pub(crate) struct Platform {
    /// What the services did.
    pub(crate) ledger: Arc<Ledger>,
    /// The conditions to produce, per tenant.
    pub(crate) faults: Faults<TenantFaults>,
    /// Whether the tenant is in maintenance mode now.
    pub(crate) maintenance: Mutex<bool>,
}

impl Platform {
    /// A platform with these conditions.
    pub(crate) fn new(faults: TenantFaults) -> Arc<Platform> {
        Arc::new(Platform { ledger: Ledger::new(), faults: Faults::new(faults), maintenance: Mutex::new(false) })
    }

    async fn create_backup(&self, tenant: &str) -> (String, String) {
        latency(900).await;
        let id = self.ledger.next_id("bak");
        let path = format!("s3://backups/{tenant}/{id}.dump");
        self.ledger.record("backups", format!("backed up {tenant} to {path}"));
        (id, path)
    }

    async fn restore(&self, backup: &str) {
        latency(700).await;
        self.ledger.record("backups", format!("restored {backup}"));
    }

    async fn set_maintenance_mode(&self, tenant: &str, on: bool) {
        latency(120).await;
        *self.maintenance.lock().unwrap() = on;
        self.ledger.record("tenants", format!("maintenance mode {} for {tenant}", if on { "on" } else { "off" }));
    }

    /// Waits up to `timeout` for the tenant's sessions to end: the platform asks
    /// the logged-in users to leave, and half of them (at least one) do within a
    /// round.
    async fn wait_for_drain(&self, tenant: &str, timeout: Duration) -> bool {
        let left = self.faults.with(tenant, |f| {
            f.active_sessions -= f.active_sessions.div_ceil(2);
            f.active_sessions
        });
        if left == 0 {
            latency(150).await;
            self.ledger.record("sessions", format!("{tenant} has no active session"));
            true
        } else {
            tokio::time::sleep(timeout).await;
            self.ledger.record("sessions", format!("{tenant} still has {left} active session(s)"));
            false
        }
    }

    async fn migrate(&self, tenant: &str, version: &str) {
        latency(1200).await;
        self.ledger.record("migration", format!("migrated {tenant} to schema {version} (18,412 rows)"));
    }

    async fn validate(&self, tenant: &str) -> Result<serde_json::Value, Vec<String>> {
        latency(400).await;
        if self.faults.of(tenant).corrupt_rows {
            return Err(vec![
                "invoices: 3 rows reference a missing customer".into(),
                "projects.owner_id: 1 NULL in a NOT NULL column".into(),
            ]);
        }
        self.ledger.record("migration", format!("validated {tenant}: row counts and checksums match"));
        Ok(json!({ "tables": 14, "rows": 18_412, "checksums": "match" }))
    }

    async fn mail_admins(&self, tenant: &str, text: &str) {
        latency(150).await;
        self.ledger.record("mailer", format!("to the admins of {tenant}: {text}"));
    }

    async fn page(&self, team: &str, text: &str) {
        latency(90).await;
        self.ledger.record("pagerduty", format!("paged {team}: {text}"));
    }
}

/// The workflow, bound to its platform. `drain_timeout` (how long one drain round
/// waits) and `drain_retry` (how long it snoozes between rounds) are SPEC's 5 and
/// 1 minutes unless changed.
#[derive(Debug)]
pub(crate) struct TenantMigration {
    /// The services the steps call.
    pub(crate) platform: Arc<Platform>,
    /// How long one drain round waits for the sessions to end.
    pub(crate) drain_timeout: Duration,
    /// How long the drain step snoozes before the next round.
    pub(crate) drain_retry: Duration,
}

impl TenantMigration {
    /// The workflow with SPEC's drain timings.
    pub(crate) fn new(platform: Arc<Platform>) -> TenantMigration {
        TenantMigration { platform, drain_timeout: Duration::from_secs(300), drain_retry: Duration::from_secs(60) }
    }
}

#[workflow(name = "tenant_migration", timeout = "4h", on_failure = rollback_migration)]
impl TenantMigration {
    #[step(rollback = restore_backup)]
    async fn create_backup(&self, ctx: &Context) -> StepResult {
        let (id, path) = self.platform.create_backup(&ctx.get::<String>("tenant_id")?).await;
        Ok(json!({ "backup_id": id, "backup_path": path }).into())
    }

    #[step(after = create_backup, rollback = unlock_tenant)]
    async fn lock_tenant(&self, ctx: &Context) -> StepResult {
        self.platform.set_maintenance_mode(&ctx.get::<String>("tenant_id")?, true).await;
        Ok(json!({ "locked_at": Utc::now() }).into())
    }

    // One drain round waits up to 5 minutes, as long as the default step timeout,
    // so this step has a longer one.
    #[step(after = lock_tenant, timeout = "10m")]
    async fn wait_for_active_sessions(&self, ctx: &Context) -> StepResult {
        if self.platform.wait_for_drain(&ctx.get::<String>("tenant_id")?, self.drain_timeout).await {
            Ok(json!({ "sessions_drained": true }).into())
        } else {
            // Try again later, without spending a retry.
            Ok(Outcome::snooze(self.drain_retry))
        }
    }

    #[step(after = wait_for_active_sessions, timeout = "2h")]
    async fn migrate_data(&self, ctx: &Context) -> StepResult {
        self.platform.migrate(&ctx.get::<String>("tenant_id")?, &ctx.get::<String>("migration_version")?).await;
        Ok(json!({ "migration_complete": true }).into())
    }

    #[step(after = migrate_data)]
    async fn validate_migration(&self, ctx: &Context) -> StepResult {
        match self.platform.validate(&ctx.get::<String>("tenant_id")?).await {
            Ok(report) => Ok(json!({ "validation_report": report }).into()),
            Err(issues) => Err(StepError::new("validation_failed", format!("{} problems found", issues.len()))
                .with_details(json!({ "issues": issues }))
                .permanent()),
        }
    }

    #[step(after = validate_migration)]
    async fn unlock_tenant(&self, ctx: &Context) -> StepResult {
        self.platform.set_maintenance_mode(&ctx.get::<String>("tenant_id")?, false).await;
        Ok(json!({ "unlocked_at": Utc::now() }).into())
    }

    #[step(after = unlock_tenant)]
    async fn notify_stakeholders(&self, ctx: &Context) -> StepResult {
        let locked: DateTime<Utc> = ctx.get("locked_at")?;
        let unlocked: DateTime<Utc> = ctx.get("unlocked_at")?;
        let report: serde_json::Value = ctx.get("validation_report")?;
        let text = format!(
            "migration complete after {} minute(s) of maintenance; validation: {report}",
            (unlocked - locked).num_minutes()
        );
        self.platform.mail_admins(&ctx.get::<String>("tenant_id")?, &text).await;
        Ok(Outcome::Done)
    }

    // Rollbacks.
    async fn restore_backup(&self, ctx: &Context) -> StepResult {
        self.platform.restore(&ctx.get::<String>("backup_id")?).await;
        Ok(Outcome::Done)
    }

    async fn rollback_migration(&self, ctx: &Context) -> StepResult {
        let tenant: String = ctx.get("tenant_id")?;
        self.platform.set_maintenance_mode(&tenant, false).await;
        self.notify_failure(&tenant).await;
        Ok(Outcome::Done)
    }

    async fn notify_failure(&self, tenant: &str) {
        self.platform.page("platform_team", &format!("Migration failed for tenant {tenant}")).await;
    }
}
