//! The attributes that make a parameter a typed input: `#[from(..)]`, `#[input]`
//! and `#[signal(..)]`.

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Lit, Meta};

use super::options::{Opt, each_option, set};
use crate::values::{self, DurationLit, Name, error, ident_text};

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

pub(super) fn param_attr_name(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?;
    PARAM_ATTRIBUTES.iter().copied().find(|n| last.ident == n)
}

pub(super) fn take_param_attributes(attrs: &mut Vec<syn::Attribute>) -> Vec<syn::Attribute> {
    let (ours, rest) = std::mem::take(attrs).into_iter().partition(|a| param_attr_name(a).is_some());
    *attrs = rest;
    ours
}

/// Reads and removes `#[from(step)]` / `#[input]` / `#[input(field)]` /
/// `#[signal("name")]` from a parameter.
pub(super) fn param_attr(attrs: &mut Vec<syn::Attribute>, acc: &mut Accumulator) -> Option<ParamAttr> {
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
