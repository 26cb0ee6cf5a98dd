//! The HTTP/1.1 fast path against a scripted raw-socket upstream: upstream connection reuse,
//! pipelining, every response framing (length, chunked, HEAD, interim 1xx, until close),
//! upstreams closing pooled connections, and the handover to the general path in the middle of
//! a kept-alive connection.

mod http_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_support::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request the raw upstream read: the connection it came on, its head and body.
#[derive(Debug, Clone)]
struct Got {
    conn: usize,
    head: String,
    body: Vec<u8>,
}

/// An upstream written on raw sockets, answering by path (see `answer`).
struct RawUpstream {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Got>>>,
}

fn answer(method: &str, path: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let text = |s: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{s}", s.len());
    match path {
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            false,
        ),
        "/close" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
            true,
        ),
        // Closes without saying so: the pooled connection goes stale.
        "/silent-close" => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true),
        "/eof" => (b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec(), true),
        "/continue" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            false,
        ),
        "/head" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            false,
        ),
        _ => (
            text(&format!("{method} {path} {}", String::from_utf8_lossy(body))).into_bytes(),
            false,
        ),
    }
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (c2, g2) = (conns.clone(), got.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let conn = c2.fetch_add(1, Ordering::SeqCst);
                let got = g2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some((head, body)) = read_request(&mut s, &mut buf).await else {
                            return;
                        };
                        let line = head.lines().next().unwrap_or("").to_string();
                        let mut words = line.split(' ');
                        let method = words.next().unwrap_or("").to_string();
                        let path = words.next().unwrap_or("").to_string();
                        got.lock().unwrap().push(Got {
                            conn,
                            head,
                            body: body.clone(),
                        });
                        let (reply, close) = answer(&method, &path, &body);
                        if s.write_all(&reply).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream { addr, conns, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// Reads one request (head and `Content-Length` body; `chunked` bodies are decoded).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut b = [0u8; 4096];
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end);
    let lower = head.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        read_chunked(s, buf).await?
    } else {
        let len = header(&lower, "content-length").map_or(0, |v| v.parse().unwrap());
        fill(s, buf, len).await?;
        buf.drain(..len).collect()
    };
    Some((head, body))
}

fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<()> {
    while buf.len() < n {
        let mut b = [0u8; 65536];
        let k = s.read(&mut b).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..k]);
    }
    Some(())
}

async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let have = buf.len();
            fill(s, buf, have + 1).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        buf.drain(..line_end + 2);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let e = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    let have = buf.len();
                    fill(s, buf, have + 1).await?;
                };
                buf.drain(..e + 2);
                if e == 0 {
                    return Some(body);
                }
            }
        }
        fill(s, buf, size + 2).await?;
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// A response as the client read it.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response on a client connection (`head_request`: no body whatever the headers).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Resp {
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let have = buf.len();
        fill(s, buf, have + 1).await.expect("response head");
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end);
    let status = head[9..12].parse().unwrap();
    let lower = head.to_ascii_lowercase();
    let body = if head_request {
        Vec::new()
    } else if lower.contains("transfer-encoding: chunked") {
        read_chunked(s, buf).await.expect("chunked body")
    } else if let Some(len) = header(&lower, "content-length") {
        let len: usize = len.parse().unwrap();
        fill(s, buf, len).await.expect("body");
        buf.drain(..len).collect()
    } else {
        // Until close.
        let mut rest = std::mem::take(buf);
        s.read_to_end(&mut rest).await.unwrap();
        rest
    };
    Resp { status, head, body }
}

fn cfg(up: &RawUpstream) -> vigil_proxy::http::HttpConfig {
    vigil_proxy::http::HttpConfig {
        upstream: vec![format!("http://{}", up.addr)],
        ..Default::default()
    }
}

async fn get(s: &mut TcpStream, buf: &mut Vec<u8>, path: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: crm\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s, buf, false).await
}

#[tokio::test]
async fn kept_alive_requests_reuse_one_upstream_connection() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..20 {
        let r = get(&mut s, &mut buf, &format!("/item/{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("GET /item/{i} ").as_bytes());
        assert!(r.head.to_ascii_lowercase().contains("via: 1.1 vigil"));
    }
    assert_eq!(up.conns.load(Ordering::SeqCst), 1);
    let got = up.got();
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|g| g.conn == 0));
    let head = got[0].head.to_ascii_lowercase();
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("traceparent: 00-"), "{head}");
    assert!(head.contains("host: crm\r\n"), "{head}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: crm\r\n\r\nPOST /b HTTP/1.1\r\nHost: crm\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: crm\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    for want in ["GET /a ", "POST /b xyz", "GET /c "] {
        let r = read_response(&mut s, &mut buf, false).await;
        assert_eq!((r.status, r.body.as_slice()), (200, want.as_bytes()));
    }
    assert_eq!(up.got()[1].body, b"xyz");
}

#[tokio::test]
async fn chunked_interim_and_head_responses_keep_the_connection_in_step() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let r = get(&mut s, &mut buf, "/chunked").await;
    assert_eq!(r.body, b"hello world");
    assert!(r.head.contains("X-Up: 1"));
    let r = get(&mut s, &mut buf, "/continue").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    s.write_all(b"HEAD /head HTTP/1.1\r\nHost: crm\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, true).await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-length: 1000"), "{}", r.head);
    let r = get(&mut s, &mut buf, "/after").await;
    assert_eq!(r.body, b"GET /after ");
    assert!(buf.is_empty());
}

#[tokio::test]
async fn upstream_closes_are_survived_without_errors() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, &mut buf, "/close").await.body, b"ok");
    assert_eq!(get(&mut s, &mut buf, "/silent-close").await.body, b"ok");
    // Let the upstream's FIN arrive: the pooled connection is then found closed at checkout,
    // so even a POST (never retried) gets through.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"POST /p HTTP/1.1\r\nHost: crm\r\nContent-Length: 1\r\n\r\n!")
        .await
        .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"POST /p !"[..]));
    assert_eq!(up.conns.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_delimited_by_close_closes_the_client_connection() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /eof HTTP/1.1\r\nHost: crm\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
}

#[tokio::test]
async fn requests_for_the_general_path_are_handed_over_mid_connection() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::start(cfg(&up)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, &mut buf, "/first").await.body, b"GET /first ");
    // A chunked request body is not for the fast path: hyper serves it, and the rest of the
    // connection, from the bytes already read.
    s.write_all(
        b"POST /chunky HTTP/1.1\r\nHost: crm\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /third HTTP/1.1\r\nHost: crm\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"POST /chunky abc"[..])
    );
    let r = read_response(&mut s, &mut buf, false).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"GET /third "[..]));
    // A refused head on the fast path gets the gate's answer and the connection closes.
    s.write_all(b"GET /x HTTP/1.1\r\nHost: crm\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    let mut rest = std::mem::take(&mut buf);
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed after the refusal")
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 400 "));
    let paths: Vec<String> = up
        .got()
        .iter()
        .map(|g| g.head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "GET /first HTTP/1.1",
            "POST /chunky HTTP/1.1",
            "GET /third HTTP/1.1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_threads_serve_one_port_and_stop() {
    let up = RawUpstream::start().await;
    let mut c = cfg(&up);
    c.threads = 2;
    // Two listeners on one port, as `vigil run` binds them for `[http] threads = 2`.
    let bind = |addr: SocketAddr| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_reuseaddr(true).unwrap();
        s.set_reuseport(true).unwrap();
        s.bind(addr).unwrap();
        s.listen(128).unwrap().into_std().unwrap()
    };
    let first = bind("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().unwrap();
    let second = bind(addr);
    let mut registry = prometheus_client::registry::Registry::default();
    let (emitter, _signals) = vigil_signal::Emitter::channel(64);
    let proxy = vigil_proxy::http::HttpProxy::new(c, &mut registry, emitter).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let done = proxy
        .run_threads(vec![first, second], move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        })
        .unwrap();
    let done = tokio::spawn(done);
    for i in 0..40 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let r = get(&mut s, &mut buf, &format!("/t/{i}")).await;
        assert_eq!(r.body, format!("GET /t/{i} ").as_bytes());
    }
    assert_eq!(up.got().len(), 40);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("every thread stopped")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}
