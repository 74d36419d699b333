//! Option values as builder arguments: counts, lists of names, and backoffs and
//! timeouts, which may name a method.

use darling::error::Accumulator;
use syn::LitInt;

use super::Checker;
use crate::plan::{Arg, Shape};
use crate::values::{BackoffValue, Name, TimeoutValue, count_value};

impl Checker<'_> {
    pub(super) fn backoff(&self, b: &BackoffValue, acc: &mut Accumulator) -> Option<Arg> {
        match b {
            BackoffValue::Named(variant) => Some(Arg::Variant("Backoff", variant)),
            BackoffValue::Method(m) => self.bind(m, "retry_backoff", Shape::Backoff, None, acc).map(Arg::Bound),
        }
    }

    pub(super) fn timeout(&self, t: &TimeoutValue, option: &str, acc: &mut Accumulator) -> Option<Arg> {
        match t {
            TimeoutValue::Fixed(d) => Some(Arg::Duration(d.clone())),
            TimeoutValue::Method(m) => self.bind(m, option, Shape::Timeout, None, acc).map(Arg::Bound),
        }
    }
}

pub(super) fn u32_arg(lit: &LitInt) -> Arg {
    Arg::U32(count_value(lit), lit.span())
}

pub(super) fn strs(names: &[Name]) -> Arg {
    Arg::Strs(names.iter().map(|n| (n.value.clone(), n.span)).collect())
}
