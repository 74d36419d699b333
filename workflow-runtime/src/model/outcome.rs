//! [`Outcome`]'s constructors and the conversions of what a step returns into a
//! [`StepResult`].

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::await_request::AwaitRequest;
use super::duration::DurationArg;
use super::error::{StepError, kinds};
use super::step::{Outcome, StepResult, Task};

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

    /// Park the step until the signal `name` arrives
    /// ([`Engine::signal`](crate::Engine::signal)); its payload becomes the step's
    /// output (a JSON object is merged into the context). A signal sent before the
    /// step waits is buffered, and the step receives it at once. Without a timeout;
    /// see [`AwaitRequest::signal`] for one. The semantics are described in
    /// [`Engine::signal`](crate::Engine::signal).
    pub fn await_signal(name: impl Into<String>) -> Self {
        Outcome::Await(Box::new(AwaitRequest::signal(name)))
    }

    /// Park the step until the signal `name` arrives, then run it again: the new
    /// attempt receives the signal from [`Context::signal`](crate::Context::signal)
    /// (or [`Context::try_signal`](crate::Context::try_signal)) at once, and keeps
    /// it until it completes. This is how a step reads a signal without holding a
    /// running attempt while it waits (what a `#[signal("name")]` parameter does).
    pub fn rerun_on_signal(name: impl Into<String>) -> Self {
        Outcome::Await(Box::new(AwaitRequest::signal(name).rerun()))
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
