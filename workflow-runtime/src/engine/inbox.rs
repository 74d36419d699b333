//! The engine's side of a store's request queue ([`Inbox`]): tools beside the
//! engine that holds an SQLite file (the `sagaflow` command line, a dashboard over
//! the file) queue requests in it, and this task carries them out.
//!
//! Every [`POLL`] the task reads the queue (one indexed `SELECT`, at the head of
//! an empty table while nothing is queued), carries each request out through the
//! path the engine's own calls take (`cancel`, `pause`, `resume`, dead-letter
//! replay, removal and purge), waiting until what it did is committed, and then
//! deletes the requests it handled. A request that does not apply (its execution
//! ended meanwhile, or is not paused...) is logged and deleted too.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{CancelOptions, Engine, EngineInner};
use crate::store::{ControlCall, Request};

/// How often the queue is read.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Requests handled per read of the queue.
const BATCH: usize = 64;

/// Starts the task if the engine's store has a request queue.
pub(crate) fn spawn(inner: &Arc<EngineInner>) {
    if inner.store.inbox().is_none() {
        return;
    }
    let weak = Arc::downgrade(inner);
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if !turn(&weak).await {
                return;
            }
        }
    });
}

/// Handles what is queued; false once the engine is gone.
async fn turn(weak: &Weak<EngineInner>) -> bool {
    let Some(inner) = weak.upgrade() else { return false };
    let Some(inbox) = inner.store.inbox() else { return false };
    let queued = match inbox.queued(BATCH).await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "reading the request queue failed; retrying");
            return true;
        }
    };
    if queued.is_empty() {
        return true;
    }
    let mut done = Vec::with_capacity(queued.len());
    for q in queued {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let action = q.request.action();
        let target = q.request.execution();
        match carry_out(&inner, q.request).await {
            Ok(()) => tracing::info!(action, execution = ?target, "carried out a queued request"),
            Err(e) => tracing::info!(action, execution = ?target, error = %e, "a queued request does not apply"),
        }
        done.push(q.seq);
    }
    if let Err(e) = inbox.remove(&done).await {
        tracing::warn!(error = %e, "deleting carried-out requests failed; they will be seen again");
    }
    true
}

async fn carry_out(inner: &Arc<EngineInner>, request: Request) -> Result<(), super::EngineError> {
    let engine = Engine { inner: Arc::clone(inner) };
    match request {
        Request::Control { execution, command: ControlCall::Cancel { reason, cleanup, rollback } } => {
            inner.cancel(execution, CancelOptions { reason, cleanup, rollback }).await
        }
        Request::Control { execution, command } => inner.control(execution, command).await,
        Request::ReplayDeadLetter { id } => engine.dead_letters().replay(id).await.map(drop),
        Request::RemoveDeadLetter { id } => engine.dead_letters().remove(id).await,
        Request::PurgeExpiredDeadLetters => engine.dead_letters().purge_expired().await.map(drop),
        Request::RestartFrom { execution, step, context } => {
            engine.restart_from(execution, &step, context).await.map(drop)
        }
        Request::PurgeHistory { workflow, ended_before } => {
            engine.purge_history(workflow.as_deref(), ended_before).await.map(drop)
        }
    }
}
