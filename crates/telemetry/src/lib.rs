//! Tracing, OpenTelemetry export, Prometheus metrics and health endpoints for chukan.
//!
//! - [`init`] sets up logs (JSON or pretty), W3C trace context and, when an endpoint is
//!   configured, OTLP/HTTP export of traces.
//! - [`OpsServer`] is the separate operations listener: `/metrics`, `/livez`, `/readyz`.
//! - [`boundary`] is the outermost middleware: a span per request, a support id on every
//!   problem+json answer, and the one log line of a failed request.
//! - [`http_metrics`] records RED metrics of the public API per route pattern.
//! - [`current_traceparent`] and [`set_parent_from_traceparent`] carry a trace across
//!   RabbitMQ hops and HTTP calls to the NWS.

mod boundary;
mod http_metrics;
mod ops;
mod otlp;
mod propagation;
mod subscriber;

pub use boundary::boundary;
pub use http_metrics::{HttpMetrics, OutsideServiceHours, http_metrics};
pub use ops::{OpsServer, ReadinessCheck};
pub use propagation::{current_traceparent, set_parent_from_traceparent};
pub use subscriber::{TelemetryGuard, init, init_for_tests, service_name};
