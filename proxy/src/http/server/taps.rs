//! Webhook taps on the data path: the raw body is read (bounded), handed to the tap off the
//! request path, and forwarded byte-identical to the CRM, whose response is returned unchanged.
//! Verification never blocks or alters the webhook; unverified or unparseable webhooks are
//! forwarded too, counted by reason and logged, and produce no outcome signals.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::client::HttpClient;
use super::forward::Outbound;
use super::metrics::WebhookLabels;
use super::{HttpProxy, Live, RequestCtx, error_response};
use crate::http::config::WebhookRoute;
use crate::http::pii::PiiHasher;
use crate::http::webhook::VerifyError;
use crate::http::webhook::event::LagLabels;
use crate::http::webhook::ses::{BoxFuture, CertCache, CertSource, cert_url_ok};
use crate::http::webhook::tap::TapSettings;
use crate::http::webhook::{WebhookRequest, WebhookTap};

/// Concurrent tap verifications (SNS certificate fetches can take seconds).
pub const MAX_TAPS_IN_FLIGHT: usize = 256;

/// A configured tap path.
pub struct TapRoute {
    pub tap: Arc<WebhookTap>,
    pub public_url: Option<String>,
}

impl TapRoute {
    pub fn new(
        w: &WebhookRoute,
        hasher: PiiHasher,
        certs: Arc<CertCache>,
    ) -> Result<TapRoute, VerifyError> {
        let settings = TapSettings {
            provider: w.provider,
            secret: w.secret.clone(),
            topic_arns: w.topic_arns.clone(),
            tolerance_secs: w.tolerance_secs,
            replay_capacity: 10_000,
        };
        let tap = WebhookTap::new(settings, hasher, Some(certs))?;
        Ok(TapRoute {
            tap: Arc::new(tap),
            public_url: w
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
        })
    }
}

/// Signal ids emitted recently (provider retries and replicas re-send the same event).
pub struct RecentIds {
    capacity: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl RecentIds {
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds {
            capacity: capacity.max(1),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// True the first time `id` is seen.
    pub fn first(&self, id: &str) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *g;
        if set.contains(id) {
            return false;
        }
        if order.len() >= self.capacity
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        set.insert(id.to_string());
        order.push_back(id.to_string());
        true
    }
}

/// Fetches SNS signing certificates over HTTPS (webpki roots), only from SNS hosts.
pub struct HttpsCertSource {
    client: HttpClient,
}

impl HttpsCertSource {
    pub fn new(client: HttpClient) -> HttpsCertSource {
        HttpsCertSource { client }
    }
}

impl CertSource for HttpsCertSource {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Vec<u8>, VerifyError>> {
        Box::pin(async move {
            if !cert_url_ok(url) {
                return Err(VerifyError::CertUrl);
            }
            let uri: http::Uri = url.parse().map_err(|_| VerifyError::CertUrl)?;
            let req = Request::get(uri)
                .body(super::body::empty())
                .map_err(|_| VerifyError::CertUrl)?;
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(5), self.client.request(req))
                    .await
                    .map_err(|_| VerifyError::Certificate("fetch timed out"))?
                    .map_err(|_| VerifyError::Certificate("fetch failed"))?;
            if resp.status() != StatusCode::OK {
                return Err(VerifyError::Certificate("fetch returned an error status"));
            }
            let body = Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|_| VerifyError::Certificate("certificate body unreadable"))?;
            Ok(body.to_bytes().to_vec())
        })
    }
}

impl HttpProxy {
    pub(super) async fn serve_webhook(
        self: Arc<Self>,
        live: &Live,
        route: &TapRoute,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Response<ProxyBody> {
        let (parts, incoming) = req.into_parts();
        let raw = match Limited::new(incoming, live.cfg.limits.max_webhook_body_bytes)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                let too_large = e.is::<http_body_util::LengthLimitError>();
                let status = if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error_response(status, true);
            }
        };
        let url = external_url(route, &parts, ctx.trusted, ctx.tls);
        // At most MAX_TAPS_IN_FLIGHT verifications run at once; beyond that the webhook is only
        // forwarded (and counted), so a flood never builds an unbounded backlog.
        match self.tap_permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let me = self.clone();
                let tap = route.tap.clone();
                let headers = parts.headers.clone();
                let body = raw.clone();
                tokio::spawn(async move {
                    me.run_tap(&tap, headers, body, url).await;
                    drop(permit);
                });
            }
            Err(_) => {
                self.metrics
                    .webhooks
                    .get_or_create(&WebhookLabels {
                        provider: route.tap.provider().as_str(),
                        result: "overloaded",
                    })
                    .inc();
            }
        }
        self.forward(live, parts, Outbound::Buffered(raw), ctx)
            .await
    }

    async fn run_tap(&self, tap: &WebhookTap, headers: http::HeaderMap, body: Bytes, url: String) {
        let provider = tap.provider().as_str();
        let received = chrono::Utc::now();
        let req = WebhookRequest {
            headers: &headers,
            body: &body,
            url: &url,
            now_unix: chrono::Utc::now().timestamp(),
        };
        match tap.process(&req).await {
            Ok(events) => {
                self.metrics
                    .webhooks
                    .get_or_create(&WebhookLabels {
                        provider,
                        result: "verified",
                    })
                    .inc();
                for e in events {
                    let signal = e.to_signal();
                    if !self.dedup.first(&signal.id) {
                        continue;
                    }
                    self.metrics
                        .webhook_events
                        .get_or_create(&WebhookLabels {
                            provider,
                            result: outcome_label(e.outcome),
                        })
                        .inc();
                    if let Some(lag) = e.lag_seconds(received) {
                        self.metrics
                            .webhook_lag
                            .get_or_create(&LagLabels { provider })
                            .observe(lag);
                    }
                    self.emitter.emit(signal);
                }
            }
            Err(err) => {
                self.metrics
                    .webhooks
                    .get_or_create(&WebhookLabels {
                        provider,
                        result: err.reason(),
                    })
                    .inc();
                tracing::warn!(provider, reason = err.reason(), error = %err, "webhook not counted");
            }
        }
    }
}

/// The URL the provider called: the configured public URL, else rebuilt from the request.
fn external_url(
    route: &TapRoute,
    parts: &http::request::Parts,
    trusted: bool,
    tls: bool,
) -> String {
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Some(base) = &route.public_url {
        return format!("{base}{pq}");
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let scheme = trusted
        .then(|| header("x-forwarded-proto"))
        .flatten()
        .unwrap_or_else(|| if tls { "https" } else { "http" }.to_string());
    let host = trusted
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header(header::HOST.as_str()))
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    format!("{scheme}://{host}{pq}")
}

fn outcome_label(o: vigil_signal::Outcome) -> &'static str {
    use vigil_signal::Outcome::*;
    match o {
        Accepted => "accepted",
        Delivered => "delivered",
        Succeeded => "succeeded",
        Deferred => "deferred",
        Failed => "failed",
        Complained => "complained",
        Unsubscribed => "unsubscribed",
        Suppressed => "suppressed",
        Firing => "firing",
        Resolved => "resolved",
    }
}
