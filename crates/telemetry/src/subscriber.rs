//! The process-wide tracing subscriber.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    layer::{Layered, SubscriberExt},
};

use crate::otlp::OtlpExport;

/// The filter sits directly on the registry: inside a list of layers its "never" interest
/// would be outvoted by the other layers' "always".
type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Set once a subscriber is installed; later calls do nothing (tests call init repeatedly).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// What the process runs as, from the first [`init`] (or [`init_for_tests`]).
static SERVICE_NAME: OnceLock<String> = OnceLock::new();

/// The name the process runs as — its `--target` (`all`, `provision`…) as given to [`init`],
/// `test` under [`init_for_tests`], `chukan` before either — for process-wide metric labels
/// such as the database pool's `service`.
pub fn service_name() -> &'static str {
    SERVICE_NAME.get().map_or("chukan", String::as_str)
}

/// Keeps trace export alive; dropping it flushes pending spans and stops the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    export: Option<OtlpExport>,
}

impl TelemetryGuard {
    fn inert() -> Self {
        TelemetryGuard {
            provider: None,
            export: None,
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Flushes the batch; failures only mean lost spans, nothing to do at exit.
            let _ = provider.shutdown();
        }
        // Only after the flush above: the export runtime carries its requests.
        drop(self.export.take());
    }
}

/// Installs the global subscriber: `EnvFilter` from `s.log_level` (`RUST_LOG` wins), logs as
/// JSON or pretty per `s.log_format`, and OpenTelemetry spans (exported by OTLP/HTTP only
/// when `s.otlp_endpoint` is set). A second call is a no-op.
pub fn init(
    service_name: &str,
    s: &chukan_config::TelemetrySettings,
) -> anyhow::Result<TelemetryGuard> {
    let _ = SERVICE_NAME.set(service_name.to_owned());
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(TelemetryGuard::inert());
    }
    let installed = install(service_name, s);
    if installed.is_err() {
        INSTALLED.store(false, Ordering::SeqCst);
    }
    installed
}

fn install(
    service_name: &str,
    s: &chukan_config::TelemetrySettings,
) -> anyhow::Result<TelemetryGuard> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(from_env) => from_env,
        Err(_) => EnvFilter::try_new(&s.log_level)
            .with_context(|| format!("telemetry.log_level {:?} is not a filter", s.log_level))?,
    };
    let fmt: BoxedLayer = match s.log_format {
        chukan_config::LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
        chukan_config::LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };

    let export = if s.otlp_endpoint.trim().is_empty() {
        None
    } else {
        Some(OtlpExport::start(&s.otlp_endpoint)?)
    };
    let provider = tracer_provider(service_name, export.as_ref())?;
    let subscriber = Registry::default()
        .with(filter)
        .with(vec![fmt, otel_layer(&provider, service_name)]);
    tracing::subscriber::set_global_default(subscriber)
        .context("a global tracing subscriber is already installed")?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard {
        provider: Some(provider),
        export,
    })
}

/// A quiet subscriber for tests: spans still get trace ids (so propagation can be tested),
/// logs go to the test writer only when `TEST_LOG` is set.
pub fn init_for_tests() {
    let _ = SERVICE_NAME.set("test".to_owned());
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(provider) = tracer_provider("test", None) else {
        return;
    };
    let mut layers = vec![otel_layer(&provider, "test")];
    let filter = if std::env::var_os("TEST_LOG").is_some() {
        layers.push(tracing_subscriber::fmt::layer().with_test_writer().boxed());
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"))
    } else {
        // Nothing is printed; spans of our own still need ids for propagation tests.
        EnvFilter::new("info")
    };
    // Another test harness may have installed one already; then its choice stands.
    let _ = tracing::subscriber::set_global_default(Registry::default().with(filter).with(layers));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The provider lives for the test process; without it spans would lose their ids.
    std::mem::forget(provider);
}

/// Spans are always recorded by the SDK so trace ids exist for propagation and log
/// correlation; they leave the process only if an exporter is attached.
fn tracer_provider(
    service_name: &str,
    export: Option<&OtlpExport>,
) -> anyhow::Result<SdkTracerProvider> {
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(export) = export {
        builder = builder.with_batch_exporter(export.span_exporter()?);
    }
    Ok(builder.build())
}

fn otel_layer(provider: &SdkTracerProvider, service_name: &str) -> BoxedLayer {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name.to_owned()))
        .boxed()
}
