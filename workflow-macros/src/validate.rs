//! Validation: everything `Workflow::build()` checks at run time, checked here at
//! compile time with each error at the token to fix; plus what only the macro can
//! check (methods named by options exist and can be called). Produces the [`Plan`].

mod args;
mod bind;
mod graph;
mod limits;
mod queries;
mod schedule;
mod steps;
mod typed_inputs;
mod workflow_options;

use std::cell::RefCell;

use darling::error::Accumulator;
use syn::{LitStr, parse_quote};

use self::graph::Graph;
use crate::parse::{Input, Method};
use crate::plan::Plan;
use crate::values::{error, ident_text};

/// Checks the input; every problem goes to `acc`. The plan is meaningful only when
/// `acc` stayed empty.
pub(crate) fn validate(input: &Input, acc: &mut Accumulator) -> Plan {
    let attr = &input.attr;
    let root = attr.krate.as_ref().map(|k| k.value.clone()).unwrap_or_else(|| parse_quote!(::sagaflow));
    let name = match &attr.name {
        Some(n) => {
            if n.value.value().trim().is_empty() {
                acc.push(error(n.value.span(), "a workflow name cannot be empty"));
            }
            n.value.clone()
        }
        None => {
            acc.push(error(input.call_site, "missing `name`: write `#[workflow(name = \"my_workflow\")]`"));
            LitStr::new("", input.call_site)
        }
    };
    // The dependency graph's errors are reported after the workflow options', as
    // they come later in the source.
    let mut graph_errors = darling::Error::accumulator();
    let graph = Graph::of(input, &mut graph_errors);
    let checker = Checker {
        methods: Methods { all: &input.methods },
        workflow: name.value(),
        input,
        graph: &graph,
        bound: RefCell::new(vec![false; input.methods.len()]),
    };
    let options = checker.workflow_options(attr, acc);
    for e in graph_errors.into_inner() {
        acc.push(e);
    }
    let steps = checker.steps(input, acc);
    let queries = checker.queries(input, acc);
    checker.unused_typed_inputs(acc);
    let implementable = input.item.trait_.is_none()
        && input.item.generics.params.is_empty()
        && matches!(&*input.item.self_ty, syn::Type::Path(p) if p.qself.is_none());
    Plan { root, self_ty: (*input.item.self_ty).clone(), implementable, name, options, steps, queries }
}

struct Methods<'a> {
    all: &'a [Method],
}

impl Methods<'_> {
    fn get(&self, name: &str) -> Option<&Method> {
        self.all.iter().find(|m| ident_text(&m.ident) == name)
    }
}

struct Checker<'a> {
    methods: Methods<'a>,
    workflow: String,
    input: &'a Input,
    graph: &'a Graph,
    /// Which methods generated code calls (by index into `input.methods`).
    bound: RefCell<Vec<bool>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use quote::quote;

    fn check(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> Vec<String> {
        let mut acc = darling::Error::accumulator();
        let input = parse(args, item, &mut acc).unwrap();
        let _ = validate(&input, &mut acc);
        match acc.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.flatten().into_iter().map(|e| syn::Error::from(e).to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_workflow_has_no_errors() {
        let errs = check(
            quote!(name = "w", timeout = "1h", on_failure = cleanup, schedule(cron = "0 6 * * *")),
            quote! {
                impl W {
                    #[step(rollback = undo)]
                    async fn a(&self, ctx: &Context) -> StepResult { x() }
                    #[step(after = a, group = g, when = ready)]
                    fn b(ctx: Context) -> StepResult { x() }
                    #[step(after_group = g, after_any = [a])]
                    async fn c(&self) -> StepResult { x() }
                    fn ready(ctx: &Context) -> bool { true }
                    async fn undo(&self, ctx: &Context) -> StepResult { x() }
                    async fn cleanup(&self, ctx: &Context) -> StepResult { x() }
                }
            },
        );
        assert!(errs.is_empty(), "{errs:#?}");
    }

    #[test]
    fn cycles_list_the_loop_from_the_first_declared_step() {
        let errs = check(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step(after = c)] fn a() {}
                    #[step(after = a)] fn b() {}
                    #[step(after = b)] fn c() {}
                    #[step(after = d)] fn d() {}
                }
            },
        );
        assert_eq!(
            errs,
            [
                "cycle: a -> b -> c -> a (each step runs after the one before it)",
                "cycle: d -> d (each step runs after the one before it)"
            ]
        );
    }

    #[test]
    fn unknown_names_are_suggested() {
        let errs = check(
            quote!(name = "w", on_failure = clean_up),
            quote! {
                impl W {
                    #[step] fn fetch_users() {}
                    #[step(after = fetch_user, after_group = upload, group = uploads, when = is_redy)] fn b() {}
                    fn is_ready(ctx: &Context) -> bool { true }
                    fn cleanup(ctx: &Context) {}
                }
            },
        );
        assert_eq!(
            errs,
            [
                "unknown method `clean_up` in `on_failure`; did you mean `cleanup`?\nthe method must be defined in this impl block",
                "unknown step `fetch_user` in `after`; did you mean `fetch_users`?",
                "unknown group `upload` in `after_group`; did you mean `uploads`?",
                "unknown method `is_redy` in `when`; did you mean `is_ready`?\nthe method must be defined in this impl block",
            ]
        );
    }

    #[test]
    fn contradictions_are_reported_at_the_option() {
        let errs = check(
            quote!(name = "w", dead_letter_ttl = "1d", retention = "0s", step_concurrency = 0),
            quote! {
                impl W {
                    #[step(max_retries = 0, retry_delay = "1s", retry_on = [timeout], no_retry_on = ["timeout"])]
                    fn a() {}
                    #[step(retry_delay = "10s", retry_max_delay = "1s", circuit_breaker_opts(failure_threshold = 0))]
                    fn b() {}
                    #[step(on_timeout = a)]
                    fn c() {}
                }
            },
        );
        assert_eq!(
            errs,
            [
                "`dead_letter_ttl` has no effect without `dead_letter`: add `dead_letter = true`",
                "`retention` must be longer than zero: leave it out to keep ended executions",
                "`step_concurrency` must be at least 1",
                "`retry_delay` has no effect: `max_retries` is 0",
                "`timeout` is in both `retry_on` and `no_retry_on`",
                "`retry_max_delay` is shorter than `retry_delay`",
                "`circuit_breaker_opts` is set without `circuit_breaker`: name the breaker, such as `circuit_breaker = payments_api`",
                "`failure_threshold` must be at least 1",
                "`on_timeout` runs when an await times out, but this step does not set `await_approval`",
            ]
        );
    }

    #[test]
    fn signatures_are_checked_against_their_use() {
        let errs = check(
            quote!(name = "w", on_cancel = cancelled),
            quote! {
                impl W {
                    #[step(when = ready)] fn a(&self, ctx: &Context, extra: u32) {}
                    #[step] fn b(&mut self) {}
                    async fn ready(ctx: &Context) -> bool { true }
                    fn cancelled(&self, ctx: &Context) {}
                }
            },
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0]
                .starts_with("`cancelled` is used as `on_cancel`, so it takes `(&self, ctx: &Context, reason: &str)`")
        );
        assert!(errs[1].starts_with("`a` is a step, so it takes"), "{}", errs[1]);
        assert_eq!(errs[2], "`ready` is used as `when`, so it must be a plain `fn`, not `async`");
        assert!(errs[3].starts_with("`b` is a step, so it takes `&self` or no receiver"));
    }

    #[test]
    fn typed_inputs_follow_the_data_flow() {
        let errs = check(
            quote!(name = "w", input = Signup, on_success = done),
            quote! {
                impl W {
                    #[step(rollback = undo)]
                    fn a(#[input] email: &str) -> Result<u64, StepError> { x() }
                    #[step(after = a, await_approval, on_timeout = late, when = ready)]
                    fn b(#[from(a)] a: u64, #[input] signup: Signup) -> StepResult { x() }
                    #[step(after = b)]
                    fn c(#[from(b)] b: Option<u64>, #[from(a)] a: Option<&u64>) -> Result<u64, StepError> { x() }
                    fn ready(ctx: &Context) -> bool { true }
                    fn undo(#[from(a)] a: u64) -> StepResult { x() }
                    fn late(#[from(b)] b: u64, #[from(a)] a: u64) -> StepResult { x() }
                    fn done(#[from(c)] c: u64, #[from(b)] b: u64) -> StepResult { x() }
                }
            },
        );
        assert_eq!(
            errs,
            [
                "step `b` may have no output when `done` (the workflow's `on_success`) runs: it has `when = ready` \
                 and is skipped when that is false; read it as `Option<u64>`",
                "`late` (the `on_timeout` of step `b`) reads the output of step `b`, which has no output while it awaits",
            ]
        );
    }

    #[test]
    fn typed_inputs_are_not_checked_against_a_broken_graph() {
        let errs = check(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step] fn a() -> Result<u64, StepError> { x() }
                    #[step(after = aa)] fn b(#[from(a)] a: u64) -> Result<u64, StepError> { x() }
                }
            },
        );
        assert_eq!(errs, ["unknown step `aa` in `after`; did you mean `a`?"], "no second error about `a`");
    }

    #[test]
    fn signals_are_received_by_steps_and_grafts_only() {
        let errs = check(
            quote!(name = "w", on_failure = failed),
            quote! {
                impl W {
                    #[step(rollback = undo)]
                    fn a(#[signal("go")] go: bool, #[signal(go, timeout = "48h")] again: bool) -> StepResult { x() }
                    #[graft(after = a)]
                    fn g(#[signal("items")] items: Vec<u32>) -> StepResult { x() }
                    #[subworkflow(child, after = a)]
                    fn sub(#[signal("go")] go: bool) -> StepResult { x() }
                    fn undo(#[signal("go")] go: bool) -> StepResult { x() }
                    fn failed(#[signal("go")] go: bool) -> StepResult { x() }
                    fn helper(#[signal("go")] go: bool) {}
                }
            },
        );
        assert_eq!(
            errs,
            [
                "`failed` (the workflow's `on_failure`) cannot wait for a signal: `#[signal(..)]` is for the parameters \
                 of steps and grafts",
                "`undo` (the rollback of step `a`) cannot wait for a signal: `#[signal(..)]` is for the parameters of \
                 steps and grafts",
                "step `sub` is the input of a nested workflow, which cannot wait for a signal: read the signal in a step \
                 it runs after",
                "`#[signal(..)]` has no effect: `helper` is not a step, nor a `rollback`, `on_timeout`, `on_failure` or \
                 `on_success` method of this workflow",
            ]
        );
    }

    #[test]
    fn queries_take_the_state_and_answer() {
        let errs = check(
            quote!(name = "w"),
            quote! {
                impl W {
                    #[step] fn a() {}
                    #[query] fn good(&self, state: &ExecutionState) -> u32 { 1 }
                    #[query] fn plain(state: &ExecutionState) -> u32 { 1 }
                    #[query] async fn slow(&self, state: &ExecutionState) -> u32 { 1 }
                    #[query] fn nothing(&self) -> u32 { 1 }
                    #[query] fn owned(&self, state: ExecutionState) -> u32 { 1 }
                    #[query] fn extra(&self, state: &ExecutionState, more: u32) -> u32 { 1 }
                    #[query] fn silent(&self, state: &ExecutionState) {}
                    #[query] fn typed(&self, #[input] state: &ExecutionState) -> u32 { 1 }
                    #[query(name = "x")] fn named(&self, state: &ExecutionState) -> u32 { 1 }
                    #[query] #[step] fn both(&self, state: &ExecutionState) -> u32 { 1 }
                }
            },
        );
        let shape = "`fn {}(&self, state: &ExecutionState) -> T`, where `T: Serialize`";
        assert_eq!(
            errs,
            [
                "`#[query]` takes no options: the query is named after its method".to_owned(),
                "`#[step]` cannot be combined with `#[query]`: a method is a step or a query, not both".to_owned(),
                "`slow` is a query, so it must be a plain `fn`: it answers from the execution's state at once"
                    .to_owned(),
                format!("`nothing` is a query, so it takes the execution's state: {}", shape.replace("{}", "nothing")),
                "`owned` is a query, so it borrows the state: `state: &ExecutionState`".to_owned(),
                format!("`extra` is a query, so it takes the execution's state only: {}", shape.replace("{}", "extra")),
                format!("`silent` is a query, so it returns its answer: {}", shape.replace("{}", "silent")),
                "`#[input]` has no effect on a query: a query takes the execution's state only".to_owned(),
            ]
        );
    }

    #[test]
    fn schedules_are_checked() {
        let errs = check(
            quote!(
                name = "w",
                schedule(cron = ["0 6 * * *", "61 * * * *"]),
                schedule(every = "0s"),
                schedule(at = "tomorrow"),
                schedule(every = "1h", start_at = "2025-02-01T00:00:00Z", end_at = "2025-01-01T00:00:00Z")
            ),
            quote!(impl W { #[step] fn a() {} }),
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with("invalid cron expression `61 * * * *`: "));
        assert_eq!(errs[1], "invalid `every`: the interval must be greater than zero");
        assert!(errs[2].starts_with("invalid `at` instant `tomorrow`: "));
        assert_eq!(errs[3], "invalid window: `end_at` is not after `start_at`");
    }
}
