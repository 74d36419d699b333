//! The checked description of a workflow that `validate` produces and `expand` turns
//! into code. Everything here is already resolved (methods found, names known), so
//! expansion cannot fail.

use std::time::Duration;

use proc_macro2::Span;
use syn::{Ident, Lit, LitStr, Type};

use crate::values::DurationLit;

/// A workflow ready to expand.
pub(crate) struct Plan {
    /// Path of the `sagaflow` crate (`::sagaflow` unless `crate = "..."`).
    pub(crate) root: syn::Path,
    pub(crate) self_ty: Type,
    /// Whether `self_ty` can get a trait impl (a placeholder is emitted on errors).
    pub(crate) implementable: bool,
    pub(crate) name: LitStr,
    /// Builder calls for the workflow options, in the order written.
    pub(crate) options: Vec<Call>,
    pub(crate) steps: Vec<StepPlan>,
    pub(crate) queries: Vec<QueryPlan>,
}

/// One `#[query]` method.
pub(crate) struct QueryPlan {
    /// The query's name: the method's.
    pub(crate) name: String,
    pub(crate) method: Ident,
    pub(crate) has_self: bool,
    /// The method's return type, where errors about the answer point.
    pub(crate) span: Span,
    /// The type of its state parameter, where errors about it point.
    pub(crate) state: Span,
}

/// One step.
pub(crate) struct StepPlan {
    pub(crate) name: String,
    pub(crate) kind: StepKindPlan,
    pub(crate) body: Bound,
    /// `Step::opts()` calls, in a fixed order.
    pub(crate) options: Vec<Call>,
}

/// What builder method adds the step.
pub(crate) enum StepKindPlan {
    /// `.step` / `.step_with`.
    Task,
    /// `.graft`.
    Graft,
    /// `.add_workflow_with` running this workflow.
    Workflow(String),
}

/// A builder method call: `.method(args...)`.
pub(crate) struct Call {
    pub(crate) method: &'static str,
    pub(crate) args: Vec<Arg>,
}

/// One argument of a builder call.
pub(crate) enum Arg {
    /// A string (a name, a description...), spanned where it was written.
    Str(String, Span),
    /// A string literal as written.
    LitStr(LitStr),
    /// A slice of string literals: `&["a", "b"]`.
    StrSlice(Vec<LitStr>),
    /// A list of strings: `["a", "b"]` (one string alone is written without brackets).
    Strs(Vec<(String, Span)>),
    /// A `u32`.
    U32(u32, Span),
    /// `true` / `false`.
    Bool(bool),
    /// A duration as written (`"30s"`, milliseconds, `infinity`).
    Duration(DurationLit),
    /// A variant of a runtime enum: `Backoff::Linear`, `OnError::Skip`, `Misfire::Skip`.
    Variant(&'static str, &'static str),
    /// A literal metadata value.
    Literal(Lit),
    /// A method bound to the workflow value.
    Bound(Bound),
    /// `BreakerOptions::default().failure_threshold(..).reset_timeout(..)`.
    Breaker { failure_threshold: u32, reset_timeout: Duration, span: Span },
    /// A schedule, built with `ScheduleSpec` and `?`.
    Schedule { workflow: String, trigger: Box<Call>, modifiers: Vec<Call> },
}

/// How a method is adapted to the function shape the builder takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `(ctx) -> future of a step result`: steps, rollbacks, handlers, child input.
    Step,
    /// `(&ctx) -> bool`.
    Condition,
    /// `(&ctx) -> Duration | Option<Duration>`.
    Timeout,
    /// `(attempt, base_delay) -> Duration`.
    Backoff,
    /// `(ctx, reason) -> future`.
    Cancel,
    /// `(ctx, step, error, attempt) -> future`.
    StepError,
}

/// A call of a method of the impl block from generated code.
#[derive(Clone, Debug)]
pub(crate) struct Bound {
    pub(crate) shape: Shape,
    pub(crate) method: Ident,
    pub(crate) has_self: bool,
    pub(crate) is_async: bool,
    /// What each parameter the method declares receives, in order.
    pub(crate) params: Vec<BoundParam>,
    /// Where errors about the bound function (its return type) point.
    pub(crate) span: Span,
}

impl Bound {
    /// The typed inputs among the parameters.
    pub(crate) fn typed(&self) -> impl Iterator<Item = &TypedParam> {
        self.params.iter().filter_map(|p| match p {
            BoundParam::Typed(t) => Some(&**t),
            BoundParam::Runtime { .. } => None,
        })
    }
}

/// One parameter of a bound method.
#[derive(Clone, Debug)]
pub(crate) enum BoundParam {
    /// The next value the runtime passes for the shape (the context, a reason...):
    /// borrowed or owned as declared; `span` is the parameter's type.
    Runtime { by_ref: bool, span: Span },
    /// A typed input, read from the context before the call.
    Typed(Box<TypedParam>),
}

/// A typed input: `#[from(step)]`, `#[input]` or `#[signal("name")]`.
#[derive(Clone, Debug)]
pub(crate) struct TypedParam {
    /// The local variable the value is read into.
    pub(crate) local: Ident,
    /// The parameter's name, for run-time errors.
    pub(crate) label: String,
    pub(crate) source: Source,
    /// The type read from JSON: the parameter's type without the borrow (`&str` reads
    /// a `String`, `&[T]` a `Vec<T>`, `Option<&T>` an `Option<T>`).
    pub(crate) owned: Type,
    pub(crate) pass: Pass,
    /// The parameter's type, where type errors point.
    pub(crate) span: Span,
}

/// Where a typed input's value comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// The output of a step; `returns` is the step method's return type, checked
    /// against the parameter (`None` for a nested workflow, whose output is the
    /// child's context).
    Output { step: String, returns: Option<Type> },
    /// The outputs of the steps a graft added.
    Graft { graft: String },
    /// The whole workflow input.
    Input,
    /// One field of the workflow input (of type `input`).
    InputField { field: Ident, input: Type },
    /// The payload of the signal `name`: the step parks until it arrives (at
    /// most `timeout`), then runs again and reads it.
    Signal { name: String, timeout: Option<DurationLit> },
}

/// How the value read is given to the method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// By value.
    Value,
    /// `&value`.
    Ref,
    /// `&mut value`.
    RefMut,
    /// `value.as_ref()` (`Option<&T>`).
    OptionRef,
    /// `value.as_deref()` (`Option<&str>`, `Option<&[T]>`).
    OptionDeref,
}
