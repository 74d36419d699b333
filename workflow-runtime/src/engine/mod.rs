//! [`Engine`]: registers workflows, starts and controls executions.

mod breaker;
mod builder;
mod clock;
mod debounce;
mod error;
pub(crate) mod executor;
mod inbox;
mod inline;
mod introspect;
mod journal;
mod limits;
mod node;
mod park;
mod recovery;
mod registry;
mod restart;
mod retention;
mod scheduler;
mod signal;
mod timers;
mod trace;
mod unique;

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub use self::breaker::BreakerState;
pub use self::builder::EngineBuilder;
pub use self::clock::Clock;
pub use self::error::EngineError;
use self::executor::{Execution, drive};
use self::journal::{Ack, Journal};
use self::registry::Registry;
pub use self::registry::{Registration, WorkflowType, registrations};
use self::restart::Extras;
pub(crate) use self::timers::sleep_until_woken;
use self::timers::{TimerTarget, Timers};
pub use self::unique::{OnDuplicate, StartOptions, Started};
use crate::builder::suggest;
pub use crate::introspect::WorkflowInfo;
use crate::machine::event::Event;
use crate::machine::{Machine, TransitionError};
use crate::model::context::{Data, object_to_data};
use crate::model::execution::{ExecutionState, Progress, Trigger};
use crate::model::status::Status;
use crate::model::{DurationArg, ExecutionId, StepKindName, WorkflowDef};
use crate::store::{Command, DeadLetter, ExecutionQuery, NewExecution, ParentRef, Store, Write};
use crate::telemetry::{Bus, Event as Telemetry, Subscription};

/// The default of [`EngineBuilder::call_timeout`].
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to cancel an execution.
///
/// ```
/// use sagaflow_runtime::CancelOptions;
/// let opts = CancelOptions::reason("user_requested").cleanup(true).rollback(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct CancelOptions {
    pub(crate) reason: String,
    pub(crate) cleanup: bool,
    pub(crate) rollback: bool,
}

impl Default for CancelOptions {
    fn default() -> Self {
        CancelOptions { reason: "cancelled".into(), cleanup: false, rollback: false }
    }
}

impl From<&str> for CancelOptions {
    fn from(reason: &str) -> Self {
        CancelOptions::reason(reason)
    }
}

impl From<String> for CancelOptions {
    fn from(reason: String) -> Self {
        CancelOptions::reason(reason)
    }
}

impl CancelOptions {
    /// Cancel with a reason (kept on the execution and passed to `on_cancel`).
    pub fn reason(reason: impl Into<String>) -> Self {
        CancelOptions { reason: reason.into(), ..Default::default() }
    }

    /// Run the workflow's `on_cancel` handler.
    pub fn cleanup(mut self, yes: bool) -> Self {
        self.cleanup = yes;
        self
    }

    /// Run the compensations of completed steps (saga rollback).
    pub fn rollback(mut self, yes: bool) -> Self {
        self.rollback = yes;
        self
    }
}

/// When a scheduled execution starts.
#[derive(Clone, Debug)]
pub enum StartAt {
    /// At this instant.
    At(DateTime<Utc>),
    /// After this delay.
    In(DurationArg),
}

impl StartAt {
    /// After a delay such as `"30m"`.
    pub fn delay(d: impl Into<DurationArg>) -> Self {
        StartAt::In(d.into())
    }
}

impl From<DateTime<Utc>> for StartAt {
    fn from(at: DateTime<Utc>) -> Self {
        StartAt::At(at)
    }
}

impl From<Duration> for StartAt {
    fn from(d: Duration) -> Self {
        StartAt::In(d.into())
    }
}

/// A delayed execution waiting for its start time.
pub(crate) struct Delayed {
    pub(crate) def: WorkflowDef,
    pub(crate) new: NewExecution,
}

pub(crate) struct EngineInner {
    pub(crate) registry: RwLock<Registry>,
    pub(crate) executions: DashMap<ExecutionId, Arc<Execution>>,
    pub(crate) delayed: DashMap<ExecutionId, Delayed>,
    pub(crate) parked: DashMap<ExecutionId, ExecutionState>,
    /// Executions the store refused a write of, with the store's reason: they
    /// stopped here (see `journal`).
    pub(crate) rejected: DashMap<ExecutionId, String>,
    /// How long an acknowledged call waits (see `EngineBuilder::call_timeout`).
    pub(crate) call_timeout: Duration,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) durable: bool,
    pub(crate) journal: Arc<Journal>,
    pub(crate) clock: Clock,
    pub(crate) timers: Arc<Timers>,
    pub(crate) breakers: breaker::Breakers,
    /// Steps' concurrency and rate limits.
    pub(crate) limits: Arc<limits::Limiter>,
    pub(crate) bus: Bus,
    pub(crate) shutdown: CancellationToken,
    pub(crate) scheduler: Arc<scheduler::Scheduler>,
    /// On a shared store: this engine's part in the cluster.
    pub(crate) node: Option<Arc<node::Node>>,
    /// Keys of live executions started with a unique key (stores one engine owns).
    pub(crate) unique: unique::UniqueKeys,
    /// Debounce keys and the delayed executions waiting under them (stores one
    /// engine owns).
    pub(crate) debounced: debounce::DebounceKeys,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.journal.close();
    }
}

/// The workflow engine. Cheap to clone; every clone drives the same executions.
///
/// ```
/// use sagaflow_runtime::{Context, Engine, Outcome, Step, StepResult, Workflow, json};
///
/// async fn create_account(ctx: Context) -> StepResult {
///     let email: String = ctx.get("email")?;
///     Ok(json!({ "user_id": 123, "login": email }).into())
/// }
/// async fn send_welcome(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let def = Workflow::new("onboarding")
///     .step("create_account", create_account)
///     .step_with("send_welcome", send_welcome, Step::opts().after("create_account"))
///     .build()?;
/// let engine = Engine::builder().register(def).build().await?;
/// let id = engine.start("onboarding", json!({ "email": "alice@example.com" })).await?;
/// let state = engine.wait(id).await?;
/// assert_eq!(state.status, sagaflow_runtime::Status::Completed);
/// assert_eq!(state.context["user_id"], 123);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workflows", &self.inner.registry.read().names())
            .field("live_executions", &self.inner.executions.len())
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

fn input_data(workflow: &str, input: impl Serialize) -> Result<Data, EngineError> {
    let value = serde_json::to_value(input)
        .map_err(|e| EngineError::InvalidInput { workflow: workflow.to_owned(), reason: e.to_string() })?;
    object_to_data(value)
        .map_err(|e| EngineError::InvalidInput { workflow: workflow.to_owned(), reason: e.message().to_owned() })
}

fn to_map(data: &Data) -> Map<String, Value> {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Engine {
    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    // ----- starting -----

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
        let id = self.inner.start_with_id(ExecutionId::new(), def, data, Trigger::Manual, None, extras).await?;
        self.inner.wait_for(id).await
    }

    /// Starts an execution later: at an instant, or after a delay.
    ///
    /// The execution exists at once (status `pending`); it can be inspected and
    /// cancelled before it starts, and it survives restarts on a durable store.
    pub async fn schedule_execution(
        &self,
        workflow: &str,
        input: impl Serialize,
        when: impl Into<StartAt>,
    ) -> Result<ExecutionId, EngineError> {
        let def = self.inner.definition(workflow)?;
        let data = input_data(workflow, input)?;
        let now = self.inner.clock.now();
        let at = match when.into() {
            StartAt::At(at) => at,
            StartAt::In(d) => {
                let d = d.to_duration().map_err(|e| EngineError::InvalidInput {
                    workflow: workflow.to_owned(),
                    reason: format!("invalid delay: {e}"),
                })?;
                now + d
            }
        };
        self.inner.schedule(def, data, Trigger::Delayed { at }, at).await
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

    // ----- watching -----

    /// The state of an execution: running, parked, scheduled or ended.
    pub async fn get_state(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        self.inner.get_state(id).await
    }

    /// Waits until the execution ends and returns its final state, once that state
    /// is committed to the store (so [`history`](Self::history) includes it).
    pub async fn wait(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        self.inner.wait_for(id).await
    }

    /// Executions of `workflow` that have not ended (scheduled ones included). On a
    /// shared store, those that other nodes hold too.
    pub async fn list_running(&self, workflow: &str) -> Result<Vec<ExecutionState>, EngineError> {
        let now = self.inner.clock.now();
        let mut out: Vec<ExecutionState> = self
            .inner
            .executions
            .iter()
            .filter(|e| &**e.workflow() == workflow)
            .map(|e| e.state(now))
            .filter(|s| !s.status.is_terminal())
            .collect();
        out.extend(self.inner.delayed.iter().filter(|d| d.new.workflow == workflow).map(|d| pending_state(&d.new)));
        if self.inner.node.is_some() {
            out.extend(self.inner.remote_running(workflow).await?);
        }
        out.sort_by_key(|s| (s.started_at, s.id));
        Ok(out)
    }

    /// Ended executions from the store, newest first.
    pub async fn history(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, EngineError> {
        Ok(self.inner.store.list_finished(query).await?)
    }

    /// A stream of telemetry events. Slow subscribers lose events; the engine never
    /// waits for them.
    pub fn subscribe(&self) -> Subscription {
        self.inner.bus.subscribe()
    }

    // ----- controlling -----

    /// Pauses an execution: running steps finish, no new step starts.
    pub async fn pause(&self, id: ExecutionId) -> Result<(), EngineError> {
        self.inner.control(id, Command::Pause).await
    }

    /// Resumes a paused execution, and completes its awaiting steps with `context`
    /// (merged into the execution's context). Steps parked for a signal
    /// ([`signal`](Self::signal)) are completed too, with `context` as their
    /// output and without running again: `resume` overrides the wait.
    pub async fn resume(&self, id: ExecutionId, context: impl Serialize) -> Result<(), EngineError> {
        let context = self.inner.resume_data(id, context)?;
        self.inner.control(id, Command::Resume { step: None, context }).await
    }

    /// Completes one awaiting step (when several await at once).
    pub async fn resume_step(&self, id: ExecutionId, step: &str, context: impl Serialize) -> Result<(), EngineError> {
        let context = self.inner.resume_data(id, context)?;
        self.inner.control(id, Command::Resume { step: Some(step.to_owned()), context }).await
    }

    /// Cancels an execution. Cancellable steps are interrupted, others finish first;
    /// then the rollback runs if asked for, then `on_cancel` if `cleanup` is set.
    pub async fn cancel(&self, id: ExecutionId, options: CancelOptions) -> Result<(), EngineError> {
        self.inner.cancel(id, options).await
    }

    /// Cancels every execution of `workflow` that has not ended, with the same
    /// options as [`cancel`](Self::cancel) (a reason alone converts into them);
    /// returns how many.
    ///
    /// ```
    /// # async fn run(engine: sagaflow_runtime::Engine) -> Result<(), sagaflow_runtime::EngineError> {
    /// use sagaflow_runtime::CancelOptions;
    /// engine.cancel_all("nightly_export", "maintenance").await?;
    /// engine.cancel_all("checkout", CancelOptions::reason("outage").rollback(true).cleanup(true)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_all(&self, workflow: &str, options: impl Into<CancelOptions>) -> Result<usize, EngineError> {
        self.inner.definition(workflow)?;
        let options = options.into();
        let ids: Vec<ExecutionId> = self.list_running(workflow).await?.into_iter().map(|s| s.id).collect();
        let mut count = 0;
        for id in ids {
            if self.inner.cancel(id, options.clone()).await.is_ok() {
                count += 1;
            }
        }
        Ok(count)
    }

    // ----- registry -----

    /// Registers a definition built with [`Workflow`](crate::Workflow).
    pub fn register(&self, def: WorkflowDef) -> Result<(), EngineError> {
        self.inner.register(vec![def])
    }

    /// Registers a `#[workflow]` type's value.
    pub fn workflow<W: WorkflowType>(&self, value: W) -> Result<(), EngineError> {
        let def = W::definition(Arc::new(value))?;
        self.register(def)
    }

    /// A registered definition.
    pub fn definition(&self, name: &str) -> Option<WorkflowDef> {
        self.inner.registry.read().get(name).cloned()
    }

    /// Every registered definition, by name.
    pub fn definitions(&self) -> Vec<WorkflowDef> {
        self.inner.registry.read().defs.values().cloned().collect()
    }

    /// Every armed schedule, by workflow and index: its next and last tick.
    pub fn schedules(&self) -> Vec<crate::schedule::ScheduleInfo> {
        self.inner.scheduler.board()
    }

    /// The state of a circuit breaker, once a step has used it.
    pub fn circuit_breaker(&self, name: &str) -> Option<BreakerState> {
        self.inner.breakers.state(name)
    }

    /// Dead letters: executions that failed for good in workflows with `dead_letter`.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { engine: self }
    }

    /// On a shared store, this engine's identity in the cluster now: a fresh one
    /// per process, and a new one whenever its lease lapsed and it joined again
    /// (so work done under one identity is never confused with another's).
    /// `None` on a store one engine owns.
    pub fn node_id(&self) -> Option<crate::store::NodeId> {
        self.inner.node.as_ref().and(self.inner.store.cluster()).map(|c| c.node())
    }

    /// The engine's clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Stops timers, flushes the store, and lets running step futures drop with the
    /// runtime. On a durable store, unfinished executions resume when an engine
    /// starts again; on a shared store, this node leaves the cluster and the
    /// other nodes take its unfinished executions over at once.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let last = self.inner.journal.last_ticket();
        // Every write queued so far is committed (or the journal had already
        // stopped, by an earlier shutdown), then the writer stops: nothing this
        // engine writes can land after another engine takes the store over.
        let timeout = self.inner.call_timeout;
        if tokio::time::timeout(timeout, self.inner.journal.flushed(last)).await.is_err() {
            tracing::error!(?timeout, "the store did not commit the last writes in time; they are dropped");
        }
        self.inner.journal.close();
        if tokio::time::timeout(timeout, self.inner.journal.stopped()).await.is_err() {
            tracing::error!(?timeout, "the journal's writer did not stop in time");
        }
        self.inner.store.release().await;
        if self.inner.node.is_some()
            && let Some(cluster) = self.inner.store.cluster()
        {
            let mut delay = Duration::from_millis(50);
            for _ in 0..5 {
                match cluster.leave().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "leaving the cluster failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
    }

    /// Drains the engine, then shuts it down: it starts nothing new (on a shared
    /// store it claims nothing more), lets the steps that are running finish and
    /// the executions they belong to go on until they end or wait (for an
    /// approval, a timer, a retry), and then [`shutdown`](Self::shutdown)s, which
    /// hands what still waits to the other nodes.
    pub async fn drain(&self) {
        if let Some(node) = &self.inner.node {
            node.draining.store(true, std::sync::atomic::Ordering::Release);
        }
        loop {
            let now = self.inner.clock.now();
            let busy = self.inner.executions.iter().any(|e| {
                let state = e.state(now);
                !state.status.is_terminal() && !state.running.is_empty()
            });
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.shutdown().await;
    }
}

/// Dead-letter operations: list, inspect, replay, purge.
#[derive(Debug)]
pub struct DeadLetters<'a> {
    engine: &'a Engine,
}

impl DeadLetters<'_> {
    /// Every dead letter (of one workflow, if given), oldest first.
    pub async fn list(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, EngineError> {
        Ok(self.engine.inner.store.dead_letters(workflow).await?)
    }

    /// One dead letter.
    pub async fn get(&self, id: ExecutionId) -> Result<Option<DeadLetter>, EngineError> {
        Ok(self.list(None).await?.into_iter().find(|d| d.id == id))
    }

    /// Starts the failed execution's workflow again with the same input; the dead
    /// letter is removed. Returns the new execution.
    ///
    /// Replay is atomic and idempotent: the new execution is created and the dead
    /// letter removed in one transaction, and the new execution's id is derived
    /// from the failed one's ([`ExecutionId::replay_of`]), so replaying the same
    /// letter twice, at once or on two nodes, starts one execution and returns its
    /// id both times.
    pub async fn replay(&self, id: ExecutionId) -> Result<ExecutionId, EngineError> {
        let inner = &self.engine.inner;
        let new = ExecutionId::replay_of(id);
        if inner.exists(new).await? {
            return Ok(new);
        }
        let Some(letter) = self.get(id).await? else {
            // Replayed meanwhile (by another call or node), or never there.
            return if inner.exists(new).await? { Ok(new) } else { Err(EngineError::UnknownExecution(id)) };
        };
        let def = inner.definition(&letter.workflow)?;
        let data: Data = letter.input.clone().into_iter().collect();
        let started = inner.start_with_id(new, def, data, Trigger::Replay { of: id }, None, Extras::default()).await?;
        if !inner.durable {
            // A volatile store records no creation to remove the letter with.
            inner.commit(Write::RemoveDeadLetter(id), "replay a dead letter").await?;
        }
        Ok(started)
    }

    /// Deletes one dead letter.
    pub async fn remove(&self, id: ExecutionId) -> Result<(), EngineError> {
        self.engine.inner.commit(Write::RemoveDeadLetter(id), "remove a dead letter").await
    }

    /// Deletes dead letters older than their workflow's `dead_letter_ttl`; returns
    /// how many. The engine also does this in the background (every minute by
    /// default, see [`EngineBuilder::housekeeping_every`]).
    pub async fn purge_expired(&self) -> Result<usize, EngineError> {
        let inner = &self.engine.inner;
        let last = inner.journal.last_ticket();
        inner.journal.flushed(last).await?;
        Ok(inner.store.purge_dead_letters(inner.clock.now()).await?)
    }
}

fn pending_state(n: &NewExecution) -> ExecutionState {
    ExecutionState {
        id: n.id,
        workflow: n.workflow.clone(),
        version: n.version.clone(),
        status: Status::Pending,
        running: Vec::new(),
        current_step: None,
        progress: Progress::default(),
        context: n.input.clone(),
        started_at: n.start_at.unwrap_or(n.created_at),
        ended_at: None,
        duration: Duration::ZERO,
        attempt: 0,
        steps: Vec::new(),
        awaiting: Vec::new(),
        failure: None,
        rollback: None,
        cancel_reason: None,
        handler_errors: Vec::new(),
        parent: n.parent.as_ref().map(|p| p.execution),
        trigger: n.trigger.clone(),
        parked: None,
        signals: Vec::new(),
        input: n.input.clone(),
        outputs: Map::new(),
    }
}

impl EngineInner {
    /// Queues a write and waits, at most the call timeout, until it is committed.
    pub(crate) async fn commit(&self, write: Write, action: &'static str) -> Result<(), EngineError> {
        let (_, ack) = self.journal.submit(write);
        self.acknowledged(ack, action).await
    }

    /// Waits, at most the call timeout, for what became of an acknowledged write.
    pub(crate) async fn acknowledged(&self, ack: Ack, action: &'static str) -> Result<(), EngineError> {
        match tokio::time::timeout(self.call_timeout, ack).await {
            Err(_) => Err(EngineError::Timeout { action, after: self.call_timeout }),
            // The writer is gone: the engine was dropped.
            Ok(Err(_)) => Err(EngineError::ShutDown),
            Ok(Ok(result)) => Ok(result?),
        }
    }

    pub(crate) fn definition(&self, name: &str) -> Result<WorkflowDef, EngineError> {
        let reg = self.registry.read();
        reg.get(name).cloned().ok_or_else(|| {
            let known = reg.names();
            EngineError::UnknownWorkflow {
                name: name.to_owned(),
                suggestion: suggest(name, known.iter().map(String::as_str)),
                known,
            }
        })
    }

    pub(crate) fn live(&self, id: ExecutionId) -> Result<Arc<Execution>, EngineError> {
        self.executions.get(&id).map(|e| Arc::clone(&e)).ok_or(EngineError::UnknownExecution(id))
    }

    /// Adds definitions, checking names, nested-workflow references and circuit
    /// breakers across the whole registry.
    pub(crate) fn register(&self, defs: Vec<WorkflowDef>) -> Result<(), EngineError> {
        let mut reg = self.registry.write();
        let mut next = reg.clone();
        for def in &defs {
            if next.defs.insert(Arc::clone(&def.inner.name), def.clone()).is_some() {
                return Err(EngineError::DuplicateWorkflow(def.name().to_owned()));
            }
        }
        check_registry(&next)?;
        *reg = next;
        drop(reg);
        self.scheduler.add(&defs);
        for def in defs {
            self.journal.append(Write::Definition(Box::new(def.snapshot())));
        }
        Ok(())
    }

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
    fn trace_for_new(&self, inherited: Option<&crate::model::TraceContext>) -> Option<crate::model::TraceContext> {
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
            return Ok(id);
        }
        // The driver starts at once, but runs nothing before the creation is
        // committed (the write-ahead rule): a crash never leaves side effects of
        // an execution the store does not know. A volatile store hears of a
        // keyed one too, so that its history knows the key once it ended.
        if !self.durable && extras.unique_key.is_none() {
            self.launch(id, def, data, trigger, parent, at, 0, &extras, trace);
            return Ok(id);
        }
        let (ticket, ack) = self.journal.submit(record(parent.clone(), trigger.clone()));
        self.launch(id, def, data, trigger, parent, at, ticket, &extras, trace);
        self.acknowledged(ack, "start").await?;
        Ok(id)
    }

    /// Creates the execution's state and its driver. `ticket` is the journal
    /// ticket of the write that records the execution's start (0 if none): the
    /// driver waits for it before running anything. `kept`: the steps it begins
    /// with completed (a restart from a step).
    #[allow(clippy::too_many_arguments)] // the parts of a new execution, each distinct
    fn launch(
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
    ) {
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
        core.pending = cmds;
        core.ticket = ticket;
        match self.executions.entry(id) {
            dashmap::Entry::Occupied(_) => return,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&exec));
            }
        }
        core.driver = true;
        drop(core);
        let driver = drive(Arc::clone(self), exec);
        if extras.in_caller && ticket == 0 {
            // Nothing to commit before the first steps, and the caller waits
            // for the end anyway: they start here.
            inline::run_then_spawn(driver);
        } else {
            tokio::spawn(driver);
        }
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

    async fn schedule(
        self: &Arc<Self>,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        at: DateTime<Utc>,
    ) -> Result<ExecutionId, EngineError> {
        limits::check_input(&def, &data)?;
        let id = ExecutionId::new();
        let new = NewExecution {
            id,
            workflow: def.name().to_owned(),
            version: def.version().to_owned(),
            input: to_map(&data),
            parent: None,
            trigger,
            created_at: self.clock.now(),
            start_at: Some(at),
            unique_key: None,
            debounce_key: None,
            kept: Vec::new(),
            priority: 0,
            trace: self.trace_for_new(None),
        };
        let (_, ack) = self.journal.submit(Write::Create(Box::new(new.clone())));
        if self.node.is_some() {
            // Any node may claim it once it is due; this one looks then.
            self.timers.arm(TimerTarget::Claim, self.clock.instant_at(at));
        } else {
            self.delayed.insert(id, Delayed { def, new });
            self.timers.arm(TimerTarget::Start(id), self.clock.instant_at(at));
        }
        if let Err(e) = self.acknowledged(ack, "schedule_execution").await {
            if self.delayed.remove(&id).is_some() {
                self.timers.cancel(TimerTarget::Start(id), self.clock.instant_at(at));
            }
            return Err(e);
        }
        Ok(id)
    }

    /// A delayed execution's time has come.
    pub(crate) fn start_delayed(self: &Arc<Self>, id: ExecutionId) {
        let Some((_, d)) = self.delayed.remove(&id) else { return };
        self.debounce_done(&d.new);
        let at = self.clock.now();
        let ticket = self.journal.append(Write::Started { id, at });
        let data: Data = d.new.input.into_iter().collect();
        let extras = Extras { kept: d.new.kept, priority: d.new.priority, ..Extras::default() };
        self.launch(id, d.def, data, d.new.trigger, None, at, ticket, &extras, d.new.trace);
    }

    fn resume_data(&self, id: ExecutionId, context: impl Serialize) -> Result<Map<String, Value>, EngineError> {
        let value = serde_json::to_value(context).map_err(|e| EngineError::InvalidInput {
            workflow: String::new(),
            reason: format!("resume context of {id}: {e}"),
        })?;
        match value {
            Value::Object(m) => Ok(m),
            Value::Null => Ok(Map::new()),
            other => Err(EngineError::InvalidInput {
                workflow: String::new(),
                reason: format!("the resume context of {id} must be a JSON object, got `{other}`"),
            }),
        }
    }

    /// Applies a control command to an execution held here, or sends it to the
    /// node that holds it; returns once it is durable.
    async fn control(self: &Arc<Self>, id: ExecutionId, command: Command) -> Result<(), EngineError> {
        if let Some(e) = self.rejected_error(id) {
            return Err(e);
        }
        match self.live(id) {
            // Let go of, in the store: whoever claims it carries the call out.
            Ok(exec) if exec.is_parking() => self.control_remote(id, command).await,
            // Another node took it over meanwhile: the call goes to it.
            Ok(exec) => match self.control_here(&exec, command.clone(), None).await {
                Err(EngineError::NotHeld(_)) if self.node.is_some() => self.control_remote(id, command).await,
                done => done,
            },
            Err(e) if self.parked.contains_key(&id) => Err(e),
            Err(_) if self.node.is_some() => self.control_remote(id, command).await,
            Err(_) => Err(self.ended_or_unknown(id).await),
        }
    }

    /// Applies a control command to an execution held here (`queued`: the
    /// command's place in a shared store's queue, marked carried out with its
    /// event); returns once it is committed.
    pub(crate) async fn control_here(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        command: Command,
        queued: Option<i64>,
    ) -> Result<(), EngineError> {
        let (action, event) = self.command_event(exec, command)?;
        let signalled = matches!(event, Event::Signalled { .. });
        let how = queued.map_or(executor::Journaling::Acknowledged, executor::Journaling::Command);
        let journaled = self.deliver_journaled(exec, event, how).map_err(|e| self.invalid(exec, action, e))?;
        if signalled {
            self.signal_arrived(exec);
        }
        if let Some((_, Some(ack))) = journaled {
            self.acknowledged(ack, action).await?;
        }
        Ok(())
    }

    fn invalid(&self, exec: &Execution, action: &'static str, e: TransitionError) -> EngineError {
        EngineError::InvalidState {
            id: exec.id,
            action,
            status: exec.state(self.clock.now()).status,
            reason: e.to_string(),
        }
    }

    pub(crate) async fn cancel(self: &Arc<Self>, id: ExecutionId, options: CancelOptions) -> Result<(), EngineError> {
        if let Some((_, d)) = self.delayed.remove(&id) {
            self.debounce_done(&d.new);
            let at = d.new.start_at.unwrap_or(d.new.created_at);
            self.timers.cancel(TimerTarget::Start(id), self.clock.instant_at(at));
            let mut state = pending_state(&d.new);
            state.status = Status::Cancelled;
            state.cancel_reason = Some(options.reason);
            state.ended_at = Some(self.clock.now());
            return self.commit(Write::Finish(Arc::new(state)), "cancel").await;
        }
        let command = Command::Cancel { reason: options.reason, cleanup: options.cleanup, rollback: options.rollback };
        self.control(id, command).await
    }

    pub(crate) async fn get_state(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        if let Some(e) = self.rejected_error(id) {
            return Err(e);
        }
        if let Some(exec) = self.executions.get(&id).map(|e| Arc::clone(&e)) {
            return Ok(exec.state(self.clock.now()));
        }
        if let Some(d) = self.delayed.get(&id) {
            return Ok(pending_state(&d.new));
        }
        if let Some(p) = self.parked.get(&id) {
            return Ok(p.clone());
        }
        if let Some(state) = self.store.finished(id).await? {
            return Ok(state);
        }
        if self.node.is_some()
            && let Some(cluster) = self.store.cluster()
        {
            if let Some(shared) = cluster.load(id).await? {
                return Ok(self.remote_state(&shared).await);
            }
            // It may have ended between the two reads.
            if let Some(state) = self.store.finished(id).await? {
                return Ok(state);
            }
        }
        Err(EngineError::UnknownExecution(id))
    }

    pub(crate) async fn wait_for(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        let mut poll = Duration::from_millis(10);
        loop {
            if let Some(e) = self.rejected_error(id) {
                return Err(e);
            }
            if let Some(exec) = self.executions.get(&id).map(|e| Arc::clone(&e)) {
                let notified = exec.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (ended, abandoned) = {
                    let core = exec.core.lock();
                    (core.final_state.clone(), core.abandoned)
                };
                if abandoned {
                    // Dropped here (another node holds it, or the store refused
                    // it): what the store has decides.
                    self.executions.remove_if(&id, |_, e| Arc::ptr_eq(e, &exec));
                    continue;
                }
                if let Some(s) = ended {
                    // Answer once the end is committed: the journal's flush of the
                    // final state removes the execution from the table.
                    while self.executions.contains_key(&id) {
                        if exec.core.lock().abandoned {
                            break;
                        }
                        tokio::select! {
                            _ = self.journal.flushed(self.journal.last_ticket()) => {}
                            _ = self.shutdown.cancelled() => return Err(EngineError::ShutDown),
                        }
                        tokio::task::yield_now().await;
                    }
                    // A final state that was never committed is not an answer.
                    if exec.core.lock().abandoned {
                        continue;
                    }
                    return Ok((*s).clone());
                }
                notified.await;
                continue;
            }
            if self.delayed.contains_key(&id) {
                // Not started yet: wait for the start, then for the end.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if let Some(s) = self.store.finished(id).await? {
                return Ok(s);
            }
            if self.node.is_some()
                && let Some(cluster) = self.store.cluster()
                && cluster.is_unfinished(id).await?
            {
                // Held by another node (or about to be claimed): look again soon.
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = self.shutdown.cancelled() => return Err(EngineError::ShutDown),
                }
                poll = (poll * 3 / 2).min(Duration::from_millis(500));
                continue;
            }
            // On a shared store it may have ended between the two reads.
            if self.node.is_some()
                && let Some(s) = self.store.finished(id).await?
            {
                return Ok(s);
            }
            return Err(match self.parked.get(&id) {
                Some(p) => EngineError::InvalidState {
                    id,
                    action: "wait for",
                    status: p.status,
                    reason: "it is parked after recovery".into(),
                },
                None => EngineError::UnknownExecution(id),
            });
        }
    }

    /// Delivers due timers. Returns false once the engine is gone.
    fn fire(weak: &Weak<EngineInner>, targets: Vec<TimerTarget>) -> bool {
        let Some(engine) = weak.upgrade() else { return false };
        if engine.shutdown.is_cancelled() {
            return false;
        }
        let at = engine.clock.now();
        for t in targets {
            match t {
                TimerTarget::Execution(id, timer) => {
                    if let Some(exec) = engine.executions.get(&id).map(|e| Arc::clone(&e))
                        && let Err(e) = engine.deliver(&exec, Event::TimerFired { timer, at })
                    {
                        tracing::debug!(%id, error = %e, "timer for an ended execution");
                    }
                }
                TimerTarget::Start(id) => engine.start_delayed(id),
                TimerTarget::Claim => {
                    if let Some(node) = &engine.node {
                        node.wake.notify_one();
                    }
                }
            }
        }
        true
    }
}

/// Checks the registry as a whole: nested workflows exist, circuit breakers agree.
fn check_registry(reg: &Registry) -> Result<(), EngineError> {
    let names: Vec<&str> = reg.defs.keys().map(|k| &**k).collect();
    let mut breakers: std::collections::HashMap<&str, (&str, &crate::model::BreakerOptions)> = Default::default();
    for def in reg.defs.values() {
        for step in def.steps() {
            if step.kind() == StepKindName::Workflow
                && let Some(child) = step.child_workflow()
                && reg.get(child).is_none()
            {
                return Err(EngineError::UnknownChildWorkflow {
                    workflow: def.name().to_owned(),
                    step: step.name().to_owned(),
                    child: child.to_owned(),
                    suggestion: suggest(child, names.iter().copied()),
                });
            }
            if let Some((name, opts)) = step.policy().circuit_breaker() {
                if let Some((first, prev)) = breakers.get(name)
                    && *prev != opts
                {
                    return Err(EngineError::ConflictingBreaker {
                        breaker: name.to_owned(),
                        first: (*first).to_owned(),
                        second: def.name().to_owned(),
                    });
                }
                breakers.insert(name, (def.name(), opts));
            }
        }
    }
    Ok(())
}
