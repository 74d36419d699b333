//! Nested-workflow steps: starting (or re-attaching to) the child execution and
//! waiting for it.

use std::sync::Arc;

use crate::engine::EngineInner;
use crate::machine::event::ExecutionEvent;
use crate::model::execution::Trigger;
use crate::model::ids::StepId;
use crate::model::status::Status;
use crate::model::{Context, ExecutionId, Outcome, StepBody, StepError, StepResult, kinds};
use crate::store::ParentRef;

use super::execution::Execution;

/// The future of a nested-workflow step: computes the child's input, starts the
/// child (or re-attaches to it after recovery), and waits for it. Dropping it
/// before the child ends (a timeout) cancels the child.
#[allow(clippy::too_many_arguments)] // one call site, every argument distinct
pub(super) async fn run_child(
    engine: Arc<EngineInner>,
    parent: Arc<Execution>,
    step: StepId,
    attempt: u32,
    workflow: Arc<str>,
    input: Option<StepBody>,
    ctx: Context,
    existing: Option<ExecutionId>,
) -> StepResult {
    let child = match existing {
        Some(id) => id,
        None => {
            let mut data = ctx.data.clone();
            if let Some(f) = input {
                match f(ctx.clone()).await? {
                    Outcome::Output(serde_json::Value::Object(map)) => {
                        for (k, v) in map {
                            data.insert(k, v);
                        }
                    }
                    Outcome::Done | Outcome::Output(serde_json::Value::Null) => {}
                    other => {
                        return Err(StepError::new(
                            kinds::INVALID_OUTCOME,
                            format!(
                                "the input function of a nested workflow returned {other:?}; expected a JSON object"
                            ),
                        )
                        .permanent());
                    }
                }
            }
            let trigger = Trigger::Parent { execution: parent.id, step: ctx.step().unwrap_or_default().to_owned() };
            let link = ParentRef { execution: parent.id, step, attempt };
            let id = engine.start_child(&workflow, data, trigger, link).await.map_err(|e| {
                StepError::new(kinds::CHILD_FAILED, format!("could not start workflow `{workflow}`: {e}")).permanent()
            })?;
            let at = engine.clock.now();
            if let Err(e) = engine.deliver(&parent, ExecutionEvent::ChildStarted { step, attempt, child: id, at }) {
                tracing::debug!(error = %e, "recording a child start");
            }
            id
        }
    };
    let guard = CancelOnDrop { engine: Arc::clone(&engine), child: Some(child) };
    let state = engine.wait_for(child).await;
    let mut guard = guard;
    guard.child = None;
    let state = state.map_err(|e| StepError::new(kinds::CHILD_FAILED, e.to_string()))?;
    match state.status {
        Status::Completed => Ok(Outcome::Output(serde_json::Value::Object(state.context))),
        Status::Cancelled => Err(StepError::new(
            kinds::CANCELLED,
            format!("child execution {child} of workflow `{workflow}` was cancelled"),
        )
        .permanent()),
        status => {
            let cause = state.failure.map(|f| f.error.to_string()).unwrap_or_else(|| status.to_string());
            Err(StepError::new(
                kinds::CHILD_FAILED,
                format!("child execution {child} of workflow `{workflow}` ended {status}: {cause}"),
            )
            .with_details(serde_json::json!({ "child": child, "status": status })))
        }
    }
}

struct CancelOnDrop {
    engine: Arc<EngineInner>,
    child: Option<ExecutionId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let engine = Arc::clone(&self.engine);
            tokio::spawn(async move {
                let _ = engine
                    .cancel(child, crate::engine::CancelOptions::reason("parent step timed out or was interrupted"))
                    .await;
            });
        }
    }
}
