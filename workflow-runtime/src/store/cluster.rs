//! Coordination of several engines that share one store (PostgreSQL).
//!
//! On a shared store every execution is *held* by at most one engine (a node) at a
//! time. New executions are written unheld; any node may claim them. A node holds
//! what it claimed as long as its lease lives: a heartbeat renews the lease, and
//! when a node stops renewing it (it died, or lost the database for longer than
//! the lease), other nodes take its executions over and continue them from their
//! journals, exactly as recovery does after a restart. Journal writes are fenced:
//! a node's writes for an execution that another node now holds are refused with
//! [`StoreError::NotHeld`], so a node that was presumed dead cannot write over its
//! successor's work.
//!
//! Control calls (`cancel`, `pause`, `resume`, `signal`) for an execution held by another node
//! are queued as commands in the store; the holder applies them, woken by the
//! store's notifications.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::{NewExecution, StoreError, StoredExecution};
use crate::model::ExecutionId;

/// The identity of one engine process in a cluster: a fresh id per process.
pub type NodeId = uuid::Uuid;

/// A control call queued for the node that holds an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlCall {
    /// `Engine::cancel`.
    Cancel {
        /// The reason.
        reason: String,
        /// Run `on_cancel`.
        cleanup: bool,
        /// Run the compensations.
        rollback: bool,
    },
    /// `Engine::pause`.
    Pause,
    /// `Engine::resume` / `Engine::resume_step`.
    Resume {
        /// The awaiting step to complete (by name); `None`: all of them.
        step: Option<String>,
        /// Merged into the context.
        context: Map<String, Value>,
    },
    /// `Engine::signal`.
    Signal {
        /// The signal's name.
        name: String,
        /// What was sent.
        payload: Value,
    },
}

/// A command waiting in the store for the holder of its execution.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedCall {
    /// Its position in the queue, to acknowledge it.
    pub seq: i64,
    /// The execution.
    pub execution: ExecutionId,
    /// What to do.
    pub command: ControlCall,
}

/// What a node holds and how it claims more; see [`EngineBuilder::cluster`].
///
/// [`EngineBuilder::cluster`]: crate::EngineBuilder::cluster
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub(crate) lease: Duration,
    pub(crate) capacity: usize,
    pub(crate) batch: usize,
    pub(crate) poll: Duration,
    pub(crate) park_after: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lease: Duration::from_secs(15),
            capacity: 10_000,
            batch: 64,
            poll: Duration::from_secs(1),
            park_after: Duration::from_secs(30),
        }
    }
}

impl ClusterOptions {
    /// How long a node's claims survive without a heartbeat (default 15 s). A dead
    /// node's executions are taken over this long after its last heartbeat;
    /// heartbeats go out every third of it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sagaflow_runtime::store::ClusterOptions;
    /// let opts = ClusterOptions::default().lease(Duration::from_secs(5)).capacity(500);
    /// # let _ = opts;
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The most executions this node holds at once (default 10,000). `0` makes a
    /// *client*: it starts, inspects and controls executions, and never runs any.
    pub fn capacity(mut self, executions: usize) -> Self {
        self.capacity = executions;
        self
    }

    /// The most executions taken in one claim (default 64): smaller batches spread
    /// a burst of new executions more evenly over the nodes.
    pub fn batch(mut self, executions: usize) -> Self {
        self.batch = executions.max(1);
        self
    }

    /// When an execution held here has nothing running and nothing to do for at
    /// least this long (an approval without a timeout, a long snooze or retry
    /// delay), the node lets go of it (default 30 s): it waits in the store, not
    /// in this node's memory or capacity, and any node claims it when it is due
    /// or when a command (a resume, a cancel) arrives for it.
    pub fn park_after(mut self, idle: Duration) -> Self {
        self.park_after = idle;
        self
    }

    /// How often an idle node looks for work without being notified (default 1 s):
    /// the fallback when a notification is lost, and the pace at which expired
    /// leases are noticed.
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }
}

/// An execution a node has just claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The execution and its journal.
    pub stored: StoredExecution,
    /// No node held it before: nothing of it can have run yet.
    pub fresh: bool,
}

/// An unfinished execution as every node sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedExecution {
    /// The execution and its journal.
    pub stored: StoredExecution,
    /// The node that holds it, if any (its lease may have expired).
    pub holder: Option<NodeId>,
}

/// What became of a queued command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// Waiting for the node that holds (or will hold) its execution.
    Queued,
    /// Carried out: what it did is committed.
    Applied,
    /// It could not be carried out, for this reason (the execution had ended, or
    /// was in no state for it).
    Rejected(String),
    /// No such command (its outcome was read and forgotten).
    Gone,
}

/// The coordination side of a store shared by several engines. A store returns it
/// from [`Store::cluster`](super::Store::cluster).
#[async_trait]
pub trait Cluster: Send + Sync + fmt::Debug {
    /// This node's identity now (a node whose lease lapsed joins again under a
    /// new one, see [`rejoin`](Self::rejoin)).
    fn node(&self) -> NodeId;

    /// Renews this node's lease for `lease` from now (the database's clock).
    /// Fails with [`StoreError::Lapsed`] if the lease had already expired: other
    /// nodes may have taken this node's executions over, and it must stop
    /// driving them before it does anything else.
    async fn heartbeat(&self, lease: Duration) -> Result<(), StoreError>;

    /// Joins the cluster under a new identity with a lease of `lease`: on start,
    /// and after a lapse, once the node dropped every execution it held. Writes
    /// made under the old identity are refused from then on.
    async fn rejoin(&self, lease: Duration) -> Result<NodeId, StoreError>;

    /// Releases the executions of nodes whose lease has expired, so that they can
    /// be claimed; returns how many.
    async fn reap(&self) -> Result<usize, StoreError>;

    /// Claims up to `limit` unheld executions of the given workflows (delayed ones
    /// once their start time has passed), oldest first, skipping rows that other
    /// nodes are claiming at the same moment. Returns them with their journals.
    async fn claim(&self, workflows: &[String], limit: usize) -> Result<Vec<Claimed>, StoreError>;

    /// Gives executions back: they become claimable by any node at once.
    async fn release(&self, ids: &[ExecutionId]) -> Result<(), StoreError>;

    /// Leaves the cluster: forgets this node and releases whatever it still holds.
    async fn leave(&self) -> Result<(), StoreError>;

    /// Queues a command for the holder of `id` and wakes the nodes; returns its
    /// position in the queue once it is committed. `Err(UnknownExecution)` if `id`
    /// has no unfinished execution. Whoever holds the execution, or claims it
    /// next (a parked execution becomes claimable), carries it out and records
    /// the outcome in the transaction that journals its effect
    /// ([`Write::CommandEvent`](super::Write::CommandEvent),
    /// [`Write::CommandDone`](super::Write::CommandDone)); a command still queued
    /// when its execution ends is rejected.
    async fn send(&self, id: ExecutionId, command: &ControlCall) -> Result<i64, StoreError>;

    /// What became of a command [`send`](Self::send) queued.
    async fn command_outcome(&self, seq: i64) -> Result<CallOutcome, StoreError>;

    /// Forgets a command whose outcome was read.
    async fn forget_command(&self, seq: i64) -> Result<(), StoreError>;

    /// The queued commands of the executions this node holds, oldest first. A
    /// node that dies before its journal has what a command did leaves it queued
    /// for the next holder.
    async fn pending_commands(&self) -> Result<Vec<QueuedCall>, StoreError>;

    /// One unfinished execution, whoever holds it.
    async fn load(&self, id: ExecutionId) -> Result<Option<SharedExecution>, StoreError>;

    /// Whether `id` is an unfinished execution (held or not): a cheap [`load`](Self::load)
    /// for those who wait for it to end.
    async fn is_unfinished(&self, id: ExecutionId) -> Result<bool, StoreError>;

    /// Queues this node for a slot of the concurrency limit `scope` (a workflow's
    /// step) under `key`, at `priority`; returns the ticket that
    /// [`take_slot`](Self::take_slot) and [`free_slot`](Self::free_slot) name.
    async fn queue_for_slot(&self, scope: &str, key: &str, priority: i32) -> Result<i64, StoreError>;

    /// Turns `ticket` into a held slot if fewer than `limit` slots of `scope`
    /// and `key` are held and no ticket before it (higher priority, then queued
    /// earlier) waits; returns whether it holds one now. Tickets and slots of
    /// nodes whose lease expired count for nothing and are removed.
    async fn take_slot(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<bool, StoreError>;

    /// [`take_slot`](Self::take_slot), telling how far the ticket is from a
    /// slot: `0` if it holds one now, otherwise how many slots (or tickets
    /// before it) must be given back before it can take one. The default asks
    /// `take_slot` and answers `1` for a ticket that took none.
    async fn take_slot_behind(&self, ticket: i64, scope: &str, key: &str, limit: u32) -> Result<u32, StoreError> {
        Ok(u32::from(!self.take_slot(ticket, scope, key, limit).await?))
    }

    /// Gives a slot back, or leaves the queue for one, and announces it to the
    /// nodes waiting under its scope and key (see [`slots_freed`](Self::slots_freed)).
    async fn free_slot(&self, ticket: i64) -> Result<(), StoreError>;

    /// The count of the slots (and queued tickets) of `scope` and `key` given
    /// back on any node, for an attempt that waits for one: it grows by at
    /// least one with each, from the moment of this call (by a large step at
    /// once when some may have gone unannounced: dead nodes' slots, or
    /// announcements missed). Subscribe before a [`take_slot_behind`](Self::take_slot_behind)
    /// that found no slot free, so that none freed meanwhile is missed; the
    /// attempt asks again once the count grew by what that answered. `None`
    /// (the default) when the store does not announce freed slots, or cannot
    /// at the moment: waiters ask again after a short pause.
    fn slots_freed(&self, scope: &str, key: &str) -> Option<watch::Receiver<u64>> {
        let _ = (scope, key);
        None
    }

    /// Reserves a start under the rate limit `scope` and `key` (at most `count`
    /// starts in any `per`): returns how long to wait, on the database's clock,
    /// before the start is due.
    async fn reserve_start(&self, scope: &str, key: &str, count: u32, per: Duration) -> Result<Duration, StoreError>;

    /// The live execution of `workflow` created with the unique key `key`, if
    /// any. [`Write::Create`](super::Write::Create) of an execution whose key a
    /// live execution of the workflow holds creates nothing.
    async fn live_with_key(&self, workflow: &str, key: &str) -> Result<Option<ExecutionId>, StoreError>;

    /// A debounced start ([`NewExecution::debounce_key`] is set, and its start
    /// time): if a delayed execution of the workflow waits under the key, not yet
    /// due nor claimed, it takes `new`'s input, start time and priority;
    /// otherwise `new` is created. Returns the execution that waits now. Starts
    /// with one key are serialized, so at most one waits under it.
    async fn debounce(&self, new: &NewExecution) -> Result<ExecutionId, StoreError>;

    /// Every unfinished execution of `workflow`, whoever holds it, oldest first.
    async fn unfinished_of(&self, workflow: &str) -> Result<Vec<SharedExecution>, StoreError>;

    /// Resolves when another node announced work (new executions, commands,
    /// released executions) since the previous call returned, or at once if it
    /// did. May also resolve spuriously.
    async fn notified(&self);
}
