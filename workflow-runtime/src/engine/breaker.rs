//! Circuit breakers, shared by name across steps and executions.

use std::collections::HashMap;
use std::sync::Arc;

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

impl Breakers {
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
