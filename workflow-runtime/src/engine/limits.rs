//! Admission of step attempts under their concurrency and rate limits (see
//! [`StepLimits`]): an attempt of a limited step first takes a slot of its
//! concurrency limit, then its turn under its rate limit, and only then is its
//! function called. The slot is held until the attempt's future is dropped
//! (it returned, timed out, was interrupted, or the node let go of it).
//!
//! Where one engine owns the store the counts live here: per scope (a
//! workflow's step) and key, the held slots and a queue of waiting attempts,
//! highest priority first, then the longest waiting; a freed slot passes
//! straight to the head of the queue. On a store that several nodes share the
//! store keeps them ([`Cluster::take_slot_behind`]): a waiting attempt holds a
//! ticket and asks again once the store announced as many slots of its key
//! freed, on any node, as it waits behind ([`Cluster::slots_freed`]), or after
//! a pause (the fallback for what goes unannounced), and the tickets of a node
//! whose lease expired count for nothing. Of this node's attempts that wait
//! under one key, only the first few ask.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use super::EngineError;
use super::executor::Execution;
use crate::model::context::Data;
use crate::model::limits::{StepLimits, key_text, key_value, next_start};
use crate::model::status::Status;
use crate::model::{StepError, WorkflowDef, kinds};
use crate::store::{Store, StoreError};

/// A scope (`workflow.step`) and a key's value.
type SlotKey = (Arc<str>, String);

/// How long a waiting attempt on a shared store pauses, at most, before it asks
/// again for a slot, while the store does not announce freed ones (or after it
/// failed to answer).
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The first of those pauses; each one after doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// How long one pauses while the store announces freed slots and none came:
/// the fallback for what goes unannounced (the slots of a node whose lease
/// just expired, before a reaper removes it and announces them). Every attempt
/// at the head of its node's line asks at this pace, on the node's one
/// connection for transactions, so it is not as short as [`MAX_PAUSE`].
const ANNOUNCED_PAUSE: Duration = Duration::from_millis(250);

/// The limits of the steps this engine runs.
#[derive(Debug)]
pub(crate) struct Limiter {
    slots: Mutex<HashMap<SlotKey, Slots>>,
    windows: Mutex<HashMap<SlotKey, Vec<Instant>>>,
    seq: AtomicU64,
    /// The shared store that keeps the counts, on a cluster.
    shared: Option<Arc<dyn Store>>,
    /// This node's attempts waiting for a shared store's slots.
    lines: Mutex<HashMap<SlotKey, Line>>,
}

/// A ticket's place in its queue, first first: the highest priority, then
/// the earliest ticket (the store's order).
type Place = (Reverse<i32>, i64);

/// The tickets of this node's attempts waiting under one scope and key.
#[derive(Debug, Default)]
struct Line {
    places: BTreeSet<Place>,
    /// A ticket left the line: those behind it moved up.
    moved: Arc<Notify>,
}

/// An attempt's place in its line while it waits; leaving (it took a slot, or
/// was dropped) moves those behind it up.
struct InLine<'a> {
    limiter: &'a Limiter,
    key: SlotKey,
    place: Place,
}

impl<'a> InLine<'a> {
    fn join(limiter: &'a Limiter, key: SlotKey, priority: i32, ticket: i64) -> Self {
        let place = (Reverse(priority), ticket);
        limiter.lines.lock().entry(key.clone()).or_default().places.insert(place);
        InLine { limiter, key, place }
    }

    /// `Ok` if fewer than `limit` of this node's tickets come before this one;
    /// otherwise the wake-up for when one of them leaves, registered already.
    fn among_first(&self, limit: u32) -> Result<(), OwnedNotified> {
        let lines = self.limiter.lines.lock();
        let Some(line) = lines.get(&self.key) else { return Ok(()) };
        let moved = Arc::clone(&line.moved).notified_owned();
        let ahead = line.places.range(..self.place).take(limit as usize).count();
        if ahead < limit as usize { Ok(()) } else { Err(moved) }
    }

    /// The attempt queued again under a new ticket.
    fn moved_to(&mut self, ticket: i64) {
        let mut lines = self.limiter.lines.lock();
        let line = lines.entry(self.key.clone()).or_default();
        line.places.remove(&self.place);
        self.place.1 = ticket;
        line.places.insert(self.place);
        line.moved.notify_waiters();
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let mut lines = self.limiter.lines.lock();
        let Some(line) = lines.get_mut(&self.key) else { return };
        line.places.remove(&self.place);
        line.moved.notify_waiters();
        if line.places.is_empty() {
            lines.remove(&self.key);
        }
    }
}

/// The slots of one scope and key, where this engine keeps them.
#[derive(Debug, Default)]
struct Slots {
    held: u32,
    queue: BinaryHeap<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    priority: i32,
    seq: u64,
    grant: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The heap's greatest: the highest priority, then the lowest sequence.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}

/// What an admitted attempt holds until it ends: its slot, if its step has a
/// concurrency limit.
#[derive(Debug)]
pub(crate) struct Admission {
    _slot: Option<Slot>,
}

#[derive(Debug)]
enum Slot {
    Local { limiter: Arc<Limiter>, key: SlotKey },
    Shared { limiter: Arc<Limiter>, ticket: i64 },
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            Slot::Local { limiter, key } => limiter.release_local(key),
            Slot::Shared { limiter, ticket } => limiter.free_shared(*ticket),
        }
    }
}

/// The keys one attempt counts under.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    pub(crate) concurrency: String,
    pub(crate) rate: String,
}

impl Keys {
    /// The keys of an attempt of `step` with `ctx`.
    ///
    /// # Errors
    ///
    /// A permanent `limit_key_missing` error when `ctx` lacks a field a limit
    /// counts by.
    pub(crate) fn of(step: &str, limits: &StepLimits, ctx: &crate::model::Context) -> Result<Keys, StepError> {
        let mut keys = Keys::default();
        if let Some(c) = &limits.concurrency {
            keys.concurrency = key_value(step, "concurrency", c.key.as_deref(), ctx)?;
        }
        if let Some(r) = &limits.rate {
            keys.rate = key_value(step, "rate_limit", r.key.as_deref(), ctx)?;
        }
        Ok(keys)
    }
}

impl Limiter {
    pub(crate) fn new(shared: Option<Arc<dyn Store>>) -> Arc<Self> {
        Arc::new(Limiter {
            slots: Mutex::default(),
            windows: Mutex::default(),
            seq: AtomicU64::new(0),
            shared,
            lines: Mutex::default(),
        })
    }

    /// Waits until an attempt of the step `scope` under `limits` may run.
    ///
    /// # Errors
    ///
    /// A store that refuses the slot for good (not one that is unreachable for a
    /// while: the attempt waits for it) fails the attempt, retryably.
    pub(crate) async fn admit(
        self: Arc<Self>,
        scope: Arc<str>,
        limits: Arc<StepLimits>,
        keys: Keys,
        priority: i32,
        order: Option<u64>,
    ) -> Result<Admission, StepError> {
        let slot = match &limits.concurrency {
            None => None,
            Some(c) => Some(match &self.shared {
                None => self.local_slot((Arc::clone(&scope), keys.concurrency), c.limit, priority, order).await,
                Some(store) => {
                    let store = Arc::clone(store);
                    self.shared_slot(&*store, &scope, &keys.concurrency, c.limit, priority)
                        .await
                        .map_err(|e| refused(&scope, "concurrency slot", &e))?
                }
            }),
        };
        if let Some(rate) = &limits.rate {
            let wait = match &self.shared {
                None => self.reserve_local((Arc::clone(&scope), keys.rate), rate.count, rate.per),
                Some(store) => retrying(|| {
                    let cluster = store.cluster().expect("a shared store coordinates");
                    cluster.reserve_start(&scope, &keys.rate, rate.count, rate.per)
                })
                .await
                .map_err(|e| refused(&scope, "rate limit turn", &e))?,
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(Admission { _slot: slot })
    }

    /// A slot of this engine's own (`order`: the place among equal priorities;
    /// without one, the order of arrival).
    async fn local_slot(self: &Arc<Self>, key: SlotKey, limit: u32, priority: i32, order: Option<u64>) -> Slot {
        loop {
            let rx = {
                let mut slots = self.slots.lock();
                let entry = slots.entry(key.clone()).or_default();
                if entry.held < limit && entry.queue.is_empty() {
                    entry.held += 1;
                    return Slot::Local { limiter: Arc::clone(self), key };
                }
                let (grant, rx) = oneshot::channel();
                let seq = order.unwrap_or_else(|| self.seq.fetch_add(1, Ordering::Relaxed));
                entry.queue.push(Waiter { priority, seq, grant });
                rx
            };
            let mut queued = Queued { rx: Some(rx), limiter: self, key: &key };
            let granted = match queued.rx.as_mut() {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            queued.rx = None;
            drop(queued);
            if granted {
                return Slot::Local { limiter: Arc::clone(self), key };
            }
        }
    }

    /// Passes a freed slot to the first live waiter, or counts it free.
    fn release_local(&self, key: &SlotKey) {
        let mut slots = self.slots.lock();
        let Some(entry) = slots.get_mut(key) else { return };
        while let Some(w) = entry.queue.pop() {
            if w.grant.send(()).is_ok() {
                return;
            }
        }
        entry.held = entry.held.saturating_sub(1);
        if entry.held == 0 {
            slots.remove(key);
        }
    }

    fn reserve_local(&self, key: SlotKey, count: u32, per: Duration) -> Duration {
        let now = Instant::now();
        let mut windows = self.windows.lock();
        if windows.len() > 4096 {
            windows.retain(|_, starts| starts.last().is_some_and(|&t| t + per > now));
        }
        let at = next_start(windows.entry(key).or_default(), now, count, |t| t + per);
        at.saturating_duration_since(now)
    }

    /// A slot of a shared store's: a ticket in the store's queue, turned into a
    /// slot once it is among the first. Only the first `limit` of this node's
    /// attempts waiting under `scope` and `key` ask the store (one further back
    /// has `limit` tickets ahead of it anyway), the others once one ahead of
    /// them stops waiting. One that asked in vain asks again once as many
    /// slots as it waits behind were announced freed, or after a pause.
    async fn shared_slot(
        self: &Arc<Self>,
        store: &dyn Store,
        scope: &Arc<str>,
        key: &str,
        limit: u32,
        priority: i32,
    ) -> Result<Slot, StoreError> {
        let cluster = store.cluster().expect("a shared store coordinates");
        let mut slot = Slot::Shared {
            limiter: Arc::clone(self),
            ticket: retrying(|| cluster.queue_for_slot(scope, key, priority)).await?,
        };
        let Slot::Shared { ticket, .. } = &mut slot else { unreachable!("a shared slot") };
        let mut place = InLine::join(self, (Arc::clone(scope), key.to_owned()), priority, *ticket);
        let mut pause = FIRST_PAUSE;
        loop {
            if let Err(moved) = place.among_first(limit) {
                moved.await;
                continue;
            }
            // Subscribed before the ask: the slots freed meanwhile count.
            let mut freed = cluster.slots_freed(scope, key);
            let seen = freed.as_mut().map(|count| *count.borrow_and_update());
            let behind = match cluster.take_slot_behind(*ticket, scope, key, limit).await {
                Ok(0) => break,
                Ok(behind) => behind,
                // The node lapsed and joined again: its tickets are gone.
                Err(StoreError::Lapsed(_)) => {
                    *ticket = retrying(|| cluster.queue_for_slot(scope, key, priority)).await?;
                    place.moved_to(*ticket);
                    continue;
                }
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match freed.zip(seen) {
                Some((count, seen)) => {
                    tokio::select! {
                        () = freed_since(count, seen, behind) => {}
                        () = tokio::time::sleep(ANNOUNCED_PAUSE) => {}
                    }
                }
                None => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
        drop(place);
        Ok(slot)
    }

    /// Gives a shared slot (or a queued ticket) back, in the background; the
    /// store announces it to the waiters of every node. A ticket that cannot be
    /// given back ends with the node's lease.
    fn free_shared(self: &Arc<Self>, ticket: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let limiter = Arc::clone(self);
        runtime.spawn(async move {
            let Some(cluster) = limiter.shared.as_deref().and_then(|s| s.cluster()) else { return };
            let mut pause = Duration::from_millis(50);
            for _ in 0..10 {
                match cluster.free_slot(ticket).await {
                    Ok(()) => break,
                    Err(e) if e.is_transient() => tokio::time::sleep(pause).await,
                    Err(_) => break,
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        });
    }
}

/// Refuses a start of `def` whose input lacks a field the workflow's own limits
/// count by ([`Workflow::concurrency_key`](crate::Workflow::concurrency_key)).
pub(crate) fn check_input(def: &WorkflowDef, input: &Data) -> Result<(), EngineError> {
    let Some(limits) = def.policy().limits() else { return Ok(()) };
    for (option, field) in limits.key_fields() {
        if key_text(input.get(field)).is_none() {
            return Err(EngineError::InvalidInput {
                workflow: def.name().to_owned(),
                reason: format!("the workflow's `{option}` is the input field `{field}`, which is not set"),
            });
        }
    }
    Ok(())
}

/// How long a driver waits before it asks again for its workflow's slot after
/// the store refused it for good.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);

/// Waits until `exec` may go on under its workflow's own limits and returns
/// the slot it holds meanwhile (none for a workflow without a concurrency
/// limit). An execution that will end without running a step (cancelled, or
/// taken over by another node) goes on at once without one.
pub(crate) async fn workflow_turn(limiter: &Arc<Limiter>, exec: &Execution) -> Option<Admission> {
    let limits = exec.def.inner.policy.limits.as_ref()?;
    let scope: Arc<str> = Arc::from(format!("workflow {}", exec.workflow()));
    let keys = {
        let core = exec.core.lock();
        let key =
            |field: Option<&Arc<str>>| field.and_then(|f| key_text(core.machine.input_value(f))).unwrap_or_default();
        Keys {
            concurrency: key(limits.concurrency.as_ref().and_then(|c| c.key.as_ref())),
            rate: key(limits.rate.as_ref().and_then(|r| r.key.as_ref())),
        }
    };
    let needs_no_turn = || {
        let mut core = exec.core.lock();
        let ending = !matches!(core.machine.status(), Status::Running | Status::Paused | Status::Awaiting);
        core.withdrawing = ending;
        core.abandoned || ending
    };
    loop {
        if needs_no_turn() {
            return None;
        }
        let mut admit = std::pin::pin!(Arc::clone(limiter).admit(
            Arc::clone(&scope),
            Arc::clone(limits),
            keys.clone(),
            exec.priority,
            // Executions wait for their workflow's slots in the order they were
            // started, however their drivers were scheduled.
            Some(exec.order),
        ));
        let admitted = std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(admitted) = admit.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(admitted));
            }
            // An outside event (a cancellation) may end it while it waits; the
            // driver reads the queued commands whatever consumed the signal.
            while exec.wake.poll(cx).is_ready() {
                if needs_no_turn() {
                    return std::task::Poll::Ready(None);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        match admitted {
            None => return None,
            Some(Ok(admission)) => return Some(admission),
            Some(Err(e)) => {
                tracing::error!(execution_id = %exec.id, error = %e, "the workflow's concurrency slot was refused; asking again");
                tokio::time::sleep(REFUSED_PAUSE).await;
            }
        }
    }
}

/// A place in a local queue; leaving it (the attempt was dropped while waiting)
/// passes on a slot granted in the meantime.
struct Queued<'a> {
    rx: Option<oneshot::Receiver<()>>,
    limiter: &'a Limiter,
    key: &'a SlotKey,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.limiter.release_local(self.key);
            }
        }
    }
}

/// Resolves once `count` grew by `behind` since it read `seen` (never if the
/// store stopped counting).
async fn freed_since(mut count: watch::Receiver<u64>, seen: u64, behind: u32) {
    while count.changed().await.is_ok() {
        if count.borrow_and_update().wrapping_sub(seen) >= u64::from(behind) {
            return;
        }
    }
    std::future::pending().await
}

/// Runs `call` until it succeeds or fails for good, pausing after transient
/// failures (the attempt waits while the store is unreachable).
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            done => return done,
        }
    }
}

fn refused(scope: &str, what: &str, e: &StoreError) -> StepError {
    StepError::new(kinds::CONNECTION_ERROR, format!("step `{scope}`: the store refused its {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::{ConcurrencyLimit, RateLimit};

    fn limited(n: u32) -> Arc<StepLimits> {
        Arc::new(StepLimits { concurrency: Some(ConcurrencyLimit { limit: n, key: None }), rate: None })
    }

    fn keys(k: &str) -> Keys {
        Keys { concurrency: k.to_owned(), rate: k.to_owned() }
    }

    #[tokio::test]
    async fn slots_pass_to_the_highest_priority_then_the_longest_waiting() {
        let limiter = Limiter::new(None);
        let scope: Arc<str> = Arc::from("w.s");
        let admit = |k: &str, p: i32| Arc::clone(&limiter).admit(Arc::clone(&scope), limited(1), keys(k), p, None);
        let first = admit("a", 0).await.unwrap();
        let other_key = admit("b", 0).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("low", 0), ("high", 5), ("low2", 0)] {
            let (order, fut) = (Arc::clone(&order), admit("a", priority));
            tasks.push(tokio::spawn(async move {
                let slot = fut.await.unwrap();
                order.lock().push(name);
                tokio::task::yield_now().await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        assert!(order.lock().is_empty(), "a full key admits nobody");
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), ["high", "low", "low2"]);
        drop(other_key);
        assert!(limiter.slots.lock().is_empty(), "free keys are forgotten");
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_its_grant_passes_the_slot_on() {
        let limiter = Limiter::new(None);
        let scope: Arc<str> = Arc::from("w.s");
        let admit = || Arc::clone(&limiter).admit(Arc::clone(&scope), limited(1), keys(""), 0, None);
        let held = admit().await.unwrap();
        let mut waiting = Box::pin(admit());
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(held);
        drop(waiting);
        let again = tokio::time::timeout(Duration::from_secs(1), admit()).await;
        assert!(again.is_ok(), "the slot granted to the dropped waiter came back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_lets_count_start_per_window() {
        let limiter = Limiter::new(None);
        let limits = Arc::new(StepLimits {
            concurrency: None,
            rate: Some(RateLimit { count: 2, per: Duration::from_secs(1), key: None }),
        });
        let began = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            Arc::clone(&limiter).admit(Arc::from("w.s"), Arc::clone(&limits), keys("k"), 0, None).await.unwrap();
            at.push(began.elapsed().as_millis());
        }
        assert_eq!(at, [0, 0, 1000, 1000, 2000]);
    }
}
