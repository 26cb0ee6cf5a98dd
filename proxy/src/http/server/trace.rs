//! W3C `traceparent` and the proxy's OpenTelemetry spans.
//!
//! A request's trace is continued from a trusted peer's `traceparent` (same trace id, the
//! incoming span as parent) or started; either way the `traceparent` sent upstream names this
//! proxy's server span, so the CRM's spans are children of it.
//!
//! Spans are built directly with the OpenTelemetry API from the request context (no `tracing`
//! span, no subscriber layer on the request path), with the globally installed tracer provider
//! (`vigil run` installs the batch OTLP exporter when `[telemetry] otlp_endpoint` is set). With
//! no provider installed the first request finds the no-op tracer and tracing switches off: ids
//! are then generated here and no span is built.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderValue;
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};

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

/// Random bytes, never all zero (an all-zero id is invalid).
fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let b: [u8; N] = rand::random();
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

/// The tracer of the HTTP proxy; off once it is found to be the no-op tracer.
pub struct Tracing {
    tracer: BoxedTracer,
    off: AtomicBool,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("off", &self.off.load(Ordering::Relaxed))
            .finish()
    }
}

/// The server span of one request (when exported) and the ids to propagate.
pub struct RequestTrace {
    pub ids: TraceContext,
    /// Holds the server span; `None` when tracing is off.
    cx: Option<Context>,
}

impl Tracing {
    /// With the globally installed tracer provider.
    pub fn global() -> Tracing {
        Tracing::new(opentelemetry::global::tracer("vigil.http"))
    }

    pub fn new(tracer: BoxedTracer) -> Tracing {
        Tracing {
            tracer,
            off: AtomicBool::new(false),
        }
    }

    /// Starts the server span named `name` (`METHOD route`) under `incoming` (a trusted peer's
    /// `traceparent`).
    pub fn start_server(
        &self,
        incoming: Option<&str>,
        name: impl FnOnce() -> String,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> RequestTrace {
        let parent = incoming.and_then(parse);
        if self.off.load(Ordering::Relaxed) {
            return RequestTrace::untraced(incoming);
        }
        let parent_cx = match &parent {
            Some(p) => Context::new().with_remote_span_context(p.clone()),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(Cow::Owned(name()))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes())
            .start_with_context(&self.tracer, &parent_cx);
        let sc = span.span_context().clone();
        // The no-op tracer returns the parent's context (or an invalid one): no provider.
        let noop = !sc.is_valid() || parent.as_ref().is_some_and(|p| p.span_id() == sc.span_id());
        if noop {
            self.off.store(true, Ordering::Relaxed);
            return RequestTrace::untraced(incoming);
        }
        RequestTrace {
            ids: TraceContext {
                trace_id: sc.trace_id(),
                span_id: sc.span_id(),
                parent_span_id: parent.map(|p| p.span_id()),
                flags: sc.trace_flags(),
            },
            cx: Some(parent_cx.with_span(span)),
        }
    }

    /// A client span (child of the request's server span) around one upstream attempt; `None`
    /// when the request is not traced.
    pub fn start_client(
        &self,
        request: &RequestTrace,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Option<BoxedSpan> {
        let cx = request.cx.as_ref()?;
        Some(
            self.tracer
                .span_builder("http.client")
                .with_kind(SpanKind::Client)
                .with_attributes(attributes())
                .start_with_context(&self.tracer, cx),
        )
    }
}

impl RequestTrace {
    fn untraced(incoming: Option<&str>) -> RequestTrace {
        RequestTrace {
            ids: TraceContext::continue_or_start(incoming),
            cx: None,
        }
    }

    /// Not traced, with the given ids (tests, internal requests).
    pub fn from_ids(ids: TraceContext) -> RequestTrace {
        RequestTrace { ids, cx: None }
    }

    /// Whether a span is being recorded (attributes are only worth computing then).
    pub fn recording(&self) -> bool {
        self.cx.is_some()
    }

    /// Ends the server span with the response status (5xx marks it failed).
    pub fn end(&self, status: u16) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(""));
            }
            span.end();
        }
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
    fn noop_tracer_switches_tracing_off() {
        let t = Tracing::new(opentelemetry::global::BoxedTracer::new(Box::new(
            opentelemetry::trace::noop::NoopTracer::new(),
        )));
        let r = t.start_server(None, || "GET /".into(), Vec::new);
        assert!(!r.recording());
        assert!(t.off.load(Ordering::Relaxed));
        assert!(t.start_client(&r, Vec::new).is_none());
    }
}
