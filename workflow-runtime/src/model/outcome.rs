//! [`Outcome`]: what a successful step asks the engine to do next.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::duration::DurationArg;
use super::error::{StepError, kinds};
use super::task::Task;

/// The result of a step: an [`Outcome`] or a [`StepError`].
pub type StepResult = Result<Outcome, StepError>;

/// What a step returns when it did not fail.
///
/// ```
/// use sagaflow_runtime::{AwaitRequest, Outcome, json};
///
/// let merge: Outcome = json!({ "user_id": 123 }).into();   // merged into the context
/// let done = Outcome::Done;                               // nothing to add
/// let skip = Outcome::skip("nothing to do today");
/// let wait = Outcome::await_for("24h");
/// let ask = Outcome::await_with(AwaitRequest::timeout("48h").notify("email").approvers(["boss@example.com"]));
/// let later = Outcome::snooze("5m");                      // run again in 5 minutes
/// # let _ = (merge, done, skip, wait, ask, later);
/// ```
#[non_exhaustive]
pub enum Outcome {
    /// Success without output.
    Done,
    /// Success with an output. A JSON object is merged into the context at the top
    /// level (or stored under the step's `context_key`); any other value is kept as
    /// the step's output only.
    Output(Value),
    /// The step decided not to run; dependents proceed as if it had completed.
    Skip(String),
    /// Park the execution until [`resume`](crate::Engine::resume) or the timeout.
    Await(Box<AwaitRequest>),
    /// Add steps to the running execution (only from a graft step).
    Expand(Vec<Task>),
    /// Run this step again after the duration, without spending a retry.
    Snooze(DurationArg),
}

impl Outcome {
    /// Skip the step with a reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Outcome::Skip(reason.into())
    }

    /// Wait for a human (or another system) without a time limit.
    pub fn await_resume() -> Self {
        Outcome::Await(Box::default())
    }

    /// Wait at most `timeout` for [`resume`](crate::Engine::resume); then the step's
    /// `on_timeout` handler runs, or the step fails with kind `"await_timeout"`.
    pub fn await_for(timeout: impl Into<DurationArg>) -> Self {
        Outcome::Await(Box::new(AwaitRequest::timeout(timeout)))
    }

    /// Wait as described by an [`AwaitRequest`] (timeout, whom to notify, approvers).
    pub fn await_with(request: AwaitRequest) -> Self {
        Outcome::Await(Box::new(request))
    }

    /// Run the step again after `delay`.
    pub fn snooze(delay: impl Into<DurationArg>) -> Self {
        Outcome::Snooze(delay.into())
    }

    /// Add these steps to the execution (see [`Task`]).
    pub fn expand(steps: impl IntoIterator<Item = Task>) -> Self {
        Outcome::Expand(steps.into_iter().collect())
    }

    /// An output built from any serializable value.
    pub fn output(value: impl Serialize) -> Result<Self, StepError> {
        let v = serde_json::to_value(value)
            .map_err(|e| StepError::new(kinds::SERIALIZATION, format!("cannot serialize step output: {e}")))?;
        Ok(Outcome::Output(v))
    }
}

impl From<Value> for Outcome {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Outcome::Done,
            v => Outcome::Output(v),
        }
    }
}

impl From<Map<String, Value>> for Outcome {
    fn from(m: Map<String, Value>) -> Self {
        Outcome::Output(Value::Object(m))
    }
}

impl From<AwaitRequest> for Outcome {
    fn from(a: AwaitRequest) -> Self {
        Outcome::Await(Box::new(a))
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => f.write_str("Done"),
            Outcome::Output(v) => f.debug_tuple("Output").field(v).finish(),
            Outcome::Skip(r) => f.debug_tuple("Skip").field(r).finish(),
            Outcome::Await(a) => f.debug_tuple("Await").field(a).finish(),
            Outcome::Expand(steps) => f.debug_list().entries(steps.iter().map(|s| &s.name)).finish(),
            Outcome::Snooze(d) => f.debug_tuple("Snooze").field(&d.describe()).finish(),
        }
    }
}

/// A request to park the execution until it is resumed: an optional timeout and
/// free-form data kept on the execution (shown by `get_state` and the dashboard).
#[derive(Clone, Debug, Default)]
pub struct AwaitRequest {
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) notify: Option<Value>,
    pub(crate) approvers: Option<Value>,
    pub(crate) data: Map<String, Value>,
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
}

/// Anything a step may return.
///
/// Implemented for `Result<T, E>` where `T` is an [`Outcome`], an
/// [`AwaitRequest`] or any `Serialize` value (a JSON object is merged into the
/// context, `()` means done), and `E` converts into [`StepError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a workflow step",
    note = "a step returns `StepResult` or `Result<T, E>` where `T: Serialize` (or `Outcome`) and `E: Into<StepError>`"
)]
pub trait IntoStepResult {
    /// Converts into the engine's result type.
    fn into_step_result(self) -> StepResult;
}

/// A successful step value: [`Outcome`], [`AwaitRequest`] or any `Serialize` type.
pub trait IntoOutcome {
    /// Converts into an [`Outcome`].
    fn into_outcome(self) -> Result<Outcome, StepError>;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Result<Outcome, StepError> {
        Ok(self)
    }
}

impl IntoOutcome for AwaitRequest {
    fn into_outcome(self) -> Result<Outcome, StepError> {
        Ok(Outcome::Await(Box::new(self)))
    }
}

impl<T: Serialize> IntoOutcome for T {
    fn into_outcome(self) -> Result<Outcome, StepError> {
        Outcome::output(self).map(|o| match o {
            Outcome::Output(Value::Null) => Outcome::Done,
            o => o,
        })
    }
}

impl<T: IntoOutcome, E: Into<StepError>> IntoStepResult for Result<T, E> {
    fn into_step_result(self) -> StepResult {
        match self {
            Ok(v) => v.into_outcome(),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_outcomes() {
        assert!(matches!(Ok::<(), StepError>(()).into_step_result(), Ok(Outcome::Done)));
        assert!(matches!(Ok::<_, StepError>(json!({"a": 1})).into_step_result(), Ok(Outcome::Output(_))));
        assert!(matches!(Ok::<_, StepError>(Outcome::skip("x")).into_step_result(), Ok(Outcome::Skip(_))));
        let e = Err::<(), _>(std::io::Error::other("boom")).into_step_result().unwrap_err();
        assert_eq!(e.kind(), "io_error");
        #[derive(Serialize)]
        struct Out {
            id: u32,
        }
        match Ok::<_, StepError>(Out { id: 7 }).into_step_result() {
            Ok(Outcome::Output(v)) => assert_eq!(v, json!({"id": 7})),
            other => panic!("unexpected {other:?}"),
        }
    }
}
