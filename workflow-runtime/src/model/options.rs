//! Step and workflow options, as written ([`StepOptions`]) and as resolved at build
//! time ([`StepPolicy`], [`RetryPolicy`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::duration::{DurationArg, Timeout};
use super::error::StepError;
use super::limits::StepLimits;
use super::step::{Condition, IntoStepFn, Named, StepBody, fn_name};

/// What happens when a step has failed for good (after its retries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail the workflow (the default): rollback, then `on_failure`.
    #[default]
    Fail,
    /// Mark the step skipped; dependents run as if it had been skipped.
    Skip,
    /// Record the step as failed and let dependents run.
    Continue,
}

impl OnError {
    /// The option's spelling (`"fail"`, `"skip"`, `"continue"`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Skip => "skip",
            OnError::Continue => "continue",
        }
    }
}

/// How the delay between retries grows. `n` below is the retry number, from 1.
#[derive(Clone, Default)]
pub enum Backoff {
    /// Always `retry_delay`.
    Fixed,
    /// `retry_delay * 2^(n-1)`: 1s, 2s, 4s, 8s... (the default).
    #[default]
    Exponential,
    /// `retry_delay * n`: 10s, 20s, 30s...
    Linear,
    /// Any function of `(n, retry_delay)`.
    Custom(Arc<dyn Fn(u32, Duration) -> Duration + Send + Sync>),
}

impl Backoff {
    /// A custom backoff function of `(retry number from 1, base delay)`.
    pub fn custom(f: impl Fn(u32, Duration) -> Duration + Send + Sync + 'static) -> Self {
        Backoff::Custom(Arc::new(f))
    }

    /// The option's spelling (`"fixed"`, `"exponential"`, `"linear"`, `"custom"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Backoff::Fixed => "fixed",
            Backoff::Exponential => "exponential",
            Backoff::Linear => "linear",
            Backoff::Custom(_) => "custom",
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of a named circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerOptions {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long the breaker stays open before one probe call is let through
    /// (default 30 s).
    #[serde(with = "crate::model::serde_duration")]
    pub reset_timeout: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            failure_threshold: sagaflow_rules::breaker::DEFAULT_FAILURE_THRESHOLD,
            reset_timeout: sagaflow_rules::breaker::DEFAULT_RESET_TIMEOUT,
        }
    }
}

impl BreakerOptions {
    /// Sets the failure threshold.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets the reset timeout.
    pub fn reset_timeout(mut self, d: Duration) -> Self {
        self.reset_timeout = d;
        self
    }
}

/// Defaults that apply where neither the step nor the workflow sets a value.
pub mod defaults {
    use std::time::Duration;
    /// Step timeout: 5 minutes.
    pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);
    /// Retries after the first attempt: 3.
    pub const MAX_RETRIES: u32 = 3;
    /// First retry delay: 1 second.
    pub const RETRY_DELAY: Duration = Duration::from_secs(1);
    /// Cap on retry delays: 5 minutes.
    pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(300);
    /// How long dead letters are kept: 30 days.
    pub const DEAD_LETTER_TTL: Duration = Duration::from_secs(30 * 86_400);
    /// How long a cancellable step may take to return after its execution is
    /// cancelled, before it is interrupted: 5 seconds.
    pub const CANCEL_GRACE: Duration = Duration::from_secs(5);
}

/// The options of one step, written with a builder.
///
/// ```
/// use sagaflow_runtime::{Backoff, OnError, Step};
///
/// let opts = Step::opts()
///     .after(["fetch_a", "fetch_b"])
///     .timeout("30s")
///     .max_retries(5)
///     .retry_backoff(Backoff::Exponential)
///     .retry_on(["timeout", "connection_error"])
///     .on_error(OnError::Continue);
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct StepOptions {
    pub(crate) after: Vec<String>,
    pub(crate) after_any: Vec<String>,
    pub(crate) after_group: Vec<String>,
    pub(crate) after_graft: Vec<String>,
    pub(crate) group: Option<String>,
    pub(crate) when: Option<Named<Condition>>,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) retry_delay: Option<DurationArg>,
    pub(crate) retry_backoff: Option<Backoff>,
    pub(crate) retry_max_delay: Option<DurationArg>,
    pub(crate) retry_jitter: Option<bool>,
    pub(crate) retry_on: Vec<String>,
    pub(crate) no_retry_on: Vec<String>,
    pub(crate) on_error: Option<OnError>,
    pub(crate) rollback: Option<Named<StepBody>>,
    pub(crate) on_timeout: Option<Named<StepBody>>,
    pub(crate) await_approval: bool,
    pub(crate) cancellable: bool,
    pub(crate) cancel_grace: Option<DurationArg>,
    pub(crate) context_key: Option<String>,
    pub(crate) circuit_breaker: Option<String>,
    pub(crate) circuit_breaker_opts: Option<BreakerOptions>,
    pub(crate) description: Option<String>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) rate_limit: Option<(u32, DurationArg)>,
    pub(crate) rate_limit_key: Option<String>,
}

/// Entry point for step options: `Step::opts()`.
#[derive(Debug)]
pub struct Step;

impl Step {
    /// Empty step options.
    pub fn opts() -> StepOptions {
        StepOptions::default()
    }
}

/// One name or several: `"a"`, `["a", "b"]`, `vec!["a".to_string()]`.
pub trait IntoNames {
    /// The names.
    fn into_names(self) -> Vec<String>;
}

impl IntoNames for &str {
    fn into_names(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}
impl IntoNames for String {
    fn into_names(self) -> Vec<String> {
        vec![self]
    }
}
impl IntoNames for &String {
    fn into_names(self) -> Vec<String> {
        vec![self.clone()]
    }
}
impl<S: AsRef<str>, const N: usize> IntoNames for [S; N] {
    fn into_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}
impl<S: AsRef<str>> IntoNames for Vec<S> {
    fn into_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}
impl<S: AsRef<str>> IntoNames for &[S] {
    fn into_names(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}

impl StepOptions {
    /// Run after all of these steps have ended (completed or skipped).
    pub fn after(mut self, steps: impl IntoNames) -> Self {
        self.after.extend(steps.into_names());
        self
    }

    /// Run as soon as the first of these steps completes; skipped if all are skipped.
    pub fn after_any(mut self, steps: impl IntoNames) -> Self {
        self.after_any.extend(steps.into_names());
        self
    }

    /// Run after every step of these groups.
    pub fn after_group(mut self, groups: impl IntoNames) -> Self {
        self.after_group.extend(groups.into_names());
        self
    }

    /// Run after these grafts and every step they expanded into.
    pub fn after_graft(mut self, grafts: impl IntoNames) -> Self {
        self.after_graft.extend(grafts.into_names());
        self
    }

    /// Put the step in a parallel group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Run the step only when `condition` holds; otherwise it is skipped.
    pub fn when<F>(mut self, condition: F) -> Self
    where
        F: Fn(&Context) -> bool + Send + Sync + 'static,
    {
        self.when = Some(Named { name: fn_name::<F>(), f: Arc::new(condition) });
        self
    }

    /// A condition shown under `name` in introspection (and in skip reasons), for
    /// conditions given as closures.
    pub fn when_named<F>(mut self, name: impl Into<String>, condition: F) -> Self
    where
        F: Fn(&Context) -> bool + Send + Sync + 'static,
    {
        self.when = Some(Named { name: Some(Arc::from(name.into())), f: Arc::new(condition) });
        self
    }

    /// Step timeout: `"30s"`, `Duration`, milliseconds or `"infinity"`.
    pub fn timeout(mut self, timeout: impl Into<DurationArg>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// A timeout computed from the context when the step starts (`None`: no limit).
    pub fn timeout_fn(mut self, f: impl Fn(&Context) -> Option<Duration> + Send + Sync + 'static) -> Self {
        self.timeout = Some(Timeout::Dynamic(Arc::new(f)).into());
        self
    }

    /// Retries after the first attempt.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Delay before the first retry (the base of the backoff).
    pub fn retry_delay(mut self, delay: impl Into<DurationArg>) -> Self {
        self.retry_delay = Some(delay.into());
        self
    }

    /// How delays grow between retries.
    pub fn retry_backoff(mut self, backoff: Backoff) -> Self {
        self.retry_backoff = Some(backoff);
        self
    }

    /// A custom backoff: `f(retry number from 1, retry_delay)`.
    pub fn retry_backoff_fn(self, f: impl Fn(u32, Duration) -> Duration + Send + Sync + 'static) -> Self {
        self.retry_backoff(Backoff::custom(f))
    }

    /// Upper bound on any retry delay.
    pub fn retry_max_delay(mut self, delay: impl Into<DurationArg>) -> Self {
        self.retry_max_delay = Some(delay.into());
        self
    }

    /// Randomize delays: each is drawn uniformly from `[delay / 2, delay]`.
    pub fn retry_jitter(mut self, jitter: bool) -> Self {
        self.retry_jitter = Some(jitter);
        self
    }

    /// Retry only errors of these kinds.
    pub fn retry_on(mut self, kinds: impl IntoNames) -> Self {
        self.retry_on.extend(kinds.into_names());
        self
    }

    /// Never retry errors of these kinds.
    pub fn no_retry_on(mut self, kinds: impl IntoNames) -> Self {
        self.no_retry_on.extend(kinds.into_names());
        self
    }

    /// What a final failure does: fail the workflow, skip the step, or continue.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = Some(on_error);
        self
    }

    /// The compensation to run if the workflow fails after this step completed.
    pub fn rollback<M, F: IntoStepFn<M>>(mut self, f: F) -> Self {
        self.rollback = Some(Named { name: fn_name::<F>(), f: f.into_step_fn() });
        self
    }

    /// A compensation shown under `name` in introspection.
    pub fn rollback_named<M>(mut self, name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        self.rollback = Some(Named { name: Some(Arc::from(name.into())), f: f.into_step_fn() });
        self
    }

    /// Runs when this step's await times out; its result becomes the step's result
    /// (return an output to continue, an error to fail, or await again).
    pub fn on_timeout<M, F: IntoStepFn<M>>(mut self, f: F) -> Self {
        self.on_timeout = Some(Named { name: fn_name::<F>(), f: f.into_step_fn() });
        self
    }

    /// `on_timeout` shown under `name`.
    pub fn on_timeout_named<M>(mut self, name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        self.on_timeout = Some(Named { name: Some(Arc::from(name.into())), f: f.into_step_fn() });
        self
    }

    /// Marks a human-in-the-loop step (it may return [`Outcome::Await`](crate::Outcome)).
    pub fn await_approval(mut self, yes: bool) -> Self {
        self.await_approval = yes;
        self
    }

    /// Cancel this step with its execution (others finish first): its context's
    /// cancellation fires at once (`ctx.cancelled()`, `ctx.is_cancelled()`), it
    /// has [`cancel_grace`](Self::cancel_grace) to return (what it returns then
    /// is kept, like any result), and only then is it interrupted. When the
    /// execution fails instead (a workflow timeout, another step failing for
    /// good), the step is interrupted at once.
    pub fn cancellable(mut self, yes: bool) -> Self {
        self.cancellable = yes;
        self
    }

    /// How long a cancellable step may take to return once its execution is
    /// cancelled, before it is interrupted (default 5 s; `0s` interrupts it at
    /// once).
    pub fn cancel_grace(mut self, grace: impl Into<DurationArg>) -> Self {
        self.cancel_grace = Some(grace.into());
        self
    }

    /// Store the step's output under this key instead of merging it at the top level.
    pub fn context_key(mut self, key: impl Into<String>) -> Self {
        self.context_key = Some(key.into());
        self
    }

    /// Guard the step with the named circuit breaker (shared by every step naming it).
    pub fn circuit_breaker(mut self, name: impl Into<String>) -> Self {
        self.circuit_breaker = Some(name.into());
        self
    }

    /// Options of the circuit breaker.
    pub fn circuit_breaker_opts(mut self, opts: BreakerOptions) -> Self {
        self.circuit_breaker_opts = Some(opts);
        self
    }

    /// A description shown in introspection and the dashboard.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// At most `n` attempts of this step run at once across every execution of
    /// the workflow (on PostgreSQL, across every node), counted per
    /// [`concurrency_key`](Self::concurrency_key) when one is named. An attempt
    /// beyond the limit waits for a slot before its function is called (its
    /// timeout counts from then); waiting attempts get slots by the priority of
    /// their execution ([`StartOptions::priority`](crate::StartOptions::priority)),
    /// then in the order they began to wait, so no key and no execution is
    /// starved by another.
    ///
    /// ```
    /// use sagaflow_runtime::Step;
    ///
    /// // Two charges per tenant at a time, whatever the number of executions.
    /// let opts = Step::opts().concurrency(2).concurrency_key("tenant_id");
    /// # let _ = opts;
    /// ```
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// The context field whose value keys the [`concurrency`](Self::concurrency)
    /// limit: each value (each tenant) gets its own `n` slots. An attempt whose
    /// context lacks the field fails with kind `limit_key_missing`.
    pub fn concurrency_key(mut self, field: impl Into<String>) -> Self {
        self.concurrency_key = Some(field.into());
        self
    }

    /// At most `count` attempts of this step start per `per` across every
    /// execution of the workflow (on PostgreSQL, across every node), counted per
    /// [`rate_limit_key`](Self::rate_limit_key) — or per
    /// [`concurrency_key`](Self::concurrency_key) when only that is named: no
    /// window of `per` holds more than `count` starts. An attempt beyond it
    /// waits (in the order the attempts came) until the window has room, before
    /// its function is called; its timeout counts from then.
    ///
    /// ```
    /// use sagaflow_runtime::Step;
    ///
    /// // The mail provider takes 100 requests a minute per account.
    /// let opts = Step::opts().rate_limit(100, "1m").rate_limit_key("account");
    /// # let _ = opts;
    /// ```
    pub fn rate_limit(mut self, count: u32, per: impl Into<DurationArg>) -> Self {
        self.rate_limit = Some((count, per.into()));
        self
    }

    /// The context field whose value keys the [`rate_limit`](Self::rate_limit).
    pub fn rate_limit_key(mut self, field: impl Into<String>) -> Self {
        self.rate_limit_key = Some(field.into());
        self
    }
}

impl fmt::Debug for StepOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepOptions")
            .field("after", &self.after)
            .field("after_any", &self.after_any)
            .field("after_group", &self.after_group)
            .field("after_graft", &self.after_graft)
            .field("group", &self.group)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

/// A resolved retry policy.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Base delay.
    pub delay: Duration,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Cap on exponential and linear delays (a fixed delay, or one a custom
    /// function computes, is used as given).
    pub max_delay: Duration,
    /// Whether delays are randomized within `[delay / 2, delay]`.
    pub jitter: bool,
    /// Retry only these kinds (empty: every kind).
    pub retry_on: Vec<String>,
    /// Never retry these kinds.
    pub no_retry_on: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: defaults::MAX_RETRIES,
            delay: defaults::RETRY_DELAY,
            backoff: Backoff::Exponential,
            max_delay: defaults::RETRY_MAX_DELAY,
            jitter: false,
            retry_on: Vec::new(),
            no_retry_on: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Whether an error seen on attempt `attempt` (from 1) is retried.
    pub fn should_retry(&self, error: &StepError, retries_used: u32) -> bool {
        error.is_retryable()
            && retries_used < self.max_retries
            && !self.no_retry_on.iter().any(|k| k == error.kind())
            && (self.retry_on.is_empty() || self.retry_on.iter().any(|k| k == error.kind()))
    }

    /// The delay before retry number `n` (from 1). `jitter_sample` in `[0, 1)` is
    /// used only when jitter is on.
    pub fn delay_for(&self, n: u32, jitter_sample: f64) -> Duration {
        let raw = match &self.backoff {
            Backoff::Custom(f) => f(n.max(1), self.delay),
            _ => self.builtin_delay(n.max(1)),
        };
        self.shape(raw, jitter_sample)
    }

    /// [`delay_for`](Self::delay_for) with a custom backoff function called
    /// through the guard: the engine's own way to compute a delay.
    pub(crate) fn guarded_delay_for(&self, n: u32, jitter_sample: f64) -> Result<Duration, super::guard::Panicked> {
        let raw = match &self.backoff {
            Backoff::Custom(f) => super::guard::call(|| f(n.max(1), self.delay))?,
            _ => self.builtin_delay(n.max(1)),
        };
        Ok(self.shape(raw, jitter_sample))
    }

    fn builtin_delay(&self, n: u32) -> Duration {
        match &self.backoff {
            Backoff::Fixed | Backoff::Custom(_) => self.delay,
            Backoff::Exponential => {
                let factor = 2u32.checked_pow(n - 1).unwrap_or(u32::MAX);
                self.delay.checked_mul(factor).unwrap_or(Duration::MAX)
            }
            Backoff::Linear => self.delay.checked_mul(n).unwrap_or(Duration::MAX),
        }
    }

    /// Caps a growing delay (exponential, linear: `max_delay`; a fixed delay or
    /// one a function computed is used as given) and applies the jitter.
    fn shape(&self, raw: Duration, jitter_sample: f64) -> Duration {
        let capped = match self.backoff {
            Backoff::Exponential | Backoff::Linear => raw.min(self.max_delay),
            Backoff::Fixed | Backoff::Custom(_) => raw,
        }
        .min(super::duration::MAX_DURATION);
        if self.jitter {
            let half = capped / 2;
            half + half.mul_f64(jitter_sample.clamp(0.0, 1.0))
        } else {
            capped
        }
    }
}

/// A step's options after defaults and validation.
#[derive(Clone)]
pub struct StepPolicy {
    pub(crate) timeout: Timeout,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_error: OnError,
    pub(crate) when: Option<Named<Condition>>,
    pub(crate) rollback: Option<Named<StepBody>>,
    pub(crate) on_timeout: Option<Named<StepBody>>,
    pub(crate) await_approval: bool,
    pub(crate) cancellable: bool,
    pub(crate) cancel_grace: Duration,
    /// The step's own `timeout` when it is fixed: it also bounds an await that
    /// gives no timeout of its own.
    pub(crate) await_timeout: Option<Duration>,
    pub(crate) context_key: Option<Arc<str>>,
    pub(crate) group: Option<Arc<str>>,
    pub(crate) circuit_breaker: Option<(Arc<str>, BreakerOptions)>,
    pub(crate) description: Option<String>,
    pub(crate) limits: Option<Arc<StepLimits>>,
}

impl StepPolicy {
    /// The timeout.
    pub fn timeout(&self) -> &Timeout {
        &self.timeout
    }
    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
    /// What a final failure does.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }
    /// Whether the step has a compensation.
    pub fn has_rollback(&self) -> bool {
        self.rollback.is_some()
    }
    /// The compensation's name, when it has one.
    pub fn rollback_name(&self) -> Option<&str> {
        self.rollback.as_ref().and_then(|r| r.name.as_deref())
    }
    /// The condition's name, when the step has a named condition.
    pub fn when_name(&self) -> Option<&str> {
        self.when.as_ref().and_then(|w| w.name.as_deref())
    }
    /// Whether the step has a condition.
    pub fn has_condition(&self) -> bool {
        self.when.is_some()
    }
    /// The group, if any.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }
    /// Whether it is a human-in-the-loop step.
    pub fn await_approval(&self) -> bool {
        self.await_approval
    }
    /// Whether cancellation interrupts it.
    pub fn cancellable(&self) -> bool {
        self.cancellable
    }
    /// Where its output goes, if not merged at the top level.
    pub fn context_key(&self) -> Option<&str> {
        self.context_key.as_deref()
    }
    /// The circuit breaker guarding it.
    pub fn circuit_breaker(&self) -> Option<(&str, &BreakerOptions)> {
        self.circuit_breaker.as_ref().map(|(n, o)| (&**n, o))
    }
    /// The description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Its concurrency and rate limits, when it has any.
    pub fn limits(&self) -> Option<&StepLimits> {
        self.limits.as_deref()
    }
}

impl fmt::Debug for StepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepPolicy")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("on_error", &self.on_error)
            .field("rollback", &self.rollback)
            .field("when", &self.when)
            .field("cancellable", &self.cancellable)
            .field("context_key", &self.context_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, delay: u64, cap: u64) -> RetryPolicy {
        RetryPolicy {
            backoff,
            delay: Duration::from_secs(delay),
            max_delay: Duration::from_secs(cap),
            ..RetryPolicy::default()
        }
    }

    fn schedule(p: &RetryPolicy, n: u32) -> Vec<u64> {
        (1..=n).map(|i| p.delay_for(i, 0.0).as_secs()).collect()
    }

    #[test]
    fn backoff_schedules() {
        assert_eq!(schedule(&policy(Backoff::Fixed, 5, 300), 4), [5, 5, 5, 5]);
        assert_eq!(schedule(&policy(Backoff::Exponential, 1, 300), 10), [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(
            schedule(&policy(Backoff::Linear, 10, 120), 14)[..],
            [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 120, 120]
        );
        let custom = policy(Backoff::custom(|n, base| base * (n * n)), 1, 300);
        assert_eq!(schedule(&custom, 4), [1, 4, 9, 16]);
        assert_eq!(policy(Backoff::Exponential, 1, 300).delay_for(200, 0.0), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut p = policy(Backoff::Fixed, 10, 300);
        p.jitter = true;
        assert_eq!(p.delay_for(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.delay_for(1, 1.0), Duration::from_secs(10));
        assert_eq!(p.delay_for(1, 0.5), Duration::from_millis(7500));
    }

    #[test]
    fn retry_rules_match_kinds() {
        let mut p = RetryPolicy { max_retries: 2, ..RetryPolicy::default() };
        let timeout = StepError::new("timeout", "t");
        assert!(p.should_retry(&timeout, 0));
        assert!(p.should_retry(&timeout, 1));
        assert!(!p.should_retry(&timeout, 2));
        assert!(!p.should_retry(&timeout.clone().permanent(), 0));
        p.retry_on = vec!["connection_error".into()];
        assert!(!p.should_retry(&timeout, 0));
        p.retry_on.clear();
        p.no_retry_on = vec!["timeout".into()];
        assert!(!p.should_retry(&timeout, 0));
    }
}
