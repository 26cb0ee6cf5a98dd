//! The data path: one listener serving HTTP/1.1 (keep-alive) and h2c, behind the smuggling
//! [`gate`]. Requests go to the webhook taps (`[[http.webhooks]]` paths), the provider gateway
//! (`/_provider/<name>/...`) or the CRM upstreams.
//!
//! - [`fast`]: the HTTP/1.1 fast path for plain-TCP connections to plain-HTTP upstreams.
//! - [`gate`]: strict request-head and framing checks in front of hyper.
//! - [`forward`]: the reverse proxy (retries, timeouts, ejection).
//! - [`taps`]: webhook taps on the data path (read raw body, verify and parse off-path, forward).
//! - [`gateway`]: provider gateway forwarding and outcome signals.
//! - [`headers`], [`body`], [`client`], [`h1pool`], [`upstream`], [`routes`], [`trace`],
//!   [`metrics`], [`otlp`] (span export).

pub mod body;
pub mod client;
pub mod fast;
pub mod forward;
pub mod gate;
pub mod gateway;
pub mod h1pool;
pub mod headers;
pub mod ingress;
pub mod metrics;
pub mod otlp;
pub mod routes;
pub mod taps;
pub mod trace;
pub mod upstream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use vigil_signal::Emitter;

use self::body::ProxyBody;
use self::gate::{Gate, GateLimits, Reject};
use self::metrics::{Metrics, ReasonLabels, method_label, status_class};
use self::routes::RouteTable;
use self::trace::{RequestTrace, Tracing};
use self::upstream::Pool;
use super::config::{HttpConfig, ProviderRoute};
use super::error::HttpError;
use super::pii::PiiHasher;
use super::webhook::ses::CertCache;

/// How long shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(30);

/// The HTTP proxy. Build with [`HttpProxy::new`], serve with [`HttpProxy::run`].
pub struct HttpProxy {
    /// The configuration the proxy started with (listener-level settings).
    cfg: HttpConfig,
    /// What a reload replaces; each request holds the version it started with.
    live: RwLock<Arc<Live>>,
    hasher: PiiHasher,
    certs: Arc<CertCache>,
    client: client::HttpClient,
    /// Pooled plain-HTTP/1.1 connections to the CRM upstreams (general path).
    h1: Arc<h1pool::H1Pool>,
    /// Idle upstream connections of the fast path, one pool per serving thread (a connection
    /// is registered with the runtime that opened it).
    raw: Vec<fast::pool::RawPool>,
    /// OpenTelemetry server and client spans (off without a tracer provider).
    tracing: Tracing,
    tls: Option<tokio_rustls::TlsAcceptor>,
    metrics: Metrics,
    routes: RouteTable,
    emitter: Emitter,
    reject_prefix: String,
    dedup: taps::RecentIds,
    tap_permits: Arc<tokio::sync::Semaphore>,
    ingress: ingress::IngressStats,
    retry_budget: upstream::RetryBudget,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("listen", &self.cfg.listen)
            .finish()
    }
}

/// The reloadable part: configuration, upstream instances, provider routes, webhook taps.
pub struct Live {
    pub cfg: HttpConfig,
    pub pool: Pool,
    pub providers: Vec<gateway::ProviderTarget>,
    pub taps: HashMap<String, taps::TapRoute>,
    /// Every upstream instance is plain HTTP (the fast path serves only those).
    pub all_plain_http: bool,
}

impl Live {
    fn build(
        cfg: HttpConfig,
        hasher: &PiiHasher,
        certs: &Arc<CertCache>,
    ) -> Result<Live, HttpError> {
        let mut tap_map = HashMap::new();
        for (index, w) in cfg.webhooks.iter().enumerate() {
            let route = taps::TapRoute::new(w, hasher.clone(), certs.clone())
                .map_err(|source| HttpError::Webhook { index, source })?;
            tap_map.insert(w.path.clone(), route);
        }
        let providers = cfg
            .providers
            .iter()
            .filter_map(gateway::ProviderTarget::new)
            .collect();
        let pool = Pool::new(
            &cfg.upstream,
            cfg.eject_after_failures,
            Duration::from_millis(cfg.eject_ms),
        )
        .with_balance(cfg.balance);
        let all_plain_http = (0..pool.len()).all(|i| pool.get(i).scheme == http::uri::Scheme::HTTP);
        Ok(Live {
            cfg,
            all_plain_http,
            pool,
            providers,
            taps: tap_map,
        })
    }

    fn provider_for(&self, path: &str) -> Option<&gateway::ProviderTarget> {
        self.providers.iter().find(|p| {
            path.strip_prefix(p.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// Per-request facts shared by the handlers.
pub struct RequestCtx {
    pub peer: IpAddr,
    pub trusted: bool,
    /// The client connected over TLS.
    pub tls: bool,
    /// The request's trace ids and, when exported, its server span.
    pub trace: RequestTrace,
}

impl HttpProxy {
    /// Validates `config`, registers metrics and builds the clients. SES taps fetch signing
    /// certificates over HTTPS from SNS hosts.
    pub fn new(
        config: HttpConfig,
        registry: &mut Registry,
        emitter: Emitter,
    ) -> Result<Arc<HttpProxy>, HttpError> {
        Self::with_cert_source(config, registry, emitter, None)
    }

    /// Like [`HttpProxy::new`], with the source of SNS signing certificates injected.
    pub fn with_cert_source(
        config: HttpConfig,
        registry: &mut Registry,
        emitter: Emitter,
        certs: Option<Arc<dyn super::webhook::ses::CertSource>>,
    ) -> Result<Arc<HttpProxy>, HttpError> {
        config.validate()?;
        let client = client::build(&config)?;
        let tls = config.tls.as_ref().map(client::acceptor).transpose()?;
        let hasher = match &config.pii_hash_key {
            Some(k) => PiiHasher::new(k.as_bytes().to_vec()),
            None => PiiHasher::random(),
        };
        let source: Arc<dyn super::webhook::ses::CertSource> = match certs {
            Some(s) => s,
            None => Arc::new(taps::HttpsCertSource::new(client.clone())),
        };
        let cert_cache = Arc::new(CertCache::new(source, 64));
        let live = Live::build(config.clone(), &hasher, &cert_cache)?;
        let metrics = Metrics::register(registry);
        metrics.healthy_upstreams.set(live.pool.len() as i64);
        let mut token = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut token);
        Ok(Arc::new(HttpProxy {
            routes: RouteTable::new(config.max_routes),
            live: RwLock::new(Arc::new(live)),
            hasher,
            certs: cert_cache,
            client,
            h1: Arc::new(h1pool::H1Pool::new(
                config.timeouts.idle(),
                config.timeouts.connect(),
            )),
            raw: (0..config.threads.max(1))
                .map(|_| {
                    fast::pool::RawPool::new(config.timeouts.idle(), config.timeouts.connect())
                })
                .collect(),
            tracing: Tracing::default(),
            tls,
            metrics,
            emitter,
            reject_prefix: format!("/.vigil-reject/{}/", hex::encode(token)),
            dedup: taps::RecentIds::new(10_000),
            tap_permits: Arc::new(tokio::sync::Semaphore::new(taps::MAX_TAPS_IN_FLIGHT)),
            ingress: ingress::IngressStats::new(config.signal_window_secs),
            retry_budget: upstream::RetryBudget::default(),
            cfg: config,
        }))
    }

    /// The current reloadable state.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies a new configuration without dropping in-flight requests: requests already
    /// running finish with the state they started with; new ones use the new upstreams,
    /// providers, webhooks, timeouts, limits and trusted CIDRs. `listen`, `ca_file`,
    /// `pii_hash_key`, `max_routes`, `signal_window_secs` and `threads` need a restart.
    pub fn reload(&self, config: HttpConfig) -> Result<(), HttpError> {
        config.validate()?;
        let c = &self.cfg;
        for (field, same) in [
            ("listen", c.listen == config.listen),
            ("tls", c.tls == config.tls),
            ("ca_file", c.ca_file == config.ca_file),
            ("pii_hash_key", c.pii_hash_key == config.pii_hash_key),
            ("max_routes", c.max_routes == config.max_routes),
            ("threads", c.threads == config.threads),
            (
                "signal_window_secs",
                c.signal_window_secs == config.signal_window_secs,
            ),
        ] {
            if !same {
                return Err(HttpError::RestartRequired(field));
            }
        }
        let live = Live::build(config, &self.hasher, &self.certs)?;
        self.metrics
            .healthy_upstreams
            .set(live.pool.healthy() as i64);
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        Ok(())
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting and waits (up to 30 s)
    /// for in-flight requests.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), HttpError> {
        let background = self.spawn_background();
        let r = self.clone().serve(listener, shutdown, 0).await;
        self.finish_background(background).await;
        r
    }

    /// The background work: signal windows, pool upkeep, health checks, span export.
    fn spawn_background(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            self.clone().spawn_ingress_flusher(),
            self.clone().spawn_pool_reaper(),
        ];
        tasks.extend(self.clone().spawn_health_checks());
        if let Some(sink) = self.tracing.sink() {
            tasks.push(tokio::spawn(otlp::run_exporter(
                sink.clone(),
                self.client.clone(),
            )));
        }
        tasks
    }

    /// Stops the background work, then emits the last signal window and exports the last
    /// spans (up to 5 s).
    async fn finish_background(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        for task in tasks {
            task.abort();
        }
        self.flush_ingress();
        if let Some(sink) = self.tracing.sink() {
            let last = otlp::export_queued(sink, &self.client);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), last).await;
        }
    }

    /// [`HttpProxy::run`] on dedicated threads, one per listener (`[http] threads`), each a
    /// single-threaded runtime: a connection, its upstream connections and its timers stay on
    /// one thread. Configuration, metrics and upstream health stay shared; the background work
    /// (signal windows, pool upkeep, health checks, span export) runs on the calling runtime.
    /// `shutdown` makes one stop future per thread; the returned future completes when every
    /// thread has drained and stopped.
    pub fn run_threads<S, F>(
        self: &Arc<Self>,
        listeners: Vec<std::net::TcpListener>,
        shutdown: S,
    ) -> Result<impl Future<Output = Result<(), HttpError>> + Send + 'static, HttpError>
    where
        S: Fn() -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut done = Vec::with_capacity(listeners.len());
        let background = self.spawn_background();
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true).map_err(HttpError::Threads)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(HttpError::Threads)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let me = self.clone();
            let stop = shutdown();
            std::thread::Builder::new()
                .name(format!("vigil-http-{i}"))
                .spawn(move || {
                    let r = rt.block_on(async move {
                        let listener = TcpListener::from_std(l).map_err(HttpError::Threads)?;
                        me.serve(listener, stop, i).await
                    });
                    let _ = tx.send(r);
                })
                .map_err(HttpError::Threads)?;
            done.push(rx);
        }
        let me = self.clone();
        Ok(async move {
            let mut first = Ok(());
            for rx in done {
                let r = rx.await.unwrap_or_else(|_| {
                    Err(HttpError::Threads(std::io::Error::other(
                        "an http thread panicked",
                    )))
                });
                if first.is_ok() {
                    first = r;
                }
            }
            me.finish_background(background).await;
            first
        })
    }

    /// The accept loop of one serving thread.
    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        thread: usize,
    ) -> Result<(), HttpError> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.cfg.timeouts.header_read())
            .keep_alive(true)
            // The gate ends the stream right after a synthetic reject request; hyper must
            // still write that response.
            .half_close(true)
            .max_buf_size((self.cfg.limits.max_header_bytes * 2).max(16 * 1024));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.cfg.limits.max_header_bytes as u32);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        // Fast-path connections hold a receiver: `true` asks them to finish the request they
        // are serving and close; the sender sees when the last one is gone.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let limits = {
                let live = self.live();
                let (l, t) = (&live.cfg.limits, &live.cfg.timeouts);
                GateLimits {
                    max_header_bytes: l.max_header_bytes,
                    max_headers: l.max_headers,
                    max_body_bytes: l.max_body_bytes,
                    header_read: t.header_read(),
                    idle: t.idle(),
                }
            };
            let prefix = self.reject_prefix.clone();
            let me = self.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let is_tls = tls.is_some();
                let svc = {
                    let me = me.clone();
                    service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.handle(req, peer, is_tls).await) }
                    })
                };
                match tls {
                    None => {
                        let mut stream = stream;
                        let fast = me.serve_fast(&mut stream, peer, limits, &mut stop, thread);
                        let read = match fast.await {
                            fast::Outcome::Closed => return,
                            fast::Outcome::Handover(read) => read,
                        };
                        drop(stop);
                        let io = TokioIo::new(Gate::with_buffered(stream, limits, prefix, read));
                        let conn = builder.serve_connection_with_upgrades(io, svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                    Some(acceptor) => {
                        drop(stop);
                        let hs = tokio::time::timeout(limits.header_read, acceptor.accept(stream));
                        let Ok(Ok(s)) = hs.await else {
                            return;
                        };
                        let io = TokioIo::new(Gate::new(s, limits, prefix));
                        let conn = builder.serve_connection_with_upgrades(io, svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                }
            });
        }
        drop(listener);
        drop(stop_rx);
        let _ = stop_tx.send(true);
        tokio::select! {
            _ = async { tokio::join!(graceful.shutdown(), stop_tx.closed()) } => {}
            _ = tokio::time::sleep(DRAIN) => {
                tracing::warn!("shutdown: in-flight requests still running after the drain timeout");
            }
        }
        Ok(())
    }

    /// Active health checks, when `health_check_path` is set.
    fn spawn_health_checks(self: Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.cfg.health_check_path.clone()?;
        let pq: http::uri::PathAndQuery = path.parse().ok()?;
        Some(tokio::spawn(async move {
            let period = Duration::from_millis(self.cfg.health_check_interval_ms);
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let live = self.live();
                for i in 0..live.pool.len() {
                    let inst = live.pool.get(i);
                    let Ok(uri) = http::Uri::builder()
                        .scheme(inst.scheme.clone())
                        .authority(inst.authority.clone())
                        .path_and_query(pq.clone())
                        .build()
                    else {
                        continue;
                    };
                    let Ok(req) = Request::get(uri)
                        .header("user-agent", "vigil-health-check")
                        .body(body::empty())
                    else {
                        continue;
                    };
                    let res =
                        tokio::time::timeout(live.cfg.timeouts.per_try(), self.client.request(req))
                            .await;
                    let ok = matches!(&res, Ok(Ok(r)) if r.status().is_success());
                    if ok {
                        live.pool.mark_up(i);
                    } else if live.pool.mark_down(i) {
                        self.metrics.ejections.inc();
                        tracing::warn!(upstream = %inst.authority, "upstream instance failed its health check");
                    }
                }
                self.metrics
                    .healthy_upstreams
                    .set(live.pool.healthy() as i64);
            }
        }))
    }

    /// Closes upstream connections idle for longer than the idle timeout.
    fn spawn_pool_reaper(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let period = (self.cfg.timeouts.idle() / 2).max(Duration::from_secs(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                self.h1.purge();
                for p in &self.raw {
                    p.purge();
                }
            }
        })
    }

    fn spawn_ingress_flusher(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let period = Duration::from_secs(u64::from(self.ingress.window_secs()));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                self.flush_ingress();
            }
        })
    }

    fn flush_ingress(&self) {
        for s in self.ingress.flush() {
            self.emitter.emit(s);
        }
    }

    /// Routes under `/api/http` for the admin server.
    pub fn api_router(self: &Arc<Self>) -> axum::Router {
        let me = self.clone();
        axum::Router::new().route(
            "/api/http/routes",
            axum::routing::get(move || {
                let me = me.clone();
                async move {
                    let live = me.live();
                    let mut webhooks: Vec<String> = live.taps.keys().cloned().collect();
                    webhooks.sort();
                    axum::Json(serde_json::json!({
                        "routes": me.routes.list(),
                        "upstreams": live.pool.len(),
                        "healthy_upstreams": live.pool.healthy(),
                        "providers": live.providers.iter().map(|p| p.prefix.clone()).collect::<Vec<_>>(),
                        "webhooks": webhooks,
                    }))
                }
            }),
        )
    }

    fn trusted(live: &Live, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        live.cfg
            .trusted_cidrs
            .iter()
            .any(|n: &IpNet| n.contains(&ip))
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<ProxyBody> {
        self.handle_inner(req, peer, tls).await
    }

    async fn handle_inner(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<ProxyBody> {
        if let Some(code) = req.uri().path().strip_prefix(self.reject_prefix.as_str()) {
            return self.rejected(code);
        }
        let start = Instant::now();
        let live = self.live();
        let trusted = Self::trusted(&live, peer.ip());
        let method = method_label(req.method());
        let path = req.uri().path();
        // The gate lets an upgrade request's connection through unchecked afterwards, so an
        // upgrade that does not happen must end the connection.
        let asked_upgrade =
            req.version() == http::Version::HTTP_11 && req.headers().contains_key(header::UPGRADE);
        let tap = live.taps.get(path);
        let provider = tap.is_none().then(|| live.provider_for(path)).flatten();
        let route = match (tap, provider) {
            (Some(_), _) => Arc::from(path),
            (None, Some(p)) => Arc::from(format!(
                "{}{}",
                p.prefix,
                routes::template_of(&path[p.prefix.len()..])
            )),
            (None, None) => self.routes.template(path),
        };
        let incoming_trace = trusted
            .then(|| req.headers().get("traceparent"))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let trace = self.start_trace(incoming_trace);
        let ctx = RequestCtx {
            peer: peer.ip(),
            trusted,
            tls,
            trace,
        };
        let mut resp = match (tap, provider) {
            (Some(tap), _) => self.clone().serve_webhook(&live, tap, req, &ctx).await,
            (None, Some(p)) => self.serve_gateway(&live, p, req, &ctx).await,
            (None, None) => self.serve_upstream(&live, req, &ctx).await,
        };
        let status = resp.status().as_u16();
        if asked_upgrade && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        self.finish_request(&live, method, &route, status, start, &ctx.trace);
        resp
    }

    /// The server span of a request (recorded when spans are exported); continues
    /// `incoming` (a trusted peer's `traceparent`).
    fn start_trace(&self, incoming: Option<&str>) -> RequestTrace {
        self.tracing.start_server(incoming)
    }

    /// Exports the proxy's server and client spans over OTLP/HTTP from now on (`vigil run` calls
    /// this when `[telemetry] otlp_endpoint` is set; the exporter task starts with
    /// [`HttpProxy::run`]).
    pub fn export_spans(&self, export: otlp::SpanExport) {
        self.tracing.export(Arc::new(otlp::SpanSink::new(
            export,
            self.metrics.spans_dropped.clone(),
            self.metrics.span_exports_failed.clone(),
        )));
    }

    /// Ends a request: the server span, the per-route signal window, the RED metrics and the
    /// access log line (no query string, no body).
    fn finish_request(
        &self,
        live: &Live,
        method: &'static str,
        route: &Arc<str>,
        status: u16,
        start: Instant,
        trace: &RequestTrace,
    ) {
        let elapsed = start.elapsed();
        trace.end(status, method, route, elapsed);
        let secs = elapsed.as_secs_f64();
        self.ingress.record(route, status, secs);
        self.metrics
            .observe_request(method, route, status_class(status), secs);
        if live.cfg.access_log {
            tracing::info!(
                target: "vigil::access",
                method,
                route = %route,
                status,
                duration_ms = secs * 1000.0,
                trace_id = %trace.ids.trace_id,
                "request"
            );
        }
    }

    fn rejected(&self, code: &str) -> Response<ProxyBody> {
        let why = Reject::from_code(code.parse().unwrap_or(0));
        self.metrics
            .rejected
            .get_or_create(&ReasonLabels {
                reason: why.reason(),
            })
            .inc();
        tracing::info!(target: "vigil::access", reason = why.reason(), status = why.status(), "request refused");
        error_response(
            StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST),
            true,
        )
    }
}

/// A short plain-text error response; `close` adds `Connection: close`.
pub fn error_response(status: StatusCode, close: bool) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    r
}

impl gateway::ProviderTarget {
    fn new(p: &ProviderRoute) -> Option<gateway::ProviderTarget> {
        let base: http::Uri = p.upstream.parse().ok()?;
        Some(gateway::ProviderTarget {
            name: p.name.clone(),
            prefix: p.prefix(),
            channel: p.channel.into(),
            scheme: base.scheme().cloned()?,
            authority: base.authority().cloned()?,
            base_path: base.path().trim_end_matches('/').to_string(),
        })
    }
}
