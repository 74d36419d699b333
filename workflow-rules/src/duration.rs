//! The duration grammar: `"30s"`, `"5m"`, `"1h30m"`, `"1 hour, 30 minutes"`,
//! `"1.5h"`, a bare number of milliseconds (`"1500"`), or `infinity`.

use std::time::Duration;

/// Why a text is not a duration. Exhaustive on purpose: a new way to be wrong
/// is one every user of the grammar has to name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The text was empty.
    #[error("empty duration: expected something like `30s`, `5m`, `1h` or `7d`")]
    Empty,
    /// A number could not be read.
    #[error("invalid duration `{input}`: expected a number before each unit")]
    InvalidNumber {
        /// The whole text given.
        input: String,
    },
    /// A unit that is not one of the known ones.
    #[error("invalid duration `{input}`: unknown unit `{unit}` (expected ms, s, m, h, d or w)")]
    UnknownUnit {
        /// The whole text given.
        input: String,
        /// The unit that was not understood.
        unit: String,
    },
    /// A negative value.
    #[error("invalid duration `{input}`: a duration cannot be negative")]
    Negative {
        /// The whole text given.
        input: String,
    },
    /// The value does not fit in a `Duration`.
    #[error("invalid duration `{input}`: too large")]
    Overflow {
        /// The whole text given.
        input: String,
    },
}

/// Reads a duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`, `w` or a long
/// form such as `seconds`), several such parts, a bare number of milliseconds,
/// or `infinity` (returned as `None`). Case and surrounding spaces do not matter.
///
/// ```
/// use std::time::Duration;
/// use sagaflow_rules::duration::parse;
///
/// assert_eq!(parse("1h30m"), Ok(Some(Duration::from_secs(5400))));
/// assert_eq!(parse("1500"), Ok(Some(Duration::from_millis(1500))));
/// assert_eq!(parse("Infinity"), Ok(None));
/// assert!(parse("30x").is_err());
/// ```
pub fn parse(input: &str) -> Result<Option<Duration>, GrammarError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(GrammarError::Empty);
    }
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "infinity" | "inf" | ":infinity") {
        return Ok(None);
    }
    if lower.starts_with('-') {
        return Err(GrammarError::Negative { input: input.to_owned() });
    }
    let overflow = || GrammarError::Overflow { input: input.to_owned() };
    if lower.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        let ms: u64 = lower.replace('_', "").parse().map_err(|_| overflow())?;
        return Ok(Some(Duration::from_millis(ms)));
    }
    let bad_number = || GrammarError::InvalidNumber { input: input.to_owned() };
    let mut total = Duration::ZERO;
    let mut rest = lower.as_str();
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad_number());
        }
        let number: f64 = rest[..num_len].replace('_', "").parse().map_err(|_| bad_number())?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start_matches([' ', ',']);
        let unit_secs = unit_seconds(unit)
            .ok_or_else(|| GrammarError::UnknownUnit { input: input.to_owned(), unit: unit.to_owned() })?;
        let part = Duration::try_from_secs_f64(number * unit_secs).map_err(|_| overflow())?;
        total = total.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(Some(total))
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ms" | "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_sums_and_bare_milliseconds() {
        assert_eq!(parse("1 hour, 30 minutes"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(parse("1.5h"), Ok(Some(Duration::from_secs(5400))));
        assert_eq!(parse("30_000"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(parse("2w"), Ok(Some(Duration::from_secs(1_209_600))));
        assert_eq!(parse(":infinity"), Ok(None));
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(parse("  "), Err(GrammarError::Empty));
        assert_eq!(parse("-5s"), Err(GrammarError::Negative { input: "-5s".into() }));
        assert_eq!(parse("s5"), Err(GrammarError::InvalidNumber { input: "s5".into() }));
        assert_eq!(parse("30x"), Err(GrammarError::UnknownUnit { input: "30x".into(), unit: "x".into() }));
        assert_eq!(parse("18446744073709551616"), Err(GrammarError::Overflow { input: "18446744073709551616".into() }));
        assert_eq!(
            parse("99999999999999999999w"),
            Err(GrammarError::Overflow { input: "99999999999999999999w".into() })
        );
    }
}
