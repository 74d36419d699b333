//! The duration grammar of `sagaflow_runtime::parse_duration`, checked at compile time
//! (the runtime parses the same literal again when the definition is built; a unit
//! test compares both parsers on a corpus).

use std::time::Duration;

/// Parses a duration literal: a number and a unit (`ms`, `s`, `m`, `h`, `d`, `w` or a
/// long form such as `seconds`), several such parts (`1h30m`), a bare number of
/// milliseconds, or `infinity` (returned as `None`). The error reads like the
/// runtime's.
pub(crate) fn parse_duration(input: &str) -> Result<Option<Duration>, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("empty duration: expected something like `30s`, `5m`, `1h` or `7d`".to_owned());
    }
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "infinity" | "inf" | ":infinity") {
        return Ok(None);
    }
    if lower.starts_with('-') {
        return Err(format!("invalid duration `{input}`: a duration cannot be negative"));
    }
    let overflow = || format!("invalid duration `{input}`: too large");
    if lower.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        let ms: u64 = lower.replace('_', "").parse().map_err(|_| overflow())?;
        return Ok(Some(Duration::from_millis(ms)));
    }
    let bad_number = || format!("invalid duration `{input}`: expected a number before each unit");
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
        let unit_secs = unit_seconds(unit).ok_or_else(|| {
            format!("invalid duration `{input}`: unknown unit `{unit}` (expected ms, s, m, h, d or w)")
        })?;
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

    /// The macro accepts exactly what the runtime accepts, with the same value.
    #[test]
    fn agrees_with_the_runtime() {
        let corpus = [
            "30s",
            "5m",
            "1h",
            "7d",
            "2w",
            "1h30m",
            "1 hour, 30 minutes",
            "1.5h",
            "30_000",
            "250ms",
            "0",
            "Infinity",
            "inf",
            ":infinity",
            "",
            "  ",
            "30x",
            "h",
            "-5s",
            "1e4d",
            "99999999999999999999w",
            "1..5s",
            "10 seconds",
            "3 days 4 hours",
            "18446744073709551616",
            "5m 30",
            "1.h",
            "_5s",
            "s5",
        ];
        for text in corpus {
            let ours = parse_duration(text);
            let theirs = sagaflow_runtime::parse_duration(text);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (Err(a), Err(b)) => assert_eq!(a, &b.to_string(), "{text:?}"),
                _ => panic!("{text:?}: macro says {ours:?}, runtime says {theirs:?}"),
            }
        }
    }
}
