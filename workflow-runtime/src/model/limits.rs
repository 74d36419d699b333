//! Limits a step runs under across all executions of its workflow: how many of
//! its attempts may run at once ([`ConcurrencyLimit`]) and how many may start in
//! an interval ([`RateLimit`]), each counted per key — the value of a context
//! field (`tenant_id`), or one count for the whole step when no key is named.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::context::Context;
use super::error::StepError;

/// At most `limit` attempts of the step run at once per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    pub(crate) limit: u32,
    pub(crate) key: Option<Arc<str>>,
}

impl ConcurrencyLimit {
    /// How many attempts may run at once per key.
    pub fn limit(&self) -> u32 {
        self.limit
    }
    /// The context field whose value is the key (`None`: one count for the step).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// At most `count` attempts of the step start within any window of `per`, per
/// key; an attempt beyond it waits until the window has room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) count: u32,
    pub(crate) per: Duration,
    pub(crate) key: Option<Arc<str>>,
}

impl RateLimit {
    /// How many attempts may start per interval.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// The interval.
    pub fn per(&self) -> Duration {
        self.per
    }
    /// The context field whose value is the key (`None`: one count for the step).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

/// A step's limits, when it has any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepLimits {
    pub(crate) concurrency: Option<ConcurrencyLimit>,
    pub(crate) rate: Option<RateLimit>,
}

impl StepLimits {
    /// The concurrency limit.
    pub fn concurrency(&self) -> Option<&ConcurrencyLimit> {
        self.concurrency.as_ref()
    }
    /// The rate limit.
    pub fn rate(&self) -> Option<&RateLimit> {
        self.rate.as_ref()
    }
}

/// The value a limit counts under for one attempt: the named context field's
/// value (a string as it is, anything else as JSON text), or `""` for a limit
/// without a key.
///
/// # Errors
///
/// A permanent [`StepError`] of kind `limit_key_missing` naming the step and the
/// field when the context has no such field (or it is `null`).
pub(crate) fn key_value(step: &str, option: &str, field: Option<&str>, ctx: &Context) -> Result<String, StepError> {
    let Some(field) = field else { return Ok(String::new()) };
    key_text(ctx.value(field)).ok_or_else(|| {
        StepError::new(
            super::error::kinds::LIMIT_KEY_MISSING,
            format!("step `{step}` counts its `{option}` by the context field `{field}`, which is not set"),
        )
        .permanent()
    })
}

/// The key a field's value gives: a string as it is, anything else as JSON
/// text; `None` for a missing or `null` field.
pub(crate) fn key_text(value: Option<&Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

impl StepLimits {
    /// The input fields these limits count by, with the option naming each.
    pub(crate) fn key_fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let concurrency = self.concurrency.as_ref().and_then(|c| c.key.as_deref()).map(|f| ("concurrency_key", f));
        let rate = self.rate.as_ref().and_then(|r| r.key.as_deref()).map(|f| ("rate_limit_key", f));
        concurrency.into_iter().chain(rate)
    }
}

/// The start time of the next start under a rate limit of `count` starts in any
/// window of `per` (`after` adds `per` to a time), given the latest starts
/// reserved before it, oldest first: `now` while fewer than `count` are
/// reserved within the window, else `per` after the `count`-th latest. The new
/// start joins `starts`, which keeps the latest `count`. Reservations never go
/// back in time, so a start never overtakes one reserved before it.
pub(crate) fn next_start<T: Copy + Ord>(starts: &mut Vec<T>, now: T, count: u32, after: impl Fn(T) -> T) -> T {
    let count = count.max(1) as usize;
    if starts.len() > count {
        starts.drain(..starts.len() - count);
    }
    let at = if starts.len() < count { now } else { now.max(after(starts[0])) };
    let at = starts.last().map_or(at, |&last| at.max(last));
    starts.push(at);
    if starts.len() > count {
        starts.remove(0);
    }
    at
}

/// A `rate_limit` text, `"<count>/<interval>"` (`"10/1s"`, `"100/1m"`), that
/// did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitError(pub(crate) String);

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RateLimitError {}

/// Parses `"<count>/<interval>"`: a count of at least 1 and a non-zero duration
/// in the duration grammar (`"10/1s"`, `"500/1h"`).
///
/// ```
/// use std::time::Duration;
/// use sagaflow_runtime::parse_rate_limit;
///
/// assert_eq!(parse_rate_limit("10/1s"), Ok((10, Duration::from_secs(1))));
/// assert!(parse_rate_limit("10 per second").is_err());
/// ```
///
/// # Errors
///
/// A [`RateLimitError`] saying which part is wrong.
pub fn parse_rate_limit(text: &str) -> Result<(u32, Duration), RateLimitError> {
    let Some((count, per)) = text.split_once('/') else {
        return Err(RateLimitError(format!("`{text}` is not `<count>/<interval>` (like `10/1s`)")));
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| RateLimitError(format!("the count `{}` of `{text}` is not a whole number", count.trim())))?;
    if count == 0 {
        return Err(RateLimitError(format!("the count of `{text}` must be at least 1")));
    }
    let per = super::duration::DurationArg::from(per.trim())
        .to_duration()
        .map_err(|e| RateLimitError(format!("the interval of `{text}`: {e}")))?;
    if per.is_zero() {
        return Err(RateLimitError(format!("the interval of `{text}` must be longer than zero")));
    }
    Ok((count, per))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_and_bad_ones_say_which_part_is_wrong() {
        assert_eq!(parse_rate_limit(" 3 / 250ms "), Ok((3, Duration::from_millis(250))));
        assert_eq!(parse_rate_limit("100/1m"), Ok((100, Duration::from_secs(60))));
        assert!(parse_rate_limit("10").unwrap_err().0.contains("<count>/<interval>"));
        assert!(parse_rate_limit("x/1s").unwrap_err().0.contains("count `x`"));
        assert!(parse_rate_limit("0/1s").unwrap_err().0.contains("at least 1"));
        assert!(parse_rate_limit("1/0s").unwrap_err().0.contains("longer than zero"));
        assert!(parse_rate_limit("1/soon").unwrap_err().0.starts_with("the interval of `1/soon`"));
    }

    #[test]
    fn at_most_count_starts_fall_in_any_window() {
        let mut starts = Vec::new();
        let plus = |t: u64| t + 1000;
        // Three per 1000: a burst of three, then each waits for the window.
        let got: Vec<u64> = (0..7).map(|_| next_start(&mut starts, 0, 3, plus)).collect();
        assert_eq!(got, [0, 0, 0, 1000, 1000, 1000, 2000]);
        // Later requests go at once when the window has room.
        assert_eq!(next_start(&mut starts, 5000, 3, plus), 5000);
        assert_eq!(starts.len(), 3, "only the latest `count` are kept");
    }

    #[test]
    fn a_key_is_the_field_s_text_and_a_missing_field_names_step_and_field() {
        let ctx = Context::from_json(serde_json::json!({ "tenant": "acme", "shard": 7 })).unwrap();
        assert_eq!(key_value("charge", "concurrency", Some("tenant"), &ctx).unwrap(), "acme");
        assert_eq!(key_value("charge", "concurrency", Some("shard"), &ctx).unwrap(), "7");
        assert_eq!(key_value("charge", "concurrency", None, &ctx).unwrap(), "");
        let err = key_value("charge", "rate_limit", Some("region"), &ctx).unwrap_err();
        assert_eq!(err.kind(), crate::model::kinds::LIMIT_KEY_MISSING);
        assert!(err.message().contains("step `charge`") && err.message().contains("`region`"), "{}", err.message());
    }
}
