//! Provider gateway forwarding: `/_provider/<name>/rest` goes to the provider's base URL over
//! TLS with method, body and auth headers preserved. Each call is classified (reading the body of
//! small error responses only) and reported as a signal. Retries: idempotent requests without a
//! body, and POSTs carrying an `Idempotency-Key` (small bodies, which are then buffered).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use vigil_signal::Channel;

use super::body::{self, ProxyBody};
use super::forward::{is_idempotent, upstream_response};
use super::headers::strip_hop_by_hop;
use super::metrics::GatewayLabels;
use super::{HttpProxy, Live, RequestCtx, error_response};
use crate::http::gateway::classify::{message_id, message_id_in_body};
use crate::http::gateway::{GatewayOutcome, TransportFailure, classify_failure, classify_response};

/// Error bodies up to this size are read for provider error codes.
const MAX_CLASSIFIED_BODY: u64 = 64 * 1024;
/// Request bodies up to this size are buffered when a retry is allowed.
const MAX_RETRY_BODY: u64 = 64 * 1024;

/// A configured provider route.
#[derive(Debug, Clone)]
pub struct ProviderTarget {
    pub name: String,
    pub prefix: String,
    pub channel: Channel,
    pub scheme: Scheme,
    pub authority: Authority,
    pub base_path: String,
}

impl HttpProxy {
    pub(super) async fn serve_gateway(
        &self,
        live: &Live,
        p: &ProviderTarget,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let (mut parts, incoming) = req.into_parts();
        let rest = &parts.uri.path()[p.prefix.len()..];
        let rest = if rest.is_empty() { "/" } else { rest };
        let mut pq = format!("{}{}", p.base_path, rest);
        if let Some(q) = parts.uri.query() {
            pq.push('?');
            pq.push_str(q);
        }
        let Ok(uri) = Uri::builder()
            .scheme(p.scheme.clone())
            .authority(p.authority.clone())
            .path_and_query(pq)
            .build()
        else {
            return error_response(StatusCode::BAD_REQUEST, false);
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::EXPECT);
        for h in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "via",
        ] {
            parts.headers.remove(h);
        }
        if let Ok(v) = HeaderValue::from_str(p.authority.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
        let has_key = parts.headers.contains_key("idempotency-key");
        let small = incoming
            .size_hint()
            .exact()
            .is_some_and(|n| n <= MAX_RETRY_BODY);
        let (buffered, mut streamed) = if incoming.is_end_stream() {
            (Some(Bytes::new()), None)
        } else if has_key && small {
            match Limited::new(incoming, MAX_RETRY_BODY as usize)
                .collect()
                .await
            {
                Ok(c) => (Some(c.to_bytes()), None),
                Err(_) => return error_response(StatusCode::BAD_REQUEST, true),
            }
        } else {
            (None, Some(body::boxed(incoming)))
        };
        let retriable = buffered.is_some() && (is_idempotent(&parts.method) || has_key);
        let attempts = if retriable { 1 + live.cfg.retries } else { 1 };
        let deadline = Instant::now() + live.cfg.timeouts.total();
        let mut result: Result<Response<ProxyBody>, TransportFailure> =
            Err(TransportFailure::Connect);
        let mut outcome = classify_failure(TransportFailure::Connect);
        for attempt in 0..attempts {
            let out_body = match (&buffered, streamed.take()) {
                (Some(b), _) => body::full(b.clone()),
                (None, Some(s)) => s,
                (None, None) => break,
            };
            if attempt > 0 {
                if !self.retry_budget.withdraw() {
                    break;
                }
                self.metrics.retries.inc();
            } else {
                self.retry_budget.deposit();
            }
            let mut out = Request::new(out_body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = parts.headers.clone();
            let budget = live
                .cfg
                .timeouts
                .per_try()
                .min(deadline.saturating_duration_since(Instant::now()));
            let span = ctx.trace.client(attempt);
            let sent = tokio::time::timeout(budget, self.client.request(out)).await;
            if let Some(span) = span {
                let status = match &sent {
                    Ok(Ok(resp)) => Some(resp.status().as_u16()),
                    _ => None,
                };
                ctx.trace
                    .end_client(span, &p.authority, Some(&p.name), status, "provider failed");
            }
            let retry_worthy;
            (result, outcome, retry_worthy) = match sent {
                Ok(Ok(resp)) => {
                    let (resp, o) = self.classified(&p.name, resp).await;
                    let again = o.status.is_some_and(|s| s >= 500);
                    (Ok(resp), o, again)
                }
                Ok(Err(e)) if e.is_connect() => (
                    Err(TransportFailure::Connect),
                    classify_failure(TransportFailure::Connect),
                    true,
                ),
                Ok(Err(e)) => {
                    tracing::debug!(provider = %p.name, error = %e, "provider request failed");
                    (
                        Err(TransportFailure::Connect),
                        classify_failure(TransportFailure::Connect),
                        false,
                    )
                }
                Err(_) => (
                    Err(TransportFailure::Timeout),
                    classify_failure(TransportFailure::Timeout),
                    false,
                ),
            };
            if !retry_worthy || Instant::now() >= deadline {
                break;
            }
        }
        self.report(p, &outcome, start);
        match result {
            Ok(resp) => resp,
            Err(TransportFailure::Timeout) => error_response(StatusCode::GATEWAY_TIMEOUT, false),
            Err(TransportFailure::Connect) => error_response(StatusCode::BAD_GATEWAY, false),
        }
    }

    /// Classifies a provider response; small error bodies are read (and returned as read).
    async fn classified(
        &self,
        provider: &str,
        resp: Response<Incoming>,
    ) -> (Response<ProxyBody>, GatewayOutcome) {
        let status = resp.status().as_u16();
        let now = chrono::Utc::now();
        let small = resp
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= MAX_CLASSIFIED_BODY);
        // A small accepted body is read when it carries the message id (Twilio, Postmark, ...).
        let wants_body = status >= 400 || message_id_in_body(provider);
        if !small || !wants_body {
            let mut o = classify_response(provider, status, resp.headers(), b"", now);
            if status < 300 {
                o.message_id = message_id(provider, resp.headers(), b"");
            }
            return (upstream_response(resp.map(super::body::boxed)), o);
        }
        let (mut parts, incoming) = resp.into_parts();
        let bytes = match incoming.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let mut o = classify_response(provider, status, &parts.headers, &bytes, now);
        if status < 300 {
            o.message_id = message_id(provider, &parts.headers, &bytes);
        }
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        (Response::from_parts(parts, body::full(bytes)), o)
    }

    fn report(&self, p: &ProviderTarget, o: &GatewayOutcome, start: Instant) {
        let labels = GatewayLabels {
            provider: p.name.clone(),
            class: o.class.as_str(),
        };
        self.metrics.gateway_requests.get_or_create(&labels).inc();
        self.metrics
            .gateway_duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        if self.emitter.is_enabled() {
            self.emitter.emit(o.to_signal(&p.name, p.channel));
        }
    }
}
