//! Typed inputs: what a `#[from(..)]`, `#[input]` or `#[signal(..)]` parameter reads,
//! checked against the workflow's input and its data flow.

use darling::error::Accumulator;
use proc_macro2::Span;
use quote::format_ident;
use syn::{Ident, Type, parse_quote};

use super::Checker;
use crate::flow::{Absence, Order};
use crate::parse::{Method, Param, ParamAttr, StepKind};
use crate::plan::{Source, TypedParam};
use crate::suggest;
use crate::types;
use crate::values::{Name, error, ident_text};

/// A method that reads typed inputs, and what it is to the workflow (which decides
/// what it may read).
#[derive(Clone, Copy, Debug)]
pub(super) enum Reader {
    /// The method of step `i`.
    Step(usize),
    /// The `rollback` of step `i`: runs after `i` completed.
    Rollback(usize),
    /// The `on_timeout` of step `i`: runs when its await times out.
    OnTimeout(usize),
    /// `on_failure` or `on_success`.
    Handler(&'static str),
}

impl Checker<'_> {
    /// A `#[from(..)]` or `#[input]` parameter of `m`, the `i`-th: checks what it
    /// reads against the workflow.
    pub(super) fn typed_param(
        &self,
        m: &Method,
        i: usize,
        p: &Param,
        attr: &ParamAttr,
        reader: Reader,
        acc: &mut Accumulator,
    ) -> Option<TypedParam> {
        let label = p.ident.as_ref().map_or_else(|| format!("#{}", i + 1), ident_text);
        let local = match &p.ident {
            Some(id) if !["this", "ctx"].contains(&ident_text(id).as_str()) && !id.to_string().starts_with("__") => {
                id.clone()
            }
            Some(id) => format_ident!("__sagaflow_{}", ident_text(id)),
            None => format_ident!("__sagaflow_arg{}", i + 1),
        };
        let (owned, pass) = types::owned(&p.ty);
        let source = match attr {
            ParamAttr::Input { attr, field } => self.input_source(p, *attr, field.as_ref(), acc)?,
            ParamAttr::From { step, .. } => self.output_source(m, p, step, &owned, reader, acc)?,
            ParamAttr::Signal { attr, name, timeout } => {
                self.signal_source(m, *attr, name, timeout.as_ref(), reader, acc)?
            }
        };
        Some(TypedParam { local, label, source, owned, pass, span: p.span })
    }

    /// What an `#[input]` parameter reads: the whole input when its type is the
    /// workflow's `input = T`, otherwise the field of its name.
    fn input_source(&self, p: &Param, attr: Span, field: Option<&Name>, acc: &mut Accumulator) -> Option<Source> {
        let Some(input_ty) = self.input.attr.input.as_ref().map(|o| &o.value) else {
            if self.input.attr.input_invalid {
                return None;
            }
            acc.push(error(
                attr,
                format!(
                    "`#[input]` reads the workflow's typed input, but workflow `{}` declares none: add \
                     `input = MyInput` to `#[workflow(..)]`, where `MyInput` is a `Deserialize` type",
                    self.workflow
                ),
            ));
            return None;
        };
        match (field, &p.ident) {
            (Some(f), _) => match field_ident(f) {
                Some(field) => Some(Source::InputField { field, input: input_ty.clone() }),
                None => {
                    acc.push(error(
                        f.span,
                        format!(
                            "`{}` is not a field name: `#[input(field)]` names a field of `{}`",
                            f.value,
                            types::text(input_ty)
                        ),
                    ));
                    None
                }
            },
            (None, _) if types::same(&p.ty, input_ty) => Some(Source::Input),
            (None, Some(ident)) => Some(Source::InputField { field: ident.clone(), input: input_ty.clone() }),
            (None, None) => {
                acc.push(error(
                    p.pat_span,
                    format!("name the field of `{}` this parameter reads: `#[input(field)]`", types::text(input_ty)),
                ));
                None
            }
        }
    }

    /// What a `#[signal("name")]` parameter of `m` receives: only a step or a graft
    /// can wait for a signal (it parks, then runs again with it).
    fn signal_source(
        &self,
        m: &Method,
        attr: Span,
        name: &Name,
        timeout: Option<&crate::values::DurationLit>,
        reader: Reader,
        acc: &mut Accumulator,
    ) -> Option<Source> {
        let subject = self.subject(m, reader);
        let why = match reader {
            Reader::Step(i) => match &self.input.steps[i].attr.kind {
                StepKind::Step | StepKind::Graft => None,
                StepKind::Subworkflow(_) => Some(format!(
                    "{subject} is the input of a nested workflow, which cannot wait for a signal: read the signal in a \
                     step it runs after"
                )),
            },
            Reader::Rollback(_) | Reader::OnTimeout(_) | Reader::Handler(_) => Some(format!(
                "{subject} cannot wait for a signal: `#[signal(..)]` is for the parameters of steps and grafts"
            )),
        };
        if let Some(why) = why {
            acc.push(error(attr, why));
            return None;
        }
        Some(Source::Signal { name: name.value.clone(), timeout: timeout.cloned() })
    }

    /// What a `#[from(step)]` parameter of `m` reads, checked against the data flow:
    /// the step must have ended when `reader` runs, and a step that may have no
    /// output is read as an `Option`.
    fn output_source(
        &self,
        m: &Method,
        p: &Param,
        step: &Name,
        owned: &Type,
        reader: Reader,
        acc: &mut Accumulator,
    ) -> Option<Source> {
        let graph = self.graph;
        let Some(producer) = graph.index(&step.value) else {
            acc.push(error(
                step.span,
                format!(
                    "unknown step `{}` in `#[from]`{}",
                    step.value,
                    suggest::did_you_mean(&step.value, graph.names.iter().map(|n| n.value.as_str()))
                ),
            ));
            return None;
        };
        let decl = &self.input.steps[producer];
        let is_graft = matches!(decl.attr.kind, StepKind::Graft);
        let source = match &decl.attr.kind {
            StepKind::Graft => Source::Graft { graft: step.value.clone() },
            StepKind::Step => Source::Output {
                step: step.value.clone(),
                returns: Some(self.input.methods[decl.method].output.clone().unwrap_or_else(|| parse_quote!(()))),
            },
            StepKind::Subworkflow(_) => Source::Output { step: step.value.clone(), returns: None },
        };
        let Some(flow) = &graph.flow else { return Some(source) };
        let subject = self.subject(m, reader);
        let read = |what: &str| format!("{subject} reads the output of step `{}`, {what}", step.value);
        let order_error = |s: usize| -> Option<String> {
            match flow.order(producer, s) {
                Order::Before => None,
                Order::Same => Some(match reader {
                    Reader::Rollback(_) => return None,
                    Reader::OnTimeout(_) => read("which has no output while it awaits"),
                    _ => format!(
                        "{subject} cannot read its own output: `#[from(..)]` reads a step that runs before this one"
                    ),
                }),
                Order::After(path) => {
                    let path: Vec<&str> = path.iter().map(|&x| graph.name(x)).collect();
                    Some(read(&format!(
                        "which runs after it (`{}`): only the output of a step that runs before can be read",
                        path.join(" -> ")
                    )))
                }
                Order::ThroughAny { join, alternative } => {
                    let first = suggest::list(flow.alternatives(join).iter().map(|&x| graph.name(x)));
                    let (whose, starter) = if join == s {
                        ("one of its `after_any` steps".to_owned(), "it".to_owned())
                    } else {
                        let j = graph.name(join);
                        (format!("an `after_any` step of `{j}`"), format!("`{j}`"))
                    };
                    let how = if alternative == producer {
                        whose
                    } else {
                        format!("which runs before it only on the path through `{}`, {whose}", graph.name(alternative))
                    };
                    Some(read(&format!(
                        "{how}: {starter} starts as soon as the first of {first} completes, so `{}` may not have run yet",
                        step.value
                    )))
                }
                Order::Unordered => Some(read(&format!(
                    "which is not a step it runs after: nothing orders the two, so `{}` may not have run yet; add `after = {}`{}",
                    step.value,
                    step.value,
                    match reader {
                        Reader::Step(_) => String::new(),
                        _ => format!(" to step `{}`", graph.name(s)),
                    }
                ))),
            }
        };
        let reading_step = match reader {
            Reader::Step(s) | Reader::Rollback(s) | Reader::OnTimeout(s) => Some(s),
            Reader::Handler(_) => None,
        };
        if let Some(message) = reading_step.and_then(order_error) {
            acc.push(error(step.span, message));
            return None;
        }
        // What may be missing when the reader runs.
        let on_failure = matches!(reader, Reader::Handler("on_failure"));
        let own = matches!(reader, Reader::Rollback(s) if s == producer);
        let why = if on_failure {
            Some("the workflow's `on_failure` handler runs after a failure, when some steps have not run".to_owned())
        } else if own {
            None
        } else if is_graft {
            match decl.attr.on_error.as_ref().map(|o| o.value) {
                Some("Skip") => Some("they inherit its `on_error = skip`, so one that fails is skipped".to_owned()),
                Some("Continue") => {
                    Some("they inherit its `on_error = continue`, so one that fails has none".to_owned())
                }
                _ => None,
            }
        } else {
            flow.absence(producer).map(Absence::explain)
        };
        if let Some(why) = why {
            let ty = types::text(&p.ty);
            if is_graft && types::vec_of_option(owned) == Some(false) {
                acc.push(error(
                    types::focus(&p.ty),
                    format!(
                        "the steps that graft `{}` adds may have no output when {subject} runs: {why}; read them as \
                         `Vec<Option<T>>`, not `{ty}`",
                        step.value
                    ),
                ));
                return None;
            }
            if !is_graft && !types::is_option(owned) {
                acc.push(error(
                    types::focus(&p.ty),
                    format!(
                        "step `{}` may have no output when {subject} runs: {why}; read it as `Option<{ty}>`",
                        step.value
                    ),
                ));
                return None;
            }
        }
        Some(source)
    }

    /// How messages name the method that reads.
    fn subject(&self, m: &Method, reader: Reader) -> String {
        let method = ident_text(&m.ident);
        match reader {
            Reader::Step(s) => format!("step `{}`", self.graph.name(s)),
            Reader::Rollback(s) => format!("`{method}` (the rollback of step `{}`)", self.graph.name(s)),
            Reader::OnTimeout(s) => format!("`{method}` (the `on_timeout` of step `{}`)", self.graph.name(s)),
            Reader::Handler(option) => format!("`{method}` (the workflow's `{option}`)"),
        }
    }

    /// Typed inputs on a method that nothing calls would be ignored: an error.
    pub(super) fn unused_typed_inputs(&self, acc: &mut Accumulator) {
        let bound = self.bound.borrow();
        for (m, _) in self.methods.all.iter().zip(bound.iter()).filter(|(_, b)| !**b) {
            if let Some(attr) = m.params.iter().find_map(|p| p.typed.as_ref()) {
                acc.push(error(
                    attr.span(),
                    format!(
                        "`{}` has no effect: `{}` is not a step, nor a `rollback`, `on_timeout`, `on_failure` or \
                         `on_success` method of this workflow",
                        attr.written(),
                        ident_text(&m.ident)
                    ),
                ));
            }
        }
    }
}

/// The field named by `#[input(field)]`, as an identifier (raw for a keyword:
/// `#[input(r#type)]` reads the field `r#type`).
fn field_ident(name: &Name) -> Option<Ident> {
    if syn::parse_str::<Ident>(&name.value).is_ok() {
        return Some(Ident::new(&name.value, name.span));
    }
    syn::parse_str::<Ident>(&format!("r#{}", name.value)).ok().map(|_| Ident::new_raw(&name.value, name.span))
}
