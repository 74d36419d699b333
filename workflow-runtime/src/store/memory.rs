//! [`MemoryStore`]: everything in memory, gone with the process.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::{
    DeadLetter, Durability, ExecutionQuery, JournalEntry, NewExecution, Store, StoreError, StoredExecution, Upgrade,
    Write,
};
use crate::model::execution::ExecutionState;
use crate::model::ids::IdHasher;
use crate::model::{DefinitionSnapshot, ExecutionId};

/// A store in memory: for tests and throwaway runs. The engine does not journal
/// events into it (it could not recover from it anyway), but it keeps final
/// states (the most recent [`DEFAULT_HISTORY`](Self::DEFAULT_HISTORY), or as many as
/// [`with_history`](Self::with_history) says), dead letters and definitions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use sagaflow_runtime::store::{conformance, MemoryStore};
/// conformance::run_all(|| async { MemoryStore::new() }).await;
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Schedule ticks have their own lock: claiming a tick never waits for a batch.
    ticks: Mutex<BTreeMap<String, DateTime<Utc>>>,
    history: usize,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<ExecutionId, StoredExecution, IdHasher>,
    finished: HashMap<ExecutionId, Arc<ExecutionState>, IdHasher>,
    finish_order: VecDeque<ExecutionId>,
    /// The last ended execution of each unique key of a workflow, and when it
    /// ended, while its final state is kept.
    ended_keys: HashMap<(String, String), (ExecutionId, DateTime<Utc>)>,
    /// The unique key of each ended execution kept that had one.
    ended_key_of: HashMap<ExecutionId, (String, String), IdHasher>,
    dead: BTreeMap<(DateTime<Utc>, ExecutionId), DeadLetter>,
    definitions: BTreeMap<String, DefinitionSnapshot>,
    versions: HashMap<(String, String), DefinitionSnapshot>,
}

impl Inner {
    /// Drops the final state of an ended execution, and the unique key it kept.
    fn forget(&mut self, id: ExecutionId) {
        self.finished.remove(&id);
        if let Some(entry) = self.ended_key_of.remove(&id)
            && self.ended_keys.get(&entry).is_some_and(|(holder, _)| *holder == id)
        {
            self.ended_keys.remove(&entry);
        }
    }
}

impl MemoryStore {
    /// How many finished executions a new store keeps.
    pub const DEFAULT_HISTORY: usize = 100_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::with_history(Self::DEFAULT_HISTORY)
    }

    /// An empty store that keeps the final states of the last `history` finished
    /// executions (older ones are forgotten).
    pub fn with_history(history: usize) -> Self {
        MemoryStore { inner: Mutex::new(Inner::default()), ticks: Mutex::default(), history }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates an execution once (an id that exists, running or ended, stays as it
/// is); a replay removes its dead letter.
fn create(inner: &mut Inner, n: &NewExecution) {
    if inner.live.contains_key(&n.id) || inner.finished.contains_key(&n.id) {
        return;
    }
    let started = n.start_at.is_none();
    inner.live.insert(n.id, StoredExecution { execution: n.clone(), started, events: Vec::new() });
    if let crate::model::execution::Trigger::Replay { of } = n.trigger {
        inner.dead.retain(|(_, id), _| *id != of);
    }
}

impl MemoryStore {
    /// Applies a batch entirely or not at all.
    fn apply(&self, batch: &[Write]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        // Validate first so a batch is applied entirely or not at all: walk the
        // batch in order, tracking which executions it creates and finishes.
        // A batch of one write needs no tracking (and allocates none).
        let track = batch.len() > 1;
        let mut created = HashSet::new();
        let mut ended = HashSet::new();
        for w in batch {
            let execution = match w {
                Write::Create(n) => {
                    if track {
                        created.insert(n.id);
                        ended.remove(&n.id);
                    }
                    continue;
                }
                Write::Finish(s) => {
                    if track {
                        ended.insert(s.id);
                    }
                    continue;
                }
                Write::Tick { execution, .. } => {
                    if track {
                        created.insert(execution.id);
                        ended.remove(&execution.id);
                    }
                    continue;
                }
                Write::Event(JournalEntry { execution, .. })
                | Write::CommandEvent { entry: JournalEntry { execution, .. }, .. } => execution,
                Write::Upgrade(u) => &u.id,
                _ => continue,
            };
            if (!inner.live.contains_key(execution) && !created.contains(execution)) || ended.contains(execution) {
                return Err(StoreError::UnknownExecution(*execution));
            }
        }
        for w in batch {
            match w {
                Write::Create(n) => create(&mut inner, n),
                Write::Started { id, .. } => {
                    if let Some(e) = inner.live.get_mut(id) {
                        e.started = true;
                    }
                }
                Write::Reschedule(n) => {
                    if let Some(e) = inner.live.get_mut(&n.id)
                        && !e.started
                    {
                        e.execution = (**n).clone();
                    }
                }
                Write::Event(entry) | Write::CommandEvent { entry, .. } => {
                    // Entries are numbered from 1 without gaps: one already there
                    // came from an earlier try of the same batch.
                    if let Some(e) = inner.live.get_mut(&entry.execution)
                        && entry.seq as usize > e.events.len()
                    {
                        e.events.push(entry.clone());
                    }
                }
                Write::Tick { key, fire_time, execution: n } => {
                    let mut ticks = self.ticks.lock();
                    if ticks.get(key).is_none_or(|last| last < fire_time) {
                        ticks.insert(key.clone(), *fire_time);
                        create(&mut inner, n);
                    }
                }
                // One engine owns a memory store: nothing is queued or parked.
                Write::CommandDone { .. } | Write::Park { .. } => {}
                Write::Finish(state) => {
                    if let Some(key) = inner.live.remove(&state.id).and_then(|e| e.execution.unique_key) {
                        let ended = state.ended_at.unwrap_or(state.started_at);
                        let entry = (state.workflow.clone(), key);
                        inner.ended_keys.insert(entry.clone(), (state.id, ended));
                        inner.ended_key_of.insert(state.id, entry);
                    }
                    if inner.finished.insert(state.id, Arc::clone(state)).is_none() {
                        inner.finish_order.push_back(state.id);
                    }
                    while inner.finish_order.len() > self.history {
                        if let Some(old) = inner.finish_order.pop_front() {
                            inner.forget(old);
                        }
                    }
                }
                Write::DeadLetter(d) => {
                    inner.dead.retain(|(_, id), _| *id != d.id);
                    inner.dead.insert((d.failed_at, d.id), (**d).clone());
                }
                Write::RemoveDeadLetter(id) => inner.dead.retain(|(_, i), _| i != id),
                Write::Definition(d) => {
                    inner.definitions.insert(d.name.clone(), (**d).clone());
                    inner.versions.insert((d.name.clone(), d.version.clone()), (**d).clone());
                }
                Write::Upgrade(u) => {
                    let Upgrade { id, version, events } = &**u;
                    if let Some(e) = inner.live.get_mut(id) {
                        e.execution.version.clone_from(version);
                        e.events.clone_from(events);
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn durability(&self) -> Durability {
        Durability::Volatile
    }

    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        self.apply(batch)
    }

    fn write_now(&self, batch: &[Write]) -> Option<Result<(), StoreError>> {
        Some(self.apply(batch))
    }

    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError> {
        let inner = self.inner.lock();
        let mut out: Vec<StoredExecution> = inner.live.values().cloned().collect();
        out.sort_by_key(|e| (e.execution.created_at, e.execution.id));
        Ok(out)
    }

    async fn finished(&self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        Ok(self.inner.lock().finished.get(&id).map(|s| (**s).clone()))
    }

    async fn list_finished(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        let inner = self.inner.lock();
        let mut out: Vec<ExecutionState> = inner
            .finished
            .values()
            .filter(|s| query.workflow.as_deref().is_none_or(|w| s.workflow == w))
            .map(|s| (**s).clone())
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse((s.started_at, s.id)));
        if query.limit > 0 {
            out.truncate(query.limit);
        }
        Ok(out)
    }

    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner.dead.values().filter(|d| workflow.is_none_or(|w| d.workflow == w)).cloned().collect())
    }

    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let before = inner.dead.len();
        inner.dead.retain(|_, d| d.expires_at > now);
        Ok(before - inner.dead.len())
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let Inner { finished, finish_order, .. } = &mut *inner;
        let mut pruned = Vec::new();
        finish_order.retain(|id| {
            let prune = pruned.len() < limit
                && finished
                    .get(id)
                    .is_some_and(|s| s.workflow == workflow && s.ended_at.unwrap_or(s.started_at) < ended_before);
            if prune {
                pruned.push(*id);
            }
            !prune
        });
        for id in &pruned {
            inner.forget(*id);
        }
        Ok(pruned.len())
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        let inner = self.inner.lock();
        let ended = inner.ended_keys.get(&(workflow.to_owned(), key.to_owned()));
        Ok(ended.filter(|(_, at)| *at >= since).map(|(id, _)| *id))
    }

    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        Ok(self.inner.lock().definitions.values().cloned().collect())
    }

    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        Ok(self.inner.lock().versions.get(&(name.to_owned(), version.to_owned())).cloned())
    }

    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut ticks = self.ticks.lock();
        match ticks.get(key) {
            Some(last) if *last >= fire_time => Ok(false),
            _ => {
                ticks.insert(key.to_owned(), fire_time);
                Ok(true)
            }
        }
    }

    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        Ok(self.ticks.lock().iter().map(|(k, v)| (k.clone(), *v)).collect())
    }
}
