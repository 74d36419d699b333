//! The engine as one node of a cluster on a shared store (see
//! [`Cluster`](crate::store::Cluster)): heartbeats, claiming, commands from other
//! nodes, and the view of executions that other nodes hold.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::executor::Execution;
use super::park::ParkReason;
use super::{CancelOptions, EngineError, EngineInner, pending_state};
use crate::machine::event::ExecutionEvent;
use crate::model::ExecutionId;
use crate::model::execution::ExecutionState;
use crate::model::status::Status;
use crate::store::{
    CallOutcome, Claimed, Cluster, ClusterOptions, ControlCall, SharedExecution, Store, StoreError, Upgrade, Write,
};

/// This engine's part in the cluster.
///
/// Fencing: the node holds its executions only while its lease lives, and the
/// lease is on the database's clock. A renewal sent at local instant `t` makes
/// the lease last at least until `t + lease` on that clock; the node stops
/// starting work at `t + lease − margin` (a quarter of the lease) unless a later
/// renewal succeeded, drops everything it holds, and joins again under a new
/// identity once the database answers. So it has stopped before another node may
/// take its work over, and it can never adopt again an execution it still drives.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) options: ClusterOptions,
    /// Set by `drain`: claim nothing more.
    pub(crate) draining: AtomicBool,
    /// Wakes the claim loop from inside this process (a delayed start is due).
    pub(crate) wake: Notify,
    /// The instant all instants here count from.
    anchor: Instant,
    /// Until when (nanoseconds after `anchor`) this node may start work.
    deadline: AtomicU64,
    /// The node dropped what it held: it must join again under a new identity
    /// (the executions its old one holds become claimable when that lease ends).
    fenced: AtomicBool,
}

impl Node {
    pub(crate) fn new(options: ClusterOptions) -> Arc<Self> {
        Arc::new(Node {
            options,
            draining: AtomicBool::new(false),
            wake: Notify::new(),
            anchor: Instant::now(),
            deadline: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
        })
    }

    /// How much before its lease's end the node stops.
    fn margin(&self) -> Duration {
        self.options.lease / 4
    }

    /// A renewal sent at `sent` succeeded.
    pub(crate) fn renewed(&self, sent: Instant) {
        let until = sent + self.options.lease - self.margin();
        let nanos = until.saturating_duration_since(self.anchor).as_nanos() as u64;
        self.deadline.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Until when this node may start work.
    fn deadline(&self) -> Instant {
        self.anchor + Duration::from_nanos(self.deadline.load(Ordering::Acquire))
    }

    /// Whether the node's lease still covers starting work now: a process
    /// stopped (SIGSTOP, a frozen VM) for longer than the lease sees it has
    /// lapsed as soon as it runs again.
    pub(crate) fn holds_lease(&self) -> bool {
        !self.fenced.load(Ordering::Acquire) && Instant::now() < self.deadline()
    }

    /// Forgets the lease: nothing starts until the node joined again.
    fn lapse(&self) {
        self.deadline.store(0, Ordering::Release);
    }
}

/// The cluster side of the engine's store; only called on engines that have a
/// [`Node`], whose store always has one.
fn cluster(store: &dyn Store) -> &dyn Cluster {
    store.cluster().expect("an engine with a node runs on a shared store")
}

/// Starts the heartbeat and the claim loop.
pub(crate) fn spawn(inner: &Arc<EngineInner>, node: &Arc<Node>) {
    tokio::spawn(heartbeat_loop(
        Arc::downgrade(inner),
        Arc::clone(&inner.store),
        Arc::clone(node),
        inner.shutdown.clone(),
    ));
    tokio::spawn(claim_loop(Arc::downgrade(inner), Arc::clone(&inner.store), Arc::clone(node), inner.shutdown.clone()));
}

/// Renews the lease every third of it (more often while renewals fail), and
/// fences the node the moment its lease may have run out.
async fn heartbeat_loop(weak: Weak<EngineInner>, store: Arc<dyn Store>, node: Arc<Node>, shutdown: CancellationToken) {
    let lease = node.options.lease;
    let mut failing = false;
    loop {
        let pause = if failing { (lease / 10).min(Duration::from_secs(1)) } else { lease / 3 };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let sent = Instant::now();
        if node.fenced.load(Ordering::Acquire) {
            match cluster(&*store).rejoin(lease).await {
                Ok(fresh) => {
                    node.fenced.store(false, Ordering::Release);
                    node.renewed(sent);
                    failing = false;
                    tracing::warn!(node = %fresh, "joined the cluster again under a new identity");
                    node.wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "joining the cluster again failed; retrying");
                    failing = true;
                }
            }
            continue;
        }
        let deadline = node.deadline();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = cluster(&*store).heartbeat(lease) => Some(r),
            _ = tokio::time::sleep_until(deadline), if node.holds_lease() => None,
        };
        let Some(engine) = weak.upgrade() else { return };
        match outcome {
            Some(Ok(())) => {
                node.renewed(sent);
                failing = false;
            }
            Some(Err(StoreError::Lapsed(id))) => {
                tracing::error!(node = %id, "this node's lease lapsed: it drops its executions and joins again");
                engine.fence();
                failing = true;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "heartbeat failed; retrying");
                failing = true;
            }
            None => failing = true,
        }
        if !node.holds_lease() && !node.fenced.load(Ordering::Acquire) {
            tracing::error!("the lease may run out: this node stops its executions before others may take them");
            engine.fence();
        }
    }
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
            // A bug below (a panic) must not stop the claim loop while the
            // heartbeat keeps the lease alive.
            let turn = crate::model::guard::run(engine.turn(&node, &mut last_reap)).await;
            match turn {
                Ok(Ok(more)) => {
                    delay = Duration::ZERO;
                    more
                }
                Ok(Err(e)) => {
                    delay = (delay * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in = ?delay, "claiming work from the store failed");
                    false
                }
                Err(panicked) => {
                    delay = (delay * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                    tracing::error!(panic = %panicked.0, retry_in = ?delay, "the claim loop panicked; it goes on");
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
        if !node.holds_lease() {
            return Ok(false);
        }
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
        // Commands queued before the claim apply before anything runs: a cancel
        // sent to an execution nobody held yet keeps its first step from starting.
        let queued = cluster(&*self.store).pending_commands().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the commands of claimed executions failed");
            Vec::new()
        });
        for c in claimed {
            let id = c.stored.execution.id;
            if self.executions.contains_key(&id) {
                // Still driven here: never a second driver.
                tracing::error!(execution = %id, "claimed an execution this node still drives; ignoring the claim");
                continue;
            }
            let fresh = c.fresh && c.stored.started && c.stored.events.is_empty();
            if fresh
                && let Some(q) =
                    queued.iter().find(|q| q.execution == id && matches!(q.command, ControlCall::Cancel { .. }))
            {
                self.cancel_unstarted(&c.stored.execution, &q.command, q.seq).await;
                continue;
            }
            match self.definition(&c.stored.execution.workflow) {
                Ok(def) if fresh => {
                    let n = c.stored.execution;
                    let mut ticket = 0;
                    if def.version() != n.version {
                        let upgrade = Upgrade { id: n.id, version: def.version().to_owned(), events: Vec::new() };
                        ticket = self.journal.append(Write::Upgrade(Box::new(upgrade)));
                    }
                    let data = n.input.into_iter().collect();
                    let extras = super::Extras { kept: n.kept, ..Default::default() };
                    self.launch(n.id, def, data, n.trigger, n.parent, n.created_at, ticket, &extras, n.trace);
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

    /// Ends an execution that never started, for a cancel queued before anyone
    /// claimed it; the command is marked carried out in the same transaction.
    async fn cancel_unstarted(&self, n: &crate::store::NewExecution, command: &ControlCall, seq: i64) {
        let ControlCall::Cancel { reason, .. } = command else { return };
        let mut state = pending_state(n);
        state.status = Status::Cancelled;
        state.cancel_reason = Some(reason.clone());
        state.ended_at = Some(self.clock.now());
        let writes = vec![Write::CommandDone { command: seq, error: None }, Write::Finish(Arc::new(state))];
        let (_, ack) = self.journal.submit_all(writes);
        if let Err(e) = self.acknowledged(ack, "cancel").await {
            tracing::warn!(execution = %n.id, error = %e, "ending a cancelled execution before its start failed");
        }
    }

    /// Carries out the commands other nodes queued for executions held here; each
    /// is marked done (or rejected, with the reason) in the transaction that
    /// journals its effect.
    async fn apply_commands(self: &Arc<Self>) -> Result<(), StoreError> {
        let queued = cluster(&*self.store).pending_commands().await?;
        for q in queued {
            let done = match q.command {
                ControlCall::Cancel { reason, cleanup, rollback } if self.delayed.contains_key(&q.execution) => {
                    self.cancel(q.execution, CancelOptions { reason, cleanup, rollback }).await.map(|()| false)
                }
                command => match self.live(q.execution) {
                    Ok(exec) => self.control_here(&exec, command, Some(q.seq)).await.map(|()| true),
                    Err(e) => Err(e),
                },
            };
            match done {
                Ok(true) => {}
                Ok(false) => {
                    self.journal.append(Write::CommandDone { command: q.seq, error: None });
                }
                // Not held here after all: its next holder carries it out.
                Err(EngineError::NotHeld(_) | EngineError::ShutDown | EngineError::Timeout { .. }) => {}
                Err(e) => {
                    tracing::info!(execution = %q.execution, error = %e, "a command from another node does not apply");
                    let reason = match e {
                        EngineError::InvalidState { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    self.journal.append(Write::CommandDone { command: q.seq, error: Some(reason) });
                }
            }
        }
        Ok(())
    }

    /// Drops every execution this node holds: its lease may have run out, so
    /// another node may hold them already. Their drivers stop and their running
    /// steps are dropped; nothing of them is written from here any more.
    pub(crate) fn fence(&self) {
        if let Some(node) = &self.node {
            node.lapse();
            node.fenced.store(true, Ordering::Release);
        }
        let ids: Vec<ExecutionId> = self.executions.iter().map(|e| *e.key()).collect();
        let delayed: Vec<ExecutionId> = self.delayed.iter().map(|e| *e.key()).collect();
        if !ids.is_empty() || !delayed.is_empty() {
            tracing::warn!(executions = ids.len(), delayed = delayed.len(), "fenced: dropping what this node held");
        }
        self.abandon(&ids);
        self.abandon(&delayed);
        self.parked.clear();
    }

    /// The event a control command stands for, on `exec`, and the action's name
    /// for errors.
    pub(crate) fn command_event(
        &self,
        exec: &Execution,
        command: ControlCall,
    ) -> Result<(&'static str, ExecutionEvent), EngineError> {
        let at = self.clock.now();
        Ok(match command {
            ControlCall::Pause => ("pause", ExecutionEvent::Paused { at }),
            ControlCall::Resume { step, context } => {
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
                ("resume", ExecutionEvent::Resumed { step, data: context, at })
            }
            ControlCall::Cancel { reason, cleanup, rollback } => {
                ("cancel", ExecutionEvent::Cancelled { reason, cleanup, rollback, at })
            }
            ControlCall::Signal { name, payload } => {
                ("signal", ExecutionEvent::Signalled { name: Arc::from(name), payload, at })
            }
        })
    }

    /// Sends a control command to the node that holds `id` (or will claim it) and
    /// waits, at most the call timeout, until that node has carried it out and
    /// committed its effect.
    pub(crate) async fn control_remote(&self, id: ExecutionId, command: ControlCall) -> Result<(), EngineError> {
        let action = match &command {
            ControlCall::Pause => "pause",
            ControlCall::Resume { .. } => "resume",
            ControlCall::Cancel { .. } => "cancel",
            ControlCall::Signal { .. } => "signal",
        };
        let cluster = cluster(&*self.store);
        if !matches!(command, ControlCall::Cancel { .. })
            && let Some(shared) = cluster.load(id).await?
            && !shared.stored.started
        {
            return Err(EngineError::InvalidState {
                id,
                action,
                status: Status::Pending,
                reason: "it has not started yet".into(),
            });
        }
        let seq = match cluster.send(id, &command).await {
            Ok(seq) => seq,
            Err(StoreError::UnknownExecution(_)) => return Err(self.ended_or_unknown(id).await),
            Err(e) => return Err(e.into()),
        };
        let deadline = Instant::now() + self.call_timeout;
        let mut poll = Duration::from_millis(2);
        loop {
            match cluster.command_outcome(seq).await? {
                CallOutcome::Queued => {}
                outcome => {
                    let _ = cluster.forget_command(seq).await;
                    return match outcome {
                        CallOutcome::Rejected(reason) => {
                            let status = self.get_state(id).await.map(|s| s.status).unwrap_or(Status::Running);
                            Err(EngineError::InvalidState { id, action, status, reason })
                        }
                        CallOutcome::Gone => Err(self.ended_or_unknown(id).await),
                        _ => Ok(()),
                    };
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Timeout { action, after: self.call_timeout });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_millis(100));
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
    async fn rebuild(&self, shared: &SharedExecution) -> Result<Arc<Execution>, ParkReason> {
        let n = &shared.stored.execution;
        let def = self.definition(&n.workflow).map_err(|e| ParkReason::Definition(Box::new(e)))?;
        if def.version() != n.version {
            return Err(ParkReason::OtherVersion {
                workflow: n.workflow.clone(),
                then: n.version.clone(),
                now: def.version().to_owned(),
            });
        }
        let machine = super::recovery::replay(&def, &shared.stored, None).await?.0;
        Ok(Arc::new(Execution::new(
            n.id,
            def,
            machine,
            n.trigger.clone(),
            n.parent.clone(),
            n.trace.clone(),
            n.priority,
        )))
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

    /// Stops an execution the store refused a write of: its driver stops and its
    /// running steps are dropped; calls about it answer with the store's reason.
    pub(crate) fn reject(&self, id: ExecutionId, error: &StoreError) {
        self.rejected.insert(id, error.to_string());
        self.delayed.remove(&id);
        if let Some((_, exec)) = self.executions.remove(&id) {
            tracing::error!(execution = %id, %error, "the store refused a write of this execution; it stops here");
            exec.abandon();
        }
    }

    /// The error for a call about an execution the store refused a write of.
    pub(crate) fn rejected_error(&self, id: ExecutionId) -> Option<EngineError> {
        self.rejected.get(&id).map(|reason| EngineError::Store(StoreError::Rejected(reason.clone())))
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
