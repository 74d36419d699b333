//! The engine as one node of a cluster on a shared store (see
//! [`Cluster`](crate::store::Cluster)): heartbeats, claiming, commands from other
//! nodes, and the view of executions that other nodes hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::executor::Execution;
use super::{CancelOptions, EngineError, EngineInner, pending_state};
use crate::machine::event::Event;
use crate::machine::state::Status;
use crate::machine::view::ExecutionState;
use crate::model::ExecutionId;
use crate::store::{Claimed, Cluster, ClusterOptions, Command, SharedExecution, Store, StoreError, Upgrade, Write};

/// This engine's part in the cluster.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) options: ClusterOptions,
    /// Set by `drain`: claim nothing more.
    pub(crate) draining: AtomicBool,
    /// Wakes the claim loop from inside this process (a delayed start is due).
    pub(crate) wake: Notify,
}

impl Node {
    pub(crate) fn new(options: ClusterOptions) -> Arc<Self> {
        Arc::new(Node { options, draining: AtomicBool::new(false), wake: Notify::new() })
    }
}

/// The cluster side of the engine's store; only called on engines that have a
/// [`Node`], whose store always has one.
fn cluster(store: &dyn Store) -> &dyn Cluster {
    store.cluster().expect("an engine with a node runs on a shared store")
}

/// Starts the heartbeat and the claim loop.
pub(crate) fn spawn(inner: &Arc<EngineInner>, node: &Arc<Node>) {
    let store = Arc::clone(&inner.store);
    let lease = node.options.lease;
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        let mut last_ok = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(lease / 3) => {}
            }
            match cluster(&*store).heartbeat(lease).await {
                Ok(()) => last_ok = Instant::now(),
                Err(e) => {
                    let silent = last_ok.elapsed();
                    if silent >= lease {
                        tracing::error!(error = %e, ?silent, "heartbeat failing for longer than the lease: \
                            other nodes may take this node's executions over");
                    } else {
                        tracing::warn!(error = %e, "heartbeat failed; retrying");
                    }
                }
            }
        }
    });
    tokio::spawn(claim_loop(Arc::downgrade(inner), Arc::clone(&inner.store), Arc::clone(node), inner.shutdown.clone()));
}

async fn claim_loop(weak: Weak<EngineInner>, store: Arc<dyn Store>, node: Arc<Node>, shutdown: CancellationToken) {
    let poll = node.options.poll;
    let mut last_reap: Option<Instant> = None;
    let mut delay = Duration::ZERO;
    loop {
        let more = {
            let Some(engine) = weak.upgrade() else { return };
            if shutdown.is_cancelled() {
                return;
            }
            match engine.turn(&node, &mut last_reap).await {
                Ok(more) => {
                    delay = Duration::ZERO;
                    more
                }
                Err(e) => {
                    delay = (delay * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in = ?delay, "claiming work from the store failed");
                    false
                }
            }
        };
        if more && delay.is_zero() {
            continue;
        }
        let wait = if delay.is_zero() { poll } else { delay };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = cluster(&*store).notified(), if delay.is_zero() => {}
            _ = node.wake.notified(), if delay.is_zero() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl EngineInner {
    /// One round of the claim loop: reap expired nodes (once per poll interval),
    /// apply commands, claim. Returns whether a full batch was claimed (there may
    /// be more).
    async fn turn(self: &Arc<Self>, node: &Node, last_reap: &mut Option<Instant>) -> Result<bool, StoreError> {
        let cluster = cluster(&*self.store);
        if last_reap.is_none_or(|at| at.elapsed() >= node.options.poll) {
            cluster.reap().await?;
            *last_reap = Some(Instant::now());
        }
        self.apply_commands().await?;
        if node.draining.load(Ordering::Acquire) || node.options.capacity == 0 {
            return Ok(false);
        }
        let held = self.executions.len() + self.delayed.len() + self.parked.len();
        let free = node.options.capacity.saturating_sub(held);
        if free == 0 {
            return Ok(false);
        }
        let limit = free.min(node.options.batch);
        let workflows = self.registry.read().names();
        let claimed = cluster.claim(&workflows, limit).await?;
        let full = claimed.len() == limit;
        if !claimed.is_empty() {
            self.adopt_claimed(claimed).await;
            self.apply_commands().await?;
        }
        Ok(full)
    }

    /// Starts what was claimed: fresh executions as new, the others as recovery
    /// resumes them (running steps run again with the next attempt number).
    async fn adopt_claimed(self: &Arc<Self>, claimed: Vec<Claimed>) {
        let mut stored = Vec::new();
        for c in claimed {
            let fresh = c.fresh && c.stored.started && c.stored.events.is_empty();
            match self.definition(&c.stored.execution.workflow) {
                Ok(def) if fresh => {
                    let n = c.stored.execution;
                    let mut ticket = 0;
                    if def.version() != n.version {
                        let upgrade = Upgrade { id: n.id, version: def.version().to_owned(), events: Vec::new() };
                        ticket = self.journal.append(Write::Upgrade(Box::new(upgrade)));
                    }
                    let data = n.input.into_iter().collect();
                    self.launch(n.id, def, data, n.trigger, n.parent, n.created_at, ticket);
                }
                _ => stored.push(c.stored),
            }
        }
        if stored.is_empty() {
            return;
        }
        let report = self.resume_all(stored).await;
        if report.resumed + report.parked.len() > 0 {
            tracing::info!(
                resumed = report.resumed,
                upgraded = report.upgraded,
                parked = report.parked.len(),
                "took over executions from the store"
            );
        }
    }

    /// Applies the commands other nodes queued for executions held here, and
    /// acknowledges them once what they did is committed.
    async fn apply_commands(self: &Arc<Self>) -> Result<(), StoreError> {
        let cluster = cluster(&*self.store);
        let queued = cluster.pending_commands().await?;
        if queued.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(queued.len());
        for q in queued {
            if let Err(e) = self.command_here(q.execution, q.command).await {
                tracing::info!(execution = %q.execution, error = %e, "a command from another node does not apply");
            }
            seqs.push(q.seq);
        }
        cluster.ack_commands(&seqs).await
    }

    /// Carries out a command on an execution held here.
    async fn command_here(self: &Arc<Self>, id: ExecutionId, command: Command) -> Result<(), EngineError> {
        match command {
            Command::Cancel { reason, cleanup, rollback } if self.delayed.contains_key(&id) => {
                self.cancel(id, CancelOptions { reason, cleanup, rollback }).await
            }
            command => self.control_here(&self.live(id)?, command).await,
        }
    }

    /// The event a control command stands for, on `exec`, and the action's name
    /// for errors.
    pub(crate) fn command_event(
        &self,
        exec: &Execution,
        command: Command,
    ) -> Result<(&'static str, Event), EngineError> {
        let at = self.clock.now();
        Ok(match command {
            Command::Pause => ("pause", Event::Paused { at }),
            Command::Resume { step, context } => {
                let step = match step {
                    None => None,
                    Some(name) => {
                        let found = exec.core.lock().machine.step_id(&name);
                        Some(found.ok_or_else(|| EngineError::InvalidState {
                            id: exec.id,
                            action: "resume",
                            status: exec.state(at).status,
                            reason: format!("it has no step `{name}`"),
                        })?)
                    }
                };
                ("resume", Event::Resumed { step, data: context, at })
            }
            Command::Cancel { reason, cleanup, rollback } => {
                ("cancel", Event::Cancelled { reason, cleanup, rollback, at })
            }
        })
    }

    /// Sends a control command to the node that holds `id`, after checking that
    /// it applies to the execution as its journal stands.
    pub(crate) async fn control_remote(&self, id: ExecutionId, command: Command) -> Result<(), EngineError> {
        let cluster = cluster(&*self.store);
        let Some(shared) = cluster.load(id).await? else {
            return Err(self.ended_or_unknown(id).await);
        };
        if shared.stored.started
            && let Ok(exec) = self.rebuild(&shared).await
        {
            let (action, event) = self.command_event(&exec, command.clone())?;
            let mut core = exec.core.lock();
            let mut discard = Vec::new();
            if let Err(e) = core.machine.apply(event, &mut discard) {
                drop(core);
                return Err(self.invalid(&exec, action, e));
            }
        } else if !matches!(command, Command::Cancel { .. }) {
            return Err(EngineError::InvalidState {
                id,
                action: if matches!(command, Command::Pause) { "pause" } else { "resume" },
                status: Status::Pending,
                reason: "it has not started yet".into(),
            });
        }
        match cluster.send(id, &command).await {
            Ok(()) => Ok(()),
            Err(StoreError::UnknownExecution(_)) => Err(self.ended_or_unknown(id).await),
            Err(e) => Err(e.into()),
        }
    }

    /// The error for a control call on an execution that is not running: it ended,
    /// or it never existed.
    pub(crate) async fn ended_or_unknown(&self, id: ExecutionId) -> EngineError {
        match self.store.finished(id).await {
            Ok(Some(state)) => {
                EngineError::InvalidState { id, action: "control", status: state.status, reason: "it has ended".into() }
            }
            Ok(None) => EngineError::UnknownExecution(id),
            Err(e) => e.into(),
        }
    }

    /// An execution held elsewhere, rebuilt from its journal (never run here).
    async fn rebuild(&self, shared: &SharedExecution) -> Result<Arc<Execution>, String> {
        let n = &shared.stored.execution;
        let def = self.definition(&n.workflow).map_err(|e| e.to_string())?;
        if def.version() != n.version {
            return Err(format!("it runs version {} of `{}`, this node has {}", n.version, n.workflow, def.version()));
        }
        let machine = super::recovery::replay(&def, &shared.stored, None).await?.0;
        Ok(Arc::new(Execution::new(n.id, def, machine, n.trigger.clone(), n.parent.clone())))
    }

    /// The state of an execution held elsewhere, as its journal shows it.
    pub(crate) async fn remote_state(&self, shared: &SharedExecution) -> ExecutionState {
        let n = &shared.stored.execution;
        if !shared.stored.started {
            return pending_state(n);
        }
        match self.rebuild(shared).await {
            Ok(exec) => exec.state(self.clock.now()),
            Err(reason) => {
                let mut state = pending_state(n);
                state.status = Status::Running;
                state.parked = Some(format!("held by another node; its journal cannot be shown here: {reason}"));
                state
            }
        }
    }

    /// Unfinished executions of `workflow` held by other nodes (or by nobody yet).
    pub(crate) async fn remote_running(&self, workflow: &str) -> Result<Vec<ExecutionState>, EngineError> {
        let cluster = cluster(&*self.store);
        let mut out = Vec::new();
        for shared in cluster.unfinished_of(workflow).await? {
            let id = shared.stored.execution.id;
            if self.executions.contains_key(&id) || self.delayed.contains_key(&id) || self.parked.contains_key(&id) {
                continue;
            }
            out.push(self.remote_state(&shared).await);
        }
        Ok(out)
    }

    /// Drops executions that another node holds now: their drivers stop, and their
    /// running steps are dropped.
    pub(crate) fn abandon(&self, ids: &[ExecutionId]) {
        for id in ids {
            if let Some((_, exec)) = self.executions.remove(id) {
                tracing::warn!(execution = %id, "another node holds this execution now; dropping it here");
                exec.abandon();
            }
            self.delayed.remove(id);
            self.parked.remove(id);
        }
    }
}
