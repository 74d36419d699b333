//! Restarting from a step: a new execution, linked to an ended one, that keeps
//! what the ended one's other steps produced (see `machine::restart` for which)
//! and runs the named step and everything after it again. The new execution
//! begins with the kept steps completed and their outputs merged into the
//! context, as the original run merged them, and never runs them. The kept steps
//! travel in its creation record, so recovery and any node of a cluster rebuild
//! the same execution.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Engine, EngineError, input_data};
use crate::builder::suggest;
use crate::machine::Seed;
use crate::model::execution::Trigger;
use crate::model::ids::StepId;
use crate::model::restart::{NoSuchStep, kept_steps};
use crate::model::{ExecutionId, WorkflowDef};
use crate::store::KeptStep;

/// What a start may add to a new execution's record besides its input.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// See [`StartOptions::unique_key`](crate::StartOptions::unique_key).
    pub(crate) unique_key: Option<String>,
    /// The steps it begins with completed (a restart from a step).
    pub(crate) kept: Vec<KeptStep>,
    /// The trace it joins when it is not started inside an OpenTelemetry span:
    /// a nested execution's parent's.
    pub(crate) trace: Option<crate::model::TraceContext>,
    /// The caller waits for the end ([`Engine::run`](crate::Engine::run)): on a
    /// volatile store the driver's first turn runs in the caller (see
    /// `engine::inline`).
    pub(crate) in_caller: bool,
    /// See [`StartOptions::priority`](crate::StartOptions::priority).
    pub(crate) priority: i32,
}

/// The machine's seed for the kept steps of a record, on `def` (kept steps that
/// `def` no longer declares are left out).
pub(crate) fn seed_of(def: &WorkflowDef, kept: &[KeptStep]) -> Option<Seed> {
    if kept.is_empty() {
        return None;
    }
    let seed: HashMap<StepId, Option<serde_json::Value>> =
        kept.iter().filter_map(|k| def.inner.by_name.get(k.step.as_str()).map(|&id| (id, k.output.clone()))).collect();
    Some(Arc::new(seed))
}

impl Engine {
    /// Starts a new execution of an ended execution's workflow that keeps the
    /// outputs of the steps before `step` and runs `step` and every step after it
    /// again, on the workflow's current version, with the ended execution's input
    /// and `overrides` (a JSON object) merged over it. Kept steps' outputs are
    /// merged into the context as in the original run. The new execution's
    /// trigger names the one it restarts ([`Trigger::Restart`]); the ended one is
    /// not changed. Grafts, and the steps after them, always run again (the steps
    /// a graft adds are known only once it ran); steps that had not completed are
    /// decided again as usual.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownExecution`]; [`EngineError::InvalidState`] for an
    /// execution that has not ended; [`EngineError::UnknownWorkflow`] when its
    /// workflow is not registered here; [`EngineError::UnknownStep`] for a step
    /// the workflow does not declare; [`EngineError::InvalidInput`] for overrides
    /// that are not an object.
    ///
    /// ```
    /// use sagaflow_runtime::{Engine, Status, Step, StepError, Workflow, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("import")
    ///     .step("download", |_ctx| async { Ok::<_, StepError>(json!({ "rows": 3 })) })
    ///     .step_with("load", |ctx: sagaflow_runtime::Context| async move {
    ///         if !ctx.get_or("fixed", false) {
    ///             return Err(StepError::new("bad_row", "row 2 is malformed").permanent());
    ///         }
    ///         Ok::<_, StepError>(json!({ "loaded": ctx.get::<u64>("rows")? }))
    ///     }, Step::opts().after("download"))
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let failed = engine.start("import", json!({})).await?;
    /// assert_eq!(engine.wait(failed).await?.status, Status::Failed);
    ///
    /// let again = engine.restart_from(failed, "load", json!({ "fixed": true })).await?;
    /// let done = engine.wait(again).await?;
    /// assert_eq!(done.status, Status::Completed);
    /// assert_eq!(done.context["loaded"], 3);
    /// assert_eq!(done.step("download").unwrap().attempts, 0, "kept, not run again");
    /// # Ok(()) }
    /// ```
    pub async fn restart_from(
        &self,
        id: ExecutionId,
        step: &str,
        overrides: impl Serialize,
    ) -> Result<ExecutionId, EngineError> {
        let inner = &self.inner;
        let Some(old) = inner.store.finished(id).await? else {
            return Err(match inner.get_state(id).await {
                Ok(live) => EngineError::InvalidState {
                    id,
                    action: "restart",
                    status: live.status,
                    reason: "it has not ended".into(),
                },
                Err(e) => e,
            });
        };
        let def = inner.definition(&old.workflow)?;
        let kept =
            kept_steps(&def.snapshot(), step, &old).map_err(|NoSuchStep { known }| EngineError::UnknownStep {
                workflow: old.workflow.clone(),
                step: step.to_owned(),
                suggestion: suggest(step, known.iter().map(String::as_str)),
                known,
            })?;
        let mut data = input_data(def.name(), &old.input)?;
        for (k, v) in input_data(def.name(), overrides)?.iter() {
            data.insert(k.clone(), v.clone());
        }
        let trigger = Trigger::Restart { of: id, from: step.to_owned() };
        let extras = Extras { kept, ..Default::default() };
        inner.start_with_id(ExecutionId::new(), def, data, trigger, None, extras).await
    }
}
