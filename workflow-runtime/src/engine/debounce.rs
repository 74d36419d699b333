//! Debounced starts: of a burst of starts with one key, the last one wins.
//!
//! A start with [`StartOptions::debounce`] does not run at once: it schedules
//! the execution for the end of the window. Another start of the workflow with
//! the same key before that time gives the waiting execution its own input and
//! moves its start to the end of a new window, and answers with the same
//! execution ([`Started::existing`] is `true`). Once the execution has started,
//! the next start with the key schedules a new one.
//!
//! Where one engine owns the store the engine's own index of keys decides, under
//! one lock, and is rebuilt from the store at recovery; the replacement is
//! journaled like any other write ([`Write::Reschedule`]), so it survives a
//! restart. On a store that several engines share (PostgreSQL) the store decides,
//! in one transaction per start serialized per key, so two nodes debouncing with
//! one key schedule one execution.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::journal::Ack;
use super::timers::TimerTarget;
use super::{Delayed, EngineError, EngineInner, Started};
use crate::model::context::Data;
use crate::model::execution::Trigger;
use crate::model::{DurationArg, ExecutionId, WorkflowDef};
use crate::store::{NewExecution, Write};

/// A debounced start: its key and window, as given.
#[derive(Clone, Debug)]
pub(crate) struct Debounce {
    pub(crate) key: String,
    pub(crate) window: DurationArg,
}

/// Which delayed execution waits under each debounce key (stores one engine
/// owns).
#[derive(Debug, Default)]
pub(crate) struct DebounceKeys {
    waiting: Mutex<HashMap<(Arc<str>, String), ExecutionId>>,
}

impl DebounceKeys {
    /// Records that the delayed execution `id` waits under `key` of `workflow`
    /// (recovered from the store).
    pub(crate) fn hold(&self, workflow: &str, key: &str, id: ExecutionId) {
        self.waiting.lock().insert((Arc::from(workflow), key.to_owned()), id);
    }

    /// Frees `key` of `workflow` if `id` waits under it (it started, or was
    /// cancelled).
    pub(crate) fn release(&self, workflow: &str, key: &str, id: ExecutionId) {
        let mut waiting = self.waiting.lock();
        let entry = (Arc::from(workflow), key.to_owned());
        if waiting.get(&entry) == Some(&id) {
            waiting.remove(&entry);
        }
    }
}

impl EngineInner {
    /// Starts `def` with `data` debounced: see the module docs.
    pub(crate) async fn start_debounced(
        self: &Arc<Self>,
        def: WorkflowDef,
        data: Data,
        debounce: Debounce,
        priority: i32,
    ) -> Result<Started, EngineError> {
        let invalid = |reason: String| EngineError::InvalidInput { workflow: def.name().to_owned(), reason };
        let window = debounce
            .window
            .to_duration()
            .map_err(|e| invalid(format!("invalid debounce window for key `{}`: {e}", debounce.key)))?;
        let window = chrono::Duration::from_std(window)
            .map_err(|_| invalid(format!("the debounce window of key `{}` is too long", debounce.key)))?;
        super::limits::check_input(&def, &data)?;
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShutDown);
        }
        let at = self.clock.now() + window;
        let new = NewExecution {
            debounce_key: Some(debounce.key),
            priority,
            ..self.delayed_record(&def, &data, Trigger::Delayed { at }, at)
        };
        if self.node.is_some() {
            let cluster = self.store.cluster().ok_or(EngineError::ShutDown)?;
            let id = cluster.debounce(&new).await?;
            // Whichever node's timer fires first claims it once it is due.
            self.timers.arm(TimerTarget::Claim, self.clock.instant_at(at));
            return Ok(Started { id, existing: id != new.id });
        }
        self.debounce_here(def, new, at).await
    }

    /// A debounced start on a store this engine owns.
    async fn debounce_here(
        self: &Arc<Self>,
        def: WorkflowDef,
        new: NewExecution,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Started, EngineError> {
        let (started, ack) = self.debounce_now(def, new, at);
        match self.acknowledged(ack, "start_with").await {
            Ok(()) => Ok(started),
            Err(e) => {
                if !started.existing
                    && let Some(d) = self.withdraw_delayed(started.id, at)
                {
                    self.debounce_done(&d.new);
                }
                Err(e)
            }
        }
    }

    /// Under the keys' lock: the waiting execution takes the new input before it
    /// starts, or (it has started, or none waits) a new one waits under the key.
    /// Returns the write to wait for.
    fn debounce_now(
        self: &Arc<Self>,
        def: WorkflowDef,
        new: NewExecution,
        at: chrono::DateTime<chrono::Utc>,
    ) -> (Started, Ack) {
        let entry = (Arc::from(new.workflow.as_str()), new.debounce_key.clone().unwrap_or_default());
        let mut waiting = self.debounced.waiting.lock();
        if let Some(&holder) = waiting.get(&entry)
            && let Some(mut d) = self.delayed.get_mut(&holder)
        {
            let before = d.new.start_at.unwrap_or(d.new.created_at);
            d.new.input = new.input;
            d.new.start_at = new.start_at;
            d.new.trigger = new.trigger;
            d.new.priority = new.priority;
            let (_, ack) = self.journal.submit(Write::Reschedule(Box::new(d.new.clone())));
            drop(d);
            self.timers.cancel(TimerTarget::Start(holder), self.clock.instant_at(before));
            self.timers.arm(TimerTarget::Start(holder), self.clock.instant_at(at));
            return (Started { id: holder, existing: true }, ack);
        }
        let id = new.id;
        waiting.insert(entry, id);
        let (_, ack) = self.journal.submit(Write::Create(Box::new(new.clone())));
        self.delayed.insert(id, Delayed { def, new });
        self.timers.arm(TimerTarget::Start(id), self.clock.instant_at(at));
        (Started { id, existing: false }, ack)
    }

    /// Frees the debounce key a delayed execution waited under, if any.
    pub(crate) fn debounce_done(&self, new: &NewExecution) {
        if let Some(key) = &new.debounce_key {
            self.debounced.release(&new.workflow, key, new.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_freed_only_by_the_execution_waiting_under_it() {
        let keys = DebounceKeys::default();
        let (a, b) = (ExecutionId::new(), ExecutionId::new());
        keys.hold("w", "k", a);
        keys.release("w", "k", b);
        assert_eq!(keys.waiting.lock().get(&(Arc::from("w"), "k".to_owned())), Some(&a), "another id frees nothing");
        keys.release("v", "k", a);
        assert!(!keys.waiting.lock().is_empty(), "keys are per workflow");
        keys.release("w", "k", a);
        assert!(keys.waiting.lock().is_empty(), "the waiting execution frees its key");
    }
}
