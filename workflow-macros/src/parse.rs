//! Parsing: the `#[workflow]` options, the impl block, its methods and the
//! `#[step]`/`#[graft]`/`#[subworkflow]` attributes on them (which are removed from
//! the item). Only syntax is checked here; meaning is checked in `validate`.

mod limits;
mod method;
mod options;
mod param_attr;
mod schedule;
mod step_attr;
mod workflow_attr;

use darling::error::Accumulator;
use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, Meta, Type};

use self::method::method_of;
use self::step_attr::parse_step_attr;
use self::workflow_attr::parse_workflow_attr;
use crate::values::error;

pub(crate) use self::limits::LimitAttrs;
pub(crate) use self::method::{Method, Param, Receiver};
pub(crate) use self::param_attr::ParamAttr;
pub(crate) use self::schedule::{ScheduleAttr, Trigger};
pub(crate) use self::step_attr::{StepAttr, StepKind};
pub(crate) use self::workflow_attr::WorkflowAttr;

/// A method marked `#[query]`.
pub(crate) struct QueryDecl {
    /// Index into [`Input::methods`].
    pub(crate) method: usize,
}

/// A method marked as a step.
pub(crate) struct StepDecl {
    pub(crate) attr: StepAttr,
    /// Index into [`Input::methods`].
    pub(crate) method: usize,
}

/// Everything `#[workflow]` read.
pub(crate) struct Input {
    pub(crate) attr: WorkflowAttr,
    /// The impl block, without the step attributes.
    pub(crate) item: ItemImpl,
    pub(crate) steps: Vec<StepDecl>,
    pub(crate) queries: Vec<QueryDecl>,
    pub(crate) methods: Vec<Method>,
    /// Where the attribute was written (errors about the whole workflow point here).
    pub(crate) call_site: Span,
}

/// The attributes consumed by `#[workflow]`, found by the last segment of their path.
pub(crate) const INNER_ATTRIBUTES: &[&str] = &["step", "graft", "subworkflow", "query"];

/// Parses the attribute arguments and the impl block. `Err` only when the item is not
/// an impl block at all; every other problem is pushed to `acc`.
pub(crate) fn parse(args: TokenStream, item: TokenStream, acc: &mut Accumulator) -> Result<Input, syn::Error> {
    let mut item: ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`#[workflow]` goes on an impl block: `#[workflow(name = \"...\")] impl MyWorkflow { .. }`",
        )
    })?;
    let call_site = Span::call_site();
    let attr = parse_workflow_attr(args, acc);
    if let Some((path, _)) = &item.trait_ {
        acc.push(error(
            path.span(),
            "`#[workflow]` goes on an inherent impl block (`impl MyWorkflow { .. }`), not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        acc.push(error(
            item.generics.params.span(),
            "`#[workflow]` does not support generic impl blocks: a workflow has one name and one definition",
        ));
    }
    if !matches!(&*item.self_ty, Type::Path(p) if p.qself.is_none()) {
        acc.push(error(item.self_ty.span(), "`#[workflow]` goes on the impl block of a named type"));
    }
    let mut steps = Vec::new();
    let mut queries = Vec::new();
    let mut methods = Vec::new();
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(f) => {
                let attrs = take_inner_attributes(&mut f.attrs);
                let index = methods.len();
                methods.push(method_of(&mut f.sig, acc));
                let mut first: Option<&'static str> = None;
                for a in attrs {
                    let Some(kind_name) = inner_name(&a) else { continue };
                    if let Some(prev) = first {
                        let why = if "query" == kind_name || "query" == prev {
                            "a method is a step or a query, not both"
                        } else {
                            "a method is one kind of step"
                        };
                        acc.push(error(
                            a.path().span(),
                            format!("`#[{kind_name}]` cannot be combined with `#[{prev}]`: {why}"),
                        ));
                        continue;
                    }
                    first = Some(kind_name);
                    if kind_name == "query" {
                        if !matches!(a.meta, Meta::Path(_)) {
                            acc.push(error(
                                a.path().span(),
                                "`#[query]` takes no options: the query is named after its method",
                            ));
                        }
                        queries.push(QueryDecl { method: index });
                        continue;
                    }
                    if let Some(attr) = parse_step_attr(kind_name, &a, acc) {
                        steps.push(StepDecl { attr, method: index });
                    }
                }
            }
            ImplItem::Const(c) => reject_inner(&mut c.attrs, acc),
            ImplItem::Type(t) => reject_inner(&mut t.attrs, acc),
            ImplItem::Macro(m) => reject_inner(&mut m.attrs, acc),
            _ => {}
        }
    }
    Ok(Input { attr, item, steps, queries, methods, call_site })
}

/// `step`, `graft` or `subworkflow` when the attribute is one of ours.
fn inner_name(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?;
    INNER_ATTRIBUTES.iter().copied().find(|n| last.ident == n)
}

fn take_inner_attributes(attrs: &mut Vec<syn::Attribute>) -> Vec<syn::Attribute> {
    let (ours, rest) = std::mem::take(attrs).into_iter().partition(|a| inner_name(a).is_some());
    *attrs = rest;
    ours
}

fn reject_inner(attrs: &mut Vec<syn::Attribute>, acc: &mut Accumulator) {
    for a in take_inner_attributes(attrs) {
        let name = inner_name(&a).unwrap_or("step");
        acc.push(error(a.path().span(), format!("`#[{name}]` goes on a method (`fn`) of the impl block")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors(acc: Accumulator) -> Vec<String> {
        match acc.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.flatten().into_iter().map(|e| syn::Error::from(e).to_string()).collect(),
        }
    }

    #[test]
    fn reads_methods_and_removes_step_attributes() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step(after = b, timeout = "30s")]
                    async fn a(&self, ctx: &Context) -> StepResult { todo() }
                    #[sagaflow::graft]
                    fn b(ctx: Context) -> StepResult { todo() }
                    fn helper(&self) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(errors(acc).is_empty());
        assert_eq!(input.steps.len(), 2);
        assert_eq!(input.methods.len(), 3);
        assert!(matches!(input.methods[0].receiver, Receiver::Ref));
        assert!(input.methods[0].params[0].by_ref);
        assert!(matches!(input.methods[1].receiver, Receiver::None));
        assert!(!input.methods[1].params[0].by_ref);
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("step") && !text.contains("graft"), "{text}");
    }

    #[test]
    fn reads_and_removes_typed_input_attributes() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w", input = Signup),
            quote! {
                impl W {
                    #[step]
                    fn a(ctx: &Context, #[from(b)] account: &Account, #[sagaflow::input(email)] to: String) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(errors(acc).is_empty());
        let params = &input.methods[0].params;
        assert!(params[0].typed.is_none());
        assert!(matches!(&params[1].typed, Some(ParamAttr::From { step, .. }) if step.value == "b"));
        assert!(matches!(&params[2].typed, Some(ParamAttr::Input { field: Some(f), .. }) if f.value == "email"));
        assert_eq!(params[1].ident.as_ref().unwrap(), "account");
        assert!(input.attr.input.is_some());
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("from") && !text.contains("input"), "{text}");
    }

    #[test]
    fn reads_signal_parameters_and_queries() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step]
                    fn a(#[signal("approval", timeout = "2d")] d: Decision, #[sagaflow::signal(go)] g: bool) {}
                    #[sagaflow::query]
                    fn status(&self, state: &ExecutionState) -> u32 { 1 }
                    #[step]
                    fn b(#[signal] d: bool, #[signal(timeout = "1h")] e: bool, #[signal("x", tmeout = "1h")] f: bool) {}
                }
            },
            &mut acc,
        )
        .unwrap();
        let errs = errors(acc);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with("`#[signal]` names the signal this parameter receives"), "{}", errs[0]);
        assert!(errs[1].starts_with("expected the signal's name first"), "{}", errs[1]);
        assert!(
            errs[2].starts_with("unknown option `tmeout` of `#[signal(..)]`; did you mean `timeout`?"),
            "{}",
            errs[2]
        );
        let params = &input.methods[0].params;
        assert!(matches!(
            &params[0].typed,
            Some(ParamAttr::Signal { name, timeout: Some(t), .. }) if name.value == "approval" && t.value().is_some()
        ));
        assert!(matches!(&params[1].typed, Some(ParamAttr::Signal { name, timeout: None, .. }) if name.value == "go"));
        assert_eq!(input.queries.len(), 1);
        assert_eq!(input.queries[0].method, 1);
        let text = quote::ToTokens::to_token_stream(&input.item).to_string();
        assert!(!text.contains("signal") && !text.contains("query"), "{text}");
    }

    #[test]
    fn reports_every_bad_option_at_once() {
        let mut acc = darling::Error::accumulator();
        let _ = parse(
            quote!(name = "w", tmeout = "1h", name = "x"),
            quote! {
                impl W {
                    #[step(aftr = a, max_retries = "3")]
                    async fn a(&self) {}
                }
            },
            &mut acc,
        );
        let errs = errors(acc);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with(
            "unknown option `tmeout` of `#[workflow]`; did you mean `timeout`?\nexpected one of: `name`, `crate`,"
        ));
        assert_eq!(errs[1], "duplicate option `name`");
        assert!(errs[2].starts_with("unknown option `aftr` of `#[step]`; did you mean `after`?"));
        assert_eq!(errs[3], "expected a whole number for `max_retries`, such as `max_retries = 3`");
    }

    #[test]
    fn subworkflow_needs_the_child_first() {
        let mut acc = darling::Error::accumulator();
        let input = parse(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[subworkflow(send_notification, after = a)]
                    fn notify(&self) -> StepResult { todo() }
                    #[subworkflow(after = a)]
                    fn other(&self) -> StepResult { todo() }
                }
            },
            &mut acc,
        )
        .unwrap();
        assert!(matches!(&input.steps[0].attr.kind, StepKind::Subworkflow(n) if n.value == "send_notification"));
        let errs = errors(acc);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("`#[subworkflow]` needs the name of the workflow to run first"));
    }

    #[test]
    fn schedules_have_one_trigger() {
        let mut acc = darling::Error::accumulator();
        let _ = parse(
            quote!(name = "w", schedule(cron = "0 6 * * *", every = "5m"), schedule(timezone = "UTC")),
            quote!(impl W {}),
            &mut acc,
        );
        let errs = errors(acc);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("a schedule has one trigger, and this one already has `cron`"));
        assert_eq!(errs[1], "`schedule(...)` needs one of `cron`, `every`, `at` or `in`");
    }
}
