//! The PostgreSQL wire-protocol proxy: session and transaction pooling that clients cannot tell
//! from PostgreSQL.
//!
//! - [`protocol`]: the wire codec (one file per message family).
//! - [`config`]: the `[pg]` section ([`PgConfig`]) and its validation.
//! - [`auth`]: SCRAM-SHA-256/md5/trust for clients, SCRAM/md5/cleartext towards servers.
//! - [`upstream`]: server connections; [`pool`]: per (database, user) pools.
//! - `login` (startup, TLS, auth), `session` (the per-client event loop), `frontend` and
//!   `backend` (message bookkeeping both ways), [`prepared`] (statement renaming),
//!   [`pinning`] (session-state detection).
//! - [`hook`]: the statement hook; [`metrics`]; [`api`] (`/api/pools`).
//!
//! Entry point: [`PgProxy::new`], then [`PgProxy::run`] with a bound listener (on the caller's
//! runtime), or [`PgProxy::run_threads`] (`[pg] threads` dedicated single-threaded runtimes).

pub mod api;
pub mod auth;
mod backend;
mod client;
pub mod config;
pub mod error;
mod frontend;
pub mod hook;
mod login;
pub mod metrics;
pub mod pinning;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub(crate) mod session;
mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    AuthType, DatabaseConfig, PgConfig, PgConfigError, PoolMode, TlsConfig, UserConfig,
};
pub use error::PgError;
pub use hook::{BindEvent, ParseEvent, QueryProtocol, StatementEvent, StatementHook};

use auth::scram::ScramSecret;
use metrics::Metrics;
use pool::{Pool, PoolSettings};
use session::{ClientShared, Session};
use upstream::ConnectParams;

/// A client transport: plain TCP or TLS.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

struct CancelEntry {
    secret: [u8; 4],
    shared: Arc<ClientShared>,
}

pub(crate) struct Inner {
    config: RwLock<Arc<PgConfig>>,
    pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    pub(crate) metrics: Metrics,
    pub(crate) hook: Option<Arc<dyn StatementHook>>,
    pub(crate) cache: Option<Arc<crate::cache::Cache>>,
    cancels: Mutex<HashMap<i32, CancelEntry>>,
    pub(crate) clients: AtomicUsize,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    scram_cache: Mutex<HashMap<String, (String, ScramSecret)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn config(&self) -> Arc<PgConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn pools(&self) -> Vec<Arc<Pool>> {
        lock(&self.pools).values().cloned().collect()
    }

    fn settings_for(cfg: &PgConfig, db: &DatabaseConfig, connect: ConnectParams) -> PoolSettings {
        PoolSettings {
            connect,
            mode: db.pool_mode.unwrap_or(cfg.pool_mode),
            size: db.pool_size.unwrap_or(cfg.pool_size),
            min_idle: cfg.min_idle,
            pool_timeout: PgConfig::ms(cfg.pool_timeout),
            lifetime: PgConfig::ms(cfg.server_lifetime),
            idle_timeout: PgConfig::ms(cfg.server_idle_timeout),
            check_idle: PgConfig::ms(cfg.server_check_idle),
            max_statements: cfg.max_prepared_statements,
        }
    }

    pub(crate) fn pool_for(
        &self,
        db: &DatabaseConfig,
        user: &str,
        connect: ConnectParams,
    ) -> Arc<Pool> {
        let cfg = self.config();
        let key = (db.name.clone(), user.to_owned());
        let mut pools = lock(&self.pools);
        if let Some(p) = pools.get(&key) {
            return p.clone();
        }
        let p = Arc::new(Pool::new(
            db.name.clone(),
            user.to_owned(),
            Self::settings_for(&cfg, db, connect),
            self.metrics.clone(),
        ));
        pools.insert(key, p.clone());
        p
    }

    /// SCRAM secret for a configured plain password (derived once, not per login).
    pub(crate) fn scram_for(&self, user: &str, password: &str) -> ScramSecret {
        let mut c = lock(&self.scram_cache);
        if let Some((pw, s)) = c.get(user)
            && pw == password
        {
            return s.clone();
        }
        let s = ScramSecret::from_password(password);
        c.insert(user.to_owned(), (password.to_owned(), s.clone()));
        s
    }

    pub(crate) fn register_cancel(&self, shared: Arc<ClientShared>) -> (i32, [u8; 4]) {
        let mut c = lock(&self.cancels);
        loop {
            let pid = (rand::random::<u32>() & 0x7fff_ffff) as i32;
            if pid == 0 || c.contains_key(&pid) {
                continue;
            }
            let secret: [u8; 4] = rand::random();
            c.insert(pid, CancelEntry { secret, shared });
            return (pid, secret);
        }
    }

    pub(crate) fn unregister_cancel(&self, pid: i32) {
        lock(&self.cancels).remove(&pid);
    }

    pub(crate) fn unregister_client(&self, s: &Session) {
        self.unregister_cancel(s.cancel_pid);
        self.clients.fetch_sub(1, Ordering::Relaxed);
        self.metrics.clients.dec();
        s.pool.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Forward a client's CancelRequest to the server running its query, if any. The client's
    /// session cannot attach or release a server while the cancel is sent
    /// ([`ClientShared::begin_cancel`]), so the server cannot be handed to another client in
    /// between.
    pub(crate) async fn cancel(&self, pid: i32, secret: &[u8]) {
        let shared = {
            let c = lock(&self.cancels);
            match c.get(&pid) {
                Some(e) if auth::ct_eq(&e.secret, secret) => e.shared.clone(),
                _ => return,
            }
        };
        if let Some(c) = shared.begin_cancel() {
            self.metrics.cancels.inc();
            let t = &c.target;
            let _ = upstream::send_cancel(t.addr, t.pid, &t.secret).await;
        }
    }
}

/// The pg proxy.
pub struct PgProxy {
    inner: Arc<Inner>,
    ready: AtomicBool,
}

impl PgProxy {
    /// Validate the config, register metrics, load TLS material.
    pub fn new(
        config: PgConfig,
        registry: &mut Registry,
        hook: Option<Arc<dyn StatementHook>>,
    ) -> Result<Arc<PgProxy>, PgError> {
        Self::with_cache(config, registry, hook, None)
    }

    /// [`PgProxy::new`] with the hot-read cache (see [`crate::cache`]).
    pub fn with_cache(
        config: PgConfig,
        registry: &mut Registry,
        hook: Option<Arc<dyn StatementHook>>,
        cache: Option<Arc<crate::cache::Cache>>,
    ) -> Result<Arc<PgProxy>, PgError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let metrics = Metrics::new(registry);
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            config: RwLock::new(Arc::new(config)),
            pools: Mutex::new(HashMap::new()),
            metrics,
            hook,
            cache,
            cancels: Mutex::new(HashMap::new()),
            clients: AtomicUsize::new(0),
            shutdown,
            tls: RwLock::new(tls),
            scram_cache: Mutex::new(HashMap::new()),
        });
        inner.metrics.attach_pools(&inner);
        Ok(Arc::new(PgProxy {
            inner,
            ready: AtomicBool::new(false),
        }))
    }

    /// Accepting connections.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// How this proxy reaches the upstream of `(database, user)`, once a client has logged in
    /// (plan capture opens its own short-lived connection with it).
    pub fn connect_params(&self, database: &str, user: &str) -> Option<upstream::ConnectParams> {
        lock(&self.inner.pools)
            .get(&(database.to_owned(), user.to_owned()))
            .map(|p| p.settings().connect)
    }

    /// The active configuration.
    pub fn config(&self) -> Arc<PgConfig> {
        self.inner.config()
    }

    /// Client connections currently open.
    pub fn client_count(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Apply a new configuration without dropping clients: pool sizes, modes for new
    /// checkouts, timeouts, databases and users (new logins), TLS material. `listen` changes
    /// need a restart.
    pub fn reload(&self, config: PgConfig) -> Result<(), PgError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        *self.inner.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
        for pool in self.inner.pools() {
            if let Some(db) = config.database(&pool.database) {
                let old = pool.settings();
                let mut connect = old.connect.clone();
                if let Ok(url) = upstream::UpstreamUrl::parse(&db.url) {
                    connect.host = url.host;
                    connect.port = url.port;
                    connect.database = url.database;
                    if let Some(u) = url.user {
                        connect.user = u;
                    }
                    if url.password.is_some() {
                        connect.password = url.password;
                    }
                }
                connect.connect_timeout = PgConfig::ms(config.connect_timeout);
                pool.update(Inner::settings_for(&config, db, connect));
            }
        }
        lock(&self.inner.scram_cache).clear();
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Serve clients from `listener` until `shutdown` completes; then stop accepting, let open
    /// transactions finish (up to `shutdown_timeout`), and return.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), PgError> {
        self.serve(listener, shutdown, true).await
    }

    /// [`PgProxy::run`] on dedicated threads, one per listener (`[pg] threads`), each a
    /// single-threaded runtime: a client's session, its server connections' I/O and its
    /// timers stay on one thread, with no cross-thread wakeups. Pools, the cancel registry and
    /// the configuration stay shared. `shutdown` makes one stop future per thread. The returned
    /// future completes when every thread has drained and stopped.
    pub fn run_threads<S, F>(
        self: &Arc<Self>,
        listeners: Vec<std::net::TcpListener>,
        shutdown: S,
    ) -> Result<impl Future<Output = Result<(), PgError>> + Send + 'static, PgError>
    where
        S: Fn() -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut done = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let me = self.clone();
            let stop = shutdown();
            std::thread::Builder::new()
                .name(format!("vigil-pg-{i}"))
                .spawn(move || {
                    let r = rt.block_on(async move {
                        let listener = TcpListener::from_std(l)?;
                        // Pool upkeep runs once, on the first thread.
                        me.serve(listener, stop, i == 0).await
                    });
                    let _ = tx.send(r);
                })?;
            done.push(rx);
        }
        Ok(async move {
            let mut first = Ok(());
            for rx in done {
                let r = rx.await.unwrap_or_else(|_| {
                    Err(PgError::Io(std::io::Error::other("a pg thread panicked")))
                });
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    }

    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        maintain: bool,
    ) -> Result<(), PgError> {
        let mut tasks = tokio::task::JoinSet::new();
        let maint = maintain.then(|| {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    for p in inner.pools() {
                        p.maintain().await;
                    }
                }
            })
        });
        self.ready.store(true, Ordering::Relaxed);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                r = listener.accept() => match r {
                    Ok((tcp, _)) => {
                        self.inner.metrics.client_connections.inc();
                        tasks.spawn(login::serve(self.inner.clone(), tcp));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pg accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        self.ready.store(false, Ordering::Relaxed);
        drop(listener);
        let _ = self.inner.shutdown.send(true);
        let deadline = Instant::now() + PgConfig::ms(self.inner.config().shutdown_timeout);
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
                Ok(_) => {}
                Err(_) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        if let Some(m) = maint {
            m.abort();
        }
        for p in self.inner.pools() {
            for c in p.close_idle() {
                c.terminate().await;
            }
        }
        Ok(())
    }
}
