//! [`StoreControl`]: control calls through a store, for tools that run no engine
//! (the `sagaflow` command line, the dashboard over a store).

use std::fmt;
use std::sync::Arc;

use chrono::Utc;

use super::{
    Inbox, NewExecution, PostgresStore, Request, SUPPORTED_URLS, SqliteStore, Store, StoreError, Write, redact_url,
};
use crate::model::execution::{ExecutionState, Trigger};
use crate::model::restart::{KeptStep, kept_steps};
use crate::model::status::Status;
use crate::model::{DefinitionSnapshot, ExecutionId};

/// What became of a request a tool sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sent {
    /// Queued in the SQLite file's request queue, at `seq`: the engine that holds
    /// the file carries it out within a fraction of a second; while no engine
    /// holds it (`holder` is `None`), the request waits for the next one.
    Queued {
        /// Its position in the queue.
        seq: i64,
        /// The engine that holds the file now, as it describes itself.
        holder: Option<String>,
    },
    /// Queued for the node of the cluster that holds the execution (PostgreSQL):
    /// it applies once that node sees it (at once if it listens; within its poll
    /// interval otherwise). An execution that no node holds gets it with its next
    /// claim. [`StoreControl::outcome`] tells what became of it.
    QueuedForHolder {
        /// Its position in the cluster's command queue.
        seq: i64,
    },
    /// Written to the shared store directly (PostgreSQL): a dead letter's replay
    /// is a new execution that any node claims; removals are done.
    Written {
        /// The new execution of a replay.
        execution: Option<ExecutionId>,
        /// Dead letters, or ended executions, removed by a purge.
        removed: usize,
    },
}

/// Why a request was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store has no execution with that id, ended or not.
    #[error("unknown execution {0}: the store has no execution with this id")]
    UnknownExecution(ExecutionId),
    /// The execution has ended: a control call no longer applies.
    #[error("execution {id} has ended ({status}): it cannot be {action}")]
    Ended {
        /// The execution.
        id: ExecutionId,
        /// How it ended.
        status: Status,
        /// What was asked (`cancelled`, `paused`, `resumed`).
        action: &'static str,
    },
    /// Pausing or resuming a delayed execution that has not started.
    #[error("execution {id} has not started yet: it can be cancelled, not {action}")]
    NotStarted {
        /// The execution.
        id: ExecutionId,
        /// What was asked.
        action: &'static str,
    },
    /// No dead letter with that id.
    #[error("unknown dead letter {0}: no failed execution with this id is kept")]
    UnknownDeadLetter(ExecutionId),
    /// A dead letter's workflow has no definition in the store.
    #[error("workflow `{0}` has no definition in the store: no engine registered it")]
    UnknownWorkflow(String),
    /// A restart of an execution that has not ended.
    #[error("execution {0} has not ended: only an ended execution can be restarted")]
    NotEnded(ExecutionId),
    /// A restart from a step the workflow does not declare.
    #[error("workflow `{workflow}` has no step `{step}`; its steps: {}", .known.join(", "))]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The step asked for.
        step: String,
        /// The steps it declares.
        known: Vec<String>,
    },
    /// The store takes no requests (an in-memory store).
    #[error("this store takes no control calls: {0}")]
    Unsupported(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
enum Target {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

/// Sends control calls and dead-letter requests through a store to the engines
/// that use it, for a tool that runs none:
///
/// - on an SQLite file, the requests go into the file's request queue (see
///   [`Inbox`]) through a [control store](SqliteStore::open_control), and the
///   engine that holds the file carries them out;
/// - on PostgreSQL, control calls go to the node that holds the execution
///   ([`Cluster::send`](super::Cluster::send)), and dead-letter requests are
///   written to the shared tables (a replay is a new execution, claimed by any
///   node).
///
/// Every request is checked against the store first: a call for an execution
/// that ended or never existed fails with a [`ControlError`] that says which.
#[derive(Clone)]
pub struct StoreControl {
    target: Target,
}

impl fmt::Debug for StoreControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Sqlite(s) => f.debug_tuple("StoreControl").field(s).finish(),
            Target::Postgres(s) => f.debug_tuple("StoreControl").field(s).finish(),
        }
    }
}

impl StoreControl {
    /// Opens the store at `url` for control: an SQLite file as a control store
    /// (whatever `mode` the URL asks for), or a PostgreSQL database whose schema
    /// exists (a tool never creates one).
    pub async fn open(url: &str) -> Result<StoreControl, StoreError> {
        match scheme(url) {
            "sqlite" => Ok(StoreControl::sqlite(SqliteStore::open_url(&with_mode(url, "control")?).await?)),
            "postgres" | "postgresql" => Ok(StoreControl::postgres(connect_existing(url).await?)),
            _ => Err(StoreError::InvalidUrl {
                url: redact_url(url),
                reason: "control calls need an SQLite file (`sqlite://path`) or a PostgreSQL database \
                         (`postgres://...`)"
                    .into(),
            }),
        }
    }

    /// Control through an SQLite store (open it with [`SqliteStore::open_control`]).
    pub fn sqlite(store: SqliteStore) -> StoreControl {
        StoreControl { target: Target::Sqlite(Arc::new(store)) }
    }

    /// Control through a PostgreSQL store.
    pub fn postgres(store: PostgresStore) -> StoreControl {
        StoreControl { target: Target::Postgres(Arc::new(store)) }
    }

    /// The store, to read it.
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.target {
            Target::Sqlite(s) => Arc::clone(s) as Arc<dyn Store>,
            Target::Postgres(s) => Arc::clone(s) as Arc<dyn Store>,
        }
    }

    /// Sends `request`; see [`Sent`] for what became of it.
    pub async fn send(&self, request: Request) -> Result<Sent, ControlError> {
        let store = self.store();
        match &request {
            Request::ReplayDeadLetter { id } | Request::RemoveDeadLetter { id } => {
                if !store.dead_letters(None).await?.iter().any(|d| d.id == *id) {
                    return Err(ControlError::UnknownDeadLetter(*id));
                }
            }
            Request::RestartFrom { execution, step, .. } => {
                restart_plan(&*store, *execution, step).await?;
            }
            Request::Control { .. } | Request::PurgeExpiredDeadLetters | Request::PurgeHistory { .. } => {}
        }
        match &self.target {
            Target::Sqlite(s) => match Inbox::send(&**s, &request).await {
                Ok(seq) => {
                    let holder = match s.path() {
                        Some(p) => SqliteStore::holder(p)?,
                        None => None,
                    };
                    Ok(Sent::Queued { seq, holder })
                }
                Err(StoreError::UnknownExecution(id)) => Err(self.ended_or_unknown(id, &request).await),
                Err(e) => Err(e.into()),
            },
            Target::Postgres(pg) => self.send_postgres(pg, request).await,
        }
    }

    async fn send_postgres(&self, pg: &PostgresStore, request: Request) -> Result<Sent, ControlError> {
        let cluster = pg.cluster().ok_or_else(|| ControlError::Unsupported("no cluster".into()))?;
        match request {
            Request::Control { execution, command } => {
                let action = past(request_action(&command));
                if !matches!(command, super::ControlCall::Cancel { .. })
                    && let Some(shared) = cluster.load(execution).await?
                    && !shared.stored.started
                {
                    return Err(ControlError::NotStarted { id: execution, action });
                }
                match cluster.send(execution, &command).await {
                    Ok(seq) => Ok(Sent::QueuedForHolder { seq }),
                    Err(StoreError::UnknownExecution(id)) => {
                        Err(self.ended_or_unknown(id, &Request::Control { execution, command }).await)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Request::ReplayDeadLetter { id } => {
                let letter = pg
                    .dead_letters(None)
                    .await?
                    .into_iter()
                    .find(|d| d.id == id)
                    .ok_or(ControlError::UnknownDeadLetter(id))?;
                let def = pg
                    .definitions()
                    .await?
                    .into_iter()
                    .find(|d| d.name == letter.workflow)
                    .ok_or_else(|| ControlError::UnknownWorkflow(letter.workflow.clone()))?;
                let new = ExecutionId::new();
                let created = NewExecution {
                    id: new,
                    workflow: letter.workflow,
                    version: def.version,
                    input: letter.input,
                    parent: None,
                    trigger: Trigger::Replay { of: id },
                    created_at: Utc::now(),
                    start_at: None,
                    unique_key: None,
                    debounce_key: None,
                    kept: Vec::new(),
                    priority: 0,
                    trace: Some(crate::model::TraceContext::fresh()),
                };
                // One transaction: the new execution (unheld, so any node claims
                // it) and the letter's removal.
                pg.write(&[Write::Create(Box::new(created)), Write::RemoveDeadLetter(id)]).await?;
                Ok(Sent::Written { execution: Some(new), removed: 1 })
            }
            Request::RemoveDeadLetter { id } => {
                pg.write(&[Write::RemoveDeadLetter(id)]).await?;
                Ok(Sent::Written { execution: None, removed: 1 })
            }
            Request::PurgeExpiredDeadLetters => {
                let removed = pg.purge_dead_letters(Utc::now()).await?;
                Ok(Sent::Written { execution: None, removed })
            }
            Request::RestartFrom { execution, step, context } => {
                let (ended, snapshot, kept) = restart_plan(pg, execution, &step).await?;
                let mut input = ended.input;
                input.extend(context);
                let new = ExecutionId::new();
                let created = NewExecution {
                    id: new,
                    workflow: ended.workflow,
                    version: snapshot.version,
                    input,
                    parent: None,
                    trigger: Trigger::Restart { of: execution, from: step },
                    created_at: Utc::now(),
                    start_at: None,
                    unique_key: None,
                    debounce_key: None,
                    kept,
                    priority: 0,
                    trace: Some(crate::model::TraceContext::fresh()),
                };
                pg.write(&[Write::Create(Box::new(created))]).await?;
                Ok(Sent::Written { execution: Some(new), removed: 0 })
            }
            Request::PurgeHistory { workflow, ended_before } => {
                let workflows = match workflow {
                    Some(w) => vec![w],
                    None => pg.definitions().await?.into_iter().map(|d| d.name).collect(),
                };
                let mut removed = 0;
                for w in workflows {
                    removed += super::prune_ended(pg, &w, ended_before, &|| false).await?;
                }
                Ok(Sent::Written { execution: None, removed })
            }
        }
    }

    /// Whether a queued request is still waiting (SQLite); `None` where the store
    /// cannot tell (PostgreSQL, or a request that was not queued).
    pub async fn is_pending(&self, sent: &Sent) -> Result<Option<bool>, StoreError> {
        match (&self.target, sent) {
            (Target::Sqlite(s), Sent::Queued { seq, .. }) => Ok(Some(s.is_queued(*seq).await?)),
            _ => Ok(None),
        }
    }

    /// What became of a request queued for a cluster's node: `None` while it is
    /// still queued, `Some(Ok(()))` once applied, `Some(Err(reason))` if it could
    /// not be carried out. An outcome read is then forgotten by the store.
    /// `None` for requests not queued on a cluster.
    pub async fn outcome(&self, sent: &Sent) -> Result<Option<Result<(), String>>, StoreError> {
        let (Target::Postgres(pg), Sent::QueuedForHolder { seq }) = (&self.target, sent) else { return Ok(None) };
        let Some(cluster) = pg.cluster() else { return Ok(None) };
        let outcome = match cluster.command_outcome(*seq).await? {
            super::CallOutcome::Queued => return Ok(None),
            super::CallOutcome::Applied => Ok(()),
            super::CallOutcome::Rejected(reason) => Err(reason),
            super::CallOutcome::Gone => Err("its outcome was already read".to_owned()),
        };
        cluster.forget_command(*seq).await?;
        Ok(Some(outcome))
    }

    async fn ended_or_unknown(&self, id: ExecutionId, request: &Request) -> ControlError {
        let action = match request {
            Request::Control { command, .. } => past(request_action(command)),
            _ => "controlled",
        };
        match self.store().finished(id).await {
            Ok(Some(state)) => ControlError::Ended { id, status: state.status, action },
            Ok(None) => ControlError::UnknownExecution(id),
            Err(e) => e.into(),
        }
    }
}

/// The ended execution a restart starts from, its workflow's current
/// definition and the steps the restart keeps; a [`ControlError`] naming what is
/// wrong otherwise.
async fn restart_plan(
    store: &dyn Store,
    id: ExecutionId,
    step: &str,
) -> Result<(ExecutionState, DefinitionSnapshot, Vec<KeptStep>), ControlError> {
    let Some(ended) = store.finished(id).await? else {
        return Err(match store.unfinished().await?.into_iter().find(|s| s.execution.id == id) {
            Some(_) => ControlError::NotEnded(id),
            None => ControlError::UnknownExecution(id),
        });
    };
    let snapshot = store
        .definitions()
        .await?
        .into_iter()
        .find(|d| d.name == ended.workflow)
        .ok_or_else(|| ControlError::UnknownWorkflow(ended.workflow.clone()))?;
    let kept = kept_steps(&snapshot, step, &ended).map_err(|e| ControlError::UnknownStep {
        workflow: ended.workflow.clone(),
        step: step.to_owned(),
        known: e.known,
    })?;
    Ok((ended, snapshot, kept))
}

fn request_action(command: &super::ControlCall) -> &'static str {
    match command {
        super::ControlCall::Cancel { .. } => "cancel",
        super::ControlCall::Pause => "pause",
        super::ControlCall::Resume { .. } => "resume",
        super::ControlCall::Signal { .. } => "signal",
    }
}

fn past(action: &str) -> &'static str {
    match action {
        "cancel" => "cancelled",
        "pause" => "paused",
        "resume" => "resumed",
        "signal" => "signalled",
        _ => "controlled",
    }
}

fn scheme(url: &str) -> &str {
    url.split_once(':').map_or(url, |(s, _)| s)
}

/// The SQLite URL with its `mode` parameter set to `mode`.
fn with_mode(url: &str, mode: &str) -> Result<String, StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if base.strip_prefix("sqlite:").is_some_and(|p| p == ":memory:") {
        return Err(StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: "an in-memory database belongs to the process that opened it; a tool cannot reach it".into(),
        });
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with("mode=")).collect();
    let mode = format!("mode={mode}");
    params.push(&mode);
    Ok(format!("{base}?{}", params.join("&")))
}

/// Opens the store at `url` to read it beside the engines that use it: an SQLite
/// file read-only (whatever `mode` the URL asks for), a PostgreSQL database whose
/// schema exists (a tool never creates one). `memory://` and `sqlite::memory:`
/// are refused: nothing outside the process that made them can read them.
pub async fn open_for_reading(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match scheme(url) {
        "sqlite" => Ok(Arc::new(SqliteStore::open_url(&with_mode(url, "ro")?).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(connect_existing(url).await?)),
        "memory" => Err(StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: "an in-memory store belongs to the process that made it; a tool cannot read it".into(),
        }),
        _ => Err(StoreError::InvalidUrl {
            url: redact_url(url),
            reason: format!("unsupported store; expected one of {SUPPORTED_URLS}"),
        }),
    }
}

/// Connects to a PostgreSQL store whose schema exists already: opening a store
/// creates its schema, which a tool pointed at a mistyped schema must not do.
async fn connect_existing(url: &str) -> Result<PostgresStore, StoreError> {
    let shown = redact_url(url);
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = "sagaflow".to_owned();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", value)) => value.clone_into(&mut schema),
            _ => rest.push(pair),
        }
    }
    let plain = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    let config: tokio_postgres::Config = plain
        .parse()
        .map_err(|e| StoreError::InvalidUrl { url: shown.clone(), reason: super::redact_secrets(&format!("{e}")) })?;
    let mut config = config;
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        StoreError::Unavailable(super::redact_secrets(&format!("PostgreSQL `{shown}`: {e}{cause}")))
    })?;
    let driver = tokio::spawn(connection);
    let found = client
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'executions'",
            &[&schema],
        )
        .await;
    drop(client);
    driver.abort();
    let found =
        found.map_err(|e| StoreError::Unavailable(super::redact_secrets(&format!("PostgreSQL `{shown}`: {e}"))))?;
    if found.is_none() {
        return Err(StoreError::Foreign {
            path: shown,
            reason: format!(
                "schema `{schema}` holds no sagaflow tables; an engine creates them when it starts on this URL \
                 (is `?schema=` right?)"
            ),
        });
    }
    PostgresStore::connect(url).await
}
