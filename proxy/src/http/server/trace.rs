//! W3C `traceparent` and the proxy's OpenTelemetry spans.
//!
//! A request's trace is continued from a trusted peer's `traceparent` (same trace id, the
//! incoming span as parent) or started; either way the `traceparent` sent upstream names this
//! proxy's server span, so the CRM's spans are children of it.
//!
//! Spans are recorded only when the proxy exports them ([`super::otlp`]): a span is one small
//! record pushed at its end. Without an exporter no span is built; ids are still generated (or
//! continued) so the upstream sees a `traceparent`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;
use http::uri::Authority;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

use super::otlp::{Kind, SpanRecord, SpanSink, now_nanos};

/// The trace context for one request: this proxy's span and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub flags: TraceFlags,
}

impl TraceContext {
    /// Continues `incoming` when given and valid, else starts a new sampled trace (ids made
    /// here; used when no span is exported).
    pub fn continue_or_start(incoming: Option<&str>) -> TraceContext {
        let span_id = SpanId::from_bytes(nonzero::<8>());
        match incoming.and_then(parse) {
            Some(p) => TraceContext {
                trace_id: p.trace_id(),
                span_id,
                parent_span_id: Some(p.span_id()),
                flags: p.trace_flags(),
            },
            None => TraceContext {
                trace_id: TraceId::from_bytes(nonzero::<16>()),
                span_id,
                parent_span_id: None,
                flags: TraceFlags::SAMPLED,
            },
        }
    }

    /// The `traceparent` value to send upstream (this proxy's span as the parent).
    pub fn header(&self) -> HeaderValue {
        // Only hex digits and dashes: always a valid header value.
        HeaderValue::from_bytes(&self.header_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The `traceparent` value as bytes.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id.to_bytes(), &mut out[3..35]);
        out[35] = b'-';
        hex_into(&self.span_id.to_bytes(), &mut out[36..52]);
        out[52] = b'-';
        hex_into(&[self.flags.to_u8()], &mut out[53..55]);
        out
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

thread_local! {
    /// wyrand state, seeded once per thread from the OS-seeded thread RNG. Trace and span ids
    /// need uniqueness, not secrecy (OpenTelemetry's Go SDK uses a seeded math/rand the same
    /// way); ChaCha per id cost more than the rest of the span.
    static IDS: std::cell::Cell<u64> = std::cell::Cell::new(rand::random());
}

/// The next 64 random bits of this thread's id generator (wyrand).
fn next_u64() -> u64 {
    IDS.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// Random bytes, never all zero (an all-zero id is invalid).
fn nonzero<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    loop {
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&next_u64().to_le_bytes()[..chunk.len()]);
        }
        if b.iter().any(|x| *x != 0) {
            return b;
        }
    }
}

/// A W3C `traceparent` value as a remote parent span context (lowercase hex only, no all-zero
/// ids, version `ff` refused, version `00` with exactly four fields).
pub fn parse(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (ver, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let extra = parts.next().is_some();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(ver, 2) || ver == "ff" || (ver == "00" && extra) {
        return None;
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(parent).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// The HTTP proxy's span recording: off until [`Tracing::export`] is given a sink.
#[derive(Debug, Default)]
pub struct Tracing {
    sink: OnceLock<Arc<SpanSink>>,
}

/// The server span of one request (when recorded) and the ids to propagate.
#[derive(Debug)]
pub struct RequestTrace {
    pub ids: TraceContext,
    /// The sink and the start time, when the span is recorded.
    rec: Option<(Arc<SpanSink>, u64)>,
}

/// A client span (one upstream or provider attempt) being timed: nothing is built until it
/// ends ([`RequestTrace::end_client`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientSpan {
    start: u64,
    attempt: u32,
}

impl Tracing {
    /// Records spans into `sink` from now on (once; later calls are ignored).
    pub fn export(&self, sink: Arc<SpanSink>) {
        let _ = self.sink.set(sink);
    }

    /// The sink, when spans are exported.
    pub fn sink(&self) -> Option<&Arc<SpanSink>> {
        self.sink.get()
    }

    /// Starts the server span under `incoming` (a trusted peer's `traceparent`). Parent-based
    /// sampling: a caller's unsampled trace is continued but not recorded.
    pub fn start_server(&self, incoming: Option<&str>) -> RequestTrace {
        let ids = TraceContext::continue_or_start(incoming);
        let rec = self
            .sink
            .get()
            .filter(|_| ids.flags.is_sampled())
            .map(|s| (s.clone(), now_nanos()));
        RequestTrace { ids, rec }
    }
}

impl RequestTrace {
    /// Not traced, with the given ids (tests, internal requests).
    pub fn from_ids(ids: TraceContext) -> RequestTrace {
        RequestTrace { ids, rec: None }
    }

    /// Whether a span is being recorded.
    pub fn recording(&self) -> bool {
        self.rec.is_some()
    }

    /// Starts timing one upstream or provider attempt as a client span (child of this server
    /// span); `None` when the request is not recorded. Whether the span is exported is decided
    /// at [`RequestTrace::end_client`], which builds it only then.
    pub fn client(&self, attempt: u32) -> Option<ClientSpan> {
        self.rec.as_ref().map(|_| ClientSpan {
            start: now_nanos(),
            attempt,
        })
    }

    /// Ends an attempt to `address` with the answer's status, or failed with `error` when there
    /// was none. Exported for provider calls, retries and failed attempts; a reverse-proxy
    /// request answered on its first attempt is the server span alone (as nginx and Envoy trace
    /// a proxied request), which halves the export.
    pub fn end_client(
        &self,
        span: ClientSpan,
        address: &Authority,
        provider: Option<&str>,
        status: Option<u16>,
        error: &'static str,
    ) {
        let Some((sink, _)) = &self.rec else {
            return;
        };
        if status.is_some() && span.attempt == 0 && provider.is_none() {
            return;
        }
        sink.push(SpanRecord {
            trace_id: self.ids.trace_id.to_bytes(),
            span_id: nonzero::<8>(),
            parent: Some(self.ids.span_id.to_bytes()),
            kind: Kind::Client,
            start: span.start,
            end: now_nanos(),
            method: "",
            route: None,
            status,
            error: status.is_none().then_some(error),
            address: Some(address.clone()),
            provider: provider.map(str::to_string),
            resend: span.attempt,
        });
    }

    /// Ends the server span, named `method route`, with the response status (5xx marks it
    /// failed), `elapsed` after it started (measured by the caller's monotonic clock, which
    /// the request path reads anyway).
    pub fn end(&self, status: u16, method: &'static str, route: &Arc<str>, elapsed: Duration) {
        let Some((sink, start)) = &self.rec else {
            return;
        };
        sink.push(SpanRecord {
            trace_id: self.ids.trace_id.to_bytes(),
            span_id: self.ids.span_id.to_bytes(),
            parent: self.ids.parent_span_id.map(|p| p.to_bytes()),
            kind: Kind::Server,
            start: *start,
            end: start.saturating_add(elapsed.as_nanos() as u64),
            method,
            route: Some(route.clone()),
            status: Some(status),
            error: (status >= 500).then_some(""),
            address: None,
            provider: None,
            resend: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_valid_and_starts_otherwise() {
        let t = TraceContext::continue_or_start(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id.map(|s| s.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(t.span_id.to_string(), "00f067aa0ba902b7");
        let h = t.header();
        let h = h.to_str().unwrap();
        assert!(h.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{h}");
        assert!(h.ends_with("-01"), "{h}");
        assert_eq!(h.split('-').nth(2), Some(t.span_id.to_string().as_str()));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "xx",
        ] {
            let t = TraceContext::continue_or_start(Some(bad));
            assert!(t.parent_span_id.is_none(), "{bad}");
            assert_ne!(t.trace_id, TraceId::INVALID);
        }
        let fresh = TraceContext::continue_or_start(None);
        assert_eq!(fresh.header().len(), 55);
        assert!(fresh.header().to_str().unwrap().ends_with("-01"));
    }

    #[test]
    fn spans_are_recorded_only_with_an_exporter_and_a_sampled_parent() {
        let t = Tracing::default();
        let r = t.start_server(None);
        assert!(!r.recording());
        let addr: Authority = "up:80".parse().unwrap();
        assert!(r.client(0).is_none());
        let registry_counter = prometheus_client::metrics::counter::Counter::default;
        let sink = Arc::new(SpanSink::new(
            super::super::otlp::SpanExport {
                url: "http://c/v1/traces".into(),
                service_name: "t".into(),
            },
            registry_counter(),
            registry_counter(),
        ));
        t.export(sink.clone());
        let r = t.start_server(None);
        assert!(r.recording());
        r.end_client(r.client(1).unwrap(), &addr, Some("p"), None, "refused");
        // Exported: a provider call, a retry, a failed first attempt. Not: an answered first
        // attempt to the reverse proxy's upstream.
        r.end_client(r.client(0).unwrap(), &addr, Some("p"), Some(200), "x");
        r.end_client(r.client(1).unwrap(), &addr, None, Some(200), "x");
        r.end_client(r.client(0).unwrap(), &addr, None, None, "refused");
        r.end_client(r.client(0).unwrap(), &addr, None, Some(503), "x");
        r.end(
            503,
            "GET",
            &Arc::from("/a/{id}"),
            Duration::from_micros(1500),
        );
        let spans = sink.take();
        assert_eq!(spans.len(), 5);
        assert_eq!(spans[0].parent, Some(r.ids.span_id.to_bytes()));
        assert_eq!(spans[0].error, Some("refused"));
        assert_eq!(spans[1].status, Some(200));
        assert_eq!((spans[2].resend, spans[2].status), (1, Some(200)));
        assert_eq!((spans[3].resend, spans[3].error), (0, Some("refused")));
        let ids: std::collections::HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
        assert_eq!(ids.len(), 5, "distinct span ids");
        assert!(!ids.contains(&[0; 8]));
        assert_eq!(spans[4].span_id, r.ids.span_id.to_bytes());
        assert_eq!(spans[4].error, Some(""));
        assert_eq!(spans[4].end - spans[4].start, 1_500_000);
        // An unsampled caller: continued, not recorded.
        let r = t.start_server(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        assert!(!r.recording());
        assert!(r.ids.header_bytes().ends_with(b"-00"));
    }
}
