//! OpenTelemetry DB client spans of the pg proxy ([`OtelHook`]), exported for real over
//! OTLP/HTTP to a local receiver (POST /v1/traces) that decodes the protobuf: one span per
//! statement with the database semantic-convention attributes, sanitized query text, the
//! SQLSTATE of a failure, and the sqlcommenter `traceparent` as the parent.

#[path = "pg/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use harness::*;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use tokio::sync::mpsc;
use vigil_proxy::pg::StatementHook;
use vigil_proxy::stats::otel::OtelHook;
use vigil_testkit::PgServer;

/// A minimal OTLP/HTTP receiver; every decoded span goes to the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Span>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            let _ = tx.send(s);
                        }
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), rx)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_spans_reach_an_otlp_receiver() {
    let (endpoint, mut spans) = receiver().await;
    // Built off the runtime: the blocking reqwest client of the exporter owns its own runtime.
    let provider = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build()
    })
    .await
    .unwrap();
    let tracer = BoxedTracer::new(Box::new(provider.tracer("vigil")));
    let hook: Arc<dyn StatementHook> = Arc::new(OtelHook::new(tracer, None));

    let pg = PgServer::shared();
    let db = database(pg);
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE contacts (id int PRIMARY KEY, email text); \
             INSERT INTO contacts VALUES (42, 'secret@example.com'); \
             ALTER TABLE contacts OWNER TO {ROLE}"
        ),
    )
    .unwrap();
    let p = Proxy::start_with_hook(config(pg, &db.name, 2), Some(hook)).await;
    let c = p.client().await;
    // Simple protocol, with a sqlcommenter traceparent and a constant that must not leak.
    c.simple_query(&format!(
        "SELECT email FROM contacts WHERE email = 'secret@example.com' \
         /*route='%2Fcontacts',traceparent='00-{TRACE}-{PARENT}-01'*/"
    ))
    .await
    .unwrap();
    // Extended protocol with a parameter value that must not leak either.
    let rows = c
        .query(
            "SELECT id FROM contacts WHERE email = $1",
            &[&"secret@example.com"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // A failure.
    c.simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();

    let p2 = provider.clone();
    tokio::task::spawn_blocking(move || p2.force_flush())
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 3 {
        match tokio::time::timeout_at(deadline, spans.recv()).await {
            Ok(Some(s)) => got.push(s),
            _ => break,
        }
    }
    assert_eq!(got.len(), 3, "one span per statement: {got:#?}");
    for s in &got {
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(attr(s, "db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(attr(s, "db.namespace").as_deref(), Some("crm"));
        let dump = format!("{s:?}");
        assert!(
            !dump.contains("secret"),
            "no constants or parameter values: {dump}"
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    let simple = got
        .iter()
        .find(|s| {
            attr(s, "db.query.text").is_some_and(|t| t.contains("email = $1") && !t.contains("id"))
        })
        .unwrap_or_else(|| panic!("no simple-protocol span in {got:#?}"));
    assert_eq!(simple.name, "SELECT contacts");
    assert_eq!(attr(simple, "db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(
        attr(simple, "db.collection.name").as_deref(),
        Some("contacts")
    );
    assert_eq!(
        attr(simple, "db.query.summary").as_deref(),
        Some("SELECT contacts")
    );
    assert_eq!(
        attr(simple, "db.response.returned_rows").as_deref(),
        Some("1")
    );
    assert_eq!(
        hex(&simple.trace_id),
        TRACE,
        "continues the application's trace"
    );
    assert_eq!(
        hex(&simple.parent_span_id),
        PARENT,
        "child of the tagged span"
    );

    let extended = got
        .iter()
        .find(|s| attr(s, "db.query.text").is_some_and(|t| t.contains("select id")))
        .unwrap_or_else(|| panic!("no extended-protocol span in {got:#?}"));
    assert!(
        extended.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    assert_ne!(hex(&extended.trace_id), TRACE);

    let failed = got
        .iter()
        .find(|s| attr(s, "db.response.status_code").is_some())
        .unwrap_or_else(|| panic!("no failed span in {got:#?}"));
    assert_eq!(
        attr(failed, "db.response.status_code").as_deref(),
        Some("42P01")
    );
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32)
    );
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}
