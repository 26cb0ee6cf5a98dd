//! Logs, traces and error reporting for the sidecar itself.
//!
//! - `tracing` logs, pretty or JSON, filtered by `[telemetry] log_level` (or `RUST_LOG`).
//! - OpenTelemetry traces over OTLP/HTTP when `otlp_endpoint` is set, with the W3C trace-context
//!   propagator installed (the SDK default is a no-op).
//! - Sentry for the sidecar's own errors (`error!` events) and panics when `sentry_dsn` is set;
//!   `send_default_pii` stays off, and Vigil never puts secrets or customer data in log fields.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.log_level: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("telemetry.otlp_endpoint: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps exporters alive; flushes traces and Sentry events when dropped.
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    sentry: Option<sentry::ClientInitGuard>,
}

impl TelemetryGuard {
    /// Flush pending Sentry events (waits up to `timeout`).
    pub fn flush_sentry(&self, timeout: std::time::Duration) -> bool {
        self.sentry.as_ref().is_some_and(|g| g.flush(Some(timeout)))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take()
            && let Err(e) = t.shutdown()
        {
            eprintln!("vigil: flushing traces failed: {e}");
        }
    }
}

/// Install the global subscriber. Call once, early in `main`.
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&cfg.log_level)?,
    };
    let fmt = match cfg.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };

    let tracer = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint))
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(cfg.service_name.clone())
                        .build(),
                )
                .build();
            // The pg proxy's statement spans use the global provider (proxy/src/stats/otel.rs).
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            Some(provider)
        }
        None => None,
    };
    let otel = tracer.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("vigil"))
            .boxed()
    });

    let sentry = cfg.sentry_dsn.as_ref().map(|dsn| {
        let mut options = sentry::ClientOptions::default();
        options.release = Some(env!("CARGO_PKG_VERSION").into());
        options.server_name = Some(cfg.service_name.clone().into());
        options.send_default_pii = false;
        sentry::init((dsn.as_str(), options))
    });
    // `error!` events become Sentry events, with the `warn!`/`info!` before them as breadcrumbs.
    let sentry_layer = sentry.as_ref().map(|_| {
        use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
        use tracing_subscriber::filter::LevelFilter;
        ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .and_then(BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
            .boxed()
    });

    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .with(sentry_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { tracer, sentry })
}

/// `http://collector:4318` -> `http://collector:4318/v1/traces` (kept when already given).
pub fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") {
        e.to_owned()
    } else {
        format!("{e}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn otlp_traces_path_is_appended_once() {
        assert_eq!(
            super::traces_url("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/v1/traces/"),
            "http://c:4318/v1/traces"
        );
    }
}
