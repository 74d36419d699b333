//! Validation: everything `Workflow::build()` checks at run time, checked here at
//! compile time with each error at the token to fix; plus what only the macro can
//! check (methods named by options exist and can be called). Produces the [`Plan`].

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use darling::error::Accumulator;
use proc_macro2::Span;
use quote::format_ident;
use syn::{Ident, Lit, LitInt, LitStr, Type, parse_quote};

use crate::flow::{Absence, Flow, Node, Order};
use crate::parse::{
    Input, LimitAttrs, Method, Param, ParamAttr, Receiver, ScheduleAttr, StepAttr, StepKind, Trigger, WorkflowAttr,
};
use crate::plan::{Arg, Bound, BoundParam, Call, Plan, QueryPlan, Shape, Source, StepKindPlan, StepPlan, TypedParam};
use crate::suggest;
use crate::types;
use crate::values::{BackoffValue, Name, TimeoutValue, count_value, error, ident_text};

/// Defaults of circuit breaker options (`BreakerOptions::default()` in the runtime).
const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_RESET: Duration = Duration::from_secs(30);

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

/// The steps' names and dependencies, checked; and their data flow when the
/// dependencies have no errors.
struct Graph {
    names: Vec<Name>,
    flow: Option<Flow>,
}

impl Graph {
    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.value == name)
    }

    fn name(&self, i: usize) -> &str {
        &self.names[i].value
    }

    /// Names (a duplicate is reported at its second occurrence), dependencies (each
    /// unknown name at its token) and cycles.
    fn of(input: &Input, acc: &mut Accumulator) -> Graph {
        if input.steps.is_empty() {
            if input.item.trait_.is_none() {
                acc.push(error(
                    input.call_site,
                    "this workflow has no steps: mark methods with `#[step]`, `#[graft]` or `#[subworkflow(..)]`",
                ));
            }
            // Otherwise already reported: the attribute is on a trait impl.
            return Graph { names: Vec::new(), flow: None };
        }
        let mut names: Vec<Name> = Vec::new();
        for decl in &input.steps {
            let method = &input.methods[decl.method];
            let name = match &decl.attr.name {
                Some(n) => n.value.clone(),
                None => Name { value: ident_text(&method.ident), span: method.ident.span() },
            };
            if names.iter().any(|n| n.value == name.value) {
                acc.push(error(name.span, format!("duplicate step `{}`: step names must be unique", name.value)));
            }
            names.push(name);
        }
        let errors = std::cell::Cell::new(false);
        let index = |name: &str| names.iter().position(|n| n.value == name);
        let all_names: Vec<&str> = names.iter().map(|n| n.value.as_str()).collect();
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, decl) in input.steps.iter().enumerate() {
            if let Some(g) = &decl.attr.group {
                groups.entry(g.value.value.as_str()).or_default().push(i);
            }
        }

        // Dependencies, with the token that declared each edge.
        let mut deps: Vec<Vec<(usize, Span)>> = vec![Vec::new(); names.len()];
        let mut nodes: Vec<Node> = vec![Node::default(); names.len()];
        for (i, decl) in input.steps.iter().enumerate() {
            let a = &decl.attr;
            let lookup = |option: &str, n: &Name, acc: &mut Accumulator| -> Option<usize> {
                let found = index(&n.value);
                if found.is_none() {
                    errors.set(true);
                    acc.push(error(
                        n.span,
                        format!(
                            "unknown step `{}` in `{option}`{}",
                            n.value,
                            suggest::did_you_mean(&n.value, all_names.iter().copied())
                        ),
                    ));
                }
                found
            };
            for n in a.after.iter().flat_map(|o| &o.value) {
                if let Some(d) = lookup("after", n, acc) {
                    deps[i].push((d, n.span));
                    nodes[i].all.push(d);
                }
            }
            for n in a.after_any.iter().flat_map(|o| &o.value) {
                if a.after.iter().flat_map(|o| &o.value).any(|x| x.value == n.value) {
                    acc.push(error(n.span, format!("`{}` is in both `after` and `after_any`", n.value)));
                    continue;
                }
                if let Some(d) = lookup("after_any", n, acc) {
                    deps[i].push((d, n.span));
                    nodes[i].any.push(d);
                }
            }
            for g in a.after_group.iter().flat_map(|o| &o.value) {
                match groups.get(g.value.as_str()) {
                    Some(members) => {
                        deps[i].extend(members.iter().map(|&m| (m, g.span)));
                        nodes[i].all.extend(members);
                    }
                    None => {
                        errors.set(true);
                        let hint = if groups.is_empty() {
                            "\nno step of this workflow has a `group`".to_owned()
                        } else {
                            suggest::did_you_mean(&g.value, groups.keys().copied())
                        };
                        acc.push(error(g.span, format!("unknown group `{}` in `after_group`{hint}", g.value)));
                    }
                }
            }
            for n in a.after_graft.iter().flat_map(|o| &o.value) {
                if let Some(d) = lookup("after_graft", n, acc) {
                    if matches!(input.steps[d].attr.kind, StepKind::Graft) {
                        deps[i].push((d, n.span));
                        nodes[i].all.push(d);
                    } else {
                        errors.set(true);
                        acc.push(error(
                            n.span,
                            format!("step `{}` in `after_graft` is not a graft: mark it `#[graft]`", n.value),
                        ));
                    }
                }
            }
            nodes[i].own_absence = match (&a.when, a.on_error.as_ref().map(|o| o.value)) {
                (Some(w), _) => Some(Absence::When(ident_text(&w.value))),
                (None, Some("Skip")) => Some(Absence::OnErrorSkip),
                (None, Some("Continue")) => Some(Absence::OnErrorContinue),
                _ => None,
            };
        }
        let cycles = check_cycles(&names, &deps, acc);
        // With a mistake in the dependencies, data-flow errors would only repeat it.
        let flow = if cycles || errors.get() { None } else { Flow::new(nodes) };
        Graph { names, flow }
    }
}

/// A method that reads typed inputs, and what it is to the workflow (which decides
/// what it may read).
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// The method of step `i`.
    Step(usize),
    /// The `rollback` of step `i`: runs after `i` completed.
    Rollback(usize),
    /// The `on_timeout` of step `i`: runs when its await times out.
    OnTimeout(usize),
    /// `on_failure` or `on_success`.
    Handler(&'static str),
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
    fn bind(
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
    fn check_callable(
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

    /// A `#[from(..)]` or `#[input]` parameter of `m`, the `i`-th: checks what it
    /// reads against the workflow.
    fn typed_param(
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

    /// Checks the `#[query]` methods: `fn name(&self, state: &ExecutionState) -> T`.
    fn queries(&self, input: &Input, acc: &mut Accumulator) -> Vec<QueryPlan> {
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
    fn unused_typed_inputs(&self, acc: &mut Accumulator) {
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

    fn workflow_options(&self, w: &WorkflowAttr, acc: &mut Accumulator) -> Vec<Call> {
        let mut calls = Vec::new();
        let call = |method: &'static str, args: Vec<Arg>| Call { method, args };
        if let Some(t) = &w.timeout {
            calls.push(call("timeout", vec![Arg::Duration(t.value.clone())]));
        }
        if let Some(n) = &w.max_retries {
            calls.push(call("max_retries", vec![u32_arg(&n.value)]));
        }
        let retries = w.max_retries.as_ref().map_or(0, |n| count_value(&n.value));
        if retries == 0 {
            for key in [&w.retry_delay, &w.retry_max_delay]
                .into_iter()
                .flatten()
                .map(|o| &o.key)
                .chain(w.retry_backoff.as_ref().map(|o| &o.key))
            {
                acc.push(error(
                    key.span(),
                    format!(
                        "`{}` has no effect: the workflow's `max_retries` is 0; set `max_retries` to restart failed executions",
                        ident_text(key)
                    ),
                ));
            }
        }
        if let Some(d) = &w.retry_delay {
            calls.push(call("retry_delay", vec![Arg::Duration(d.value.clone())]));
        }
        if let Some(m) = &w.retry_max_delay {
            calls.push(call("retry_max_delay", vec![Arg::Duration(m.value.clone())]));
        }
        if let Some(b) = &w.retry_backoff
            && let Some(arg) = self.backoff(&b.value, acc)
        {
            calls.push(call("retry_backoff", vec![arg]));
        }
        if let Some(t) = &w.step_timeout
            && let Some(arg) = self.timeout(&t.value, "step_timeout", acc)
        {
            calls.push(call("step_timeout", vec![arg]));
        }
        if let Some(n) = &w.step_max_retries {
            calls.push(call("step_max_retries", vec![u32_arg(&n.value)]));
        }
        if let Some(d) = &w.step_retry_delay {
            calls.push(call("step_retry_delay", vec![Arg::Duration(d.value.clone())]));
        }
        for (option, slot, shape) in [
            ("on_failure", &w.on_failure, Shape::Step),
            ("on_success", &w.on_success, Shape::Step),
            ("on_cancel", &w.on_cancel, Shape::Cancel),
            ("on_step_error", &w.on_step_error, Shape::StepError),
        ] {
            if let Some(h) = slot
                && let Some(bound) = self.bind(&h.value, option, shape, Some(Reader::Handler(option)), acc)
            {
                let name = ident_text(&h.value);
                calls.push(call(option, vec![Arg::Bound(bound)]));
                calls.push(call(
                    "name_handler",
                    vec![Arg::Str(option.to_owned(), h.key.span()), Arg::Str(name, h.value.span())],
                ));
            }
        }
        let dead_letter = w.dead_letter.as_ref().is_some_and(|d| d.value);
        if let Some(d) = &w.dead_letter {
            calls.push(call("dead_letter", vec![Arg::Bool(d.value)]));
        }
        if let Some(ttl) = &w.dead_letter_ttl {
            if !dead_letter {
                acc.push(error(
                    ttl.key.span(),
                    "`dead_letter_ttl` has no effect without `dead_letter`: add `dead_letter = true`",
                ));
            }
            calls.push(call("dead_letter_ttl", vec![Arg::Duration(ttl.value.clone())]));
        }
        if let Some(keep) = &w.retention {
            if keep.value.value() == Some(std::time::Duration::ZERO) {
                acc.push(error(
                    keep.value.span(),
                    "`retention` must be longer than zero: leave it out to keep ended executions",
                ));
            }
            calls.push(call("retention", vec![Arg::Duration(keep.value.clone())]));
        }
        if let Some(tags) = &w.tags {
            calls.push(call("tags", vec![strs(&tags.value)]));
        }
        if let Some(entries) = &w.metadata {
            for (key, value) in &entries.value {
                if let Some(lit) = acc.handle(metadata_literal(value)) {
                    calls.push(call("metadata", vec![Arg::Str(ident_text(key), key.span()), Arg::Literal(lit)]));
                }
            }
        }
        if let Some(n) = &w.step_concurrency {
            if count_value(&n.value) == 0 {
                acc.push(error(n.value.span(), "`step_concurrency` must be at least 1"));
            }
            calls.push(call("step_concurrency", vec![u32_arg(&n.value)]));
        }
        self.limits(&w.limits, &mut calls, acc);
        if let Some(d) = &w.description {
            calls.push(call("description", vec![Arg::LitStr(d.value.clone())]));
        }
        if let Some(v) = &w.version {
            calls.push(call("version", vec![Arg::LitStr(v.value.clone())]));
        }
        for s in &w.schedules {
            if let Some(arg) = self.schedule(&s.value, acc) {
                calls.push(call("schedule", vec![arg]));
            }
        }
        if let Some(events) = &w.on_event {
            calls.push(call("on_event", vec![strs(&events.value)]));
        }
        calls
    }

    fn backoff(&self, b: &BackoffValue, acc: &mut Accumulator) -> Option<Arg> {
        match b {
            BackoffValue::Named(variant) => Some(Arg::Variant("Backoff", variant)),
            BackoffValue::Method(m) => self.bind(m, "retry_backoff", Shape::Backoff, None, acc).map(Arg::Bound),
        }
    }

    fn timeout(&self, t: &TimeoutValue, option: &str, acc: &mut Accumulator) -> Option<Arg> {
        match t {
            TimeoutValue::Fixed(d) => Some(Arg::Duration(d.clone())),
            TimeoutValue::Method(m) => self.bind(m, option, Shape::Timeout, None, acc).map(Arg::Bound),
        }
    }

    fn schedule(&self, s: &ScheduleAttr, acc: &mut Accumulator) -> Option<Arg> {
        let trigger = s.trigger.as_ref()?;
        let mut ok = true;
        let trigger_call = match &trigger.value {
            Trigger::Cron(patterns) => {
                let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build();
                for p in patterns {
                    if let Err(e) = parser.parse(&p.value()) {
                        acc.push(error(p.span(), format!("invalid cron expression `{}`: {e}", p.value())));
                        ok = false;
                    }
                }
                Call { method: "cron", args: vec![Arg::StrSlice(patterns.clone())] }
            }
            Trigger::Every(d) => {
                if d.value().is_some_and(|d| d.is_zero()) {
                    acc.push(error(d.span(), "invalid `every`: the interval must be greater than zero"));
                    ok = false;
                }
                Call { method: "every", args: vec![Arg::Duration(d.clone())] }
            }
            Trigger::At(t) => {
                ok &= acc.handle(instant(t, "at")).is_some();
                Call { method: "at", args: vec![Arg::LitStr(t.clone())] }
            }
            Trigger::In(d) => Call { method: "in_", args: vec![Arg::Duration(d.clone())] },
        };
        let mut modifiers = Vec::new();
        let start = s.start_at.as_ref().and_then(|t| {
            modifiers.push(Call { method: "start_at", args: vec![Arg::LitStr(t.value.clone())] });
            acc.handle(instant(&t.value, "start_at"))
        });
        if let Some(end_at) = &s.end_at {
            modifiers.push(Call { method: "end_at", args: vec![Arg::LitStr(end_at.value.clone())] });
            match acc.handle(instant(&end_at.value, "end_at")) {
                Some(end) if start.is_some_and(|start| end <= start) => {
                    acc.push(error(end_at.value.span(), "invalid window: `end_at` is not after `start_at`"));
                    ok = false;
                }
                Some(_) => {}
                None => ok = false,
            }
        }
        if let Some(tz) = &s.timezone {
            modifiers.push(Call { method: "timezone", args: vec![Arg::LitStr(tz.value.clone())] });
        }
        if let Some(m) = &s.misfire {
            modifiers.push(Call { method: "misfire", args: vec![Arg::Variant("Misfire", m.value)] });
        }
        ok.then(|| Arg::Schedule { workflow: self.workflow.clone(), trigger: Box::new(trigger_call), modifiers })
    }

    fn steps(&self, input: &Input, acc: &mut Accumulator) -> Vec<StepPlan> {
        let names = &self.graph.names;
        let mut breakers: BTreeMap<String, ((u32, Duration), &str)> = BTreeMap::new();
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
            if let (Some(cb), settings) = (&a.circuit_breaker, breaker_settings(a)) {
                match breakers.get(&cb.value.value) {
                    Some((prev, prev_step)) if *prev != settings => acc.push(error(
                        cb.value.span,
                        format!(
                            "circuit breaker `{}` is given different options by steps `{prev_step}` and `{}`",
                            cb.value.value, names[i].value
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        breakers.insert(cb.value.value.clone(), (settings, names[i].value.as_str()));
                    }
                }
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

    /// `concurrency`, `concurrency_key`, `rate_limit`, `rate_limit_key`.
    fn limits(&self, a: &LimitAttrs, calls: &mut Vec<Call>, acc: &mut Accumulator) {
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

/// The field named by `#[input(field)]`, as an identifier (raw for a keyword:
/// `#[input(r#type)]` reads the field `r#type`).
fn field_ident(name: &Name) -> Option<Ident> {
    if syn::parse_str::<Ident>(&name.value).is_ok() {
        return Some(Ident::new(&name.value, name.span));
    }
    syn::parse_str::<Ident>(&format!("r#{}", name.value)).ok().map(|_| Ident::new_raw(&name.value, name.span))
}

fn u32_arg(lit: &LitInt) -> Arg {
    Arg::U32(count_value(lit), lit.span())
}

fn strs(names: &[Name]) -> Arg {
    Arg::Strs(names.iter().map(|n| (n.value.clone(), n.span)).collect())
}

fn breaker_settings(a: &StepAttr) -> (u32, Duration) {
    let opts = a.circuit_breaker_opts.as_ref().map(|o| &o.value);
    let threshold =
        opts.and_then(|o| o.failure_threshold.as_ref()).map_or(BREAKER_THRESHOLD, |t| count_value(&t.value));
    let reset = opts.and_then(|o| o.reset_timeout.as_ref()).and_then(|r| r.value.value()).unwrap_or(BREAKER_RESET);
    (threshold, reset)
}

/// A metadata value with an explicit numeric type, so that large numbers work.
fn metadata_literal(lit: &Lit) -> darling::Result<Lit> {
    Ok(match lit {
        Lit::Int(i) => {
            let digits = i.base10_digits();
            let suffix = if digits.parse::<i64>().is_ok() {
                "i64"
            } else if digits.parse::<u64>().is_ok() {
                "u64"
            } else {
                return Err(error(i.span(), "metadata number out of range"));
            };
            Lit::Int(LitInt::new(&format!("{digits}{suffix}"), i.span()))
        }
        Lit::Float(f) => Lit::Float(syn::LitFloat::new(&format!("{}f64", f.base10_digits()), f.span())),
        other => other.clone(),
    })
}

fn instant(lit: &LitStr, field: &str) -> darling::Result<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(&lit.value()).map_err(|e| {
        error(
            lit.span(),
            format!(
                "invalid `{field}` instant `{}`: {e} (expected RFC 3339, such as `2025-12-25T00:00:00Z`)",
                lit.value()
            ),
        )
    })
}

/// Finds cycles by adding dependency edges in declaration order: the edge whose
/// addition closes a loop is reported, at the token that declared it, with the loop
/// `a -> b -> c -> a` (each step runs after the one before it), starting at the
/// earliest-declared step of the loop.
fn check_cycles(names: &[Name], deps: &[Vec<(usize, Span)>], acc: &mut Accumulator) -> bool {
    let mut found = false;
    // `next[x]`: steps that run after `x`.
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (step, list) in deps.iter().enumerate() {
        for &(dep, span) in list {
            if let Some(mut path) = path_between(&next, step, dep) {
                // `path` runs step -> ... -> dep; the new edge dep -> step closes it.
                let start = path.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
                path.rotate_left(start);
                path.push(path[0]);
                let text: Vec<&str> = path.iter().map(|&n| names[n].value.as_str()).collect();
                acc.push(error(span, format!("cycle: {} (each step runs after the one before it)", text.join(" -> "))));
                found = true;
                continue;
            }
            if !next[dep].contains(&step) {
                next[dep].push(step);
            }
        }
    }
    found
}

/// A path `from -> ... -> to` along `next`, if there is one (`[from]` when equal).
fn path_between(next: &[Vec<usize>], from: usize, to: usize) -> Option<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = vec![None; next.len()];
    let mut seen = vec![false; next.len()];
    let mut queue = VecDeque::from([from]);
    seen[from] = true;
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut path = vec![n];
            let mut cur = n;
            while let Some(p) = parent[cur] {
                path.push(p);
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for &m in &next[n] {
            if !seen[m] {
                seen[m] = true;
                parent[m] = Some(n);
                queue.push_back(m);
            }
        }
    }
    None
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
