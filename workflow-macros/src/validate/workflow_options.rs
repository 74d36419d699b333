//! The options of `#[workflow(..)]`: retries, handlers, dead letters, retention,
//! tags and metadata, limits, schedules and events, as calls on the builder.

use darling::error::Accumulator;
use syn::{Lit, LitInt};

use super::Checker;
use super::args::{strs, u32_arg};
use super::typed_inputs::Reader;
use crate::parse::WorkflowAttr;
use crate::plan::{Arg, Call, Shape};
use crate::values::{count_value, error, ident_text};

impl Checker<'_> {
    pub(super) fn workflow_options(&self, w: &WorkflowAttr, acc: &mut Accumulator) -> Vec<Call> {
        let mut calls = Vec::new();
        let call = |method: &'static str, args: Vec<Arg>| Call { method, args };
        if let Some(t) = &w.timeout {
            calls.push(call("timeout", vec![Arg::Duration(t.value.clone())]));
        }
        if let Some(n) = &w.max_retries {
            calls.push(call("max_retries", vec![u32_arg(&n.value)]));
        }
        let retries = w.max_retries.as_ref().map_or(0, |n| count_value(&n.value));
        if retries == 0 {
            for key in [&w.retry_delay, &w.retry_max_delay]
                .into_iter()
                .flatten()
                .map(|o| &o.key)
                .chain(w.retry_backoff.as_ref().map(|o| &o.key))
            {
                acc.push(error(
                    key.span(),
                    format!(
                        "`{}` has no effect: the workflow's `max_retries` is 0; set `max_retries` to restart failed executions",
                        ident_text(key)
                    ),
                ));
            }
        }
        if let Some(d) = &w.retry_delay {
            calls.push(call("retry_delay", vec![Arg::Duration(d.value.clone())]));
        }
        if let Some(m) = &w.retry_max_delay {
            calls.push(call("retry_max_delay", vec![Arg::Duration(m.value.clone())]));
        }
        if let Some(b) = &w.retry_backoff
            && let Some(arg) = self.backoff(&b.value, acc)
        {
            calls.push(call("retry_backoff", vec![arg]));
        }
        if let Some(t) = &w.step_timeout
            && let Some(arg) = self.timeout(&t.value, "step_timeout", acc)
        {
            calls.push(call("step_timeout", vec![arg]));
        }
        if let Some(n) = &w.step_max_retries {
            calls.push(call("step_max_retries", vec![u32_arg(&n.value)]));
        }
        if let Some(d) = &w.step_retry_delay {
            calls.push(call("step_retry_delay", vec![Arg::Duration(d.value.clone())]));
        }
        for (option, handler, slot, shape) in [
            ("on_failure", "OnFailure", &w.on_failure, Shape::Step),
            ("on_success", "OnSuccess", &w.on_success, Shape::Step),
            ("on_cancel", "OnCancel", &w.on_cancel, Shape::Cancel),
            ("on_step_error", "OnStepError", &w.on_step_error, Shape::StepError),
        ] {
            if let Some(h) = slot
                && let Some(bound) = self.bind(&h.value, option, shape, Some(Reader::Handler(option)), acc)
            {
                let name = ident_text(&h.value);
                calls.push(call(option, vec![Arg::Bound(bound)]));
                calls.push(call(
                    "name_handler",
                    vec![Arg::Variant("WorkflowHandler", handler), Arg::Str(name, h.value.span())],
                ));
            }
        }
        let dead_letter = w.dead_letter.as_ref().is_some_and(|d| d.value);
        if let Some(d) = &w.dead_letter {
            calls.push(call("dead_letter", vec![Arg::Bool(d.value)]));
        }
        if let Some(ttl) = &w.dead_letter_ttl {
            if !dead_letter {
                acc.push(error(
                    ttl.key.span(),
                    "`dead_letter_ttl` has no effect without `dead_letter`: add `dead_letter = true`",
                ));
            }
            calls.push(call("dead_letter_ttl", vec![Arg::Duration(ttl.value.clone())]));
        }
        if let Some(keep) = &w.retention {
            if keep.value.value() == Some(std::time::Duration::ZERO) {
                acc.push(error(
                    keep.value.span(),
                    "`retention` must be longer than zero: leave it out to keep ended executions",
                ));
            }
            calls.push(call("retention", vec![Arg::Duration(keep.value.clone())]));
        }
        if let Some(tags) = &w.tags {
            calls.push(call("tags", vec![strs(&tags.value)]));
        }
        if let Some(entries) = &w.metadata {
            for (key, value) in &entries.value {
                if let Some(lit) = acc.handle(metadata_literal(value)) {
                    calls.push(call("metadata", vec![Arg::Str(ident_text(key), key.span()), Arg::Literal(lit)]));
                }
            }
        }
        if let Some(n) = &w.step_concurrency {
            if count_value(&n.value) == 0 {
                acc.push(error(n.value.span(), "`step_concurrency` must be at least 1"));
            }
            calls.push(call("step_concurrency", vec![u32_arg(&n.value)]));
        }
        self.limits(&w.limits, &mut calls, acc);
        if let Some(d) = &w.description {
            calls.push(call("description", vec![Arg::LitStr(d.value.clone())]));
        }
        if let Some(v) = &w.version {
            calls.push(call("version", vec![Arg::LitStr(v.value.clone())]));
        }
        for s in &w.schedules {
            if let Some(arg) = self.schedule(&s.value, acc) {
                calls.push(call("schedule", vec![arg]));
            }
        }
        if let Some(events) = &w.on_event {
            calls.push(call("on_event", vec![strs(&events.value)]));
        }
        calls
    }
}

/// A metadata value with an explicit numeric type, so that large numbers work.
fn metadata_literal(lit: &Lit) -> darling::Result<Lit> {
    Ok(match lit {
        Lit::Int(i) => {
            let digits = i.base10_digits();
            let suffix = if digits.parse::<i64>().is_ok() {
                "i64"
            } else if digits.parse::<u64>().is_ok() {
                "u64"
            } else {
                return Err(error(i.span(), "metadata number out of range"));
            };
            Lit::Int(LitInt::new(&format!("{digits}{suffix}"), i.span()))
        }
        Lit::Float(f) => Lit::Float(syn::LitFloat::new(&format!("{}f64", f.base10_digits()), f.span())),
        other => other.clone(),
    })
}
