//! Shared harness for the HTTP proxy tests: a real hyper upstream that records what it saw, and
//! a running proxy on an ephemeral port.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use vigil_proxy::http::{HttpConfig, HttpProxy};
use vigil_signal::{Emitter, Signal};

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    pub body: Bytes,
}

/// A recording upstream. Paths: `/slow` sleeps 3 s; `/big?n=N` streams N bytes;
/// `/webhooks/*` answers 202 with a body derived from the request; anything else echoes.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub name: String,
    tasks: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (seen2, tasks2, name2) = (seen.clone(), tasks.clone(), name.to_string());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen2.clone();
                let name = name2.clone();
                let svc = service_fn(move |req| handle(req, seen.clone(), name.clone()));
                tasks2.lock().unwrap().spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            name: name.to_string(),
            tasks,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening and drops every open connection.
    pub fn kill(&self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    name: String,
) -> Result<Response<UpBody>, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(&mut req));
    }
    let (parts, mut body) = req.into_parts();
    // Read the body as a stream, hashing it, without keeping large bodies.
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            len += data.len() as u64;
            if kept.len() < 1 << 20 {
                kept.extend_from_slice(&data);
            }
        }
    }
    let sha = hex::encode(hasher.finalize());
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: pq.clone(),
        headers: parts.headers.clone(),
        body_len: len,
        body_sha256: sha.clone(),
        body: Bytes::from(kept),
    });
    let path = parts.uri.path();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path == "/big" {
        let n: u64 = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures::stream::unfold(n, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let take = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))),
                    left - take,
                ))
            }
        });
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("content-length", n.to_string().parse().unwrap());
        return Ok(r);
    }
    if path == "/healthz" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
        if name == "sick" {
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        return Ok(r);
    }
    if path == "/fail" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"boom")).boxed());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(r);
    }
    if path.starts_with("/webhooks/") {
        let mut r = Response::new(Full::new(Bytes::from(format!("crm-ack:{sha}"))).boxed());
        *r.status_mut() = http::StatusCode::ACCEPTED;
        r.headers_mut().insert("x-crm", "handled".parse().unwrap());
        r.headers_mut()
            .insert("set-cookie", "crm=1; Path=/".parse().unwrap());
        return Ok(r);
    }
    let mut r = Response::new(
        Full::new(Bytes::from(format!(
            "{{\"upstream\":\"{name}\",\"len\":{len},\"sha256\":\"{sha}\"}}"
        )))
        .boxed(),
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    Ok(r)
}

/// Accepts a WebSocket upgrade (RFC 6455 handshake) and echoes every byte back.
fn websocket_echo(req: &mut Request<Incoming>) -> Response<UpBody> {
    use base64::Engine;
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mut h = sha1::Sha1::new();
    h.update(&key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut r = Response::new(http_body_util::Empty::new().boxed());
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("connection", "upgrade".parse().unwrap());
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

/// A running proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    pub proxy: Arc<HttpProxy>,
    pub signals: mpsc::Receiver<Signal>,
    pub registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(cfg: HttpConfig) -> Proxy {
        Self::start_with(cfg, None).await
    }

    pub async fn start_with(
        cfg: HttpConfig,
        certs: Option<Arc<dyn vigil_proxy::http::webhook::ses::CertSource>>,
    ) -> Proxy {
        Self::start_inner(cfg, certs, None).await
    }

    /// A proxy exporting its spans over OTLP/HTTP, as `vigil run` does with `otlp_endpoint`.
    pub async fn start_exporting(
        cfg: HttpConfig,
        export: vigil_proxy::http::server::otlp::SpanExport,
    ) -> Proxy {
        Self::start_inner(cfg, None, Some(export)).await
    }

    async fn start_inner(
        cfg: HttpConfig,
        certs: Option<Arc<dyn vigil_proxy::http::webhook::ses::CertSource>>,
        export: Option<vigil_proxy::http::server::otlp::SpanExport>,
    ) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut registry = Registry::default();
        let (emitter, signals) = Emitter::channel(1024);
        let proxy = HttpProxy::with_cert_source(cfg, &mut registry, emitter, certs).unwrap();
        if let Some(e) = export {
            proxy.export_spans(e);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let p = proxy.clone();
        let done = tokio::spawn(async move {
            p.run(listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Proxy {
            addr,
            proxy,
            signals,
            registry,
            stop: Some(stop),
            done,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// The metrics in text exposition format.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    /// The metrics once `ready` holds for them (polled for up to 5 s; the last text either
    /// way). The fast path records a request after its response went out, so a client can get
    /// the answer before the proxy counted it, as with nginx's log phase.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.metrics();
            if ready(&m) || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the next signal (up to 5 s).
    pub async fn next_signal(&mut self) -> Option<Signal> {
        tokio::time::timeout(Duration::from_secs(5), self.signals.recv())
            .await
            .ok()
            .flatten()
    }
}

/// A config proxying to the given upstreams.
pub fn config(upstreams: &[&Upstream]) -> HttpConfig {
    HttpConfig {
        upstream: upstreams.iter().map(|u| u.url()).collect(),
        // Tests that look at signals opt into short windows explicitly.
        signal_window_secs: 3600,
        ..HttpConfig::default()
    }
}

/// A port with nothing listening.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/providers/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn counter_value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub static NEXT: AtomicU64 = AtomicU64::new(0);

pub fn unique() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}
