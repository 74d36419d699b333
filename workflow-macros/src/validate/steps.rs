//! Steps: each step's method and its options, as calls on the step builder; and
//! circuit breakers shared by steps with the same options.

use std::time::Duration;

use darling::error::Accumulator;
use sagaflow_rules::breaker::{BreakerUses, DEFAULT_FAILURE_THRESHOLD, DEFAULT_RESET_TIMEOUT};

use super::Checker;
use super::args::{strs, u32_arg};
use super::typed_inputs::Reader;
use crate::parse::{Input, StepAttr, StepKind};
use crate::plan::{Arg, Call, Shape, StepKindPlan, StepPlan};
use crate::values::{count_value, error, ident_text};

impl Checker<'_> {
    pub(super) fn steps(&self, input: &Input, acc: &mut Accumulator) -> Vec<StepPlan> {
        let names = &self.graph.names;
        let mut breakers: BreakerUses<(u32, Duration), &str> = BreakerUses::new();
        let mut plans = Vec::new();
        for (i, decl) in input.steps.iter().enumerate() {
            let method = &input.methods[decl.method];
            let a = &decl.attr;
            let role = match &a.kind {
                StepKind::Step => "a step",
                StepKind::Graft => "a graft",
                StepKind::Subworkflow(_) => "the input of a nested workflow",
            };
            let body = self.check_callable(method, role, Shape::Step, Some(Reader::Step(i)), acc);
            let options = self.step_options(i, a, acc);
            if let (Some(cb), settings) = (&a.circuit_breaker, breaker_settings(a))
                && let Err(prev_step) = breakers.give(&cb.value.value, settings, names[i].value.as_str())
            {
                acc.push(error(
                    cb.value.span,
                    format!(
                        "circuit breaker `{}` is given different options by steps `{prev_step}` and `{}`",
                        cb.value.value, names[i].value
                    ),
                ));
            }
            let kind = match &a.kind {
                StepKind::Step => StepKindPlan::Task,
                StepKind::Graft => StepKindPlan::Graft,
                StepKind::Subworkflow(child) => StepKindPlan::Workflow(child.value.clone()),
            };
            if let Some(body) = body {
                plans.push(StepPlan { name: names[i].value.clone(), kind, body, options });
            }
        }
        plans
    }

    fn step_options(&self, i: usize, a: &StepAttr, acc: &mut Accumulator) -> Vec<Call> {
        let mut calls = Vec::new();
        let call = |method: &'static str, args: Vec<Arg>| Call { method, args };
        for (method, slot) in [
            ("after", &a.after),
            ("after_any", &a.after_any),
            ("after_group", &a.after_group),
            ("after_graft", &a.after_graft),
        ] {
            if let Some(names) = slot {
                calls.push(call(method, vec![strs(&names.value)]));
            }
        }
        if let Some(g) = &a.group {
            calls.push(call("group", vec![Arg::Str(g.value.value.clone(), g.value.span)]));
        }
        if let Some(w) = &a.when
            && let Some(bound) = self.bind(&w.value, "when", Shape::Condition, None, acc)
        {
            calls.push(call("when_named", vec![Arg::Str(ident_text(&w.value), w.value.span()), Arg::Bound(bound)]));
        }
        if let Some(t) = &a.timeout
            && let Some(arg) = self.timeout(&t.value, "timeout", acc)
        {
            calls.push(call("timeout", vec![arg]));
        }
        if let Some(n) = &a.max_retries {
            calls.push(call("max_retries", vec![u32_arg(&n.value)]));
            if count_value(&n.value) == 0 {
                let retry_keys = [
                    a.retry_delay.as_ref().map(|o| &o.key),
                    a.retry_backoff.as_ref().map(|o| &o.key),
                    a.retry_max_delay.as_ref().map(|o| &o.key),
                    a.retry_jitter.as_ref().map(|o| &o.key),
                ];
                for key in retry_keys.into_iter().flatten() {
                    acc.push(error(key.span(), format!("`{}` has no effect: `max_retries` is 0", ident_text(key))));
                }
            }
        }
        if let Some(d) = &a.retry_delay {
            calls.push(call("retry_delay", vec![Arg::Duration(d.value.clone())]));
        }
        if let Some(b) = &a.retry_backoff
            && let Some(arg) = self.backoff(&b.value, acc)
        {
            calls.push(call("retry_backoff", vec![arg]));
        }
        if let Some(m) = &a.retry_max_delay {
            if let (Some(d), Some(max)) = (a.retry_delay.as_ref().and_then(|d| d.value.value()), m.value.value())
                && max < d
            {
                acc.push(error(m.value.span(), "`retry_max_delay` is shorter than `retry_delay`"));
            }
            calls.push(call("retry_max_delay", vec![Arg::Duration(m.value.clone())]));
        }
        if let Some(j) = &a.retry_jitter {
            calls.push(call("retry_jitter", vec![Arg::Bool(j.value)]));
        }
        if let Some(kinds) = &a.retry_on {
            calls.push(call("retry_on", vec![strs(&kinds.value)]));
        }
        if let Some(kinds) = &a.no_retry_on {
            for k in &kinds.value {
                if a.retry_on.iter().flat_map(|o| &o.value).any(|r| r.value == k.value) {
                    acc.push(error(k.span, format!("`{}` is in both `retry_on` and `no_retry_on`", k.value)));
                }
            }
            calls.push(call("no_retry_on", vec![strs(&kinds.value)]));
        }
        if let Some(e) = &a.on_error {
            calls.push(call("on_error", vec![Arg::Variant("OnError", e.value)]));
        }
        if let Some(r) = &a.rollback
            && let Some(bound) = self.bind(&r.value, "rollback", Shape::Step, Some(Reader::Rollback(i)), acc)
        {
            calls.push(call("rollback_named", vec![Arg::Str(ident_text(&r.value), r.value.span()), Arg::Bound(bound)]));
        }
        let awaits = a.await_approval.as_ref().is_some_and(|o| o.value);
        if let Some(t) = &a.on_timeout {
            if !awaits {
                acc.push(error(
                    t.key.span(),
                    "`on_timeout` runs when an await times out, but this step does not set `await_approval`",
                ));
            }
            if let Some(bound) = self.bind(&t.value, "on_timeout", Shape::Step, Some(Reader::OnTimeout(i)), acc) {
                calls.push(call(
                    "on_timeout_named",
                    vec![Arg::Str(ident_text(&t.value), t.value.span()), Arg::Bound(bound)],
                ));
            }
        }
        for (method, slot) in [("await_approval", &a.await_approval), ("cancellable", &a.cancellable)] {
            if let Some(f) = slot {
                calls.push(call(method, vec![Arg::Bool(f.value)]));
            }
        }
        if let Some(g) = &a.cancel_grace {
            if !a.cancellable.as_ref().is_some_and(|o| o.value) {
                acc.push(error(
                    g.key.span(),
                    "`cancel_grace` is how long a cancelled step may take to return, but this step is not `cancellable`",
                ));
            }
            calls.push(call("cancel_grace", vec![Arg::Duration(g.value.clone())]));
        }
        if let Some(k) = &a.context_key {
            calls.push(call("context_key", vec![Arg::Str(k.value.value.clone(), k.value.span)]));
        }
        if let Some(cb) = &a.circuit_breaker {
            calls.push(call("circuit_breaker", vec![Arg::Str(cb.value.value.clone(), cb.value.span)]));
        }
        if let Some(opts) = &a.circuit_breaker_opts {
            if a.circuit_breaker.is_none() {
                acc.push(error(
                    opts.key.span(),
                    "`circuit_breaker_opts` is set without `circuit_breaker`: name the breaker, such as `circuit_breaker = payments_api`",
                ));
            }
            if let Some(t) = &opts.value.failure_threshold
                && count_value(&t.value) == 0
            {
                acc.push(error(t.value.span(), "`failure_threshold` must be at least 1"));
            }
            let (failure_threshold, reset_timeout) = breaker_settings(a);
            calls.push(call(
                "circuit_breaker_opts",
                vec![Arg::Breaker { failure_threshold, reset_timeout, span: opts.key.span() }],
            ));
        }
        if let Some(d) = &a.description {
            calls.push(call("description", vec![Arg::LitStr(d.value.clone())]));
        }
        self.limits(&a.limits, &mut calls, acc);
        calls
    }
}

fn breaker_settings(a: &StepAttr) -> (u32, Duration) {
    let opts = a.circuit_breaker_opts.as_ref().map(|o| &o.value);
    let threshold =
        opts.and_then(|o| o.failure_threshold.as_ref()).map_or(DEFAULT_FAILURE_THRESHOLD, |t| count_value(&t.value));
    let reset =
        opts.and_then(|o| o.reset_timeout.as_ref()).and_then(|r| r.value.value()).unwrap_or(DEFAULT_RESET_TIMEOUT);
    (threshold, reset)
}
