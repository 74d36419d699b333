//! Building blocks of the simulated services the examples run against: a ledger of
//! what the services did, their latency, and identifiers.
//!
//! Nothing here talks to a real system. Each scenario's services (payments,
//! warehouses, mailers...) are in-process fakes that sleep for a realistic time,
//! record their side effects in a [`Ledger`], and fail when the program (or a test)
//! asks them to. The ledger is how the tests check effects (a refund happened, the
//! tenant was unlocked) rather than the engine's bookkeeping.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One side effect of a simulated service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The service (`payments`, `mailer`...).
    pub(crate) service: &'static str,
    /// What it did, in words (`refunded pay-1 (42.50 EUR)`).
    pub(crate) action: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.service, self.action)
    }
}

type Observer = Box<dyn Fn(&Entry) + Send + Sync>;

/// What the simulated services did, in order; shared by every service of a
/// scenario.
#[derive(Default)]
pub(crate) struct Ledger {
    entries: Mutex<Vec<Entry>>,
    counters: Mutex<HashMap<&'static str, u64>>,
    observer: OnceLock<Observer>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("entries", &self.entries()).finish_non_exhaustive()
    }
}

impl Ledger {
    /// An empty ledger.
    pub(crate) fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    /// Records that `service` did `action`.
    pub(crate) fn record(&self, service: &'static str, action: impl Into<String>) {
        let entry = Entry { service, action: action.into() };
        if let Some(observer) = self.observer.get() {
            observer(&entry);
        }
        self.entries.lock().unwrap().push(entry);
    }

    /// Calls `observer` with every entry recorded from now on (the live view
    /// prints them). Only the first observer set is kept.
    pub(crate) fn observe(&self, observer: impl Fn(&Entry) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(observer));
    }

    /// Every entry, in order.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    /// The actions of one service, in order.
    pub(crate) fn actions(&self, service: &str) -> Vec<String> {
        self.entries().into_iter().filter(|e| e.service == service).map(|e| e.action).collect()
    }

    /// Whether `service` did something starting with `prefix`.
    pub(crate) fn has(&self, service: &str, prefix: &str) -> bool {
        self.actions(service).iter().any(|a| a.starts_with(prefix))
    }

    /// A fresh identifier with this prefix: `auth-1`, `auth-2`...
    pub(crate) fn next_id(&self, prefix: &'static str) -> String {
        let mut counters = self.counters.lock().unwrap();
        let n = counters.entry(prefix).or_insert(0);
        *n += 1;
        format!("{prefix}-{n}")
    }
}

/// Waits as long as a call to a real service of this kind would take (on tokio's
/// clock, so tests under a paused clock do not wait at all).
pub(crate) async fn latency(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The failures a scenario's services are told to produce: one set for every
/// business key (an order, a tenant, a batch...) unless a key has its own, so that
/// one program can run failing and succeeding executions side by side (the
/// dashboard example does). Counters in a set (timeouts left to produce,
/// sessions still open) count down per key.
#[derive(Debug)]
pub(crate) struct Faults<F> {
    default: F,
    by_key: Mutex<HashMap<String, F>>,
}

impl<F: Clone> Faults<F> {
    /// These faults for every key.
    pub(crate) fn new(default: F) -> Faults<F> {
        Faults { default, by_key: Mutex::new(HashMap::new()) }
    }

    /// These faults for `key` only.
    pub(crate) fn set(&self, key: impl Into<String>, faults: F) {
        self.by_key.lock().unwrap().insert(key.into(), faults);
    }

    /// Reads (or counts down) the faults of `key`.
    pub(crate) fn with<R>(&self, key: &str, f: impl FnOnce(&mut F) -> R) -> R {
        let mut by_key = self.by_key.lock().unwrap();
        let faults = by_key.entry(key.to_owned()).or_insert_with(|| self.default.clone());
        f(faults)
    }

    /// A copy of the faults of `key`.
    pub(crate) fn of(&self, key: &str) -> F {
        self.with(key, |f| f.clone())
    }
}
