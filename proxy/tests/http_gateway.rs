//! The provider gateway against a local TLS server impersonating providers (its CA is given to
//! the proxy through `ca_file`): outcomes classified for 200, 400, 402 decline, 429, 500,
//! timeout and refused connection, each reported as a signal.

mod http_support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use http_support::{Proxy, closed_port, counter_value};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use vigil_proxy::http::HttpConfig;
use vigil_proxy::http::config::{ProviderChannel, ProviderRoute};
use vigil_signal::{Channel, Outcome, Scope, Source};

type Hits = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

struct TlsProvider {
    port: u16,
    hits: Hits,
    ca_pem: String,
}

async fn tls_provider() -> TlsProvider {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits: Hits = Arc::default();
    let hits2 = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let hits = hits2.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| respond(req, hits.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsProvider {
        port,
        hits,
        ca_pem: ca.pem(),
    }
}

async fn respond(req: Request<Incoming>, hits: Hits) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    hits.lock().unwrap().push((
        parts.method.to_string(),
        parts.uri.path().to_string(),
        parts.headers.clone(),
    ));
    let (status, body, extra): (u16, &str, Option<(&str, &str)>) = match parts.uri.path() {
        "/v1/ok" => (200, r#"{"id":"ch_1"}"#, None),
        "/v1/bad" => (
            400,
            r#"{"error":{"type":"invalid_request_error","code":"parameter_missing","param":"amount"}}"#,
            None,
        ),
        "/v1/charges" => (
            402,
            r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#,
            None,
        ),
        "/v1/rate" => (
            429,
            r#"{"error":{"type":"rate_limit_error"}}"#,
            Some(("retry-after", "7")),
        ),
        "/v1/boom" => (500, r#"{"error":{"type":"api_error"}}"#, None),
        "/v1/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (200, "{}", None)
        }
        "/v3/mail/send" => (
            400,
            r#"{"errors":[{"message":"Does not contain a valid address: jane@example.com","field":"personalizations.0.to.0.email"}]}"#,
            None,
        ),
        // Accepted sends carry the provider's message id: a header (SendGrid) or the body (Mailgun).
        "/v3/mail/ok" => (202, "", Some(("x-message-id", "LRzXl_NHStOGhQ4kofSm_A"))),
        "/v3/example.org/messages" => (
            200,
            r#"{"id":"<20160421175529.19495.89030.B3AE3728@example.org>","message":"Queued. Thank you."}"#,
            None,
        ),
        _ => (404, "{}", None),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some((k, v)) = extra {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    Ok(r)
}

fn provider(name: &str, upstream: String, channel: ProviderChannel) -> ProviderRoute {
    ProviderRoute {
        name: name.into(),
        prefix: None,
        upstream,
        channel,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_outcomes_are_classified_and_signalled() {
    let tp = tls_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tp.ca_pem).unwrap();
    let refused = closed_port().await;
    let cfg = HttpConfig {
        providers: vec![
            provider(
                "stripe",
                format!("https://localhost:{}", tp.port),
                ProviderChannel::Payment,
            ),
            provider(
                "sendgrid",
                format!("https://localhost:{}", tp.port),
                ProviderChannel::Email,
            ),
            provider(
                "twilio",
                format!("https://localhost:{}", refused.port()),
                ProviderChannel::Sms,
            ),
            provider(
                "mailgun",
                format!("https://localhost:{}", tp.port),
                ProviderChannel::Email,
            ),
        ],
        ca_file: Some(ca),
        signal_window_secs: 3600,
        timeouts: vigil_proxy::http::config::Timeouts {
            per_try_ms: 1000,
            total_ms: 3000,
            ..Default::default()
        },
        ..HttpConfig::default()
    };
    let mut proxy = Proxy::start(cfg).await;
    let client = reqwest::Client::new();
    let base = proxy.url("");
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("authorization", "Bearer sk_test_123")
    };

    // 200: success, auth header and method preserved, Host is the provider.
    let r = call(reqwest::Method::POST, "/_provider/stripe/v1/ok?expand=x")
        .body("amount=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"id":"ch_1"}"#);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.source, s.channel, s.outcome),
        (
            Source::ProviderGateway,
            Channel::Payment,
            Outcome::Succeeded
        )
    );
    assert_eq!(s.provider.as_deref(), Some("stripe"));
    {
        let hits = tp.hits.lock().unwrap();
        let (m, p, h) = hits.last().unwrap();
        assert_eq!((m.as_str(), p.as_str()), ("POST", "/v1/ok"));
        assert_eq!(h["authorization"], "Bearer sk_test_123");
        assert_eq!(h["host"], format!("localhost:{}", tp.port));
        assert!(!h.contains_key("x-forwarded-for"));
    }

    // 400: client error with the provider's code, body returned unchanged.
    let r = call(reqwest::Method::POST, "/_provider/stripe/v1/bad")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("parameter_missing"));
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.outcome, s.class.as_deref()),
        (Outcome::Failed, Some("parameter_missing"))
    );
    assert_eq!(s.attrs["gateway_class"], "client_error");

    // 402 decline: card_declined / insufficient_funds, about one card.
    let r = call(reqwest::Method::POST, "/_provider/stripe/v1/charges")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.class.as_deref(), s.code.as_deref()),
        (Some("card_declined"), Some("insufficient_funds"))
    );
    assert_eq!((s.scope, s.permanent), (Scope::Recipient, Some(false)));

    // 429 with Retry-After.
    let r = call(reqwest::Method::GET, "/_provider/stripe/v1/rate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(s.attrs["gateway_class"], "rate_limited");
    assert_eq!(s.attrs["retry_after_secs"], "7");
    assert_eq!(s.scope, Scope::Provider);

    // 500: provider_5xx; an idempotent GET is retried once, a POST without key is not,
    // a POST with an Idempotency-Key is.
    let hits_before = tp.hits.lock().unwrap().len();
    let r = call(reqwest::Method::GET, "/_provider/stripe/v1/boom")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.class.as_deref(), s.attrs["gateway_class"].as_str()),
        (Some("api_error"), "provider_5xx")
    );
    call(reqwest::Method::POST, "/_provider/stripe/v1/boom")
        .body("a=1")
        .send()
        .await
        .unwrap();
    proxy.next_signal().await.unwrap();
    call(reqwest::Method::POST, "/_provider/stripe/v1/boom")
        .header("idempotency-key", "k-1")
        .body("a=1")
        .send()
        .await
        .unwrap();
    proxy.next_signal().await.unwrap();
    assert_eq!(tp.hits.lock().unwrap().len() - hits_before, 2 + 1 + 2);

    // Timeout: 504 and a timeout signal.
    let r = call(reqwest::Method::POST, "/_provider/stripe/v1/slow")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.class.as_deref(), s.scope),
        (Some("timeout"), Scope::Provider)
    );

    // Refused connection.
    let r = call(
        reqwest::Method::POST,
        "/_provider/twilio/2010-04-01/Messages.json",
    )
    .body("x")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 502);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.channel, s.class.as_deref()),
        (Channel::Sms, Some("connection_failure"))
    );

    // SendGrid error list: the field is the code; the address in the message never leaks.
    let r = call(reqwest::Method::POST, "/_provider/sendgrid/v3/mail/send")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(s.code.as_deref(), Some("personalizations.0.to.0.email"));
    assert!(!s.to_json().contains("jane@example.com"));
    assert!(!s.attrs.contains_key("message_id"));

    // Accepted sends carry the provider's message id, as the delivery webhooks will repeat it
    // (SendGrid's `sg_message_id` prefix, Mailgun's `message-id` without angle brackets); the
    // body the client gets is untouched.
    let r = call(reqwest::Method::POST, "/_provider/sendgrid/v3/mail/ok")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-message-id"], "LRzXl_NHStOGhQ4kofSm_A");
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(s.outcome, Outcome::Accepted);
    assert_eq!(
        s.attrs.get("message_id").map(String::as_str),
        Some("LRzXl_NHStOGhQ4kofSm_A")
    );
    let r = call(
        reqwest::Method::POST,
        "/_provider/mailgun/v3/example.org/messages",
    )
    .body("to=a")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Queued. Thank you."));
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(
        (s.outcome, s.attrs.get("message_id").map(String::as_str)),
        (
            Outcome::Accepted,
            Some("20160421175529.19495.89030.B3AE3728@example.org")
        )
    );

    let m = proxy.metrics();
    assert_eq!(
        counter_value(
            &m,
            "vigil_provider_gateway_requests_total{provider=\"stripe\",class=\"provider_5xx\"}"
        ),
        3.0
    );
    assert_eq!(
        counter_value(
            &m,
            "vigil_provider_gateway_requests_total{provider=\"twilio\",class=\"connection_failure\"}"
        ),
        1.0
    );
    assert!(m.contains("route=\"/_provider/stripe/v1/charges\""), "{m}");
}

#[tokio::test]
async fn untrusted_provider_certificate_is_refused() {
    let tp = tls_provider().await;
    // No ca_file: the local CA is not trusted, so the handshake fails (connection failure).
    let cfg = HttpConfig {
        providers: vec![provider(
            "stripe",
            format!("https://localhost:{}", tp.port),
            ProviderChannel::Payment,
        )],
        signal_window_secs: 3600,
        ..HttpConfig::default()
    };
    let mut proxy = Proxy::start(cfg).await;
    let r = reqwest::get(proxy.url("/_provider/stripe/v1/ok"))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let s = proxy.next_signal().await.unwrap();
    assert_eq!(s.class.as_deref(), Some("connection_failure"));
    assert!(tp.hits.lock().unwrap().is_empty());
}
