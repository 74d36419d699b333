//! Policies: options after defaults and validation. The workflow's
//! ([`WorkflowPolicy`]), and a step's, resolved from its options and its
//! workflow's defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::defaults;
use super::duration::{DurationArg, Timeout};
use super::limits::{ConcurrencyLimit, RateLimit, StepLimits};
use super::options::StepPolicy;
use super::retry::{OnError, RetryPolicy};
use super::step::{Named, StepBody, StepOptions};
use super::step_fn::{CancelHandler, StepErrorHandler};

/// Workflow-level options after defaults and validation.
#[derive(Clone)]
pub struct WorkflowPolicy {
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: RetryPolicy,
    pub(crate) step_timeout: Timeout,
    pub(crate) step_max_retries: u32,
    pub(crate) step_retry_delay: Duration,
    pub(crate) on_failure: Option<Named<StepBody>>,
    pub(crate) on_success: Option<Named<StepBody>>,
    pub(crate) on_cancel: Option<Named<CancelHandler>>,
    pub(crate) on_step_error: Option<Named<StepErrorHandler>>,
    pub(crate) dead_letter: bool,
    pub(crate) dead_letter_ttl: Duration,
    pub(crate) retention: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) step_concurrency: Option<u32>,
    /// The workflow's own concurrency and rate limits, across executions.
    pub(crate) limits: Option<Arc<StepLimits>>,
    pub(crate) description: Option<String>,
    pub(crate) version: Option<String>,
}

impl WorkflowPolicy {
    /// Timeout of a whole execution (`None`: no limit).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Workflow-level retries (the whole workflow restarts).
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
    /// Default step timeout.
    pub fn step_timeout(&self) -> &Timeout {
        &self.step_timeout
    }
    /// Default retries of a step.
    pub fn step_max_retries(&self) -> u32 {
        self.step_max_retries
    }
    /// Whether executions that fail for good are kept as dead letters.
    pub fn dead_letter(&self) -> bool {
        self.dead_letter
    }
    /// How long dead letters are kept.
    pub fn dead_letter_ttl(&self) -> Duration {
        self.dead_letter_ttl
    }
    /// How long ended executions (their final states, outputs and contexts) are
    /// kept before the engine prunes them (`None`: for good).
    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }
    /// Tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// Free-form metadata.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
    /// Most steps of one execution running at once (`None`: no limit).
    pub fn step_concurrency(&self) -> Option<u32> {
        self.step_concurrency
    }
    /// How many executions run at once and begin per interval, per key
    /// ([`Workflow::concurrency`](crate::Workflow::concurrency),
    /// [`Workflow::rate_limit`](crate::Workflow::rate_limit)), if limited.
    pub fn limits(&self) -> Option<&StepLimits> {
        self.limits.as_deref()
    }
    /// The description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Names of the handlers that are set: `on_failure`, `on_success`, ...
    pub fn handler_names(&self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        let mut put = |key, name: Option<&Option<Arc<str>>>| {
            if let Some(n) = name {
                out.insert(key, n.as_deref().unwrap_or("<closure>").to_owned());
            }
        };
        put("on_failure", self.on_failure.as_ref().map(|h| &h.name));
        put("on_success", self.on_success.as_ref().map(|h| &h.name));
        put("on_cancel", self.on_cancel.as_ref().map(|h| &h.name));
        put("on_step_error", self.on_step_error.as_ref().map(|h| &h.name));
        out
    }
}

impl fmt::Debug for WorkflowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowPolicy")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("step_timeout", &self.step_timeout)
            .field("step_max_retries", &self.step_max_retries)
            .field("handlers", &self.handler_names())
            .field("dead_letter", &self.dead_letter)
            .field("retention", &self.retention)
            .field("tags", &self.tags)
            .field("step_concurrency", &self.step_concurrency)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// An option problem found while resolving a step's policy.
pub(crate) enum PolicyError {
    Invalid(&'static str, String),
    Conflict(String),
}

/// Applies workflow defaults to a step's options and checks them.
pub(crate) fn resolve_step_policy(o: &StepOptions, wf: &WorkflowPolicy) -> Result<StepPolicy, PolicyError> {
    let dur = |option: &'static str, arg: &Option<DurationArg>| {
        arg.as_ref().map(|a| a.to_duration().map_err(|e| PolicyError::Invalid(option, e.to_string()))).transpose()
    };
    let timeout = match &o.timeout {
        Some(a) => a.to_timeout().map_err(|e| PolicyError::Invalid("timeout", e.to_string()))?,
        None => wf.step_timeout.clone(),
    };
    let retry_delay = dur("retry_delay", &o.retry_delay)?;
    let retry_max_delay = dur("retry_max_delay", &o.retry_max_delay)?;
    if let (Some(d), Some(m)) = (retry_delay, retry_max_delay)
        && m < d
    {
        return Err(PolicyError::Conflict("`retry_max_delay` is shorter than `retry_delay`".into()));
    }
    if o.max_retries == Some(0)
        && (o.retry_delay.is_some()
            || o.retry_backoff.is_some()
            || o.retry_max_delay.is_some()
            || o.retry_jitter.is_some())
    {
        return Err(PolicyError::Conflict("retry options are set but `max_retries` is 0".into()));
    }
    if let Some(kind) = o.retry_on.iter().find(|k| o.no_retry_on.contains(k)) {
        return Err(PolicyError::Conflict(format!("`{kind}` is in both `retry_on` and `no_retry_on`")));
    }
    if o.circuit_breaker_opts.is_some() && o.circuit_breaker.is_none() {
        return Err(PolicyError::Conflict("`circuit_breaker_opts` is set without `circuit_breaker`".into()));
    }
    if let Some(opts) = &o.circuit_breaker_opts
        && opts.failure_threshold == 0
    {
        return Err(PolicyError::Invalid("circuit_breaker_opts", "`failure_threshold` must be at least 1".into()));
    }
    if o.on_timeout.is_some() && !o.await_approval {
        return Err(PolicyError::Conflict("`on_timeout` is set but `await_approval` is off".into()));
    }
    if let Some(g) = &o.group
        && g.trim().is_empty()
    {
        return Err(PolicyError::Invalid("group", "the group name is empty".into()));
    }
    if let Some(k) = &o.context_key
        && k.is_empty()
    {
        return Err(PolicyError::Invalid("context_key", "the key is empty".into()));
    }
    let cancel_grace = dur("cancel_grace", &o.cancel_grace)?;
    if cancel_grace.is_some() && !o.cancellable {
        return Err(PolicyError::Conflict("`cancel_grace` is set but `cancellable` is off".into()));
    }
    let limits = resolve_limits(o)?;
    let await_timeout = match (&o.timeout, &timeout) {
        (Some(_), Timeout::After(d)) => Some(*d),
        _ => None,
    };
    Ok(StepPolicy {
        timeout,
        retry: RetryPolicy {
            max_retries: o.max_retries.unwrap_or(wf.step_max_retries),
            delay: retry_delay.unwrap_or(wf.step_retry_delay),
            backoff: o.retry_backoff.clone().unwrap_or_default(),
            max_delay: retry_max_delay.unwrap_or(defaults::RETRY_MAX_DELAY),
            jitter: o.retry_jitter.unwrap_or(false),
            retry_on: o.retry_on.clone(),
            no_retry_on: o.no_retry_on.clone(),
        },
        on_error: o.on_error.unwrap_or(OnError::Fail),
        when: o.when.clone(),
        rollback: o.rollback.clone(),
        on_timeout: o.on_timeout.clone(),
        await_approval: o.await_approval,
        cancellable: o.cancellable,
        cancel_grace: cancel_grace.unwrap_or(defaults::CANCEL_GRACE),
        await_timeout,
        context_key: o.context_key.as_deref().map(Arc::from),
        group: o.group.as_deref().map(Arc::from),
        circuit_breaker: o
            .circuit_breaker
            .as_deref()
            .map(|n| (Arc::from(n), o.circuit_breaker_opts.clone().unwrap_or_default())),
        description: o.description.clone(),
        limits,
    })
}

/// The step's concurrency and rate limits, checked.
fn resolve_limits(o: &StepOptions) -> Result<Option<Arc<StepLimits>>, PolicyError> {
    resolve_limit_options(o.concurrency, &o.concurrency_key, &o.rate_limit, &o.rate_limit_key)
}

/// Concurrency and rate limit options (a step's or a workflow's), checked.
pub(crate) fn resolve_limit_options(
    concurrency: Option<u32>,
    concurrency_key: &Option<String>,
    rate_limit: &Option<(u32, DurationArg)>,
    rate_limit_key: &Option<String>,
) -> Result<Option<Arc<StepLimits>>, PolicyError> {
    let key = |option: &'static str, field: &Option<String>| -> Result<Option<Arc<str>>, PolicyError> {
        match field {
            Some(f) if f.trim().is_empty() => Err(PolicyError::Invalid(option, "the field name is empty".into())),
            f => Ok(f.as_deref().map(Arc::from)),
        }
    };
    if concurrency_key.is_some() && concurrency.is_none() {
        return Err(PolicyError::Conflict("`concurrency_key` is set without `concurrency`".into()));
    }
    if rate_limit_key.is_some() && rate_limit.is_none() {
        return Err(PolicyError::Conflict("`rate_limit_key` is set without `rate_limit`".into()));
    }
    let concurrency_key = key("concurrency_key", concurrency_key)?;
    let concurrency = match concurrency {
        None => None,
        Some(0) => return Err(PolicyError::Invalid("concurrency", "must be at least 1".into())),
        Some(limit) => Some(ConcurrencyLimit { limit, key: concurrency_key.clone() }),
    };
    let rate = match rate_limit {
        None => None,
        Some((0, _)) => return Err(PolicyError::Invalid("rate_limit", "the count must be at least 1".into())),
        Some((count, per)) => {
            let per = per.to_duration().map_err(|e| PolicyError::Invalid("rate_limit", e.to_string()))?;
            if per.is_zero() {
                return Err(PolicyError::Invalid("rate_limit", "the interval must be longer than zero".into()));
            }
            let key = key("rate_limit_key", rate_limit_key)?.or(concurrency_key);
            Some(RateLimit { count: *count, per, key })
        }
    };
    if concurrency.is_none() && rate.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(StepLimits { concurrency, rate })))
}
