//! Signals as a running step sees them: [`Context::signal`] and
//! [`Context::try_signal`]. The engine supplies the [`SignalPort`] behind them
//! (see `engine/signal.rs`); a context built by hand gets a fixed list of signals
//! with [`Context::with_signal`].

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Notify;

use super::context::{CancelSignal, Context, ExecMeta};
use super::duration::DurationArg;
use super::error::{StepError, kinds};
use super::ids::ExecutionId;
use super::signal_port::{PortFuture, SignalPort};

/// The signals of a context built by hand ([`Context::with_signal`]), each read
/// once, in order.
#[derive(Default)]
struct FixedSignals {
    list: Mutex<Vec<(String, Value)>>,
    arrivals: Notify,
}

impl SignalPort for FixedSignals {
    fn take<'a>(&'a self, _step: &'a str, _attempt: u32, name: &'a str) -> PortFuture<'a> {
        let mut list = self.list.lock();
        let found = list.iter().position(|(n, _)| n == name).map(|i| list.remove(i).1);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn arrivals(&self) -> &Notify {
        &self.arrivals
    }

    fn push(&self, name: &str, payload: Value) -> bool {
        self.list.lock().push((name.to_owned(), payload));
        self.arrivals.notify_waiters();
        true
    }
}

/// Waiting for a signal in a running step: what [`Context::signal`] returns. Await
/// it for the payload, optionally with a [`timeout`](Self::timeout).
#[must_use = "a signal is received by awaiting it"]
pub struct SignalWait<'a, T> {
    ctx: &'a Context,
    name: &'a str,
    timeout: Option<DurationArg>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for SignalWait<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalWait")
            .field("name", &self.name)
            .field("timeout", &self.timeout.as_ref().map(DurationArg::describe))
            .finish()
    }
}

impl<'a, T> SignalWait<'a, T> {
    /// Gives up after `timeout` with an error of kind `"signal_timeout"` (which a
    /// step's retry policy treats as any other error). The time limit is the
    /// attempt's: an attempt run again after a crash waits afresh. For a wait that
    /// survives restarts, park the step instead
    /// ([`Outcome::await_signal`](crate::Outcome::await_signal)).
    pub fn timeout(mut self, timeout: impl Into<DurationArg>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }
}

impl<'a, T: DeserializeOwned + 'a> IntoFuture for SignalWait<'a, T> {
    type Output = Result<T, StepError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let limit = match &self.timeout {
                None => None,
                Some(t) => Some(t.to_duration().map_err(|e| {
                    StepError::new(
                        kinds::INVALID_DURATION,
                        format!("invalid timeout for signal `{}`{}: {e}", self.name, self.ctx.signal_place()),
                    )
                    .permanent()
                })?),
            };
            let deadline = limit.map(|l| tokio::time::Instant::now() + l);
            let port = self.ctx.signal_port()?;
            let step = self.ctx.step().unwrap_or("");
            loop {
                let arrived = port.arrivals().notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(payload) = port.take(step, self.ctx.attempt(), self.name).await? {
                    return self.ctx.decode_signal(self.name, payload);
                }
                tokio::select! {
                    _ = &mut arrived => {}
                    _ = self.ctx.cancelled() => {
                        return Err(StepError::new(
                            kinds::CANCELLED,
                            format!("the execution was cancelled while waiting for signal `{}`", self.name),
                        )
                        .permanent());
                    }
                    _ = sleep_until(deadline) => {
                        let waited = limit.map(crate::model::format_duration).unwrap_or_default();
                        return Err(StepError::new(
                            kinds::SIGNAL_TIMEOUT,
                            format!("no signal `{}` arrived within {waited}{}", self.name, self.ctx.signal_place()),
                        ));
                    }
                }
            }
        })
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Context {
    /// Waits for the signal `name` ([`Engine::signal`](crate::Engine::signal)) and
    /// returns its payload as `T`.
    ///
    /// A signal sent before the step asks is buffered and returned at once; signals
    /// of one name come in the order they were sent. The signal stays with the step
    /// until the step ends: if this attempt fails and is retried, or the process
    /// dies and recovery runs the step again, the next attempt receives the same
    /// signals again, in the same order (so make what the step does with them
    /// idempotent, as any step's side effects). Once the step ends, they are
    /// consumed. While it waits, the attempt keeps running (its `timeout` counts);
    /// to wait days, park the step instead with
    /// [`Outcome::rerun_on_signal`](crate::Outcome::rerun_on_signal) (what a
    /// `#[signal("name")]` parameter does).
    ///
    /// Errors: kind `"invalid_type"` when the payload does not deserialize as `T`
    /// (permanent), `"cancelled"` when the execution is cancelled meanwhile,
    /// `"signal_timeout"` after [`timeout`](SignalWait::timeout), and
    /// `"signal_unavailable"` on a context that belongs to no execution.
    ///
    /// ```
    /// use sagaflow_runtime::{Context, StepError, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), StepError> {
    /// // A step function, tested with a context built by hand.
    /// async fn ship(ctx: Context) -> Result<String, StepError> {
    ///     let address: String = ctx.signal("address").timeout("1h").await?;
    ///     Ok(format!("shipping to {address}"))
    /// }
    /// let ctx = Context::new().with_signal("address", json!("1 Main St"));
    /// assert_eq!(ship(ctx).await?, "shipping to 1 Main St");
    /// # Ok(()) }
    /// ```
    pub fn signal<'a, T: DeserializeOwned>(&'a self, name: &'a str) -> SignalWait<'a, T> {
        SignalWait { ctx: self, name, timeout: None, _payload: PhantomData }
    }

    /// The signal `name` if one is there now (see [`signal`](Self::signal)),
    /// without waiting: `Ok(None)` when none has arrived.
    ///
    /// With [`Outcome::rerun_on_signal`](crate::Outcome::rerun_on_signal), a step
    /// waits for a signal without running meanwhile:
    ///
    /// ```
    /// use sagaflow_runtime::{Context, Outcome, StepResult, json};
    ///
    /// async fn approve(ctx: Context) -> StepResult {
    ///     match ctx.try_signal::<bool>("approved").await? {
    ///         Some(true) => Ok(json!({ "approved": true }).into()),
    ///         Some(false) => Ok(Outcome::skip("rejected")),
    ///         // Parked until the signal arrives, then run again.
    ///         None => Ok(Outcome::rerun_on_signal("approved")),
    ///     }
    /// }
    /// # let _ = approve;
    /// ```
    pub async fn try_signal<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StepError> {
        let port = self.signal_port()?;
        match port.take(self.step().unwrap_or(""), self.attempt(), name).await? {
            Some(payload) => self.decode_signal(name, payload).map(Some),
            None => Ok(None),
        }
    }

    /// Returns the context with the signal `name` waiting for it (builder style, for
    /// tests of step functions that read signals). Signals added this way are read
    /// once each, in order. A context the engine passed to a step reads the
    /// execution's signals only; this adds nothing to it.
    pub fn with_signal(mut self, name: impl Into<String>, payload: impl Serialize) -> Self {
        let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
        let name = name.into();
        let meta = self.meta.get_or_insert_with(|| {
            Arc::new(ExecMeta {
                id: ExecutionId::from_uuid(uuid::Uuid::nil()),
                workflow: Arc::from(""),
                cancel: CancelSignal::default(),
                parent: None,
                signals: OnceLock::new(),
            })
        });
        let port = meta.signals.get_or_init(|| Arc::new(FixedSignals::default()));
        port.push(&name, payload);
        self
    }

    fn signal_port(&self) -> Result<&Arc<dyn SignalPort>, StepError> {
        self.meta.as_ref().and_then(|m| m.signals.get()).ok_or_else(|| {
            StepError::new(
                kinds::SIGNAL_UNAVAILABLE,
                "signals are read by steps of a running execution; this context belongs to none (build one for a \
                 test with `Context::with_signal`)",
            )
            .permanent()
        })
    }

    fn decode_signal<T: DeserializeOwned>(&self, name: &str, payload: Value) -> Result<T, StepError> {
        T::deserialize(&payload).map_err(|e| {
            StepError::new(
                kinds::INVALID_TYPE,
                format!(
                    "the payload of signal `{name}`{} is not a `{}`: {e}",
                    self.signal_place(),
                    std::any::type_name::<T>()
                ),
            )
            .with_details(serde_json::json!({ "signal": name, "payload": payload }))
            .permanent()
        })
    }

    /// ` (step `x`)`, for messages.
    fn signal_place(&self) -> String {
        self.step().map(|s| format!(" (step `{s}`)")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn a_context_built_by_hand_reads_its_signals_once_each_in_order() {
        let ctx = Context::new().with_signal("n", 1).with_signal("other", "x").with_signal("n", 2);
        assert_eq!(ctx.signal::<u32>("n").await.unwrap(), 1);
        assert_eq!(ctx.try_signal::<u32>("n").await.unwrap(), Some(2));
        assert_eq!(ctx.try_signal::<u32>("n").await.unwrap(), None);
        let e = ctx.signal::<u32>("other").await.unwrap_err();
        assert_eq!(e.kind(), kinds::INVALID_TYPE);
        assert!(e.message().starts_with("the payload of signal `other` is not a `u32`"), "{}", e.message());
        let e = ctx.signal::<u32>("n").timeout("5m").await.unwrap_err();
        assert_eq!(e.kind(), kinds::SIGNAL_TIMEOUT);
        assert_eq!(e.message(), "no signal `n` arrived within 5m");
        let e = ctx.signal::<u32>("n").timeout("soon").await.unwrap_err();
        assert_eq!(e.kind(), kinds::INVALID_DURATION);
    }

    #[tokio::test]
    async fn a_detached_context_has_no_signals() {
        let e = Context::new().try_signal::<u32>("n").await.unwrap_err();
        assert_eq!(e.kind(), kinds::SIGNAL_UNAVAILABLE);
        assert!(!e.is_retryable());
        let _ = json!(null);
    }
}
