//! Persistence: the [`Store`] trait, its implementations ([`MemoryStore`],
//! [`SqliteStore`], [`PostgresStore`]), the coordination of several engines on a
//! shared store ([`Cluster`]), and the conformance suite every store must pass.
//!
//! The engine keeps a running execution's state in memory and appends the events
//! of its state machine to the store, batched (group commit). A store therefore
//! sees a few kinds of writes, always in batches that it must apply atomically, in
//! order: new executions, journal events, final states, dead letters and
//! definition snapshots. Recovery reads back the executions that have not ended,
//! with their journals, and replays them.
//!
#![doc = include_str!("../../docs/durability.md")]

mod cluster;
pub mod conformance;
mod control;
mod inbox;
mod memory;
mod postgres;
mod secrets;
mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::cluster::{
    CallOutcome, Claimed, Cluster, ClusterOptions, ControlCall, NodeId, QueuedCall, SharedExecution,
};
pub use self::control::{ControlError, Sent, StoreControl, open_for_reading};
pub use self::inbox::{Inbox, QueuedRequest, Request};
pub use self::memory::MemoryStore;
pub use self::postgres::PostgresStore;
pub use self::secrets::{redact_secrets, redact_url};
pub use self::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use crate::model::execution::{ExecutionState, Trigger};
pub use crate::model::restart::KeptStep;
use crate::model::{DefinitionSnapshot, ExecutionId, StepError};

/// Opens a store from a URL: `memory://`, `sqlite://path/to/file.db` (created on
/// first use; `?synchronous=full|normal`, `?mode=ro` to read a file another
/// engine holds, see [`SqliteStore`]), `sqlite::memory:`
/// (an SQLite database in memory, gone with the process) or
/// `postgres://user:password@host:port/database?schema=name` (see [`PostgresStore`]).
///
/// # Errors
///
/// [`StoreError::UnsupportedUrl`] for a URL of no known store, and what opening
/// the store fails with.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    match scheme {
        "memory" => Ok(Arc::new(MemoryStore::new())),
        "sqlite" => Ok(Arc::new(SqliteStore::open_url(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PostgresStore::connect(url).await?)),
        _ => Err(StoreError::UnsupportedUrl { url: redact(url), supported: SUPPORTED_URLS }),
    }
}

/// The URL with its passwords replaced by `***`: the one in `user:password@`
/// and a `password=` query parameter.
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
    }
}

#[cfg(test)]
mod redaction {
    #[test]
    fn passwords_are_redacted_wherever_the_url_has_them() {
        use super::redact;
        assert_eq!(redact("postgres://app:secret@db:5432/app"), "postgres://app:***@db:5432/app");
        assert_eq!(
            redact("postgres://app@db/app?password=secret&schema=wf"),
            "postgres://app@db/app?password=***&schema=wf"
        );
        assert_eq!(redact("postgres://a:p%40ss@db/app?Password=x"), "postgres://a:***@db/app?Password=***");
        assert_eq!(redact("postgres://db/app"), "postgres://db/app");
    }
}

/// The store URL forms this build accepts.
pub const SUPPORTED_URLS: &str = "`memory://`, `sqlite://path/to/file.db` (optionally `?synchronous=full|normal` \
     or `?mode=ro`), \
     `sqlite::memory:`, `postgres://user@host:port/database` (optionally `?schema=name`)";

/// Whether a store survives the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Gone with the process: the engine skips the journal.
    Volatile,
    /// Survives restarts: the engine journals every event and recovers on start.
    Durable,
}

/// A store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The file or database is not one of ours, or is corrupt.
    #[error("`{path}` is not a sagaflow database: {reason}")]
    Foreign {
        /// The file or URL.
        path: String,
        /// What was found instead.
        reason: String,
    },
    /// The database was written by a newer version of sagaflow.
    #[error("`{path}` has schema version {found}, newer than the {supported} this build supports")]
    TooNew {
        /// The file or URL.
        path: String,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Stored data could not be decoded.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A store URL that names a known store but cannot be used as written.
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL of no store this build knows.
    #[error("unsupported store URL `{url}`: expected one of {supported}")]
    UnsupportedUrl {
        /// The URL, its passwords redacted.
        url: String,
        /// The accepted forms.
        supported: &'static str,
    },
    /// A write referred to an execution the store does not hold.
    #[error("unknown execution {0} in a write: it was never created, or it has ended")]
    UnknownExecution(ExecutionId),
    /// On a shared store: writes for executions that another node holds now (this
    /// node's lease on them expired). Nothing of the batch was applied.
    #[error("{} execution(s) are held by another node, starting with {}", .0.len(), .0[0])]
    NotHeld(Vec<ExecutionId>),
    /// The SQLite file is held by another engine (in this process or another).
    /// One engine writes a file at a time; tools that only read it open it
    /// read-only ([`SqliteStore::open_read_only`], `?mode=ro`).
    #[error(
        "`{path}` is in use by another engine ({holder}): one engine holds an SQLite file at a time; stop that \
         engine, open the file read-only (`?mode=ro`) to inspect it, or use PostgreSQL for several nodes"
    )]
    Locked {
        /// The database file.
        path: String,
        /// Who holds it, as the holder described itself.
        holder: String,
    },
    /// The store was opened read-only, and this call would write.
    #[error("`{path}` is open read-only: {action} needs a store opened for writing")]
    ReadOnly {
        /// The database file.
        path: String,
        /// What was attempted.
        action: &'static str,
    },
    /// On a shared store: this node's lease had expired when it tried to renew
    /// it; other nodes may hold its executions now.
    #[error("the lease of node {0} lapsed: other nodes may have taken its executions over")]
    Lapsed(NodeId),
    /// The store refused a write for good (a constraint, a value out of range or
    /// too large): trying it again cannot succeed. Only the writes that caused it
    /// fail; the engine keeps committing everything else.
    #[error("the store refused a write: {0}")]
    Rejected(String),
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Whether trying again later may succeed: the store could not be reached, a
    /// transaction lost a conflict, the server is restarting. Every other error
    /// is permanent for the writes that caused it.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A new execution, as written when it starts (or is scheduled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    /// Id.
    pub id: ExecutionId,
    /// Workflow name.
    pub workflow: String,
    /// Definition version.
    pub version: String,
    /// Input context.
    pub input: Map<String, Value>,
    /// Parent execution and step, for a nested workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// How it was started.
    pub trigger: Trigger,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// For a delayed start: when to start. `None`: started at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// The key that no other live execution of the workflow may have
    /// ([`StartOptions::unique_key`](crate::StartOptions::unique_key)). A shared
    /// store enforces it: it creates nothing for a key that a live execution of
    /// the workflow holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// For a debounced start ([`StartOptions::debounce`](crate::StartOptions::debounce)):
    /// the key under which later starts replace this delayed execution's input
    /// and start time until it starts. A shared store creates nothing for a key
    /// that a delayed execution of the workflow waits under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce_key: Option<String>,
    /// For a restart from a step ([`Engine::restart_from`](crate::Engine::restart_from)):
    /// the steps it begins with completed, with the outputs they recorded in the
    /// execution it restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptStep>,
    /// The trace its spans join, wherever and whenever it runs (`None` in
    /// records written before traces were kept: it gets a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::model::TraceContext>,
    /// Its priority ([`StartOptions::priority`](crate::StartOptions::priority)):
    /// higher first where executions wait (a step's concurrency slot, a claim).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// The parent of a nested execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// Parent execution.
    pub execution: ExecutionId,
    /// The parent's step index.
    pub step: u32,
    /// The parent's step attempt.
    pub attempt: u32,
}

/// One journal entry: a serialized state-machine event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Execution.
    pub execution: ExecutionId,
    /// Position in the execution's journal, from 1, without gaps.
    pub seq: u64,
    /// The event as JSON.
    pub event: String,
}

/// An execution that failed for good and was kept for inspection and replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The failed execution.
    pub id: ExecutionId,
    /// Workflow name.
    pub workflow: String,
    /// Its input, for replay.
    pub input: Map<String, Value>,
    /// The error that killed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// The step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_step: Option<String>,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
    /// When the entry expires (`dead_letter_ttl`).
    pub expires_at: DateTime<Utc>,
    /// Its final state.
    pub state: ExecutionState,
}

/// One write of a batch.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Write {
    /// An execution started or was scheduled.
    Create(Box<NewExecution>),
    /// A delayed execution started (its `start_at` passed).
    Started {
        /// The execution.
        id: ExecutionId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A delayed execution that has not started takes a new record (a later
    /// debounced start replaced its input and start time); once it has started
    /// this changes nothing.
    Reschedule(Box<NewExecution>),
    /// An event was applied.
    Event(JournalEntry),
    /// An execution ended; its journal is no longer needed.
    Finish(Arc<ExecutionState>),
    /// Keep a dead letter.
    DeadLetter(Box<DeadLetter>),
    /// Drop a dead letter.
    RemoveDeadLetter(ExecutionId),
    /// A workflow definition was registered.
    Definition(Box<DefinitionSnapshot>),
    /// Recovery moved an unfinished execution onto another version of its
    /// workflow's definition: its recorded version and its whole journal are
    /// replaced (the same events, with step indexes of the new definition).
    Upgrade(Box<Upgrade>),
    /// An event that a queued command (see [`Cluster::send`]) caused: journaled,
    /// and the command marked applied, in one transaction.
    CommandEvent {
        /// The event.
        entry: JournalEntry,
        /// The command's position in the queue.
        command: i64,
    },
    /// A queued command was carried out without an event of its own (`error:
    /// None`), or could not be (`error`: why).
    CommandDone {
        /// The command's position in the queue.
        command: i64,
        /// Why it could not be carried out.
        error: Option<String>,
    },
    /// A schedule fired: claims the tick and, only if it is later than the last
    /// tick claimed, creates the execution, in one transaction; so a tick is
    /// never claimed without its execution, nor fired twice.
    Tick {
        /// The schedule (`"{workflow}#{index}"`).
        key: String,
        /// The tick.
        fire_time: DateTime<Utc>,
        /// The execution it starts.
        execution: Box<NewExecution>,
    },
    /// On a shared store: the holder lets go of an execution that waits (an
    /// approval, a long timer) until it is due (`wake_at`) or a command arrives
    /// for it; any node may claim it then.
    Park {
        /// The execution.
        id: ExecutionId,
        /// When it has something to do again; `None`: only when a command comes.
        wake_at: Option<DateTime<Utc>>,
    },
}

impl Write {
    /// The execution that writes this as it runs (its journal, its state, its dead
    /// letter): on a shared store, only the node that holds it may. `None` for
    /// creations and for writes about other things (definitions, removing a dead
    /// letter, commands).
    pub fn execution(&self) -> Option<ExecutionId> {
        match self {
            Write::Event(e) | Write::CommandEvent { entry: e, .. } => Some(e.execution),
            Write::Started { id, .. } | Write::Park { id, .. } => Some(*id),
            Write::Finish(s) => Some(s.id),
            Write::Upgrade(u) => Some(u.id),
            Write::DeadLetter(d) => Some(d.id),
            Write::Create(_)
            | Write::Reschedule(_)
            | Write::Tick { .. }
            | Write::RemoveDeadLetter(_)
            | Write::Definition(_)
            | Write::CommandDone { .. } => None,
        }
    }
}

/// The content of [`Write::Upgrade`].
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    /// The execution.
    pub id: ExecutionId,
    /// The definition version it continues with.
    pub version: String,
    /// Its whole journal, rewritten for that version, by `seq` from 1.
    pub events: Vec<JournalEntry>,
}

/// An execution that has not ended, as recovery reads it back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredExecution {
    /// What was written when it was created.
    pub execution: NewExecution,
    /// Whether it has started (delayed executions wait for `start_at`).
    pub started: bool,
    /// Its journal, by `seq`.
    pub events: Vec<JournalEntry>,
}

/// How many ended executions one [`Store::prune_finished`] call deletes when the
/// engine or a tool prunes: pruning never holds the store (SQLite's writer, a
/// PostgreSQL transaction) for long.
const PRUNE_BATCH: usize = 500;

/// Deletes every ended execution of `workflow` that ended before `ended_before`,
/// [`PRUNE_BATCH`] at a time, letting other work in between; stops after the
/// batch in which `stop()` turns true. Returns how many it deleted.
pub(crate) async fn prune_ended(
    store: &dyn Store,
    workflow: &str,
    ended_before: DateTime<Utc>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let n = store.prune_finished(workflow, ended_before, PRUNE_BATCH).await?;
        total += n;
        if n < PRUNE_BATCH || stop() {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Which finished executions to list.
#[derive(Clone, Debug, Default)]
pub struct ExecutionQuery {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// Where executions, journals, dead letters and definitions are kept.
///
/// Implementations must pass [`conformance`]. Every method may be called
/// concurrently; `write` receives batches in order and applies each one atomically.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Whether the store survives the process.
    fn durability(&self) -> Durability;

    /// Applies a batch atomically.
    async fn write(&self, batch: &[Write]) -> Result<(), StoreError>;

    /// Applies a batch atomically here and now, if the store can do so without
    /// waiting (a store in memory); `None` if it cannot, and the engine's writer
    /// task calls [`write`](Self::write) instead. An `Err` must leave the store as
    /// it was: the engine then hands the batch to `write`, whose error it handles.
    fn write_now(&self, batch: &[Write]) -> Option<Result<(), StoreError>> {
        let _ = batch;
        None
    }

    /// Executions that have not ended, with their journals, oldest first.
    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError>;

    /// The final state of an ended execution.
    async fn finished(&self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError>;

    /// Ended executions, newest first.
    async fn list_finished(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError>;

    /// Dead letters, oldest first.
    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError>;

    /// Deletes dead letters whose `expires_at` is at or before `now`; returns how many.
    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Deletes at most `limit` ended executions of `workflow` that ended before
    /// `ended_before` (their final states: outputs, context, errors), oldest
    /// first; returns how many. Live executions and dead letters are never
    /// touched. Several engines may prune one store at once.
    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError>;

    /// The ended execution of `workflow` created with the unique key `key` that
    /// ended last, if it ended at `since` or later and its final state is still
    /// kept (see [`StartOptions::unique_window`](crate::StartOptions::unique_window)).
    /// A store that does not record keys of ended executions answers with an
    /// error.
    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        let _ = (workflow, key, since);
        Err(StoreError::Other(format!("this store ({self:?}) does not keep the unique keys of ended executions")))
    }

    /// Definition snapshots, by name: for each name, the one written last.
    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError>;

    /// The snapshot of one version of a definition. Stores keep every version that
    /// was written, so that recovery can compare an execution's definition with the
    /// code's (see the module documentation).
    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError>;

    /// Claims the tick `fire_time` of the schedule `key` (`"{workflow}#{index}"`):
    /// records it as the schedule's last tick and returns `true` if it is later than
    /// the last tick recorded, `false` if that tick (or a later one) was already
    /// claimed. On a store shared by several engines exactly one caller wins each tick.
    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The last claimed tick of every schedule, by key.
    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// Whether the store only reads (an SQLite file opened read-only): an engine
    /// refuses to run on it.
    fn read_only(&self) -> bool {
        false
    }

    /// The engine is done with the store (it shut down): give up what holds it,
    /// such as an SQLite file's lock, so another engine may open it. Reads may
    /// still follow; writes may not.
    async fn release(&self) {}

    /// The coordination side of a store that several engines share, `None` for a
    /// store that one engine owns. See [`Cluster`].
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }

    /// The request queue through which tools beside the engine that holds the
    /// store control it (an SQLite file), `None` for other stores. See [`Inbox`].
    fn inbox(&self) -> Option<&dyn Inbox> {
        None
    }
}
