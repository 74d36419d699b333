//! The `#[step(..)]`, `#[graft(..)]` and `#[subworkflow(..)]` attributes: their
//! options, read into [`StepAttr`].

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use syn::spanned::Spanned;
use syn::{Ident, Lit, LitInt, LitStr, Meta};

use super::limits::{LimitAttrs, limit_option};
use super::options::{Opt, each_option, set};
use crate::values::{self, BackoffValue, DurationLit, Name, TimeoutValue, error, ident_text};

/// Which attribute marks a method.
#[derive(Clone, Debug)]
pub(crate) enum StepKind {
    /// `#[step]`.
    Step,
    /// `#[graft]`.
    Graft,
    /// `#[subworkflow(child, ...)]`.
    Subworkflow(Name),
}

impl StepKind {
    fn attr(&self) -> &'static str {
        match self {
            StepKind::Step => "#[step]",
            StepKind::Graft => "#[graft]",
            StepKind::Subworkflow(_) => "#[subworkflow]",
        }
    }
}

/// The options of `#[step(...)]`, `#[graft(...)]` and `#[subworkflow(...)]`.
pub(crate) struct StepAttr {
    pub(crate) kind: StepKind,
    pub(crate) name: Option<Opt<Name>>,
    pub(crate) after: Option<Opt<Vec<Name>>>,
    pub(crate) after_any: Option<Opt<Vec<Name>>>,
    pub(crate) after_group: Option<Opt<Vec<Name>>>,
    pub(crate) after_graft: Option<Opt<Vec<Name>>>,
    pub(crate) group: Option<Opt<Name>>,
    pub(crate) when: Option<Opt<Ident>>,
    pub(crate) timeout: Option<Opt<TimeoutValue>>,
    pub(crate) max_retries: Option<Opt<LitInt>>,
    pub(crate) retry_delay: Option<Opt<DurationLit>>,
    pub(crate) retry_backoff: Option<Opt<BackoffValue>>,
    pub(crate) retry_max_delay: Option<Opt<DurationLit>>,
    pub(crate) retry_jitter: Option<Opt<bool>>,
    pub(crate) retry_on: Option<Opt<Vec<Name>>>,
    pub(crate) no_retry_on: Option<Opt<Vec<Name>>>,
    pub(crate) on_error: Option<Opt<&'static str>>,
    pub(crate) rollback: Option<Opt<Ident>>,
    pub(crate) on_timeout: Option<Opt<Ident>>,
    pub(crate) await_approval: Option<Opt<bool>>,
    pub(crate) cancellable: Option<Opt<bool>>,
    pub(crate) cancel_grace: Option<Opt<DurationLit>>,
    pub(crate) context_key: Option<Opt<Name>>,
    pub(crate) circuit_breaker: Option<Opt<Name>>,
    pub(crate) circuit_breaker_opts: Option<Opt<BreakerAttr>>,
    pub(crate) description: Option<Opt<LitStr>>,
    pub(crate) limits: LimitAttrs,
}

/// Options accepted by `#[step]`, `#[graft]` and `#[subworkflow]`.
pub(crate) const STEP_OPTIONS: &[&str] = &[
    "name",
    "after",
    "after_any",
    "after_group",
    "after_graft",
    "group",
    "when",
    "timeout",
    "max_retries",
    "retry_delay",
    "retry_backoff",
    "retry_max_delay",
    "retry_jitter",
    "retry_on",
    "no_retry_on",
    "on_error",
    "rollback",
    "on_timeout",
    "await_approval",
    "cancellable",
    "cancel_grace",
    "context_key",
    "circuit_breaker",
    "circuit_breaker_opts",
    "description",
    "concurrency",
    "concurrency_key",
    "rate_limit",
    "rate_limit_key",
];

/// `circuit_breaker_opts(failure_threshold = 5, reset_timeout = "30s")`.
#[derive(Default)]
pub(crate) struct BreakerAttr {
    pub(crate) failure_threshold: Option<Opt<LitInt>>,
    pub(crate) reset_timeout: Option<Opt<DurationLit>>,
}

/// Options accepted by `circuit_breaker_opts(...)`.
pub(crate) const BREAKER_OPTIONS: &[&str] = &["failure_threshold", "reset_timeout"];

/// Parses one step attribute; `None` when it is too malformed to use (the error is
/// in `acc`).
pub(super) fn parse_step_attr(
    kind_name: &'static str,
    attr: &syn::Attribute,
    acc: &mut Accumulator,
) -> Option<StepAttr> {
    let items = match &attr.meta {
        Meta::Path(_) => Vec::new(),
        Meta::List(l) => acc.handle(NestedMeta::parse_meta_list(l.tokens.clone()).map_err(darling::Error::from))?,
        Meta::NameValue(nv) => {
            acc.push(error(nv.eq_token.span, format!("write `#[{kind_name}(option = value, ...)]`")));
            return None;
        }
    };
    let (kind, options) = match kind_name {
        "step" => (StepKind::Step, &items[..]),
        "graft" => (StepKind::Graft, &items[..]),
        _ => match items.first().and_then(child_name) {
            Some(child) => (StepKind::Subworkflow(child), &items[1..]),
            None => {
                acc.push(error(
                    attr.path().span(),
                    "`#[subworkflow]` needs the name of the workflow to run first, such as \
                     `#[subworkflow(send_notification, after = create_order)]`",
                ));
                return None;
            }
        },
    };
    let mut s = StepAttr {
        kind,
        name: None,
        after: None,
        after_any: None,
        after_group: None,
        after_graft: None,
        group: None,
        when: None,
        timeout: None,
        max_retries: None,
        retry_delay: None,
        retry_backoff: None,
        retry_max_delay: None,
        retry_jitter: None,
        retry_on: None,
        no_retry_on: None,
        on_error: None,
        rollback: None,
        on_timeout: None,
        await_approval: None,
        cancellable: None,
        cancel_grace: None,
        context_key: None,
        circuit_breaker: None,
        circuit_breaker_opts: None,
        description: None,
        limits: LimitAttrs::default(),
    };
    let attr_name = s.kind.attr();
    each_option(options, attr_name, STEP_OPTIONS, &[], acc, |name, key, meta, acc| match name {
        "name" => set(&mut s.name, key, values::name(meta, name, "a step name"), acc),
        "after" => set(&mut s.after, key, values::names(meta, name, "step name"), acc),
        "after_any" => set(&mut s.after_any, key, values::names(meta, name, "step name"), acc),
        "after_group" => set(&mut s.after_group, key, values::names(meta, name, "group name"), acc),
        "after_graft" => set(&mut s.after_graft, key, values::names(meta, name, "graft name"), acc),
        "group" => set(&mut s.group, key, values::name(meta, name, "a group name"), acc),
        "when" => set(&mut s.when, key, values::method(meta, name), acc),
        "timeout" => set(&mut s.timeout, key, values::timeout(meta, name), acc),
        "max_retries" => set(&mut s.max_retries, key, values::count(meta, name), acc),
        "retry_delay" => set(&mut s.retry_delay, key, values::duration(meta, name, false), acc),
        "retry_backoff" => set(&mut s.retry_backoff, key, values::backoff(meta, name), acc),
        "retry_max_delay" => set(&mut s.retry_max_delay, key, values::duration(meta, name, false), acc),
        "retry_jitter" => set(&mut s.retry_jitter, key, values::flag(meta, name), acc),
        "retry_on" => set(&mut s.retry_on, key, values::names(meta, name, "error kind"), acc),
        "no_retry_on" => set(&mut s.no_retry_on, key, values::names(meta, name, "error kind"), acc),
        "on_error" => set(&mut s.on_error, key, values::on_error(meta, name), acc),
        "rollback" => set(&mut s.rollback, key, values::method(meta, name), acc),
        "on_timeout" => set(&mut s.on_timeout, key, values::method(meta, name), acc),
        "await_approval" => set(&mut s.await_approval, key, values::flag(meta, name), acc),
        "cancellable" => set(&mut s.cancellable, key, values::flag(meta, name), acc),
        "cancel_grace" => set(&mut s.cancel_grace, key, values::duration(meta, name, false), acc),
        "context_key" => set(&mut s.context_key, key, values::name(meta, name, "a context key"), acc),
        "circuit_breaker" => set(&mut s.circuit_breaker, key, values::name(meta, name, "a circuit breaker name"), acc),
        "circuit_breaker_opts" => set(&mut s.circuit_breaker_opts, key, breaker(meta, acc), acc),
        "description" => set(&mut s.description, key, values::string(meta, name), acc),
        "concurrency" | "concurrency_key" | "rate_limit" | "rate_limit_key" => {
            limit_option(&mut s.limits, name, key, meta, "a context field", acc);
        }
        _ => unreachable!("every accepted option is handled"),
    });
    Some(s)
}

/// The first item of `#[subworkflow(...)]` when it names the child: `send_notification`
/// or `"send_notification"`.
fn child_name(item: &NestedMeta) -> Option<Name> {
    match item {
        NestedMeta::Meta(Meta::Path(p)) => {
            p.get_ident().map(|i| Name { value: ident_text(i), span: i.span() }).filter(|_| p.segments.len() == 1)
        }
        NestedMeta::Lit(Lit::Str(s)) if !s.value().trim().is_empty() => Some(Name { value: s.value(), span: s.span() }),
        _ => None,
    }
}

fn breaker(meta: &Meta, acc: &mut Accumulator) -> darling::Result<BreakerAttr> {
    let items = values::nested(meta, "circuit_breaker_opts", "failure_threshold = 5, reset_timeout = \"30s\"")?;
    let mut b = BreakerAttr::default();
    each_option(&items, "circuit_breaker_opts(...)", BREAKER_OPTIONS, &[], acc, |name, key, meta, acc| match name {
        "failure_threshold" => set(&mut b.failure_threshold, key, values::count(meta, name), acc),
        "reset_timeout" => set(&mut b.reset_timeout, key, values::duration(meta, name, false), acc),
        _ => unreachable!("every accepted option is handled"),
    });
    Ok(b)
}
