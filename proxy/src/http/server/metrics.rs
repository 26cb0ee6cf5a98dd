//! The HTTP proxy's metrics, registered once into the registry passed to `HttpProxy::new`.
//! Label values are bounded: methods from a fixed list, route templates from a bounded table,
//! providers and reasons from configuration and code.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// OpenTelemetry's default buckets for `http.server.request.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: String,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub provider: String,
    pub class: &'static str,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// All metrics of the HTTP proxy.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub request_duration: HistFamily<RequestLabels>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    pub retries: Counter,
    pub ejections: Counter,
    pub healthy_upstreams: Gauge,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub webhook_events: Family<WebhookLabels, Counter>,
    pub webhook_lag: HistFamily<crate::http::webhook::event::LagLabels>,
    pub gateway_requests: Family<GatewayLabels, Counter>,
    pub gateway_duration: HistFamily<GatewayLabels>,
    pub spans_dropped: Counter,
    pub span_exports_failed: Counter,
    /// Handles on `request_duration`'s histograms by route, then (method, status class): the
    /// family's own lookup hashes the whole label set with SipHash and allocates the route.
    request_hists: std::sync::Arc<std::sync::RwLock<RouteHists>>,
}

type RouteHists = std::collections::HashMap<
    String,
    Vec<(&'static str, &'static str, Histogram)>,
    foldhash::fast::RandomState,
>;

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            request_duration: Family::new_with_constructor(duration_histogram),
            rejected: Family::default(),
            upstream_errors: Family::default(),
            retries: Counter::default(),
            ejections: Counter::default(),
            healthy_upstreams: Gauge::default(),
            webhooks: Family::default(),
            webhook_events: Family::default(),
            webhook_lag: Family::new_with_constructor(crate::http::webhook::event::lag_histogram),
            gateway_requests: Family::default(),
            gateway_duration: Family::new_with_constructor(duration_histogram),
            spans_dropped: Counter::default(),
            span_exports_failed: Counter::default(),
            request_hists: Default::default(),
        };
        registry.register(
            "vigil_http_spans_dropped",
            "Spans of the HTTP proxy dropped because the export queue was full",
            m.spans_dropped.clone(),
        );
        registry.register(
            "vigil_http_span_exports_failed",
            "OTLP/HTTP span exports that failed (collector unreachable or refusing)",
            m.span_exports_failed.clone(),
        );
        registry.register_with_unit(
            "vigil_http_server_request_duration",
            "Duration of HTTP requests served by the reverse proxy (OpenTelemetry http.server.request.duration)",
            prometheus_client::registry::Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register(
            "vigil_http_rejected_requests",
            "Requests refused before reaching an upstream (smuggling defences, limits), by reason",
            m.rejected.clone(),
        );
        registry.register(
            "vigil_http_upstream_errors",
            "Failed upstream attempts, by reason (connect, timeout, io)",
            m.upstream_errors.clone(),
        );
        registry.register(
            "vigil_http_upstream_retries",
            "Upstream attempts that were retries of an idempotent request",
            m.retries.clone(),
        );
        registry.register(
            "vigil_http_upstream_ejections",
            "Upstream instances ejected by passive outlier detection",
            m.ejections.clone(),
        );
        registry.register(
            "vigil_http_upstream_healthy_instances",
            "Upstream instances currently not ejected",
            m.healthy_upstreams.clone(),
        );
        registry.register(
            "vigil_webhook_requests",
            "Webhook requests seen by the taps, by provider and result (verified or the reason it was not counted)",
            m.webhooks.clone(),
        );
        registry.register(
            "vigil_webhook_events",
            "Normalized outcomes extracted from verified webhooks, by provider and outcome (duplicates excluded)",
            m.webhook_events.clone(),
        );
        registry.register_with_unit(
            "vigil_webhook_event_lag",
            "Receive time minus the provider's event timestamp, for events that carry one, by provider",
            prometheus_client::registry::Unit::Seconds,
            m.webhook_lag.clone(),
        );
        registry.register(
            "vigil_provider_gateway_requests",
            "Provider gateway calls, by provider and outcome class",
            m.gateway_requests.clone(),
        );
        registry.register_with_unit(
            "vigil_provider_gateway_request_duration",
            "Duration of provider gateway calls",
            prometheus_client::registry::Unit::Seconds,
            m.gateway_duration.clone(),
        );
        m
    }
}

impl Metrics {
    /// Observes one request's duration under its method, route template and status class.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &str,
        status_class: &'static str,
        secs: f64,
    ) {
        {
            let hists = self.request_hists.read().unwrap_or_else(|p| p.into_inner());
            let known = hists.get(route).and_then(|v| {
                v.iter()
                    .find(|(m, c, _)| *m == method && *c == status_class)
            });
            if let Some((_, _, h)) = known {
                h.observe(secs);
                return;
            }
        }
        let h = self
            .request_duration
            .get_or_create(&RequestLabels {
                method,
                route: route.to_string(),
                status_class,
            })
            .clone();
        h.observe(secs);
        // Bounded: routes by the route table, methods and classes by their lists.
        self.request_hists
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.to_string())
            .or_default()
            .push((method, status_class, h));
    }
}

/// A bounded method label.
pub fn method_label(m: &http::Method) -> &'static str {
    method_label_name(m.as_str())
}

/// [`method_label`] by method name.
pub fn method_label_name(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "_OTHER",
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
