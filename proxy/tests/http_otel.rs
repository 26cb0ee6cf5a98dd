//! OpenTelemetry spans of the HTTP reverse proxy, exported for real: the same OTLP/HTTP exporter
//! `vigil run` installs (src/telemetry.rs) sends to a local receiver (POST /v1/traces), which
//! decodes the protobuf and checks the server span, its client span and their attributes.
//!
//! The tracing subscriber is process-global, so this file holds exactly one test.

mod http_support;

use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

use http_support::{Proxy, Upstream, config};

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
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_spans_reach_an_otlp_receiver() {
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
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("vigil")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let r = reqwest::get(proxy.url("/contacts/42?q=secret"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .unwrap();

    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 2 {
        match tokio::time::timeout_at(deadline, spans.recv()).await {
            Ok(Some(s)) => got.push(s),
            _ => break,
        }
    }
    let server = got
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span in {got:#?}"));
    let client = got
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no client span in {got:#?}"));

    assert_eq!(
        server.name, "GET /contacts/{id}",
        "named by method and learned route"
    );
    assert_eq!(
        attr(server, "http.route").as_deref(),
        Some("/contacts/{id}")
    );
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(client.name, "http.client");
    assert_eq!(attr(client, "server.address"), Some(up.addr.to_string()));
    assert_eq!(client.trace_id, server.trace_id, "one trace");
    assert_eq!(
        client.parent_span_id, server.span_id,
        "client span is the server's child"
    );
    for s in [server, client] {
        let dump = format!("{s:?}");
        assert!(
            !dump.contains("secret"),
            "no query strings in spans: {dump}"
        );
    }
    // The W3C trace id sent upstream is recorded on the server span.
    let sent = up.seen()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let sent_trace = sent.split('-').nth(1).unwrap().to_string();
    assert_eq!(attr(server, "trace_id"), Some(sent_trace));
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}
