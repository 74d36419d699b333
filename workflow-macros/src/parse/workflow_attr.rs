//! The `#[workflow(..)]` attribute: its options, read into [`WorkflowAttr`].

use darling::ast::NestedMeta;
use darling::error::Accumulator;
use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{Ident, Lit, LitInt, LitStr, Meta, Type};

use super::limits::{LimitAttrs, limit_option};
use super::options::{Opt, each_option, set};
use super::schedule::{ScheduleAttr, schedule, schedule_events};
use crate::values::{self, BackoffValue, DurationLit, Name, TimeoutValue, error, ident_text};

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

pub(super) fn parse_workflow_attr(args: TokenStream, acc: &mut Accumulator) -> WorkflowAttr {
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
