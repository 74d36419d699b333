//! What the macro reads from the types of typed-input parameters, syntactically: the
//! type to read from JSON and how to pass it (`&str` reads a `String` passed as
//! `&value`), whether a type is an `Option` or a `Vec`, and how to show a type in a
//! message. Whether the types are right is left to the type checker.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, Type};

use crate::plan::Pass;

/// The type to read for a parameter of type `ty`, and how to pass it.
pub(crate) fn owned(ty: &Type) -> (Type, Pass) {
    match ungroup(ty) {
        Type::Reference(r) => {
            let pass = if r.mutability.is_some() { Pass::RefMut } else { Pass::Ref };
            (unsized_owner(&r.elem).unwrap_or_else(|| (*r.elem).clone()), pass)
        }
        other => match generic_arg(other, "Option") {
            Some(Type::Reference(r)) if r.mutability.is_none() => {
                let (inner, pass) = match unsized_owner(&r.elem) {
                    Some(owner) => (owner, Pass::OptionDeref),
                    None => ((*r.elem).clone(), Pass::OptionRef),
                };
                // Spanned from the first to the last token of the parameter's type, so
                // that type errors underline all of it.
                let (first, last) = ends(other);
                let open = quote_spanned!(first=> ::core::option::Option<);
                let close = quote_spanned!(last=> >);
                (syn::parse2(quote!(#open #inner #close)).expect("a type"), pass)
            }
            _ => (other.clone(), Pass::Value),
        },
    }
}

/// The token of `ty` that errors about it point at (a compile error spans one token):
/// the type borrowed by a reference, the last segment of a path (`Option` in
/// `std::option::Option<u8>`).
pub(crate) fn focus(ty: &Type) -> Span {
    match ungroup(ty) {
        Type::Reference(r) => focus(&r.elem),
        Type::Path(p) => p.path.segments.last().map_or_else(|| ty.span(), |s| s.ident.span()),
        t => t.span(),
    }
}

/// The spans of the first and the last token of `ty`.
fn ends(ty: &Type) -> (Span, Span) {
    fn last(tokens: TokenStream) -> Option<Span> {
        tokens.into_iter().last().map(|t| match t {
            TokenTree::Group(g) => g.span_close(),
            t => t.span(),
        })
    }
    let first = ty.span();
    (first, last(ty.to_token_stream()).unwrap_or(first))
}

/// `String` for `str`, `Vec<T>` for `[T]`: the owned form of an unsized type.
fn unsized_owner(elem: &Type) -> Option<Type> {
    let span = elem.span();
    let tokens = match ungroup(elem) {
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
            quote_spanned!(span=> __sagaflow_rt::String)
        }
        Type::Slice(s) => {
            let inner = &s.elem;
            quote_spanned!(span=> __sagaflow_rt::Vec<#inner>)
        }
        _ => return None,
    };
    Some(syn::parse2(tokens).expect("a type"))
}

fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        t => t,
    }
}

/// `T` when `ty` is written `Name<T>` (with any path before `Name`).
fn generic_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = ungroup(ty) else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// Whether `ty` is written as an `Option<..>`.
pub(crate) fn is_option(ty: &Type) -> bool {
    generic_arg(ty, "Option").is_some()
}

/// For a type written `Vec<T>`: whether `T` is an `Option<..>`; `None` when `ty` is not
/// written as a `Vec` (the type checker then says what a graft's outputs are).
pub(crate) fn vec_of_option(ty: &Type) -> Option<bool> {
    generic_arg(ty, "Vec").map(is_option)
}

/// Whether two types are written the same (ignoring one outer borrow of `a`).
pub(crate) fn same(a: &Type, b: &Type) -> bool {
    let a = match ungroup(a) {
        Type::Reference(r) => &*r.elem,
        t => t,
    };
    text(a) == text(b)
}

/// A type as written, for messages: `Option<&Account>`.
pub(crate) fn text(ty: &Type) -> String {
    let mut out = String::new();
    write_tokens(ty.to_token_stream(), &mut out);
    out
}

fn write_tokens(tokens: TokenStream, out: &mut String) {
    for t in tokens {
        match t {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    proc_macro2::Delimiter::Parenthesis => ("(", ")"),
                    proc_macro2::Delimiter::Bracket => ("[", "]"),
                    proc_macro2::Delimiter::Brace => ("{", "}"),
                    proc_macro2::Delimiter::None => ("", ""),
                };
                if ["mut", "dyn", "impl"].iter().any(|k| out.ends_with(k)) {
                    out.push(' ');
                }
                out.push_str(open);
                write_tokens(g.stream(), out);
                out.push_str(close);
            }
            TokenTree::Punct(p) => {
                out.push(p.as_char());
                if p.as_char() == ',' || (p.as_char() == ';') {
                    out.push(' ');
                }
            }
            TokenTree::Ident(i) => {
                if out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    out.push(' ');
                }
                out.push_str(&i.to_string());
            }
            TokenTree::Literal(l) => out.push_str(&l.to_string()),
        }
    }
}

/// `ty` with every token at `span`, so that errors about it point there.
pub(crate) fn respanned(ty: &Type, span: Span) -> TokenStream {
    fn go(tokens: TokenStream, span: Span) -> TokenStream {
        tokens
            .into_iter()
            .map(|mut t| {
                if let TokenTree::Group(g) = &t {
                    let mut group = proc_macro2::Group::new(g.delimiter(), go(g.stream(), span));
                    group.set_span(span);
                    t = TokenTree::Group(group);
                } else {
                    t.set_span(t.span().located_at(span));
                }
                t
            })
            .collect()
    }
    go(ty.to_token_stream(), span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn owned_text(ty: Type) -> (String, Pass) {
        let (t, pass) = owned(&ty);
        (text(&t), pass)
    }

    #[test]
    fn borrowed_parameters_read_owned_values() {
        assert_eq!(owned_text(parse_quote!(&Account)), ("Account".to_owned(), Pass::Ref));
        assert_eq!(owned_text(parse_quote!(&str)), ("__sagaflow_rt::String".to_owned(), Pass::Ref));
        assert_eq!(owned_text(parse_quote!(&[u32])), ("__sagaflow_rt::Vec<u32>".to_owned(), Pass::Ref));
        assert_eq!(owned_text(parse_quote!(&mut Vec<u8>)), ("Vec<u8>".to_owned(), Pass::RefMut));
        assert_eq!(
            owned_text(parse_quote!(Option<&Account>)),
            ("::core::option::Option<Account>".to_owned(), Pass::OptionRef)
        );
        assert_eq!(
            owned_text(parse_quote!(Option<&str>)),
            ("::core::option::Option<__sagaflow_rt::String>".to_owned(), Pass::OptionDeref)
        );
        assert_eq!(owned_text(parse_quote!(Option<u64>)), ("Option<u64>".to_owned(), Pass::Value));
        assert_eq!(owned_text(parse_quote!(u64)), ("u64".to_owned(), Pass::Value));
    }

    #[test]
    fn options_and_vecs_are_recognized_as_written() {
        assert!(is_option(&parse_quote!(Option<u8>)));
        assert!(is_option(&parse_quote!(std::option::Option<&str>)));
        assert!(!is_option(&parse_quote!(u8)));
        assert_eq!(vec_of_option(&parse_quote!(Vec<Option<Thumb>>)), Some(true));
        assert_eq!(vec_of_option(&parse_quote!(Vec<Thumb>)), Some(false));
        assert_eq!(vec_of_option(&parse_quote!(Thumbs)), None);
    }

    #[test]
    fn types_are_shown_as_written() {
        assert_eq!(text(&parse_quote!(Option<&'static str>)), "Option<&'static str>");
        assert_eq!(text(&parse_quote!(HashMap<String, Vec<u8>>)), "HashMap<String, Vec<u8>>");
        assert_eq!(text(&parse_quote!(&mut [u8; 4])), "&mut [u8; 4]");
        assert!(same(&parse_quote!(&Signup), &parse_quote!(Signup)));
        assert!(!same(&parse_quote!(&crate::Signup), &parse_quote!(Signup)));
    }
}
