//! "Did you mean" suggestions (by the runtime's rule, `sagaflow_rules::suggest`)
//! and lists of accepted names for error messages.

pub(crate) use sagaflow_rules::suggest::closest;

/// `; did you mean `x`?` or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    sagaflow_rules::suggest::after_semicolon(closest(name, candidates))
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
