//! `vigil run`: start every component the configuration enables, in one process; reload on
//! SIGHUP or a change of the config file; stop gracefully on SIGTERM or Ctrl-C.
//!
//! [`start`] binds every listener first (so a taken port fails fast, before anything runs), then
//! starts the incident service (the in-process signal sink), the signal producer, the proxies and
//! the admin server. [`Running::stop`] reverses it: proxies drain, the producer flushes, the
//! incident service stores what it got.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_proxy::http::HttpProxy;
use vigil_proxy::pg::{PgProxy, StatementHook};
use vigil_proxy::stats::QueryStats;

use crate::admin::{self, Admin, ReadyCheck};
use crate::config::Config;
use crate::incident::IncidentHandle;
use crate::{signals, telemetry};

/// A started Vigil: its bound addresses and handles, for `vigil run`, `vigil demo` and tests.
pub struct Running {
    pub admin_addr: SocketAddr,
    pub pg_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub incident_addr: Option<SocketAddr>,
    pub pg: Option<Arc<PgProxy>>,
    pub http: Option<Arc<HttpProxy>>,
    pub queries: Option<Arc<QueryStats>>,
    pub incident: Option<IncidentHandle>,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    pump: Option<JoinHandle<()>>,
    emitter: Option<vigil_signal::Emitter>,
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{field}: cannot bind {addr}"))
}

/// A proxy's listeners: one on the shared runtime (`threads = 0`), or one per event-loop
/// thread, the extra ones on the same port with SO_REUSEPORT (the kernel spreads connections
/// over them).
enum Listeners {
    Shared(TcpListener),
    Threads(Vec<std::net::TcpListener>),
}

impl Listeners {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listeners::Shared(l) => l.local_addr(),
            Listeners::Threads(ls) => ls
                .first()
                .ok_or_else(|| std::io::Error::other("no listener"))?
                .local_addr(),
        }
    }
}

fn bind_threads(addr: SocketAddr, threads: usize, field: &str) -> anyhow::Result<Listeners> {
    let one = |addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let s = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        s.set_reuseaddr(true)?;
        if threads > 1 {
            s.set_reuseport(true)?;
        }
        s.bind(addr)?;
        s.listen(1024)?.into_std()
    };
    let ctx = || format!("{field}: cannot bind {addr}");
    let first = one(addr).with_context(ctx)?;
    if threads == 0 {
        return Ok(Listeners::Shared(
            TcpListener::from_std(first).with_context(ctx)?,
        ));
    }
    // A port 0 was resolved by the first bind: the others share that port.
    let bound = first.local_addr().with_context(ctx)?;
    let mut all = vec![first];
    for _ in 1..threads {
        all.push(one(bound).with_context(ctx)?);
    }
    Ok(Listeners::Threads(all))
}

/// Start everything `config` enables. `base` is the config file's folder (for relative rule paths).
pub async fn start(config: &Config, base: &Path) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    registry.register(
        "vigil_build",
        "Vigil build information",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let admin_listener = bind(config.admin.listen, "admin.listen").await?;
    let pg_listener = match &config.pg {
        Some(pg) => Some(bind_threads(pg.listen, pg.threads, "pg.listen")?),
        None => None,
    };
    let http_listener = match &config.http {
        Some(http) => Some(bind_threads(http.listen, http.threads, "http.listen")?),
        None => None,
    };

    let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();
    let mut ready: Vec<ReadyCheck> = Vec::new();
    let mut api = axum::Router::new();

    // The incident service first: it is the in-process sink of the local transport.
    let incident = match &config.incident {
        Some(cfg) => {
            let handle = crate::incident::start(
                cfg,
                base,
                &config.signals,
                config.admin.token.clone(),
                &mut registry,
                &shutdown,
            )
            .await?;
            let h = handle.clone();
            ready.push(("incident", Arc::new(move || h.ready())));
            Some(handle)
        }
        None => None,
    };
    let incident_addr = match (&incident, &config.incident) {
        (Some(h), Some(_)) => h.listen_addr(),
        _ => None,
    };
    let producer = signals::producer(
        &config.signals,
        incident.as_ref().map(IncidentHandle::sink),
        &mut registry,
    )
    .context("[signals]: cannot set up the transport")?;

    let mut pg_addr = None;
    let mut queries = None;
    let pg = match (&config.pg, pg_listener) {
        (Some(cfg), Some(listener)) => {
            pg_addr = Some(listener.local_addr()?);
            let hook: Option<Arc<dyn StatementHook>> = if config.queries.enabled {
                let mut qcfg = config.queries.clone();
                qcfg.heavy_rules = qcfg.heavy_rules.map(|p| crate::config::resolve(base, &p));
                let rules = QueryStats::load_rules(&qcfg).context("[queries] heavy_rules")?;
                let stats = QueryStats::new(qcfg, rules, producer.emitter.clone(), &mut registry);
                tasks.push((
                    "queries",
                    tokio::spawn({
                        let w = stats.spawn_windows(shutdown.clone().cancelled_owned());
                        async move { w.await.context("statistics windows") }
                    }),
                ));
                api = api.merge(stats.api_router());
                queries = Some(stats.clone());
                Some(stats)
            } else {
                None
            };
            // A DB client span per statement when traces are exported (no hook otherwise).
            let hook: Option<Arc<dyn StatementHook>> = if config.telemetry.otlp_endpoint.is_some() {
                Some(Arc::new(vigil_proxy::stats::otel::OtelHook::global(hook)))
            } else {
                hook
            };
            let cache = match &config.cache {
                Some(c) => {
                    let cache = vigil_proxy::cache::Cache::new(
                        crate::cache_cmd::settings(c, base),
                        &mut registry,
                    )
                    .context("[cache]: cannot start the cache")?;
                    api = api.merge(cache.api_router());
                    Some(cache)
                }
                None => None,
            };
            let proxy = PgProxy::with_cache(cfg.clone(), &mut registry, hook, cache)
                .context("[pg]: cannot start the proxy")?;
            if let Some(q) = &queries {
                let p = Arc::downgrade(&proxy);
                q.set_plan_connector(Arc::new(move |db: &str, user: &str| {
                    p.upgrade()?.connect_params(db, user)
                }));
            }
            if config.queries.enabled && config.queries.pgss.enabled {
                // pg_stat_statements snapshots: its own upstream connections, never the pools.
                let metrics = vigil_proxy::stats::pgss::PgssMetrics::new(&mut registry);
                let task = vigil_proxy::stats::pgss::spawn(
                    config.queries.pgss.clone(),
                    Arc::downgrade(&proxy),
                    producer.emitter.clone(),
                    metrics,
                    shutdown.clone().cancelled_owned(),
                );
                tasks.push((
                    "pgss",
                    tokio::spawn(async move { task.await.context("pg_stat_statements snapshots") }),
                ));
            }
            api = api.merge(proxy.api_router());
            let p = proxy.clone();
            ready.push(("pg", Arc::new(move || p.ready())));
            let stop = shutdown.clone();
            let p = proxy.clone();
            let task = match listener {
                Listeners::Shared(listener) => tokio::spawn(async move {
                    p.run(listener, stop.cancelled_owned())
                        .await
                        .context("pg proxy")
                }),
                Listeners::Threads(listeners) => {
                    let done = p
                        .run_threads(listeners, move || stop.clone().cancelled_owned())
                        .context("[pg]: cannot start the pg threads")?;
                    tokio::spawn(async move { done.await.context("pg proxy") })
                }
            };
            tasks.push(("pg", task));
            Some(proxy)
        }
        _ => None,
    };

    let mut http_addr = None;
    let http = match (&config.http, http_listener) {
        (Some(cfg), Some(listener)) => {
            http_addr = Some(listener.local_addr()?);
            let proxy = HttpProxy::new(cfg.clone(), &mut registry, producer.emitter.clone())
                .context("[http]: cannot start the proxy")?;
            if let Some(endpoint) = &config.telemetry.otlp_endpoint {
                proxy.export_spans(vigil_proxy::http::server::otlp::SpanExport {
                    url: crate::telemetry::traces_url(endpoint),
                    service_name: config.telemetry.service_name.clone(),
                });
            }
            api = api.merge(proxy.api_router());
            ready.push(("http", Arc::new(|| true)));
            let stop = shutdown.clone();
            let p = proxy.clone();
            let task = match listener {
                Listeners::Shared(listener) => tokio::spawn(async move {
                    p.run(listener, stop.cancelled_owned())
                        .await
                        .context("http proxy")
                }),
                Listeners::Threads(listeners) => {
                    let done = p
                        .run_threads(listeners, move || stop.clone().cancelled_owned())
                        .context("[http]: cannot start the http threads")?;
                    tokio::spawn(async move { done.await.context("http proxy") })
                }
            };
            tasks.push(("http", task));
            Some(proxy)
        }
        _ => None,
    };

    let admin_addr = admin_listener.local_addr()?;
    let router = Admin {
        registry,
        ready,
        api,
        token: config.admin.token.clone(),
        components: config.components(),
    }
    .into_router();
    let stop = shutdown.clone();
    tasks.push((
        "admin",
        tokio::spawn(async move {
            admin::serve(admin_listener, router, stop.cancelled_owned())
                .await
                .context("admin server")
        }),
    ));
    tracing::info!(
        admin = %admin_addr,
        pg = ?pg_addr,
        http = ?http_addr,
        components = ?config.components(),
        "vigil started"
    );
    Ok(Running {
        admin_addr,
        pg_addr,
        http_addr,
        incident_addr,
        pg,
        http,
        queries,
        incident,
        shutdown,
        tasks,
        pump: producer.pump,
        emitter: Some(producer.emitter),
    })
}

impl Running {
    /// An emitter into this process's signal pipeline (for in-process producers such as the demo).
    pub fn emitter(&self) -> vigil_signal::Emitter {
        self.emitter
            .clone()
            .unwrap_or_else(vigil_signal::Emitter::disabled)
    }

    /// Apply a changed configuration to the running components (pool sizes, databases, rules).
    pub fn reload(&self, config: &Config) {
        if let (Some(pg), Some(cfg)) = (&self.pg, &config.pg) {
            match pg.reload(cfg.clone()) {
                Ok(()) => tracing::info!("pg configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "pg reload refused; keeping the running configuration")
                }
            }
        }
        if let (Some(http), Some(cfg)) = (&self.http, &config.http) {
            match http.reload(cfg.clone()) {
                Ok(()) => tracing::info!("http configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "http reload refused; keeping the running configuration")
                }
            }
        }
    }

    /// Stop accepting, let in-flight work finish, flush signals, and wait for every task.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_error = None;
        for (name, task) in self.tasks.drain(..) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(component = name, error = %format!("{e:#}"), "stopped with an error");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(anyhow::anyhow!("{name} task panicked: {e}"));
                }
            }
        }
        // Every producer is gone now: the pump flushes what is queued, then ends.
        self.pg = None;
        self.http = None;
        self.queries = None;
        self.emitter = None;
        if let Some(pump) = self.pump.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
        }
        if let Some(incident) = self.incident.take() {
            incident.stop().await;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// `vigil run`: start, reload on SIGHUP or when the config file changes, stop on SIGTERM/Ctrl-C.
pub async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(&config.telemetry)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let running = start(&config, &base).await?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
    let mut watched = modified(&path);
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload_from(&path, &running),
            _ = poll.tick() => {
                let now = modified(&path);
                if now != watched {
                    watched = now;
                    reload_from(&path, &running);
                }
            }
        }
    }
    tracing::info!("shutting down");
    running.stop().await
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn reload_from(path: &Path, running: &Running) {
    match Config::load(path) {
        Ok(cfg) => running.reload(&cfg),
        Err(e) => tracing::error!(error = %e, "configuration not reloaded"),
    }
}
