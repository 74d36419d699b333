//! Starting executions: now, in the caller, from a schedule's tick, as a child;
//! the creation is journaled before anything of the execution runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::executor::{Execution, drive};
use super::restart::Extras;
use super::{Engine, EngineError, EngineInner, inline, limits, restart, trace};
use crate::machine::Machine;
use crate::model::context::{Data, object_to_data};
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::{ExecutionId, WorkflowDef};
use crate::store::{NewExecution, ParentRef, Write};
use crate::telemetry::Event as Telemetry;

pub(super) fn input_data(workflow: &str, input: impl Serialize) -> Result<Data, EngineError> {
    let value = serde_json::to_value(input)
        .map_err(|e| EngineError::InvalidInput { workflow: workflow.to_owned(), reason: e.to_string() })?;
    object_to_data(value)
        .map_err(|e| EngineError::InvalidInput { workflow: workflow.to_owned(), reason: e.message().to_owned() })
}

pub(super) fn to_map(data: &Data) -> Map<String, Value> {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Engine {
    /// Starts an execution of `workflow` with `input` (a JSON object, or anything
    /// that serializes to one). Returns once the start is durable.
    pub async fn start(&self, workflow: &str, input: impl Serialize) -> Result<ExecutionId, EngineError> {
        let def = self.inner.definition(workflow)?;
        let data = input_data(workflow, input)?;
        self.inner.start_new(def, data, Trigger::Manual, None).await
    }

    /// Starts an execution of `workflow` with `input` and waits for its end:
    /// [`start`](Self::start) then [`wait`](Self::wait), in one call, for a
    /// service that runs a short workflow per request.
    ///
    /// On a volatile store (memory) the execution's steps start in the calling
    /// task, and a workflow whose steps finish without waiting runs to its end
    /// there, with no task hand-off; whatever has to wait carries on in a task of
    /// its own, as after `start`. On a durable store it is `start` then `wait`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sagaflow_runtime::{Context, Engine, Outcome, Status, StepError, Workflow};
    /// use serde_json::json;
    ///
    /// let def = Workflow::new("greet")
    ///     .step("hello", |ctx: Context| async move {
    ///         let name: String = ctx.get("name")?;
    ///         Ok::<_, StepError>(Outcome::Output(json!({ "greeting": format!("hello, {name}") })))
    ///     })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let state = engine.run("greet", json!({ "name": "ada" })).await?;
    /// assert_eq!(state.status, Status::Completed);
    /// assert_eq!(state.context["greeting"], "hello, ada");
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, workflow: &str, input: impl Serialize) -> Result<ExecutionState, EngineError> {
        let def = self.inner.definition(workflow)?;
        let data = input_data(workflow, input)?;
        let extras = Extras { in_caller: true, ..Extras::default() };
        let (id, launched) =
            self.inner.start_launched(ExecutionId::new(), def, data, Trigger::Manual, None, extras).await?;
        // Ended in the caller, and its end committed already: no need to look.
        if let Some(state) = launched.and_then(|exec| self.inner.committed_end(&exec)) {
            return Ok(state);
        }
        self.inner.wait_for(id).await
    }

    /// Starts every workflow subscribed to `event` (`on_event`) with `payload` as
    /// input. Returns the new executions, sorted by workflow name.
    pub async fn emit(&self, event: &str, payload: impl Serialize) -> Result<Vec<ExecutionId>, EngineError> {
        let subscribed: Vec<WorkflowDef> = {
            let reg = self.inner.registry.read();
            reg.defs.values().filter(|d| d.triggers().events.iter().any(|e| e == event)).cloned().collect()
        };
        let mut ids = Vec::with_capacity(subscribed.len());
        for def in subscribed {
            let data = input_data(def.name(), &payload)?;
            let trigger = Trigger::Event { name: event.to_owned() };
            ids.push(self.inner.start_new(def, data, trigger, None).await?);
        }
        Ok(ids)
    }
}

impl EngineInner {
    pub(crate) async fn start_new(
        self: &Arc<Self>,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        parent: Option<ParentRef>,
    ) -> Result<ExecutionId, EngineError> {
        self.start_with_id(ExecutionId::new(), def, data, trigger, parent, Extras::default()).await
    }

    /// Starts the execution of a schedule's tick: the store claims the tick and
    /// creates the execution in one transaction, or, if the tick was claimed
    /// already (by another engine on a shared store), creates nothing.
    pub(crate) async fn start_tick(
        self: &Arc<Self>,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        key: String,
        fire_time: DateTime<Utc>,
    ) -> Result<ExecutionId, EngineError> {
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        limits::check_input(&def, &data)?;
        let id = ExecutionId::new();
        let at = self.clock.now();
        let trace = self.trace_for_new(None);
        let new = NewExecution {
            id,
            workflow: def.name().to_owned(),
            version: def.version().to_owned(),
            input: to_map(&data),
            parent: None,
            trigger: trigger.clone(),
            created_at: at,
            start_at: None,
            unique_key: None,
            debounce_key: None,
            kept: Vec::new(),
            priority: 0,
            trace: trace.clone(),
        };
        if !self.durable {
            // A volatile store (which engines in one process may share) keeps
            // nothing across a crash: claiming first is enough.
            if !self.store.claim_tick(&key, fire_time).await? {
                return Ok(id);
            }
            self.launch(id, def, data, trigger, None, at, 0, &Extras::default(), trace);
            return Ok(id);
        }
        let write = Write::Tick { key, fire_time, execution: Box::new(new) };
        if let Some(node) = &self.node {
            self.commit(write, "start a scheduled execution").await?;
            node.wake.notify_one();
            return Ok(id);
        }
        // One engine holds a durable store (an SQLite file's lock): its ticks
        // are its own to fire.
        let (ticket, ack) = self.journal.submit(write);
        self.launch(id, def, data, trigger, None, at, ticket, &Extras::default(), trace);
        self.acknowledged(ack, "start a scheduled execution").await?;
        Ok(id)
    }

    /// Whether an execution exists, here or in the store, running or ended.
    pub(crate) async fn exists(&self, id: ExecutionId) -> Result<bool, EngineError> {
        if self.executions.contains_key(&id) || self.delayed.contains_key(&id) {
            return Ok(true);
        }
        if self.store.finished(id).await?.is_some() {
            return Ok(true);
        }
        match self.store.cluster() {
            Some(cluster) if self.node.is_some() => Ok(cluster.is_unfinished(id).await?),
            _ => Ok(false),
        }
    }

    /// The trace a new execution joins (see `engine::trace`), kept where the
    /// execution may outlive this process or move between nodes; in memory its
    /// spans nest under the caller's anyway.
    pub(super) fn trace_for_new(
        &self,
        inherited: Option<&crate::model::TraceContext>,
    ) -> Option<crate::model::TraceContext> {
        (self.durable || self.node.is_some()).then(|| trace::for_new(inherited))
    }

    /// Starts an execution under a given id. Starting an id that runs already
    /// starts nothing more (the store, too, creates an id once).
    pub(crate) async fn start_with_id(
        self: &Arc<Self>,
        id: ExecutionId,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        parent: Option<ParentRef>,
        extras: Extras,
    ) -> Result<ExecutionId, EngineError> {
        Ok(self.start_launched(id, def, data, trigger, parent, extras).await?.0)
    }

    /// [`start_with_id`](Self::start_with_id), with the execution if this call
    /// launched it here.
    async fn start_launched(
        self: &Arc<Self>,
        id: ExecutionId,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        parent: Option<ParentRef>,
        extras: Extras,
    ) -> Result<(ExecutionId, Option<Arc<Execution>>), EngineError> {
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        limits::check_input(&def, &data)?;
        let at = self.clock.now();
        let trace = self.trace_for_new(extras.trace.as_ref());
        let record = |parent, trigger| {
            Write::Create(Box::new(NewExecution {
                id,
                workflow: def.name().to_owned(),
                version: def.version().to_owned(),
                input: to_map(&data),
                parent,
                trigger,
                created_at: at,
                start_at: None,
                unique_key: extras.unique_key.clone(),
                debounce_key: None,
                kept: extras.kept.clone(),
                priority: extras.priority,
                trace: trace.clone(),
            }))
        };
        if let Some(node) = &self.node {
            // Any node may claim it, this one included.
            self.commit(record(parent, trigger), "start").await?;
            node.wake.notify_one();
            return Ok((id, None));
        }
        // The driver starts at once, but runs nothing before the creation is
        // committed (the write-ahead rule): a crash never leaves side effects of
        // an execution the store does not know. A volatile store hears of a
        // keyed one too, so that its history knows the key once it ended.
        if !self.durable && extras.unique_key.is_none() {
            let launched = self.launch(id, def, data, trigger, parent, at, 0, &extras, trace);
            return Ok((id, launched));
        }
        let (ticket, ack) = self.journal.submit(record(parent.clone(), trigger.clone()));
        let launched = self.launch(id, def, data, trigger, parent, at, ticket, &extras, trace);
        self.acknowledged(ack, "start").await?;
        Ok((id, launched))
    }

    /// Creates the execution's state and its driver. `ticket` is the journal
    /// ticket of the write that records the execution's start (0 if none): the
    /// driver waits for it before running anything. `kept`: the steps it begins
    /// with completed (a restart from a step). Returns the execution, unless one
    /// with its id runs here already.
    #[allow(clippy::too_many_arguments)] // the parts of a new execution, each distinct
    pub(super) fn launch(
        self: &Arc<Self>,
        id: ExecutionId,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        parent: Option<ParentRef>,
        at: DateTime<Utc>,
        ticket: u64,
        extras: &Extras,
        trace: Option<crate::model::TraceContext>,
    ) -> Option<Arc<Execution>> {
        let mut cmds = Vec::new();
        let machine = Machine::start_seeded(&def, data, restart::seed_of(&def, &extras.kept), at, &mut cmds);
        let trigger_type = trigger.kind();
        let exec = Arc::new(Execution::new(id, def, machine, trigger, parent, trace, extras.priority));
        if self.bus.wanted() {
            self.bus.emit(Telemetry::WorkflowStart {
                workflow_name: Arc::clone(exec.workflow()),
                execution_id: id,
                trigger_type,
            });
        }
        let mut core = exec.core.lock();
        core.commands = cmds;
        core.ticket = ticket;
        match self.executions.entry(id) {
            dashmap::Entry::Occupied(_) => return None,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&exec));
            }
        }
        core.driver = true;
        drop(core);
        if extras.in_caller && ticket == 0 {
            // Nothing to commit before the first steps, and the caller waits
            // for the end anyway: they start here. (Boxed where it is made: the
            // driver's future is large, and a move would copy it.)
            inline::run_then_spawn(Box::pin(drive(Arc::clone(self), Arc::clone(&exec))));
        } else {
            tokio::spawn(drive(Arc::clone(self), Arc::clone(&exec)));
        }
        Some(exec)
    }

    pub(crate) async fn start_child(
        self: &Arc<Self>,
        workflow: &str,
        data: Data,
        trigger: Trigger,
        parent: ParentRef,
    ) -> Result<ExecutionId, EngineError> {
        let def = self.definition(workflow)?;
        // Without an OpenTelemetry span to join, the child joins its parent's trace.
        let (trace, priority) = match self.executions.get(&parent.execution) {
            Some(p) => (p.trace.as_deref().cloned(), p.priority),
            None => (None, 0),
        };
        let extras = Extras { trace, priority, ..Extras::default() };
        self.start_with_id(ExecutionId::new(), def, data, trigger, Some(parent), extras).await
    }
}
