//! Group commit: every durable write goes through one writer task that flushes
//! whatever accumulated while the previous flush ran, in one store transaction.
//!
//! Errors have a class. Transient ones (the store is unreachable, a transaction
//! lost a conflict) are retried with backoff. A write the store refuses for good
//! fails alone: the batch is split until the culprit is found, the writes of its
//! execution are refused from then on (its journal must not have a gap), the
//! engine hears of it, and every other write goes on. Writes for executions that
//! another node holds now, or that ended there, are dropped the same way.
//! Acknowledged calls ([`submit`](Journal::submit)) learn what became of their
//! write.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};

use crate::model::ExecutionId;
use crate::store::{Store, StoreError, Write};

/// Largest batch handed to the store at once.
const MAX_BATCH: usize = 4096;

/// Why a write was not committed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// The engine shut down first.
    #[error("the engine shut down before the write was committed")]
    Closed,
    /// Another node holds the execution now.
    #[error("execution {0} is held by another node now")]
    NotHeld(ExecutionId),
    /// The execution ended (on another node), or was never created.
    #[error("execution {0} is no longer in the store")]
    Gone(ExecutionId),
    /// The store refused this write, or an earlier one of the same execution.
    #[error("the store refused the write: {0}")]
    Rejected(String),
}

/// What an acknowledged write's caller waits on.
pub(crate) type Ack = oneshot::Receiver<Result<(), WriteError>>;

type AckSender = oneshot::Sender<Result<(), WriteError>>;

#[derive(Default)]
struct Buf {
    writes: Vec<Write>,
    /// The acknowledgement of each write, if its caller waits for one.
    acks: Vec<Option<AckSender>>,
    /// Ticket of the last write appended.
    ticket: u64,
    closed: bool,
}

/// Writes on their way to the store, with their acknowledgements.
struct Chunk {
    writes: Vec<Write>,
    acks: Vec<Option<AckSender>>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.writes.len()
    }

    fn split_off(&mut self, at: usize) -> Chunk {
        Chunk { writes: self.writes.split_off(at), acks: self.acks.split_off(at) }
    }

    /// Takes out the writes of the executions for which `gone` says why, and
    /// tells their callers.
    fn drop_where(&mut self, gone: impl Fn(ExecutionId) -> Option<WriteError>) {
        let mut keep = 0;
        for i in 0..self.writes.len() {
            match subject(&self.writes[i]).and_then(&gone) {
                Some(why) => {
                    if let Some(ack) = self.acks[i].take() {
                        let _ = ack.send(Err(why));
                    }
                }
                None => {
                    self.writes.swap(keep, i);
                    self.acks.swap(keep, i);
                    keep += 1;
                }
            }
        }
        self.writes.truncate(keep);
        self.acks.truncate(keep);
    }

    fn answer(&mut self, result: Result<(), WriteError>) {
        for ack in self.acks.iter_mut().filter_map(Option::take) {
            let _ = ack.send(result.clone());
        }
    }
}

/// The execution a write belongs to, its creation included.
fn subject(write: &Write) -> Option<ExecutionId> {
    match write {
        Write::Create(n) => Some(n.id),
        other => other.execution(),
    }
}

/// What the writer tells the engine.
pub(crate) struct Hooks {
    /// A batch of writes is committed.
    pub(crate) on_flush: FlushHook,
    /// These executions are held by another node now, or ended there.
    pub(crate) on_lost: LostHook,
    /// The store refused a write of this execution for good.
    pub(crate) on_rejected: RejectedHook,
}

/// See [`Hooks::on_flush`].
pub(crate) type FlushHook = Box<dyn Fn(&[Write]) + Send + Sync>;
/// See [`Hooks::on_lost`].
pub(crate) type LostHook = Box<dyn Fn(&[ExecutionId]) + Send + Sync>;
/// See [`Hooks::on_rejected`].
pub(crate) type RejectedHook = Box<dyn Fn(ExecutionId, &StoreError) + Send + Sync>;

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
    /// Executions one of whose writes the store refused: their later writes are
    /// refused too, so that their journals have no gap.
    poisoned: Mutex<HashSet<ExecutionId>>,
    /// What a commit tells the engine (set once, before the writer starts).
    hooks: OnceLock<Hooks>,
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
            poisoned: Mutex::new(HashSet::new()),
            hooks: OnceLock::new(),
        })
    }

    /// Queues a write; returns the ticket to wait on for its durability. Once the
    /// journal is closed, the write is dropped: its ticket never becomes durable.
    pub(crate) fn append(&self, write: Write) -> u64 {
        self.push(write, None)
    }

    /// Queues a write whose caller wants to know what became of it: the [`Ack`]
    /// answers once it is committed, or why it was not.
    pub(crate) fn submit(&self, write: Write) -> (u64, Ack) {
        let (tx, rx) = oneshot::channel();
        (self.push(write, Some(tx)), rx)
    }

    /// Queues writes that belong together, one after the other with nothing in
    /// between (so that they normally share a transaction); the [`Ack`] answers
    /// for the last.
    pub(crate) fn submit_all(&self, writes: Vec<Write>) -> (u64, Ack) {
        let (tx, rx) = oneshot::channel();
        let mut buf = self.buf.lock();
        let n = writes.len();
        if buf.closed {
            buf.ticket += n as u64;
            let _ = tx.send(Err(WriteError::Closed));
            return (buf.ticket, rx);
        }
        let first = buf.writes.is_empty();
        let mut tx = Some(tx);
        for (i, w) in writes.into_iter().enumerate() {
            buf.ticket += 1;
            buf.writes.push(w);
            buf.acks.push(if i + 1 == n { tx.take() } else { None });
        }
        let ticket = buf.ticket;
        drop(buf);
        if first {
            self.wake.notify_one();
        }
        (ticket, rx)
    }

    fn push(&self, write: Write, ack: Option<AckSender>) -> u64 {
        let mut buf = self.buf.lock();
        buf.ticket += 1;
        let ticket = buf.ticket;
        if buf.closed {
            tracing::debug!("a write after the engine shut down is dropped");
            if let Some(ack) = ack {
                let _ = ack.send(Err(WriteError::Closed));
            }
            return ticket;
        }
        // Nothing queued or being committed: a store that commits without waiting
        // takes the write here, in order, and saves the writer task a wake-up.
        if buf.writes.is_empty()
            && self.durable.load(Ordering::Acquire) + 1 == ticket
            && let Some(hooks) = self.hooks.get()
        {
            let batch = std::slice::from_ref(&write);
            if let Some(Ok(())) = self.store.write_now(batch) {
                // Published under the lock: no later ticket can be durable yet.
                self.publish(ticket);
                drop(buf);
                (hooks.on_flush)(batch);
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
                return ticket;
            }
        }
        buf.writes.push(write);
        buf.acks.push(ack);
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

    /// The writer task: takes what accumulated, commits it (see the module
    /// documentation for what happens to writes that fail), tells `hooks`, and
    /// marks the batch's tickets durable. The hooks are in place when this
    /// returns, before the task first runs.
    pub(crate) fn run(self: Arc<Self>, hooks: Hooks) -> impl Future<Output = ()> + Send + 'static {
        if self.hooks.set(hooks).is_err() {
            tracing::error!("the journal's writer was started twice");
        }
        self.write_loop()
    }

    async fn write_loop(self: Arc<Self>) {
        let Some(hooks) = self.hooks.get() else { return };
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
                    let writes = buf.writes.split_off(MAX_BATCH);
                    let acks = buf.acks.split_off(MAX_BATCH);
                    let chunk = Chunk {
                        writes: std::mem::replace(&mut buf.writes, writes),
                        acks: std::mem::replace(&mut buf.acks, acks),
                    };
                    let ticket = buf.ticket - buf.writes.len() as u64;
                    Some((chunk, ticket))
                } else {
                    let chunk = Chunk { writes: std::mem::take(&mut buf.writes), acks: std::mem::take(&mut buf.acks) };
                    Some((chunk, buf.ticket))
                }
            };
            let Some((chunk, ticket)) = taken else {
                notified.await;
                continue;
            };
            self.commit(chunk, hooks).await;
            self.publish(ticket);
        }
    }

    /// Commits `chunk` and answers its acknowledgements. A permanent error splits
    /// it in halves, committed one after the other (so order holds), until the
    /// write that causes it stands alone.
    fn commit<'a>(&'a self, mut chunk: Chunk, hooks: &'a Hooks) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let mut delay = Duration::from_millis(10);
            loop {
                {
                    let poisoned = self.poisoned.lock();
                    if !poisoned.is_empty() {
                        chunk.drop_where(|id| {
                            poisoned.contains(&id).then(|| {
                                WriteError::Rejected(format!("an earlier write of execution {id} was refused"))
                            })
                        });
                    }
                }
                if chunk.len() == 0 {
                    return;
                }
                match self.store.write(&chunk.writes).await {
                    Ok(()) => {
                        (hooks.on_flush)(&chunk.writes);
                        chunk.answer(Ok(()));
                        return;
                    }
                    Err(StoreError::NotHeld(ids)) => {
                        tracing::warn!(executions = ids.len(), "writes for executions another node holds dropped");
                        chunk.drop_where(|id| ids.contains(&id).then_some(WriteError::NotHeld(id)));
                        (hooks.on_lost)(&ids);
                    }
                    Err(StoreError::UnknownExecution(id)) => {
                        tracing::warn!(execution = %id, "writes for an execution the store no longer has dropped");
                        chunk.drop_where(|x| (x == id).then_some(WriteError::Gone(id)));
                        (hooks.on_lost)(&[id]);
                    }
                    Err(e) if e.is_transient() => {
                        tracing::error!(error = %e, writes = chunk.len(), "store write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) if chunk.len() == 1 => {
                        let id = subject(&chunk.writes[0]);
                        tracing::error!(error = %e, execution = ?id, "the store refused a write for good");
                        if let Some(id) = id {
                            self.poisoned.lock().insert(id);
                            (hooks.on_rejected)(id, &e);
                        }
                        chunk.answer(Err(WriteError::Rejected(e.to_string())));
                        return;
                    }
                    Err(_) => {
                        let right = chunk.split_off(chunk.len() / 2);
                        self.commit(chunk, hooks).await;
                        self.commit(right, hooks).await;
                        return;
                    }
                }
            }
        })
    }
}
