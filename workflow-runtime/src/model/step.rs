//! The step as data: what a step runs ([`StepBody`]), what it returns
//! ([`Outcome`]), the steps an outcome may add ([`Task`]) and the options each step
//! carries ([`StepOptions`]).
//!
//! The four refer to each other: a body returns an outcome, an outcome may hold
//! tasks, a task holds a body and options, and options hold rollback and timeout
//! bodies. They are one recursive type, so they are declared together here; their
//! constructors and conversions live in [`step_fn`](super::step_fn),
//! [`outcome`](super::outcome), [`task`](super::task) and [`options`](super::options),
//! which import this module and not one another's types.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::await_request::AwaitRequest;
use super::context::Context;
use super::duration::DurationArg;
use super::error::StepError;
use super::retry::{Backoff, BreakerOptions, OnError};

/// The result of a step: an [`Outcome`] or a [`StepError`].
pub type StepResult = Result<Outcome, StepError>;

/// A boxed step future.
pub type BoxStepFuture = Pin<Box<dyn Future<Output = StepResult> + Send + 'static>>;

/// A type-erased step body: the form every step function takes inside the engine.
pub type StepBody = Arc<dyn Fn(Context) -> BoxStepFuture + Send + Sync + 'static>;

/// A condition (`when`): decides from the context whether a step runs.
pub type Condition = Arc<dyn Fn(&Context) -> bool + Send + Sync + 'static>;

/// What a step returns when it did not fail.
///
/// ```
/// use sagaflow_runtime::{AwaitRequest, Outcome, json};
///
/// let merge: Outcome = json!({ "user_id": 123 }).into();   // merged into the context
/// let done = Outcome::Done;                               // nothing to add
/// let skip = Outcome::skip("nothing to do today");
/// let wait = Outcome::await_for("24h");
/// let ask = Outcome::await_with(AwaitRequest::timeout("48h").notify("email").approvers(["boss@example.com"]));
/// let later = Outcome::snooze("5m");                      // run again in 5 minutes
/// let signal = Outcome::await_signal("approval");         // wait for `engine.signal(id, "approval", ..)`
/// let again = Outcome::rerun_on_signal("approval");       // run this step again when it arrives
/// # let _ = (merge, done, skip, wait, ask, later, signal, again);
/// ```
#[non_exhaustive]
pub enum Outcome {
    /// Success without output.
    Done,
    /// Success with an output. A JSON object is merged into the context at the top
    /// level (or stored under the step's `context_key`); any other value is kept as
    /// the step's output only.
    Output(Value),
    /// The step decided not to run; dependents proceed as if it had completed.
    Skip(String),
    /// Park the execution until [`resume`](crate::Engine::resume) or the timeout.
    Await(Box<AwaitRequest>),
    /// Add steps to the running execution (only from a graft step).
    Expand(Vec<Task>),
    /// Run this step again after the duration, without spending a retry.
    Snooze(DurationArg),
}

/// A step not yet placed in a workflow: a name, a function, and options.
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, StepResult, Task, Workflow, json};
///
/// async fn upload(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("multi_upload")
///     .step("transform", upload)
///     .parallel("transform", [Task::new("upload_s3", upload), Task::new("upload_gcs", upload)])
///     .build()?;
/// assert_eq!(def.dependencies("upload_gcs"), ["transform"]);
///
/// // In a graft, one task per item:
/// async fn fan(ctx: Context) -> StepResult {
///     let ids: Vec<u32> = ctx.get("ids")?;
///     Ok(Outcome::expand(ids.into_iter().map(|id| {
///         Task::new(format!("item_{id}"), move |_ctx: Context| async move {
///             Ok::<_, sagaflow_runtime::StepError>(json!({ "id": id }))
///         })
///     })))
/// }
/// # let _ = fan;
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub struct Task {
    pub(crate) name: String,
    pub(crate) body: StepBody,
    pub(crate) options: StepOptions,
}

/// The options of one step, written with a builder.
///
/// ```
/// use sagaflow_runtime::{Backoff, OnError, Step};
///
/// let opts = Step::opts()
///     .after(["fetch_a", "fetch_b"])
///     .timeout("30s")
///     .max_retries(5)
///     .retry_backoff(Backoff::Exponential)
///     .retry_on(["timeout", "connection_error"])
///     .on_error(OnError::Continue);
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct StepOptions {
    pub(crate) after: Vec<String>,
    pub(crate) after_any: Vec<String>,
    pub(crate) after_group: Vec<String>,
    pub(crate) after_graft: Vec<String>,
    pub(crate) group: Option<String>,
    pub(crate) when: Option<Named<Condition>>,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) retry_delay: Option<DurationArg>,
    pub(crate) retry_backoff: Option<Backoff>,
    pub(crate) retry_max_delay: Option<DurationArg>,
    pub(crate) retry_jitter: Option<bool>,
    pub(crate) retry_on: Vec<String>,
    pub(crate) no_retry_on: Vec<String>,
    pub(crate) on_error: Option<OnError>,
    pub(crate) rollback: Option<Named<StepBody>>,
    pub(crate) on_timeout: Option<Named<StepBody>>,
    pub(crate) await_approval: bool,
    pub(crate) cancellable: bool,
    pub(crate) cancel_grace: Option<DurationArg>,
    pub(crate) context_key: Option<String>,
    pub(crate) circuit_breaker: Option<String>,
    pub(crate) circuit_breaker_opts: Option<BreakerOptions>,
    pub(crate) description: Option<String>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) rate_limit: Option<(u32, DurationArg)>,
    pub(crate) rate_limit_key: Option<String>,
}

/// A function with the name it is shown under.
#[derive(Clone)]
pub(crate) struct Named<T> {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) f: T,
}

impl<T> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => f.write_str(n),
            None => f.write_str("<closure>"),
        }
    }
}
