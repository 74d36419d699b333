//! Options as written: `key = value`, `key(..)` and `key` items of an attribute,
//! with unknown and duplicate keys reported.

use std::collections::BTreeSet;

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use syn::spanned::Spanned;
use syn::{Ident, Meta};

use crate::suggest;
use crate::values::{error, ident_text};

/// One option as written: the key (errors about the option point at it) and the value.
#[derive(Clone, Debug)]
pub(crate) struct Opt<T> {
    pub(crate) key: Ident,
    pub(crate) value: T,
}

/// Runs `f` for each `key = value` / `key(...)` / `key` item, reporting unknown keys
/// (with a suggestion and the accepted list), duplicates (at the second occurrence)
/// and items that are not options.
pub(super) fn each_option(
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

pub(super) fn set<T>(slot: &mut Option<Opt<T>>, key: &Ident, value: darling::Result<T>, acc: &mut Accumulator) {
    if let Some(value) = acc.handle(value) {
        *slot = Some(Opt { key: key.clone(), value });
    }
}
