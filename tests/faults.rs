//! A fault-injecting store: wraps a real store and, as the test asks, slows its
//! commits down, fails writes (transiently, for good, or as held by another
//! node), commits and then reports a failure (an unknown outcome), records what
//! was committed, or "crashes" right after committing a chosen write, as a
//! process killed at that instant would leave its file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use sagaflow::store::{Cluster, DeadLetter, Durability, ExecutionQuery, Store, StoreError, StoredExecution, Write};
use sagaflow::{DefinitionSnapshot, ExecutionId, ExecutionState};

/// A committed write, as the tests look at it.
#[derive(Clone, Debug)]
enum Committed {
    /// A new execution.
    Create(ExecutionId),
    /// A journal event of an execution, as JSON.
    Event(ExecutionId, serde_json::Value),
    /// Anything else.
    Other,
}

type Trigger = Box<dyn Fn(&Write) -> bool + Send + Sync>;

/// The wrapper. See the module documentation.
pub struct FaultStore {
    inner: Arc<dyn Store>,
    crashed: AtomicBool,
    delay: Mutex<Duration>,
    committed: Mutex<Vec<Committed>>,
    crash_after: Mutex<Option<Trigger>>,
    reject_when: Mutex<Option<Trigger>>,
    not_held_when: Mutex<Option<Trigger>>,
    fail_next: AtomicUsize,
    commit_then_fail: AtomicUsize,
}

impl std::fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultStore").field("delay", &*self.delay.lock()).finish_non_exhaustive()
    }
}

impl FaultStore {
    /// Wraps `inner`; every batch takes at least `delay` to commit.
    pub fn new(inner: impl Store, delay: Duration) -> Arc<Self> {
        Self::wrap(Arc::new(inner), delay)
    }

    /// Wraps a shared store.
    pub fn wrap(inner: Arc<dyn Store>, delay: Duration) -> Arc<Self> {
        Arc::new(FaultStore {
            inner,
            crashed: AtomicBool::new(false),
            delay: Mutex::new(delay),
            committed: Mutex::new(Vec::new()),
            crash_after: Mutex::new(None),
            reject_when: Mutex::new(None),
            not_held_when: Mutex::new(None),
            fail_next: AtomicUsize::new(0),
            commit_then_fail: AtomicUsize::new(0),
        })
    }

    /// Crashes right after committing the first write for which `when` holds:
    /// the rest of its batch and everything later is never committed, reads
    /// fail, and the wrapped store lets go of what it holds (an SQLite file's
    /// lock).
    pub fn crash_after(&self, when: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.crash_after.lock() = Some(Box::new(when));
    }

    /// Refuses for good (`StoreError::Rejected`) every batch with a write for
    /// which `when` holds.
    pub fn reject_when(&self, when: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.reject_when.lock() = Some(Box::new(when));
    }

    /// Answers `NotHeld` for the executions of the writes for which `when` holds,
    /// as a store would for executions another node took over.
    pub fn not_held_when(&self, when: impl Fn(&Write) -> bool + Send + Sync + 'static) {
        *self.not_held_when.lock() = Some(Box::new(when));
    }

    /// The next `n` batches fail as if the store could not be reached.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` batches are committed, and then reported as failed (the
    /// connection broke before the answer came back).
    pub fn commit_then_fail(&self, n: usize) {
        self.commit_then_fail.store(n, Ordering::SeqCst);
    }

    /// Sets how long each batch takes at least.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock() = delay;
    }

    /// Whether the store has crashed.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Whether the creation of `id` is committed.
    pub fn created(&self, id: ExecutionId) -> bool {
        self.committed.lock().iter().any(|c| matches!(c, Committed::Create(x) if *x == id))
    }

    /// Whether an event of `id` for which `pred` holds is committed.
    pub fn has_event(&self, id: ExecutionId, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
        self.committed.lock().iter().any(|c| matches!(c, Committed::Event(x, e) if *x == id && pred(e)))
    }

    fn inner(&self) -> Result<&Arc<dyn Store>, StoreError> {
        if self.crashed() { Err(StoreError::Unavailable("the store crashed".into())) } else { Ok(&self.inner) }
    }

    /// Takes one from a counter of faults to come; whether there was one.
    fn take(counter: &AtomicUsize) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    fn record(&self, batch: &[Write]) {
        let mut log = self.committed.lock();
        for w in batch {
            log.push(match w {
                Write::Create(n) => Committed::Create(n.id),
                Write::Event(e) => Committed::Event(e.execution, serde_json::from_str(&e.event).expect("JSON event")),
                _ => Committed::Other,
            });
        }
    }
}

/// A journal event's name and step: `("step_finished", Some(0))`.
pub fn event_is(event: &serde_json::Value, name: &str, step: Option<u64>) -> bool {
    event["event"] == name && step.is_none_or(|s| event["step"] == s)
}

#[async_trait]
impl Store for FaultStore {
    fn durability(&self) -> Durability {
        Durability::Durable
    }

    async fn write(&self, batch: &[Write]) -> Result<(), StoreError> {
        let delay = *self.delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let Ok(inner) = self.inner() else {
            // A crashed process writes nothing more, ever.
            return std::future::pending().await;
        };
        if Self::take(&self.fail_next) {
            return Err(StoreError::Unavailable("injected: the store cannot be reached".into()));
        }
        if self.reject_when.lock().as_ref().is_some_and(|when| batch.iter().any(when)) {
            return Err(StoreError::Rejected("injected: the store refuses this write".into()));
        }
        let not_held: Vec<ExecutionId> = match self.not_held_when.lock().as_ref() {
            Some(when) => batch.iter().filter(|w| when(w)).filter_map(Write::execution).collect(),
            None => Vec::new(),
        };
        if !not_held.is_empty() {
            return Err(StoreError::NotHeld(not_held));
        }
        let cut = self.crash_after.lock().as_ref().and_then(|when| batch.iter().position(when));
        match cut {
            None => {
                inner.write(batch).await?;
                self.record(batch);
                if Self::take(&self.commit_then_fail) {
                    return Err(StoreError::Unavailable("injected: the answer to a commit was lost".into()));
                }
                Ok(())
            }
            Some(i) => {
                inner.write(&batch[..=i]).await?;
                self.record(&batch[..=i]);
                self.crashed.store(true, Ordering::SeqCst);
                inner.release().await;
                std::future::pending().await
            }
        }
    }

    async fn unfinished(&self) -> Result<Vec<StoredExecution>, StoreError> {
        self.inner()?.unfinished().await
    }

    async fn finished(&self, id: ExecutionId) -> Result<Option<ExecutionState>, StoreError> {
        self.inner()?.finished(id).await
    }

    async fn list_finished(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, StoreError> {
        self.inner()?.list_finished(query).await
    }

    async fn dead_letters(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        self.inner()?.dead_letters(workflow).await
    }

    async fn purge_dead_letters(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.inner()?.purge_dead_letters(now).await
    }

    async fn prune_finished(
        &self,
        workflow: &str,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.inner()?.prune_finished(workflow, ended_before, limit).await
    }

    async fn ended_with_key(
        &self,
        workflow: &str,
        key: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<ExecutionId>, StoreError> {
        self.inner()?.ended_with_key(workflow, key, since).await
    }

    async fn definitions(&self) -> Result<Vec<DefinitionSnapshot>, StoreError> {
        self.inner()?.definitions().await
    }

    async fn definition_version(&self, name: &str, version: &str) -> Result<Option<DefinitionSnapshot>, StoreError> {
        self.inner()?.definition_version(name, version).await
    }

    async fn claim_tick(&self, key: &str, fire_time: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner()?.claim_tick(key, fire_time).await
    }

    async fn last_ticks(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.inner()?.last_ticks().await
    }

    async fn release(&self) {
        if let Ok(inner) = self.inner() {
            inner.release().await;
        }
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        self.inner.cluster()
    }
}
