//! Support for the code `#[workflow]` generates: binds the methods of a workflow value
//! to the function shapes the builder takes, reads typed inputs and lets the type
//! checker prove their types, builds schedules from literals, and tells types that can
//! register themselves (those implementing `Default`) from the others.
//!
//! Everything here is reached through `sagaflow::__private`; none of it is public API.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::builder::BuildError;
use crate::engine::WorkflowType;
use crate::model::execution::ExecutionState;
use crate::model::{
    AsyncFnMarker, AwaitRequest, Backoff, CancelHandler, Context, DurationArg, IntoCancelHandler, IntoStepErrorHandler,
    IntoStepFn, IntoStepResult, Misfire, Outcome, Schedule, StepBody, StepError, StepErrorHandler, Timeout,
    WorkflowDef,
};

/// A method bound to the workflow value, erased to the engine's shape.
///
/// The helpers return these concrete types (not `impl Trait`) so that a method with
/// the wrong signature is reported once, at the method, rather than again wherever
/// the value is used.
#[derive(Clone)]
pub struct Bound<T>(T);

impl<T> std::fmt::Debug for Bound<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bound")
    }
}

/// Marker of [`Bound`] step functions for [`IntoStepFn`].
#[derive(Debug)]
pub enum BoundMarker {}

impl IntoStepFn<BoundMarker> for Bound<StepBody> {
    fn into_step_fn(self) -> StepBody {
        self.0
    }
}

impl IntoCancelHandler for Bound<CancelHandler> {
    fn into_cancel_handler(self) -> CancelHandler {
        self.0
    }
}

impl IntoStepErrorHandler for Bound<StepErrorHandler> {
    fn into_step_error_handler(self) -> StepErrorHandler {
        self.0
    }
}

/// A method used as a step, rollback, `on_timeout`, `on_failure`, `on_success` or
/// nested-workflow input: `f(this, ctx)` returns the method's future.
pub fn step<W, F, Fut>(this: &Arc<W>, f: F) -> Bound<StepBody>
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoStepResult,
{
    let this = Arc::clone(this);
    Bound(IntoStepFn::<AsyncFnMarker>::into_step_fn(move |ctx: Context| f(Arc::clone(&this), ctx)))
}

/// A method that takes typed inputs, used as a step, rollback or handler: `f(this,
/// ctx)` reads the inputs from the context (a value that cannot be read ends the
/// attempt with that error, which is permanent) and then calls the method.
pub fn typed_step<W, F, Fut, R>(this: &Arc<W>, f: F) -> Bound<StepBody>
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, StepError>> + Send + 'static,
    R: IntoStepResult,
{
    let this = Arc::clone(this);
    Bound(Arc::new(move |ctx: Context| {
        let fut = f(Arc::clone(&this), ctx);
        Box::pin(async move {
            match fut.await {
                Ok(result) => result.into_step_result(),
                Err(unreadable) => Err(unreadable),
            }
        })
    }))
}

/// Why a step with `#[signal(..)]` parameters stops before its method runs: a
/// typed input cannot be read (the attempt fails), or a signal has not arrived
/// (the step parks until it does, then runs again).
#[derive(Debug)]
pub enum Early {
    /// End the attempt with this error.
    Fail(StepError),
    /// End the attempt with this outcome (a wait for a signal).
    Wait(Outcome),
}

impl From<StepError> for Early {
    fn from(e: StepError) -> Self {
        Early::Fail(e)
    }
}

/// A step method with `#[signal(..)]` parameters: like [`typed_step`], and when a
/// signal is not there yet the step parks until it arrives
/// ([`Outcome::rerun_on_signal`]), then runs again and reads it.
pub fn signal_step<W, F, Fut, R>(this: &Arc<W>, f: F) -> Bound<StepBody>
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Early>> + Send + 'static,
    R: IntoStepResult,
{
    let this = Arc::clone(this);
    Bound(Arc::new(move |ctx: Context| {
        let fut = f(Arc::clone(&this), ctx);
        Box::pin(async move {
            match fut.await {
                Ok(result) => result.into_step_result(),
                Err(Early::Fail(e)) => Err(e),
                Err(Early::Wait(wait)) => Ok(wait),
            }
        })
    }))
}

/// `#[signal("name")] param: T`: the signal's payload as `T` if it arrived;
/// otherwise the wait for it (at most `timeout`), after which the step runs again.
pub async fn signal<T: DeserializeOwned>(
    ctx: &Context,
    name: &str,
    param: &str,
    timeout: Option<DurationArg>,
) -> Result<T, Early> {
    match ctx.try_signal::<T>(name).await {
        Ok(Some(payload)) => Ok(payload),
        Ok(None) => {
            let mut wait = AwaitRequest::signal(name).rerun().data("parameter", param);
            if let Some(t) = timeout {
                wait = wait.with_timeout(t);
            }
            Err(Early::Wait(Outcome::await_with(wait)))
        }
        Err(e) => Err(Early::Fail(e)),
    }
}

/// Proof that a `#[signal(..)]` parameter's type can be read from the payload.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the payload of a signal",
    label = "the payload of the signal this parameter receives",
    note = "a signal's payload is JSON: the type of a `#[signal(..)]` parameter implements `serde::Deserialize` (derive it)"
)]
pub trait SignalPayload {}

impl<T: DeserializeOwned> SignalPayload for T {}

/// Type check of a `#[signal(..)]` parameter.
#[inline(always)]
pub fn reads_signal<P: SignalPayload>() {}

/// Proof that two parameters receiving the same signal read it as one type.
#[diagnostic::on_unimplemented(
    message = "this parameter reads a signal as `{Self}`, and another `#[signal(..)]` parameter reads the same signal as `{Earlier}`",
    label = "another parameter receives this signal as `{Earlier}`",
    note = "whoever sends a signal sends one payload: read it as the same type wherever it is received"
)]
pub trait SameSignal<Earlier> {}

impl<T> SameSignal<T> for T {}

/// Type check of a second parameter receiving the same signal.
#[inline(always)]
pub fn same_signal<P: SameSignal<Earlier>, Earlier>() {}

/// A method used as a query: `f(this, state)` answers it.
pub fn query<W, F, T>(this: &Arc<W>, f: F) -> impl Fn(&ExecutionState) -> T + Send + Sync + 'static
where
    W: Send + Sync + 'static,
    F: Fn(&W, &ExecutionState) -> T + Send + Sync + 'static,
{
    let this = Arc::clone(this);
    move |state: &ExecutionState| f(&this, state)
}

/// `#[from(step)] param: T`: the output of `step` as `T` (`null` when it has none).
pub fn output<T: DeserializeOwned>(ctx: &Context, step: &str, param: &str) -> Result<T, StepError> {
    ctx.read_output(step, Some(param))
}

/// `#[from(graft)] param: Vec<T>`: the outputs of the steps `graft` added, in order.
pub fn graft_outputs<T: DeserializeOwned>(ctx: &Context, graft: &str, param: &str) -> Result<T, StepError> {
    ctx.read_graft(graft, Some(param))
}

/// `#[input]` parameters: the execution's input as the workflow's `input = T` type.
pub fn input<T: DeserializeOwned>(ctx: &Context) -> Result<T, StepError> {
    ctx.read_input()
}

/// The type a step outputs: `T` for a method returning `Result<T, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the result of a step, so its output has no type to read",
    note = "a step read by `#[from(step)]` returns `Result<T, E>` where `T: Serialize + DeserializeOwned`"
)]
pub trait StepReturn {
    /// The output type.
    type Ok;
}

impl<T, E> StepReturn for Result<T, E> {
    type Ok = T;
}

/// Proof that a typed input of type `Self` can hold the output `Out` of the step it
/// reads: `Out` itself, or `Option<Out>`.
#[diagnostic::on_unimplemented(
    message = "a typed input of type `{Self}` cannot hold the output of the step it reads, which is `{Out}`",
    label = "the step this reads outputs `{Out}`",
    note = "`#[from(step)]` reads what the step returned as `Ok(T)`: write the parameter as `T`, `&T` or `Option<T>` (`Option<&T>`)",
    note = "a step returning `StepResult` (an `Outcome`) has no typed output: return `Result<T, E>` to read it, or read it with `ctx.output_as`"
)]
pub trait ReadsOutput<Out> {}

impl<T> ReadsOutput<T> for T {}
impl<T> ReadsOutput<T> for Option<T> {}

/// Type check of a typed input against the step it reads (emitted at the parameter,
/// never run for anything but the check).
#[inline(always)]
pub fn reads_output<P: ReadsOutput<Out>, Out>() {}

/// Proof that a typed input of type `Self` can hold the outputs of a graft.
#[diagnostic::on_unimplemented(
    message = "a typed input of type `{Self}` cannot hold the outputs of a graft",
    label = "a graft's outputs are read as a `Vec`",
    note = "a graft adds its steps at run time: read their outputs, in the order it added them, as `Vec<T>` (`Vec<Option<T>>` where an added step may have none)"
)]
pub trait GraftOutputs {}

impl<T> GraftOutputs for Vec<T> {}

/// Type check of a typed input that reads a graft.
#[inline(always)]
pub fn reads_graft<P: GraftOutputs>() {}

/// A method used as a `when` condition.
pub fn condition<W, F>(this: &Arc<W>, f: F) -> impl Fn(&Context) -> bool + Send + Sync + 'static
where
    W: Send + Sync + 'static,
    F: Fn(&W, &Context) -> bool + Send + Sync + 'static,
{
    let this = Arc::clone(this);
    move |ctx: &Context| f(&this, ctx)
}

/// What a timeout function may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a timeout function",
    note = "a timeout function returns `Duration`, or `Option<Duration>` where `None` means no limit"
)]
pub trait TimeoutValue {
    /// The timeout; `None` means no limit.
    fn into_timeout(self) -> Option<Duration>;
}

impl TimeoutValue for Duration {
    fn into_timeout(self) -> Option<Duration> {
        Some(self)
    }
}

impl TimeoutValue for Option<Duration> {
    fn into_timeout(self) -> Option<Duration> {
        self
    }
}

/// A method used as a timeout computed from the context.
pub fn timeout<W, F, T>(this: &Arc<W>, f: F) -> Timeout
where
    W: Send + Sync + 'static,
    F: Fn(&W, &Context) -> T + Send + Sync + 'static,
    T: TimeoutValue,
{
    let this = Arc::clone(this);
    Timeout::Dynamic(Arc::new(move |ctx: &Context| f(&this, ctx).into_timeout()))
}

/// A method used as a custom backoff: `f(this, retry number from 1, base delay)`.
pub fn backoff<W, F>(this: &Arc<W>, f: F) -> Backoff
where
    W: Send + Sync + 'static,
    F: Fn(&W, u32, Duration) -> Duration + Send + Sync + 'static,
{
    let this = Arc::clone(this);
    Backoff::custom(move |n, base| f(&this, n, base))
}

/// A method used as `on_cancel(ctx, reason)`.
pub fn cancel_handler<W, F, Fut>(this: &Arc<W>, f: F) -> Bound<CancelHandler>
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Context, String) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoStepResult,
{
    let this = Arc::clone(this);
    let f = move |ctx: Context, reason: String| f(Arc::clone(&this), ctx, reason);
    Bound(f.into_cancel_handler())
}

/// A method used as `on_step_error(ctx, step, error, attempt)`.
pub fn step_error_handler<W, F, Fut>(this: &Arc<W>, f: F) -> Bound<StepErrorHandler>
where
    W: Send + Sync + 'static,
    F: Fn(Arc<W>, Context, String, StepError, u32) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoStepResult,
{
    let this = Arc::clone(this);
    let f = move |ctx: Context, step: String, error: StepError, attempt: u32| {
        f(Arc::clone(&this), ctx, step, error, attempt)
    };
    Bound(f.into_step_error_handler())
}

/// A schedule written in `#[workflow(schedule(...))]`, checked when the definition
/// is built (the macro has already checked cron patterns, durations and instants).
#[derive(Debug)]
pub struct ScheduleSpec {
    schedule: Result<Schedule, String>,
}

impl ScheduleSpec {
    fn of(schedule: Result<Schedule, impl std::fmt::Display>) -> Self {
        ScheduleSpec { schedule: schedule.map_err(|e| e.to_string()) }
    }

    /// `cron = "..."` or `cron = ["...", ...]`.
    pub fn cron(exprs: &[&str]) -> Self {
        Self::of(Schedule::cron_many(exprs))
    }

    /// `every = "5m"`.
    pub fn every(interval: impl Into<DurationArg>) -> Self {
        Self::of(Schedule::every(interval))
    }

    /// `at = "2025-12-25T00:00:00Z"`.
    pub fn at(instant: &str) -> Self {
        Self::of(parse_instant("at", instant).map(Schedule::at))
    }

    /// `in = "30m"`.
    pub fn in_(delay: impl Into<DurationArg>) -> Self {
        Self::of(Schedule::in_(delay))
    }

    /// `start_at = "..."`.
    pub fn start_at(self, instant: &str) -> Self {
        self.then(|s| parse_instant("start_at", instant).and_then(|t| s.start_at(t).map_err(|e| e.to_string())))
    }

    /// `end_at = "..."`.
    pub fn end_at(self, instant: &str) -> Self {
        self.then(|s| parse_instant("end_at", instant).and_then(|t| s.end_at(t).map_err(|e| e.to_string())))
    }

    /// `timezone = "Europe/Paris"`.
    pub fn timezone(self, tz: &str) -> Self {
        self.then(|s| s.timezone(tz).map_err(|e| e.to_string()))
    }

    /// `misfire = skip`.
    pub fn misfire(self, misfire: Misfire) -> Self {
        self.then(|s| Ok(s.misfire(misfire)))
    }

    fn then(self, f: impl FnOnce(Schedule) -> Result<Schedule, String>) -> Self {
        ScheduleSpec { schedule: self.schedule.and_then(f) }
    }

    /// The schedule, or the error `build()` would report for it.
    pub fn build(self, workflow: &str) -> Result<Schedule, BuildError> {
        self.schedule.map_err(|reason| BuildError::InvalidOption {
            workflow: workflow.to_owned(),
            step: None,
            option: "schedule",
            reason,
        })
    }
}

fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        format!("invalid `{field}` instant `{text}`: {e} (expected RFC 3339, such as `2025-12-25T00:00:00Z`)")
    })
}

/// Decides, by autoref specialization, whether a `#[workflow]` type can build its
/// definition by itself (it implements `Default`) or needs its value.
///
/// `(&Probe::<T>::new()).registration_build()` picks [`ViaDefault`] when `T: Default`
/// (its receiver matches without an extra reference) and [`ViaValue`] otherwise.
#[derive(Debug)]
pub struct Probe<T>(PhantomData<fn() -> T>);

impl<T> Probe<T> {
    /// The probe for `T`.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The registration of a type with a default value.
pub trait ViaDefault {
    /// Builds the definition with `T::default()`.
    fn registration_build(&self) -> Option<Result<WorkflowDef, BuildError>>;
}

impl<T: WorkflowType + Default> ViaDefault for Probe<T> {
    fn registration_build(&self) -> Option<Result<WorkflowDef, BuildError>> {
        Some(T::definition(Arc::new(T::default())))
    }
}

/// The registration of a type that needs its value (`.workflow(value)`).
pub trait ViaValue {
    /// Returns `None`: nothing can be built without the value.
    fn registration_build(&self) -> Option<Result<WorkflowDef, BuildError>>;
}

impl<T> ViaValue for &Probe<T> {
    fn registration_build(&self) -> Option<Result<WorkflowDef, BuildError>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Workflow;
    use crate::model::{Outcome, StepResult};

    #[derive(Default)]
    struct Plain;

    struct WithResources {
        #[allow(dead_code)] // only its type matters here
        pool: Vec<u8>,
    }

    async fn noop(_ctx: Context) -> StepResult {
        Ok(Outcome::Done)
    }

    impl WorkflowType for Plain {
        const NAME: &'static str = "plain";
        fn definition(_this: Arc<Self>) -> Result<WorkflowDef, BuildError> {
            Workflow::new(Self::NAME).step("a", noop).build()
        }
    }

    impl WorkflowType for WithResources {
        const NAME: &'static str = "with_resources";
        fn definition(_this: Arc<Self>) -> Result<WorkflowDef, BuildError> {
            Workflow::new(Self::NAME).step("a", noop).build()
        }
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the borrow is what selects the implementation
    fn probe_builds_only_default_types() {
        #[allow(unused_imports)]
        use super::{ViaDefault as _, ViaValue as _};
        let plain = (&Probe::<Plain>::new()).registration_build();
        assert_eq!(plain.unwrap().unwrap().name(), "plain");
        assert!((&Probe::<WithResources>::new()).registration_build().is_none());
    }

    #[test]
    fn schedule_spec_reports_bad_instants_as_build_errors() {
        let err = ScheduleSpec::every("1h").start_at("yesterday").build("w").unwrap_err();
        assert!(err.to_string().starts_with("invalid `schedule` on workflow `w`: invalid `start_at` instant"), "{err}");
        let ok = ScheduleSpec::cron(&["0 6 * * *"]).timezone("Europe/Paris").misfire(Misfire::Skip).build("w").unwrap();
        assert_eq!(ok, Schedule::cron("0 6 * * *").unwrap().timezone("Europe/Paris").unwrap().misfire(Misfire::Skip));
    }
}
