//! W3C trace context for hops the tracing spans cannot follow by themselves: AMQP headers
//! and HTTP calls to the NWS.

use std::collections::HashMap;

use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The current span's `traceparent` header value, or `None` outside any traced span.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span named by `traceparent`. An invalid value is
/// ignored: the span then starts a trace of its own.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails if the span already started (a defect: create the span, set its parent, then
        // enter it) or no OpenTelemetry layer is installed (tests).
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = ?e, "trace parent not set");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_spans() {
        crate::init_for_tests();
        assert_eq!(current_traceparent(), None);

        let outer = tracing::info_span!("outer");
        let header = outer.in_scope(current_traceparent).unwrap();
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");

        let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = tracing::info_span!("from_the_bus");
        set_parent_from_traceparent(&child, remote);
        let inner = child.in_scope(current_traceparent).unwrap();
        assert!(inner.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!inner.contains("00f067aa0ba902b7"));

        let ignored = tracing::info_span!("garbage_parent");
        set_parent_from_traceparent(&ignored, "not-a-traceparent");
        let own = ignored.in_scope(current_traceparent).unwrap();
        assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
