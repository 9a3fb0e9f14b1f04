//! Logs and traces of the Lambda functions (and `baton dev`): JSON log lines with the span fields
//! (`run_id`, `step`, `attempt`) for CloudWatch Logs Insights, and, when an OTLP endpoint is
//! configured the OpenTelemetry way (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (default)
//! or `http/json`; `OTEL_SERVICE_NAME`), the same spans exported as traces over OTLP/HTTP, e.g. to
//! the ADOT collector layer or any collector.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Why the trace exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol this build does not speak.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL `{0}` is not supported: use `http/protobuf` or `http/json`")]
    Protocol(String),
    /// The exporter refused its configuration.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The installed telemetry; flush it before a Lambda invocation returns, because the sandbox may
/// be frozen right after and spans still in the batch would wait for the next invocation.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans ended so far (no-op without an exporter). Blocks until the exporter's
    /// thread has sent them, so it runs on a blocking thread of the runtime when there is one.
    pub async fn flush(&self) {
        let Some(provider) = self.provider.clone() else { return };
        let done = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// The tracer provider when an OTLP endpoint is configured.
pub fn otlp_provider(default_service: &str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    if !otlp_configured() {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("http/protobuf") => Protocol::HttpBinary,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => return Err(TelemetryError::Protocol(other.to_owned())),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
}

/// Installs JSON logs filtered by `RUST_LOG` (default `info`), plus the OTLP trace exporter
/// when configured, as the global subscriber. `service` names the function in traces.
pub fn init(service: &str) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer().json().with_current_span(true);
    let provider = otlp_provider(service)?;
    let traces = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("baton")));
    // A second init in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(logs).with(traces).try_init();
    Ok(Telemetry { provider })
}
