//! [`StepError`]: what a failing step reports, with a kind that retry rules match on.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error kinds that the engine itself produces.
pub mod kinds {
    /// The step did not finish within its timeout.
    pub const TIMEOUT: &str = "timeout";
    /// The step panicked; the message holds the panic payload.
    pub const PANIC: &str = "panic";
    /// The step was interrupted because its execution was cancelled.
    pub const CANCELLED: &str = "cancelled";
    /// The step's circuit breaker was open, so the step was not called.
    pub const CIRCUIT_OPEN: &str = "circuit_open";
    /// An awaiting step was not resumed before its await timeout.
    pub const AWAIT_TIMEOUT: &str = "await_timeout";
    /// A network connection failed (from `std::io::Error`s such as `ConnectionRefused`).
    pub const CONNECTION_ERROR: &str = "connection_error";
    /// Any other I/O error.
    pub const IO_ERROR: &str = "io_error";
    /// A value could not be (de)serialized.
    pub const SERIALIZATION: &str = "serialization";
    /// A key the step needed is not in the context.
    pub const MISSING_KEY: &str = "missing_key";
    /// A context value does not have the type asked for.
    pub const INVALID_TYPE: &str = "invalid_type";
    /// The step returned an outcome that is not valid for it.
    pub const INVALID_OUTCOME: &str = "invalid_outcome";
    /// The whole workflow exceeded its timeout.
    pub const WORKFLOW_TIMEOUT: &str = "workflow_timeout";
    /// A nested workflow's execution failed.
    pub const CHILD_FAILED: &str = "child_failed";
    /// The workflow definition changed in a way that this execution cannot follow.
    pub const VERSION_MISMATCH: &str = "version_mismatch";
    /// A duration given at run time (a snooze, an await's timeout, what a timeout
    /// function returned) is out of range: negative, malformed or longer than
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    pub const INVALID_DURATION: &str = "invalid_duration";
    /// The engine failed while driving the execution (a bug in sagaflow, not in
    /// the workflow): the execution ends `Failed` with this kind.
    pub const ENGINE_PANIC: &str = "engine_panic";
    /// A generic error without a more precise kind.
    pub const ERROR: &str = "error";
    /// `ctx.signal(..).timeout(..)`: no signal of that name arrived in time.
    pub const SIGNAL_TIMEOUT: &str = "signal_timeout";
    /// A signal was read from a context that belongs to no running execution (a
    /// step function called directly, without [`Context::with_signal`](crate::Context::with_signal)).
    pub const SIGNAL_UNAVAILABLE: &str = "signal_unavailable";
    /// A step with a `concurrency` or `rate_limit` counted by a context field
    /// (`concurrency_key`, `rate_limit_key`) ran in a context without that field.
    pub const LIMIT_KEY_MISSING: &str = "limit_key_missing";
}

/// The failure of one step attempt.
///
/// A `kind` (a short string such as `"timeout"` or `"connection_error"`) is what
/// `retry_on` / `no_retry_on` match; the message is for people; `details` can carry
/// structured data. Any `std::error::Error` converts into a `StepError` with `?`,
/// its kind guessed from the type (`std::io::Error` of a refused connection becomes
/// `"connection_error"`):
///
/// ```
/// use sagaflow_runtime::StepError;
///
/// fn parse(n: &str) -> Result<u32, StepError> {
///     Ok(n.parse::<u32>()?)
/// }
/// assert_eq!(parse("x").unwrap_err().kind(), "error");
///
/// let e = StepError::new("payment_declined", "card expired").permanent();
/// assert!(!e.is_retryable());
/// ```
///
/// A `StepError` is one pointer wide, so `Result<T, StepError>` stays small on the
/// success path.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepError(Box<Inner>);

#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    kind: Cow<'static, str>,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    retryable: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

impl StepError {
    /// An error of the given kind.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl fmt::Display) -> Self {
        StepError(Box::new(Inner { kind: kind.into(), message: message.to_string(), details: None, retryable: true }))
    }

    /// An error of kind `"error"` with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(kinds::ERROR, message)
    }

    /// An error of kind `"timeout"`.
    pub fn timeout(message: impl fmt::Display) -> Self {
        Self::new(kinds::TIMEOUT, message)
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    /// Replaces the kind.
    pub fn with_kind(mut self, kind: impl Into<Cow<'static, str>>) -> Self {
        self.0.kind = kind.into();
        self
    }

    /// Marks the error as permanent: it is never retried, whatever the retry rules say.
    pub fn permanent(mut self) -> Self {
        self.0.retryable = false;
        self
    }

    /// The kind, matched by `retry_on` / `no_retry_on`.
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Structured details, if any.
    pub fn details(&self) -> Option<&Value> {
        self.0.details.as_ref()
    }

    /// Whether retry rules may retry this error (false after [`permanent`](Self::permanent)).
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// The error as JSON, as stored under `__error__` in the context.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn from_std(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StepError::new(guess_kind(err), message)
    }
}

fn guess_kind(err: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable => kinds::CONNECTION_ERROR,
                K::TimedOut => kinds::TIMEOUT,
                _ => kinds::IO_ERROR,
            };
        }
        if e.is::<tokio::time::error::Elapsed>() {
            return kinds::TIMEOUT;
        }
        if e.is::<serde_json::Error>() {
            return kinds::SERIALIZATION;
        }
        current = e.source();
    }
    kinds::ERROR
}

impl<E> From<E> for StepError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        StepError::from_std(&err)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind, self.0.message)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StepError");
        d.field("kind", &self.0.kind).field("message", &self.0.message);
        if let Some(details) = &self.0.details {
            d.field("details", details);
        }
        if !self.0.retryable {
            d.field("retryable", &false);
        }
        d.finish()
    }
}

/// Adds error kinds to any `Result` whose error converts into a [`StepError`].
///
/// ```
/// use sagaflow_runtime::{StepError, StepResultExt};
///
/// let r: Result<(), std::io::Error> = Err(std::io::Error::other("boom"));
/// let e = r.kind("storage_error").unwrap_err();
/// assert_eq!(e.kind(), "storage_error");
/// ```
pub trait StepResultExt<T> {
    /// Converts the error and sets its kind.
    fn kind(self, kind: &'static str) -> Result<T, StepError>;
    /// Converts the error and marks it permanent (never retried).
    fn permanent(self) -> Result<T, StepError>;
}

impl<T, E: Into<StepError>> StepResultExt<T> for Result<T, E> {
    fn kind(self, kind: &'static str) -> Result<T, StepError> {
        self.map_err(|e| e.into().with_kind(kind))
    }
    fn permanent(self) -> Result<T, StepError> {
        self.map_err(|e| e.into().permanent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_get_connection_kinds() {
        let e: StepError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(e.kind(), kinds::CONNECTION_ERROR);
        let e: StepError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert_eq!(e.kind(), kinds::TIMEOUT);
        let e: StepError = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert_eq!(e.kind(), kinds::SERIALIZATION);
    }

    #[test]
    fn serializes_compactly() {
        let e = StepError::new("timeout", "too slow");
        assert_eq!(e.to_json(), serde_json::json!({"kind": "timeout", "message": "too slow"}));
        let p = e.clone().permanent();
        let back: StepError = serde_json::from_value(p.to_json()).unwrap();
        assert_eq!(back, p);
        assert_eq!(e.to_string(), "timeout: too slow");
    }
}
