//! The limit options, `concurrency`, `concurrency_key`, `rate_limit` and
//! `rate_limit_key`, shared by the workflow and step attributes.

use darling::error::Accumulator;
use syn::{Ident, LitInt, Meta};

use super::options::{Opt, set};
use crate::values::{self, Name, RateLit};

/// `concurrency`, `concurrency_key`, `rate_limit` and `rate_limit_key`: a
/// step's or a workflow's limits across executions.
#[derive(Default)]
pub(crate) struct LimitAttrs {
    pub(crate) concurrency: Option<Opt<LitInt>>,
    pub(crate) concurrency_key: Option<Opt<Name>>,
    pub(crate) rate_limit: Option<Opt<RateLit>>,
    pub(crate) rate_limit_key: Option<Opt<Name>>,
}

/// One of the four limit options, into `limits` (`field`: what the keys name).
pub(super) fn limit_option(
    limits: &mut LimitAttrs,
    name: &str,
    key: &Ident,
    meta: &Meta,
    field: &'static str,
    acc: &mut Accumulator,
) {
    match name {
        "concurrency" => set(&mut limits.concurrency, key, values::count(meta, name), acc),
        "concurrency_key" => set(&mut limits.concurrency_key, key, values::name(meta, name, field), acc),
        "rate_limit" => set(&mut limits.rate_limit, key, values::rate_limit(meta, name), acc),
        _ => set(&mut limits.rate_limit_key, key, values::name(meta, name, field), acc),
    }
}
