//! Delayed executions: started later, at an instant or after a delay ([`StartAt`]);
//! they exist at once, `pending` until their time comes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::restart::Extras;
use super::start::{input_data, to_map};
use super::timers::TimerTarget;
use super::{Engine, EngineError, EngineInner, limits};
use crate::model::context::Data;
use crate::model::execution::Trigger;
use crate::model::{DurationArg, ExecutionId, WorkflowDef};
use crate::store::{NewExecution, Write};

/// When a scheduled execution starts.
#[derive(Clone, Debug)]
pub enum StartAt {
    /// At this instant.
    At(DateTime<Utc>),
    /// After this delay.
    In(DurationArg),
}

impl StartAt {
    /// After a delay such as `"30m"`.
    pub fn delay(d: impl Into<DurationArg>) -> Self {
        StartAt::In(d.into())
    }
}

impl From<DateTime<Utc>> for StartAt {
    fn from(at: DateTime<Utc>) -> Self {
        StartAt::At(at)
    }
}

impl From<Duration> for StartAt {
    fn from(d: Duration) -> Self {
        StartAt::In(d.into())
    }
}

/// A delayed execution waiting for its start time.
pub(crate) struct Delayed {
    pub(crate) def: WorkflowDef,
    pub(crate) new: NewExecution,
}

impl Engine {
    /// Starts an execution later: at an instant, or after a delay.
    ///
    /// The execution exists at once (status `pending`); it can be inspected and
    /// cancelled before it starts, and it survives restarts on a durable store.
    pub async fn schedule_execution(
        &self,
        workflow: &str,
        input: impl Serialize,
        when: impl Into<StartAt>,
    ) -> Result<ExecutionId, EngineError> {
        let def = self.inner.definition(workflow)?;
        let data = input_data(workflow, input)?;
        let now = self.inner.clock.now();
        let at = match when.into() {
            StartAt::At(at) => at,
            StartAt::In(d) => {
                let d = d.to_duration().map_err(|e| EngineError::InvalidInput {
                    workflow: workflow.to_owned(),
                    reason: format!("invalid delay: {e}"),
                })?;
                now + d
            }
        };
        self.inner.schedule(def, data, Trigger::Delayed { at }, at).await
    }
}

impl EngineInner {
    pub(super) async fn schedule(
        self: &Arc<Self>,
        def: WorkflowDef,
        data: Data,
        trigger: Trigger,
        at: DateTime<Utc>,
    ) -> Result<ExecutionId, EngineError> {
        limits::check_input(&def, &data)?;
        let new = self.delayed_record(&def, &data, trigger, at);
        let id = new.id;
        let (_, ack) = self.journal.submit(Write::Create(Box::new(new.clone())));
        if self.node.is_some() {
            // Any node may claim it once it is due; this one looks then.
            self.timers.arm(TimerTarget::Claim, self.clock.instant_at(at));
        } else {
            self.delayed.insert(id, Delayed { def, new });
            self.timers.arm(TimerTarget::Start(id), self.clock.instant_at(at));
        }
        if let Err(e) = self.acknowledged(ack, "schedule_execution").await {
            self.withdraw_delayed(id, at);
            return Err(e);
        }
        Ok(id)
    }

    /// The record of a new execution of `def` with `data` that starts at `at`.
    pub(super) fn delayed_record(
        &self,
        def: &WorkflowDef,
        data: &Data,
        trigger: Trigger,
        at: DateTime<Utc>,
    ) -> NewExecution {
        NewExecution {
            id: ExecutionId::new(),
            workflow: def.name().to_owned(),
            version: def.version().to_owned(),
            input: to_map(data),
            parent: None,
            trigger,
            created_at: self.clock.now(),
            start_at: Some(at),
            unique_key: None,
            debounce_key: None,
            kept: Vec::new(),
            priority: 0,
            trace: self.trace_for_new(None),
        }
    }

    /// Takes back a delayed execution whose creation was not committed, its
    /// timer (due at `at`) disarmed.
    pub(super) fn withdraw_delayed(&self, id: ExecutionId, at: DateTime<Utc>) -> Option<Delayed> {
        let (_, d) = self.delayed.remove(&id)?;
        self.timers.cancel(TimerTarget::Start(id), self.clock.instant_at(at));
        Some(d)
    }

    /// A delayed execution's time has come.
    pub(crate) fn start_delayed(self: &Arc<Self>, id: ExecutionId) {
        // It leaves `delayed` only once it is among the executions, so that a
        // waiter that finds it in neither knows it ended (see `wait_for`); the
        // entry's lock keeps a cancel out meanwhile.
        let dashmap::Entry::Occupied(entry) = self.delayed.entry(id) else { return };
        let (def, new) = (entry.get().def.clone(), entry.get().new.clone());
        let at = self.clock.now();
        let ticket = self.journal.append(Write::Started { id, at });
        let data: Data = new.input.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let extras = Extras { kept: new.kept.clone(), priority: new.priority, ..Extras::default() };
        self.launch(id, def, data, new.trigger.clone(), None, at, ticket, &extras, new.trace.clone());
        entry.remove();
        self.debounce_done(&new);
    }
}
