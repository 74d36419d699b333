//! The [`SignalPort`]: where a running step's `ctx.signal` reads signals. The
//! engine supplies one per execution (see `engine/signal.rs`); a context built
//! by hand has a fixed list (see `model::signal`).

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use tokio::sync::Notify;

use super::error::StepError;

/// A boxed future borrowing the port.
pub(crate) type PortFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Value>, StepError>> + Send + 'a>>;

/// Where a step's `ctx.signal` reads signals.
pub(crate) trait SignalPort: Send + Sync {
    /// The next signal `name` for attempt `attempt` of `step`, if one is there: a
    /// signal the step holds already that this attempt has not read yet, or else
    /// the oldest buffered one, which the step takes. Resolves once what the
    /// signal's arrival (and its taking) wrote is durable, so nothing a step does
    /// with a signal can outlive a crash that loses the signal.
    fn take<'a>(&'a self, step: &'a str, attempt: u32, name: &'a str) -> PortFuture<'a>;

    /// Notified whenever a signal may have arrived.
    fn arrivals(&self) -> &Notify;

    /// For a context built by hand: adds a signal to the list; `false` for the
    /// engine's port, which takes signals only from `Engine::signal`.
    fn push(&self, _name: &str, _payload: Value) -> bool {
        false
    }
}
