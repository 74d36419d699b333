//! Where the dashboard reads and where its actions go: an [`Engine`] (the
//! dashboard mounted in the application), or a bare store ([`Dashboard::over_store`],
//! what `sagaflow serve` runs), behind one small trait.
//!
//! Every read is bounded and runs no user code: history is read a window at a
//! time, unfinished executions come from the engine's memory or, for those this
//! process does not hold, from their store rows and journals shown as data
//! ([`StoredView`]), never replayed.
//!
//! [`Dashboard::over_store`]: super::Dashboard::over_store

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::engine::{CancelOptions, Engine};
use crate::introspect::StoredView;
use crate::model::execution::ExecutionState;
use crate::model::status::StepStatus;
use crate::model::{DefinitionSnapshot, ExecutionId, Misfire};
use crate::store::{ControlCall, DeadLetter, ExecutionQuery, Request, Sent, Store, StoreControl, StoredExecution};
use crate::telemetry::Subscription;

/// A workflow as the dashboard shows it.
#[derive(Clone, Debug)]
pub(crate) struct WorkflowEntry {
    pub(crate) snapshot: DefinitionSnapshot,
    pub(crate) description: Option<String>,
}

/// An execution that has not ended, as a row.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunningRow {
    pub(crate) id: ExecutionId,
    pub(crate) workflow: String,
    pub(crate) status: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) done: u32,
    pub(crate) total: u32,
    pub(crate) running: Vec<String>,
    /// Shown from its store row and journal (held by another process).
    pub(crate) stored: bool,
}

/// One execution.
pub(crate) enum ExecutionView {
    /// Its state: held by this engine, or ended.
    State(Box<ExecutionState>),
    /// Held elsewhere: its row and journal.
    Stored(Box<StoredView>),
}

/// A schedule and its next fire times.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ScheduleRow {
    pub(crate) schedule: String,
    pub(crate) misfire: Option<Misfire>,
    pub(crate) last_fire: Option<DateTime<Utc>>,
    /// The next fire times, soonest first.
    pub(crate) next: Vec<DateTime<Utc>>,
}

/// What an action asks for.
pub(crate) enum Action {
    Cancel { id: ExecutionId, options: CancelOptions },
    Pause(ExecutionId),
    Resume { id: ExecutionId, context: Map<String, Value> },
    Restart { id: ExecutionId, step: String, context: Map<String, Value> },
    Retry(ExecutionId),
}

/// Fire times shown per schedule.
pub(crate) const NEXT_FIRES: usize = 5;

#[async_trait]
pub(crate) trait Source: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Every workflow, by name.
    async fn workflows(&self) -> Result<Vec<WorkflowEntry>, ApiError>;
    /// The newest `limit` ended executions of `workflow`.
    async fn history(&self, workflow: &str, limit: usize) -> Result<Vec<ExecutionState>, ApiError>;
    /// Every execution that has not ended, newest first.
    async fn unfinished(&self) -> Result<Vec<RunningRow>, ApiError>;
    /// One execution.
    async fn execution(&self, id: ExecutionId) -> Result<ExecutionView, ApiError>;
    /// Dead letters, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ApiError>;
    /// The schedules of `workflow`.
    async fn schedules(&self, workflow: &str) -> Result<Vec<ScheduleRow>, ApiError>;
    /// Live events, where there is an engine to send them.
    fn subscribe(&self) -> Option<Subscription>;
    /// Carries an action out (or sends it to where it applies).
    async fn act(&self, action: Action) -> Result<Value, ApiError>;
}

// ----- an engine -----

pub(crate) struct EngineSource(pub(crate) Engine);

#[async_trait]
impl Source for EngineSource {
    fn now(&self) -> DateTime<Utc> {
        self.0.clock().now()
    }

    async fn workflows(&self) -> Result<Vec<WorkflowEntry>, ApiError> {
        let mut defs = self.0.definitions();
        defs.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(defs
            .iter()
            .map(|d| WorkflowEntry { snapshot: d.snapshot(), description: d.policy().description().map(str::to_owned) })
            .collect())
    }

    async fn history(&self, workflow: &str, limit: usize) -> Result<Vec<ExecutionState>, ApiError> {
        Ok(self.0.history(&ExecutionQuery { workflow: Some(workflow.to_owned()), limit }).await?)
    }

    async fn unfinished(&self) -> Result<Vec<RunningRow>, ApiError> {
        let inner = &self.0.inner;
        let mut rows = Vec::with_capacity(inner.executions.len());
        for entry in inner.executions.iter() {
            let exec = entry.value();
            // What a row needs, without building the whole state (its context).
            let core = exec.core.lock();
            if core.final_state.is_some() {
                continue;
            }
            let m = &core.machine;
            let status = m.status();
            if status.is_terminal() {
                continue;
            }
            let (done, total) = m.progress();
            let running =
                m.slots().filter(|(_, s)| s.status == StepStatus::Running).map(|(id, _)| m.step_name(id).to_string());
            rows.push(RunningRow {
                id: exec.id,
                workflow: exec.workflow().to_string(),
                status: status.to_string(),
                started_at: m.started_at,
                done,
                total,
                running: running.collect(),
                stored: false,
            });
        }
        for d in inner.delayed.iter() {
            let n = &d.new;
            rows.push(RunningRow {
                id: n.id,
                workflow: n.workflow.clone(),
                status: "pending".into(),
                started_at: n.start_at.unwrap_or(n.created_at),
                done: 0,
                total: 0,
                running: Vec::new(),
                stored: false,
            });
        }
        for p in inner.parked.iter() {
            let s = p.value();
            rows.push(RunningRow {
                id: s.id,
                workflow: s.workflow.clone(),
                status: format!("{} (parked)", s.status),
                started_at: s.started_at,
                done: s.progress.done,
                total: s.progress.total,
                running: Vec::new(),
                stored: false,
            });
        }
        if inner.node.is_some()
            && let Some(cluster) = inner.store.cluster()
        {
            // Executions other nodes hold: their rows and journals, as data.
            let mut snapshots = Snapshots::new(&*inner.store);
            for def in self.0.definitions() {
                for shared in cluster.unfinished_of(def.name()).await? {
                    let id = shared.stored.execution.id;
                    if inner.executions.contains_key(&id)
                        || inner.delayed.contains_key(&id)
                        || inner.parked.contains_key(&id)
                    {
                        continue;
                    }
                    let snap = snapshots.get(&shared.stored).await?;
                    rows.push(stored_row(&StoredView::of(&shared.stored, shared.holder, snap.as_ref())));
                }
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        Ok(rows)
    }

    async fn execution(&self, id: ExecutionId) -> Result<ExecutionView, ApiError> {
        let inner = &self.0.inner;
        let here =
            inner.executions.contains_key(&id) || inner.delayed.contains_key(&id) || inner.parked.contains_key(&id);
        let cluster = inner.store.cluster().filter(|_| inner.node.is_some());
        match cluster {
            // Not held here on a cluster: `get_state` would replay the journal of
            // another node's execution, so it is shown from the store instead.
            Some(cluster) if !here => {
                if let Some(state) = inner.store.finished(id).await? {
                    return Ok(ExecutionView::State(Box::new(state)));
                }
                match cluster.load(id).await? {
                    Some(shared) => {
                        let snap = Snapshots::new(&*inner.store).get(&shared.stored).await?;
                        Ok(ExecutionView::Stored(Box::new(StoredView::of(
                            &shared.stored,
                            shared.holder,
                            snap.as_ref(),
                        ))))
                    }
                    None => match inner.store.finished(id).await? {
                        Some(state) => Ok(ExecutionView::State(Box::new(state))),
                        None => Err(crate::engine::EngineError::UnknownExecution(id).into()),
                    },
                }
            }
            _ => Ok(ExecutionView::State(Box::new(self.0.get_state(id).await?))),
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ApiError> {
        Ok(self.0.dead_letters().list(None).await?)
    }

    async fn schedules(&self, workflow: &str) -> Result<Vec<ScheduleRow>, ApiError> {
        let def = self.0.definition(workflow);
        Ok(self
            .0
            .schedules()
            .into_iter()
            .filter(|s| s.workflow == workflow)
            .map(|s| {
                // Interval schedules count from their first tick, which `next_fire` is on.
                let next = match (s.next_fire, def.as_ref().and_then(|d| d.triggers().schedules.get(s.index))) {
                    (Some(first), Some(schedule)) => {
                        std::iter::once(first).chain(schedule.upcoming(first)).take(NEXT_FIRES).collect()
                    }
                    (Some(first), None) => vec![first],
                    (None, _) => Vec::new(),
                };
                ScheduleRow { schedule: s.schedule, misfire: Some(s.misfire), last_fire: s.last_fire, next }
            })
            .collect())
    }

    fn subscribe(&self) -> Option<Subscription> {
        Some(self.0.subscribe())
    }

    async fn act(&self, action: Action) -> Result<Value, ApiError> {
        Ok(match action {
            Action::Cancel { id, options } => {
                self.0.cancel(id, options).await?;
                json!({ "cancelled": id })
            }
            Action::Pause(id) => {
                self.0.pause(id).await?;
                json!({ "paused": id })
            }
            Action::Resume { id, context } => {
                self.0.resume(id, context).await?;
                json!({ "resumed": id })
            }
            Action::Restart { id, step, context } => {
                json!({ "restarted": id, "execution": self.0.restart_from(id, &step, context).await? })
            }
            Action::Retry(id) => json!({ "execution": self.0.dead_letters().replay(id).await? }),
        })
    }
}

// ----- a store -----

pub(crate) struct StoreSource {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) control: Option<StoreControl>,
}

impl StoreSource {
    async fn stored(&self) -> Result<Vec<StoredView>, ApiError> {
        let all = self.store.unfinished().await?;
        let mut snapshots = Snapshots::new(&*self.store);
        let mut out = Vec::with_capacity(all.len());
        for stored in &all {
            let snap = snapshots.get(stored).await?;
            out.push(StoredView::of(stored, None, snap.as_ref()));
        }
        Ok(out)
    }
}

#[async_trait]
impl Source for StoreSource {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn workflows(&self) -> Result<Vec<WorkflowEntry>, ApiError> {
        let mut defs = self.store.definitions().await?;
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(defs.into_iter().map(|snapshot| WorkflowEntry { snapshot, description: None }).collect())
    }

    async fn history(&self, workflow: &str, limit: usize) -> Result<Vec<ExecutionState>, ApiError> {
        Ok(self.store.list_finished(&ExecutionQuery { workflow: Some(workflow.to_owned()), limit }).await?)
    }

    async fn unfinished(&self) -> Result<Vec<RunningRow>, ApiError> {
        let mut rows: Vec<RunningRow> = self.stored().await?.iter().map(stored_row).collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
        Ok(rows)
    }

    async fn execution(&self, id: ExecutionId) -> Result<ExecutionView, ApiError> {
        if let Some(state) = self.store.finished(id).await? {
            return Ok(ExecutionView::State(Box::new(state)));
        }
        if let Some(cluster) = self.store.cluster() {
            if let Some(shared) = cluster.load(id).await? {
                let snap = Snapshots::new(&*self.store).get(&shared.stored).await?;
                return Ok(ExecutionView::Stored(Box::new(StoredView::of(
                    &shared.stored,
                    shared.holder,
                    snap.as_ref(),
                ))));
            }
        } else if let Some(view) = self.stored().await?.into_iter().find(|v| v.id == id) {
            return Ok(ExecutionView::Stored(Box::new(view)));
        }
        // It may have ended between the reads.
        match self.store.finished(id).await? {
            Some(state) => Ok(ExecutionView::State(Box::new(state))),
            None => Err(crate::engine::EngineError::UnknownExecution(id).into()),
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ApiError> {
        Ok(self.store.dead_letters(None).await?)
    }

    async fn schedules(&self, workflow: &str) -> Result<Vec<ScheduleRow>, ApiError> {
        let defs: Vec<DefinitionSnapshot> =
            self.store.definitions().await?.into_iter().filter(|d| d.name == workflow).collect();
        let ticks = self.store.last_ticks().await?;
        Ok(crate::schedule::stored_schedules(&defs, &ticks, Utc::now(), NEXT_FIRES)
            .into_iter()
            .map(|s| ScheduleRow { schedule: s.schedule, misfire: s.misfire, last_fire: s.last_fire, next: s.next })
            .collect())
    }

    fn subscribe(&self) -> Option<Subscription> {
        None
    }

    async fn act(&self, action: Action) -> Result<Value, ApiError> {
        let control = self.control.as_ref().ok_or_else(|| {
            ApiError(
                axum::http::StatusCode::NOT_FOUND,
                "this dashboard reads the store only; it was started without a way to send requests".into(),
            )
        })?;
        let request = match action {
            Action::Cancel { id, options } => Request::Control {
                execution: id,
                command: ControlCall::Cancel {
                    reason: options.reason,
                    cleanup: options.cleanup,
                    rollback: options.rollback,
                },
            },
            Action::Pause(id) => Request::Control { execution: id, command: ControlCall::Pause },
            Action::Resume { id, context } => {
                Request::Control { execution: id, command: ControlCall::Resume { step: None, context } }
            }
            Action::Restart { id, step, context } => Request::RestartFrom { execution: id, step, context },
            Action::Retry(id) => Request::ReplayDeadLetter { id },
        };
        let action = request.action();
        let target = request.execution();
        Ok(match control.send(request).await? {
            Sent::Queued { holder, .. } => json!({
                "queued": action,
                "execution": target,
                "note": match holder {
                    Some(h) => format!("queued for the engine that holds the file ({h}); it applies it within a second"),
                    None => "queued; no engine holds the file now: it applies when one opens it".to_owned(),
                },
            }),
            Sent::QueuedForHolder { .. } => json!({
                "queued": action,
                "execution": target,
                "note": "queued for the node that holds the execution; it applies once that node sees it",
            }),
            Sent::Written { execution, .. } => json!({ "done": action, "execution": execution.or(target) }),
        })
    }
}

/// Definition snapshots by (workflow, version), read once per request.
struct Snapshots<'a> {
    store: &'a dyn Store,
    seen: HashMap<(String, String), Option<DefinitionSnapshot>>,
}

impl<'a> Snapshots<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Snapshots { store, seen: HashMap::new() }
    }

    async fn get(&mut self, stored: &StoredExecution) -> Result<Option<DefinitionSnapshot>, ApiError> {
        let key = (stored.execution.workflow.clone(), stored.execution.version.clone());
        if let Some(s) = self.seen.get(&key) {
            return Ok(s.clone());
        }
        let snap = self.store.definition_version(&key.0, &key.1).await?;
        self.seen.insert(key, snap.clone());
        Ok(snap)
    }
}

fn stored_row(v: &StoredView) -> RunningRow {
    let p = v.progress();
    RunningRow {
        id: v.id,
        workflow: v.workflow.clone(),
        status: v.status.to_string(),
        started_at: v.started_at(),
        done: p.done,
        total: p.total,
        running: Vec::new(),
        stored: true,
    }
}
