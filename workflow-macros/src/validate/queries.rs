//! Queries: the `#[query]` methods, `fn name(&self, state: &ExecutionState) -> T`.

use darling::error::Accumulator;
use proc_macro2::Span;

use super::Checker;
use crate::parse::{Input, Receiver};
use crate::plan::QueryPlan;
use crate::types;
use crate::values::{error, ident_text};

impl Checker<'_> {
    /// Checks the `#[query]` methods: `fn name(&self, state: &ExecutionState) -> T`.
    pub(super) fn queries(&self, input: &Input, acc: &mut Accumulator) -> Vec<QueryPlan> {
        let mut plans = Vec::new();
        for q in &input.queries {
            let m = &input.methods[q.method];
            self.bound.borrow_mut()[q.method] = true;
            let name = ident_text(&m.ident);
            let shape = format!("`fn {name}(&self, state: &ExecutionState) -> T`, where `T: Serialize`");
            let mut ok = true;
            let mut fail = |span: Span, message: String| {
                acc.push(error(span, message));
                ok = false;
            };
            if let Receiver::Unsupported(span) = m.receiver {
                fail(span, format!("`{name}` is a query, so it takes `&self` or no receiver: {shape}"));
            }
            if let Some(span) = m.generics {
                fail(span, format!("`{name}` is a query, so it cannot have type or const parameters"));
            }
            if let Some(span) = m.asyncness {
                fail(
                    span,
                    format!(
                        "`{name}` is a query, so it must be a plain `fn`: it answers from the execution's state at once"
                    ),
                );
            }
            match &m.params[..] {
                [] => fail(m.ident.span(), format!("`{name}` is a query, so it takes the execution's state: {shape}")),
                [state, rest @ ..] => {
                    if let Some(attr) = &state.typed {
                        fail(
                            attr.span(),
                            format!(
                                "`{}` has no effect on a query: a query takes the execution's state only",
                                attr.written()
                            ),
                        );
                    } else if !state.by_ref {
                        fail(
                            types::focus(&state.ty),
                            format!("`{name}` is a query, so it borrows the state: `state: &ExecutionState`"),
                        );
                    }
                    if let Some(extra) = rest.first() {
                        fail(
                            extra.span,
                            format!("`{name}` is a query, so it takes the execution's state only: {shape}"),
                        );
                    }
                }
            }
            if m.output.is_none() {
                fail(m.ident.span(), format!("`{name}` is a query, so it returns its answer: {shape}"));
            }
            if ok {
                plans.push(QueryPlan {
                    name,
                    method: m.ident.clone(),
                    has_self: matches!(m.receiver, Receiver::Ref),
                    span: m.output_span,
                    state: types::focus(&m.params[0].ty),
                });
            }
        }
        plans
    }
}
