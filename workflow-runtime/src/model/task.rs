//! [`Task`]: a named step function with its options, for the builder's `parallel`,
//! `fan_out` and `branch`, and for the steps a graft adds at run time.

use std::fmt;

use super::context::Context;
use super::options::StepOptions;
use super::step::{IntoStepFn, StepBody};

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

impl Task {
    /// A step named `name` running `f`.
    pub fn new<M>(name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        Task { name: name.into(), body: f.into_step_fn(), options: StepOptions::default() }
    }

    /// Replaces the options.
    pub fn with(mut self, options: StepOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a condition (for `branch`).
    pub fn when<F>(mut self, condition: F) -> Self
    where
        F: Fn(&Context) -> bool + Send + Sync + 'static,
    {
        self.options = self.options.when(condition);
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("name", &self.name).field("options", &self.options).finish_non_exhaustive()
    }
}
