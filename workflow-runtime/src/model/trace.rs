//! The trace an execution belongs to, kept in its creation record so that every
//! span of the execution — after a restart, on another node, after a resume —
//! joins the same trace.
//!
//! Which trace a new execution joins, and how its spans are parented, is the
//! engine's (`engine::trace`).

use serde::{Deserialize, Serialize};

/// A W3C trace context: the trace an execution belongs to and the span its
/// spans hang under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The trace id: 32 lower-case hex digits.
    pub trace_id: String,
    /// The span the execution's spans are children of: 16 lower-case hex digits.
    pub span_id: String,
}

impl TraceContext {
    /// A new trace, with a span id of its own (random, never all zeros).
    pub fn fresh() -> TraceContext {
        let mut trace = fastrand::u128(..);
        while trace == 0 {
            trace = fastrand::u128(..);
        }
        TraceContext { trace_id: format!("{trace:032x}"), span_id: fresh_span() }
    }

    /// The `traceparent` header of this context (sampled).
    ///
    /// ```
    /// let cx = sagaflow_runtime::TraceContext {
    ///     trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
    ///     span_id: "00f067aa0ba902b7".into(),
    /// };
    /// assert_eq!(cx.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// ```
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn fresh_span() -> String {
    let mut span = fastrand::u64(..);
    while span == 0 {
        span = fastrand::u64(..);
    }
    format!("{span:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_context_is_a_valid_traceparent() {
        let cx = TraceContext::fresh();
        assert_eq!((cx.trace_id.len(), cx.span_id.len()), (32, 16));
        assert!(cx.trace_id.chars().chain(cx.span_id.chars()).all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
        assert_ne!(cx.trace_id, TraceContext::fresh().trace_id);
    }
}
