//! The hot-read cache of the pg proxy: results of eligible reads replayed byte-identically,
//! invalidated by versioned per-table generations.
//!
//! - [`rules`]: `rules/cache.yaml` (by fingerprint, normalized-text pattern, table; `auto` mode),
//!   hot-reloaded.
//! - [`eligibility`]: the default-deny decision and its named [`BypassReason`]s.
//! - [`key`]: the cache key (statement, parameters, formats, database, role, settings, generations).
//! - [`store`]: L1 (moka, in-process) and L2 (Redis) values, table generations, invalidation
//!   broadcast, the Redis circuit breaker.
//! - [`meta`]: what the server says (`pg_proc.provolatile`, views -> base tables, FK cascades),
//!   and the LISTEN connection that follows writes made outside Vigil (`vigil cache install`).
//! - [`remote`]: invalidation straight through Redis (`vigil cache flush` without a running
//!   Vigil).
//! - [`stats`]: metrics and per-fingerprint counters; [`api`]: `/api/cache`.
//! - [`flow`]: what the pg session calls (lookup, fill, write tracking, bumps at commit).
//! - [`stampede`]: single flight per key, in the replica and across replicas (Redis fill lock).
//!
//! Correctness rule: a key includes the generation of every table read, read *before* the
//! statement goes upstream; a write bumps those generations after it committed and before its
//! client sees ReadyForQuery. A fill that started before a write is stored under the old
//! generation and can never be served after the write.

pub mod api;
pub mod eligibility;
pub mod flow;
pub mod key;
pub mod meta;
pub mod remote;
pub mod rules;
pub mod stampede;
pub mod stats;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use eligibility::BypassReason;
pub use rules::{Rule, Rules, RulesError};
pub use stats::CacheStatus;

use meta::DbMeta;
use stats::Stats;
use store::Store;

/// Where values and generations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In-process only (a single replica).
    Memory,
    /// Redis L2 shared by every replica, moka L1 in front.
    Redis { url: String },
}

/// Settings of the cache (built from `[cache]` by the binary).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub backend: Backend,
    /// The rules file; `None`: no rules (everything bypasses with `no_rule`).
    pub rules_path: Option<PathBuf>,
    /// Every Redis operation gives up after this long (the request then bypasses the cache).
    pub redis_timeout: Duration,
    /// After a Redis failure, how long to bypass before trying Redis again.
    pub redis_retry: Duration,
    /// Key prefix in Redis.
    pub prefix: String,
    /// L1 budget in bytes.
    pub l1_bytes: u64,
    /// Values larger than this (uncompressed) are compressed (lz4).
    pub compress_above: usize,
    /// No value larger than this is ever cached, whatever the rule says.
    pub max_entry_bytes: usize,
    /// How often `pg_proc`, views and foreign keys are reloaded.
    pub meta_refresh: Duration,
    /// Follow writes made outside Vigil (LISTEN on the channel the installed triggers notify).
    pub listen: bool,
    /// How long a concurrent miss waits for the one fill in flight before going upstream.
    pub flight_wait: Duration,
    /// How often the rules file is checked for changes.
    pub rules_poll: Duration,
    /// Backend `redis`: how long a miss waits for another replica that holds the key's fill
    /// lock before running the statement itself; zero turns the fill lock off.
    pub fill_lock_wait: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            backend: Backend::Memory,
            rules_path: None,
            redis_timeout: Duration::from_millis(5),
            redis_retry: Duration::from_millis(250),
            prefix: "vigil:cache:".into(),
            l1_bytes: 64 << 20,
            compress_above: 16 << 10,
            max_entry_bytes: 8 << 20,
            meta_refresh: Duration::from_secs(60),
            listen: true,
            flight_wait: Duration::from_secs(10),
            rules_poll: Duration::from_secs(1),
            fill_lock_wait: Duration::from_millis(250),
        }
    }
}

/// Why the cache could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache rules: {0}")]
    Rules(#[from] RulesError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The NOTIFY channel the installed triggers use.
pub const NOTIFY_CHANNEL: &str = "vigil_cache";

/// The hot-read cache, shared by every session of a [`crate::pg::PgProxy`].
pub struct Cache {
    pub(crate) settings: CacheSettings,
    /// The active rules and their version (bumped on each reload; memoized decisions of an
    /// older version are dropped).
    rules: RwLock<(u64, Arc<Rules>)>,
    pub(crate) store: Arc<Store>,
    pub(crate) stats: Stats,
    dbs: Mutex<HashMap<String, Arc<DbMeta>>>,
    /// Fills in flight (single flight per key): waiters watch the sender's drop.
    flights: Mutex<HashMap<key::Key, watch::Receiver<()>>>,
    /// Background tasks (rules reload, pub/sub, LISTEN, metadata), aborted on drop.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    /// Build the cache and start its background tasks (needs a Tokio runtime). Redis need not
    /// be up: the cache bypasses until it is.
    pub fn new(settings: CacheSettings, registry: &mut Registry) -> Result<Arc<Cache>, CacheError> {
        let rules = match &settings.rules_path {
            Some(p) => Rules::load(p)?,
            None => Rules::default(),
        };
        let stats = Stats::new(registry);
        let store = Arc::new(Store::new(&settings)?);
        let cache = Arc::new(Cache {
            settings,
            rules: RwLock::new((0, Arc::new(rules))),
            store,
            stats,
            dbs: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        if let Some(path) = cache.settings.rules_path.clone() {
            let weak = Arc::downgrade(&cache);
            let poll = cache.settings.rules_poll;
            let h = tokio::spawn(rules::watch(weak, path, poll));
            cache.add_task(h.abort_handle());
        }
        if let Some(h) = cache.store.spawn_subscriber() {
            cache.add_task(h);
        }
        Ok(cache)
    }

    pub(crate) fn add_task(&self, h: tokio::task::AbortHandle) {
        lock(&self.tasks).push(h);
    }

    /// The active rules.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The active rules with their version.
    pub(crate) fn rules_versioned(&self) -> (u64, Arc<Rules>) {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the rules (the file watcher does this on change).
    pub fn set_rules(&self, rules: Rules) {
        let mut r = self.rules.write().unwrap_or_else(|p| p.into_inner());
        *r = (r.0 + 1, Arc::new(rules));
    }

    /// Metadata of a database (started on first use).
    pub(crate) fn db(
        self: &Arc<Self>,
        name: &str,
        connect: impl FnOnce() -> crate::pg::upstream::ConnectParams,
    ) -> Arc<DbMeta> {
        if let Some(m) = lock(&self.dbs).get(name) {
            return m.clone();
        }
        let m = Arc::new(DbMeta::new(name));
        {
            let mut dbs = lock(&self.dbs);
            if let Some(m) = dbs.get(name) {
                return m.clone();
            }
            dbs.insert(name.to_owned(), m.clone());
        }
        for h in meta::spawn(self.clone(), m.clone(), connect()) {
            self.add_task(h);
        }
        m
    }

    /// Has the server catalog of `database` been loaded (caching starts then)?
    pub fn catalog_loaded(&self, database: &str) -> bool {
        lock(&self.dbs)
            .get(database)
            .is_some_and(|m| m.catalog().loaded())
    }

    /// Invalidate every entry (all databases), or only those reading `table` in `database`.
    pub async fn flush(&self, database: Option<&str>, table: Option<&str>) -> Result<(), String> {
        let dbs: Vec<String> = match database {
            Some(d) => vec![d.to_owned()],
            None => lock(&self.dbs).keys().cloned().collect(),
        };
        match table {
            Some(t) => {
                for d in &dbs {
                    let tables = vec![store::table_name(t)];
                    self.store
                        .bump(d, &tables, false)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            None => {
                for d in &dbs {
                    self.store
                        .bump(d, &[], true)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                self.store.clear_l1();
                Ok(())
            }
        }
    }

    /// Counters and per-fingerprint detail for `/api/cache`.
    pub fn status(&self) -> CacheStatus {
        self.stats.status(&self.store, &self.rules())
    }

    /// The SQL `vigil cache install` runs: a statement-level trigger on every user table that
    /// notifies [`NOTIFY_CHANNEL`] with the table name after each write (TRUNCATE included).
    /// Idempotent; run it again after migrations that add tables.
    pub fn install_sql() -> &'static str {
        meta::INSTALL_SQL
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for h in lock(&self.tasks).drain(..) {
            h.abort();
        }
    }
}
