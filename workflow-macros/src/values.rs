//! Option values as users write them, read from `syn::Meta` with spans kept for
//! error messages: names, method references, durations, numbers, flags and the
//! small enumerations (`retry_backoff`, `on_error`, `misfire`).

use std::fmt::Display;
use std::time::Duration;

use darling::Error;
use darling::ast::NestedMeta;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitInt, LitStr, Meta};

use crate::duration::parse_duration;
use crate::suggest;

/// A compile error at `span`.
pub(crate) fn error(span: Span, message: impl Display) -> Error {
    Error::from(syn::Error::new(span, message))
}

/// The text of an identifier without a raw prefix (`r#in` is `in`).
pub(crate) fn ident_text(ident: &Ident) -> String {
    let text = ident.to_string();
    text.strip_prefix("r#").map(str::to_owned).unwrap_or(text)
}

/// A name written as an identifier (`fetch`) or a string literal (`"fetch"`).
#[derive(Clone, Debug)]
pub(crate) struct Name {
    /// The name.
    pub(crate) value: String,
    /// Where it was written.
    pub(crate) span: Span,
}

/// `key = value`: the value, or an error saying how to write the option.
fn value_of<'a>(meta: &'a Meta, key: &str, example: &str) -> darling::Result<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Ok(ungroup(&nv.value)),
        Meta::Path(p) => Err(error(p.span(), format!("`{key}` needs a value: write `{key} = {example}`"))),
        Meta::List(l) => Err(error(l.path.span(), format!("`{key}` is not a list: write `{key} = {example}`"))),
    }
}

/// Strips the invisible groups that `macro_rules!` puts around expressions.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(g) => ungroup(&g.expr),
        e => e,
    }
}

fn single_ident(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => p.path.get_ident(),
        _ => None,
    }
}

fn name_of(expr: &Expr, what: &str) -> darling::Result<Name> {
    if let Some(ident) = single_ident(expr) {
        return Ok(Name { value: ident_text(ident), span: ident.span() });
    }
    if let Expr::Lit(l) = expr
        && let Lit::Str(s) = &l.lit
    {
        if s.value().trim().is_empty() {
            return Err(error(s.span(), format!("{what} cannot be empty")));
        }
        return Ok(Name { value: s.value(), span: s.span() });
    }
    Err(error(expr.span(), format!("expected {what}: an identifier or a string literal")))
}

/// One name: `key = name` or `key = "name"`.
pub(crate) fn name(meta: &Meta, key: &str, what: &str) -> darling::Result<Name> {
    name_of(value_of(meta, key, "name")?, what)
}

/// One name or a list: `key = a`, `key = "a"`, `key = [a, "b"]`.
pub(crate) fn names(meta: &Meta, key: &str, what: &str) -> darling::Result<Vec<Name>> {
    let expr = value_of(meta, key, "[a, b]")?;
    let mut errors = Error::accumulator();
    let names = match expr {
        Expr::Array(a) => {
            if a.elems.is_empty() {
                errors.push(error(a.span(), format!("`{key}` lists no {what}s")));
            }
            a.elems.iter().filter_map(|e| errors.handle(name_of(ungroup(e), what))).collect()
        }
        e => errors.handle(name_of(e, what)).into_iter().collect(),
    };
    errors.finish_with(names)
}

/// A method of the impl block: `key = method_name`.
pub(crate) fn method(meta: &Meta, key: &str) -> darling::Result<Ident> {
    let expr = value_of(meta, key, "method_name")?;
    single_ident(expr).cloned().ok_or_else(|| {
        error(expr.span(), format!("expected the name of a method of this impl block, such as `{key} = my_method`"))
    })
}

/// `key`, `key = true` or `key = false`.
pub(crate) fn flag(meta: &Meta, key: &str) -> darling::Result<bool> {
    match meta {
        Meta::Path(_) => Ok(true),
        Meta::NameValue(nv) => match ungroup(&nv.value) {
            Expr::Lit(syn::ExprLit { lit: Lit::Bool(b), .. }) => Ok(b.value),
            other => Err(error(other.span(), format!("expected `true` or `false`: write `{key}` or `{key} = false`"))),
        },
        Meta::List(l) => Err(error(l.path.span(), format!("`{key}` is not a list: write `{key}` or `{key} = false`"))),
    }
}

/// A whole number that fits in a `u32`.
pub(crate) fn count(meta: &Meta, key: &str) -> darling::Result<LitInt> {
    let expr = value_of(meta, key, "3")?;
    if let Expr::Lit(l) = expr
        && let Lit::Int(i) = &l.lit
    {
        return match i.base10_parse::<u32>() {
            Ok(_) if i.suffix().is_empty() || i.suffix() == "u32" => Ok(i.clone()),
            _ => Err(error(i.span(), format!("`{key}` must be a whole number from 0 to {}", u32::MAX))),
        };
    }
    Err(error(expr.span(), format!("expected a whole number for `{key}`, such as `{key} = 3`")))
}

/// The value of a `u32` literal accepted by [`count`].
pub(crate) fn count_value(lit: &LitInt) -> u32 {
    lit.base10_parse().unwrap_or_default()
}

/// A string literal: `key = "text"`.
pub(crate) fn string(meta: &Meta, key: &str) -> darling::Result<LitStr> {
    let expr = value_of(meta, key, "\"...\"")?;
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
        e => Err(error(e.span(), format!("expected a string literal: `{key} = \"...\"`"))),
    }
}

/// A type: `key = Signup`, `key = crate::model::Signup`, or a string literal holding
/// any type (`key = "Vec<Order>"`).
pub(crate) fn type_value(meta: &Meta, key: &str) -> darling::Result<syn::Type> {
    let expr = value_of(meta, key, "MyInput")?;
    match expr {
        Expr::Path(p) if p.attrs.is_empty() => syn::parse2::<syn::Type>(quote::ToTokens::to_token_stream(p))
            .map_err(|_| error(p.span(), format!("expected a type: write `{key} = MyInput`"))),
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => s
            .parse::<syn::Type>()
            .map_err(|_| error(s.span(), format!("expected a type in `{key} = \"...\"`, such as `\"Vec<Order>\"`"))),
        e => Err(error(e.span(), format!("expected a type: write `{key} = MyInput` (or `{key} = \"Vec<Order>\"`)"))),
    }
}

/// A fixed duration as written.
#[derive(Clone, Debug)]
pub(crate) enum DurationLit {
    /// `"30s"`, `"1h30m"`, `"infinity"`.
    Text {
        /// The literal.
        lit: LitStr,
        /// Its value; `None` for `infinity`.
        value: Option<Duration>,
    },
    /// A number of milliseconds.
    Millis {
        /// The literal.
        lit: LitInt,
        /// Its value.
        value: u64,
    },
    /// The bare identifier `infinity`.
    Infinity(Span),
}

impl DurationLit {
    /// The duration; `None` for `infinity`.
    pub(crate) fn value(&self) -> Option<Duration> {
        match self {
            DurationLit::Text { value, .. } => *value,
            DurationLit::Millis { value, .. } => Some(Duration::from_millis(*value)),
            DurationLit::Infinity(_) => None,
        }
    }

    /// Where it was written.
    pub(crate) fn span(&self) -> Span {
        match self {
            DurationLit::Text { lit, .. } => lit.span(),
            DurationLit::Millis { lit, .. } => lit.span(),
            DurationLit::Infinity(span) => *span,
        }
    }
}

const DURATION_EXAMPLES: &str =
    "a duration such as `\"30s\"`, `\"5m\"`, `\"1h30m\"`, `\"7d\"`, `\"250ms\"` or a number of milliseconds";

fn duration_of(expr: &Expr, key: &str, infinity: bool) -> darling::Result<DurationLit> {
    let lit = match expr {
        Expr::Lit(l) => &l.lit,
        e => {
            if let Some(ident) = single_ident(e)
                && ident == "infinity"
            {
                return finite(DurationLit::Infinity(ident.span()), key, infinity);
            }
            return Err(error(e.span(), format!("expected {DURATION_EXAMPLES}")));
        }
    };
    match lit {
        Lit::Str(s) => match parse_duration(&s.value()) {
            Ok(value) => finite(DurationLit::Text { lit: s.clone(), value }, key, infinity),
            Err(reason) => Err(error(s.span(), reason)),
        },
        Lit::Int(i) => match i.base10_parse::<u64>() {
            Ok(value) if i.suffix().is_empty() => Ok(DurationLit::Millis { lit: i.clone(), value }),
            _ => Err(error(i.span(), "a number of milliseconds must be an unsuffixed whole number")),
        },
        other => Err(error(other.span(), format!("expected {DURATION_EXAMPLES}"))),
    }
}

fn finite(d: DurationLit, key: &str, infinity: bool) -> darling::Result<DurationLit> {
    if d.value().is_none() && !infinity {
        return Err(error(d.span(), format!("`infinity` is not allowed for `{key}`: a finite duration is required")));
    }
    Ok(d)
}

/// A duration literal; `infinity` only when `infinity` is true.
pub(crate) fn duration(meta: &Meta, key: &str, infinity: bool) -> darling::Result<DurationLit> {
    duration_of(value_of(meta, key, "\"30s\"")?, key, infinity)
}

/// `rate_limit = "10/1s"`: at most `count` starts in any window of `per`.
pub(crate) struct RateLit {
    pub(crate) count: u32,
    pub(crate) per: DurationLit,
    pub(crate) span: Span,
}

/// `"<count>/<interval>"`: a count of at least 1 and a non-zero duration.
pub(crate) fn rate_limit(meta: &Meta, key: &str) -> darling::Result<RateLit> {
    let s = string(meta, key)?;
    let text = s.value();
    let Some((count, per)) = text.split_once('/') else {
        return Err(error(
            s.span(),
            format!("`{key}` is `\"<count>/<interval>\"`, such as `\"10/1s\"` or `\"100/1m\"`"),
        ));
    };
    let count: u32 = match count.trim().parse() {
        Ok(0) => return Err(error(s.span(), format!("the count of `{key}` must be at least 1"))),
        Ok(n) => n,
        Err(_) => {
            return Err(error(s.span(), format!("the count `{}` of `{key}` is not a whole number", count.trim())));
        }
    };
    let value = match parse_duration(per.trim()) {
        Ok(Some(d)) if !d.is_zero() => d,
        Ok(_) => {
            return Err(error(s.span(), format!("the interval of `{key}` must be a finite duration longer than zero")));
        }
        Err(reason) => return Err(error(s.span(), format!("the interval of `{key}`: {reason}"))),
    };
    let per = DurationLit::Text { lit: LitStr::new(per.trim(), s.span()), value: Some(value) };
    Ok(RateLit { count, per, span: s.span() })
}

/// A timeout: a duration literal, `infinity`, or a method of the context.
#[derive(Clone, Debug)]
pub(crate) enum TimeoutValue {
    /// A fixed duration or `infinity`.
    Fixed(DurationLit),
    /// A method computing it.
    Method(Ident),
}

/// `timeout = "30s" | 30_000 | infinity | method`.
pub(crate) fn timeout(meta: &Meta, key: &str) -> darling::Result<TimeoutValue> {
    let expr = value_of(meta, key, "\"30s\"")?;
    if let Some(ident) = single_ident(expr)
        && ident != "infinity"
    {
        return Ok(TimeoutValue::Method(ident.clone()));
    }
    duration_of(expr, key, true).map(TimeoutValue::Fixed)
}

/// `timeout = "30s" | 30_000 | infinity` where a method is not allowed (the
/// workflow's timeout is fixed when an execution starts).
pub(crate) fn fixed_timeout(meta: &Meta, key: &str) -> darling::Result<DurationLit> {
    let expr = value_of(meta, key, "\"30s\"")?;
    if let Some(ident) = single_ident(expr)
        && ident != "infinity"
    {
        return Err(error(
            ident.span(),
            format!("`{key}` cannot be a function: write {DURATION_EXAMPLES}, or `infinity`"),
        ));
    }
    duration_of(expr, key, true)
}

/// A backoff: `fixed`, `exponential`, `linear` or a method `(attempt, base) -> Duration`.
#[derive(Clone, Debug)]
pub(crate) enum BackoffValue {
    /// One of the named strategies: `Fixed`, `Exponential` or `Linear`.
    Named(&'static str),
    /// A method computing each delay.
    Method(Ident),
}

/// `retry_backoff = fixed | exponential | linear | method`.
pub(crate) fn backoff(meta: &Meta, key: &str) -> darling::Result<BackoffValue> {
    let expr = value_of(meta, key, "exponential")?;
    let text = match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some((s.value(), s.span())),
        e => single_ident(e).map(|i| (ident_text(i), i.span())),
    };
    match text {
        Some((t, _)) if t == "fixed" => Ok(BackoffValue::Named("Fixed")),
        Some((t, _)) if t == "exponential" => Ok(BackoffValue::Named("Exponential")),
        Some((t, _)) if t == "linear" => Ok(BackoffValue::Named("Linear")),
        _ => match single_ident(expr) {
            Some(ident) => Ok(BackoffValue::Method(ident.clone())),
            None => Err(error(
                expr.span(),
                "expected `fixed`, `exponential`, `linear`, or the name of a method `(attempt, base_delay) -> Duration`",
            )),
        },
    }
}

/// `on_error = fail | skip | continue`: the variant of `OnError`.
pub(crate) fn on_error(meta: &Meta, key: &str) -> darling::Result<&'static str> {
    let expr = value_of(meta, key, "skip")?;
    let (text, span) = match expr {
        Expr::Continue(c) if c.label.is_none() => ("continue".to_owned(), c.continue_token.span),
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => (s.value(), s.span()),
        e => match single_ident(e) {
            Some(i) => (ident_text(i), i.span()),
            None => return Err(error(e.span(), "expected `fail`, `skip` or `continue`")),
        },
    };
    one_of(&text, span, &[("fail", "Fail"), ("skip", "Skip"), ("continue", "Continue")])
}

/// `misfire = run_once | skip | run_all`: the variant of `Misfire`.
pub(crate) fn misfire(meta: &Meta, key: &str) -> darling::Result<&'static str> {
    let expr = value_of(meta, key, "run_once")?;
    let (text, span) = match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => (s.value(), s.span()),
        e => match single_ident(e) {
            Some(i) => (ident_text(i), i.span()),
            None => return Err(error(e.span(), "expected `run_once`, `skip` or `run_all`")),
        },
    };
    one_of(&text, span, &[("run_once", "RunOnce"), ("skip", "Skip"), ("run_all", "RunAll")])
}

fn one_of(text: &str, span: Span, choices: &[(&str, &'static str)]) -> darling::Result<&'static str> {
    if let Some((_, variant)) = choices.iter().find(|(spelling, _)| *spelling == text) {
        return Ok(variant);
    }
    let spellings = choices.iter().map(|(s, _)| *s);
    Err(error(
        span,
        format!(
            "unknown value `{text}`{}\nexpected one of: {}",
            suggest::did_you_mean(text, spellings.clone()),
            suggest::list(spellings)
        ),
    ))
}

/// A literal metadata value: string, integer, float or bool.
pub(crate) fn literal(meta: &Meta, key: &str) -> darling::Result<Lit> {
    let expr = value_of(meta, key, "\"value\"")?;
    match expr {
        Expr::Lit(l) if matches!(l.lit, Lit::Str(_) | Lit::Int(_) | Lit::Float(_) | Lit::Bool(_)) => Ok(l.lit.clone()),
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => match ungroup(&u.expr) {
            Expr::Lit(l) if matches!(l.lit, Lit::Int(_) | Lit::Float(_)) => {
                let negated = format!("-{}", quote::ToTokens::to_token_stream(&l.lit));
                Ok(match &l.lit {
                    Lit::Int(_) => Lit::Int(LitInt::new(&negated, u.span())),
                    _ => Lit::Float(syn::LitFloat::new(&negated, u.span())),
                })
            }
            e => Err(error(e.span(), "expected a string, number or boolean literal")),
        },
        e => Err(error(e.span(), "expected a string, number or boolean literal")),
    }
}

/// `key(...)`: the nested options.
pub(crate) fn nested(meta: &Meta, key: &str, example: &str) -> darling::Result<Vec<NestedMeta>> {
    match meta {
        Meta::List(l) => NestedMeta::parse_meta_list(l.tokens.clone()).map_err(Error::from),
        other => Err(error(other.span(), format!("`{key}` takes a list of options: write `{key}({example})`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn msg(e: Error) -> String {
        syn::Error::from(e).to_string()
    }

    #[test]
    fn names_accept_idents_strings_and_lists() {
        let m: Meta = parse_quote!(after = [a, "b-c"]);
        let v: Vec<String> = names(&m, "after", "step name").unwrap().into_iter().map(|n| n.value).collect();
        assert_eq!(v, ["a", "b-c"]);
        let m: Meta = parse_quote!(after = a);
        assert_eq!(names(&m, "after", "step name").unwrap()[0].value, "a");
        let m: Meta = parse_quote!(after);
        assert_eq!(msg(names(&m, "after", "step name").unwrap_err()), "`after` needs a value: write `after = [a, b]`");
        let m: Meta = parse_quote!(after = 3);
        assert_eq!(
            msg(names(&m, "after", "step name").unwrap_err()),
            "expected step name: an identifier or a string literal"
        );
    }

    #[test]
    fn durations_follow_the_runtime_grammar() {
        let m: Meta = parse_quote!(timeout = "1h30m");
        assert_eq!(duration(&m, "timeout", false).unwrap().value(), Some(Duration::from_secs(5400)));
        let m: Meta = parse_quote!(timeout = 1500);
        assert_eq!(duration(&m, "timeout", false).unwrap().value(), Some(Duration::from_millis(1500)));
        let m: Meta = parse_quote!(timeout = infinity);
        assert!(duration(&m, "timeout", true).unwrap().value().is_none());
        assert_eq!(
            msg(duration(&m, "retry_delay", false).unwrap_err()),
            "`infinity` is not allowed for `retry_delay`: a finite duration is required"
        );
        let m: Meta = parse_quote!(timeout = "30x");
        assert_eq!(
            msg(duration(&m, "timeout", true).unwrap_err()),
            "invalid duration `30x`: unknown unit `x` (expected ms, s, m, h, d or w)"
        );
    }

    #[test]
    fn timeouts_take_methods_only_where_allowed() {
        let m: Meta = parse_quote!(timeout = by_size);
        assert!(matches!(timeout(&m, "timeout").unwrap(), TimeoutValue::Method(i) if i == "by_size"));
        assert!(msg(fixed_timeout(&m, "timeout").unwrap_err()).starts_with("`timeout` cannot be a function: write "));
        let m: Meta = parse_quote!(timeout = infinity);
        assert!(matches!(timeout(&m, "timeout").unwrap(), TimeoutValue::Fixed(DurationLit::Infinity(_))));
        assert!(fixed_timeout(&m, "timeout").unwrap().value().is_none());
    }

    #[test]
    fn metadata_literals_may_be_negative() {
        let m: Meta = parse_quote!(offset = -3);
        let Lit::Int(i) = literal(&m, "offset").unwrap() else { panic!("an integer literal") };
        assert_eq!(i.base10_parse::<i64>().unwrap(), -3);
    }

    #[test]
    fn enumerations_suggest_the_closest_value() {
        let m: Meta = parse_quote!(on_error = continue);
        assert_eq!(on_error(&m, "on_error").unwrap(), "Continue");
        let m: Meta = parse_quote!(on_error = skp);
        assert_eq!(
            msg(on_error(&m, "on_error").unwrap_err()),
            "unknown value `skp`; did you mean `skip`?\nexpected one of: `fail`, `skip`, `continue`"
        );
        let m: Meta = parse_quote!(retry_backoff = my_backoff);
        assert!(matches!(backoff(&m, "retry_backoff").unwrap(), BackoffValue::Method(_)));
    }

    #[test]
    fn counts_are_u32() {
        let m: Meta = parse_quote!(max_retries = 5);
        assert_eq!(count_value(&count(&m, "max_retries").unwrap()), 5);
        let m: Meta = parse_quote!(max_retries = 5_000_000_000);
        assert_eq!(
            msg(count(&m, "max_retries").unwrap_err()),
            "`max_retries` must be a whole number from 0 to 4294967295"
        );
    }
}
