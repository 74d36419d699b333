//! Duration literals, checked at compile time by the grammar the runtime reads
//! them with (`sagaflow_rules::duration`); the runtime parses the literal again
//! when the definition is built, and a unit test compares both on a corpus.

use std::time::Duration;

/// Parses a duration literal (`infinity` is `None`); the error reads like the
/// runtime's.
pub(crate) fn parse_duration(input: &str) -> Result<Option<Duration>, String> {
    sagaflow_rules::duration::parse(input).map_err(|e| e.to_string())
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
