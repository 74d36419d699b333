//! What a step runs as users write it: functions, closures and [`Worker`] types,
//! erased to one shape ([`StepBody`]), and the workflow's handlers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::context::Context;
use super::error::StepError;
use super::outcome::IntoStepResult;
use super::step::{StepBody, StepResult};

/// A boxed handler future.
pub type BoxHandlerFuture = Pin<Box<dyn Future<Output = Result<(), StepError>> + Send + 'static>>;

/// `on_cancel(ctx, reason)`.
pub type CancelHandler = Arc<dyn Fn(Context, String) -> BoxHandlerFuture + Send + Sync + 'static>;

/// `on_step_error(ctx, step, error, attempt)`.
pub type StepErrorHandler = Arc<dyn Fn(Context, String, StepError, u32) -> BoxHandlerFuture + Send + Sync + 'static>;

/// A step type with a `perform` method: SPEC's "module with `perform/1`".
///
/// ```
/// use sagaflow_runtime::{Context, StepResult, Worker, json};
///
/// struct SendEmail { from: String }
///
/// impl Worker for SendEmail {
///     async fn perform(&self, ctx: Context) -> StepResult {
///         let to: String = ctx.get("email")?;
///         Ok(json!({ "sent": format!("{} -> {to}", self.from) }).into())
///     }
/// }
///
/// let def = sagaflow_runtime::Workflow::new("mail")
///     .step("send", SendEmail { from: "noreply@example.com".into() })
///     .build()
///     .unwrap();
/// # let _ = def;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a workflow worker",
    note = "implement `sagaflow::Worker` (an `async fn perform(&self, ctx: Context) -> StepResult`), or pass an `async fn(Context)`"
)]
pub trait Worker: Send + Sync + 'static {
    /// Runs the step.
    fn perform(&self, ctx: Context) -> impl Future<Output = StepResult> + Send;
}

/// Marker for step functions given as `async fn(Context) -> R` or closures.
#[derive(Debug)]
pub enum AsyncFnMarker {}
/// Marker for plain (non-async) `fn(Context) -> R`.
#[derive(Debug)]
pub enum SyncFnMarker {}
/// Marker for [`Worker`] values.
#[derive(Debug)]
pub enum WorkerMarker {}

/// Converts what users write into a [`StepBody`]. Implemented for
/// `async fn(Context) -> R`, `fn(Context) -> R` and [`Worker`] types, where `R` is
/// any [`IntoStepResult`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a workflow step",
    note = "a step is an `async fn(Context) -> R`, a closure `|ctx: Context| async move {{ .. }}`, a `fn(Context) -> R`, or a type implementing `Worker`, where `R` is `StepResult` or `Result<impl Serialize, impl Into<StepError>>`"
)]
pub trait IntoStepFn<M>: Send + Sync + 'static {
    /// Erases the function.
    fn into_step_fn(self) -> StepBody;
}

impl<F, Fut, R> IntoStepFn<AsyncFnMarker> for F
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoStepResult,
{
    fn into_step_fn(self) -> StepBody {
        Arc::new(move |ctx| {
            let fut = self(ctx);
            Box::pin(async move { fut.await.into_step_result() })
        })
    }
}

impl<F, R> IntoStepFn<SyncFnMarker> for F
where
    F: Fn(Context) -> R + Send + Sync + 'static,
    R: IntoStepResult + Send + 'static,
{
    fn into_step_fn(self) -> StepBody {
        Arc::new(move |ctx| {
            let result = self(ctx).into_step_result();
            Box::pin(std::future::ready(result))
        })
    }
}

impl<W: Worker> IntoStepFn<WorkerMarker> for W {
    fn into_step_fn(self) -> StepBody {
        let worker = Arc::new(self);
        Arc::new(move |ctx| {
            let worker = Arc::clone(&worker);
            Box::pin(async move { worker.perform(ctx).await })
        })
    }
}

/// Converts closures into a [`CancelHandler`].
pub trait IntoCancelHandler: Send + Sync + 'static {
    /// Erases the function.
    fn into_cancel_handler(self) -> CancelHandler;
}

impl<F, Fut, R> IntoCancelHandler for F
where
    F: Fn(Context, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoStepResult,
{
    fn into_cancel_handler(self) -> CancelHandler {
        Arc::new(move |ctx, reason| {
            let fut = self(ctx, reason);
            Box::pin(async move { fut.await.into_step_result().map(|_| ()) })
        })
    }
}

/// Converts closures into a [`StepErrorHandler`].
pub trait IntoStepErrorHandler: Send + Sync + 'static {
    /// Erases the function.
    fn into_step_error_handler(self) -> StepErrorHandler;
}

impl<F, Fut, R> IntoStepErrorHandler for F
where
    F: Fn(Context, String, StepError, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoStepResult,
{
    fn into_step_error_handler(self) -> StepErrorHandler {
        Arc::new(move |ctx, step, error, attempt| {
            let fut = self(ctx, step, error, attempt);
            Box::pin(async move { fut.await.into_step_result().map(|_| ()) })
        })
    }
}

/// The name of a function item, or `None` for closures (used to show handler and
/// condition names in introspection). A function declared inside a closure or an
/// `async` block (`main::{{closure}}::cleanup`) is still a named function.
pub(crate) fn fn_name<F>() -> Option<Arc<str>> {
    let full = std::any::type_name::<F>();
    if full.contains('<') {
        return None;
    }
    full.rsplit("::").next().filter(|last| !last.contains("{{closure}}")).map(Arc::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn async_step(_ctx: Context) -> StepResult {
        Ok(crate::Outcome::Done)
    }

    fn sync_step(_ctx: Context) -> Result<u32, StepError> {
        Ok(1)
    }

    #[test]
    fn names_of_functions_and_closures() {
        fn of<F>(_: &F) -> Option<Arc<str>> {
            fn_name::<F>()
        }
        assert_eq!(of(&async_step).as_deref(), Some("async_step"));
        assert_eq!(of(&|_: Context| ()), None);
        let in_closure = || {
            fn nested(_ctx: Context) {}
            (of(&nested), of(&|_: Context| ()))
        };
        let (nested, closure) = in_closure();
        assert_eq!(nested.as_deref(), Some("nested"));
        assert_eq!(closure, None);
    }

    #[tokio::test]
    async fn all_shapes_convert() {
        let a = async_step.into_step_fn();
        let s = sync_step.into_step_fn();
        let c = (|_ctx: Context| async { Ok::<_, StepError>(serde_json::json!({"x": 1})) }).into_step_fn();
        assert!(a(Context::new()).await.is_ok());
        assert!(matches!(s(Context::new()).await, Ok(crate::Outcome::Output(_))));
        assert!(matches!(c(Context::new()).await, Ok(crate::Outcome::Output(_))));
    }
}
