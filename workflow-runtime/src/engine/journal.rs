//! Group commit: every durable write goes through one writer task that flushes
//! whatever accumulated while the previous flush ran, in one store transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
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
///
/// Every write gets a ticket, in the order of [`append`](Self::append); a flush
/// commits a prefix of the queue, so "ticket `t` is durable" means every write up
/// to `t` is. Executions' drivers wait on their latest ticket before they carry
/// out what its events asked for (the write-ahead rule, see `executor`); they
/// register a waker with [`poll_durable`](Self::poll_durable), and each flush
/// wakes those it satisfied, so a thousand executions waiting on one group
/// commit cost one wake each.
pub(crate) struct Journal {
    store: Arc<dyn Store>,
    buf: Mutex<Buf>,
    wake: Notify,
    flushed: watch::Sender<u64>,
    /// The same as `flushed`, readable without a lock.
    durable: AtomicU64,
    /// Drivers waiting for a ticket to become durable.
    waiters: Mutex<Vec<(u64, Waker)>>,
    /// The writer has stopped (after `close`): nothing more becomes durable.
    stopped: AtomicBool,
}

/// A write was queued after the journal closed (the engine shut down): it will
/// never be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Closed;

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("flushed", &*self.flushed.borrow()).finish_non_exhaustive()
    }
}

impl Journal {
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Journal {
            store,
            buf: Mutex::new(Buf::default()),
            wake: Notify::new(),
            flushed: watch::channel(0).0,
            durable: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        })
    }

    /// Queues a write; returns the ticket to wait on for its durability. Once the
    /// journal is closed, the write is dropped: its ticket never becomes durable.
    pub(crate) fn append(&self, write: Write) -> u64 {
        let mut buf = self.buf.lock();
        buf.ticket += 1;
        let ticket = buf.ticket;
        if buf.closed {
            tracing::debug!("a write after the engine shut down is dropped");
            return ticket;
        }
        buf.writes.push(write);
        let first = buf.writes.len() == 1;
        drop(buf);
        if first {
            self.wake.notify_one();
        }
        ticket
    }

    /// Resolves once every write up to `ticket` is committed, or fails once the
    /// writer has stopped without committing it.
    pub(crate) async fn flushed(&self, ticket: u64) -> Result<(), Closed> {
        let mut rx = self.flushed.subscribe();
        // The sender lives as long as the journal.
        let _ = rx.wait_for(|&done| done >= ticket || self.stopped.load(Ordering::Acquire)).await;
        if self.is_durable(ticket) { Ok(()) } else { Err(Closed) }
    }

    /// Resolves once the writer has stopped (after [`close`](Self::close), every
    /// write queued before it is committed).
    pub(crate) async fn stopped(&self) {
        let mut rx = self.flushed.subscribe();
        let _ = rx.wait_for(|_| self.stopped.load(Ordering::Acquire)).await;
    }

    /// Whether every write up to `ticket` is committed.
    pub(crate) fn is_durable(&self, ticket: u64) -> bool {
        self.durable.load(Ordering::Acquire) >= ticket
    }

    /// Ready once every write up to `ticket` is committed; otherwise registers the
    /// task's waker, which the flush that commits `ticket` wakes. Each pending
    /// poll registers again: callers poll again only after a wake, or track what
    /// they registered.
    pub(crate) fn poll_durable(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_durable(ticket) {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.lock();
        // The writer publishes `durable` before it takes this lock: checking again
        // under the lock means a flush either sees this waker or is seen here.
        if self.is_durable(ticket) {
            return Poll::Ready(());
        }
        waiters.push((ticket, cx.waker().clone()));
        Poll::Pending
    }

    /// Publishes that every write up to `ticket` is committed, and wakes whoever
    /// waited for it.
    fn publish(&self, ticket: u64) {
        self.durable.store(ticket, Ordering::Release);
        let ready: Vec<Waker> = self.waiters.lock().extract_if(.., |(t, _)| *t <= ticket).map(|(_, w)| w).collect();
        for w in ready {
            w.wake();
        }
        self.flushed.send_replace(ticket);
    }

    /// Marks the writer stopped and wakes everyone who waits on it.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let waiters: Vec<Waker> = self.waiters.lock().drain(..).map(|(_, w)| w).collect();
        for w in waiters {
            w.wake();
        }
        self.flushed.send_modify(|_| {});
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
                        drop(buf);
                        self.stop();
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
            self.publish(ticket);
        }
    }
}
