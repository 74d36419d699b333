//! Expansion: turns a checked [`Plan`] into an impl of `WorkflowType` whose
//! `definition` is the builder chain a user would write by hand, plus the inventory
//! registration. Infallible: every user error was reported by `validate`.
//!
//! Generated code names the runtime only through `<root>::__private` (bound to the
//! local alias `__sagaflow_rt`) and `::core`; spans of user tokens are kept where type
//! errors should point.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::{LitInt, LitStr};

use crate::plan::{
    Arg, Bound, BoundParam, Call, Pass, Plan, QueryPlan, Shape, Source, StepKindPlan, StepPlan, TypedParam,
};
use crate::types;
use crate::values::DurationLit;

/// The impl of `WorkflowType` and the registration.
pub(crate) fn expand(plan: &Plan) -> TokenStream {
    let Plan { root, self_ty, name, .. } = plan;
    let options = plan.options.iter().map(call);
    let steps = plan.steps.iter().map(step);
    let queries = plan.queries.iter().map(query);
    let checks = type_checks(plan);
    quote! {
        #[allow(unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery)]
        impl #root::__private::WorkflowType for #self_ty {
            const NAME: &'static str = #name;

            fn definition(
                this: #root::__private::Arc<Self>,
            ) -> ::core::result::Result<#root::__private::WorkflowDef, #root::__private::BuildError> {
                use #root::__private as __sagaflow_rt;
                #checks
                __sagaflow_rt::Workflow::new(#name)
                    #(#options)*
                    #(#steps)*
                    #(#queries)*
                    .build()
            }
        }

        #[allow(unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery)]
        const _: () = {
            fn __sagaflow_build() -> ::core::option::Option<
                ::core::result::Result<#root::__private::WorkflowDef, #root::__private::BuildError>,
            > {
                #[allow(unused_imports)]
                use #root::__private::{ViaDefault as _, ViaValue as _};
                (&#root::__private::Probe::<#self_ty>::new()).registration_build()
            }
            #root::__private::inventory::submit! {
                #root::__private::Registration::new(#name, ::core::module_path!(), __sagaflow_build)
            }
        };
    }
}

/// What is emitted beside the user's item when there were errors: an impl of
/// `WorkflowType` so that uses of the type (`.workflow(MyWorkflow)`) do not add errors
/// of their own.
pub(crate) fn placeholder(plan: &Plan) -> TokenStream {
    if !plan.implementable {
        return TokenStream::new();
    }
    let Plan { root, self_ty, name, .. } = plan;
    quote! {
        #[allow(unused_qualifications, clippy::all)]
        impl #root::__private::WorkflowType for #self_ty {
            const NAME: &'static str = #name;

            fn definition(
                _: #root::__private::Arc<Self>,
            ) -> ::core::result::Result<#root::__private::WorkflowDef, #root::__private::BuildError> {
                ::core::unreachable!("`#[workflow]` reported compile errors for this impl block")
            }
        }
    }
}

fn step(s: &StepPlan) -> TokenStream {
    let name = LitStr::new(&s.name, s.body.method.span());
    let body = bound(&s.body);
    let options = s.options.iter().map(call);
    let opts = quote!(__sagaflow_rt::Step::opts() #(#options)*);
    let span = s.body.span;
    match &s.kind {
        StepKindPlan::Task if s.options.is_empty() => quote_spanned!(span=> .step(#name, #body)),
        StepKindPlan::Task => quote_spanned!(span=> .step_with(#name, #body, #opts)),
        StepKindPlan::Graft => quote_spanned!(span=> .graft(#name, #body, #opts)),
        StepKindPlan::Workflow(child) => {
            let child = LitStr::new(child, s.body.method.span());
            quote_spanned!(span=> .add_workflow_with(#name, #child, #body, #opts))
        }
    }
}

/// `.query("status", __sagaflow_rt::query(&this, |this, state| Self::status(this, state)))`.
fn query(q: &QueryPlan) -> TokenStream {
    let name = LitStr::new(&q.name, q.method.span());
    let method = &q.method;
    let span = q.span;
    let state = format_ident!("state", span = q.state);
    let (this, call) = if q.has_self {
        (quote_spanned!(span=> this), quote_spanned!(span=> Self::#method(this, #state)))
    } else {
        (quote_spanned!(span=> _), quote_spanned!(span=> Self::#method(#state)))
    };
    quote_spanned!(span=> .query(#name, __sagaflow_rt::query(&this, |#this, #state| #call)))
}

fn call(c: &Call) -> TokenStream {
    let method = format_ident!("{}", c.method);
    let args = c.args.iter().map(arg);
    quote!(.#method(#(#args),*))
}

fn str_lit(text: &str, span: Span) -> LitStr {
    LitStr::new(text, span)
}

fn arg(a: &Arg) -> TokenStream {
    match a {
        Arg::Str(text, span) => str_lit(text, *span).into_token_stream(),
        Arg::LitStr(lit) => lit.into_token_stream(),
        Arg::StrSlice(lits) => quote!(&[#(#lits),*]),
        Arg::Strs(list) => match &list[..] {
            [(one, span)] => str_lit(one, *span).into_token_stream(),
            many => {
                let lits = many.iter().map(|(t, s)| str_lit(t, *s));
                quote!([#(#lits),*])
            }
        },
        Arg::U32(n, span) => LitInt::new(&n.to_string(), *span).into_token_stream(),
        Arg::Bool(b) => quote!(#b),
        Arg::Duration(d) => duration(d),
        Arg::Variant(ty, variant) => {
            let (ty, variant) = (format_ident!("{}", ty), format_ident!("{}", variant));
            quote!(__sagaflow_rt::#ty::#variant)
        }
        Arg::Literal(lit) => lit.into_token_stream(),
        Arg::Bound(b) => bound(b),
        Arg::Breaker { failure_threshold, reset_timeout, span } => {
            let (secs, nanos) = (reset_timeout.as_secs(), reset_timeout.subsec_nanos());
            quote_spanned! {*span=>
                __sagaflow_rt::BreakerOptions::default()
                    .failure_threshold(#failure_threshold)
                    .reset_timeout(::core::time::Duration::new(#secs, #nanos))
            }
        }
        Arg::Schedule { workflow, trigger, modifiers } => {
            let method = format_ident!("{}", trigger.method);
            let args = trigger.args.iter().map(arg);
            let modifiers = modifiers.iter().map(call);
            quote!(__sagaflow_rt::ScheduleSpec::#method(#(#args),*) #(#modifiers)* .build(#workflow)?)
        }
    }
}

fn duration(d: &DurationLit) -> TokenStream {
    match d {
        DurationLit::Text { lit, .. } => quote!(#lit),
        DurationLit::Millis { lit, value } => LitInt::new(&format!("{value}u64"), lit.span()).into_token_stream(),
        DurationLit::Infinity(span) => str_lit("infinity", *span).into_token_stream(),
    }
}

/// A method of the impl block adapted to the shape the builder takes, e.g.
/// `__sagaflow_rt::step(&this, |this, ctx| async move { this.fetch(&ctx).await })`.
fn bound(b: &Bound) -> TokenStream {
    if b.typed().next().is_some() {
        return typed_bound(b);
    }
    let method = &b.method;
    let span = b.span;
    let this = if b.has_self { quote_spanned!(span=> this) } else { quote_spanned!(span=> _) };
    // The values the runtime passes, in order; each is given to the method borrowed or
    // owned as its parameter declares.
    let (helper, values): (&str, &[&str]) = match b.shape {
        Shape::Step => ("step", &["ctx"]),
        Shape::Condition => ("condition", &["ctx"]),
        Shape::Timeout => ("timeout", &["ctx"]),
        Shape::Backoff => ("backoff", &["attempt", "delay"]),
        Shape::Cancel => ("cancel_handler", &["ctx", "reason"]),
        Shape::StepError => ("step_error_handler", &["ctx", "step", "error", "attempt"]),
    };
    let borrowed_by_runtime = matches!(b.shape, Shape::Condition | Shape::Timeout);
    let closure_params = values.iter().enumerate().map(|(i, v)| {
        if i < b.params.len() {
            let v = format_ident!("{}", v, span = span);
            quote!(#v)
        } else {
            quote_spanned!(span=> _)
        }
    });
    let args = b.params.iter().zip(values.iter()).map(|(param, v)| runtime_arg(param, v, borrowed_by_runtime));
    // Spanned at the method's return type, where type errors about the result point.
    // Called as `Self::method(..)`: `this.method(..)` could pick a method of `Arc`
    // (`clone`, `as_ref`...) over the user's.
    let receiver = match (b.has_self, borrowed_by_runtime || b.shape == Shape::Backoff) {
        (false, _) => None,
        (true, true) => Some(quote_spanned!(span=> this)),
        (true, false) => Some(quote_spanned!(span=> &this)),
    };
    let args = receiver.into_iter().chain(args);
    let call = quote_spanned!(span=> Self::#method(#(#args),*));
    let call = if b.is_async { quote_spanned!(span=> #call.await) } else { call };
    let helper = format_ident!("{}", helper, span = span);
    let body = match b.shape {
        Shape::Step | Shape::Cancel | Shape::StepError => quote_spanned!(span=> async move { #call }),
        Shape::Condition | Shape::Timeout | Shape::Backoff => call,
    };
    quote_spanned! {b.span=>
        __sagaflow_rt::#helper(&this, |#this, #(#closure_params),*| #body)
    }
}

/// A value the runtime passes, given as the parameter `param` declares it.
fn runtime_arg(param: &BoundParam, value: &str, borrowed_by_runtime: bool) -> TokenStream {
    let BoundParam::Runtime { by_ref, span } = param else { unreachable!("typed inputs are bound by `typed_bound`") };
    let v = format_ident!("{}", value, span = *span);
    match (by_ref, borrowed_by_runtime) {
        (true, false) => quote_spanned!(*span=> &#v),
        (false, true) => quote_spanned!(*span=> ::core::clone::Clone::clone(#v)),
        _ => quote_spanned!(*span=> #v),
    }
}

/// A step-shaped method with typed inputs: each is read from the context (an error
/// ends the attempt), then the method is called with them:
///
/// ```text
/// __sagaflow_rt::typed_step(&this, |this, ctx| async move {
///     let account: Account = __sagaflow_rt::output(&ctx, "create_account", "account")?;
///     ::core::result::Result::Ok::<_, __sagaflow_rt::StepError>(Self::welcome(&this, &account).await)
/// })
/// ```
fn typed_bound(b: &Bound) -> TokenStream {
    let method = &b.method;
    let span = b.span;
    let this = if b.has_self { quote_spanned!(span=> this) } else { quote_spanned!(span=> _) };
    let ctx = format_ident!("ctx", span = span);
    let mut reads = Vec::new();
    let mut input_read = false;
    for t in b.typed() {
        let TypedParam { local, label, owned, span: at, .. } = t;
        let binding = if t.pass == Pass::RefMut { quote!(mut #local) } else { quote!(#local) };
        match &t.source {
            Source::Output { step, .. } => reads.push(quote_spanned! {*at=>
                let #binding: #owned = __sagaflow_rt::output(&#ctx, #step, #label)?;
            }),
            Source::Graft { graft } => reads.push(quote_spanned! {*at=>
                let #binding: #owned = __sagaflow_rt::graft_outputs(&#ctx, #graft, #label)?;
            }),
            Source::Input => reads.push(quote_spanned! {*at=>
                let #binding: #owned = __sagaflow_rt::input(&#ctx)?;
            }),
            Source::InputField { input, .. } if !input_read => {
                input_read = true;
                let mutable =
                    b.typed().any(|t| t.pass == Pass::RefMut && matches!(t.source, Source::InputField { .. }));
                let binding = if mutable { quote!(mut __sagaflow_input) } else { quote!(__sagaflow_input) };
                reads.push(quote_spanned! {*at=>
                    let #binding: #input = __sagaflow_rt::input(&#ctx)?;
                });
            }
            Source::InputField { .. } => {}
            Source::Signal { name, timeout } => {
                let timeout = match timeout {
                    Some(d) => {
                        let d = duration(d);
                        quote_spanned!(*at=> ::core::option::Option::Some(__sagaflow_rt::DurationArg::from(#d)))
                    }
                    None => quote_spanned!(*at=> ::core::option::Option::None),
                };
                reads.push(quote_spanned! {*at=>
                    let #binding: #owned = __sagaflow_rt::signal(&#ctx, #name, #label, #timeout).await?;
                });
            }
        }
    }
    let args = b.params.iter().map(|p| match p {
        BoundParam::Runtime { .. } => runtime_arg(p, "ctx", false),
        BoundParam::Typed(t) => {
            let at = t.span;
            let value = match &t.source {
                Source::InputField { field, .. } => quote_spanned!(at=> __sagaflow_input.#field),
                _ => t.local.to_token_stream(),
            };
            match t.pass {
                Pass::Value => value,
                Pass::Ref => quote_spanned!(at=> &#value),
                Pass::RefMut => quote_spanned!(at=> &mut #value),
                Pass::OptionRef => quote_spanned!(at=> #value.as_ref()),
                Pass::OptionDeref => quote_spanned!(at=> #value.as_deref()),
            }
        }
    });
    let receiver = b.has_self.then(|| quote_spanned!(span=> &this));
    let args = receiver.into_iter().chain(args);
    let call = quote_spanned!(span=> Self::#method(#(#args),*));
    let call = if b.is_async { quote_spanned!(span=> #call.await) } else { call };
    // A step that receives a signal may stop early to wait for it.
    let (helper, early) = if b.typed().any(|t| matches!(t.source, Source::Signal { .. })) {
        (quote_spanned!(span=> signal_step), quote_spanned!(span=> Early))
    } else {
        (quote_spanned!(span=> typed_step), quote_spanned!(span=> StepError))
    };
    quote_spanned! {span=>
        __sagaflow_rt::#helper(&this, |#this, #ctx| async move {
            #(#reads)*
            ::core::result::Result::Ok::<_, __sagaflow_rt::#early>(#call)
        })
    }
}

/// For each typed input, a statement the type checker must accept, spanned at the
/// parameter: its type holds the output type of the step it reads (`Account` or
/// `Option<Account>` for a step returning `Result<Account, E>`), or is a `Vec` for a
/// graft's outputs.
fn type_checks(plan: &Plan) -> TokenStream {
    fn collect<'a>(calls: &'a [Call], out: &mut Vec<&'a Bound>) {
        for c in calls {
            for a in &c.args {
                if let Arg::Bound(b) = a {
                    out.push(b);
                }
            }
        }
    }
    let mut bounds: Vec<&Bound> = Vec::new();
    collect(&plan.options, &mut bounds);
    for s in &plan.steps {
        bounds.push(&s.body);
        collect(&s.options, &mut bounds);
    }
    let checks = bounds.iter().flat_map(|b| b.typed()).filter_map(|t| {
        let (owned, at) = (&t.owned, t.span);
        match &t.source {
            Source::Output { returns: Some(returns), .. } => {
                let returns = types::respanned(returns, at);
                Some(quote_spanned! {at=>
                    __sagaflow_rt::reads_output::<#owned, <#returns as __sagaflow_rt::StepReturn>::Ok>();
                })
            }
            Source::Graft { .. } => Some(quote_spanned!(at=> __sagaflow_rt::reads_graft::<#owned>();)),
            Source::Signal { .. } => Some(quote_spanned!(at=> __sagaflow_rt::reads_signal::<#owned>();)),
            Source::Output { returns: None, .. } | Source::Input | Source::InputField { .. } => None,
        }
    });
    // Every parameter that receives a signal reads it as the same type as the
    // first one that does: a sender sends one payload for all of them.
    let mut first: Vec<(&str, &TypedParam)> = Vec::new();
    let mut same = Vec::new();
    for t in bounds.iter().flat_map(|b| b.typed()) {
        let Source::Signal { name, .. } = &t.source else { continue };
        match first.iter().find(|(n, _)| n == name) {
            None => first.push((name, t)),
            Some((_, earlier)) => {
                let (owned, at) = (&t.owned, t.span);
                let earlier = types::respanned(&earlier.owned, at);
                same.push(quote_spanned!(at=> __sagaflow_rt::same_signal::<#owned, #earlier>();));
            }
        }
    }
    quote!(#(#checks)* #(#same)*)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use crate::validate::validate;

    fn expand_text(args: TokenStream, item: TokenStream) -> String {
        let mut acc = darling::Error::accumulator();
        let input = parse(args, item, &mut acc).unwrap();
        let plan = validate(&input, &mut acc);
        acc.finish().unwrap();
        expand(&plan).to_string()
    }

    #[test]
    fn binds_each_method_shape() {
        let text = expand_text(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step(when = ready)]
                    async fn a(&self, ctx: &Context) -> StepResult { x() }
                    #[step(after = a)]
                    fn b(ctx: Context) -> StepResult { x() }
                    #[step(after = b)]
                    async fn c() -> StepResult { x() }
                    fn ready(&self, ctx: &Context) -> bool { true }
                }
            },
        );
        let norm = text.replace(' ', "");
        assert!(
            norm.contains(
                ".step_with(\"a\",__sagaflow_rt::step(&this,|this,ctx|asyncmove{Self::a(&this,&ctx).await}),"
            ),
            "{text}"
        );
        assert!(norm.contains("__sagaflow_rt::condition(&this,|this,ctx|Self::ready(this,ctx))"), "{text}");
        assert!(norm.contains("__sagaflow_rt::step(&this,|_,ctx|asyncmove{Self::b(ctx)})"), "{text}");
        assert!(norm.contains("__sagaflow_rt::step(&this,|_,_|asyncmove{Self::c().await})"), "{text}");
    }

    #[test]
    fn reads_typed_inputs_before_the_call_and_checks_their_types() {
        let text = expand_text(
            quote!(name = "w", input = Signup),
            quote! {
                impl W {
                    #[step]
                    fn a(#[input] email: &str) -> Result<Account, StepError> { x() }
                    #[step(after = a)]
                    async fn b(&self, ctx: &Context, #[from(a)] account: Option<&Account>, #[input] all: Signup) -> StepResult { x() }
                }
            },
        );
        let norm = text.replace(' ', "");
        for expected in [
            "__sagaflow_rt::reads_output::<::core::option::Option<Account>,<Result<Account,StepError>as__sagaflow_rt::StepReturn>::Ok>();",
            "__sagaflow_rt::typed_step(&this,|_,ctx|asyncmove{let__sagaflow_input:Signup=__sagaflow_rt::input(&ctx)?;\
             ::core::result::Result::Ok::<_,__sagaflow_rt::StepError>(Self::a(&__sagaflow_input.email))})",
            "letaccount:::core::option::Option<Account>=__sagaflow_rt::output(&ctx,\"a\",\"account\")?;",
            "letall:Signup=__sagaflow_rt::input(&ctx)?;",
            "Self::b(&this,&ctx,account.as_ref(),all).await",
        ] {
            assert!(norm.contains(expected), "missing {expected}\nin {text}");
        }
    }

    #[test]
    fn a_signal_parameter_parks_the_step_until_its_signal_arrives() {
        let text = expand_text(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step]
                    async fn a(&self, ctx: &Context, #[signal("approval", timeout = "48h")] decision: &Decision) -> StepResult { x() }
                    #[step(after = a)]
                    fn b(#[signal(approval)] again: Decision2) -> StepResult { x() }
                    #[query]
                    fn status(&self, state: &ExecutionState) -> u32 { 1 }
                    #[query]
                    fn plain(state: &ExecutionState) -> u32 { 1 }
                }
            },
        );
        let norm = text.replace(' ', "");
        for expected in [
            "__sagaflow_rt::signal_step(&this,|this,ctx|asyncmove{letdecision:Decision=__sagaflow_rt::signal(&ctx,\
             \"approval\",\"decision\",::core::option::Option::Some(__sagaflow_rt::DurationArg::from(\"48h\"))).await?;\
             ::core::result::Result::Ok::<_,__sagaflow_rt::Early>(Self::a(&this,&ctx,&decision).await)})",
            "letagain:Decision2=__sagaflow_rt::signal(&ctx,\"approval\",\"again\",::core::option::Option::None).await?;",
            "__sagaflow_rt::reads_signal::<Decision>();",
            "__sagaflow_rt::same_signal::<Decision2,Decision>();",
            ".query(\"status\",__sagaflow_rt::query(&this,|this,state|Self::status(this,state)))",
            ".query(\"plain\",__sagaflow_rt::query(&this,|_,state|Self::plain(state)))",
        ] {
            assert!(norm.contains(expected), "missing {expected}\nin {text}");
        }
    }

    #[test]
    fn uses_only_the_given_crate_root_and_core() {
        let text = expand_text(
            quote!(name = "w", crate = "::renamed", schedule(every = "5m"), on_failure = a),
            quote! {
                impl W {
                    #[step(retry_backoff = linear, max_retries = 2, on_error = skip, circuit_breaker = api, circuit_breaker_opts(failure_threshold = 2))]
                    async fn a(&self, ctx: &Context) -> StepResult { x() }
                }
            },
        );
        assert!(!text.contains(" sagaflow ::"), "{text}");
        assert!(text.contains(":: renamed :: __private"), "{text}");
        let mut roots = std::collections::BTreeSet::new();
        absolute_roots(expand_tokens(&text), &mut roots);
        assert_eq!(roots.into_iter().collect::<Vec<_>>(), ["core", "renamed"]);
    }

    fn expand_tokens(text: &str) -> TokenStream {
        text.parse().unwrap()
    }

    /// The first segment of every path that starts with `::`.
    fn absolute_roots(tokens: TokenStream, out: &mut std::collections::BTreeSet<String>) {
        use proc_macro2::{Spacing, TokenTree};
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, t) in tokens.iter().enumerate() {
            match t {
                TokenTree::Group(g) => absolute_roots(g.stream(), out),
                TokenTree::Punct(p) if p.as_char() == ':' && p.spacing() == Spacing::Joint => {
                    let follows_segment = i > 0 && matches!(&tokens[i - 1], TokenTree::Ident(_))
                        || matches!(tokens.get(i.wrapping_sub(1)), Some(TokenTree::Punct(q)) if q.as_char() == '>' || q.as_char() == ':');
                    if !follows_segment && let Some(TokenTree::Ident(root)) = tokens.get(i + 2) {
                        out.insert(root.to_string());
                    }
                }
                _ => {}
            }
        }
    }

    /// The `rust` code blocks of a markdown text, without rustdoc's hidden lines.
    fn rust_blocks(doc: &str) -> Vec<Vec<String>> {
        let mut blocks = Vec::new();
        let mut current: Option<Vec<String>> = None;
        for line in doc.lines() {
            match (&mut current, line.trim_start()) {
                (None, l) if l.starts_with("```rust") => current = Some(Vec::new()),
                (Some(_), "```") => blocks.extend(current.take()),
                (Some(b), l) if !(l == "#" || l.starts_with("# ")) => b.push(line.to_owned()),
                _ => {}
            }
        }
        blocks
    }

    #[test]
    fn crate_docs_show_the_real_expansion() {
        let blocks = rust_blocks(include_str!("../docs/crate.md"));
        // The first block's visible items: the struct and the annotated impl block.
        let source: String =
            blocks[0].iter().take_while(|l| !l.starts_with("let ")).cloned().collect::<Vec<_>>().join("\n");
        let file: syn::File = syn::parse_str(&source).unwrap();
        let mut item = file
            .items
            .into_iter()
            .find_map(|i| match i {
                syn::Item::Impl(i) => Some(i),
                _ => None,
            })
            .unwrap();
        let attr = item.attrs.remove(0);
        let args = attr.meta.require_list().unwrap().tokens.clone();
        let actual: TokenStream = expand_text(args, item.into_token_stream()).parse().unwrap();
        let shown: TokenStream = blocks[1].join("\n").parse().unwrap();
        assert_eq!(normalized(actual), normalized(shown), "docs/crate.md shows an outdated expansion");
    }

    /// Tokens as text, ignoring spacing and the trailing commas `rustfmt` adds.
    fn normalized(tokens: TokenStream) -> Vec<String> {
        use proc_macro2::{Delimiter, TokenTree};
        let mut out = Vec::new();
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, t) in tokens.iter().enumerate() {
            match t {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    out.push(open.to_owned());
                    out.extend(normalized(g.stream()));
                    out.push(close.to_owned());
                }
                TokenTree::Punct(p) if p.as_char() == ',' && i + 1 == tokens.len() => {}
                other => out.push(other.to_string()),
            }
        }
        out
    }

    #[test]
    fn output_is_deterministic() {
        let args = quote!(name = "w", tags = ["a", "b"], metadata(owner = "x", tier = 1));
        let item = quote! {
            impl W {
                #[step(group = g)] fn a() {}
                #[step(group = g)] fn b() {}
                #[step(after_group = g)] fn c() {}
            }
        };
        assert_eq!(expand_text(args.clone(), item.clone()), expand_text(args, item));
    }
}
