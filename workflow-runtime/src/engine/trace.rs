//! Traces that survive hand-offs: the trace a new execution joins, and the
//! parenting of its spans to it wherever and whenever it runs.
//!
//! When an execution is started inside a span that OpenTelemetry knows (feature
//! `opentelemetry`, a `tracing-opentelemetry` layer installed), it joins that
//! span's trace, parented to it; a nested execution started by its parent's
//! driver joins the parent's execution span. Without the feature a nested
//! execution joins its parent's trace, and others get a trace of their own. The
//! context is kept in the execution's creation record ([`TraceContext`]): its
//! `sagaflow.execution` span carries it as the fields `trace_id` and
//! `parent_span_id` and, with the feature, is parented to that remote span — in
//! the process that started it, after a crash and recovery, on the node that
//! claims it, after a resume.

use crate::model::TraceContext;

/// The context a new execution joins: the current OpenTelemetry span's (with the
/// feature), else `inherited` (a nested execution's parent's), else a new trace.
pub(crate) fn for_new(inherited: Option<&TraceContext>) -> TraceContext {
    current().or_else(|| inherited.cloned()).unwrap_or_else(TraceContext::fresh)
}

#[cfg(feature = "opentelemetry")]
fn current() -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| TraceContext { trace_id: sc.trace_id().to_string(), span_id: sc.span_id().to_string() })
}

#[cfg(not(feature = "opentelemetry"))]
fn current() -> Option<TraceContext> {
    None
}

/// Makes `span` (not entered yet) a child of the remote span of `trace`, for the
/// OpenTelemetry layer; without the feature, or without the layer, nothing.
#[cfg(feature = "opentelemetry")]
pub(crate) fn adopt(span: &tracing::Span, trace: &TraceContext) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(&trace.trace_id), SpanId::from_hex(&trace.span_id)) else {
        return;
    };
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn adopt(_span: &tracing::Span, _trace: &TraceContext) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_execution_joins_its_parents_trace_and_others_get_their_own() {
        let parent = TraceContext::fresh();
        assert_eq!(for_new(Some(&parent)), parent);
        assert_ne!(for_new(None).trace_id, for_new(None).trace_id);
    }
}
