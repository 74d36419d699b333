//! Watching executions: their state, waiting for their end, listing them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;

use super::executor::Execution;
use super::{Engine, EngineError, EngineInner};
use crate::model::ExecutionId;
use crate::model::execution::{ExecutionState, Progress};
use crate::model::status::Status;
use crate::store::{ExecutionQuery, NewExecution};
use crate::telemetry::Subscription;

pub(super) fn pending_state(n: &NewExecution) -> ExecutionState {
    ExecutionState {
        id: n.id,
        workflow: n.workflow.clone(),
        version: n.version.clone(),
        status: Status::Pending,
        running: Vec::new(),
        current_step: None,
        progress: Progress::default(),
        context: n.input.clone(),
        started_at: n.start_at.unwrap_or(n.created_at),
        ended_at: None,
        duration: Duration::ZERO,
        attempt: 0,
        steps: Vec::new(),
        awaiting: Vec::new(),
        failure: None,
        rollback: None,
        cancel_reason: None,
        handler_errors: Vec::new(),
        parent: n.parent.as_ref().map(|p| p.execution),
        trigger: n.trigger.clone(),
        parked: None,
        signals: Vec::new(),
        input: n.input.clone(),
        outputs: Map::new(),
    }
}

impl Engine {
    /// The state of an execution: running, parked, scheduled or ended.
    pub async fn get_state(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        self.inner.get_state(id).await
    }

    /// Waits until the execution ends and returns its final state, once that state
    /// is committed to the store (so [`history`](Self::history) includes it).
    pub async fn wait(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        self.inner.wait_for(id).await
    }

    /// Executions of `workflow` that have not ended (scheduled ones included). On a
    /// shared store, those that other nodes hold too.
    pub async fn list_running(&self, workflow: &str) -> Result<Vec<ExecutionState>, EngineError> {
        let now = self.inner.clock.now();
        let mut out: Vec<ExecutionState> = self
            .inner
            .executions
            .iter()
            .filter(|e| &**e.workflow() == workflow)
            .map(|e| e.state(now))
            .filter(|s| !s.status.is_terminal())
            .collect();
        out.extend(self.inner.delayed.iter().filter(|d| d.new.workflow == workflow).map(|d| pending_state(&d.new)));
        if self.inner.node.is_some() {
            out.extend(self.inner.remote_running(workflow).await?);
        }
        out.sort_by_key(|s| (s.started_at, s.id));
        Ok(out)
    }

    /// Ended executions from the store, newest first.
    pub async fn history(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionState>, EngineError> {
        Ok(self.inner.store.list_finished(query).await?)
    }

    /// A stream of telemetry events. Slow subscribers lose events; the engine never
    /// waits for them.
    pub fn subscribe(&self) -> Subscription {
        self.inner.bus.subscribe()
    }
}

impl EngineInner {
    pub(crate) async fn get_state(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        if let Some(e) = self.rejected_error(id) {
            return Err(e);
        }
        if let Some(exec) = self.executions.get(&id).map(|e| Arc::clone(&e)) {
            return Ok(exec.state(self.clock.now()));
        }
        if let Some(d) = self.delayed.get(&id) {
            return Ok(pending_state(&d.new));
        }
        if let Some(p) = self.parked.get(&id) {
            return Ok(p.clone());
        }
        if let Some(state) = self.store.finished(id).await? {
            return Ok(state);
        }
        if self.node.is_some()
            && let Some(cluster) = self.store.cluster()
        {
            if let Some(shared) = cluster.load(id).await? {
                return Ok(self.remote_state(&shared).await);
            }
            // It may have ended between the two reads.
            if let Some(state) = self.store.finished(id).await? {
                return Ok(state);
            }
        }
        Err(EngineError::UnknownExecution(id))
    }

    /// The final state of an execution this engine ran, once its end is
    /// committed (the flush of its final state took it out of the executions).
    pub(super) fn committed_end(&self, exec: &Execution) -> Option<ExecutionState> {
        let state = {
            let core = exec.core.lock();
            if core.abandoned {
                return None;
            }
            Arc::clone(core.final_state.as_ref()?)
        };
        if self.executions.contains_key(&exec.id) || self.rejected_error(exec.id).is_some() {
            return None;
        }
        Some((*state).clone())
    }

    pub(crate) async fn wait_for(&self, id: ExecutionId) -> Result<ExecutionState, EngineError> {
        let mut poll = Duration::from_millis(10);
        loop {
            if let Some(e) = self.rejected_error(id) {
                return Err(e);
            }
            // `delayed` first: a delayed execution joins the executions before it
            // leaves `delayed`.
            if self.delayed.contains_key(&id) {
                // Not started yet: wait for the start, then for the end.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if let Some(exec) = self.executions.get(&id).map(|e| Arc::clone(&e)) {
                let notified = exec.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (ended, abandoned) = {
                    let core = exec.core.lock();
                    (core.final_state.clone(), core.abandoned)
                };
                if abandoned {
                    // Dropped here (another node holds it, or the store refused
                    // it): what the store has decides.
                    self.executions.remove_if(&id, |_, e| Arc::ptr_eq(e, &exec));
                    continue;
                }
                if let Some(s) = ended {
                    // Answer once the end is committed: the journal's flush of the
                    // final state removes the execution from the table.
                    while self.executions.contains_key(&id) {
                        if exec.core.lock().abandoned {
                            break;
                        }
                        tokio::select! {
                            _ = self.journal.flushed(self.journal.last_ticket()) => {}
                            _ = self.shutdown.cancelled() => return Err(EngineError::ShutDown),
                        }
                        tokio::task::yield_now().await;
                    }
                    // A final state that was never committed is not an answer.
                    if exec.core.lock().abandoned {
                        continue;
                    }
                    return Ok((*s).clone());
                }
                notified.await;
                // Ended and committed while this waited: no need to look again.
                if let Some(state) = self.committed_end(&exec) {
                    return Ok(state);
                }
                continue;
            }
            if let Some(s) = self.store.finished(id).await? {
                return Ok(s);
            }
            // An end queued just now (a delayed execution cancelled) is in the
            // store once the journal has flushed.
            self.journal.flushed(self.journal.last_ticket()).await?;
            if let Some(s) = self.store.finished(id).await? {
                return Ok(s);
            }
            if self.node.is_some()
                && let Some(cluster) = self.store.cluster()
                && cluster.is_unfinished(id).await?
            {
                // Held by another node (or about to be claimed): look again soon.
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = self.shutdown.cancelled() => return Err(EngineError::ShutDown),
                }
                poll = (poll * 3 / 2).min(Duration::from_millis(500));
                continue;
            }
            // On a shared store it may have ended between the two reads.
            if self.node.is_some()
                && let Some(s) = self.store.finished(id).await?
            {
                return Ok(s);
            }
            return Err(match self.parked.get(&id) {
                Some(p) => EngineError::InvalidState {
                    id,
                    action: "wait for",
                    status: p.status,
                    reason: "it is parked after recovery".into(),
                },
                None => EngineError::UnknownExecution(id),
            });
        }
    }
}
