//! The reverse proxy to the CRM upstreams: header rewriting, round-robin with passive ejection,
//! per-try and total timeouts (504), retries for idempotent requests whose body is known (never
//! for streamed bodies), 503 when no instance can be reached.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use super::body::{self, BoxError, ProxyBody, Watched};
use super::headers::{add_forwarded, add_via, strip_hop_by_hop};
use super::metrics::ReasonLabels;
use super::trace::{ClientSpan, RequestTrace};
use super::upstream::Instance;
use super::{HttpProxy, Live, RequestCtx, error_response};

/// The body to send upstream.
pub enum Outbound {
    /// Already read (webhook taps); can be resent.
    Buffered(Bytes),
    /// Streamed from the client as it arrives.
    Stream(Incoming),
}

/// How the last attempt at an upstream exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Unavailable,
    Timeout,
    Connect,
    Io,
}

impl Failure {
    /// The status the client gets when no attempt succeeded.
    pub(super) fn status(self) -> StatusCode {
        match self {
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::Io => StatusCode::BAD_GATEWAY,
            Failure::Unavailable | Failure::Connect => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

pub fn is_idempotent(m: &Method) -> bool {
    is_idempotent_name(m.as_str())
}

/// [`is_idempotent`] by method name.
pub fn is_idempotent_name(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

impl HttpProxy {
    pub(super) async fn serve_upstream(
        &self,
        live: &Live,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Response<ProxyBody> {
        let (parts, incoming) = req.into_parts();
        self.forward(live, parts, Outbound::Stream(incoming), ctx)
            .await
    }

    /// Sends the request to an upstream instance, retrying where that is safe.
    pub(super) async fn forward(
        &self,
        live: &Live,
        mut parts: Parts,
        body: Outbound,
        ctx: &RequestCtx,
    ) -> Response<ProxyBody> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        // WebSocket and other HTTP/1.1 upgrades: the upgrade headers are hop-by-hop but are
        // re-sent to the upstream; after its 101 both sides are joined into one tunnel.
        let upgrade = upgrade_protocol(&parts).map(|proto| {
            let client = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            (proto, client)
        });
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::EXPECT);
        if let Some((proto, _)) = &upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, proto.clone());
        }
        let mut upgrade = upgrade.and_then(|(_, client)| client);
        add_forwarded(
            &mut parts.headers,
            ctx.peer,
            ctx.trusted,
            ctx.tls,
            host.as_deref(),
        );
        add_via(&mut parts.headers, parts.version);
        if !parts.headers.contains_key(header::HOST)
            && let Some(v) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
        parts.headers.insert("traceparent", ctx.trace.ids.header());
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let idempotent = is_idempotent(&parts.method);
        let (retriable, mut streamed, buffered, body_failed) = match body {
            Outbound::Buffered(b) => (idempotent, None, Some(b), None),
            Outbound::Stream(inc) if inc.is_end_stream() => {
                (idempotent, None, Some(Bytes::new()), None)
            }
            Outbound::Stream(inc) => {
                // The gate enforces the limit on HTTP/1 framing; this covers HTTP/2 bodies.
                let max = usize::try_from(live.cfg.limits.max_body_bytes).unwrap_or(usize::MAX);
                if inc.size_hint().exact().is_some_and(|n| n > max as u64) {
                    return error_response(StatusCode::PAYLOAD_TOO_LARGE, true);
                }
                let (watched, flag) = Watched::new(http_body_util::Limited::new(inc, max));
                (false, Some(body::boxed(watched)), None, Some(flag))
            }
        };
        let t = &live.cfg.timeouts;
        let deadline = Instant::now() + t.total();
        // A known body can always be resent after a connection failure (nothing reached the
        // upstream); after a failure mid-exchange only idempotent requests are retried.
        let attempts = if buffered.is_some() {
            1 + live.cfg.retries
        } else {
            1
        };
        let mut tried = Vec::with_capacity(attempts as usize);
        let mut last = Failure::Unavailable;
        for attempt in 0..attempts {
            let Some(i) = live.pool.pick(&tried) else {
                break;
            };
            tried.push(i);
            let out_body = match (&buffered, streamed.take()) {
                (Some(b), _) => body::full(b.clone()),
                (None, Some(s)) => s,
                (None, None) => break,
            };
            if !self.budget_attempt(attempt) {
                break;
            }
            let inst = live.pool.get(i);
            let pooled = inst.scheme == http::uri::Scheme::HTTP;
            // Plain-HTTP upstreams get origin-form targets on pooled HTTP/1.1 connections;
            // others go through the generic client with an absolute URI.
            let uri = if pooled {
                Ok(Uri::from(pq.clone()))
            } else {
                Uri::builder()
                    .scheme(inst.scheme.clone())
                    .authority(inst.authority.clone())
                    .path_and_query(pq.clone())
                    .build()
            };
            let Ok(uri) = uri else {
                return error_response(StatusCode::BAD_REQUEST, false);
            };
            let mut out = Request::new(out_body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.version_mut() = Version::HTTP_11;
            // The last possible attempt takes the headers; earlier ones copy them.
            *out.headers_mut() = if attempt + 1 == attempts {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            if pooled
                && !out.headers().contains_key(header::HOST)
                && let Ok(v) = HeaderValue::from_str(inst.authority.as_str())
            {
                out.headers_mut().insert(header::HOST, v);
            }
            let budget = t
                .per_try()
                .min(deadline.saturating_duration_since(Instant::now()));
            let span = ctx.trace.client(attempt);
            let in_flight = live.pool.begin(i);
            let sent = tokio::time::timeout(budget, self.send(inst, pooled, out)).await;
            drop(in_flight);
            let status = match &sent {
                Ok(Ok(resp)) => Some(resp.status().as_u16()),
                _ => None,
            };
            end_client_span(&ctx.trace, span, inst, status);
            match sent {
                Ok(Ok(mut resp)) => {
                    self.note_success(live, i);
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client) = upgrade.take()
                    {
                        return tunnel(client, &mut resp);
                    }
                    return upstream_response(resp);
                }
                Ok(Err(fail)) => {
                    match body_failed.as_ref().map(|f| f.load(Ordering::Relaxed)) {
                        Some(body::BODY_TOO_LARGE) => {
                            self.count_error("client_body_too_large");
                            return error_response(StatusCode::PAYLOAD_TOO_LARGE, true);
                        }
                        Some(body::BODY_INVALID) => {
                            self.count_error("client_body");
                            return error_response(StatusCode::BAD_REQUEST, true);
                        }
                        _ => {}
                    }
                    if fail.connect {
                        last = Failure::Connect;
                        self.count_error("connect");
                        self.note_failure(live, i);
                    } else {
                        last = Failure::Io;
                        self.count_error("io");
                        tracing::debug!(error = %fail.error, "upstream request failed");
                        if !retriable {
                            break;
                        }
                    }
                }
                Err(_) => {
                    last = Failure::Timeout;
                    self.count_error("timeout");
                    self.note_failure(live, i);
                    // Slow upstreams are not retried: that would only add load.
                    break;
                }
            }
            if Instant::now() >= deadline {
                last = Failure::Timeout;
                break;
            }
        }
        error_response(last.status(), false)
    }

    /// Accounts for attempt number `attempt` of a request: the first deposits into the retry
    /// budget, a retry withdraws from it (false, counted, when the budget is spent).
    pub(super) fn budget_attempt(&self, attempt: u32) -> bool {
        if attempt == 0 {
            self.retry_budget.deposit();
            return true;
        }
        if !self.retry_budget.withdraw() {
            self.count_error("retry_budget_exhausted");
            return false;
        }
        self.metrics.retries.inc();
        true
    }

    pub(super) fn note_success(&self, live: &Live, i: usize) {
        live.pool.success(i);
        self.metrics
            .healthy_upstreams
            .set(live.pool.healthy() as i64);
    }

    /// One exchange with an upstream instance.
    async fn send(
        &self,
        inst: &Instance,
        pooled: bool,
        out: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, SendFailure> {
        if pooled {
            match self.h1.send(&inst.authority, out).await {
                Ok(r) => Ok(r.map(body::boxed)),
                Err(e) => Err(SendFailure {
                    connect: matches!(e, super::h1pool::SendError::Connect(_)),
                    error: e.into(),
                }),
            }
        } else {
            match self.client.request(out).await {
                Ok(r) => Ok(r.map(body::boxed)),
                Err(e) => Err(SendFailure {
                    connect: e.is_connect(),
                    error: e.into(),
                }),
            }
        }
    }

    pub(super) fn count_error(&self, reason: &'static str) {
        self.metrics
            .upstream_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(super) fn note_failure(&self, live: &Live, i: usize) {
        if live.pool.failure(i) {
            self.metrics.ejections.inc();
            tracing::warn!(upstream = %live.pool.get(i).authority, "upstream instance ejected");
        }
        self.metrics
            .healthy_upstreams
            .set(live.pool.healthy() as i64);
    }
}

/// Ends an attempt's client span with the upstream's status, or failed without one.
pub(super) fn end_client_span(
    trace: &RequestTrace,
    span: Option<ClientSpan>,
    inst: &Instance,
    status: Option<u16>,
) {
    if let Some(span) = span {
        trace.end_client(span, &inst.authority, None, status, "upstream failed");
    }
}

/// A failed upstream exchange; `connect` when nothing reached the upstream.
struct SendFailure {
    connect: bool,
    error: BoxError,
}

/// Keeps `Content-Length` only when it is a single value agreeing with the body's framing (a
/// body of exact size 0 keeps it: HEAD and 304 answers describe a body they do not carry).
pub fn sanitize_length(headers: &mut http::HeaderMap, exact: Option<u64>) {
    let values: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if values.is_empty() {
        return;
    }
    let declared = (values.len() == 1)
        .then(|| values[0].to_str().ok()?.parse::<u64>().ok())
        .flatten();
    let keep = headers.get(header::TRANSFER_ENCODING).is_none()
        && match (declared, exact) {
            (Some(d), Some(e)) => d == e || e == 0,
            _ => false,
        };
    if !keep {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// The protocol a GET asks to upgrade to (`Connection: upgrade` plus `Upgrade`).
fn upgrade_protocol(parts: &Parts) -> Option<HeaderValue> {
    if parts.method != Method::GET || parts.version != Version::HTTP_11 {
        return None;
    }
    let asks = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Answers the client's upgrade with the upstream's 101 and joins the two connections.
fn tunnel<B>(client: hyper::upgrade::OnUpgrade, resp: &mut Response<B>) -> Response<ProxyBody> {
    let upstream = hyper::upgrade::on(&mut *resp);
    tokio::spawn(async move {
        let (Ok(c), Ok(u)) = (client.await, upstream.await) else {
            return;
        };
        let mut c = hyper_util::rt::TokioIo::new(c);
        let mut u = hyper_util::rt::TokioIo::new(u);
        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
    });
    let mut out = Response::new(body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    add_via(out.headers_mut(), Version::HTTP_11);
    out
}

/// The upstream response with hop-by-hop headers removed and `Via` added; the body streams.
/// A `Content-Length` that does not match the framing hyper actually used (chunked with a stale
/// length, repeated values) is dropped so the client never sees two framings.
pub fn upstream_response(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    sanitize_length(&mut parts.headers, body.size_hint().exact());
    strip_hop_by_hop(&mut parts.headers);
    add_via(&mut parts.headers, parts.version);
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, body)
}
