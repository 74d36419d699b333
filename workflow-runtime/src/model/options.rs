//! Step options: the builder of [`StepOptions`] (declared with the step in
//! [`step`](super::step)) and the options as resolved at build time
//! ([`StepPolicy`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::context::Context;
use super::duration::{DurationArg, Timeout};
use super::limits::StepLimits;
use super::retry::{Backoff, BreakerOptions, OnError, RetryPolicy};
use super::step::{Condition, Named, StepBody, StepOptions};
use super::step_fn::{IntoStepFn, fn_name};

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
