//! Server connection pools, one per (database, user).
//!
//! A semaphore holds `pool_size` permits: a client waits for a permit up to `pool_timeout`
//! (then 53300), then takes the most recently used idle server (dropping expired ones, checking
//! the socket for a server-side close, and running an empty query when it idled longer than
//! `server_check_idle`) or connects a new one. Upstream connection failures start a backoff
//! (100 ms doubling to 1 s) during which clients fail fast with 08006 instead of piling up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::PoolMode;
use super::error::UpstreamError;
use super::metrics::Metrics;
use super::upstream::{ConnectParams, ServerConn};

/// Settings of one pool (replaced on reload).
#[derive(Clone)]
pub struct PoolSettings {
    pub connect: ConnectParams,
    pub mode: PoolMode,
    pub size: usize,
    pub min_idle: usize,
    pub pool_timeout: Duration,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    pub check_idle: Duration,
    pub max_statements: usize,
}

/// Why no server could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("no server connection available within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
}

/// Counters shown by the admin API.
#[derive(Default)]
pub struct PoolStats {
    pub clients: AtomicUsize,
    pub clients_active: AtomicUsize,
    pub waiting: AtomicUsize,
    pub servers_active: AtomicUsize,
    pub pinned: AtomicUsize,
    pub wait_count: AtomicU64,
    pub wait_us_total: AtomicU64,
    pub wait_us_max: AtomicU64,
    pub transactions: AtomicU64,
}

pub struct Pool {
    pub database: String,
    pub user: String,
    settings: Mutex<PoolSettings>,
    sem: Arc<Semaphore>,
    /// Boxed: a checkout or checkin moves a pointer, not the whole connection state.
    idle: Mutex<VecDeque<Box<ServerConn>>>,
    template: Mutex<Option<Vec<(String, String)>>>,
    backoff: Mutex<Backoff>,
    pub stats: PoolStats,
    metrics: Metrics,
    /// Server-side statement names that parsed successfully on some server of this pool.
    valid_statements: Mutex<std::collections::HashSet<Arc<str>>>,
    /// The tracked-parameter sets of this pool's clients, one `Arc` per distinct set: a server
    /// aligned for one client is then recognized as aligned for every client with an equal set
    /// by pointer, without comparing the sets (see `Session::ensure_server`).
    param_sets: Mutex<Vec<ParamSet>>,
}

/// A client's tracked parameters (name, value).
pub type ParamSet = Arc<[(String, String)]>;

/// Bound on shared parameter sets per pool (further distinct sets are not shared).
const MAX_PARAM_SETS: usize = 64;

/// Bound on remembered valid statements per pool (cleared when reached).
const MAX_VALID_STATEMENTS: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A checked-out server. Dropping it closes the connection; [`Pool::checkin`] returns it.
pub struct PooledServer {
    pub(crate) conn: Option<Box<ServerConn>>,
    _permit: OwnedSemaphorePermit,
    pool: Arc<Pool>,
}

impl PooledServer {
    pub fn conn(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("present until checkin")
    }
    pub fn conn_ref(&self) -> &ServerConn {
        self.conn.as_ref().expect("present until checkin")
    }
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        self.pool
            .stats
            .servers_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub fn new(database: String, user: String, settings: PoolSettings, metrics: Metrics) -> Pool {
        Pool {
            database,
            user,
            sem: Arc::new(Semaphore::new(settings.size)),
            settings: Mutex::new(settings),
            idle: Mutex::new(VecDeque::new()),
            template: Mutex::new(None),
            backoff: Mutex::new(Backoff::default()),
            stats: PoolStats::default(),
            metrics,
            valid_statements: Mutex::new(Default::default()),
            param_sets: Mutex::new(Vec::new()),
        }
    }

    pub fn settings(&self) -> PoolSettings {
        lock(&self.settings).clone()
    }

    pub fn mode(&self) -> PoolMode {
        lock(&self.settings).mode
    }

    /// Apply new settings; pool size changes take effect without dropping anyone.
    pub fn update(&self, new: PoolSettings) {
        let mut s = lock(&self.settings);
        let old = s.size;
        if new.size > old {
            self.sem.add_permits(new.size - old);
        } else if new.size < old {
            let sem = self.sem.clone();
            let diff = (old - new.size) as u32;
            // Permits in use are retired as they come back.
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move {
                        if let Ok(p) = sem.acquire_many_owned(diff).await {
                            p.forget();
                        }
                    });
                }
                Err(_) => {
                    sem.forget_permits(diff as usize);
                }
            }
        }
        *s = new;
    }

    /// Server parameters to report to clients (from the first server connection).
    pub fn template(&self) -> Option<Vec<(String, String)>> {
        lock(&self.template).clone()
    }

    /// Whether a statement is known to parse (so a client's Parse can be answered before it
    /// has a server, and the statement prepared when first used).
    pub fn statement_known(&self, name: &str) -> bool {
        lock(&self.valid_statements).contains(name)
    }

    pub fn statement_parsed(&self, name: &Arc<str>) {
        let mut v = lock(&self.valid_statements);
        if v.len() >= MAX_VALID_STATEMENTS {
            v.clear();
        }
        v.insert(name.clone());
    }

    /// The shared copy of a client's tracked-parameter set.
    pub fn param_set(&self, wanted: Vec<(String, String)>) -> ParamSet {
        let mut sets = lock(&self.param_sets);
        if let Some(s) = sets.iter().find(|s| ***s == *wanted) {
            return s.clone();
        }
        let s = ParamSet::from(wanted);
        if sets.len() < MAX_PARAM_SETS {
            sets.push(s.clone());
        }
        s
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Check out a server; returns it with the time spent waiting for a permit.
    pub async fn acquire(self: &Arc<Self>) -> Result<(PooledServer, Duration), AcquireError> {
        // Fast path: a free permit is taken without a clock read or a timer.
        let (permit, wait) = match self.sem.clone().try_acquire_owned() {
            Ok(p) => {
                self.metrics.pool_wait.observe(0.0);
                self.stats.wait_count.fetch_add(1, Ordering::Relaxed);
                (p, Duration::ZERO)
            }
            Err(_) => self.acquire_slow().await?,
        };
        // Only the timings are needed to reuse an idle server (no settings clone per checkout).
        let (lifetime, idle_timeout, check_idle) = {
            let s = lock(&self.settings);
            (s.lifetime, s.idle_timeout, s.check_idle)
        };
        loop {
            let next = lock(&self.idle).pop_back();
            let Some(mut conn) = next else { break };
            let now = Instant::now();
            let idle_for = now.saturating_duration_since(conn.last_used);
            if now.saturating_duration_since(conn.created) >= lifetime
                || idle_for >= idle_timeout
                || closed_while_idle(&conn)
            {
                continue;
            }
            if idle_for >= check_idle && !Box::pin(conn.check()).await {
                continue;
            }
            return Ok((self.wrap(conn, permit), wait));
        }
        let settings = self.settings();
        let conn = Box::pin(self.connect(&settings)).await?;
        Ok((self.wrap(Box::new(conn), permit), wait))
    }

    /// Wait for a permit, up to `pool_timeout`.
    async fn acquire_slow(&self) -> Result<(OwnedSemaphorePermit, Duration), AcquireError> {
        let timeout = lock(&self.settings).pool_timeout;
        let start = Instant::now();
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout(timeout, self.sem.clone().acquire_owned()).await;
        self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        let wait = start.elapsed();
        self.metrics.pool_wait.observe(wait.as_secs_f64());
        let us = wait.as_micros() as u64;
        self.stats.wait_count.fetch_add(1, Ordering::Relaxed);
        self.stats.wait_us_total.fetch_add(us, Ordering::Relaxed);
        self.stats.wait_us_max.fetch_max(us, Ordering::Relaxed);
        match permit {
            Ok(Ok(p)) => Ok((p, wait)),
            _ => {
                self.metrics.pool_timeouts.inc();
                Err(AcquireError::Timeout(timeout))
            }
        }
    }

    fn wrap(self: &Arc<Self>, conn: Box<ServerConn>, permit: OwnedSemaphorePermit) -> PooledServer {
        self.stats.servers_active.fetch_add(1, Ordering::Relaxed);
        PooledServer {
            conn: Some(conn),
            _permit: permit,
            pool: self.clone(),
        }
    }

    async fn connect(&self, settings: &PoolSettings) -> Result<ServerConn, UpstreamError> {
        {
            let b = lock(&self.backoff);
            if b.until.is_some_and(|u| Instant::now() < u) {
                return Err(UpstreamError::Backoff);
            }
        }
        match ServerConn::connect(&settings.connect, settings.max_statements).await {
            Ok(conn) => {
                *lock(&self.backoff) = Backoff::default();
                self.metrics.server_connections.inc();
                let mut t = lock(&self.template);
                if t.is_none() {
                    *t = Some(conn.params.clone());
                }
                Ok(conn)
            }
            Err(e) => {
                self.metrics.server_connect_errors.inc();
                if !matches!(e, UpstreamError::Server(_) | UpstreamError::Auth(_)) {
                    let mut b = lock(&self.backoff);
                    b.delay = (b.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    b.until = Some(Instant::now() + b.delay);
                }
                Err(e)
            }
        }
    }

    /// Return a clean, idle server to the pool (or close it when expired).
    pub fn checkin(&self, mut s: PooledServer) {
        let Some(mut conn) = s.conn.take() else {
            return;
        };
        let lifetime = lock(&self.settings).lifetime;
        let now = Instant::now();
        if now.saturating_duration_since(conn.created) >= lifetime || conn.dirty {
            return;
        }
        conn.last_used = now;
        lock(&self.idle).push_back(conn);
    }

    /// Periodic upkeep: close idle servers past their idle timeout/lifetime, open servers up to
    /// `min_idle`.
    pub async fn maintain(self: &Arc<Self>) {
        let settings = self.settings();
        lock(&self.idle).retain(|c| {
            c.created.elapsed() < settings.lifetime
                && c.last_used.elapsed() < settings.idle_timeout
                && !closed_while_idle(c)
        });
        while self.idle_count() < settings.min_idle {
            let Ok(permit) = self.sem.clone().try_acquire_owned() else {
                break;
            };
            match self.connect(&settings).await {
                Ok(c) => lock(&self.idle).push_back(Box::new(c)),
                Err(_) => break,
            }
            drop(permit);
        }
    }

    /// Close every idle server (shutdown).
    pub fn close_idle(&self) -> Vec<Box<ServerConn>> {
        lock(&self.idle).drain(..).collect()
    }

    /// Remember the connect template without checking out (used when the first client logs in).
    pub async fn warm(self: &Arc<Self>) -> Result<(), AcquireError> {
        if self.template().is_some() {
            return Ok(());
        }
        let (s, _) = self.acquire().await?;
        self.checkin(s);
        Ok(())
    }
}

/// A server that closed (or sent something) while idle in the pool is unusable.
fn closed_while_idle(conn: &ServerConn) -> bool {
    let mut b = [0u8; 1];
    !matches!(conn.rd.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
