//! Requests for the engine that holds a store, queued in the store: how a tool
//! (the `sagaflow` command line, the dashboard over a store) controls executions
//! it does not run.
//!
//! An SQLite file is held by one engine (see [`SqliteStore`](super::SqliteStore)).
//! A tool beside it opens the file with [`SqliteStore::open_control`](super::SqliteStore::open_control),
//! which reads the file and writes only its `commands` table: [`Inbox::send`]
//! queues a [`Request`], and the engine that holds the file polls the table
//! (every 200 ms; one indexed `SELECT` while it is empty), carries each request
//! out as the engine's own call would (`cancel`, `pause`, `resume`, a dead letter's
//! replay...), and deletes it once what it did is committed. A request is
//! carried out at least once: an engine that crashes between the two leaves it
//! for the next engine to open the file, which finds the execution changed (a
//! second `cancel` of a cancelled execution does not apply, and is dropped).
//!
//! On PostgreSQL the engines share the database, and control calls go to the
//! node that holds the execution through [`Cluster::send`](super::Cluster::send).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ControlCall, StoreError};
use crate::model::ExecutionId;

/// What a tool asks of the engine that holds a store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// A control call on an execution that has not ended.
    Control {
        /// The execution.
        execution: ExecutionId,
        /// Cancel, pause, resume or signal.
        command: ControlCall,
    },
    /// Starts a dead letter's workflow again with its input, and removes the
    /// letter ([`DeadLetters::replay`](crate::DeadLetters::replay)).
    ReplayDeadLetter {
        /// The failed execution.
        id: ExecutionId,
    },
    /// Removes a dead letter ([`DeadLetters::remove`](crate::DeadLetters::remove)).
    RemoveDeadLetter {
        /// The failed execution.
        id: ExecutionId,
    },
    /// Removes the dead letters past their `dead_letter_ttl`
    /// ([`DeadLetters::purge_expired`](crate::DeadLetters::purge_expired)).
    PurgeExpiredDeadLetters,
    /// Starts a new execution that restarts an ended one from a step
    /// ([`Engine::restart_from`](crate::Engine::restart_from)).
    RestartFrom {
        /// The ended execution.
        execution: ExecutionId,
        /// The step to restart from.
        step: String,
        /// Merged over the ended execution's input.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        context: Map<String, Value>,
    },
    /// Deletes ended executions that ended before `ended_before`
    /// ([`Engine::purge_history`](crate::Engine::purge_history)).
    PurgeHistory {
        /// Only this workflow; `None`: every workflow.
        workflow: Option<String>,
        /// The cut-off.
        ended_before: DateTime<Utc>,
    },
}

impl Request {
    /// The execution (or dead letter) the request is about.
    pub fn execution(&self) -> Option<ExecutionId> {
        match self {
            Request::Control { execution, .. } | Request::RestartFrom { execution, .. } => Some(*execution),
            Request::ReplayDeadLetter { id } | Request::RemoveDeadLetter { id } => Some(*id),
            Request::PurgeExpiredDeadLetters | Request::PurgeHistory { .. } => None,
        }
    }

    /// What it does, in a word or two: `cancel`, `pause`, `resume`, `signal`,
    /// `replay`, `remove`, `purge`, `restart`, `purge history`.
    pub fn action(&self) -> &'static str {
        match self {
            Request::Control { command: ControlCall::Cancel { .. }, .. } => "cancel",
            Request::Control { command: ControlCall::Pause, .. } => "pause",
            Request::Control { command: ControlCall::Resume { .. }, .. } => "resume",
            Request::Control { command: ControlCall::Signal { .. }, .. } => "signal",
            Request::ReplayDeadLetter { .. } => "replay",
            Request::RemoveDeadLetter { .. } => "remove",
            Request::PurgeExpiredDeadLetters => "purge",
            Request::RestartFrom { .. } => "restart",
            Request::PurgeHistory { .. } => "purge history",
        }
    }
}

/// A request waiting in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedRequest {
    /// Its position in the queue (to delete it once carried out).
    pub seq: i64,
    /// What to do.
    pub request: Request,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
}

/// The request queue of a store that one engine holds (an SQLite file). A store
/// returns it from [`Store::inbox`](super::Store::inbox).
#[async_trait]
pub trait Inbox: Send + Sync + fmt::Debug {
    /// Queues a request for the engine that holds the store; returns its
    /// position once it is committed. A control call for an execution that is not
    /// in the store's unfinished executions fails with
    /// [`StoreError::UnknownExecution`] and queues nothing.
    async fn send(&self, request: &Request) -> Result<i64, StoreError>;

    /// Up to `limit` queued requests, oldest first.
    async fn queued(&self, limit: usize) -> Result<Vec<QueuedRequest>, StoreError>;

    /// Deletes requests that were carried out.
    async fn remove(&self, seqs: &[i64]) -> Result<(), StoreError>;

    /// Whether the request at `seq` is still queued.
    async fn is_queued(&self, seq: i64) -> Result<bool, StoreError>;
}
