//! W3C trace context across AMQP hops: `traceparent` out of the current span, and back in.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The current span's `traceparent`, when the span carries an OpenTelemetry context.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(crate::header::TRACEPARENT)
}

/// Makes `span` a child of the remote span named by `traceparent` (ignored when invalid).
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(
        crate::header::TRACEPARENT.to_owned(),
        traceparent.to_owned(),
    )]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    // Without an OpenTelemetry layer there is nothing to attach to; that is fine.
    let _ = span.set_parent(parent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_otel_context_means_no_traceparent() {
        assert_eq!(current_traceparent(), None);
        set_remote_parent(&tracing::Span::none(), Some("garbage"));
    }
}
