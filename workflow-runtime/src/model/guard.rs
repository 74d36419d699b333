//! The one guard around every call into user code: step bodies and the futures
//! they return, `when` conditions, timeout and backoff functions, handlers,
//! compensations, `on_step_error` hooks, nested workflows' input functions and
//! graft functions run again during recovery.
//!
//! A panic in user code never unwinds into the engine: it becomes a
//! [`StepError`] of kind `"panic"` that names what panicked, and the engine
//! carries on.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use super::error::{StepError, kinds};

/// A call into user code panicked; the panic's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Panicked(pub(crate) String);

impl Panicked {
    /// The step error this panic becomes. `what` names the code that panicked
    /// (`"step `charge`"`, `"the backoff function of step `charge`"`); the
    /// panic's message is kept in the error's details as its stack trace, which
    /// failing executions show under `__stacktrace__`.
    pub(crate) fn into_error(self, what: Option<&str>) -> StepError {
        let message = match what {
            Some(what) => format!("{what} panicked: {}", self.0),
            None => self.0.clone(),
        };
        StepError::new(kinds::PANIC, message)
            .with_details(serde_json::json!({ "stacktrace": format!("panicked: {}", self.0) }))
    }
}

/// Calls `f`, turning a panic into [`Panicked`].
pub(crate) fn call<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(&*p)))
}

/// Polls `fut`, turning a panic into [`Panicked`].
pub(crate) fn poll<F: Future + ?Sized>(
    fut: Pin<&mut F>,
    cx: &mut TaskContext<'_>,
) -> Result<Poll<F::Output>, Panicked> {
    call(|| fut.poll(cx))
}

/// Runs `fut` to its end, turning a panic into [`Panicked`].
pub(crate) async fn run<F: Future>(fut: F) -> Result<F::Output, Panicked> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match poll(fut.as_mut(), cx) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(p) => Poll::Ready(Err(p)),
    })
    .await
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_culprit() {
        let err = call(|| -> u32 { panic!("boom") }).unwrap_err();
        assert_eq!(err, Panicked("boom".into()));
        let err = err.into_error(Some("the condition of step `a`"));
        assert_eq!(err.kind(), kinds::PANIC);
        assert_eq!(err.message(), "the condition of step `a` panicked: boom");
        assert_eq!(err.details().unwrap()["stacktrace"], "panicked: boom");
        assert_eq!(call(|| 7), Ok(7));
    }

    #[tokio::test]
    async fn a_panicking_future_is_caught_at_the_poll_that_panics() {
        let err = run(async {
            tokio::task::yield_now().await;
            panic!("later {}", 1);
        })
        .await;
        assert_eq!(err, Err::<(), _>(Panicked("later 1".into())));
        assert_eq!(run(async { 3 }).await, Ok(3));
    }
}
