//! OTLP/HTTP export of the HTTP proxy's spans, built for the request path.
//!
//! A span costs the request one small record pushed onto a bounded queue (no name formatting,
//! no attribute vectors, no per-span channel message); a task on the runtime takes the queue
//! every second (or as soon as a batch is full), encodes the records straight into an
//! `ExportTraceServiceRequest` protobuf and POSTs it to `<otlp_endpoint>/v1/traces`. A full
//! queue drops spans and counts them (`vigil_http_spans_dropped_total`); a failed POST counts
//! in `vigil_http_span_exports_failed_total`. The request path never waits for the collector.
//! (The pg proxy's statement spans go through the OpenTelemetry SDK's exporter, to the same
//! endpoint.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::Authority;
use prometheus_client::metrics::counter::Counter;

/// Where spans go.
#[derive(Debug, Clone)]
pub struct SpanExport {
    /// The full OTLP/HTTP traces URL (`http://collector:4318/v1/traces`).
    pub url: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// Spans per POST; also the queue length that wakes the exporter early.
const BATCH: usize = 2048;
/// Spans queued at most; beyond this they are dropped and counted.
const MAX_QUEUE: usize = 64 * 1024;
/// How often the exporter takes the queue.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// A span's kind, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub kind: Kind,
    pub start: u64,
    pub end: u64,
    /// Server spans: the method label and the route template (the span is named by both).
    pub method: &'static str,
    pub route: Option<Arc<str>>,
    /// The response status, when there was a response.
    pub status: Option<u16>,
    /// Marks the span failed (server: 5xx; client: no response).
    pub error: Option<&'static str>,
    /// Client spans: the upstream or provider address, the provider, the attempt number.
    pub address: Option<Authority>,
    pub provider: Option<String>,
    pub resend: u32,
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The bounded queue between the request path and the exporter.
#[derive(Debug)]
pub struct SpanSink {
    queue: Mutex<Vec<SpanRecord>>,
    wake: tokio::sync::Notify,
    pub export: SpanExport,
    dropped: Counter,
    failed: Counter,
}

impl SpanSink {
    pub fn new(export: SpanExport, dropped: Counter, failed: Counter) -> SpanSink {
        SpanSink {
            queue: Mutex::new(Vec::with_capacity(BATCH)),
            wake: tokio::sync::Notify::new(),
            export,
            dropped,
            failed,
        }
    }

    /// Queues a finished span (dropped and counted when the queue is full).
    pub fn push(&self, span: SpanRecord) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_QUEUE {
            drop(q);
            self.dropped.inc();
            return;
        }
        q.push(span);
        if q.len() == BATCH {
            drop(q);
            self.wake.notify_one();
        }
    }

    /// Takes everything queued.
    pub fn take(&self) -> Vec<SpanRecord> {
        std::mem::replace(
            &mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()),
            Vec::with_capacity(BATCH),
        )
    }

    /// Waits until a batch is full or `EXPORT_EVERY` passed.
    pub async fn wait(&self) {
        let _ = tokio::time::timeout(EXPORT_EVERY, self.wake.notified()).await;
    }

    /// Counts a failed export.
    pub fn failed(&self) {
        self.failed.inc();
    }

    /// The spans of `batch` as POST bodies of at most [`BATCH`] spans each.
    pub fn bodies(&self, batch: &[SpanRecord]) -> Vec<Vec<u8>> {
        batch
            .chunks(BATCH)
            .map(|c| encode(c, &self.export.service_name))
            .collect()
    }
}

/// Exports what is queued every [`EXPORT_EVERY`] (sooner when a batch is full), forever.
pub async fn run_exporter(sink: std::sync::Arc<SpanSink>, client: super::client::HttpClient) {
    loop {
        sink.wait().await;
        export_queued(&sink, &client).await;
    }
}

/// POSTs everything queued (in batches); failures are counted, the spans dropped.
pub async fn export_queued(sink: &SpanSink, client: &super::client::HttpClient) {
    use http_body_util::BodyExt as _;
    let batch = sink.take();
    if batch.is_empty() {
        return;
    }
    for body in sink.bodies(&batch) {
        let req = http::Request::post(sink.export.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(super::body::full(body));
        let Ok(req) = req else {
            sink.failed();
            continue;
        };
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            let resp = client.request(req).await.ok()?;
            let ok = resp.status().is_success();
            // Read the answer to the end so the connection is reused.
            resp.into_body().collect().await.ok()?;
            Some(ok)
        });
        if sent.await.ok().flatten() != Some(true) {
            sink.failed();
            tracing::debug!(url = %sink.export.url, "span export failed");
        }
    }
}

// ---- protobuf (opentelemetry/proto/collector/trace/v1/trace_service.proto) -------------------
//
// Every message is written once, straight into the request body: a span's size is counted
// first (the same code run over a byte counter), so its length prefix can precede it without
// encoding it into a scratch buffer and copying it.

/// Where encoded bytes go: the body, or a counter that only sizes them.
trait Out {
    fn put(&mut self, b: &[u8]);
    fn byte(&mut self, b: u8);
}

impl Out for Vec<u8> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    #[inline]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
}

/// Counts bytes instead of writing them.
struct Count(usize);

impl Out for Count {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
    #[inline]
    fn byte(&mut self, _: u8) {
        self.0 += 1;
    }
}

#[inline]
fn varint(out: &mut impl Out, mut v: u64) {
    while v >= 0x80 {
        out.byte((v as u8) | 0x80);
        v >>= 7;
    }
    out.byte(v as u8);
}

#[inline]
fn tag(out: &mut impl Out, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

#[inline]
fn bytes_field(out: &mut impl Out, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.put(b);
}

#[inline]
fn fixed64(out: &mut impl Out, field: u32, v: u64) {
    tag(out, field, 1);
    out.put(&v.to_le_bytes());
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field's size on the wire with a one-byte tag.
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// The start of `KeyValue { key = 1; AnyValue value = 2 }` up to the `AnyValue`'s content,
/// which is `any` bytes long.
#[inline]
fn kv_head(out: &mut impl Out, field: u32, key: &str, any: usize) {
    tag(out, field, 2);
    varint(out, (field_len(key.len()) + field_len(any)) as u64);
    bytes_field(out, 1, key.as_bytes());
    tag(out, 2, 2);
    varint(out, any as u64);
}

/// A `KeyValue` with a string value (`AnyValue.string_value = 1`) made of `parts`.
fn kv_str(out: &mut impl Out, field: u32, key: &str, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    kv_head(out, field, key, field_len(len));
    tag(out, 1, 2);
    varint(out, len as u64);
    for p in parts {
        out.put(p);
    }
}

/// A `KeyValue` with an integer value (`AnyValue.int_value = 3`).
fn kv_int(out: &mut impl Out, field: u32, key: &str, v: i64) {
    kv_head(out, field, key, 1 + varint_len(v as u64));
    tag(out, 3, 0);
    varint(out, v as u64);
}

/// `Status { message = 2; code = 3 }` with code `STATUS_CODE_ERROR` (2).
fn error_status(out: &mut impl Out, msg: &str) {
    let len = if msg.is_empty() {
        0
    } else {
        field_len(msg.len())
    } + 2;
    tag(out, 15, 2);
    varint(out, len as u64);
    if !msg.is_empty() {
        bytes_field(out, 2, msg.as_bytes());
    }
    tag(out, 3, 0);
    varint(out, 2);
}

fn span(out: &mut impl Out, s: &SpanRecord) {
    let route = s.route.as_deref().unwrap_or("");
    bytes_field(out, 1, &s.trace_id);
    bytes_field(out, 2, &s.span_id);
    if let Some(p) = &s.parent {
        bytes_field(out, 4, p);
    }
    match s.kind {
        Kind::Server => {
            tag(out, 5, 2);
            varint(out, (s.method.len() + 1 + route.len()) as u64);
            out.put(s.method.as_bytes());
            out.byte(b' ');
            out.put(route.as_bytes());
        }
        Kind::Client => bytes_field(out, 5, b"http.client"),
    }
    tag(out, 6, 0);
    varint(out, s.kind as u64);
    fixed64(out, 7, s.start);
    fixed64(out, 8, s.end.max(s.start));
    if s.kind == Kind::Server {
        kv_str(out, 9, "http.request.method", &[s.method.as_bytes()]);
        kv_str(out, 9, "http.route", &[route.as_bytes()]);
    }
    if let Some(a) = &s.address {
        kv_str(out, 9, "server.address", &[a.as_str().as_bytes()]);
    }
    if let Some(p) = &s.provider {
        kv_str(out, 9, "provider", &[p.as_bytes()]);
    }
    if s.kind == Kind::Client {
        kv_int(out, 9, "http.request.resend_count", i64::from(s.resend));
    }
    if let Some(code) = s.status {
        kv_int(out, 9, "http.response.status_code", i64::from(code));
    }
    if let Some(msg) = s.error {
        error_status(out, msg);
    }
}

/// The size of `f`'s output.
fn sized(f: impl FnOnce(&mut Count)) -> usize {
    let mut c = Count(0);
    f(&mut c);
    c.0
}

/// An `ExportTraceServiceRequest` holding `spans` under one resource (`service.name`) and the
/// instrumentation scope `vigil.http`.
pub fn encode(spans: &[SpanRecord], service_name: &str) -> Vec<u8> {
    const SCOPE: &[u8] = b"vigil.http";
    const VERSION: &[u8] = env!("CARGO_PKG_VERSION").as_bytes();
    let span_lens: Vec<usize> = spans.iter().map(|s| sized(|c| span(c, s))).collect();
    let scope_len = field_len(SCOPE.len()) + field_len(VERSION.len());
    let scope_spans_len =
        field_len(scope_len) + span_lens.iter().map(|l| field_len(*l)).sum::<usize>();
    let resource_len = sized(|c| kv_str(c, 1, "service.name", &[service_name.as_bytes()]));
    let resource_spans_len = field_len(resource_len) + field_len(scope_spans_len);

    let mut out = Vec::with_capacity(field_len(resource_spans_len));
    // ExportTraceServiceRequest.resource_spans = 1
    tag(&mut out, 1, 2);
    varint(&mut out, resource_spans_len as u64);
    // ResourceSpans.resource = 1 { attributes = 1 }
    tag(&mut out, 1, 2);
    varint(&mut out, resource_len as u64);
    kv_str(&mut out, 1, "service.name", &[service_name.as_bytes()]);
    // ResourceSpans.scope_spans = 2 { scope = 1 { name = 1; version = 2 }; spans = 2 }
    tag(&mut out, 2, 2);
    varint(&mut out, scope_spans_len as u64);
    tag(&mut out, 1, 2);
    varint(&mut out, scope_len as u64);
    bytes_field(&mut out, 1, SCOPE);
    bytes_field(&mut out, 2, VERSION);
    for (s, len) in spans.iter().zip(span_lens) {
        tag(&mut out, 2, 2);
        varint(&mut out, len as u64);
        span(&mut out, s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_protobuf() {
        let enc = |v| {
            let mut o = Vec::new();
            varint(&mut o, v);
            o
        };
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        for v in [0, 1, 127, 128, 300, 16383, 16384, u64::MAX] {
            assert_eq!(varint_len(v), enc(v).len(), "{v}");
        }
        let mut o = Vec::new();
        tag(&mut o, 15, 2);
        assert_eq!(o, [0x7a]);
        let mut o = Vec::new();
        tag(&mut o, 16, 5);
        assert_eq!(o, [0x85, 0x01]);
    }

    /// The body decodes as an OTLP request with every field where it was put, and its size
    /// was counted exactly (no reallocation).
    #[test]
    fn encodes_a_decodable_request() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;
        let server = SpanRecord {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent: Some([9; 8]),
            kind: Kind::Server,
            start: 1_000,
            end: 5_000,
            method: "POST",
            route: Some(Arc::from(format!("/contacts/{{id}}/{}", "x".repeat(300)))),
            status: Some(503),
            error: Some(""),
            address: None,
            provider: None,
            resend: 0,
        };
        let client = SpanRecord {
            span_id: [2; 8],
            parent: Some([1; 8]),
            kind: Kind::Client,
            method: "",
            route: None,
            status: None,
            error: Some("upstream failed"),
            address: Some("api.sendgrid.com:443".parse().unwrap()),
            provider: Some("sendgrid".into()),
            resend: 2,
            ..server.clone()
        };
        let spans: Vec<SpanRecord> = (0..200)
            .map(|i| {
                if i % 2 == 0 {
                    server.clone()
                } else {
                    client.clone()
                }
            })
            .collect();
        let body = encode(&spans, "vigil-test");
        assert_eq!(body.len(), body.capacity(), "size counted exactly");
        let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let rs = &req.resource_spans[0];
        let res = rs.resource.as_ref().unwrap();
        assert_eq!(res.attributes[0].key, "service.name");
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "vigil.http");
        assert_eq!(ss.spans.len(), 200);
        let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, k: &str| {
            s.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.as_ref()?.value.clone())
        };
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.parent_span_id, vec![9; 8]);
        assert!(s.name.starts_with("POST /contacts/{id}/xxx"));
        assert_eq!(
            (s.kind, s.start_time_unix_nano, s.end_time_unix_nano),
            (2, 1_000, 5_000)
        );
        assert_eq!(
            attr(s, "http.response.status_code"),
            Some(Value::IntValue(503))
        );
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        let c = &ss.spans[1];
        assert_eq!((c.name.as_str(), c.kind), ("http.client", 3));
        assert_eq!(
            attr(c, "provider"),
            Some(Value::StringValue("sendgrid".into()))
        );
        assert_eq!(
            attr(c, "http.request.resend_count"),
            Some(Value::IntValue(2))
        );
        assert_eq!(
            attr(c, "server.address"),
            Some(Value::StringValue("api.sendgrid.com:443".into()))
        );
        assert_eq!(c.status.as_ref().unwrap().message, "upstream failed");
        assert_eq!(attr(c, "http.response.status_code"), None);
    }
}
