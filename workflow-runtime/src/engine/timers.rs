//! One index of timers for all executions, served by one task and one
//! `sleep_until`: no tokio timer per parked execution.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::machine::event::TimerId;
use crate::model::ExecutionId;

/// What a timer wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerTarget {
    /// A timer of an execution's state machine.
    Execution(ExecutionId, TimerId),
    /// A delayed start.
    Start(ExecutionId),
}

#[derive(Default)]
struct Index {
    by_due: BTreeMap<(Instant, u64), TimerTarget>,
    by_target: HashMap<TimerTarget, (Instant, u64)>,
    seq: u64,
}

/// The timer index.
#[derive(Default)]
pub(crate) struct Timers {
    index: Mutex<Index>,
    wake: Notify,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers").field("armed", &self.len()).finish()
    }
}

impl Timers {
    pub(crate) fn arm(&self, target: TimerTarget, at: Instant) {
        let mut ix = self.index.lock();
        ix.seq += 1;
        let key = (at, ix.seq);
        if let Some(old) = ix.by_target.insert(target, key) {
            ix.by_due.remove(&old);
        }
        ix.by_due.insert(key, target);
        let earliest = ix.by_due.keys().next() == Some(&key);
        drop(ix);
        if earliest {
            self.wake.notify_one();
        }
    }

    pub(crate) fn cancel(&self, target: TimerTarget) {
        let mut ix = self.index.lock();
        if let Some(key) = ix.by_target.remove(&target) {
            ix.by_due.remove(&key);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.lock().by_due.len()
    }

    /// Takes every timer due at `now`; returns them and the next deadline.
    fn take_due(&self, now: Instant, out: &mut Vec<TimerTarget>) -> Option<Instant> {
        let mut ix = self.index.lock();
        while let Some((&key, _)) = ix.by_due.first_key_value() {
            if key.0 > now {
                return Some(key.0);
            }
            let (_, target) = ix.by_due.pop_first().expect("non-empty");
            ix.by_target.remove(&target);
            out.push(target);
        }
        None
    }

    /// Serves the index until `shutdown`, or until `fire` returns false (the engine
    /// is gone).
    pub(crate) async fn run(&self, shutdown: &CancellationToken, mut fire: impl FnMut(Vec<TimerTarget>) -> bool) {
        let mut due = Vec::new();
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.take_due(Instant::now(), &mut due);
            if !due.is_empty() && !fire(std::mem::take(&mut due)) {
                return;
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut notified => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                None => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }
}
