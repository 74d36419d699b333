//! [`EngineBuilder`].

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use super::journal::Journal;
use super::registry::{Registry, WorkflowType, registered_defs, registrations};
use super::timers::Timers;
use super::{Clock, Engine, EngineError, EngineInner};
use crate::builder::BuildError;
use crate::model::WorkflowDef;
use crate::store::{ClusterOptions, Durability, Store, StoreError, Write, open_store};
use crate::telemetry::{Bus, Tap};

/// Configures and starts an [`Engine`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sagaflow_runtime::EngineError> {
/// use sagaflow_runtime::Engine;
/// let engine = Engine::builder().store_url("memory://").build().await?;
/// assert!(engine.definitions().is_empty());
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    store_url: Option<String>,
    defs: Vec<Result<WorkflowDef, BuildError>>,
    register_all: bool,
    clock: Option<Clock>,
    cluster: ClusterOptions,
    call_timeout: Option<Duration>,
    housekeeping: Option<Duration>,
    /// Sees every telemetry event as it is emitted (the test kit's recorder).
    tap: Option<Tap>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .field("store_url", &self.store_url)
            .field("definitions", &self.defs.len())
            .field("register_all", &self.register_all)
            .finish()
    }
}

impl EngineBuilder {
    /// Uses this store.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses a shared store.
    pub fn store_arc(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens the store at a URL: `memory://`, `sqlite://path/to/file.db`,
    /// `postgres://user@host/db`. Without a store the engine keeps everything in
    /// memory.
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Registers a `#[workflow]` type's value: its steps reach the value's
    /// resources through `&self`.
    pub fn workflow<W: WorkflowType>(mut self, value: W) -> Self {
        self.defs.push(W::definition(Arc::new(value)));
        self
    }

    /// Registers a definition built with [`Workflow`](crate::Workflow).
    pub fn register(mut self, def: WorkflowDef) -> Self {
        self.defs.push(Ok(def));
        self
    }

    /// Registers every workflow that registered itself with `inventory` (`#[workflow]`
    /// types that implement `Default`). Workflows registered explicitly with
    /// [`workflow`](Self::workflow) or [`register`](Self::register) take precedence
    /// over an inventory registration of the same name; two registrations of one name
    /// fail `build` with [`EngineError::DuplicateRegistration`].
    ///
    /// A crate that the binary never references may not be linked, and then its
    /// workflows are missing here (see [`Registration`](crate::Registration)); an
    /// explicit [`workflow`](Self::workflow) call forces linking.
    pub fn register_all(mut self) -> Self {
        self.register_all = true;
        self
    }

    /// How this engine takes part in a cluster when its store is shared
    /// (PostgreSQL): lease, capacity, claim batch, poll interval. Ignored on a
    /// store that one engine owns.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sagaflow_runtime::EngineError> {
    /// use std::time::Duration;
    /// use sagaflow_runtime::{Engine, store::ClusterOptions};
    /// let engine = Engine::builder()
    ///     .store_url("postgres://postgres@127.0.0.1:5432/postgres?schema=orders")
    ///     .cluster(ClusterOptions::default().lease(Duration::from_secs(5)))
    ///     .build()
    ///     .await?;
    /// # let _ = engine; Ok(()) }
    /// ```
    pub fn cluster(mut self, options: ClusterOptions) -> Self {
        self.cluster = options;
        self
    }

    /// How long an acknowledged call (`start`, `cancel`, `pause`, `resume`,
    /// `emit`, dead-letter replay, ...) waits for its effect to be committed, or
    /// on a shared store carried out by the node holding the execution, before it
    /// fails with [`EngineError::Timeout`] (default 30 s). The effect may still
    /// happen after the timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = sagaflow_runtime::Engine::builder().call_timeout(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How often the engine prunes ended executions past their workflow's
    /// [`retention`](crate::Workflow::retention) and purges expired dead letters
    /// (default: every minute). Must be longer than zero.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = sagaflow_runtime::Engine::builder().housekeeping_every(Duration::from_secs(10));
    /// # let _ = builder;
    /// ```
    pub fn housekeeping_every(mut self, every: Duration) -> Self {
        self.housekeeping = Some(every);
        self
    }

    /// Uses this clock (tests pin the start date with [`Clock::starting_at`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Hands every telemetry event to `tap` as it is emitted (the test kit's
    /// recorder).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by `testing` only
    pub(crate) fn tap(mut self, tap: Tap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Opens the store, registers the workflows, recovers unfinished executions
    /// (durable stores), arms the schedules of the workflows (reading their last
    /// ticks from the store) and starts the engine's background tasks.
    pub async fn build(self) -> Result<Engine, EngineError> {
        let housekeeping = self.housekeeping.unwrap_or(super::retention::DEFAULT_HOUSEKEEPING);
        if housekeeping.is_zero() {
            return Err(EngineError::InvalidOption {
                option: "housekeeping_every",
                reason: "must be longer than zero".into(),
            });
        }
        let store: Arc<dyn Store> = match (self.store, &self.store_url) {
            (Some(s), _) => s,
            (None, Some(url)) => open_store(url).await.map_err(|e| match e {
                StoreError::UnsupportedUrl { url, supported } => EngineError::UnsupportedStore { url, supported },
                other => other.into(),
            })?,
            (None, None) => Arc::new(crate::store::MemoryStore::new()),
        };
        if store.read_only() {
            return Err(EngineError::ReadOnlyStore { store: format!("{store:?}") });
        }
        let mut explicit = Vec::new();
        for def in self.defs {
            explicit.push(def?);
        }
        let mut defs = explicit.clone();
        if self.register_all {
            defs.extend(registered_defs(&registrations(), &explicit)?);
        }
        let durable = store.durability() == Durability::Durable;
        let node = store.cluster().is_some().then(|| super::node::Node::new(self.cluster.clone()));
        let journal = Journal::new(Arc::clone(&store));
        let limits = super::limits::Limiter::new(node.is_some().then(|| Arc::clone(&store)));
        let inner = Arc::new(EngineInner {
            registry: RwLock::new(Registry::default()),
            executions: DashMap::default(),
            delayed: DashMap::default(),
            parked: DashMap::default(),
            rejected: DashMap::default(),
            call_timeout: self.call_timeout.unwrap_or(super::DEFAULT_CALL_TIMEOUT),
            store,
            durable,
            journal: Arc::clone(&journal),
            clock: self.clock.unwrap_or_default(),
            timers: Arc::new(Timers::default()),
            breakers: Default::default(),
            limits,
            bus: Bus::tapped(self.tap),
            shutdown: CancellationToken::new(),
            scheduler: Default::default(),
            node: node.clone(),
            unique: Default::default(),
            debounced: Default::default(),
        });
        let (flushed, lost, rejected) = (Arc::downgrade(&inner), Arc::downgrade(&inner), Arc::downgrade(&inner));
        tokio::spawn(journal.run(super::journal::Hooks {
            on_flush: Box::new(move |batch: &[Write]| {
                if let Some(engine) = flushed.upgrade() {
                    for w in batch {
                        match w {
                            Write::Finish(state) => {
                                engine.executions.remove(&state.id);
                                engine.unique.release(state.id);
                            }
                            // Parked in the store: it lives there until claimed.
                            Write::Park { id, .. } => {
                                engine.executions.remove_if(id, |_, e| e.is_parking());
                            }
                            _ => {}
                        }
                    }
                }
            }),
            on_lost: Box::new(move |ids| {
                if let Some(engine) = lost.upgrade() {
                    engine.abandon(ids);
                }
            }),
            on_rejected: Box::new(move |id, error| {
                if let Some(engine) = rejected.upgrade() {
                    engine.reject(id, error);
                }
            }),
        }));
        spawn_timer_task(&inner);
        super::retention::spawn(&inner, housekeeping);
        inner.register(defs)?;
        if let Some(node) = &node {
            // A node of a cluster recovers nothing by itself: it claims.
            if let Some(cluster) = inner.store.cluster() {
                cluster.rejoin(node.options.lease).await?;
                node.renewed(tokio::time::Instant::now());
            }
            super::node::spawn(&inner, node);
        } else if durable {
            let report = inner.recover().await?;
            if report.resumed + report.scheduled + report.parked.len() > 0 {
                tracing::info!(
                    resumed = report.resumed,
                    upgraded = report.upgraded,
                    scheduled = report.scheduled,
                    parked = report.parked.len(),
                    "recovered unfinished executions"
                );
            }
        }
        super::scheduler::start(&inner).await?;
        // After recovery: queued requests find the executions they are for.
        super::inbox::spawn(&inner);
        Ok(Engine { inner })
    }
}

fn spawn_timer_task(inner: &Arc<EngineInner>) {
    let weak = Arc::downgrade(inner);
    let timers = Arc::clone(&inner.timers);
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        timers.run(&shutdown, move |due| EngineInner::fire(&weak, due)).await;
    });
}
