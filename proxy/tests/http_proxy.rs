//! The reverse proxy end to end with real clients (the system `curl`, reqwest) and a real hyper
//! upstream: forwarding headers, keep-alive, HTTP/2 (h2c), streaming, timeouts, failover,
//! metrics and trace propagation.

mod http_support;

use std::process::Command;
use std::time::{Duration, Instant};

use http_support::{Proxy, Upstream, closed_port, config};

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl").args(args).output().expect("curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_correct_headers_and_strips_hop_by_hop() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(proxy.url("/contacts/42?page=2"))
        .header("host", "crm.example.test")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-app", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "a");
    assert!(resp.headers()["via"].to_str().unwrap().contains("vigil"));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path_and_query, "/contacts/42?page=2");
    let h = &s.headers;
    assert_eq!(h["host"], "crm.example.test", "Host preserved");
    assert_eq!(h["x-app"], "kept");
    assert!(!h.contains_key("x-hop") && !h.contains_key("keep-alive"));
    // Untrusted peer: its X-Forwarded-For is replaced, not appended.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "crm.example.test");
    assert_eq!(h["via"], "1.1 vigil");
    let tp = h["traceparent"].to_str().unwrap();
    assert_eq!(tp.len(), 55, "{tp}");
    let counted = "vigil_http_server_request_duration_seconds_count{method=\"GET\",route=\"/contacts/{id}\",status_class=\"2xx\"} 1";
    let metrics = proxy.metrics_when(|m| m.contains(counted)).await;
    assert!(metrics.contains(counted), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_continued_only_from_trusted_peers() {
    let up = Upstream::start("a").await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let untrusted = Proxy::start(config(&[&up])).await;
    let mut cfg = config(&[&up]);
    cfg.trusted_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
    let trusted = Proxy::start(cfg).await;
    let client = reqwest::Client::new();
    for p in [&untrusted, &trusted] {
        client
            .get(p.url("/t"))
            .header("traceparent", incoming)
            .header("x-forwarded-for", "10.9.9.9")
            .send()
            .await
            .unwrap();
    }
    let seen = up.seen();
    let tp0 = seen[0].headers["traceparent"].to_str().unwrap().to_string();
    let tp1 = seen[1].headers["traceparent"].to_str().unwrap().to_string();
    assert!(!tp0.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(tp1.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(!tp1.contains("00f067aa0ba902b7"), "a new span id");
    assert_eq!(seen[1].headers["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_keep_alive_and_http2_prior_knowledge() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let (a, b) = (proxy.url("/one"), proxy.url("/two"));
    let (out, err) = tokio::task::spawn_blocking(move || curl(&["-sv", &a, &b]))
        .await
        .unwrap();
    assert_eq!(out.matches("\"upstream\":\"a\"").count(), 2, "{out}");
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing"),
        "{err}"
    );
    let u = proxy.url("/h2");
    let (out, err) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\\n%{http_version} %{http_code}",
            &u,
        ])
    })
    .await
    .unwrap();
    assert!(out.ends_with("\n2 200"), "{out} {err}");
    // reqwest over h2c too.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(proxy.url("/h2/reqwest")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path_and_query, "/h2/reqwest");
    assert_eq!(last.headers["via"], "2.0 vigil");
    assert!(
        last.headers.contains_key("host"),
        "authority becomes Host upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_download_stream_through() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let total: u64 = 100 * 1024 * 1024;
    let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
    let stream =
        futures::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let client = reqwest::Client::new();
    let resp = client
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains(&format!("\"len\":{total}")), "{body}");
    let mut resp = client
        .get(proxy.url(&format!("/big?n={total}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0u64;
    while let Some(c) = resp.chunk().await.unwrap() {
        got += c.len() as u64;
    }
    assert_eq!(got, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gets_504_at_the_configured_timeout() {
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.timeouts.per_try_ms = 300;
    cfg.timeouts.total_ms = 600;
    let proxy = Proxy::start(cfg).await;
    let start = Instant::now();
    let r = reqwest::get(proxy.url("/slow")).await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(up.seen().len(), 1, "a timed-out request is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_upstreams_down_gives_503() {
    let (a, b) = (closed_port().await, closed_port().await);
    let cfg = vigil_proxy::http::HttpConfig {
        upstream: vec![format!("http://{a}"), format!("http://{b}")],
        ..Default::default()
    };
    let proxy = Proxy::start(cfg).await;
    for _ in 0..4 {
        let r = reqwest::get(proxy.url("/x")).await.unwrap();
        assert_eq!(r.status(), 503);
    }
    let m = proxy.metrics();
    assert!(m.contains("vigil_http_upstream_ejections_total 2"), "{m}");
    assert!(m.contains("vigil_http_upstream_healthy_instances 0"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_killed_mid_load_fails_no_idempotent_request() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let proxy = Proxy::start(config(&[&a, &b])).await;
    let client = reqwest::Client::new();
    let mut served = std::collections::HashMap::new();
    for i in 0..60 {
        if i == 20 {
            a.kill();
        }
        let r = client
            .get(proxy.url(&format!("/load/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        let who = r.headers()["x-upstream"].to_str().unwrap().to_string();
        *served.entry(who).or_insert(0) += 1;
    }
    assert!(served["a"] >= 5 && served["b"] >= 30, "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.timeouts.per_try_ms = 10_000;
    let mut proxy = Proxy::start(cfg).await;
    let url = proxy.url("/slow");
    let inflight = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.shutdown();
    assert_eq!(inflight.await.unwrap().unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(10), &mut proxy.done)
        .await
        .expect("run returns after draining")
        .unwrap();
    assert!(
        reqwest::get(proxy.url("/after")).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_learned_routes() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    for p in [
        "/contacts/1",
        "/contacts/2",
        "/deals/0f8fad5b-d9cb-469f-a165-70867728950e/notes",
    ] {
        reqwest::get(proxy.url(p)).await.unwrap();
    }
    let app = proxy.proxy.api_router();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let v: serde_json::Value = reqwest::get(format!("http://{addr}/api/http/routes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["routes"],
        serde_json::json!(["/contacts/{id}", "/deals/{id}/notes"])
    );
    assert_eq!(v["healthy_upstreams"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: crm\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The RFC 6455 example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // A masked text frame "Hello" (RFC 6455 5.7), echoed back through the tunnel.
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_outcomes_and_latency_become_windowed_signals() {
    use vigil_signal::{Channel, Outcome, Source};
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.signal_window_secs = 1;
    let mut proxy = Proxy::start(cfg).await;
    for p in ["/orders/1", "/orders/2", "/orders/3", "/fail", "/fail"] {
        reqwest::get(proxy.url(p)).await.unwrap();
    }
    // Requests may straddle a window boundary: add counts up per (route, outcome).
    let mut got: std::collections::BTreeMap<(String, String), u64> = Default::default();
    while got.values().sum::<u64>() < 5 {
        let s = proxy.next_signal().await.expect("window signals");
        assert_eq!((s.source, s.channel), (Source::HttpIngress, Channel::Http));
        assert_eq!(s.window_secs, 1);
        assert!(s.latency.is_some_and(|l| l.max_seconds > 0.0));
        if s.outcome == Outcome::Failed {
            assert_eq!(s.class.as_deref(), Some("http_5xx"));
        }
        *got.entry((s.subject.clone().unwrap(), format!("{:?}", s.outcome)))
            .or_default() += s.count;
    }
    let want: std::collections::BTreeMap<(String, String), u64> = [
        (("/fail".to_string(), "Failed".to_string()), 2),
        (("/orders/{id}".to_string(), "Succeeded".to_string()), 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_sick_instances_out() {
    let a = Upstream::start("a").await;
    let sick = Upstream::start("sick").await;
    let mut cfg = config(&[&a, &sick]);
    cfg.health_check_path = Some("/healthz".into());
    cfg.health_check_interval_ms = 50;
    let proxy = Proxy::start(cfg).await;
    // Wait until the first round of checks has run.
    let mut waited = 0;
    while !proxy
        .metrics()
        .contains("vigil_http_upstream_healthy_instances 1")
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 100, "health checks never ran");
    }
    for i in 0..10 {
        let r = reqwest::get(proxy.url(&format!("/x/{i}"))).await.unwrap();
        assert_eq!(r.headers()["x-upstream"], "a");
    }
    assert!(sick.seen().iter().all(|s| s.path_and_query == "/healthz"));
    assert!(
        a.seen()
            .iter()
            .any(|s| s.headers["user-agent"] == "vigil-health-check")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_upstreams_without_dropping_in_flight_requests() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let mut cfg = config(&[&a]);
    cfg.timeouts.per_try_ms = 10_000;
    let proxy = Proxy::start(cfg.clone()).await;
    let url = proxy.url("/slow");
    let inflight = tokio::spawn(async move {
        let r = reqwest::get(url).await.unwrap();
        (
            r.status(),
            r.headers()["x-upstream"].to_str().unwrap().to_string(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut next = cfg.clone();
    next.upstream = vec![b.url()];
    proxy.proxy.reload(next).unwrap();
    let r = reqwest::get(proxy.url("/after")).await.unwrap();
    assert_eq!(r.headers()["x-upstream"], "b");
    assert_eq!(
        inflight.await.unwrap(),
        (reqwest::StatusCode::OK, "a".to_string())
    );
    // Settings bound to the listener need a restart; a bad config changes nothing.
    let mut moved = cfg.clone();
    moved.listen = "127.0.0.1:1".parse().unwrap();
    assert!(matches!(
        proxy.proxy.reload(moved),
        Err(vigil_proxy::http::HttpError::RestartRequired("listen"))
    ));
    let mut bad = cfg;
    bad.upstream = vec!["ftp://nope".into()];
    assert!(proxy.proxy.reload(bad).is_err());
    let r = reqwest::get(proxy.url("/still-b")).await.unwrap();
    assert_eq!(r.headers()["x-upstream"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_negotiates_h2_and_http11_by_alpn() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.tls = Some(vigil_proxy::http::config::TlsListen {
        cert_file,
        key_file,
    });
    let proxy = Proxy::start(cfg).await;
    let url = format!("https://localhost:{}/secure", proxy.addr.port());
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let r = h2.get(&url).send().await.unwrap();
    assert_eq!(
        (r.status(), r.version()),
        (reqwest::StatusCode::OK, reqwest::Version::HTTP_2)
    );
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(
        (r.status(), r.version()),
        (reqwest::StatusCode::OK, reqwest::Version::HTTP_11)
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.headers["x-forwarded-proto"] == "https")
    );
    // Plain HTTP on the TLS port is refused (no response).
    let plain = reqwest::get(format!("http://127.0.0.1:{}/x", proxy.addr.port())).await;
    assert!(plain.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_request_bodies_respect_the_size_limit() {
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.limits.max_body_bytes = 64 * 1024;
    let proxy = Proxy::start(cfg).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // Declared length over the limit: refused before anything is sent upstream.
    let r = h2
        .post(proxy.url("/upload"))
        .body(vec![1u8; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Streamed without a length: cut off when the limit is crossed.
    let chunk = bytes::Bytes::from(vec![2u8; 16 * 1024]);
    let stream = futures::stream::iter((0..8).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = h2
        .post(proxy.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = h2
        .post(proxy.url("/upload"))
        .body(vec![3u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
