//! Missing delivery outcomes end to end, with the real `vigil` binary: the CRM sends three emails
//! through the provider gateway (the provider answers 202 with an `X-Message-Id`), SendGrid's
//! signed Event Webhook reports `processed` for all three but `delivered` for one only, and the
//! incident service's `vigil_incident_missing_outcomes` gauge counts the other two once
//! `missing_outcome_secs` has passed. The gateway and the tap agree on the message id by
//! themselves (SendGrid's `sg_message_id` is the `X-Message-Id` plus a filter suffix).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use common::{Vigil, obs};
use vigil_democrm::signing::{SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER, SendgridKey};
use vigil_testkit::free_port;

/// A SendGrid-like send endpoint (202 and a fresh `X-Message-Id` per message), and the CRM's
/// webhook handler the tap forwards verified events to (200).
async fn provider() -> SocketAddr {
    let n = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/v3/mail/send",
            post(move || {
                let i = n.fetch_add(1, Ordering::Relaxed);
                async move {
                    let mut r = StatusCode::ACCEPTED.into_response();
                    r.headers_mut().insert(
                        "x-message-id",
                        format!("MsgId{i}_abcdefgh").parse().unwrap(),
                    );
                    r
                }
            }),
        )
        .route("/webhooks/sendgrid", post(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn gauge(admin: u16) -> Option<f64> {
    let m = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    obs::sample(
        &m,
        "vigil_incident_missing_outcomes{channel=\"email\",provider=\"sendgrid\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_without_a_delivery_webhook_are_counted_as_missing_outcomes() {
    let provider = provider().await;
    let key = SendgridKey::generate();
    let (admin, http, incident) = (free_port(), free_port(), free_port());
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("10-outcomes.yaml"),
        "detect:\n  missing_outcome_secs: 2\n",
    )
    .unwrap();
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[http]
listen = "127.0.0.1:{http}"
upstream = ["http://{provider}"]
pii_hash_key = "missing-outcomes-test"
access_log = false
[[http.providers]]
name = "sendgrid"
upstream = "http://{provider}"
channel = "email"
[[http.webhooks]]
path = "/webhooks/sendgrid"
provider = "sendgrid"
secret = "{public}"
[incident]
listen = "127.0.0.1:{incident}"
store = "sqlite::memory:"
rules = "{rules}"
tick_secs = 1
"#,
        public = key.public_key_base64(),
        rules = rules.path().display(),
    );
    let _vigil = Vigil::start(&config, &[]);
    common::wait_http(http, "/").await;
    common::wait_http(admin, "/metrics").await;

    let web = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = web
            .post(format!(
                "http://127.0.0.1:{http}/_provider/sendgrid/v3/mail/send"
            ))
            .header("authorization", "Bearer SG.test")
            .body(format!(
                r#"{{"personalizations":[{{"to":[{{"email":"c{i}@example.com"}}]}}]}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(r.headers()["x-message-id"].to_str().unwrap().to_string());
    }
    // processed for all three, delivered for the first only.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut events = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let sg = format!("{id}.filterdrecv-5bd8f5c6d8-test-1-{i}");
        events.push(
            serde_json::json!({"email": format!("c{i}@example.com"), "timestamp": now,
            "event": "processed", "sg_event_id": format!("p{i}"), "sg_message_id": sg}),
        );
        if i == 0 {
            events.push(
                serde_json::json!({"email": "c0@example.com", "timestamp": now,
                "event": "delivered", "sg_event_id": "d0", "sg_message_id": sg}),
            );
        }
    }
    let body = serde_json::to_vec(&events).unwrap();
    let ts = now.to_string();
    let r = web
        .post(format!("http://127.0.0.1:{http}/webhooks/sendgrid"))
        .header("content-type", "application/json")
        .header(SENDGRID_TIMESTAMP_HEADER, &ts)
        .header(SENDGRID_SIGNATURE_HEADER, key.sign(&ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Past missing_outcome_secs, the two sends with no delivery outcome are missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        last = gauge(admin).await;
        if last == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(last, Some(2.0), "missing outcomes never reached 2");
    // It stays there: nothing else settles them, and the delivered one is not counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gauge(admin).await, Some(2.0));
}
