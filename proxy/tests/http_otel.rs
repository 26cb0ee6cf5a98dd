//! OpenTelemetry spans of the HTTP reverse proxy, exported for real: the proxy's OTLP/HTTP
//! exporter (set up as `vigil run` does with `otlp_endpoint`) sends to a local receiver (POST
//! /v1/traces), which decodes the protobuf with the OpenTelemetry protocol crate and checks the
//! resource, the server span, its attributes and the W3C trace context: a trusted caller's
//! `traceparent` is continued (same trace id, the caller's span as parent), an unsampled one is
//! continued but not recorded, and the `traceparent` sent upstream names the exported server
//! span. A request answered on its first attempt is one server span; failed attempts and
//! retries add client spans under it.

mod http_support;

use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use tokio::sync::mpsc;

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
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.clone());
                    assert_eq!(
                        service,
                        Some(Value::StringValue("vigil-test".into())),
                        "resource service.name"
                    );
                    for ss in &rs.scope_spans {
                        assert_eq!(
                            ss.scope.as_ref().map(|s| s.name.as_str()),
                            Some("vigil.http")
                        );
                    }
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

/// The proxy exporting its spans to `endpoint` as service `vigil-test`.
async fn exporting(cfg: vigil_proxy::http::HttpConfig, endpoint: String) -> Proxy {
    Proxy::start_exporting(
        cfg,
        vigil_proxy::http::server::otlp::SpanExport {
            url: endpoint,
            service_name: "vigil-test".into(),
        },
    )
    .await
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
async fn server_spans_reach_an_otlp_receiver() {
    let (endpoint, mut spans) = receiver().await;
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    // Only trusted peers' trace context is continued.
    cfg.trusted_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    let proxy = exporting(cfg, endpoint).await;
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming_span = "00f067aa0ba902b7";
    let http = reqwest::Client::new();
    let r = http
        .get(proxy.url("/contacts/42?q=secret"))
        .header(
            "traceparent",
            format!("00-{incoming_trace}-{incoming_span}-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A second request without trace context starts a new trace.
    let r = http.get(proxy.url("/accounts")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A caller's unsampled trace: continued upstream, not recorded.
    let r = http
        .get(proxy.url("/unsampled"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 2 {
        match tokio::time::timeout_at(deadline, spans.recv()).await {
            Ok(Some(s)) => got.push(s),
            _ => break,
        }
    }
    let find = |kind: SpanKind, route: Option<&str>| {
        got.iter()
            .find(|s| {
                s.kind == kind as i32
                    && route.is_none_or(|r| attr(s, "http.route").as_deref() == Some(r))
            })
            .unwrap_or_else(|| panic!("no {kind:?} span for {route:?} in {got:#?}"))
    };
    let server = find(SpanKind::Server, Some("/contacts/{id}"));

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
    let dump = format!("{server:?}");
    assert!(
        !dump.contains("secret"),
        "no query strings in spans: {dump}"
    );
    // The caller's trace continues through the proxy: same trace id, the caller's span as the
    // server span's parent, and the `traceparent` sent upstream names the server span.
    assert_eq!(hex::encode(&server.trace_id), incoming_trace);
    assert_eq!(hex::encode(&server.parent_span_id), incoming_span);
    let seen = up.seen();
    let sent = |i: usize| -> Vec<String> {
        seen[i].headers["traceparent"]
            .to_str()
            .unwrap()
            .split('-')
            .map(str::to_string)
            .collect()
    };
    let first = sent(0);
    assert_eq!(first[1], incoming_trace);
    assert_eq!(first[2], hex::encode(&server.span_id));
    assert_eq!(first[3], "01");

    // Without a traceparent: a new trace, whose id is also the one sent upstream.
    let fresh = find(SpanKind::Server, Some("/accounts"));
    assert!(fresh.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex::encode(&fresh.trace_id), incoming_trace);
    let second = sent(1);
    assert_eq!(second[1], hex::encode(&fresh.trace_id));
    assert_eq!(second[2], hex::encode(&fresh.span_id));
    let third = sent(2);
    assert_eq!(third[1], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(third[3], "00");
    // Anything else that arrived within the export period is not from the unsampled trace.
    while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(1500), spans.recv()).await {
        got.push(s);
    }
    assert!(
        got.iter()
            .all(|s| hex::encode(&s.trace_id) != "0af7651916cd43dd8448eb211c80319c"),
        "an unsampled trace was recorded"
    );
    assert!(
        got.iter().all(|s| s.kind == SpanKind::Server as i32),
        "first attempts that were answered export no client span: {got:#?}"
    );
}

/// An attempt that fails (nothing listening) and the retry that succeeds are client spans
/// under the request's server span, with the address tried, the attempt number and the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_and_retries_are_client_spans() {
    let (endpoint, mut spans) = receiver().await;
    let up = Upstream::start("a").await;
    let dead = http_support::closed_port().await;
    let mut cfg = config(&[&up]);
    cfg.upstream.insert(0, format!("http://{dead}"));
    cfg.retries = 1;
    let proxy = exporting(cfg, endpoint).await;
    let http = reqwest::Client::new();
    // Whichever instance the first pick lands on, a request that meets the dead one first
    // comes within a few.
    for i in 0..4 {
        let r = http
            .get(proxy.url(&format!("/r/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut got = Vec::new();
    while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(2500), spans.recv()).await {
        got.push(s);
    }
    let failed = got
        .iter()
        .find(|s| {
            s.kind == SpanKind::Client as i32 && attr(s, "server.address") == Some(dead.to_string())
        })
        .unwrap_or_else(|| panic!("no client span for the failed attempt in {got:#?}"));
    assert_eq!(failed.name, "http.client");
    let status = failed.status.as_ref().expect("failed attempt has a status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "upstream failed")
    );
    assert_eq!(
        attr(failed, "http.request.resend_count").as_deref(),
        Some("0")
    );
    assert_eq!(attr(failed, "http.response.status_code"), None);
    let server = got
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.span_id == failed.parent_span_id)
        .unwrap_or_else(|| panic!("the failed attempt's parent is not a server span: {got:#?}"));
    assert_eq!(server.trace_id, failed.trace_id);
    assert_eq!(attr(server, "http.route").as_deref(), Some("/r/{id}"));
    let retry = got
        .iter()
        .find(|s| {
            s.kind == SpanKind::Client as i32
                && s.parent_span_id == server.span_id
                && s.span_id != failed.span_id
        })
        .unwrap_or_else(|| panic!("no client span for the retry in {got:#?}"));
    assert_eq!(attr(retry, "server.address"), Some(up.addr.to_string()));
    assert_eq!(
        attr(retry, "http.request.resend_count").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(retry, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(retry.start_time_unix_nano >= failed.end_time_unix_nano);
}
