//! Group commit: every durable write goes through one writer task that flushes
//! whatever accumulated while the previous flush ran, in one store transaction.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::model::ExecutionId;
use crate::store::{Store, StoreError, Write};

/// Largest batch handed to the store at once.
const MAX_BATCH: usize = 4096;

#[derive(Default)]
struct Buf {
    writes: Vec<Write>,
    /// Ticket of the last write appended.
    ticket: u64,
    closed: bool,
}

/// The write-ahead queue in front of a store.
pub(crate) struct Journal {
    store: Arc<dyn Store>,
    buf: Mutex<Buf>,
    wake: Notify,
    flushed: watch::Sender<u64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("flushed", &*self.flushed.borrow()).finish_non_exhaustive()
    }
}

impl Journal {
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Journal { store, buf: Mutex::new(Buf::default()), wake: Notify::new(), flushed: watch::channel(0).0 })
    }

    /// Queues a write; returns the ticket to wait on for its durability.
    pub(crate) fn append(&self, write: Write) -> u64 {
        let mut buf = self.buf.lock();
        buf.writes.push(write);
        buf.ticket += 1;
        let ticket = buf.ticket;
        let first = buf.writes.len() == 1;
        drop(buf);
        if first {
            self.wake.notify_one();
        }
        ticket
    }

    /// Resolves once every write up to `ticket` is committed.
    pub(crate) async fn flushed(&self, ticket: u64) {
        let mut rx = self.flushed.subscribe();
        // The sender lives as long as the journal; an error means shutdown.
        let _ = rx.wait_for(|&done| done >= ticket).await;
    }

    /// The ticket of the last queued write.
    pub(crate) fn last_ticket(&self) -> u64 {
        self.buf.lock().ticket
    }

    /// Stops the writer once the queue is drained.
    pub(crate) fn close(&self) {
        self.buf.lock().closed = true;
        self.wake.notify_one();
    }

    /// The writer task. `on_flush` sees each batch once it is committed. When the
    /// store refuses writes for executions that it no longer has for this engine
    /// (another node holds them, or they ended there), those writes are dropped,
    /// `on_lost` hears of the executions, and the rest of the batch is retried.
    pub(crate) async fn run(
        self: Arc<Self>,
        on_flush: impl Fn(&[Write]) + Send + 'static,
        on_lost: impl Fn(&[ExecutionId]) + Send + 'static,
    ) {
        loop {
            let notified = self.wake.notified();
            let taken = {
                let mut buf = self.buf.lock();
                if buf.writes.is_empty() {
                    if buf.closed {
                        return;
                    }
                    None
                } else if buf.writes.len() > MAX_BATCH {
                    let rest = buf.writes.split_off(MAX_BATCH);
                    let batch = std::mem::replace(&mut buf.writes, rest);
                    let ticket = buf.ticket - buf.writes.len() as u64;
                    Some((batch, ticket))
                } else {
                    Some((std::mem::take(&mut buf.writes), buf.ticket))
                }
            };
            let Some((mut batch, ticket)) = taken else {
                notified.await;
                continue;
            };
            let mut delay = Duration::from_millis(10);
            loop {
                match self.store.write(&batch).await {
                    Ok(()) => break,
                    Err(StoreError::NotHeld(ids)) => {
                        tracing::warn!(executions = ids.len(), "writes for executions another node holds dropped");
                        batch.retain(|w| !w.execution().is_some_and(|id| ids.contains(&id)));
                        on_lost(&ids);
                    }
                    Err(StoreError::UnknownExecution(id)) if self.store.cluster().is_some() => {
                        tracing::warn!(execution = %id, "writes for an execution that ended on another node dropped");
                        batch.retain(|w| w.execution() != Some(id));
                        on_lost(&[id]);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, writes = batch.len(), "store write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            on_flush(&batch);
            self.flushed.send_replace(ticket);
        }
    }
}
