//! OTLP/HTTP (protobuf) span export.
//!
//! The SDK's batch processor exports from its own thread, outside any async runtime, while
//! the workspace builds the exporter with the async reqwest client, which needs a Tokio
//! reactor. So the requests run on a small runtime of our own, and the exporter awaits them
//! through a join handle, which works from any executor.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};

const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct OtlpExport {
    endpoint: String,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl OtlpExport {
    /// `endpoint` is the collector's base URL (`http://otel-collector:4318`); the traces
    /// path is added unless already there.
    pub(crate) fn start(endpoint: &str) -> anyhow::Result<Self> {
        let endpoint = endpoint.trim().trim_end_matches('/');
        let endpoint = if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .context("starting the OTLP export runtime")?;
        Ok(OtlpExport {
            endpoint,
            runtime: Some(runtime),
        })
    }

    pub(crate) fn span_exporter(&self) -> anyhow::Result<SpanExporter> {
        let runtime = self
            .runtime
            .as_ref()
            .context("the OTLP export runtime is gone")?;
        let client = RuntimeBoundClient {
            client: reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .context("building the OTLP HTTP client")?,
            runtime: runtime.handle().clone(),
        };
        SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(self.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()
            .with_context(|| format!("OTLP endpoint {:?} is not usable", self.endpoint))
    }
}

impl Drop for OtlpExport {
    /// Dropping a runtime blocks, which panics inside async code; let it wind down alone.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A reqwest client whose requests run on the export runtime.
#[derive(Debug)]
struct RuntimeBoundClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeBoundClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
