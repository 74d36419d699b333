//! What a failing step is given: [`RetryPolicy`] and its [`Backoff`], the
//! [`BreakerOptions`] of a named circuit breaker, and [`OnError`] for a step that has
//! failed for good.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults;
use super::error::StepError;

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
