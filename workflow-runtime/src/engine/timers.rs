//! One index of timers for the whole engine (executions' timers, delayed starts,
//! claims, schedules' ticks), served by one task and one `sleep_until`: no tokio
//! timer per parked execution or per schedule.

use std::collections::BTreeSet;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::machine::event::TimerId;
use crate::model::ExecutionId;

/// What a timer wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerTarget {
    /// A timer of an execution's state machine.
    Execution(ExecutionId, TimerId),
    /// A delayed start.
    Start(ExecutionId),
    /// On a shared store: a delayed execution may be claimed now.
    Claim,
    /// A schedule's next tick, by the scheduler's index of the schedule.
    Schedule(usize),
    /// The scheduler's retry of arming schedules after a store error.
    ArmSchedules,
}

/// Timers by due instant. A timer is cancelled by its target and due instant, which
/// the state machine keeps, so no second index is needed.
#[derive(Default)]
struct Index {
    by_due: BTreeSet<(Instant, TimerTarget)>,
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
        let key = (at, target);
        ix.by_due.insert(key);
        let earliest = ix.by_due.first() == Some(&key);
        drop(ix);
        if earliest {
            self.wake.notify_one();
        }
    }

    pub(crate) fn cancel(&self, target: TimerTarget, at: Instant) {
        self.index.lock().by_due.remove(&(at, target));
    }

    pub(crate) fn len(&self) -> usize {
        self.index.lock().by_due.len()
    }

    /// Takes every timer due at `now`; returns them and the next deadline.
    fn take_due(&self, now: Instant, out: &mut Vec<TimerTarget>) -> Option<Instant> {
        let mut ix = self.index.lock();
        while let Some(&(at, target)) = ix.by_due.first() {
            if at > now {
                return Some(at);
            }
            ix.by_due.pop_first();
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
            if !sleep_until_woken(next, notified, shutdown).await {
                return;
            }
        }
    }
}

/// Sleeps until `at` (or forever without one) unless `notified` fires first.
/// Returns false once `shutdown` is cancelled.
async fn sleep_until_woken(
    at: Option<Instant>,
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    shutdown: &CancellationToken,
) -> bool {
    let sleep = async {
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sleep => true,
        _ = notified => true,
        _ = shutdown.cancelled() => false,
    }
}
