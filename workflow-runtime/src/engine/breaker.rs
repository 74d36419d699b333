//! Circuit breakers, shared by name across steps and executions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::model::BreakerOptions;

/// What the breaker allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Closed: call.
    Call,
    /// Half-open: this call is the probe.
    Probe,
    /// Open: do not call.
    Reject,
}

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls fail at once with kind `circuit_open` until the reset timeout passes.
    Open,
    /// One probe call is in flight; its result closes or reopens the breaker.
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    opts: BreakerOptions,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

/// Every breaker of an engine.
#[derive(Debug, Default, Clone)]
pub(crate) struct Breakers {
    inner: Arc<Mutex<HashMap<Arc<str>, Breaker>>>,
}

/// What a step call holds of its breaker. A probe whose job ends without a
/// result (its execution was dropped, its driver failed) frees the breaker for
/// the next probe when the ticket is dropped, instead of leaving it half-open.
#[derive(Debug)]
pub(crate) struct Ticket {
    breakers: Breakers,
    name: Arc<str>,
    permit: Permit,
    recorded: AtomicBool,
}

impl Ticket {
    /// Records the call's result (once).
    pub(crate) fn record(&self, ok: bool) {
        if !self.recorded.swap(true, Ordering::AcqRel) {
            self.breakers.record(&self.name, self.permit, ok);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.permit == Permit::Probe && !*self.recorded.get_mut() {
            let mut map = self.breakers.inner.lock();
            if let Some(b) = map.get_mut(&self.name) {
                b.probing = false;
            }
        }
    }
}

impl Breakers {
    /// A ticket for a call the breaker let through.
    pub(crate) fn ticket(&self, name: &Arc<str>, permit: Permit) -> Arc<Ticket> {
        Arc::new(Ticket { breakers: self.clone(), name: Arc::clone(name), permit, recorded: AtomicBool::new(false) })
    }

    pub(crate) fn acquire(&self, name: &Arc<str>, opts: &BreakerOptions) -> Permit {
        let mut map = self.inner.lock();
        let b = map.entry(Arc::clone(name)).or_insert_with(|| Breaker {
            opts: opts.clone(),
            failures: 0,
            opened_at: None,
            probing: false,
        });
        match b.opened_at {
            None => Permit::Call,
            Some(at) if !b.probing && at.elapsed() >= b.opts.reset_timeout => {
                b.probing = true;
                Permit::Probe
            }
            Some(_) => Permit::Reject,
        }
    }

    pub(crate) fn record(&self, name: &str, permit: Permit, ok: bool) {
        let mut map = self.inner.lock();
        let Some(b) = map.get_mut(name) else { return };
        match (permit, ok) {
            (Permit::Reject, _) => {}
            (Permit::Probe, true) | (Permit::Call, true) => {
                b.failures = 0;
                b.opened_at = None;
                b.probing = false;
            }
            (Permit::Probe, false) => {
                b.opened_at = Some(Instant::now());
                b.probing = false;
            }
            (Permit::Call, false) => {
                b.failures += 1;
                if b.failures >= b.opts.failure_threshold && b.opened_at.is_none() {
                    b.opened_at = Some(Instant::now());
                }
            }
        }
    }

    pub(crate) fn state(&self, name: &str) -> Option<BreakerState> {
        let map = self.inner.lock();
        let b = map.get(name)?;
        Some(match b.opened_at {
            None => BreakerState::Closed { failures: b.failures },
            Some(_) if b.probing => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_a_result_frees_the_breaker_for_the_next() {
        let breakers = Breakers::default();
        let name: Arc<str> = Arc::from("api");
        let opts = BreakerOptions::default().failure_threshold(1).reset_timeout(Duration::from_secs(1));
        let call = breakers.acquire(&name, &opts);
        breakers.ticket(&name, call).record(false);
        assert_eq!(breakers.state("api"), Some(BreakerState::Open));
        tokio::time::advance(Duration::from_secs(2)).await;
        let probe = breakers.acquire(&name, &opts);
        assert_eq!(probe, Permit::Probe);
        let ticket = breakers.ticket(&name, probe);
        assert_eq!(breakers.acquire(&name, &opts), Permit::Reject, "one probe at a time");
        drop(ticket);
        assert_eq!(breakers.acquire(&name, &opts), Permit::Probe, "the dropped probe's place is free again");
    }
}
