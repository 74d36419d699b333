//! [`Workflow`]: the fluent builder that assembles and validates a [`WorkflowDef`].

mod validate;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::def::{QueryFn, Triggers};
use crate::model::duration::DurationArg;
use crate::model::execution::ExecutionState;
use crate::model::retry::Backoff;
use crate::model::step::{Named, StepBody, StepOptions};
use crate::model::step_fn::{IntoCancelHandler, IntoStepErrorHandler, IntoStepFn, fn_name};
use crate::model::{Schedule, Task, WorkflowDef};

/// Why a workflow definition was rejected. Every variant names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The workflow has no name.
    #[error("a workflow name cannot be empty")]
    EmptyName,
    /// The workflow has no steps.
    #[error("workflow `{workflow}` has no steps")]
    EmptyWorkflow {
        /// The workflow.
        workflow: String,
    },
    /// A step name is empty.
    #[error("workflow `{workflow}` has a step with an empty name")]
    EmptyStepName {
        /// The workflow.
        workflow: String,
    },
    /// Two steps share a name.
    #[error("duplicate step `{step}` in workflow `{workflow}`")]
    DuplicateStep {
        /// The workflow.
        workflow: String,
        /// The repeated name.
        step: String,
    },
    /// A dependency names a step that does not exist.
    #[error("unknown step `{name}` in `{option}` of step `{step}`{}", did_you_mean(.suggestion))]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The step declaring the dependency.
        step: String,
        /// `after`, `after_any` or `after_graft`.
        option: &'static str,
        /// The unknown name.
        name: String,
        /// The closest existing step name.
        suggestion: Option<String>,
    },
    /// `after_group` names a group no step belongs to.
    #[error("unknown group `{group}` in `after_group` of step `{step}`{}", did_you_mean(.suggestion))]
    UnknownGroup {
        /// The workflow.
        workflow: String,
        /// The step declaring the dependency.
        step: String,
        /// The unknown group.
        group: String,
        /// The closest existing group.
        suggestion: Option<String>,
    },
    /// `after_graft` names a step that is not a graft.
    #[error("step `{name}` in `after_graft` of step `{step}` is not a graft")]
    NotAGraft {
        /// The workflow.
        workflow: String,
        /// The step declaring the dependency.
        step: String,
        /// The step that is not a graft.
        name: String,
    },
    /// The dependencies form a cycle.
    #[error("cycle in workflow `{workflow}`: {}", .path.join(" -> "))]
    Cycle {
        /// The workflow.
        workflow: String,
        /// The steps of the cycle, the first repeated at the end.
        path: Vec<String>,
    },
    /// An option has an invalid value.
    #[error("invalid `{option}` {}: {reason}", place(.workflow, .step))]
    InvalidOption {
        /// The workflow.
        workflow: String,
        /// The step, or `None` for a workflow option.
        step: Option<String>,
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two queries share a name.
    #[error("duplicate query `{query}` in workflow `{workflow}`")]
    DuplicateQuery {
        /// The workflow.
        workflow: String,
        /// The repeated name.
        query: String,
    },
    /// Options that contradict each other.
    #[error("conflicting options {}: {reason}", place(.workflow, .step))]
    ConflictingOptions {
        /// The workflow.
        workflow: String,
        /// The step, or `None` for workflow options.
        step: Option<String>,
        /// What contradicts what.
        reason: String,
    },
}

fn did_you_mean(s: &Option<String>) -> String {
    sagaflow_rules::suggest::after_semicolon(s.as_deref())
}

fn place(workflow: &str, step: &Option<String>) -> String {
    match step {
        Some(s) => format!("on step `{s}`"),
        None => format!("on workflow `{workflow}`"),
    }
}

/// The closest candidate to `name`, if any is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    sagaflow_rules::suggest::closest(name, candidates).map(str::to_owned)
}

/// A workflow-level handler, as [`Workflow::name_handler`] names it (used by
/// `#[workflow]`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowHandler {
    /// `on_failure`.
    OnFailure,
    /// `on_success`.
    OnSuccess,
    /// `on_cancel`.
    OnCancel,
    /// `on_step_error`.
    OnStepError,
}

enum PendingKind {
    Task(StepBody),
    Graft(StepBody),
    Workflow { workflow: String, input: Option<StepBody> },
}

struct PendingStep {
    name: String,
    kind: PendingKind,
    options: StepOptions,
}

/// Builds a workflow definition step by step.
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, json};
///
/// async fn fetch_data(_ctx: Context) -> StepResult { Ok(json!({ "rows": 3 }).into()) }
/// async fn transform(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("data_export")
///     .timeout("1h")
///     .step("fetch_data", fetch_data)
///     .step_with("transform", transform, Step::opts().after("fetch_data").timeout("30m"))
///     .build()?;
/// assert_eq!(def.steps().len(), 2);
///
/// // Mistakes are reported with the culprit:
/// let err = Workflow::new("broken")
///     .step("fetch_users", fetch_data)
///     .step_with("transform", transform, Step::opts().after("fetch_user"))
///     .build()
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown step `fetch_user` in `after` of step `transform`; did you mean `fetch_users`?"
/// );
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub struct Workflow {
    name: String,
    steps: Vec<PendingStep>,
    timeout: Option<DurationArg>,
    max_retries: Option<u32>,
    retry_delay: Option<DurationArg>,
    retry_backoff: Option<Backoff>,
    retry_max_delay: Option<DurationArg>,
    step_timeout: Option<DurationArg>,
    step_max_retries: Option<u32>,
    step_retry_delay: Option<DurationArg>,
    on_failure: Option<Named<StepBody>>,
    on_success: Option<Named<StepBody>>,
    on_cancel: Option<Named<crate::model::CancelHandler>>,
    on_step_error: Option<Named<crate::model::StepErrorHandler>>,
    dead_letter: bool,
    dead_letter_ttl: Option<DurationArg>,
    retention: Option<DurationArg>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
    step_concurrency: Option<u32>,
    concurrency: Option<u32>,
    concurrency_key: Option<String>,
    rate_limit: Option<(u32, DurationArg)>,
    rate_limit_key: Option<String>,
    description: Option<String>,
    version: Option<String>,
    triggers: Triggers,
    queries: Vec<(String, QueryFn)>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.name)
            .field("steps", &self.steps.iter().map(|s| &s.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Workflow {
    /// Starts a workflow named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Workflow {
            name: name.into(),
            steps: Vec::new(),
            timeout: None,
            max_retries: None,
            retry_delay: None,
            retry_backoff: None,
            retry_max_delay: None,
            step_timeout: None,
            step_max_retries: None,
            step_retry_delay: None,
            on_failure: None,
            on_success: None,
            on_cancel: None,
            on_step_error: None,
            dead_letter: false,
            dead_letter_ttl: None,
            retention: None,
            tags: Vec::new(),
            metadata: Map::new(),
            step_concurrency: None,
            concurrency: None,
            concurrency_key: None,
            rate_limit: None,
            rate_limit_key: None,
            description: None,
            version: None,
            triggers: Triggers::default(),
            queries: Vec::new(),
        }
    }

    // ----- steps -----

    /// Adds a step without options (a root, unless options are added later).
    pub fn step<M>(self, name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        self.step_with(name, f, StepOptions::default())
    }

    /// Adds a step with options.
    pub fn step_with<M>(mut self, name: impl Into<String>, f: impl IntoStepFn<M>, options: StepOptions) -> Self {
        self.steps.push(PendingStep { name: name.into(), kind: PendingKind::Task(f.into_step_fn()), options });
        self
    }

    /// Adds a [`Task`] (a step with its options).
    pub fn task(mut self, task: Task) -> Self {
        self.steps.push(PendingStep { name: task.name, kind: PendingKind::Task(task.body), options: task.options });
        self
    }

    /// Adds a graft: a step whose [`Outcome::Expand`](crate::Outcome::Expand) adds steps at
    /// run time. Dependents use `after_graft` to wait for all of them.
    pub fn graft<M>(mut self, name: impl Into<String>, f: impl IntoStepFn<M>, options: StepOptions) -> Self {
        self.steps.push(PendingStep { name: name.into(), kind: PendingKind::Graft(f.into_step_fn()), options });
        self
    }

    /// Steps that all run after `after`, in parallel.
    pub fn parallel(mut self, after: &str, tasks: impl IntoIterator<Item = Task>) -> Self {
        for t in tasks {
            let options = t.options.after(after);
            self.steps.push(PendingStep { name: t.name, kind: PendingKind::Task(t.body), options });
        }
        self
    }

    /// Fan-out: the same as [`parallel`](Self::parallel), read as "from `from`, start these".
    pub fn fan_out(self, from: &str, tasks: impl IntoIterator<Item = Task>) -> Self {
        self.parallel(from, tasks)
    }

    /// Fan-in: a step that waits for all of `from`.
    pub fn fan_in<M>(self, from: impl crate::model::IntoNames, name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        self.step_with(name, f, StepOptions::default().after(from))
    }

    /// Conditional branches after `after`: each task runs only when its `when`
    /// condition holds, and is skipped otherwise.
    pub fn branch(self, after: &str, tasks: impl IntoIterator<Item = Task>) -> Self {
        self.parallel(after, tasks)
    }

    /// A step that runs the registered workflow `workflow` as a child execution. The
    /// child starts with the parent's context; its final context is merged back.
    pub fn add_workflow(mut self, name: impl Into<String>, workflow: impl Into<String>, options: StepOptions) -> Self {
        self.steps.push(PendingStep {
            name: name.into(),
            kind: PendingKind::Workflow { workflow: workflow.into(), input: None },
            options,
        });
        self
    }

    /// Like [`add_workflow`](Self::add_workflow), with a function whose output is
    /// added to the context the child starts with.
    pub fn add_workflow_with<M>(
        mut self,
        name: impl Into<String>,
        workflow: impl Into<String>,
        input: impl IntoStepFn<M>,
        options: StepOptions,
    ) -> Self {
        self.steps.push(PendingStep {
            name: name.into(),
            kind: PendingKind::Workflow { workflow: workflow.into(), input: Some(input.into_step_fn()) },
            options,
        });
        self
    }

    // ----- queries -----

    /// Adds a query: a function of an execution's state, answered by
    /// [`Engine::query`](crate::Engine::query) wherever the execution runs, without
    /// changing it. The answer is anything that serializes; a query that panics, or
    /// whose answer does not serialize, fails with
    /// [`QueryFailed`](crate::EngineError::QueryFailed).
    ///
    /// ```
    /// use sagaflow_runtime::{ExecutionState, Outcome, StepStatus, Workflow};
    ///
    /// let def = Workflow::new("export")
    ///     .step("fetch", |_ctx| async { Ok::<_, sagaflow_runtime::StepError>(Outcome::Done) })
    ///     .query("done_steps", |state: &ExecutionState| {
    ///         state.steps.iter().filter(|s| s.status == StepStatus::Completed).count()
    ///     })
    ///     .build()?;
    /// assert_eq!(def.queries().collect::<Vec<_>>(), ["done_steps"]);
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn query<T, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(&ExecutionState) -> T + Send + Sync + 'static,
        T: Serialize,
    {
        let query: QueryFn = Arc::new(move |state: &ExecutionState| {
            serde_json::to_value(f(state)).map_err(|e| {
                crate::model::StepError::new(
                    crate::model::kinds::SERIALIZATION,
                    format!("its answer does not serialize: {e}"),
                )
            })
        });
        self.queries.push((name.into(), query));
        self
    }

    // ----- triggers -----

    /// Starts executions on a schedule (several calls add several schedules). Each
    /// execution records the schedule and the tick it is for in its
    /// [`Trigger`](crate::Trigger); see [`Schedule`] for cron patterns, intervals,
    /// one-off times, windows, time zones and misfire policies.
    ///
    /// ```
    /// use sagaflow_runtime::{Misfire, Outcome, Schedule, Workflow};
    ///
    /// let def = Workflow::new("sync_job")
    ///     .step("sync", |_ctx| async { Ok::<_, sagaflow_runtime::StepError>(Outcome::Done) })
    ///     .schedule(Schedule::cron_many(["0 6 * * *", "0 12 * * *", "0 18 * * *"])?.timezone("Europe/Paris")?)
    ///     .schedule(Schedule::every("5m")?.misfire(Misfire::Skip))
    ///     .build()?;
    /// assert_eq!(def.triggers().schedules.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.triggers.schedules.push(schedule);
        self
    }

    /// Starts an execution whenever one of these events is emitted with
    /// [`Engine::emit`](crate::Engine::emit), the event's payload as its input.
    /// Takes one name or several; repeated names count once.
    ///
    /// ```
    /// use sagaflow_runtime::{Outcome, Workflow};
    ///
    /// let def = Workflow::new("order_processor")
    ///     .step("process", |_ctx| async { Ok::<_, sagaflow_runtime::StepError>(Outcome::Done) })
    ///     .on_event(["order.placed", "order.updated"])
    ///     .build()?;
    /// assert_eq!(def.triggers().events, ["order.placed", "order.updated"]);
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn on_event(mut self, events: impl crate::model::IntoNames) -> Self {
        for event in events.into_names() {
            if !self.triggers.events.contains(&event) {
                self.triggers.events.push(event);
            }
        }
        self
    }

    // ----- workflow options -----

    /// Timeout of a whole execution.
    pub fn timeout(mut self, timeout: impl Into<DurationArg>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// Restart the whole workflow up to `n` times when it fails.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Delay before a workflow restart.
    pub fn retry_delay(mut self, delay: impl Into<DurationArg>) -> Self {
        self.retry_delay = Some(delay.into());
        self
    }

    /// Growth of the delay between workflow restarts.
    pub fn retry_backoff(mut self, backoff: Backoff) -> Self {
        self.retry_backoff = Some(backoff);
        self
    }

    /// Cap on the delay between workflow restarts when it grows (exponential or
    /// linear backoff; default 5 minutes). It is the workflow's own: steps' caps
    /// are set on the steps.
    pub fn retry_max_delay(mut self, cap: impl Into<DurationArg>) -> Self {
        self.retry_max_delay = Some(cap.into());
        self
    }

    /// Default timeout of steps that set none (default 5 minutes).
    pub fn step_timeout(mut self, timeout: impl Into<DurationArg>) -> Self {
        self.step_timeout = Some(timeout.into());
        self
    }

    /// Default retries of steps that set none (default 3).
    pub fn step_max_retries(mut self, n: u32) -> Self {
        self.step_max_retries = Some(n);
        self
    }

    /// Default first retry delay of steps that set none (default 1 second).
    pub fn step_retry_delay(mut self, delay: impl Into<DurationArg>) -> Self {
        self.step_retry_delay = Some(delay.into());
        self
    }

    /// Runs when an execution fails for good, after the compensations.
    pub fn on_failure<M, F: IntoStepFn<M>>(mut self, f: F) -> Self {
        self.on_failure = Some(Named { name: fn_name::<F>(), f: f.into_step_fn() });
        self
    }

    /// Runs when an execution completes.
    pub fn on_success<M, F: IntoStepFn<M>>(mut self, f: F) -> Self {
        self.on_success = Some(Named { name: fn_name::<F>(), f: f.into_step_fn() });
        self
    }

    /// Runs when an execution is cancelled with `cleanup`: `f(ctx, reason)`.
    pub fn on_cancel<F: IntoCancelHandler>(mut self, f: F) -> Self {
        self.on_cancel = Some(Named { name: fn_name::<F>(), f: f.into_cancel_handler() });
        self
    }

    /// Runs after every failed step attempt: `f(ctx, step, error, attempt)`.
    pub fn on_step_error<F: IntoStepErrorHandler>(mut self, f: F) -> Self {
        self.on_step_error = Some(Named { name: fn_name::<F>(), f: f.into_step_error_handler() });
        self
    }

    /// Names shown for handlers given as closures (used by `#[workflow]`).
    #[doc(hidden)]
    pub fn name_handler(mut self, handler: WorkflowHandler, name: &str) -> Self {
        let n = Some(Arc::<str>::from(name));
        match handler {
            WorkflowHandler::OnFailure => self.on_failure.iter_mut().for_each(|h| h.name = n.clone()),
            WorkflowHandler::OnSuccess => self.on_success.iter_mut().for_each(|h| h.name = n.clone()),
            WorkflowHandler::OnCancel => self.on_cancel.iter_mut().for_each(|h| h.name = n.clone()),
            WorkflowHandler::OnStepError => self.on_step_error.iter_mut().for_each(|h| h.name = n.clone()),
        }
        self
    }

    /// Keep executions that fail for good as dead letters.
    pub fn dead_letter(mut self, yes: bool) -> Self {
        self.dead_letter = yes;
        self
    }

    /// How long dead letters are kept (default 30 days).
    pub fn dead_letter_ttl(mut self, ttl: impl Into<DurationArg>) -> Self {
        self.dead_letter_ttl = Some(ttl.into());
        self
    }

    /// How long ended executions are kept: their final states (outputs, context,
    /// errors) are pruned by the engine in the background, in bounded batches,
    /// once they ended longer ago than this. Kept for good by default.
    ///
    /// ```
    /// use sagaflow_runtime::{Outcome, StepError, Workflow};
    ///
    /// let def = Workflow::new("report")
    ///     .retention("7d")
    ///     .step("render", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// assert_eq!(def.policy().retention(), Some(std::time::Duration::from_secs(7 * 86_400)));
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn retention(mut self, keep: impl Into<DurationArg>) -> Self {
        self.retention = Some(keep.into());
        self
    }

    /// Tags, shown in introspection and the dashboard.
    pub fn tags(mut self, tags: impl crate::model::IntoNames) -> Self {
        self.tags.extend(tags.into_names());
        self
    }

    /// A metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.metadata.insert(key.into(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// Most steps of one execution running at the same time.
    pub fn step_concurrency(mut self, n: u32) -> Self {
        self.step_concurrency = Some(n);
        self
    }

    /// At most `n` executions of this workflow run at once (on PostgreSQL,
    /// across every node), counted per
    /// [`concurrency_key`](Self::concurrency_key) when one is named: one `n` for
    /// each tenant, say. An execution beyond the limit is created (durably, like
    /// any other) and waits for a slot before its first step; waiting
    /// executions take freed slots by their
    /// [`priority`](crate::StartOptions::priority), then in the order they began
    /// to wait, so no key starves another. An execution holds its slot while it
    /// has work in progress: one that waits — for a timer, a signal, an approval
    /// — gives it up and waits for one again to go on, and one that is
    /// cancelled while it waits ends at once. A node that dies holding slots
    /// frees them when its lease expires. With a limit of 1 this makes a
    /// singleton per key: one at a time, the others queued in order.
    ///
    /// A nested execution of the same workflow and key counts too: a parent
    /// that runs it as a step holds its own slot meanwhile.
    ///
    /// ```
    /// use sagaflow_runtime::{Outcome, StepError, Workflow};
    ///
    /// // Two imports per tenant at a time, however many are started.
    /// let def = Workflow::new("import")
    ///     .concurrency(2)
    ///     .concurrency_key("tenant")
    ///     .step("load", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// let limit = def.policy().limits().and_then(|l| l.concurrency()).expect("a limit");
    /// assert_eq!((limit.limit(), limit.key()), (2, Some("tenant")));
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// The input field whose value keys the workflow's
    /// [`concurrency`](Self::concurrency) limit. A start whose input lacks the
    /// field is refused with [`EngineError::InvalidInput`](crate::EngineError::InvalidInput).
    pub fn concurrency_key(mut self, field: impl Into<String>) -> Self {
        self.concurrency_key = Some(field.into());
        self
    }

    /// At most `count` executions of this workflow begin per `per` (on
    /// PostgreSQL, across every node), counted per
    /// [`rate_limit_key`](Self::rate_limit_key) — or per
    /// [`concurrency_key`](Self::concurrency_key) when only that is named. An
    /// execution beyond it waits, in the order they came, until the window has
    /// room before its first step; one that goes on after a wait counts again.
    ///
    /// ```
    /// use sagaflow_runtime::{Outcome, StepError, Workflow};
    ///
    /// let def = Workflow::new("sync")
    ///     .rate_limit(10, "1m")
    ///     .rate_limit_key("account")
    ///     .step("pull", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// assert_eq!(def.policy().limits().and_then(|l| l.rate()).map(|r| r.count()), Some(10));
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn rate_limit(mut self, count: u32, per: impl Into<DurationArg>) -> Self {
        self.rate_limit = Some((count, per.into()));
        self
    }

    /// The input field whose value keys the workflow's
    /// [`rate_limit`](Self::rate_limit).
    pub fn rate_limit_key(mut self, field: impl Into<String>) -> Self {
        self.rate_limit_key = Some(field.into());
        self
    }

    /// A description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// A version label of your own (the shape hash is computed regardless).
    pub fn version(mut self, label: impl Into<String>) -> Self {
        self.version = Some(label.into());
        self
    }

    /// Validates and assembles the definition.
    pub fn build(self) -> Result<WorkflowDef, BuildError> {
        validate::Validator::new(self).run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Context, Outcome, Step, StepResult};

    async fn noop(_ctx: Context) -> StepResult {
        Ok(Outcome::Done)
    }

    #[test]
    fn version_is_stable_and_shape_sensitive() {
        let a = Workflow::new("w").step("a", noop).build().unwrap();
        let b = Workflow::new("w").step("a", noop).build().unwrap();
        let c = Workflow::new("w").step_with("a", noop, Step::opts().timeout("1s")).build().unwrap();
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_eq!(a, b);
    }
}
