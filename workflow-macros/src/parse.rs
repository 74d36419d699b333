//! Parsing: the `#[workflow]` options, the impl block, its methods and the
//! `#[step]`/`#[graft]`/`#[subworkflow]` attributes on them (which are removed from
//! the item). Only syntax is checked here; meaning is checked in `validate`.

use std::collections::BTreeSet;

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, ItemImpl, Lit, LitInt, LitStr, Meta, ReceiverKind, Type};

use crate::suggest;
use crate::values::{self, BackoffValue, DurationLit, Name, RateLit, TimeoutValue, error, ident_text};

/// One option as written: the key (errors about the option point at it) and the value.
#[derive(Clone, Debug)]
pub(crate) struct Opt<T> {
    pub(crate) key: Ident,
    pub(crate) value: T,
}

/// The options of `#[workflow(...)]`.
#[derive(Default)]
pub(crate) struct WorkflowAttr {
    pub(crate) name: Option<Opt<LitStr>>,
    pub(crate) krate: Option<Opt<syn::Path>>,
    pub(crate) timeout: Option<Opt<DurationLit>>,
    pub(crate) max_retries: Option<Opt<LitInt>>,
    pub(crate) retry_delay: Option<Opt<DurationLit>>,
    pub(crate) retry_max_delay: Option<Opt<DurationLit>>,
    pub(crate) retry_backoff: Option<Opt<BackoffValue>>,
    pub(crate) step_timeout: Option<Opt<TimeoutValue>>,
    pub(crate) step_max_retries: Option<Opt<LitInt>>,
    pub(crate) step_retry_delay: Option<Opt<DurationLit>>,
    pub(crate) on_failure: Option<Opt<Ident>>,
    pub(crate) on_success: Option<Opt<Ident>>,
    pub(crate) on_cancel: Option<Opt<Ident>>,
    pub(crate) on_step_error: Option<Opt<Ident>>,
    pub(crate) dead_letter: Option<Opt<bool>>,
    pub(crate) dead_letter_ttl: Option<Opt<DurationLit>>,
    pub(crate) retention: Option<Opt<DurationLit>>,
    pub(crate) tags: Option<Opt<Vec<Name>>>,
    pub(crate) metadata: Option<Opt<Vec<(Ident, Lit)>>>,
    pub(crate) step_concurrency: Option<Opt<LitInt>>,
    pub(crate) limits: LimitAttrs,
    pub(crate) description: Option<Opt<LitStr>>,
    pub(crate) version: Option<Opt<LitStr>>,
    pub(crate) schedules: Vec<Opt<ScheduleAttr>>,
    pub(crate) on_event: Option<Opt<Vec<Name>>>,
    pub(crate) input: Option<Opt<Type>>,
    /// `input = ...` was written but is not a type (already reported).
    pub(crate) input_invalid: bool,
}

/// Options accepted by `#[workflow]`.
pub(crate) const WORKFLOW_OPTIONS: &[&str] = &[
    "name",
    "crate",
    "timeout",
    "max_retries",
    "retry_delay",
    "retry_max_delay",
    "retry_backoff",
    "step_timeout",
    "step_max_retries",
    "step_retry_delay",
    "on_failure",
    "on_success",
    "on_cancel",
    "on_step_error",
    "dead_letter",
    "dead_letter_ttl",
    "retention",
    "tags",
    "metadata",
    "step_concurrency",
    "concurrency",
    "concurrency_key",
    "rate_limit",
    "rate_limit_key",
    "description",
    "version",
    "schedule",
    "on_event",
    "input",
];

/// One `schedule(...)`.
#[derive(Default)]
pub(crate) struct ScheduleAttr {
    pub(crate) trigger: Option<Opt<Trigger>>,
    pub(crate) start_at: Option<Opt<LitStr>>,
    pub(crate) end_at: Option<Opt<LitStr>>,
    pub(crate) timezone: Option<Opt<LitStr>>,
    pub(crate) misfire: Option<Opt<&'static str>>,
}

/// What starts a scheduled execution.
pub(crate) enum Trigger {
    /// `cron = "..."` or `cron = ["...", ...]`.
    Cron(Vec<LitStr>),
    /// `every = "5m"`.
    Every(DurationLit),
    /// `at = "2025-12-25T00:00:00Z"`.
    At(LitStr),
    /// `in = "30m"`.
    In(DurationLit),
}

/// Options accepted by `schedule(...)`.
pub(crate) const SCHEDULE_OPTIONS: &[&str] =
    &["cron", "every", "at", "in", "start_at", "end_at", "timezone", "misfire"];

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

/// `concurrency`, `concurrency_key`, `rate_limit` and `rate_limit_key`: a
/// step's or a workflow's limits across executions.
#[derive(Default)]
pub(crate) struct LimitAttrs {
    pub(crate) concurrency: Option<Opt<LitInt>>,
    pub(crate) concurrency_key: Option<Opt<Name>>,
    pub(crate) rate_limit: Option<Opt<RateLit>>,
    pub(crate) rate_limit_key: Option<Opt<Name>>,
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

/// How a method takes `self`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Receiver {
    /// An associated function.
    None,
    /// `&self`.
    Ref,
    /// `self`, `&mut self`, `self: Box<Self>`...: not usable (spanned at the receiver).
    Unsupported(Span),
}

/// A parameter after the receiver.
#[derive(Clone, Debug)]
pub(crate) struct Param {
    /// Declared as a reference (`&Context`): the argument is passed borrowed.
    pub(crate) by_ref: bool,
    /// The parameter's type, where type errors about it point.
    pub(crate) span: Span,
    /// The parameter's type.
    pub(crate) ty: Type,
    /// The parameter's name, when its pattern is a plain identifier (`account`,
    /// `mut account`).
    pub(crate) ident: Option<Ident>,
    /// Where the pattern is (errors about the parameter's name point here).
    pub(crate) pat_span: Span,
    /// `#[from(..)]`, `#[input]` or `#[signal(..)]`: the parameter is a typed input.
    pub(crate) typed: Option<ParamAttr>,
    /// Its typed-input attribute was written but could not be read (already
    /// reported): the parameter is neither a typed input nor the context.
    pub(crate) typed_invalid: bool,
}

/// The attribute that makes a parameter a typed input.
#[derive(Clone, Debug)]
pub(crate) enum ParamAttr {
    /// `#[from(step)]`: the output of that step (for a graft, the outputs of the steps
    /// it added).
    From {
        /// The attribute's path (errors about the attribute point here).
        attr: Span,
        /// The step read.
        step: Name,
    },
    /// `#[input]` or `#[input(field)]`: the workflow's typed input, or one field of it.
    Input {
        /// The attribute's path.
        attr: Span,
        /// The field named in the attribute (otherwise the parameter's name).
        field: Option<Name>,
    },
    /// `#[signal("name")]` or `#[signal("name", timeout = "48h")]`: the payload of
    /// a signal; the step waits for it parked.
    Signal {
        /// The attribute's path.
        attr: Span,
        /// The signal's name.
        name: Name,
        /// How long the step waits at most.
        timeout: Option<DurationLit>,
    },
}

impl ParamAttr {
    /// Where the attribute was written.
    pub(crate) fn span(&self) -> Span {
        match self {
            ParamAttr::From { attr, .. } | ParamAttr::Input { attr, .. } | ParamAttr::Signal { attr, .. } => *attr,
        }
    }

    /// How it is written, for messages.
    pub(crate) fn written(&self) -> &'static str {
        match self {
            ParamAttr::From { .. } => "#[from(..)]",
            ParamAttr::Input { .. } => "#[input]",
            ParamAttr::Signal { .. } => "#[signal(..)]",
        }
    }
}

/// The parameter attributes consumed by `#[workflow]`, found by the last segment of
/// their path.
pub(crate) const PARAM_ATTRIBUTES: &[&str] = &["from", "input", "signal"];

/// A method of the impl block, as far as calling it from generated code matters.
#[derive(Clone, Debug)]
pub(crate) struct Method {
    pub(crate) ident: Ident,
    pub(crate) receiver: Receiver,
    pub(crate) asyncness: Option<Span>,
    pub(crate) params: Vec<Param>,
    /// Span of type or const parameters, which generated code cannot supply.
    pub(crate) generics: Option<Span>,
    /// The return type (or the name when there is none): where return-type errors point.
    pub(crate) output_span: Span,
    /// The return type as written (`None` for a method returning `()`).
    pub(crate) output: Option<Type>,
}

/// A method marked `#[query]`.
pub(crate) struct QueryDecl {
    /// Index into [`Input::methods`].
    pub(crate) method: usize,
}

/// A method marked as a step.
pub(crate) struct StepDecl {
    pub(crate) attr: StepAttr,
    /// Index into [`Input::methods`].
    pub(crate) method: usize,
}

/// Everything `#[workflow]` read.
pub(crate) struct Input {
    pub(crate) attr: WorkflowAttr,
    /// The impl block, without the step attributes.
    pub(crate) item: ItemImpl,
    pub(crate) steps: Vec<StepDecl>,
    pub(crate) queries: Vec<QueryDecl>,
    pub(crate) methods: Vec<Method>,
    /// Where the attribute was written (errors about the whole workflow point here).
    pub(crate) call_site: Span,
}

/// The attributes consumed by `#[workflow]`, found by the last segment of their path.
pub(crate) const INNER_ATTRIBUTES: &[&str] = &["step", "graft", "subworkflow", "query"];

/// Parses the attribute arguments and the impl block. `Err` only when the item is not
/// an impl block at all; every other problem is pushed to `acc`.
pub(crate) fn parse(args: TokenStream, item: TokenStream, acc: &mut Accumulator) -> Result<Input, syn::Error> {
    let mut item: ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`#[workflow]` goes on an impl block: `#[workflow(name = \"...\")] impl MyWorkflow { .. }`",
        )
    })?;
    let call_site = Span::call_site();
    let attr = parse_workflow_attr(args, acc);
    if let Some((path, _)) = &item.trait_ {
        acc.push(error(
            path.span(),
            "`#[workflow]` goes on an inherent impl block (`impl MyWorkflow { .. }`), not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        acc.push(error(
            item.generics.params.span(),
            "`#[workflow]` does not support generic impl blocks: a workflow has one name and one definition",
        ));
    }
    if !matches!(&*item.self_ty, Type::Path(p) if p.qself.is_none()) {
        acc.push(error(item.self_ty.span(), "`#[workflow]` goes on the impl block of a named type"));
    }
    let mut steps = Vec::new();
    let mut queries = Vec::new();
    let mut methods = Vec::new();
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(f) => {
                let attrs = take_inner_attributes(&mut f.attrs);
                let index = methods.len();
                methods.push(method_of(&mut f.sig, acc));
                let mut first: Option<&'static str> = None;
                for a in attrs {
                    let Some(kind_name) = inner_name(&a) else { continue };
                    if let Some(prev) = first {
                        let why = if "query" == kind_name || "query" == prev {
                            "a method is a step or a query, not both"
                        } else {
                            "a method is one kind of step"
                        };
                        acc.push(error(
                            a.path().span(),
                            format!("`#[{kind_name}]` cannot be combined with `#[{prev}]`: {why}"),
                        ));
                        continue;
                    }
                    first = Some(kind_name);
                    if kind_name == "query" {
                        if !matches!(a.meta, Meta::Path(_)) {
                            acc.push(error(
                                a.path().span(),
                                "`#[query]` takes no options: the query is named after its method",
                            ));
                        }
                        queries.push(QueryDecl { method: index });
                        continue;
                    }
                    if let Some(attr) = parse_step_attr(kind_name, &a, acc) {
                        steps.push(StepDecl { attr, method: index });
                    }
                }
            }
            ImplItem::Const(c) => reject_inner(&mut c.attrs, acc),
            ImplItem::Type(t) => reject_inner(&mut t.attrs, acc),
            ImplItem::Macro(m) => reject_inner(&mut m.attrs, acc),
            _ => {}
        }
    }
    Ok(Input { attr, item, steps, queries, methods, call_site })
}

/// `step`, `graft` or `subworkflow` when the attribute is one of ours.
fn inner_name(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?;
    INNER_ATTRIBUTES.iter().copied().find(|n| last.ident == n)
}

fn take_inner_attributes(attrs: &mut Vec<syn::Attribute>) -> Vec<syn::Attribute> {
    let (ours, rest) = std::mem::take(attrs).into_iter().partition(|a| inner_name(a).is_some());
    *attrs = rest;
    ours
}

fn reject_inner(attrs: &mut Vec<syn::Attribute>, acc: &mut Accumulator) {
    for a in take_inner_attributes(attrs) {
        let name = inner_name(&a).unwrap_or("step");
        acc.push(error(a.path().span(), format!("`#[{name}]` goes on a method (`fn`) of the impl block")));
    }
}

fn method_of(sig: &mut syn::Signature, acc: &mut Accumulator) -> Method {
    let receiver = match sig.receiver() {
        None => Receiver::None,
        Some(r) => match &r.kind {
            ReceiverKind::Reference(_, _, None) => Receiver::Ref,
            ReceiverKind::Typed(_, ty) if matches!(&**ty, Type::Reference(t) if t.mutability.is_none()) => {
                Receiver::Ref
            }
            _ => Receiver::Unsupported(r.span()),
        },
    };
    let mut params = Vec::new();
    for arg in &mut sig.inputs {
        match arg {
            FnArg::Typed(t) => {
                let written = t.attrs.iter().any(|a| param_attr_name(a).is_some());
                let typed = param_attr(&mut t.attrs, acc);
                let typed_invalid = written && typed.is_none();
                let ident = match &*t.pat {
                    syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
                    _ => None,
                };
                params.push(Param {
                    by_ref: matches!(&*t.ty, Type::Reference(_)),
                    span: t.ty.span(),
                    ty: (*t.ty).clone(),
                    ident,
                    pat_span: t.pat.span(),
                    typed,
                    typed_invalid,
                });
            }
            FnArg::Receiver(r) => {
                if let Some(a) = take_param_attributes(&mut r.attrs).first() {
                    acc.push(error(a.path().span(), "a typed input is a parameter after `self`, not `self` itself"));
                }
            }
        }
    }
    let generics = sig.generics.params.iter().find(|p| !matches!(p, syn::GenericParam::Lifetime(_))).map(|p| p.span());
    let (output_span, output) = match &sig.output {
        syn::ReturnType::Type(_, ty) => (ty.span(), Some((**ty).clone())),
        syn::ReturnType::Default => (sig.ident.span(), None),
    };
    Method {
        ident: sig.ident.clone(),
        receiver,
        asyncness: sig.asyncness.map(|a| a.span),
        params,
        generics,
        output_span,
        output,
    }
}

fn param_attr_name(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?;
    PARAM_ATTRIBUTES.iter().copied().find(|n| last.ident == n)
}

fn take_param_attributes(attrs: &mut Vec<syn::Attribute>) -> Vec<syn::Attribute> {
    let (ours, rest) = std::mem::take(attrs).into_iter().partition(|a| param_attr_name(a).is_some());
    *attrs = rest;
    ours
}

/// Reads and removes `#[from(step)]` / `#[input]` / `#[input(field)]` /
/// `#[signal("name")]` from a parameter.
fn param_attr(attrs: &mut Vec<syn::Attribute>, acc: &mut Accumulator) -> Option<ParamAttr> {
    let mut found: Option<ParamAttr> = None;
    for a in take_param_attributes(attrs) {
        let span = a.path().span();
        let kind = param_attr_name(&a).unwrap_or("from");
        if let Some(prev) = &found {
            acc.push(error(
                span,
                format!("this parameter is already a typed input (`{}`): a parameter reads one value", prev.written()),
            ));
            continue;
        }
        let parsed = match (kind, &a.meta) {
            ("from", Meta::List(l)) => one_name(l.tokens.clone(), "#[from(step_name)]", "a step name")
                .map(|step| ParamAttr::From { attr: span, step }),
            ("from", _) => Err(error(
                span,
                "`#[from]` names the step whose output this parameter reads: write `#[from(step_name)]`",
            )),
            ("signal", Meta::List(l)) => signal_attr(span, l.tokens.clone(), acc),
            ("signal", _) => Err(error(
                span,
                "`#[signal]` names the signal this parameter receives: write `#[signal(\"approval\")]` \
                 (or `#[signal(\"approval\", timeout = \"48h\")]`)",
            )),
            (_, Meta::Path(_)) => Ok(ParamAttr::Input { attr: span, field: None }),
            (_, Meta::List(l)) => one_name(l.tokens.clone(), "#[input(field)]", "a field name")
                .map(|f| ParamAttr::Input { attr: span, field: Some(f) }),
            (_, Meta::NameValue(_)) => Err(error(
                span,
                "write `#[input]` (the field of the parameter's name, or the whole input) or `#[input(field)]`",
            )),
        };
        found = acc.handle(parsed);
    }
    found
}

/// `#[signal("name")]`, `#[signal(name)]`, optionally followed by `timeout = ..`.
fn signal_attr(attr: Span, tokens: TokenStream, acc: &mut Accumulator) -> darling::Result<ParamAttr> {
    let items = NestedMeta::parse_meta_list(tokens.clone()).map_err(darling::Error::from)?;
    let name = match items.first() {
        Some(NestedMeta::Meta(Meta::Path(p))) if p.segments.len() == 1 => {
            p.get_ident().map(|i| Name { value: ident_text(i), span: i.span() })
        }
        Some(NestedMeta::Lit(Lit::Str(s))) if !s.value().trim().is_empty() => {
            Some(Name { value: s.value(), span: s.span() })
        }
        _ => None,
    };
    let Some(name) = name else {
        let span = items.first().map_or(attr, |i| i.span());
        return Err(error(
            span,
            "expected the signal's name first, a string literal or an identifier: write `#[signal(\"approval\")]`",
        ));
    };
    let mut timeout = None;
    each_option(&items[1..], "#[signal(..)]", SIGNAL_OPTIONS, &[], acc, |option, key, meta, acc| match option {
        "timeout" => set(&mut timeout, key, values::duration(meta, option, true), acc),
        _ => unreachable!("every accepted option is handled"),
    });
    Ok(ParamAttr::Signal { attr, name, timeout: timeout.map(|t: Opt<DurationLit>| t.value) })
}

/// Options accepted by `#[signal(..)]` after the signal's name.
pub(crate) const SIGNAL_OPTIONS: &[&str] = &["timeout"];

/// The one name inside `#[from(..)]` / `#[input(..)]`.
fn one_name(tokens: TokenStream, example: &str, what: &str) -> darling::Result<Name> {
    let items = NestedMeta::parse_meta_list(tokens.clone()).map_err(darling::Error::from)?;
    let name = match &items[..] {
        [NestedMeta::Meta(Meta::Path(p))] => {
            p.get_ident().filter(|_| p.segments.len() == 1).map(|i| Name { value: ident_text(i), span: i.span() })
        }
        [NestedMeta::Lit(Lit::Str(s))] if !s.value().trim().is_empty() => {
            Some(Name { value: s.value(), span: s.span() })
        }
        _ => None,
    };
    name.ok_or_else(|| {
        let span = if tokens.is_empty() { Span::call_site() } else { tokens.span() };
        error(span, format!("expected {what}, an identifier or a string literal: write `{example}`"))
    })
}

/// Runs `f` for each `key = value` / `key(...)` / `key` item, reporting unknown keys
/// (with a suggestion and the accepted list), duplicates (at the second occurrence)
/// and items that are not options.
fn each_option(
    items: &[NestedMeta],
    attr: &str,
    accepted: &[&str],
    repeatable: &[&str],
    acc: &mut Accumulator,
    mut f: impl FnMut(&str, &Ident, &Meta, &mut Accumulator),
) {
    let mut seen = BTreeSet::new();
    for item in items {
        let meta = match item {
            NestedMeta::Meta(m) => m,
            NestedMeta::Lit(l) => {
                acc.push(error(l.span(), format!("expected an option of `{attr}` such as `{} = ...`", accepted[0])));
                continue;
            }
            NestedMeta::NameValueInvalidExpr(invalid) => {
                acc.push(error(invalid.value.span(), format!("invalid value for `{}`", path_text(&invalid.path))));
                continue;
            }
        };
        let Some(key) = meta.path().get_ident() else {
            acc.push(error(meta.path().span(), format!("expected an option name of `{attr}`, not a path")));
            continue;
        };
        let text = ident_text(key);
        if !accepted.contains(&text.as_str()) {
            acc.push(error(
                key.span(),
                format!(
                    "unknown option `{text}` of `{attr}`{}\nexpected one of: {}",
                    suggest::did_you_mean(&text, accepted.iter().copied()),
                    suggest::list(accepted.iter().copied())
                ),
            ));
            continue;
        }
        if !seen.insert(text.clone()) && !repeatable.contains(&text.as_str()) {
            acc.push(error(key.span(), format!("duplicate option `{text}`")));
            continue;
        }
        f(&text, key, meta, acc);
    }
}

fn path_text(path: &syn::Path) -> String {
    path.segments.iter().map(|s| ident_text(&s.ident)).collect::<Vec<_>>().join("::")
}

fn set<T>(slot: &mut Option<Opt<T>>, key: &Ident, value: darling::Result<T>, acc: &mut Accumulator) {
    if let Some(value) = acc.handle(value) {
        *slot = Some(Opt { key: key.clone(), value });
    }
}

/// One of the four limit options, into `limits` (`field`: what the keys name).
fn limit_option(
    limits: &mut LimitAttrs,
    name: &str,
    key: &Ident,
    meta: &Meta,
    field: &'static str,
    acc: &mut Accumulator,
) {
    match name {
        "concurrency" => set(&mut limits.concurrency, key, values::count(meta, name), acc),
        "concurrency_key" => set(&mut limits.concurrency_key, key, values::name(meta, name, field), acc),
        "rate_limit" => set(&mut limits.rate_limit, key, values::rate_limit(meta, name), acc),
        _ => set(&mut limits.rate_limit_key, key, values::name(meta, name, field), acc),
    }
}

fn parse_workflow_attr(args: TokenStream, acc: &mut Accumulator) -> WorkflowAttr {
    let mut w = WorkflowAttr::default();
    let Some(items) = acc.handle(NestedMeta::parse_meta_list(args).map_err(darling::Error::from)) else {
        return w;
    };
    each_option(&items, "#[workflow]", WORKFLOW_OPTIONS, &["schedule"], acc, |name, key, meta, acc| match name {
        "name" => set(&mut w.name, key, values::string(meta, name), acc),
        "crate" => set(
            &mut w.krate,
            key,
            values::string(meta, name).and_then(|s| {
                s.parse::<syn::Path>().map_err(|_| {
                    error(s.span(), "expected a path to the `sagaflow` crate, such as `crate = \"::my_sagaflow\"`")
                })
            }),
            acc,
        ),
        "timeout" => set(&mut w.timeout, key, values::fixed_timeout(meta, name), acc),
        "max_retries" => set(&mut w.max_retries, key, values::count(meta, name), acc),
        "retry_delay" => set(&mut w.retry_delay, key, values::duration(meta, name, false), acc),
        "retry_max_delay" => set(&mut w.retry_max_delay, key, values::duration(meta, name, false), acc),
        "retry_backoff" => set(&mut w.retry_backoff, key, values::backoff(meta, name), acc),
        "step_timeout" => set(&mut w.step_timeout, key, values::timeout(meta, name), acc),
        "step_max_retries" => set(&mut w.step_max_retries, key, values::count(meta, name), acc),
        "step_retry_delay" => set(&mut w.step_retry_delay, key, values::duration(meta, name, false), acc),
        "on_failure" => set(&mut w.on_failure, key, values::method(meta, name), acc),
        "on_success" => set(&mut w.on_success, key, values::method(meta, name), acc),
        "on_cancel" => set(&mut w.on_cancel, key, values::method(meta, name), acc),
        "on_step_error" => set(&mut w.on_step_error, key, values::method(meta, name), acc),
        "dead_letter" => set(&mut w.dead_letter, key, values::flag(meta, name), acc),
        "dead_letter_ttl" => set(&mut w.dead_letter_ttl, key, values::duration(meta, name, false), acc),
        "retention" => set(&mut w.retention, key, values::duration(meta, name, false), acc),
        "tags" => set(&mut w.tags, key, values::names(meta, name, "tag"), acc),
        "metadata" => set(&mut w.metadata, key, metadata(meta, acc), acc),
        "step_concurrency" => set(&mut w.step_concurrency, key, values::count(meta, name), acc),
        "concurrency" | "concurrency_key" | "rate_limit" | "rate_limit_key" => {
            limit_option(&mut w.limits, name, key, meta, "an input field", acc);
        }
        "description" => set(&mut w.description, key, values::string(meta, name), acc),
        "version" => set(&mut w.version, key, values::string(meta, name), acc),
        "schedule" => match schedule_events(meta) {
            // `schedule(on_event = [...])`, as SPEC writes it: the same as `on_event`.
            Some(events) => {
                if let Some(events) = acc.handle(events) {
                    match &mut w.on_event {
                        Some(existing) => existing.value.extend(events),
                        None => w.on_event = Some(Opt { key: key.clone(), value: events }),
                    }
                }
            }
            None => {
                if let Some(s) = schedule(meta, key, acc) {
                    w.schedules.push(Opt { key: key.clone(), value: s });
                }
            }
        },
        "on_event" => set(&mut w.on_event, key, values::names(meta, name, "event name"), acc),
        "input" => {
            let value = values::type_value(meta, name);
            w.input_invalid = value.is_err();
            set(&mut w.input, key, value, acc);
        }
        _ => unreachable!("every accepted option is handled"),
    });
    w
}

fn metadata(meta: &Meta, acc: &mut Accumulator) -> darling::Result<Vec<(Ident, Lit)>> {
    let items = values::nested(meta, "metadata", "owner = \"data-team\", tier = 1")?;
    let mut entries: Vec<(Ident, Lit)> = Vec::new();
    for item in &items {
        let NestedMeta::Meta(m) = item else {
            acc.push(error(item.span(), "expected `key = value` in `metadata(...)`"));
            continue;
        };
        let Some(key) = m.path().get_ident() else {
            acc.push(error(m.path().span(), "expected a key in `metadata(...)`, such as `owner = \"data-team\"`"));
            continue;
        };
        if entries.iter().any(|(k, _)| k == key) {
            acc.push(error(key.span(), format!("duplicate metadata key `{}`", ident_text(key))));
            continue;
        }
        if let Some(value) = acc.handle(values::literal(m, &ident_text(key))) {
            entries.push((key.clone(), value));
        }
    }
    Ok(entries)
}

/// The events of a `schedule(on_event = ...)`; `None` for any other schedule.
fn schedule_events(meta: &Meta) -> Option<darling::Result<Vec<Name>>> {
    let items = values::nested(meta, "schedule", "cron = \"0 6 * * *\"").ok()?;
    match items.as_slice() {
        [NestedMeta::Meta(m)] if m.path().is_ident("on_event") => Some(values::names(m, "on_event", "event name")),
        _ => None,
    }
}

fn schedule(meta: &Meta, key: &Ident, acc: &mut Accumulator) -> Option<ScheduleAttr> {
    let items = acc.handle(values::nested(meta, "schedule", "cron = \"0 6 * * *\""))?;
    let mut s = ScheduleAttr::default();
    each_option(&items, "schedule(...)", SCHEDULE_OPTIONS, &[], acc, |name, k, meta, acc| {
        let trigger = match name {
            "cron" => Some(cron_patterns(meta).map(Trigger::Cron)),
            "every" => Some(values::duration(meta, name, false).map(Trigger::Every)),
            "at" => Some(values::string(meta, name).map(Trigger::At)),
            "in" => Some(values::duration(meta, name, false).map(Trigger::In)),
            "start_at" => {
                set(&mut s.start_at, k, values::string(meta, name), acc);
                None
            }
            "end_at" => {
                set(&mut s.end_at, k, values::string(meta, name), acc);
                None
            }
            "timezone" => {
                set(&mut s.timezone, k, values::string(meta, name), acc);
                None
            }
            "misfire" => {
                set(&mut s.misfire, k, values::misfire(meta, name), acc);
                None
            }
            _ => unreachable!("every accepted option is handled"),
        };
        if let Some(t) = trigger {
            if let Some(prev) = &s.trigger {
                acc.push(error(
                    k.span(),
                    format!(
                        "a schedule has one trigger, and this one already has `{}`: write another `schedule(...)` for `{name}`",
                        ident_text(&prev.key)
                    ),
                ));
            } else {
                set(&mut s.trigger, k, t, acc);
            }
        }
    });
    if s.trigger.is_none() {
        acc.push(error(key.span(), "`schedule(...)` needs one of `cron`, `every`, `at` or `in`"));
        return None;
    }
    Some(s)
}

fn cron_patterns(meta: &Meta) -> darling::Result<Vec<LitStr>> {
    let Meta::NameValue(nv) = meta else {
        return Err(error(meta.span(), "write `cron = \"0 6 * * *\"` or `cron = [\"0 6 * * *\", \"0 18 * * *\"]`"));
    };
    let strings = |e: &syn::Expr| match e {
        syn::Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
        other => Err(error(other.span(), "expected a cron pattern as a string literal, such as `\"0 6 * * *\"`")),
    };
    match &nv.value {
        syn::Expr::Array(a) => {
            let mut errors = darling::Error::accumulator();
            let list: Vec<LitStr> = a.elems.iter().filter_map(|e| errors.handle(strings(e))).collect();
            if a.elems.is_empty() {
                errors.push(error(a.span(), "`cron` lists no patterns"));
            }
            errors.finish_with(list)
        }
        e => strings(e).map(|s| vec![s]),
    }
}

/// Parses one step attribute; `None` when it is too malformed to use (the error is
/// in `acc`).
fn parse_step_attr(kind_name: &'static str, attr: &syn::Attribute, acc: &mut Accumulator) -> Option<StepAttr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(acc: Accumulator) -> Vec<String> {
        match acc.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.flatten().into_iter().map(|e| syn::Error::from(e).to_string()).collect(),
        }
    }

    #[test]
    fn reads_methods_and_removes_step_attributes() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step(after = b, timeout = "30s")]
                    async fn a(&self, ctx: &Context) -> StepResult { todo() }
                    #[sagaflow::graft]
                    fn b(ctx: Context) -> StepResult { todo() }
                    fn helper(&self) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(errors(acc).is_empty());
        assert_eq!(input.steps.len(), 2);
        assert_eq!(input.methods.len(), 3);
        assert!(matches!(input.methods[0].receiver, Receiver::Ref));
        assert!(input.methods[0].params[0].by_ref);
        assert!(matches!(input.methods[1].receiver, Receiver::None));
        assert!(!input.methods[1].params[0].by_ref);
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("step") && !text.contains("graft"), "{text}");
    }

    #[test]
    fn reads_and_removes_typed_input_attributes() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w", input = Signup),
            quote! {
                impl W {
                    #[step]
                    fn a(ctx: &Context, #[from(b)] account: &Account, #[sagaflow::input(email)] to: String) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(errors(acc).is_empty());
        let params = &input.methods[0].params;
        assert!(params[0].typed.is_none());
        assert!(matches!(&params[1].typed, Some(ParamAttr::From { step, .. }) if step.value == "b"));
        assert!(matches!(&params[2].typed, Some(ParamAttr::Input { field: Some(f), .. }) if f.value == "email"));
        assert_eq!(params[1].ident.as_ref().unwrap(), "account");
        assert!(input.attr.input.is_some());
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("from") && !text.contains("input"), "{text}");
    }

    #[test]
    fn reads_signal_parameters_and_queries() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step]
                    fn a(#[signal("approval", timeout = "2d")] d: Decision, #[sagaflow::signal(go)] g: bool) {}
                    #[sagaflow::query]
                    fn status(&self, state: &ExecutionState) -> u32 { 1 }
                    #[step]
                    fn b(#[signal] d: bool, #[signal(timeout = "1h")] e: bool, #[signal("x", tmeout = "1h")] f: bool) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        let errs = errors(acc);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with("`#[signal]` names the signal this parameter receives"), "{}", errs[0]);
        assert!(errs[1].starts_with("expected the signal's name first"), "{}", errs[1]);
        assert!(
            errs[2].starts_with("unknown option `tmeout` of `#[signal(..)]`; did you mean `timeout`?"),
            "{}",
            errs[2]
        );
        let params = &input.methods[0].params;
        assert!(matches!(
            &params[0].typed,
            Some(ParamAttr::Signal { name, timeout: Some(t), .. }) if name.value == "approval" && t.value().is_some()
        ));
        assert!(matches!(&params[1].typed, Some(ParamAttr::Signal { name, timeout: None, .. }) if name.value == "go"));
        assert_eq!(input.queries.len(), 1);
        assert_eq!(input.queries[0].method, 1);
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("signal") && !text.contains("query"), "{text}");
    }

    #[test]
    fn reports_every_bad_option_at_once() {
        let mut acc = darling::Error::accumulator();
        let _ = parse(
            quote!(name = "w", tmeout = "1h", name = "x"),
            quote! {
                impl W {
                    #[step(aftr = a, max_retries = "3")]
                    async fn a(&self) {}
                }
            },
            &mut acc,
        );
        let errs = errors(acc);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with(
            "unknown option `tmeout` of `#[workflow]`; did you mean `timeout`?\nexpected one of: `name`, `crate`,"
        ));
        assert_eq!(errs[1], "duplicate option `name`");
        assert!(errs[2].starts_with("unknown option `aftr` of `#[step]`; did you mean `after`?"));
        assert_eq!(errs[3], "expected a whole number for `max_retries`, such as `max_retries = 3`");
    }

    #[test]
    fn subworkflow_needs_the_child_first() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[subworkflow(send_notification, after = a)]
                    fn notify(&self) -> StepResult { todo() }
                    #[subworkflow(after = a)]
                    fn other(&self) -> StepResult { todo() }
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(matches!(&input.steps[0].attr.kind, StepKind::Subworkflow(n) if n.value == "send_notification"));
        let errs = errors(acc);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("`#[subworkflow]` needs the name of the workflow to run first"));
    }

    #[test]
    fn schedules_have_one_trigger() {
        let mut acc = darling::Error::accumulator();
        let _ = parse(
            quote!(name = "w", schedule(cron = "0 6 * * *", every = "5m"), schedule(timezone = "UTC")),
            quote!(impl W {}),
            &mut acc,
        );
        let errs = errors(acc);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("a schedule has one trigger, and this one already has `cron`"));
        assert_eq!(errs[1], "`schedule(...)` needs one of `cron`, `every`, `at` or `in`");
    }
}
