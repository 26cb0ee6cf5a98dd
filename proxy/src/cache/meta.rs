//! What the server knows, per database: function volatility (`pg_proc.provolatile`, user
//! functions told apart from the catalog's), views -> base tables (`pg_rewrite`/`pg_depend`),
//! foreign-key cascade targets (`pg_constraint`). Loaded at first use and refreshed.
//!
//! Writes made outside Vigil: `vigil cache install` ([`INSTALL_SQL`]) adds a statement-level
//! trigger on every user table that runs `pg_notify('vigil_cache', <table>)`. NOTIFY is
//! transactional (delivered at commit), needs no superuser, no `wal_level = logical` and no
//! replication slot that could fill the disk when Vigil is down. One LISTEN connection per
//! database bumps the table's generation on each notification; if that connection drops, the
//! whole database is invalidated (notifications may have been missed) before it listens again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use vigil_analyzer::{AnalysisCache, FunctionVolatility, Volatility};

use super::flow::FpInfo;
use super::{Cache, NOTIFY_CHANNEL};
use crate::pg::protocol::status;
use crate::pg::upstream::{ConnectParams, ServerConn};

/// Installs (idempotently) the notify function and a trigger on every ordinary/partitioned
/// table outside the system schemas.
pub const INSTALL_SQL: &str = r#"
CREATE OR REPLACE FUNCTION public.vigil_cache_notify() RETURNS trigger
LANGUAGE plpgsql AS $vigil$
BEGIN
  PERFORM pg_notify('vigil_cache', TG_TABLE_NAME);
  RETURN NULL;
END
$vigil$;
DO $vigil$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS tbl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
  LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS vigil_cache_notify ON %s', r.tbl);
    EXECUTE format('CREATE TRIGGER vigil_cache_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION public.vigil_cache_notify()', r.tbl);
  END LOOP;
END
$vigil$;
"#;

/// One database's catalog snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    loaded: bool,
    functions: FunctionVolatility,
    /// User (non-catalog) functions and their most volatile overload.
    user: HashMap<String, Volatility>,
    /// View -> base tables (transitively).
    views: HashMap<String, Vec<String>>,
    /// Table -> tables its writes cascade to (transitively).
    cascades: HashMap<String, Vec<String>>,
    /// Transactions start READ COMMITTED unless told otherwise: the server's
    /// `default_transaction_isolation` is `read committed` and no database/role setting
    /// overrides it (false when unsure).
    read_committed_default: bool,
}

impl Catalog {
    /// No server information: the analyzer's built-in function list only (tests).
    pub fn builtin_only() -> Catalog {
        Catalog {
            loaded: true,
            ..Catalog::default()
        }
    }

    pub fn loaded(&self) -> bool {
        self.loaded
    }

    pub fn function(&self, name: &str) -> Option<Volatility> {
        self.functions
            .get(name)
            .or_else(|| vigil_analyzer::analysis::functions::traits(name, None).volatility)
    }

    /// A user function that is not immutable (it may read tables the key does not cover).
    pub fn user_function_unsafe(&self, name: &str) -> bool {
        self.user
            .get(name)
            .is_some_and(|v| *v != Volatility::Immutable)
    }

    /// A user function that may write (volatile).
    pub fn user_function_may_write(&self, name: &str) -> bool {
        self.user.get(name) == Some(&Volatility::Volatile)
    }

    pub fn expand_view(&self, name: &str) -> Vec<String> {
        self.views.get(name).cloned().unwrap_or_default()
    }

    pub fn cascades(&self, name: &str) -> Vec<String> {
        self.cascades.get(name).cloned().unwrap_or_default()
    }

    /// Do transactions default to READ COMMITTED (see the field)?
    pub fn read_committed_default(&self) -> bool {
        self.read_committed_default
    }
}

/// `default_transaction_isolation` is `read committed` for the catalog connection, and no
/// per-database or per-role setting says otherwise.
const ISOLATION_SQL: &str = "SELECT (current_setting('default_transaction_isolation') = 'read committed' \
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) c \
    WHERE c LIKE 'default_transaction_isolation=%' \
    AND c <> 'default_transaction_isolation=read committed'))::text";

fn closure(edges: &HashMap<String, Vec<String>>) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if m != start && seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        out.insert(start.clone(), seen.into_iter().collect());
    }
    out
}

/// Load the catalog from a connection.
pub async fn load(c: &mut ServerConn) -> Result<Catalog, String> {
    let e = |e: crate::pg::error::UpstreamError| e.to_string();
    let rows = c
        .run(
            "SELECT p.proname, p.provolatile::text, (n.nspname IN ('pg_catalog', 'information_schema'))::text \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace",
        )
        .await
        .map_err(e)?;
    let mut functions = FunctionVolatility::new();
    let mut user: HashMap<String, Volatility> = HashMap::new();
    for r in rows {
        let (Some(name), Some(v), Some(sys)) = (&r[0], &r[1], &r[2]) else {
            continue;
        };
        let Some(v) = v.chars().next().and_then(Volatility::from_provolatile) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        functions.insert(&name, v);
        if sys != "true" {
            let e = user.entry(name).or_insert(v);
            *e = (*e).max(v);
        }
    }
    let rows = c
        .run(
            "SELECT DISTINCT v.relname::text, t.relname::text FROM pg_catalog.pg_rewrite r \
             JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
             JOIN pg_catalog.pg_depend d ON d.objid = r.oid \
               AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             JOIN pg_catalog.pg_class t ON t.oid = d.refobjid \
             WHERE v.relkind = 'v' AND t.oid <> v.oid AND t.relkind IN ('r', 'p', 'v', 'm', 'f')",
        )
        .await
        .map_err(e)?;
    let mut views: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows {
        if let (Some(v), Some(t)) = (&r[0], &r[1]) {
            views.entry(v.clone()).or_default().push(t.clone());
        }
    }
    let rows = c
        .run(
            "SELECT p.relname::text, c.relname::text FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_class p ON p.oid = k.confrelid \
             WHERE k.contype = 'f' AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))",
        )
        .await
        .map_err(e)?;
    let mut fks: HashMap<String, Vec<String>> = HashMap::new();
    for r in rows {
        if let (Some(p), Some(c)) = (&r[0], &r[1]) {
            fks.entry(p.clone()).or_default().push(c.clone());
        }
    }
    // Unsure (no permission...): transactions are not served from the cache.
    let read_committed_default = matches!(
        c.run(ISOLATION_SQL).await.as_deref(),
        Ok([r]) if r.first().and_then(|v| v.as_deref()) == Some("true")
    );
    Ok(Catalog {
        loaded: true,
        functions,
        user,
        views: closure(&views),
        cascades: closure(&fks),
        read_committed_default,
    })
}

/// Per-database state shared by the sessions.
pub struct DbMeta {
    pub name: String,
    catalog: RwLock<Arc<Catalog>>,
    analyses: RwLock<Arc<AnalysisCache>>,
    /// `auto` mode: observed upstream milliseconds per fingerprint.
    pub(crate) auto: Mutex<HashMap<u64, f64>>,
    /// Per-fingerprint decisions under the current catalog and a rules version.
    memo: RwLock<Memo>,
}

#[derive(Default)]
struct Memo {
    rules_version: u64,
    map: HashMap<u64, Arc<FpInfo>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DbMeta {
    pub fn new(name: &str) -> DbMeta {
        DbMeta {
            name: name.to_owned(),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            analyses: RwLock::new(Arc::new(AnalysisCache::new(10_000))),
            auto: Mutex::new(HashMap::new()),
            memo: RwLock::new(Memo::default()),
        }
    }

    /// The memoized facts about `fp` under rules version `rules_version`.
    pub(crate) fn memo_get(&self, rules_version: u64, fp: u64) -> Option<Arc<FpInfo>> {
        let m = self.memo.read().unwrap_or_else(|p| p.into_inner());
        if m.rules_version != rules_version {
            return None;
        }
        m.map.get(&fp).cloned()
    }

    /// Remember facts computed from `cat` (dropped when the catalog was replaced meanwhile).
    pub(crate) fn memo_put(
        &self,
        rules_version: u64,
        fp: u64,
        cat: &Arc<Catalog>,
        info: Arc<FpInfo>,
    ) {
        let mut m = self.memo.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(cat, &self.catalog()) || rules_version < m.rules_version {
            return;
        }
        if m.rules_version != rules_version || m.map.len() >= 50_000 {
            m.map.clear();
            m.rules_version = rules_version;
        }
        m.map.insert(fp, info);
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn analyses(&self) -> Arc<AnalysisCache> {
        self.analyses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, cat: Catalog) {
        let fv = Arc::new(cat.functions.clone());
        *self.analyses.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(AnalysisCache::new(10_000).with_functions(fv));
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cat);
        // After the catalog: a fill of the memo computed from the old one is refused.
        self.memo
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .clear();
    }

    /// `auto` mode bookkeeping: add an observed upstream time; returns the total.
    pub fn observe(&self, fp: u64, ms: f64) -> f64 {
        let mut a = lock(&self.auto);
        if a.len() > 50_000 {
            a.clear();
        }
        let e = a.entry(fp).or_insert(0.0);
        *e += ms;
        *e
    }

    pub fn observed(&self, fp: u64) -> f64 {
        lock(&self.auto).get(&fp).copied().unwrap_or(0.0)
    }
}

/// Start the catalog loader and (when enabled) the LISTEN follower of `meta`'s database.
pub(crate) fn spawn(
    cache: Arc<Cache>,
    meta: Arc<DbMeta>,
    connect: ConnectParams,
) -> Vec<tokio::task::AbortHandle> {
    let refresh = cache.settings.meta_refresh;
    let listen = cache.settings.listen;
    let weak = Arc::downgrade(&cache);
    drop(cache);
    let mut out = Vec::new();
    {
        let meta = meta.clone();
        let connect = connect.clone();
        out.push(
            tokio::spawn(async move {
                loop {
                    let mut wait = refresh;
                    match ServerConn::connect(&connect, 1).await {
                        Ok(mut c) => {
                            match load(&mut c).await {
                                Ok(cat) => meta.set(cat),
                                Err(e) => {
                                    tracing::warn!(database = %meta.name, error = %e, "cache: catalog not loaded");
                                    wait = Duration::from_secs(2);
                                }
                            }
                            c.terminate().await;
                        }
                        Err(e) => {
                            tracing::warn!(database = %meta.name, error = %e, "cache: cannot load the catalog");
                            wait = Duration::from_secs(2);
                        }
                    }
                    tokio::time::sleep(wait).await;
                }
            })
            .abort_handle(),
        );
    }
    if listen {
        out.push(tokio::spawn(follow(weak, meta, connect)).abort_handle());
    }
    out
}

/// LISTEN for the installed triggers' notifications; bump generations on each.
async fn follow(cache: Weak<Cache>, meta: Arc<DbMeta>, connect: ConnectParams) {
    let mut first = true;
    loop {
        if !first {
            // Notifications may have been missed while not listening.
            let Some(c) = cache.upgrade() else { return };
            let _ = c.store.bump(&meta.name, &[], true).await;
        }
        first = false;
        if let Ok(mut c) = ServerConn::connect(&connect, 1).await
            && c.run(&format!("LISTEN {NOTIFY_CHANNEL}")).await.is_ok()
        {
            loop {
                let m = match c.dec.decode() {
                    Ok(Some(m)) => m,
                    Ok(None) => match c.rd.read_buf(&mut c.dec.buf).await {
                        Ok(n) if n > 0 => continue,
                        _ => break,
                    },
                    Err(_) => break,
                };
                if m.tag != b'A' {
                    continue;
                }
                let Ok((_, _, payload)) = status::decode_notification(m.body()) else {
                    continue;
                };
                let Some(cache) = cache.upgrade() else { return };
                cache.stats.external_invalidation();
                let _ = cache
                    .store
                    .bump(&meta.name, &[super::store::table_name(&payload)], false)
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
