//! Unique starts: at most one live execution of a workflow per key.
//!
//! A start with [`StartOptions::unique_key`] finds the live execution of the
//! workflow that holds the key, if there is one, and returns it (or, with
//! [`OnDuplicate::Reject`], refuses), instead of starting another. The key is free
//! again once that execution has ended (its final state committed).
//!
//! Where one engine owns the store (memory, an SQLite file, which one engine holds
//! at a time) the engine's own index of keys decides, under one lock, and is
//! rebuilt from the store at recovery. On a store that several engines share
//! (PostgreSQL) the store decides: it creates nothing for a key a live execution
//! holds, so two nodes racing with one key start one execution.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::debounce::Debounce;
use super::restart::Extras;
use super::{Engine, EngineError, input_data};
use crate::model::execution::Trigger;
use crate::model::ids::IdHasher;
use crate::model::{DurationArg, ExecutionId};

/// How [`Engine::start_with`] starts an execution.
///
/// ```
/// use sagaflow_runtime::{OnDuplicate, StartOptions};
///
/// let options = StartOptions::new().unique_key("order-1042").on_duplicate(OnDuplicate::Reject);
/// # let _ = options;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StartOptions {
    pub(crate) unique_key: Option<String>,
    pub(crate) on_duplicate: OnDuplicate,
    pub(crate) priority: i32,
    pub(crate) debounce: Option<Debounce>,
    pub(crate) unique_window: Option<DurationArg>,
}

impl StartOptions {
    /// A plain start.
    pub fn new() -> Self {
        StartOptions::default()
    }

    /// While an execution of the workflow started with this key has not ended,
    /// no other starts with it (see [`on_duplicate`](Self::on_duplicate)).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Keeps the [`unique_key`](Self::unique_key) held for `window` after its
    /// execution ended: a start within that time answers with the ended
    /// execution as with a live one (or, under [`OnDuplicate::Reject`], is
    /// refused), for as long as the store keeps its final state (see
    /// [`retention`](crate::Workflow::retention)). After the window the key is
    /// free. It holds across restarts, and across nodes on PostgreSQL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sagaflow_runtime::{Engine, Outcome, StartOptions, StepError, Workflow, json};
    ///
    /// let def = Workflow::new("welcome")
    ///     .step("send", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let once_a_day = || StartOptions::new().unique_key("user-7").unique_window("24h");
    /// let first = engine.start_with("welcome", json!({}), once_a_day()).await?;
    /// engine.wait(first.id).await?;
    /// let again = engine.start_with("welcome", json!({}), once_a_day()).await?;
    /// assert!(again.existing && again.id == first.id, "ended, but within the window");
    /// # Ok(()) }
    /// ```
    pub fn unique_window(mut self, window: impl Into<DurationArg>) -> Self {
        self.unique_window = Some(window.into());
        self
    }

    /// The execution's priority (default 0; higher goes first): where
    /// executions wait — for a slot of a step's
    /// [`concurrency`](crate::StepOptions::concurrency) limit, or, on PostgreSQL,
    /// for a node to claim them — those of higher priority are served first,
    /// and among equals the one that waited longest. Its nested executions
    /// inherit it. Without such a wait it changes nothing.
    ///
    /// ```
    /// use sagaflow_runtime::StartOptions;
    ///
    /// let urgent = StartOptions::new().priority(10);
    /// # let _ = urgent;
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Debounces the start: the execution waits `window` before it starts, and
    /// another start of the workflow with the same `key` meanwhile gives it that
    /// start's input (and priority) and moves its start to the end of a new
    /// `window`; that start answers with the waiting execution
    /// ([`Started::existing`] is `true`). The last start of a burst wins, once the
    /// starts pause for a whole window. Once the execution has started, the next
    /// start with the key schedules another. Until it starts the execution is
    /// `pending`, and can be inspected or cancelled like any scheduled one. On
    /// PostgreSQL the store decides, so it holds across nodes.
    ///
    /// A start is debounced or unique, not both: [`Engine::start_with`] refuses
    /// options with both.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use sagaflow_runtime::{Engine, Outcome, StartOptions, Status, StepError, Workflow, json};
    ///
    /// let def = Workflow::new("reindex")
    ///     .step("index", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let first = engine.start_with("reindex", json!({ "rev": 1 }), StartOptions::new().debounce("docs", "50ms")).await?;
    /// let last = engine.start_with("reindex", json!({ "rev": 2 }), StartOptions::new().debounce("docs", "50ms")).await?;
    /// assert!(last.existing && last.id == first.id);
    /// let state = engine.wait(first.id).await?;
    /// assert_eq!((state.status, &state.input["rev"]), (Status::Completed, &json!(2)));
    /// # Ok(()) }
    /// ```
    pub fn debounce(mut self, key: impl Into<String>, window: impl Into<DurationArg>) -> Self {
        self.debounce = Some(Debounce { key: key.into(), window: window.into() });
        self
    }

    /// What a start whose key a live execution holds does (default
    /// [`OnDuplicate::ReturnExisting`]).
    pub fn on_duplicate(mut self, policy: OnDuplicate) -> Self {
        self.on_duplicate = policy;
        self
    }
}

/// What a start does when a live execution of the workflow holds its key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnDuplicate {
    /// Start nothing and answer with the live execution
    /// ([`Started::existing`] is `true`).
    #[default]
    ReturnExisting,
    /// Start nothing and fail with [`EngineError::Duplicate`]: one execution per
    /// key at a time, and the caller hears of the second.
    Reject,
}

/// What [`Engine::start_with`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Started {
    /// The execution: the new one, or the live one that holds the key.
    pub id: ExecutionId,
    /// Whether it was there already (nothing was started).
    pub existing: bool,
}

/// How often a keyed start on a shared store tries again when the execution that
/// held its key ended between its attempt and its look-up.
const RACE_RETRIES: usize = 5;

/// The keys of the live executions this engine started or recovered (stores one
/// engine owns).
#[derive(Debug, Default)]
pub(crate) struct UniqueKeys {
    inner: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    by_key: HashMap<(Arc<str>, String), ExecutionId>,
    by_id: HashMap<ExecutionId, (Arc<str>, String), IdHasher>,
}

impl UniqueKeys {
    /// Records that `id` holds `key` of `workflow`.
    pub(crate) fn hold(&self, workflow: &str, key: &str, id: ExecutionId) {
        let mut keys = self.inner.lock();
        let entry = (Arc::from(workflow), key.to_owned());
        keys.by_key.insert(entry.clone(), id);
        keys.by_id.insert(id, entry);
    }

    /// Frees the key `id` holds, if any (it ended).
    pub(crate) fn release(&self, id: ExecutionId) {
        let mut keys = self.inner.lock();
        if keys.by_id.is_empty() {
            return;
        }
        if let Some(entry) = keys.by_id.remove(&id)
            && keys.by_key.get(&entry) == Some(&id)
        {
            keys.by_key.remove(&entry);
        }
    }

    /// The live holder of `key` of `workflow` (`live` says whether an id is
    /// still live), or, when none holds it, the key reserved for `new`.
    fn claim(
        &self,
        workflow: &str,
        key: &str,
        new: ExecutionId,
        live: impl Fn(ExecutionId) -> bool,
    ) -> Option<ExecutionId> {
        let mut keys = self.inner.lock();
        let entry = (Arc::from(workflow), key.to_owned());
        if let Some(&holder) = keys.by_key.get(&entry) {
            if live(holder) {
                return Some(holder);
            }
            keys.by_id.remove(&holder);
        }
        keys.by_key.insert(entry.clone(), new);
        keys.by_id.insert(new, entry);
        None
    }
}

impl Engine {
    /// Starts an execution of `workflow` with `input`, as [`start`](Self::start)
    /// does, with options: with a [`unique_key`](StartOptions::unique_key), a
    /// live execution of the workflow that holds the key is answered instead (or
    /// the start refused, see [`OnDuplicate`]). On PostgreSQL the store enforces
    /// the key, so it holds across nodes.
    ///
    /// # Errors
    ///
    /// Those of [`start`](Self::start), [`EngineError::Duplicate`] under
    /// [`OnDuplicate::Reject`], and [`EngineError::InvalidInput`] for a bad
    /// debounce or unique window, a unique window without a unique key, or a
    /// start both unique and debounced.
    ///
    /// ```
    /// use sagaflow_runtime::{Engine, Outcome, StartOptions, Step, StepError, Workflow, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("refund")
    ///     .step_with("approve", |_ctx| async { Ok::<_, StepError>(Outcome::await_resume()) },
    ///         Step::opts().await_approval(true))
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let first = engine.start_with("refund", json!({ "order": 1042 }), StartOptions::new().unique_key("1042")).await?;
    /// let again = engine.start_with("refund", json!({ "order": 1042 }), StartOptions::new().unique_key("1042")).await?;
    /// assert!(!first.existing && again.existing);
    /// assert_eq!(again.id, first.id);
    /// # Ok(()) }
    /// ```
    pub async fn start_with(
        &self,
        workflow: &str,
        input: impl Serialize,
        options: StartOptions,
    ) -> Result<Started, EngineError> {
        let inner = &self.inner;
        let def = inner.definition(workflow)?;
        let data = input_data(workflow, input)?;
        let priority = options.priority;
        let since = match &options.unique_window {
            None => None,
            Some(window) => Some(inner.clock.now() - unique_window(workflow, options.unique_key.as_deref(), window)?),
        };
        if let Some(debounce) = options.debounce {
            if let Some(key) = options.unique_key {
                return Err(EngineError::InvalidInput {
                    workflow: workflow.to_owned(),
                    reason: format!("a start is unique (key `{key}`) or debounced (key `{}`), not both", debounce.key),
                });
            }
            return inner.start_debounced(def, data, debounce, priority).await;
        }
        let Some(key) = options.unique_key else {
            let extras = Extras { priority, ..Extras::default() };
            let id = inner.start_with_id(ExecutionId::new(), def, data, Trigger::Manual, None, extras).await?;
            return Ok(Started { id, existing: false });
        };
        let found = |existing: ExecutionId| match options.on_duplicate {
            OnDuplicate::ReturnExisting => Ok(Started { id: existing, existing: true }),
            OnDuplicate::Reject => {
                Err(EngineError::Duplicate { workflow: workflow.to_owned(), key: key.clone(), existing })
            }
        };
        if inner.node.is_none() {
            let id = ExecutionId::new();
            let live = |id: ExecutionId| {
                inner.executions.contains_key(&id) || inner.delayed.contains_key(&id) || inner.parked.contains_key(&id)
            };
            if let Some(existing) = inner.unique.claim(workflow, &key, id, live) {
                return found(existing);
            }
            if let Some(since) = since {
                match inner.store.ended_with_key(workflow, &key, since).await {
                    Ok(None) => {}
                    Ok(Some(ended)) => {
                        inner.unique.release(id);
                        return found(ended);
                    }
                    Err(e) => {
                        inner.unique.release(id);
                        return Err(e.into());
                    }
                }
            }
            let extras = Extras { unique_key: Some(key.clone()), priority, ..Extras::default() };
            return match inner.start_with_id(id, def, data, Trigger::Manual, None, extras).await {
                Ok(id) => Ok(Started { id, existing: false }),
                Err(e) => {
                    inner.unique.release(id);
                    Err(e)
                }
            };
        }
        let cluster = inner.store.cluster().ok_or(EngineError::ShutDown)?;
        for _ in 0..RACE_RETRIES {
            if let Some(existing) = cluster.live_with_key(workflow, &key).await? {
                return found(existing);
            }
            if let Some(since) = since
                && let Some(ended) = inner.store.ended_with_key(workflow, &key, since).await?
            {
                return found(ended);
            }
            let id = ExecutionId::new();
            let extras = Extras { unique_key: Some(key.clone()), priority, ..Extras::default() };
            inner.start_with_id(id, def.clone(), data.clone(), Trigger::Manual, None, extras).await?;
            // The store created it unless a live execution holds the key.
            match cluster.live_with_key(workflow, &key).await? {
                Some(holder) if holder == id => return Ok(Started { id, existing: false }),
                Some(existing) => return found(existing),
                // The holder ended in between and nothing was created: again.
                None => continue,
            }
        }
        Err(EngineError::Store(crate::store::StoreError::Unavailable(format!(
            "the executions holding key `{key}` of workflow `{workflow}` kept ending while starting another"
        ))))
    }
}

/// How long a key stays held after its execution ended, read from `window`.
fn unique_window(workflow: &str, key: Option<&str>, window: &DurationArg) -> Result<chrono::Duration, EngineError> {
    let invalid = |reason: String| EngineError::InvalidInput { workflow: workflow.to_owned(), reason };
    let Some(key) = key else {
        return Err(invalid(format!("a unique window (`{}`) needs a unique key", window.describe())));
    };
    let window = window.to_duration().map_err(|e| invalid(format!("invalid unique window for key `{key}`: {e}")))?;
    chrono::Duration::from_std(window).map_err(|_| invalid(format!("the unique window of key `{key}` is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_until_released_and_a_dead_holder_frees_it() {
        let keys = UniqueKeys::default();
        let (a, b, c) = (ExecutionId::new(), ExecutionId::new(), ExecutionId::new());
        assert_eq!(keys.claim("w", "k", a, |_| true), None, "a free key is reserved");
        assert_eq!(keys.claim("w", "k", b, |_| true), Some(a), "a live holder answers");
        assert_eq!(keys.claim("v", "k", b, |_| true), None, "keys are per workflow");
        keys.release(a);
        assert_eq!(keys.claim("w", "k", c, |_| true), None, "a released key is free");
        assert_eq!(keys.claim("w", "k", a, |id| id != c), None, "a holder that is gone frees it");
        keys.release(c);
        assert_eq!(keys.claim("w", "k", b, |_| true), Some(a), "releasing a former holder frees nothing");
    }
}
