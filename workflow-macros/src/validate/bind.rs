//! Binding the methods that options and steps name: each exists and can be called
//! with the shape of arguments generated code passes.

use darling::error::Accumulator;
use syn::Ident;

use super::Checker;
use super::typed_inputs::Reader;
use crate::parse::{Method, ParamAttr, Receiver};
use crate::plan::{Bound, BoundParam, Shape};
use crate::suggest;
use crate::types;
use crate::values::{error, ident_text};

/// The arguments each shape passes, for messages.
fn shape_signature(shape: Shape) -> &'static str {
    match shape {
        Shape::Step => {
            "`(&self, ctx: &Context)`, `(&self, ctx: Context)` or `(&self)`, with or without `&self`, plus any \
             typed inputs marked `#[from(step)]` or `#[input]`"
        }
        Shape::Condition => "`(&self, ctx: &Context) -> bool` (or without `&self`)",
        Shape::Timeout => "`(&self, ctx: &Context) -> Duration` or `-> Option<Duration>` (or without `&self`)",
        Shape::Backoff => "`(&self, attempt: u32, base_delay: Duration) -> Duration` (or without `&self`)",
        Shape::Cancel => "`(&self, ctx: &Context, reason: &str)` (or without `&self`)",
        Shape::StepError => {
            "`(&self, ctx: &Context, step: &str, error: &StepError, attempt: u32)` (or without `&self`)"
        }
    }
}

fn arity(shape: Shape) -> std::ops::RangeInclusive<usize> {
    match shape {
        Shape::Step => 0..=1,
        Shape::Condition | Shape::Timeout => 1..=1,
        Shape::Backoff | Shape::Cancel => 2..=2,
        Shape::StepError => 4..=4,
    }
}

impl Checker<'_> {
    /// Finds the method an option names and checks it can be called with `shape`
    /// (and, for a step-shaped method, what its typed inputs read, as `reader`).
    pub(super) fn bind(
        &self,
        ident: &Ident,
        option: &str,
        shape: Shape,
        reader: Option<Reader>,
        acc: &mut Accumulator,
    ) -> Option<Bound> {
        let text = ident_text(ident);
        let Some(m) = self.methods.get(&text) else {
            let known: Vec<String> = self.methods.all.iter().map(|m| ident_text(&m.ident)).collect();
            acc.push(error(
                ident.span(),
                format!(
                    "unknown method `{text}` in `{option}`{}\nthe method must be defined in this impl block",
                    suggest::did_you_mean(&text, known.iter().map(String::as_str))
                ),
            ));
            return None;
        };
        self.check_callable(m, &format!("used as `{option}`"), shape, reader, acc)
    }

    /// Checks a method's signature against the shape it is called with.
    pub(super) fn check_callable(
        &self,
        m: &Method,
        role: &str,
        shape: Shape,
        reader: Option<Reader>,
        acc: &mut Accumulator,
    ) -> Option<Bound> {
        if let Some(i) = self.methods.all.iter().position(|x| std::ptr::eq(x, m)) {
            self.bound.borrow_mut()[i] = true;
        }
        let name = ident_text(&m.ident);
        let mut ok = true;
        if let Receiver::Unsupported(span) = m.receiver {
            acc.push(error(
                span,
                format!("`{name}` is {role}, so it takes `&self` or no receiver (generated code shares one value between executions)"),
            ));
            ok = false;
        }
        if let Some(span) = m.generics {
            acc.push(error(span, format!("`{name}` is {role}, so it cannot have type or const parameters")));
            ok = false;
        }
        if let Some(span) = m.asyncness
            && !matches!(shape, Shape::Step | Shape::Cancel | Shape::StepError)
        {
            acc.push(error(span, format!("`{name}` is {role}, so it must be a plain `fn`, not `async`")));
            ok = false;
        }
        let reader = reader.filter(|_| shape == Shape::Step);
        let mut params = Vec::new();
        let mut runtime = 0;
        for (i, p) in m.params.iter().enumerate() {
            match (&p.typed, reader) {
                // Its attribute was malformed (reported): no follow-on error.
                (None, _) if p.typed_invalid => ok = false,
                (None, _) => {
                    runtime += 1;
                    if shape == Shape::Step && runtime == 2 {
                        acc.push(error(
                            types::focus(&p.ty),
                            format!(
                                "`{name}` is {role}, so it takes at most one context (`ctx: &Context` or `ctx: Context`); \
                                 mark the other parameters as typed inputs: `#[from(step)]` for the output of a step \
                                 that runs before, `#[input]` for the workflow's input"
                            ),
                        ));
                        ok = false;
                    }
                    params.push(BoundParam::Runtime { by_ref: p.by_ref, span: p.span });
                }
                (Some(attr), Some(reader)) => match self.typed_param(m, i, p, attr, reader, acc) {
                    Some(t) => params.push(BoundParam::Typed(Box::new(t))),
                    None => ok = false,
                },
                (Some(attr), None) => {
                    let readers = match attr {
                        ParamAttr::Signal { .. } => "steps and grafts",
                        _ => "steps and of `rollback`, `on_timeout`, `on_failure` and `on_success` methods",
                    };
                    acc.push(error(
                        attr.span(),
                        format!(
                            "`{name}` is {role}, which takes no typed inputs: `{}` is for the parameters of {readers}",
                            attr.written()
                        ),
                    ));
                    ok = false;
                }
            }
        }
        if shape != Shape::Step {
            let allowed = arity(shape);
            let n = m.params.len();
            if n > *allowed.end() {
                acc.push(error(
                    m.params[*allowed.end()].span,
                    format!(
                        "`{name}` is {role}, so it takes {}; this argument is one too many",
                        shape_signature(shape)
                    ),
                ));
                ok = false;
            } else if n < *allowed.start() {
                acc.push(error(
                    m.ident.span(),
                    format!(
                        "`{name}` is {role}, so it takes {}; it takes {n} argument{} besides `self`",
                        shape_signature(shape),
                        if n == 1 { "" } else { "s" }
                    ),
                ));
                ok = false;
            }
        }
        ok.then(|| Bound {
            shape,
            method: m.ident.clone(),
            has_self: matches!(m.receiver, Receiver::Ref),
            is_async: m.asyncness.is_some(),
            params,
            span: m.output_span,
        })
    }
}
