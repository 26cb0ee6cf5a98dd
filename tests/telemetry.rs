//! Sentry and OTLP exporters deliver to real HTTP endpoints (local receivers here), and secrets in
//! the config never reach them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use vigil::config::TelemetryConfig;

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receiver() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .fallback(
            |State(seen): State<Seen>, uri: Uri, body: Bytes| async move {
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), body.to_vec()));
                "{}"
            },
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_panics_reach_sentry_and_spans_reach_the_otlp_endpoint() {
    let (sentry_port, sentry_seen) = receiver().await;
    let (otlp_port, otlp_seen) = receiver().await;
    let cfg = TelemetryConfig {
        sentry_dsn: Some(format!("http://publickey@127.0.0.1:{sentry_port}/42")),
        otlp_endpoint: Some(format!("http://127.0.0.1:{otlp_port}")),
        ..Default::default()
    };
    let guard = vigil::telemetry::init(&cfg).unwrap();

    tracing::info_span!("vigil.test.span").in_scope(|| {
        tracing::error!(component = "test", "upstream pool exhausted: marker-7f3a");
    });
    let _ = std::thread::spawn(|| panic!("sidecar panic marker-91b2")).join();
    assert!(guard.flush_sentry(Duration::from_secs(5)));
    drop(guard); // flushes the span exporter

    let sentry = sentry_seen.lock().unwrap().clone();
    assert!(
        sentry.iter().all(|(p, _)| p == "/api/42/envelope/"),
        "{:?}",
        sentry.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let all = sentry
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("marker-7f3a"), "error event missing");
    assert!(all.contains("marker-91b2"), "panic event missing");

    let otlp = otlp_seen.lock().unwrap().clone();
    assert!(
        otlp.iter()
            .any(|(p, b)| p == "/v1/traces" && b.windows(15).any(|w| w == b"vigil.test.span"))
    );
}
