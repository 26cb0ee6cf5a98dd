//! The cache inside a pg session: what `frontend`/`backend`/`session` call.
//!
//! - Simple Query (one statement) and extended Execute (after Parse/Bind, named or unnamed):
//!   [`Session::cache_query`] / [`Session::cache_execute`] answer a hit with the stored bytes
//!   (through `Pending::Synth`, in order), or return a [`Fill`] that the backend feeds with the
//!   server's response (`RowDescription`/`DataRow`/`CommandComplete`) and stores at its end.
//! - Every statement's possible writes are added to the transaction's write set; when the
//!   server reports the transaction over (ReadyForQuery `I`), the set is due and
//!   [`Session::cache_after_server`] bumps the generations before the client's output is
//!   written. From a write's CommandComplete until then the client output is held, so a client
//!   never sees its write acknowledged before the bump.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use vigil_analyzer::StatementKind;

use super::Cache;
use super::eligibility::{self, BypassReason, WriteEffect};
use super::key::{self, Key, KeyInput};
use super::meta::DbMeta;
use super::rules::Decision;
use super::stampede::{FillLock, Flight, FlightGuard};
use super::store::Entry;
use crate::pg::protocol::extended::{Bind, Parse};
use crate::pg::protocol::{Msg, simple};
use crate::pg::session::{Pending, Session};

struct Portal {
    sql: Arc<str>,
    types: Arc<[u32]>,
    bind: Bytes,
}

/// What the cache needs to know about one fingerprint, computed once per fingerprint per rules
/// version and catalog (the no-match path costs a hash lookup, not an evaluation of the rules).
pub(crate) struct FpInfo {
    /// Tables its execution may write (views and FK cascades expanded).
    writes: Vec<String>,
    writes_global: bool,
    kind: StatementKind,
    /// It may change session state (`SET`, `set_config`...).
    stateful: bool,
    /// Eligible: the tables the key covers; else why not.
    read: Result<Arc<[String]>, BypassReason>,
    /// The first matching rule (eligible statements only).
    decision: Option<Decision>,
}

impl FpInfo {
    fn compute(cache: &Cache, meta: &DbMeta, fp: u64, stmt: &str) -> Arc<FpInfo> {
        let (version, rules) = cache.rules_versioned();
        if let Some(i) = meta.memo_get(version, fp) {
            return i;
        }
        let a = meta.analyses().get_or_analyze(fp, stmt);
        let cat = meta.catalog();
        let e = eligibility::write_effect(&a, &cat);
        let mut writes = BTreeSet::new();
        for t in e.tables {
            for b in cat.expand_view(&t) {
                writes.insert(b);
            }
            writes.insert(t);
        }
        let read = eligibility::check(&a, &cat).map(Arc::<[String]>::from);
        let decision = match &read {
            Ok(tables) => rules.matching(
                fp,
                &mut || vigil_analyzer::fingerprint(stmt).normalized,
                tables,
            ),
            Err(_) => None,
        };
        let info = Arc::new(FpInfo {
            writes: writes.into_iter().collect(),
            writes_global: e.global,
            kind: a.kind,
            stateful: a.kind == StatementKind::SessionState || !a.session_effects.is_empty(),
            read,
            decision,
        });
        meta.memo_put(version, fp, &cat, info.clone());
        info
    }
}

/// Does this (lowercase) statement keep READ COMMITTED? Conservative: any mention of an
/// isolation level other than read committed/uncommitted (PostgreSQL runs the latter as read
/// committed) says no.
fn keeps_read_committed(lower: &str) -> bool {
    let mentions = lower.contains("isolation") || lower.contains("characteristics");
    !mentions || lower.contains("read committed") || lower.contains("read uncommitted")
}

/// The explicit transaction as the cache sees it (reset by the `BEGIN` that starts one).
#[derive(Debug, Default, Clone, Copy)]
struct TxState {
    /// A write, an unknown statement, a session change, or a `BEGIN` the cache could not place.
    dirty: bool,
    /// Started or set REPEATABLE READ/SERIALIZABLE (or unsure).
    snapshot: bool,
}

/// Per-session cache state.
pub(crate) struct SessionCache {
    cache: Arc<Cache>,
    meta: Arc<DbMeta>,
    writes: BTreeSet<String>,
    writes_global: bool,
    due: Option<WriteEffect>,
    hold: bool,
    unnamed: Option<(Arc<str>, Arc<[u32]>)>,
    named: HashMap<String, (Arc<str>, Arc<[u32]>)>,
    portals: HashMap<String, Portal>,
    execs_since_sync: u32,
    tx: TxState,
    /// The session changed its default isolation (or the startup options mention one).
    session_snapshot: bool,
}

/// A response being captured for the cache.
pub(crate) struct Fill {
    cache: Arc<Cache>,
    meta: Arc<DbMeta>,
    fp: u64,
    /// None: `auto` measurement only.
    target: Option<(Key, Decision, Arc<[String]>)>,
    buf: BytesMut,
    limit: usize,
    started: Instant,
    poisoned: bool,
    /// The Redis fill lock held for the key (released once the entry is stored, or on drop).
    lock: Option<FillLock>,
    /// This replica's single flight for the key (dropped last: waiters then find the entry).
    _flight: Option<FlightGuard>,
}

impl Fill {
    /// Feed one server message of the statement's response (not ReadyForQuery).
    pub fn push(&mut self, m: &Msg<'_>) {
        if self.poisoned {
            return;
        }
        match m.tag {
            b'T' | b'D' | b'C' if self.target.is_some() => {
                if self.buf.len() + m.frame.len() > self.limit {
                    self.poisoned = true;
                    self.buf = BytesMut::new();
                    self.cache.stats.bypass(self.fp, BypassReason::TooLarge);
                    return;
                }
                self.buf.extend_from_slice(m.frame);
            }
            b'T' | b'D' | b'C' => {}
            _ => {
                self.poisoned = true;
                self.buf = BytesMut::new();
            }
        }
    }

    /// The statement completed (its CommandComplete was pushed): store the result.
    pub fn finish(mut self) {
        if self.poisoned {
            return;
        }
        let ns = self.started.elapsed().as_nanos() as u64;
        let Some((key, d, tables)) = &self.target else {
            self.meta.observe(self.fp, ns as f64 / 1e6);
            return;
        };
        let raw = self.buf.len();
        let (data, compressed) = if d.observe_only {
            (Bytes::new(), false)
        } else if raw > self.cache.settings.compress_above {
            (
                Bytes::from(lz4_flex::compress_prepend_size(&self.buf)),
                true,
            )
        } else {
            (Bytes::copy_from_slice(&self.buf), false)
        };
        let bytes = data.len();
        self.cache.store.put(
            *key,
            Entry {
                data,
                compressed,
                fill_ns: ns,
                tables: tables.clone(),
                ttl: d.ttl,
                observe: d.observe_only,
            },
            self.lock.take(),
        );
        self.cache.stats.filled(self.fp, bytes);
    }
}

/// What the cache does with one statement.
pub(crate) enum Outcome {
    /// Answered: these bytes are the response.
    Hit(Bytes),
    /// Run upstream and capture.
    Fill(Box<Fill>),
    Pass,
}

impl Session {
    fn cache_state(&mut self) -> Option<&mut SessionCache> {
        if self.cache.is_none() {
            let cache = self.inner.cache.clone()?;
            let pool = self.pool.clone();
            let meta = cache.db(&self.database, || pool.settings().connect);
            self.cache = Some(Box::new(SessionCache {
                cache,
                meta,
                writes: BTreeSet::new(),
                writes_global: false,
                due: None,
                hold: false,
                unnamed: None,
                named: HashMap::new(),
                portals: HashMap::new(),
                execs_since_sync: 0,
                tx: TxState::default(),
                session_snapshot: false,
            }));
        }
        self.cache.as_deref_mut()
    }

    /// The facts about one statement (memoized per fingerprint).
    fn cache_info(&mut self, stmt: &str) -> Option<(u64, Arc<FpInfo>)> {
        let sc = self.cache_state()?;
        let fp = vigil_analyzer::fingerprint_id(stmt);
        Some((fp, FpInfo::compute(&sc.cache, &sc.meta, fp, stmt)))
    }

    /// Add a statement's possible writes to the transaction's set and follow the explicit
    /// transaction. `can_begin`: nothing else is in flight before it and the session is idle,
    /// so a `BEGIN` here starts a new transaction.
    fn cache_track(&mut self, info: &FpInfo, stmt: &str, can_begin: bool) {
        let Some(sc) = self.cache.as_deref_mut() else {
            return;
        };
        sc.writes_global |= info.writes_global;
        for t in &info.writes {
            if !sc.writes.contains(t) {
                sc.writes.insert(t.clone());
            }
        }
        if info.writes_global || !info.writes.is_empty() {
            sc.tx.dirty = true;
        }
        match info.kind {
            StatementKind::Read if !info.stateful => {}
            StatementKind::TransactionControl => {
                let lower = stmt.trim_start().to_ascii_lowercase();
                let rc = keeps_read_committed(&lower);
                if lower.starts_with("begin") || lower.starts_with("start") {
                    sc.tx = if can_begin {
                        TxState {
                            dirty: false,
                            snapshot: !rc,
                        }
                    } else {
                        TxState {
                            dirty: true,
                            snapshot: true,
                        }
                    };
                } else if !rc {
                    sc.tx.snapshot = true;
                }
            }
            _ => {
                let lower = stmt.to_ascii_lowercase();
                if !keeps_read_committed(&lower) {
                    if lower.trim_start().starts_with("set transaction") {
                        sc.tx.snapshot = true;
                    } else {
                        sc.session_snapshot = true;
                    }
                }
                sc.tx.dirty = true;
            }
        }
    }

    /// Decide for one statement; look it up; on a miss return the fill to run.
    async fn cache_decide(
        &mut self,
        fp: u64,
        info: &FpInfo,
        sql: &str,
        extended: bool,
        param_types: &[u32],
        bind: &[u8],
    ) -> Outcome {
        let tx_status = self.tx_status;
        let idle = tx_status == b'I';
        let pinned = self.pinned.is_some();
        let startup_isolation = !idle
            && self
                .wanted
                .iter()
                .any(|(k, v)| k.contains("isolation") || v.contains("isolation"));
        let Some(sc) = self.cache.as_deref_mut() else {
            return Outcome::Pass;
        };
        let cache = sc.cache.clone();
        let meta = sc.meta.clone();
        let tables = match &info.read {
            Ok(t) => t.clone(),
            Err(r) => {
                let rules = cache.rules();
                if rules.auto.enabled || !rules.rules.is_empty() {
                    cache.stats.bypass(fp, *r);
                }
                return Outcome::Pass;
            }
        };
        let decision = match &info.decision {
            Some(d) => d.clone(),
            None => {
                let rules = cache.rules();
                if !rules.auto.enabled {
                    cache.stats.bypass(fp, BypassReason::NoRule);
                    return Outcome::Pass;
                }
                if meta.observed(fp) < rules.auto.min_db_time_ms {
                    cache.stats.bypass(fp, BypassReason::NoRule);
                    if !idle || pinned {
                        return Outcome::Pass;
                    }
                    return Outcome::Fill(Box::new(Fill {
                        cache: cache.clone(),
                        meta,
                        fp,
                        target: None,
                        buf: BytesMut::new(),
                        limit: 0,
                        started: Instant::now(),
                        poisoned: false,
                        lock: None,
                        _flight: None,
                    }));
                }
                rules.auto_decision()
            }
        };
        if pinned {
            cache.stats.bypass(fp, BypassReason::PinnedSession);
            return Outcome::Pass;
        }
        let wrote = sc.writes_global || !sc.writes.is_empty();
        if !idle {
            if tx_status != b'T' || !decision.in_transaction {
                cache.stats.bypass(fp, BypassReason::InTransaction);
                return Outcome::Pass;
            }
            if sc.tx.snapshot
                || sc.session_snapshot
                || startup_isolation
                || !meta.catalog().read_committed_default()
            {
                cache.stats.bypass(fp, BypassReason::IsolationLevel);
                return Outcome::Pass;
            }
            if wrote || sc.tx.dirty {
                cache.stats.bypass(fp, BypassReason::AfterWrite);
                return Outcome::Pass;
            }
        } else if wrote {
            cache.stats.bypass(fp, BypassReason::AfterWrite);
            return Outcome::Pass;
        }
        let wanted = self.wanted.clone();
        let cat = meta.catalog();
        if !cat.loaded() {
            cache.stats.bypass(fp, BypassReason::CatalogLoading);
            return Outcome::Pass;
        }
        // Owned copies (the session is borrowed again below): only on the cacheable path.
        let database = self.database.clone();
        let user = self.user.clone();
        let input = KeyInput {
            extended,
            database: &database,
            role: &user,
            settings: &wanted,
            sql,
            param_types,
            bind,
        };
        for _ in 0..3 {
            let gens = match cache.store.gens(&database, &tables).await {
                Ok(g) => g,
                Err(_) => {
                    cache.stats.bypass(fp, BypassReason::StoreUnavailable);
                    return Outcome::Pass;
                }
            };
            let k = key::key(&input, &gens);
            match cache.store.get(&k, &tables).await {
                Ok(Some(_)) if decision.observe_only => {
                    cache.stats.observe(fp, &decision.rule, true);
                    return Outcome::Pass;
                }
                Ok(Some(e)) if !e.observe => {
                    if let Some(b) = e.bytes() {
                        cache.stats.hit(fp, &decision.rule, e.fill_ns);
                        return Outcome::Hit(b);
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    cache.stats.bypass(fp, BypassReason::StoreUnavailable);
                    return Outcome::Pass;
                }
            }
            // Miss: become the one fill for this key (in this replica and, with Redis, across
            // replicas), or wait for the one in flight and look up again.
            let (guard, lock) = match cache.flight(k, decision.observe_only).await {
                Flight::Fill { guard, lock } => (guard, lock),
                Flight::Again => continue,
                Flight::Unavailable => {
                    cache.stats.bypass(fp, BypassReason::StoreUnavailable);
                    return Outcome::Pass;
                }
            };
            if decision.observe_only {
                cache.stats.observe(fp, &decision.rule, false);
            } else {
                cache.stats.miss(fp, &decision.rule);
            }
            let limit = decision.max_bytes.min(cache.settings.max_entry_bytes);
            return Outcome::Fill(Box::new(Fill {
                cache: cache.clone(),
                meta,
                fp,
                target: Some((k, decision, tables)),
                buf: BytesMut::new(),
                limit,
                started: Instant::now(),
                poisoned: false,
                lock,
                _flight: Some(guard),
            }));
        }
        cache.stats.miss(fp, &decision.rule);
        Outcome::Pass
    }

    /// A simple Query: track its writes; for one eligible statement, look it up.
    ///
    /// `stmts`: the query split by `vigil_analyzer::split_statements`. `fps` gets the
    /// `fingerprint_id` of each (left empty when they were not all computed), for the
    /// statistics hook to reuse.
    pub(crate) async fn cache_query(&mut self, stmts: &[&str], fps: &mut Vec<u64>) -> Outcome {
        if self.inner.cache.is_none() {
            return Outcome::Pass;
        }
        let idle_start = self.pending.is_empty() && self.tx_status == b'I';
        let mut last = None;
        for (i, stmt) in stmts.iter().enumerate() {
            let Some((fp, info)) = self.cache_info(stmt) else {
                fps.clear();
                return Outcome::Pass;
            };
            fps.push(fp);
            self.cache_track(&info, stmt, idle_start && i == 0);
            last = Some((fp, info));
        }
        if stmts.len() != 1 || !self.pending.is_empty() {
            return Outcome::Pass;
        }
        let Some((fp, info)) = last else {
            return Outcome::Pass;
        };
        match self
            .cache_decide(fp, &info, stmts[0], false, &[], &[])
            .await
        {
            Outcome::Hit(b) => {
                let mut out = BytesMut::with_capacity(b.len() + 6);
                out.extend_from_slice(&b);
                out.extend_from_slice(&simple::ready_for_query(self.tx_status));
                Outcome::Hit(out.freeze())
            }
            o => o,
        }
    }

    /// Remember a Parse's statement text and parameter types.
    pub(crate) fn cache_parse(&mut self, p: &Parse) {
        if self.inner.cache.is_none() {
            return;
        }
        let Some(sc) = self.cache_state() else { return };
        let v = (
            Arc::<str>::from(p.query.as_str()),
            Arc::<[u32]>::from(&p.param_types[..]),
        );
        if p.name.is_empty() {
            sc.unnamed = Some(v);
        } else {
            if sc.named.len() > 1000 {
                sc.named.clear();
            }
            sc.named.insert(p.name.clone(), v);
        }
    }

    /// Remember what a portal runs.
    pub(crate) fn cache_bind(&mut self, b: &Bind<'_>) {
        if self.inner.cache.is_none() {
            return;
        }
        let Some(sc) = self.cache_state() else { return };
        let st = if b.statement.is_empty() {
            sc.unnamed.clone()
        } else {
            sc.named.get(b.statement).cloned()
        };
        match st {
            Some((sql, types)) => {
                if sc.portals.len() > 100 {
                    sc.portals.clear();
                }
                sc.portals.insert(
                    b.portal.to_owned(),
                    Portal {
                        sql,
                        types,
                        bind: Bytes::copy_from_slice(b.rest),
                    },
                );
            }
            None => {
                sc.portals.remove(b.portal);
            }
        }
    }

    /// An Execute: track its writes; look up the first Execute of a pipeline.
    pub(crate) async fn cache_execute(&mut self, portal: &str, max_rows: i32) -> Outcome {
        if self.inner.cache.is_none() {
            return Outcome::Pass;
        }
        let in_flight = self.pending.iter().any(|p| {
            matches!(
                p,
                Pending::Sync | Pending::Query { .. } | Pending::FunctionCall
            )
        });
        let idle = self.tx_status == b'I';
        let Some(sc) = self.cache_state() else {
            return Outcome::Pass;
        };
        sc.execs_since_sync += 1;
        let first = sc.execs_since_sync == 1;
        let Some(p) = sc.portals.get(portal) else {
            // Unknown statement: it may write anything.
            sc.writes_global = true;
            sc.tx.dirty = true;
            return Outcome::Pass;
        };
        let (sql, types, bind) = (p.sql.clone(), p.types.clone(), p.bind.clone());
        let Some((fp, info)) = self.cache_info(&sql) else {
            return Outcome::Pass;
        };
        self.cache_track(&info, &sql, first && idle && !in_flight);
        if !first || in_flight {
            return Outcome::Pass;
        }
        if max_rows != 0 {
            return Outcome::Pass;
        }
        self.cache_decide(fp, &info, &sql, true, &types, &bind)
            .await
    }

    /// A fast-path FunctionCall: it may write anything.
    pub(crate) fn cache_function_call(&mut self) {
        if self.inner.cache.is_some()
            && let Some(sc) = self.cache_state()
        {
            sc.writes_global = true;
            sc.tx.dirty = true;
        }
    }

    /// A Sync went to the server.
    pub(crate) fn cache_sync(&mut self) {
        if let Some(sc) = self.cache.as_deref_mut() {
            sc.execs_since_sync = 0;
        }
    }

    /// A statement's CommandComplete arrived: hold the client output until the transaction's
    /// ReadyForQuery (and the bump) when it wrote and a ReadyForQuery is sure to follow.
    pub(crate) fn cache_complete(&mut self) {
        let z_follows = matches!(self.pending.front(), Some(Pending::Query { .. }))
            || self.pending.iter().any(|p| matches!(p, Pending::Sync));
        if let Some(sc) = self.cache.as_deref_mut()
            && (sc.writes_global || !sc.writes.is_empty())
            && z_follows
        {
            sc.hold = true;
        }
    }

    /// ReadyForQuery arrived with transaction status `status`.
    pub(crate) fn cache_ready(&mut self, status: u8) {
        let Some(sc) = self.cache.as_deref_mut() else {
            return;
        };
        if status == b'I' {
            if sc.writes_global || !sc.writes.is_empty() {
                let e = WriteEffect {
                    tables: std::mem::take(&mut sc.writes).into_iter().collect(),
                    global: std::mem::take(&mut sc.writes_global),
                };
                let due = sc.due.get_or_insert_with(WriteEffect::default);
                due.global |= e.global;
                due.tables.extend(e.tables);
            }
            sc.portals.clear();
        }
        if sc.due.is_none() {
            sc.hold = false;
        }
    }

    /// Is the client output held (a write's acknowledgement waits for its bump)?
    pub(crate) fn cache_holding(&self) -> bool {
        self.cache.as_ref().is_some_and(|sc| sc.hold)
    }

    /// May the client output go out before the session loop's next turn? Not while it is held
    /// or a bump is due: the loop bumps first ([`Session::cache_after_server`]).
    pub(crate) fn cache_lets_output_out(&self) -> bool {
        self.cache
            .as_ref()
            .is_none_or(|sc| !sc.hold && sc.due.is_none())
    }

    /// Bump what is due (before the client sees the commit); release a held output.
    pub(crate) async fn cache_after_server(&mut self) {
        let server_gone = self.server.is_none();
        let Some(sc) = self.cache.as_deref_mut() else {
            return;
        };
        if server_gone && sc.hold {
            // The transaction may or may not have committed: invalidate what it touched.
            let due = sc.due.get_or_insert_with(WriteEffect::default);
            due.global |= std::mem::take(&mut sc.writes_global);
            due.tables.extend(std::mem::take(&mut sc.writes));
        }
        if let Some(due) = sc.due.take() {
            sc.cache.stats.invalidation();
            // A failed bump is kept by the store and retried; the client is not failed for it.
            let _ = sc
                .cache
                .store
                .bump(&sc.meta.name, &due.tables, due.global)
                .await;
            sc.hold = false;
        } else if server_gone {
            sc.hold = false;
        }
    }

    /// The session ends: invalidate whatever an unfinished write may have committed.
    pub(crate) fn cache_cleanup(&mut self) {
        let Some(sc) = self.cache.take() else { return };
        let mut due = sc.due.unwrap_or_default();
        due.global |= sc.writes_global;
        due.tables.extend(sc.writes);
        if due.is_empty() {
            return;
        }
        let cache = sc.cache.clone();
        let db = sc.meta.name.clone();
        tokio::spawn(async move {
            let _ = cache.store.bump(&db, &due.tables, due.global).await;
        });
    }
}
