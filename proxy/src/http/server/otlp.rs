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

use std::sync::Mutex;
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
    pub route: String,
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

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A nested message: encoded into `scratch`, then written length-prefixed.
fn nested(out: &mut Vec<u8>, field: u32, scratch: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    scratch.clear();
    f(scratch);
    bytes_field(out, field, scratch);
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
fn kv_head(out: &mut Vec<u8>, field: u32, key: &str, any: usize) {
    tag(out, field, 2);
    varint(out, (field_len(key.len()) + field_len(any)) as u64);
    bytes_field(out, 1, key.as_bytes());
    tag(out, 2, 2);
    varint(out, any as u64);
}

/// A `KeyValue` with a string value (`AnyValue.string_value = 1`) made of `parts`, written
/// without intermediate buffers.
fn kv_str(out: &mut Vec<u8>, field: u32, key: &str, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    kv_head(out, field, key, field_len(len));
    tag(out, 1, 2);
    varint(out, len as u64);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// A `KeyValue` with an integer value (`AnyValue.int_value = 3`).
fn kv_int(out: &mut Vec<u8>, field: u32, key: &str, v: i64) {
    kv_head(out, field, key, 1 + varint_len(v as u64));
    tag(out, 3, 0);
    varint(out, v as u64);
}

fn span(out: &mut Vec<u8>, s: &SpanRecord) {
    bytes_field(out, 1, &s.trace_id);
    bytes_field(out, 2, &s.span_id);
    if let Some(p) = &s.parent {
        bytes_field(out, 4, p);
    }
    match s.kind {
        Kind::Server => {
            tag(out, 5, 2);
            varint(out, (s.method.len() + 1 + s.route.len()) as u64);
            out.extend_from_slice(s.method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(s.route.as_bytes());
        }
        Kind::Client => bytes_field(out, 5, b"http.client"),
    }
    tag(out, 6, 0);
    varint(out, s.kind as u64);
    fixed64(out, 7, s.start);
    fixed64(out, 8, s.end.max(s.start));
    if s.kind == Kind::Server {
        kv_str(out, 9, "http.request.method", &[s.method.as_bytes()]);
        kv_str(out, 9, "http.route", &[s.route.as_bytes()]);
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
        // Status { message = 2; code = 3 (STATUS_CODE_ERROR = 2) }
        let mut st = Vec::with_capacity(msg.len() + 4);
        if !msg.is_empty() {
            bytes_field(&mut st, 2, msg.as_bytes());
        }
        tag(&mut st, 3, 0);
        varint(&mut st, 2);
        bytes_field(out, 15, &st);
    }
}

/// An `ExportTraceServiceRequest` holding `spans` under one resource (`service.name`) and the
/// instrumentation scope `vigil.http`.
pub fn encode(spans: &[SpanRecord], service_name: &str) -> Vec<u8> {
    let mut scope_spans = Vec::with_capacity(spans.len() * 200 + 64);
    let mut scratch = Vec::with_capacity(512);
    nested(&mut scope_spans, 1, &mut scratch, |s| {
        bytes_field(s, 1, b"vigil.http");
        bytes_field(s, 2, env!("CARGO_PKG_VERSION").as_bytes());
    });
    for s in spans {
        nested(&mut scope_spans, 2, &mut scratch, |out| span(out, s));
    }
    let mut resource_spans = Vec::with_capacity(scope_spans.len() + 128);
    nested(&mut resource_spans, 1, &mut scratch, |r| {
        kv_str(r, 1, "service.name", &[service_name.as_bytes()]);
    });
    bytes_field(&mut resource_spans, 2, &scope_spans);
    let mut req = Vec::with_capacity(resource_spans.len() + 8);
    bytes_field(&mut req, 1, &resource_spans);
    req
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
}
