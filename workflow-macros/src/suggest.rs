//! "Did you mean" suggestions and lists of accepted names for error messages.

/// The closest candidate to `name`, if one is close enough to be a likely typo (the
/// same rule as the runtime's `BuildError` suggestions).
pub(crate) fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("tmeout", ["timeout", "after"]), Some("timeout"));
        assert_eq!(closest("zzz", ["timeout", "after"]), None);
        assert_eq!(did_you_mean("aftr", ["after", "after_any"]), "; did you mean `after`?");
        assert_eq!(list(["a", "b"]), "`a`, `b`");
    }
}
