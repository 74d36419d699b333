//! Limits across executions: `concurrency`, `concurrency_key`, `rate_limit` and
//! `rate_limit_key`, of a step or of the workflow.

use darling::error::Accumulator;

use super::Checker;
use super::args::u32_arg;
use crate::parse::LimitAttrs;
use crate::plan::{Arg, Call};
use crate::values::{count_value, error};

impl Checker<'_> {
    /// `concurrency`, `concurrency_key`, `rate_limit`, `rate_limit_key`.
    pub(super) fn limits(&self, a: &LimitAttrs, calls: &mut Vec<Call>, acc: &mut Accumulator) {
        let call = |method: &'static str, args: Vec<Arg>| Call { method, args };
        if let Some(n) = &a.concurrency {
            if count_value(&n.value) == 0 {
                acc.push(error(n.value.span(), "`concurrency` must be at least 1"));
            }
            calls.push(call("concurrency", vec![u32_arg(&n.value)]));
        }
        if let Some(k) = &a.concurrency_key {
            if a.concurrency.is_none() {
                acc.push(error(
                    k.key.span(),
                    "`concurrency_key` is set without `concurrency`: say how many may run at once, such as `concurrency = 2`",
                ));
            }
            calls.push(call("concurrency_key", vec![Arg::Str(k.value.value.clone(), k.value.span)]));
        }
        if let Some(r) = &a.rate_limit {
            calls.push(call(
                "rate_limit",
                vec![Arg::U32(r.value.count, r.value.span), Arg::Duration(r.value.per.clone())],
            ));
        }
        if let Some(k) = &a.rate_limit_key {
            if a.rate_limit.is_none() {
                acc.push(error(
                    k.key.span(),
                    "`rate_limit_key` is set without `rate_limit`: say how many may start per interval, such as `rate_limit = \"10/1s\"`",
                ));
            }
            calls.push(call("rate_limit_key", vec![Arg::Str(k.value.value.clone(), k.value.span)]));
        }
    }
}
