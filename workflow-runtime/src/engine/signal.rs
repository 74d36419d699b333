//! Signals and queries, on the engine's side: [`Engine::signal`] delivers a signal
//! as a journaled event (through the command queue to the node that holds the
//! execution), [`Port`] lets a running step take one (`ctx.signal`), and
//! [`Engine::query`] answers a workflow's query from an execution's state.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use super::executor::{Execution, Journaling};
use super::{Engine, EngineError, EngineInner};
use crate::builder::suggest;
use crate::machine::event::ExecutionEvent;
use crate::model::signal_port::{PortFuture, SignalPort};
use crate::model::status::Status;
use crate::model::{ExecutionId, StepError, kinds};
use crate::store::ControlCall;

impl Engine {
    /// Sends the signal `name` with `payload` (any serializable value) to an
    /// execution; returns once the signal is committed to the store.
    ///
    /// A signal is named, ordered data from outside (a payment provider's
    /// webhook, a reviewer's decision, a cancellation request with details). It
    /// goes to the step that has waited longest for that name
    /// ([`Outcome::await_signal`](crate::Outcome::await_signal), which completes
    /// with the payload as its output, or
    /// [`Outcome::rerun_on_signal`](crate::Outcome::rerun_on_signal), which runs
    /// again and reads it). When no step waits, it is buffered: signals of one
    /// name are received in the order they were sent, by the next step that waits
    /// for the name or reads it from a running attempt with
    /// [`Context::signal`](crate::Context::signal). A signal a step received stays
    /// with that step until it ends (a retry, or the attempt recovery starts after
    /// a crash, receives it again); then it is consumed. Signals not consumed yet
    /// are listed in [`ExecutionState::signals`](crate::ExecutionState::signals).
    ///
    /// Durability: the signal is an event of the execution's journal. Once this
    /// call returns `Ok`, the signal survives a crash of any process and a
    /// takeover by another node, and nothing a step did with it can have
    /// happened without it being committed. On a shared store, a signal for an
    /// execution another node holds (or that waits parked in the store) is queued
    /// for that node, which applies it and commits it before this call returns.
    ///
    /// Errors: [`EngineError::InvalidSignal`] for an empty name or a payload that
    /// does not serialize; [`EngineError::InvalidState`] for an execution that has
    /// ended or not started yet; [`EngineError::UnknownExecution`].
    ///
    /// ```
    /// use sagaflow_runtime::{Engine, Outcome, Status, Workflow, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("expense")
    ///     .step("approval", |_ctx| async { Ok::<_, sagaflow_runtime::StepError>(Outcome::await_signal("decision")) })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let id = engine.start("expense", json!({ "amount": 120 })).await?;
    /// engine.signal(id, "decision", json!({ "approved": true, "by": "ada" })).await?;
    /// let done = engine.wait(id).await?;
    /// assert_eq!(done.status, Status::Completed);
    /// assert_eq!(done.context["by"], "ada");
    /// # Ok(()) }
    /// ```
    pub async fn signal(&self, id: ExecutionId, name: &str, payload: impl Serialize) -> Result<(), EngineError> {
        if name.trim().is_empty() {
            return Err(EngineError::InvalidSignal {
                id,
                name: name.to_owned(),
                reason: "a signal name cannot be empty".into(),
            });
        }
        let payload = serde_json::to_value(payload).map_err(|e| EngineError::InvalidSignal {
            id,
            name: name.to_owned(),
            reason: format!("the payload does not serialize: {e}"),
        })?;
        if self.inner.delayed.contains_key(&id) {
            return Err(EngineError::InvalidState {
                id,
                action: "signal",
                status: Status::Pending,
                reason: "it has not started yet".into(),
            });
        }
        self.inner.control(id, ControlCall::Signal { name: name.to_owned(), payload }).await
    }

    /// Runs the query `name` of the execution's workflow (`#[query]`,
    /// [`Workflow::query`](crate::Workflow::query)) on the execution's current
    /// state, and returns its answer as JSON. Queries never change the execution.
    ///
    /// Where the state comes from: an execution this engine runs answers from its
    /// live state; one that another node holds, or that waits parked in a shared
    /// store, answers from its journal, replayed here (the same state
    /// [`get_state`](Self::get_state) shows). The journal is what is committed, so
    /// the answer never shows what a crash could still undo; and asking the
    /// holder would wake a parked execution and cost a round trip through the
    /// command queue for a read that needs neither. An ended execution answers
    /// from its final state.
    ///
    /// Errors: [`EngineError::UnknownQuery`] (listing the workflow's queries),
    /// [`EngineError::QueryFailed`] when the query function panics or its answer
    /// does not serialize, and those of [`get_state`](Self::get_state).
    ///
    /// ```
    /// use sagaflow_runtime::{Engine, EngineError, ExecutionState, Outcome, Workflow, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("expense")
    ///     .step("approval", |_ctx| async { Ok::<_, sagaflow_runtime::StepError>(Outcome::await_signal("decision")) })
    ///     .query("waiting_for", |state: &ExecutionState| {
    ///         state.awaiting.iter().filter_map(|a| a.signal.clone()).collect::<Vec<_>>()
    ///     })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let id = engine.start("expense", json!({})).await?;
    /// # while engine.get_state(id).await?.awaiting.is_empty() { tokio::task::yield_now().await; }
    /// assert_eq!(engine.query(id, "waiting_for").await?, json!(["decision"]));
    /// let wrong = engine.query(id, "waiting").await.unwrap_err();
    /// assert!(matches!(wrong, EngineError::UnknownQuery { .. }));
    /// assert_eq!(
    ///     wrong.to_string(),
    ///     "workflow `expense` has no query `waiting` (did you mean `waiting_for`?); its queries: `waiting_for`"
    /// );
    /// # Ok(()) }
    /// ```
    pub async fn query(&self, id: ExecutionId, name: &str) -> Result<Value, EngineError> {
        self.run_query(id, name).await.map(|(_, answer)| answer)
    }

    /// [`query`](Self::query), with the answer deserialized as `T` (a
    /// [`EngineError::QueryFailed`] when it does not fit).
    pub async fn query_as<T: DeserializeOwned>(&self, id: ExecutionId, name: &str) -> Result<T, EngineError> {
        let (workflow, answer) = self.run_query(id, name).await?;
        T::deserialize(&answer).map_err(|e| EngineError::QueryFailed {
            workflow,
            name: name.to_owned(),
            reason: format!("its answer `{answer}` is not a `{}`: {e}", std::any::type_name::<T>()),
        })
    }

    /// The workflow's name and the query's answer.
    async fn run_query(&self, id: ExecutionId, name: &str) -> Result<(String, Value), EngineError> {
        let state = self.get_state(id).await?;
        let def = self.inner.definition(&state.workflow)?;
        let Some(query) = def.inner.queries.get(name) else {
            let known: Vec<String> = def.inner.queries.keys().map(|k| k.to_string()).collect();
            return Err(EngineError::UnknownQuery {
                workflow: state.workflow.clone(),
                name: name.to_owned(),
                suggestion: suggest(name, known.iter().map(String::as_str)),
                known,
            });
        };
        let answer = crate::model::guard::call(|| query(&state)).unwrap_or_else(|p| Err(p.into_error(None)));
        match answer {
            Ok(answer) => Ok((state.workflow, answer)),
            Err(e) => Err(EngineError::QueryFailed {
                workflow: state.workflow.clone(),
                name: name.to_owned(),
                reason: e.message().to_owned(),
            }),
        }
    }
}

/// What `ctx.signal` of a step of one execution reads through: the execution's
/// machine, under its lock.
pub(crate) struct Port {
    engine: Weak<EngineInner>,
    exec: Weak<Execution>,
    arrivals: Notify,
    /// How many signals of each name the current attempt of each step has read.
    read: Mutex<Vec<Read>>,
}

/// `(step, attempt, signal name, how many read)`.
type Read = (Arc<str>, u32, Arc<str>, usize);

impl Port {
    pub(crate) fn new(engine: &Arc<EngineInner>, exec: &Arc<Execution>) -> Port {
        Port {
            engine: Arc::downgrade(engine),
            exec: Arc::downgrade(exec),
            arrivals: Notify::new(),
            read: Mutex::new(Vec::new()),
        }
    }

    /// How many signals `name` attempt `attempt` of `step` has read; forgets the
    /// counts of the step's earlier attempts.
    fn read_count(&self, step: &str, attempt: u32, name: &str) -> usize {
        let mut read = self.read.lock();
        read.retain(|(s, a, _, _)| &**s != step || *a == attempt);
        read.iter().find(|(s, a, n, _)| &**s == step && *a == attempt && &**n == name).map_or(0, |e| e.3)
    }

    fn count_read(&self, step: &str, attempt: u32, name: &str) {
        let mut read = self.read.lock();
        match read.iter_mut().find(|(s, a, n, _)| &**s == step && *a == attempt && &**n == name) {
            Some(e) => e.3 += 1,
            None => read.push((Arc::from(step), attempt, Arc::from(name), 1)),
        }
    }

    fn gone(name: &str) -> StepError {
        StepError::new(kinds::CANCELLED, format!("the execution stopped here while its step read signal `{name}`"))
            .permanent()
    }
}

impl SignalPort for Port {
    fn take<'a>(&'a self, step: &'a str, attempt: u32, name: &'a str) -> PortFuture<'a> {
        Box::pin(async move {
            let (Some(engine), Some(exec)) = (self.engine.upgrade(), self.exec.upgrade()) else {
                return Err(Port::gone(name));
            };
            let (payload, ticket) = {
                let mut core = exec.core.lock();
                if core.abandoned {
                    return Err(Port::gone(name));
                }
                let Some(id) = core.machine.step_id(step) else {
                    return Err(StepError::new(
                        kinds::SIGNAL_UNAVAILABLE,
                        format!("signal `{name}` was read outside a step of the execution"),
                    )
                    .permanent());
                };
                let index = self.read_count(step, attempt, name);
                let found = if let Some(held) = core.machine.held_signal(id, name, index) {
                    (held.clone(), core.ticket)
                } else if let Some(buffered) = core.machine.buffered_signal(name).cloned() {
                    let at = engine.clock.now();
                    let event = ExecutionEvent::SignalTaken { step: id, attempt, name: Arc::from(name), at };
                    let mut cmds = Vec::new();
                    if let Err(e) = engine.apply_journaled(&exec, &mut core, event, &mut cmds, Journaling::Plain) {
                        return Err(
                            StepError::new(kinds::SIGNAL_UNAVAILABLE, format!("signal `{name}`: {e}")).permanent()
                        );
                    }
                    if core.machine.held_signal(id, name, index).is_none() {
                        // The attempt is no longer the step's current one.
                        return Err(Port::gone(name));
                    }
                    core.commands.append(&mut cmds);
                    engine.ensure_driver(&exec, &mut core);
                    (buffered, core.ticket)
                } else {
                    return Ok(None);
                };
                // Counted under the lock: two reads at once never get the same one.
                self.count_read(step, attempt, name);
                found
            };
            // The write-ahead rule: the step sees the signal only once its arrival
            // and its taking are committed.
            engine.journal.flushed(ticket).await.map_err(|_| Port::gone(name))?;
            Ok(Some(payload))
        })
    }

    fn arrivals(&self) -> &Notify {
        &self.arrivals
    }
}

impl EngineInner {
    /// Wakes the running steps of `exec` that wait in `ctx.signal`.
    pub(crate) fn signal_arrived(&self, exec: &Execution) {
        if let Some(port) = exec.meta.signals.get() {
            port.arrivals().notify_waiters();
        }
    }

    /// The port of `exec`, created when one of its steps first runs.
    pub(crate) fn signal_port(self: &Arc<Self>, exec: &Arc<Execution>) {
        exec.meta.signals.get_or_init(|| Arc::new(Port::new(self, exec)));
    }
}
