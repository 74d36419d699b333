//! Passwords out of texts: store URLs carry them (`postgres://user:secret@host`,
//! `?password=secret`), and URLs end up in error messages.

/// The URL with its password replaced by `***`, wherever the URL carries it: in
/// the user information (`postgres://user:secret@host/db`) and in a `password`
/// query parameter (`postgres://user@host/db?password=secret`).
///
/// ```
/// use sagaflow_runtime::store::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/jobs"), "postgres://app:***@db:5432/jobs");
/// assert_eq!(
///     redact_url("postgres://app@db/jobs?sslmode=disable&password=s3cret&schema=x"),
///     "postgres://app@db/jobs?sslmode=disable&password=***&schema=x",
/// );
/// assert_eq!(redact_url("sqlite://orders.db"), "sqlite://orders.db");
/// ```
pub fn redact_url(url: &str) -> String {
    redact_secrets(url)
}

/// `text` with every password it shows replaced by `***`: the password of each
/// URL in it (`scheme://user:password@`) and the value of each `password=`
/// (any case; in a URL's query or in a `key=value` connection string).
pub fn redact_secrets(text: &str) -> String {
    redact_assignments(&redact_userinfo(text))
}

/// `scheme://user:secret@host` → `scheme://user:***@host`, for every URL in `text`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first of these; the user information is what
        // comes before its last `@`.
        let end = tail.find(['/', '?', '#', '`', '\'', '"', ' ', '\n', '\t', ')', '>']);
        let authority = &tail[..end.unwrap_or(tail.len())];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, pass)) if !pass.is_empty() => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    _ => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority.len()..];
    }
    out.push_str(rest);
    out
}

/// `password=secret` → `password=***` (any case), up to the next `&`, space,
/// quote, backtick or closing bracket.
fn redact_assignments(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(i) = lower[from..].find(KEY) {
        let start = from + i;
        // Only the key itself: `db_password=` is redacted too, `passwords=` is not a match.
        let value_start = start + KEY.len();
        let value_len = text[value_start..]
            .find(['&', ' ', '`', '\'', '"', ')', ']', '>', ',', ';', '\n', '\t'])
            .unwrap_or(text.len() - value_start);
        out.push_str(&text[from..value_start]);
        if value_len > 0 {
            out.push_str("***");
        }
        from = value_start + value_len;
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_go_wherever_they_are() {
        assert_eq!(redact_url("postgres://u:p%40ss@h:1/db?schema=s"), "postgres://u:***@h:1/db?schema=s");
        assert_eq!(redact_url("postgres://u@h/db?PASSWORD=x&schema=s"), "postgres://u@h/db?PASSWORD=***&schema=s");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db", "nothing to hide");
        assert_eq!(redact_url("postgres://u:@h/db"), "postgres://u:@h/db", "an empty password stays empty");
        let text = "PostgreSQL `postgres://app@db/x?password=hunter2`: connection refused; \
                    also host=db password=hunter2 user=app and mysql://root:hunter2@other";
        let clean = redact_secrets(text);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(clean.contains("?password=***`"), "{clean}");
        assert!(clean.contains("mysql://root:***@other"), "{clean}");
        assert_eq!(redact_secrets("no secrets: a=b"), "no secrets: a=b");
        assert_eq!(redact_secrets("ünïcödé password=ß€ after"), "ünïcödé password=*** after");
    }
}
