//! [`AwaitRequest`]: what a step that parks its execution asks for.

use serde::Serialize;
use serde_json::{Map, Value};

use super::duration::DurationArg;

/// A request to park the execution until it is resumed: an optional timeout and
/// free-form data kept on the execution (shown by `get_state` and the dashboard).
#[derive(Clone, Debug, Default)]
pub struct AwaitRequest {
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) notify: Option<Value>,
    pub(crate) approvers: Option<Value>,
    pub(crate) data: Map<String, Value>,
    /// Wait for this signal instead of `resume`.
    pub(crate) signal: Option<String>,
    /// When the signal arrives, run the step again instead of completing it.
    pub(crate) rerun: bool,
}

impl AwaitRequest {
    /// A request without a time limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A request that times out after `timeout`.
    pub fn timeout(timeout: impl Into<DurationArg>) -> Self {
        AwaitRequest { timeout: Some(timeout.into()), ..Self::default() }
    }

    /// Who or what should be notified (free-form, kept on the execution).
    pub fn notify(mut self, notify: impl Serialize) -> Self {
        self.notify = serde_json::to_value(notify).ok();
        self
    }

    /// Who may approve (free-form, kept on the execution).
    pub fn approvers(mut self, approvers: impl Serialize) -> Self {
        self.approvers = serde_json::to_value(approvers).ok();
        self
    }

    /// Any other data to keep with the pending approval.
    pub fn data(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.data.insert(key.into(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// A request to wait for the signal `name` ([`Engine::signal`](crate::Engine::signal))
    /// rather than for `resume`: its payload completes the step (or, with
    /// [`rerun`](Self::rerun), the step runs again and reads it). Combine with
    /// [`with_timeout`](Self::with_timeout) for a time limit, after which the step's
    /// `on_timeout` handler runs or the step fails with kind `"await_timeout"`.
    ///
    /// ```
    /// use sagaflow_runtime::{AwaitRequest, Outcome};
    /// let wait = Outcome::await_with(AwaitRequest::signal("approval").with_timeout("48h").notify("finance"));
    /// # let _ = wait;
    /// ```
    pub fn signal(name: impl Into<String>) -> Self {
        AwaitRequest { signal: Some(name.into()), ..Self::default() }
    }

    /// The time limit of the wait (the same as [`timeout`](Self::timeout), for a
    /// request built otherwise, such as [`signal`](Self::signal)).
    pub fn with_timeout(mut self, timeout: impl Into<DurationArg>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// For a [`signal`](Self::signal) request: when the signal arrives, run the step
    /// again (the new attempt reads it with [`Context::signal`](crate::Context::signal))
    /// instead of completing the step with its payload.
    pub fn rerun(mut self) -> Self {
        self.rerun = true;
        self
    }
}
