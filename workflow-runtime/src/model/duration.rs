//! Durations as users write them: `"30s"`, `"5m"`, `"1h30m"`, `"7d"`, `Duration`,
//! milliseconds, `infinity`, or a function of the context.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sagaflow_rules::duration::GrammarError;

use super::context::Context;

/// Why a duration literal could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is not a duration (empty, a bad number, an unknown unit, a
    /// negative or too large value): see the grammar's error.
    #[error(transparent)]
    Grammar(#[from] GrammarError),
    /// Longer than [`MAX_DURATION`] (about 100 years): no schedule of the engine
    /// reaches that far, and instants that far ahead overflow clocks.
    #[error("invalid duration `{input}`: longer than the longest supported, {}", format_duration(MAX_DURATION))]
    TooLong {
        /// The value given.
        input: String,
    },
    /// `infinity` given where a finite duration is required.
    #[error("`infinity` is not allowed here: a finite duration is required")]
    NotFinite,
    /// A function of the context given where a fixed duration is required.
    #[error("a function of the context is not allowed here: a fixed duration is required")]
    NotStatic,
}

/// The longest duration the engine accepts anywhere (timeouts, retry delays and
/// caps, snoozes, awaits, dead-letter TTLs, delayed starts, intervals): 36,525
/// days, about a century. Longer values are rejected with
/// [`DurationError::TooLong`]; use `infinity` where a timeout should never fire.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// Checks that `d` is at most [`MAX_DURATION`]; `input` names it in the error.
pub(crate) fn in_range(d: Duration, input: impl FnOnce() -> String) -> Result<Duration, DurationError> {
    if d <= MAX_DURATION { Ok(d) } else { Err(DurationError::TooLong { input: input() }) }
}

/// Parses a duration literal.
///
/// Accepted: a number followed by a unit (`ms`, `s`, `m`, `h`, `d`, `w` or their
/// long forms such as `seconds`), several such parts (`1h30m`), a bare number of
/// milliseconds (`"1500"`), fractions (`"1.5h"`), and `infinity`. Returns `None`
/// for `infinity`. Durations longer than [`MAX_DURATION`] are rejected.
///
/// ```
/// use std::time::Duration;
/// use sagaflow_runtime::parse_duration;
///
/// assert_eq!(parse_duration("1h30m").unwrap(), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("250ms").unwrap(), Some(Duration::from_millis(250)));
/// assert_eq!(parse_duration("infinity").unwrap(), None);
/// assert!(parse_duration("30x").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Option<Duration>, DurationError> {
    match sagaflow_rules::duration::parse(input)? {
        None => Ok(None),
        Some(d) => in_range(d, || input.to_owned()).map(Some),
    }
}

/// Formats a duration the way this crate reads them (`"1h30m"`, `"250ms"`).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sagaflow_runtime::format_duration(Duration::from_secs(5400)), "1h30m");
/// ```
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut ms = d.as_millis();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// A timeout: a fixed duration, no limit at all, or a function of the context.
#[derive(Clone)]
pub enum Timeout {
    /// Give up after this long.
    After(Duration),
    /// Never time out.
    Infinity,
    /// Decide from the context each time the step starts.
    Dynamic(DynamicTimeout),
}

/// A function that picks a timeout from the context.
pub type DynamicTimeout = Arc<dyn Fn(&Context) -> Option<Duration> + Send + Sync>;

impl Timeout {
    /// The duration for this context; `None` means no limit.
    pub fn resolve(&self, ctx: &Context) -> Option<Duration> {
        match self {
            Timeout::After(d) => Some(*d),
            Timeout::Infinity => None,
            Timeout::Dynamic(f) => f(ctx),
        }
    }

    /// The fixed duration if there is one (for introspection and critical paths).
    pub fn fixed(&self) -> Option<Duration> {
        match self {
            Timeout::After(d) => Some(*d),
            _ => None,
        }
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeout::After(d) => write!(f, "Timeout({})", format_duration(*d)),
            Timeout::Infinity => f.write_str("Timeout(infinity)"),
            Timeout::Dynamic(_) => f.write_str("Timeout(<fn>)"),
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeout::After(d) => f.write_str(&format_duration(*d)),
            Timeout::Infinity => f.write_str("infinity"),
            Timeout::Dynamic(_) => f.write_str("dynamic"),
        }
    }
}

/// A duration as written by the user, read when the workflow is built.
///
/// Converts from `&str`/`String` (`"30s"`, `"infinity"`), [`Duration`], integers
/// (milliseconds) and [`Timeout`]. A bad literal is reported by `build()` with the
/// step and option it belongs to.
#[derive(Clone, Debug)]
pub struct DurationArg(ArgInner);

#[derive(Clone, Debug)]
enum ArgInner {
    Text(String),
    Millis(i128),
    Exact(Timeout),
}

impl DurationArg {
    /// Reads the value as a timeout (finite, infinite or dynamic). A finite value
    /// longer than [`MAX_DURATION`] is an error.
    pub fn to_timeout(&self) -> Result<Timeout, DurationError> {
        match &self.0 {
            ArgInner::Text(t) => Ok(match parse_duration(t)? {
                Some(d) => Timeout::After(d),
                None => Timeout::Infinity,
            }),
            ArgInner::Millis(ms) => millis(*ms).map(Timeout::After),
            ArgInner::Exact(Timeout::After(d)) => in_range(*d, || self.describe()).map(Timeout::After),
            ArgInner::Exact(t) => Ok(t.clone()),
        }
    }

    /// Reads the value as a finite, fixed duration.
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        match self.to_timeout()? {
            Timeout::After(d) => Ok(d),
            Timeout::Infinity => Err(DurationError::NotFinite),
            Timeout::Dynamic(_) => Err(DurationError::NotStatic),
        }
    }

    /// The text as given, for error messages.
    pub fn describe(&self) -> String {
        match &self.0 {
            ArgInner::Text(t) => t.clone(),
            ArgInner::Millis(ms) => format!("{ms}"),
            ArgInner::Exact(Timeout::After(d)) if *d > MAX_DURATION => format!("{d:?}"),
            ArgInner::Exact(t) => t.to_string(),
        }
    }
}

fn millis(ms: i128) -> Result<Duration, DurationError> {
    if ms < 0 {
        return Err(GrammarError::Negative { input: ms.to_string() }.into());
    }
    let d = u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| DurationError::from(GrammarError::Overflow { input: ms.to_string() }))?;
    in_range(d, || ms.to_string())
}

impl From<&str> for DurationArg {
    fn from(s: &str) -> Self {
        DurationArg(ArgInner::Text(s.to_owned()))
    }
}
impl From<String> for DurationArg {
    fn from(s: String) -> Self {
        DurationArg(ArgInner::Text(s))
    }
}
impl From<&String> for DurationArg {
    fn from(s: &String) -> Self {
        DurationArg(ArgInner::Text(s.clone()))
    }
}
impl From<Duration> for DurationArg {
    fn from(d: Duration) -> Self {
        DurationArg(ArgInner::Exact(Timeout::After(d)))
    }
}
impl From<Timeout> for DurationArg {
    fn from(t: Timeout) -> Self {
        DurationArg(ArgInner::Exact(t))
    }
}
macro_rules! millis_from {
    ($($t:ty),*) => {$(
        impl From<$t> for DurationArg {
            fn from(ms: $t) -> Self {
                DurationArg(ArgInner::Millis(ms as i128))
            }
        }
    )*};
}
millis_from!(u32, u64, i32, i64, usize);

/// The `infinity` timeout: never time out.
pub const INFINITY: Timeout = Timeout::Infinity;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(parse_duration("30s").unwrap(), s(30));
        assert_eq!(parse_duration("5m").unwrap(), s(300));
        assert_eq!(parse_duration("1h").unwrap(), s(3600));
        assert_eq!(parse_duration("7d").unwrap(), s(7 * 86_400));
        assert_eq!(parse_duration("2w").unwrap(), s(14 * 86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), s(5400));
        assert_eq!(parse_duration("1 hour, 30 minutes").unwrap(), s(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), s(5400));
        assert_eq!(parse_duration("30_000").unwrap(), Some(Duration::from_millis(30_000)));
        assert_eq!(parse_duration("250ms").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("Infinity").unwrap(), None);
    }

    #[test]
    fn rejects_bad_literals_naming_the_problem() {
        assert_eq!(parse_duration(""), Err(DurationError::Grammar(GrammarError::Empty)));
        let err = parse_duration("30x").unwrap_err();
        assert_eq!(err.to_string(), "invalid duration `30x`: unknown unit `x` (expected ms, s, m, h, d or w)");
        assert!(matches!(parse_duration("h"), Err(DurationError::Grammar(GrammarError::InvalidNumber { .. }))));
        assert!(matches!(parse_duration("-5s"), Err(DurationError::Grammar(GrammarError::Negative { .. }))));
        assert!(matches!(parse_duration("1e4d"), Err(DurationError::Grammar(GrammarError::UnknownUnit { .. }))));
        assert!(matches!(
            parse_duration("99999999999999999999w"),
            Err(DurationError::Grammar(GrammarError::Overflow { .. }))
        ));
    }

    #[test]
    fn rejects_durations_past_the_longest_supported() {
        assert_eq!(parse_duration("36525d").unwrap(), Some(MAX_DURATION));
        let err = parse_duration("36526d").unwrap_err();
        assert_eq!(err, DurationError::TooLong { input: "36526d".into() });
        assert_eq!(err.to_string(), "invalid duration `36526d`: longer than the longest supported, 36525d");
        assert!(matches!(DurationArg::from(Duration::MAX).to_timeout(), Err(DurationError::TooLong { .. })));
        assert!(matches!(DurationArg::from(u64::MAX).to_duration(), Err(DurationError::TooLong { .. })));
        assert_eq!(DurationArg::from(MAX_DURATION).to_duration().unwrap(), MAX_DURATION);
        let err = DurationArg::from(Duration::MAX).to_duration().unwrap_err();
        assert!(err.to_string().starts_with("invalid duration `18446744073709551615."), "{err}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["1h30m", "250ms", "7d", "1m1s", "0s"] {
            let d = parse_duration(text).unwrap().unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn args_convert() {
        assert_eq!(DurationArg::from(1500u64).to_duration().unwrap(), Duration::from_millis(1500));
        assert!(matches!(
            DurationArg::from(-1).to_duration(),
            Err(DurationError::Grammar(GrammarError::Negative { .. }))
        ));
        assert_eq!(DurationArg::from("infinity").to_duration(), Err(DurationError::NotFinite));
        assert!(matches!(DurationArg::from("infinity").to_timeout().unwrap(), Timeout::Infinity));
    }
}
