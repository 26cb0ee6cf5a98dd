//! Raw-socket request-smuggling and malformed-request cases: each gets the right status, the
//! connection is closed, and nothing smuggled reaches the upstream as a request.

mod http_support;

use std::time::Duration;

use http_support::{Proxy, Upstream, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    /// Statuses expected in order (a valid first request may precede the refused one).
    statuses: &'static [u16],
}

fn case(name: &'static str, raw: &str, statuses: &'static [u16]) -> Case {
    Case {
        name,
        raw: raw.as_bytes().to_vec(),
        statuses,
    }
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

fn cases() -> Vec<Case> {
    let s = SMUGGLED;
    let mut v = vec![
        case(
            "cl_then_te",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_then_cl",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "cl_conflicting",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "cl_repeated_equal",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\nContent-Length: 36\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "cl_list",
            &format!("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 36, 36\r\n\r\n{s}"),
            &[400],
        ),
        case(
            "cl_negative",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            &[400],
        ),
        case(
            "cl_plus_sign",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            &[400],
        ),
        case(
            "cl_hex",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
            &[400],
        ),
        case(
            "cl_inner_space",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nhellohello",
            &[400],
        ),
        case(
            "cl_empty",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            &[400],
        ),
        case(
            "te_xchunked",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_chunked_identity",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_identity_chunked",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_repeated_headers",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_second_header_bogus",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: cow\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_obs_fold",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_space_before_colon",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_vertical_tab",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "te_gzip_unsupported",
            "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            &[501],
        ),
        case(
            "te_in_http10",
            &format!(
                "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "bare_lf_head",
            &format!("GET /a HTTP/1.1\nHost: x\n\n{s}"),
            &[400],
        ),
        case(
            "bare_cr_in_header",
            "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            &[400],
        ),
        case(
            "nul_in_header",
            "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
            &[400],
        ),
        case("host_missing", "GET /a HTTP/1.1\r\n\r\n", &[400]),
        case(
            "host_repeated",
            "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            &[400],
        ),
        case(
            "host_with_path",
            "GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n",
            &[400],
        ),
        case(
            "header_name_space",
            "GET /a HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
            &[400],
        ),
        case(
            "method_invalid",
            "G(T /a HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "target_no_slash",
            "GET smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "version_h2_on_h1",
            "GET /a HTTP/2.0\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "version_garbage",
            "GET /a HTTP/1.1x\r\nHost: x\r\n\r\n",
            &[400],
        ),
        case(
            "chunk_size_invalid",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "chunk_size_overflow",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "chunk_missing_crlf",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "chunk_size_bare_lf",
            &format!(
                "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n{s}"
            ),
            &[400],
        ),
        case(
            "cl_over_limit",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
            &[413],
        ),
        case(
            "pipelined_then_cl_te",
            &format!(
                "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            ),
            &[200, 400],
        ),
        case(
            "pipelined_body_hides_request",
            &format!(
                "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /a HTTP/1.1\nHost: x\n\n{s}"
            ),
            &[200, 400],
        ),
        case(
            "upgrade_refused_then_smuggle",
            &format!(
                "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n{s}"
            ),
            &[200],
        ),
    ];
    let big = "a".repeat(20 * 1024);
    v.push(Case {
        name: "header_too_large",
        raw: format!("GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").into_bytes(),
        statuses: &[431],
    });
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    v.push(Case {
        name: "too_many_headers",
        raw: format!("GET /a HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(),
        statuses: &[431],
    });
    v.push(Case {
        name: "endless_head",
        raw: format!("GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {big}").into_bytes(),
        statuses: &[431],
    });
    v
}

/// Sends `raw`, reads until the server closes, returns the status codes seen and whether the
/// connection was closed by the server.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> (Vec<u16>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The peer may close early (before reading everything); that is fine.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap_or(false);
    let text = String::from_utf8_lossy(&out);
    let statuses = text
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse::<u16>().ok())
        .collect();
    (statuses, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_malformed_requests_are_refused_and_closed() {
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.limits.max_body_bytes = 1_000_000;
    let proxy = Proxy::start(cfg).await;
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let (statuses, closed) = exchange(proxy.addr, &c.raw).await;
        if statuses != c.statuses || !closed {
            failures.push(format!(
                "{}: got {statuses:?} closed={closed}, want {:?}",
                c.name, c.statuses
            ));
        }
    }
    let seen = up.seen();
    let smuggled: Vec<_> = seen
        .iter()
        .filter(|s| s.path_and_query.contains("smuggled"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "smuggled requests reached the upstream: {smuggled:?}"
    );
    // Only the valid pipelined requests (and aborted chunked bodies) reached it.
    for s in &seen {
        assert!(
            ["/ok", "/a", "/echo"].contains(&s.path_and_query.as_str()),
            "{s:?}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let metrics = proxy.metrics();
    assert!(
        metrics.contains("vigil_http_rejected_requests_total{reason=\"te_with_content_length\"}")
    );
}

#[tokio::test]
async fn valid_requests_pass_the_gate() {
    let up = Upstream::start("a").await;
    let proxy = Proxy::start(config(&[&up])).await;
    let (statuses, _) = exchange(
        proxy.addr,
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    assert_eq!(statuses, vec![200]);
    let (statuses, _) = exchange(
        proxy.addr,
        b"\r\nGET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses, vec![200, 200]);
    let seen = up.seen();
    assert_eq!(seen[0].body.as_ref(), b"hello world");
    assert_eq!(seen.len(), 3);
}

/// An upstream that answers every request with `response`, verbatim.
async fn raw_upstream(response: &'static [u8]) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_responses_with_two_framings_are_sanitized() {
    let addr = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
    )
    .await;
    let cfg = vigil_proxy::http::HttpConfig {
        upstream: vec![format!("http://{addr}")],
        ..Default::default()
    };
    let proxy = Proxy::start(cfg).await;
    let (statuses, _) = exchange(
        proxy.addr,
        b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses, vec![200]);
    let r = reqwest::get(format!("http://{}/r", proxy.addr))
        .await
        .unwrap();
    assert!(r.headers().get("content-length").is_none_or(|v| v == "11"));
    assert_eq!(r.text().await.unwrap(), "hello world");
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let up = Upstream::start("a").await;
    let mut cfg = config(&[&up]);
    cfg.timeouts.header_read_ms = 300;
    let proxy = Proxy::start(cfg).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /slowloris HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    assert!(up.seen().is_empty());
}
