//! `schedule(..)` in `#[workflow(..)]`: its trigger and its window.

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use syn::spanned::Spanned;
use syn::{Ident, Lit, LitStr, Meta};

use super::options::{Opt, each_option, set};
use crate::values::{self, DurationLit, Name, error, ident_text};

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

/// The events of a `schedule(on_event = ...)`; `None` for any other schedule.
pub(super) fn schedule_events(meta: &Meta) -> Option<darling::Result<Vec<Name>>> {
    let items = values::nested(meta, "schedule", "cron = \"0 6 * * *\"").ok()?;
    match items.as_slice() {
        [NestedMeta::Meta(m)] if m.path().is_ident("on_event") => Some(values::names(m, "on_event", "event name")),
        _ => None,
    }
}

pub(super) fn schedule(meta: &Meta, key: &Ident, acc: &mut Accumulator) -> Option<ScheduleAttr> {
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
