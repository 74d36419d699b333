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
//! Control calls (`cancel`, `pause`, `resume`) for an execution held by another node
//! are queued as commands in the store; the holder applies them, woken by the
//! store's notifications.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{StoreError, StoredExecution};
use crate::model::ExecutionId;

/// The identity of one engine process in a cluster: a fresh id per process.
pub type NodeId = uuid::Uuid;

/// A control call queued for the node that holds an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
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
}

/// A command waiting in the store for the holder of its execution.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedCommand {
    /// Its position in the queue, to acknowledge it.
    pub seq: i64,
    /// The execution.
    pub execution: ExecutionId,
    /// What to do.
    pub command: Command,
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
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { lease: Duration::from_secs(15), capacity: 10_000, batch: 64, poll: Duration::from_secs(1) }
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

/// The coordination side of a store shared by several engines. A store returns it
/// from [`Store::cluster`](super::Store::cluster).
#[async_trait]
pub trait Cluster: Send + Sync + fmt::Debug {
    /// This node.
    fn node(&self) -> NodeId;

    /// Registers this node, or renews its lease for `lease` from now (the
    /// database's clock).
    async fn heartbeat(&self, lease: Duration) -> Result<(), StoreError>;

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

    /// Queues a command for the holder of `id` and wakes the nodes; returns once it
    /// is committed. `Err(UnknownExecution)` if `id` has no unfinished execution.
    async fn send(&self, id: ExecutionId, command: &Command) -> Result<(), StoreError>;

    /// The queued commands of the executions this node holds, oldest first. They
    /// stay queued until [`ack_commands`](Self::ack_commands): a node that dies
    /// before its journal has what a command did leaves it to the next holder.
    async fn pending_commands(&self) -> Result<Vec<QueuedCommand>, StoreError>;

    /// Removes applied commands.
    async fn ack_commands(&self, seqs: &[i64]) -> Result<(), StoreError>;

    /// One unfinished execution, whoever holds it.
    async fn load(&self, id: ExecutionId) -> Result<Option<SharedExecution>, StoreError>;

    /// Whether `id` is an unfinished execution (held or not): a cheap [`load`](Self::load)
    /// for those who wait for it to end.
    async fn is_unfinished(&self, id: ExecutionId) -> Result<bool, StoreError>;

    /// Every unfinished execution of `workflow`, whoever holds it, oldest first.
    async fn unfinished_of(&self, workflow: &str) -> Result<Vec<SharedExecution>, StoreError>;

    /// Resolves when another node announced work (new executions, commands,
    /// released executions) since the previous call returned, or at once if it
    /// did. May also resolve spuriously.
    async fn notified(&self);
}
