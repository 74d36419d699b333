//! The engine's introspection methods: thin wrappers that find the registered
//! definition (and the execution to colour by) and call [`crate::introspect`].

use super::{Engine, EngineError};
use crate::introspect::{self, DiagramOptions, Report, Summary, WorkflowInfo};
use crate::model::DefinitionSnapshot;

impl Engine {
    fn snapshot(&self, name: &str) -> Result<DefinitionSnapshot, EngineError> {
        Ok(self.inner.definition(name)?.snapshot())
    }

    /// Fills in the state of the execution the options name, and checks that it is
    /// an execution of `name`.
    async fn with_state(&self, name: &str, mut opts: DiagramOptions) -> Result<DiagramOptions, EngineError> {
        if opts.state.is_none()
            && let Some(id) = opts.execution
        {
            opts.state = Some(Box::new(self.get_state(id).await?));
        }
        if let Some(state) = opts.state.as_deref()
            && state.workflow != name
        {
            return Err(EngineError::InvalidState {
                id: state.id,
                action: "draw",
                status: state.status,
                reason: format!("it is an execution of workflow `{}`, not of `{name}`", state.workflow),
            });
        }
        Ok(opts)
    }

    /// A registered workflow at a glance: step, group, graft and nested-workflow
    /// counts, rollback, estimated timeout, trigger, tags (see [`Summary`]).
    ///
    /// ```
    /// use sagaflow_runtime::{Context, Engine, Outcome, Step, StepResult, Workflow};
    ///
    /// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("orders")
    ///     .step("validate", noop)
    ///     .step_with("charge", noop, Step::opts().after("validate"))
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let summary = engine.summary("orders")?;
    /// assert_eq!(summary.steps, 2);
    /// assert_eq!(summary.trigger, "manual");
    /// assert!(engine.summary("order").is_err());
    /// # Ok(()) }
    /// ```
    pub fn summary(&self, name: &str) -> Result<Summary, EngineError> {
        Ok(introspect::summary(&self.snapshot(name)?))
    }

    /// A registered workflow in detail: steps, execution order as parallel layers,
    /// groups, grafts, nested workflows, critical path and total timeout (see
    /// [`Report`]).
    pub fn report(&self, name: &str) -> Result<Report, EngineError> {
        Ok(introspect::report(&self.snapshot(name)?))
    }

    /// A registered workflow as a Mermaid flowchart (see
    /// [`introspect::to_mermaid`]). With [`DiagramOptions::execution`] the
    /// execution is looked up and its steps are coloured by state.
    ///
    /// ```
    /// use sagaflow_runtime::{Context, Engine, Outcome, Status, Step, StepResult, Workflow, json};
    ///
    /// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
    /// use sagaflow_runtime::introspect::DiagramOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("orders")
    ///     .step("validate", noop)
    ///     .step_with("ship", noop, Step::opts().after("validate"))
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let id = engine.start("orders", json!({})).await?;
    /// assert_eq!(engine.wait(id).await?.status, Status::Completed);
    /// let chart = engine.to_mermaid("orders", DiagramOptions::new().execution(id)).await?;
    /// assert!(chart.contains("  validate[\"Validate\"]:::completed\n"));
    /// assert!(chart.contains("  classDef completed fill:#90EE90\n"));
    /// # Ok(()) }
    /// ```
    pub async fn to_mermaid(&self, name: &str, opts: DiagramOptions) -> Result<String, EngineError> {
        let def = self.snapshot(name)?;
        let opts = self.with_state(name, opts).await?;
        Ok(introspect::to_mermaid(&def, &opts))
    }

    /// A registered workflow as a Graphviz DOT graph (see [`introspect::to_dot`]),
    /// with the same options as [`to_mermaid`](Self::to_mermaid).
    pub async fn to_dot(&self, name: &str, opts: DiagramOptions) -> Result<String, EngineError> {
        let def = self.snapshot(name)?;
        let opts = self.with_state(name, opts).await?;
        Ok(introspect::to_dot(&def, &opts))
    }

    /// A registered workflow's steps as a box-drawn table: step, depends on,
    /// timeout, retries, rollback (see [`introspect::to_table`]).
    pub fn to_table(&self, name: &str) -> Result<String, EngineError> {
        Ok(introspect::to_table(&self.snapshot(name)?))
    }

    /// Every registered workflow, by name, with its trigger type and how many of
    /// its executions have not ended on this engine.
    pub fn list_all(&self) -> Vec<WorkflowInfo> {
        let mut defs = self.definitions();
        defs.sort_by(|a, b| a.name().cmp(b.name()));
        defs.iter()
            .map(|d| {
                let running =
                    self.inner.executions.iter().filter(|e| &**e.workflow() == d.name() && !e.is_finished()).count()
                        + self.inner.delayed.iter().filter(|e| e.new.workflow == d.name()).count();
                introspect::workflow_info(&d.snapshot(), running)
            })
            .collect()
    }
}
