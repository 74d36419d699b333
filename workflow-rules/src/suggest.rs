//! "Did you mean" suggestions for names that are likely typos.

/// The candidate closest to `name`, if one is close enough to be a likely typo
/// (Jaro-Winkler similarity of at least 0.8).
///
/// ```
/// use sagaflow_rules::suggest::closest;
///
/// assert_eq!(closest("tmeout", ["timeout", "after"]), Some("timeout"));
/// assert_eq!(closest("zzz", ["timeout", "after"]), None);
/// ```
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` for a suggestion, nothing without one: the tail of a
/// message that goes on after the name.
pub fn after_semicolon(suggestion: Option<&str>) -> String {
    suggestion.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
}

/// ` (did you mean `x`?)` for a suggestion, nothing without one.
pub fn in_parentheses(suggestion: Option<&str>) -> String {
    suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only_and_formats_them() {
        assert_eq!(closest("aftr", ["after", "after_any"]), Some("after"));
        assert_eq!(closest("x", []), None);
        assert_eq!(after_semicolon(Some("after")), "; did you mean `after`?");
        assert_eq!(in_parentheses(Some("after")), " (did you mean `after`?)");
        assert_eq!(after_semicolon(None), "");
        assert_eq!(in_parentheses(None), "");
    }
}
