//! The methods of the impl block: their receiver, parameters and return type, as far
//! as calling them from generated code matters.

use darling::error::Accumulator;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ReceiverKind, Type};

use super::param_attr::{ParamAttr, param_attr, param_attr_name, take_param_attributes};
use crate::values::error;

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

pub(super) fn method_of(sig: &mut syn::Signature, acc: &mut Accumulator) -> Method {
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
