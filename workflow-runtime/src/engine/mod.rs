//! [`Engine`]: registers workflows, starts and controls executions.

mod breaker;
mod builder;
mod clock;
mod control;
mod dead_letters;
mod debounce;
mod delayed;
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
mod start;
mod timers;
mod trace;
mod unique;
mod watch;

use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::RwLock;
use sagaflow_rules::breaker::BreakerUses;
use tokio_util::sync::CancellationToken;

pub use self::breaker::BreakerState;
pub use self::builder::EngineBuilder;
pub use self::clock::Clock;
pub use self::control::CancelOptions;
pub use self::dead_letters::DeadLetters;
pub(crate) use self::delayed::Delayed;
pub use self::delayed::StartAt;
pub use self::error::EngineError;
use self::executor::Execution;
use self::journal::{Ack, Journal};
use self::registry::Registry;
pub use self::registry::{Registration, WorkflowType, registrations};
use self::restart::Extras;
use self::start::input_data;
use self::timers::{TimerTarget, Timers};
pub use self::unique::{OnDuplicate, StartOptions, Started};
use self::watch::pending_state;
use crate::builder::suggest;
pub use crate::introspect::WorkflowInfo;
use crate::machine::event::ExecutionEvent;
use crate::model::execution::ExecutionState;
use crate::model::ids::IdHasher;
use crate::model::{ExecutionId, StepKindName, WorkflowDef};
use crate::store::{Store, Write};
use crate::telemetry::Bus;

/// The default of [`EngineBuilder::call_timeout`].
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct EngineInner {
    pub(crate) registry: RwLock<Registry>,
    pub(crate) executions: DashMap<ExecutionId, Arc<Execution>, IdHasher>,
    pub(crate) delayed: DashMap<ExecutionId, Delayed, IdHasher>,
    pub(crate) parked: DashMap<ExecutionId, ExecutionState, IdHasher>,
    /// Executions the store refused a write of, with the store's reason: they
    /// stopped here (see `journal`).
    pub(crate) rejected: DashMap<ExecutionId, String, IdHasher>,
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

impl Engine {
    /// Configures an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    // ----- starting -----

    // ----- watching -----

    // ----- controlling -----

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
                        && let Err(e) = engine.deliver(&exec, ExecutionEvent::TimerFired { timer, at })
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
                TimerTarget::Schedule(index) => engine.scheduler.fire(index),
                TimerTarget::ArmSchedules => engine.scheduler.wake(),
            }
        }
        true
    }
}

/// Checks the registry as a whole: nested workflows exist, circuit breakers agree.
fn check_registry(reg: &Registry) -> Result<(), EngineError> {
    let names: Vec<&str> = reg.defs.keys().map(|k| &**k).collect();
    let mut breakers: BreakerUses<&crate::model::BreakerOptions, &str> = BreakerUses::new();
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
            if let Some((name, opts)) = step.policy().circuit_breaker()
                && let Err(first) = breakers.give(name, opts, def.name())
            {
                return Err(EngineError::ConflictingBreaker {
                    breaker: name.to_owned(),
                    first: (*first).to_owned(),
                    second: def.name().to_owned(),
                });
            }
        }
    }
    Ok(())
}
