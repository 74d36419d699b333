//! Every option of `#[workflow]`, `#[step]`, `#[graft]` and `#[subworkflow]` maps to
//! the builder call it stands for: a workflow using all of them has the definition of
//! its hand-written builder version, including what snapshots do not show (policies,
//! schedules, breaker options, dynamic timeouts and custom backoffs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{BreakerOptions, Misfire, Schedule, Timeout, WorkflowDef};

/// Not `Default` (it holds a resource), so it does not register itself.
pub struct Everything {
    pub log: Arc<Mutex<Vec<String>>>,
}

#[workflow(
    name = "every_option",
    timeout = "2h",
    max_retries = 2,
    retry_delay = "10s",
    retry_backoff = linear,
    step_timeout = "10m",
    step_max_retries = 4,
    step_retry_delay = "2s",
    on_failure = handle_failure,
    on_success = handle_success,
    on_cancel = handle_cancel,
    on_step_error = handle_step_error,
    dead_letter,
    dead_letter_ttl = "7d",
    tags = ["critical", "daily"],
    metadata(owner = "data-team", tier = 1, big = 10_000_000_000, offset = -3, ratio = 0.5, public = false),
    step_concurrency = 4,
    concurrency = 3,
    concurrency_key = "tenant_id",
    rate_limit = "20/1m",
    rate_limit_key = "account",
    description = "exercises every option",
    version = "2025.1",
    schedule(cron = "0 6 * * *"),
    schedule(cron = ["0 12 * * *", "0 18 * * *"], timezone = "Europe/Paris", misfire = skip),
    schedule(every = "5m", start_at = "2025-01-01T00:00:00Z", end_at = "2025-01-31T23:59:59Z"),
    schedule(at = "2025-12-25T00:00:00Z"),
    schedule(in = 1_800_000),
    on_event = ["order.created", "order.updated"]
)]
impl Everything {
    #[step(
        name = "fetch",
        timeout = infinity,
        max_retries = 5,
        retry_delay = "1s",
        retry_backoff = exponential,
        retry_max_delay = "5m",
        retry_jitter,
        retry_on = [timeout, "connection_error"],
        no_retry_on = "validation_error",
        rollback = undo_fetch,
        cancellable,
        context_key = fetched,
        circuit_breaker = external_api,
        circuit_breaker_opts(failure_threshold = 3, reset_timeout = "45s"),
        description = "fetches the data"
    )]
    async fn fetch_data(&self, _ctx: &Context) -> StepResult {
        Ok(json!({ "rows": 3 }).into())
    }

    #[step(
        after = fetch,
        group = checks,
        when = should_validate,
        timeout = size_timeout,
        retry_backoff = slow_backoff,
        on_error = skip
    )]
    fn validate(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "valid": ctx.contains("fetched") }))
    }

    #[step(after = fetch, group = checks, on_error = continue, timeout = 30_000, retry_backoff = fixed, retry_jitter = false)]
    fn audit(&self) -> Result<(), StepError> {
        Ok(())
    }

    #[step(after_group = checks, await_approval, on_timeout = approval_expired, timeout = "48h", max_retries = 0)]
    async fn approve(&self, _ctx: Context) -> StepResult {
        Ok(Outcome::await_for("24h"))
    }

    #[graft(after = approve, description = "one step per row")]
    async fn per_row(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::expand([]))
    }

    #[subworkflow(send_report, after_graft = per_row, after_any = audit, context_key = report)]
    fn notify(&self, _ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "template": "done" }))
    }

    #[subworkflow("archive", after = notify)]
    async fn archive(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn undo_fetch(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    fn should_validate(&self, ctx: &Context) -> bool {
        ctx.contains("fetched")
    }

    fn size_timeout(ctx: &Context) -> Option<Duration> {
        ctx.get_opt::<u64>("size").ok().flatten().map(|s| Duration::from_secs(s / 1000))
    }

    fn slow_backoff(&self, attempt: u32, base: Duration) -> Duration {
        base * (attempt * 10)
    }

    async fn approval_expired(&self, _ctx: &Context) -> StepResult {
        Ok(json!({ "approved": false }).into())
    }

    async fn handle_failure(&self, _ctx: &Context) -> StepResult {
        self.log.lock().unwrap().push("failure".into());
        Ok(Outcome::Done)
    }

    async fn handle_success(&self, _ctx: Context) -> StepResult {
        self.log.lock().unwrap().push("success".into());
        Ok(Outcome::Done)
    }

    fn handle_cancel(&self, _ctx: &Context, reason: &str) -> Result<(), StepError> {
        self.log.lock().unwrap().push(format!("cancel: {reason}"));
        Ok(())
    }

    async fn handle_step_error(&self, _ctx: &Context, step: &str, error: &StepError, attempt: u32) -> StepResult {
        self.log.lock().unwrap().push(format!("{step} #{attempt}: {}", error.kind()));
        Ok(Outcome::Done)
    }
}

// ----- the same without the macros -----

async fn fetch_data(_ctx: Context) -> StepResult {
    Ok(json!({ "rows": 3 }).into())
}
fn validate(ctx: Context) -> Result<serde_json::Value, StepError> {
    Ok(json!({ "valid": ctx.contains("fetched") }))
}
fn audit(_ctx: Context) -> Result<(), StepError> {
    Ok(())
}
async fn approve(_ctx: Context) -> StepResult {
    Ok(Outcome::await_for("24h"))
}
async fn per_row(_ctx: Context) -> StepResult {
    Ok(Outcome::expand([]))
}
fn notify(_ctx: Context) -> Result<serde_json::Value, StepError> {
    Ok(json!({ "template": "done" }))
}
async fn archive(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn undo_fetch(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
fn should_validate(ctx: &Context) -> bool {
    ctx.contains("fetched")
}
fn size_timeout(ctx: &Context) -> Option<Duration> {
    ctx.get_opt::<u64>("size").ok().flatten().map(|s| Duration::from_secs(s / 1000))
}
fn slow_backoff(attempt: u32, base: Duration) -> Duration {
    base * (attempt * 10)
}
async fn approval_expired(_ctx: Context) -> StepResult {
    Ok(json!({ "approved": false }).into())
}
async fn handle_failure(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn handle_success(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}
async fn handle_cancel(_ctx: Context, _reason: String) -> StepResult {
    Ok(Outcome::Done)
}
async fn handle_step_error(_ctx: Context, _step: String, _error: StepError, _attempt: u32) -> StepResult {
    Ok(Outcome::Done)
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().unwrap()
}

fn builder_version() -> WorkflowDef {
    Workflow::new("every_option")
        .timeout("2h")
        .max_retries(2)
        .retry_delay("10s")
        .retry_backoff(Backoff::Linear)
        .step_timeout("10m")
        .step_max_retries(4)
        .step_retry_delay("2s")
        .on_failure(handle_failure)
        .on_success(handle_success)
        .on_cancel(handle_cancel)
        .on_step_error(handle_step_error)
        .dead_letter(true)
        .dead_letter_ttl("7d")
        .tags(["critical", "daily"])
        .metadata("owner", "data-team")
        .metadata("tier", 1)
        .metadata("big", 10_000_000_000u64)
        .metadata("offset", -3)
        .metadata("ratio", 0.5)
        .metadata("public", false)
        .step_concurrency(4)
        .concurrency(3)
        .concurrency_key("tenant_id")
        .rate_limit(20, "1m")
        .rate_limit_key("account")
        .description("exercises every option")
        .version("2025.1")
        .schedule(Schedule::cron("0 6 * * *").unwrap())
        .schedule(
            Schedule::cron_many(["0 12 * * *", "0 18 * * *"])
                .unwrap()
                .timezone("Europe/Paris")
                .unwrap()
                .misfire(Misfire::Skip),
        )
        .schedule(
            Schedule::every("5m")
                .unwrap()
                .start_at(at("2025-01-01T00:00:00Z"))
                .unwrap()
                .end_at(at("2025-01-31T23:59:59Z"))
                .unwrap(),
        )
        .schedule(Schedule::at(at("2025-12-25T00:00:00Z")))
        .schedule(Schedule::in_("30m").unwrap())
        .on_event(["order.created", "order.updated"])
        .step_with(
            "fetch",
            fetch_data,
            Step::opts()
                .timeout(sagaflow::INFINITY)
                .max_retries(5)
                .retry_delay("1s")
                .retry_backoff(Backoff::Exponential)
                .retry_max_delay("5m")
                .retry_jitter(true)
                .retry_on(["timeout", "connection_error"])
                .no_retry_on("validation_error")
                .rollback(undo_fetch)
                .cancellable(true)
                .context_key("fetched")
                .circuit_breaker("external_api")
                .circuit_breaker_opts(
                    BreakerOptions::default().failure_threshold(3).reset_timeout(Duration::from_secs(45)),
                )
                .description("fetches the data"),
        )
        .step_with(
            "validate",
            validate,
            Step::opts()
                .after("fetch")
                .group("checks")
                .when(should_validate)
                .timeout_fn(size_timeout)
                .retry_backoff_fn(slow_backoff)
                .on_error(OnError::Skip),
        )
        .step_with(
            "audit",
            audit,
            Step::opts()
                .after("fetch")
                .group("checks")
                .on_error(OnError::Continue)
                .timeout(30_000)
                .retry_backoff(Backoff::Fixed)
                .retry_jitter(false),
        )
        .step_with(
            "approve",
            approve,
            Step::opts()
                .after_group("checks")
                .await_approval(true)
                .on_timeout(approval_expired)
                .timeout("48h")
                .max_retries(0),
        )
        .graft("per_row", per_row, Step::opts().after("approve").description("one step per row"))
        .add_workflow_with(
            "notify",
            "send_report",
            notify,
            Step::opts().after_graft("per_row").after_any("audit").context_key("report"),
        )
        .add_workflow_with("archive", "archive", archive, Step::opts().after("notify"))
        .build()
        .unwrap()
}

fn macro_version() -> (WorkflowDef, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    (Everything { log: log.clone() }.into_definition().unwrap(), log)
}

#[test]
fn every_option_gives_the_builder_definition() {
    let (def, _) = macro_version();
    let builder = builder_version();
    assert_eq!(def.snapshot(), builder.snapshot());
    assert_eq!(def, builder);
    assert_eq!(def.version(), builder.version());
    assert_eq!(def.triggers(), builder.triggers(), "schedules with windows, time zones and misfire policies");
}

#[test]
fn workflow_policies_match() {
    let (def, _) = macro_version();
    let builder = builder_version();
    let (p, q) = (def.policy(), builder.policy());
    assert_eq!(p.timeout(), Some(Duration::from_secs(7200)));
    assert_eq!(p.retry().max_retries, 2);
    assert_eq!(p.retry().delay, Duration::from_secs(10));
    assert_eq!(p.retry().backoff.as_str(), "linear");
    assert_eq!(p.step_timeout().fixed(), Some(Duration::from_secs(600)));
    assert_eq!(p.step_max_retries(), 4);
    assert!(p.dead_letter());
    assert_eq!(p.dead_letter_ttl(), q.dead_letter_ttl());
    assert_eq!(p.dead_letter_ttl(), Duration::from_secs(7 * 86_400));
    assert_eq!(p.step_concurrency(), Some(4));
    assert_eq!(p.limits(), q.limits());
    let limits = p.limits().expect("the workflow's own limits");
    let concurrency = limits.concurrency().expect("a concurrency limit");
    assert_eq!((concurrency.limit(), concurrency.key()), (3, Some("tenant_id")));
    let rate = limits.rate().expect("a rate limit");
    assert_eq!((rate.count(), rate.per(), rate.key()), (20, Duration::from_secs(60), Some("account")));
    assert_eq!(p.description(), Some("exercises every option"));
    assert_eq!(p.metadata(), q.metadata());
    assert_eq!(p.metadata()["big"], json!(10_000_000_000u64));
    assert_eq!(p.metadata()["offset"], json!(-3));
    let handlers: Vec<(&str, String)> = p.handler_names().into_iter().collect();
    assert_eq!(
        handlers,
        [
            ("on_cancel", "handle_cancel".to_owned()),
            ("on_failure", "handle_failure".to_owned()),
            ("on_step_error", "handle_step_error".to_owned()),
            ("on_success", "handle_success".to_owned()),
        ]
    );
}

#[test]
fn step_policies_match() {
    let (def, _) = macro_version();
    let fetch = def.step("fetch").unwrap().policy();
    assert!(matches!(fetch.timeout(), Timeout::Infinity));
    assert_eq!(fetch.retry().max_delay, Duration::from_secs(300));
    assert!(fetch.retry().jitter);
    let (breaker, opts) = fetch.circuit_breaker().unwrap();
    assert_eq!((breaker, opts.failure_threshold, opts.reset_timeout), ("external_api", 3, Duration::from_secs(45)));
    assert_eq!(fetch.rollback_name(), Some("undo_fetch"));
    assert_eq!(fetch.context_key(), Some("fetched"));
    assert_eq!(fetch.description(), Some("fetches the data"));

    let validate = def.step("validate").unwrap().policy();
    let ctx = Context::new().with("size", 90_000);
    assert_eq!(validate.timeout().resolve(&ctx), Some(Duration::from_secs(90)), "the timeout method runs");
    assert_eq!(validate.timeout().resolve(&Context::new()), None);
    assert_eq!(validate.retry().delay_for(3, 0.0), Duration::from_secs(60), "2s base * 3 * 10 from the method");
    assert_eq!(validate.when_name(), Some("should_validate"));
    assert_eq!(validate.retry().max_retries, 4, "the workflow's step_max_retries");
    assert_eq!(validate.retry().delay, Duration::from_secs(2), "the workflow's step_retry_delay");

    let audit = def.step("audit").unwrap().policy();
    assert_eq!(audit.timeout().fixed(), Some(Duration::from_secs(30)));
    assert_eq!(audit.on_error(), OnError::Continue);
    assert_eq!(def.step("approve").unwrap().policy().retry().max_retries, 0);
    assert_eq!(def.step("notify").unwrap().child_workflow(), Some("send_report"));
    assert_eq!(def.step("archive").unwrap().child_workflow(), Some("archive"));
    assert_eq!(def.step("per_row").unwrap().kind(), sagaflow::StepKindName::Graft);
    assert_eq!(def.dependencies("notify"), ["per_row", "audit"]);
}
