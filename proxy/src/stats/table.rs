//! The per-fingerprint statistics table: sharded, bounded, updated inline on the hot path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use vigil_analyzer::{Analysis, Tags};

use super::heavy::HeavyState;
use super::sketch::Sketch;

const SHARDS: usize = 32;
/// Distinct SQLSTATEs, routes and other tag values kept per fingerprint.
const MAX_DISTINCT: usize = 16;

/// Counters over some period (the lifetime of an entry, or one window).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total: f64,
    pub min: f64,
    pub max: f64,
    pub pool_wait: f64,
    pub sketch: Sketch,
    pub sqlstates: BTreeMap<String, u64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bypasses: u64,
    pub cache_saved: f64,
}

impl Counters {
    fn record(
        &mut self,
        seconds: f64,
        bucket: Option<i32>,
        rows: Option<u64>,
        pool_wait: f64,
        sqlstate: Option<&str>,
    ) {
        if self.calls == 0 || seconds < self.min {
            self.min = seconds;
        }
        if seconds > self.max {
            self.max = seconds;
        }
        self.calls += 1;
        self.total += seconds;
        self.pool_wait += pool_wait;
        self.rows += rows.unwrap_or(0);
        self.sketch.add_index(bucket);
        if let Some(code) = sqlstate {
            self.errors += 1;
            if let Some(n) = self.sqlstates.get_mut(code) {
                *n += 1;
            } else if self.sqlstates.len() < MAX_DISTINCT {
                self.sqlstates.insert(code.to_owned(), 1);
            }
        }
    }
}

/// One fingerprint's statistics for one database and role.
#[derive(Debug)]
pub struct Entry {
    pub fingerprint: u64,
    pub database: String,
    pub role: String,
    pub normalized: String,
    pub analysis: Arc<Analysis>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub all: Counters,
    pub window: Counters,
    pub routes: BTreeSet<String>,
    pub controllers: BTreeSet<String>,
    pub actions: BTreeSet<String>,
    pub applications: BTreeSet<String>,
    /// The last traceparent seen (an exemplar linking to a trace).
    pub traceparent: Option<String>,
    pub heavy: HeavyState,
}

impl Entry {
    fn note_tags(&mut self, tags: &Tags) {
        for (set, value) in [
            (&mut self.routes, &tags.route),
            (&mut self.controllers, &tags.controller),
            (&mut self.actions, &tags.action),
            (&mut self.applications, &tags.application),
        ] {
            if let Some(v) = value
                && set.len() < MAX_DISTINCT
                && !set.contains(v)
            {
                set.insert(v.clone());
            }
        }
        if tags.traceparent.is_some() {
            self.traceparent.clone_from(&tags.traceparent);
        }
    }

    /// Tags as a flat map (the form signals and reports carry).
    pub fn tag_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (k, set) in [
            ("route", &self.routes),
            ("controller", &self.controllers),
            ("action", &self.actions),
            ("application", &self.applications),
        ] {
            if !set.is_empty() {
                m.insert(
                    k.to_owned(),
                    set.iter().cloned().collect::<Vec<_>>().join(","),
                );
            }
        }
        m
    }
}

/// What a caller records for one completed statement.
pub struct Record<'a> {
    pub fingerprint: u64,
    pub database: &'a str,
    pub role: &'a str,
    pub seconds: f64,
    pub rows: Option<u64>,
    pub pool_wait: f64,
    pub sqlstate: Option<&'a str>,
    pub tags: Option<Tags>,
}

type Shard = U64Map<Entry>;

/// The bounded table.
#[derive(Debug)]
pub struct Table {
    shards: Vec<Mutex<Shard>>,
    max_per_shard: usize,
    evicted: std::sync::atomic::AtomicU64,
    /// Coarse wall clock for `last_seen` (unix ms, set by [`Table::tick`]; 0 = read the clock
    /// per statement), so the hot path reads no clock.
    clock_ms: AtomicI64,
}

/// The table key: fingerprint, database and role hashed together (foldhash with a fixed seed:
/// an in-process identity, never stored or sent).
pub fn key(fingerprint: u64, database: &str, role: &str) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(KEY_SEED).build_hasher();
    fingerprint.hash(&mut h);
    database.hash(&mut h);
    role.hash(&mut h);
    h.finish()
}

const KEY_SEED: u64 = 0x5649_4749_4c5f_6b65;

/// A map keyed by an already-mixed 64-bit hash ([`key`], a fingerprint): the key is its own
/// hash, so a lookup costs no hashing.
pub type U64Map<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// The hasher of [`U64Map`]: passes a `u64` through.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is expected; fold anything else in so the map still works.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Table {
    pub fn new(max_entries: usize) -> Table {
        Table {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_per_shard: (max_entries / SHARDS).max(1),
            evicted: Default::default(),
            clock_ms: AtomicI64::new(0),
        }
    }

    /// Advance the coarse clock (the statistics task calls it every second).
    pub fn tick(&self) {
        self.clock_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    fn now(&self) -> DateTime<Utc> {
        match self.clock_ms.load(Ordering::Relaxed) {
            0 => Utc::now(),
            ms => DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now),
        }
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, Shard> {
        // Middle bits: the shard's map indexes by the low bits and tags by the top ones.
        self.shards[((key >> 32) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an entry exists (so the caller can skip building one).
    pub fn contains(&self, key: u64) -> bool {
        self.shard(key).contains_key(&key)
    }

    /// Record a statement; `make` builds the entry's descriptive part on first sight.
    pub fn record(&self, key: u64, r: Record<'_>, make: impl FnOnce() -> (String, Arc<Analysis>)) {
        let now = self.now();
        let mut shard = self.shard(key);
        if !shard.contains_key(&key) {
            if shard.len() >= self.max_per_shard {
                // Evict the least-called entry of this shard (as pg_stat_statements does).
                if let Some(victim) = shard
                    .iter()
                    .min_by_key(|(_, e)| e.all.calls)
                    .map(|(k, _)| *k)
                {
                    shard.remove(&victim);
                    self.evicted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let (normalized, analysis) = make();
            shard.insert(
                key,
                Entry {
                    fingerprint: r.fingerprint,
                    database: r.database.to_owned(),
                    role: r.role.to_owned(),
                    normalized,
                    analysis,
                    first_seen: now,
                    last_seen: now,
                    all: Counters::default(),
                    window: Counters::default(),
                    routes: BTreeSet::new(),
                    controllers: BTreeSet::new(),
                    actions: BTreeSet::new(),
                    applications: BTreeSet::new(),
                    traceparent: None,
                    heavy: HeavyState::default(),
                },
            );
        }
        let Some(e) = shard.get_mut(&key) else {
            return;
        };
        e.last_seen = now;
        let bucket = Sketch::index(r.seconds);
        e.all
            .record(r.seconds, bucket, r.rows, r.pool_wait, r.sqlstate);
        e.window
            .record(r.seconds, bucket, r.rows, r.pool_wait, r.sqlstate);
        if let Some(tags) = &r.tags {
            e.note_tags(tags);
        }
    }

    /// Count a cache outcome for an entry (used by the cache layer).
    pub fn cache_outcome(&self, key: u64, hit: bool, bypass: bool, saved_seconds: f64) {
        if let Some(e) = self.shard(key).get_mut(&key) {
            for c in [&mut e.all, &mut e.window] {
                if bypass {
                    c.cache_bypasses += 1;
                } else if hit {
                    c.cache_hits += 1;
                    c.cache_saved += saved_seconds;
                } else {
                    c.cache_misses += 1;
                }
            }
        }
    }

    /// Visit every entry (one shard locked at a time).
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) {
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            for e in s.values() {
                f(e);
            }
        }
    }

    /// Visit every entry mutably (window rotation).
    pub fn for_each_mut(&self, mut f: impl FnMut(&mut Entry)) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            for e in s.values_mut() {
                f(e);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(fp: u64, secs: f64, sqlstate: Option<&'a str>) -> Record<'a> {
        Record {
            fingerprint: fp,
            database: "crm",
            role: "app",
            seconds: secs,
            rows: Some(2),
            pool_wait: 0.001,
            sqlstate,
            tags: None,
        }
    }

    fn make() -> (String, Arc<Analysis>) {
        (
            "select $1".into(),
            Arc::new(vigil_analyzer::analyze("SELECT 1")),
        )
    }

    #[test]
    fn records_counters_and_errors_per_entry() {
        let t = Table::new(1000);
        let k = key(7, "crm", "app");
        t.record(k, rec(7, 0.010, None), make);
        t.record(k, rec(7, 0.030, Some("57014")), make);
        let mut seen = 0;
        t.for_each(|e| {
            seen += 1;
            assert_eq!(e.all.calls, 2);
            assert_eq!(e.all.errors, 1);
            assert_eq!(e.all.rows, 4);
            assert!((e.all.total - 0.040).abs() < 1e-9);
            assert_eq!(e.all.min, 0.010);
            assert_eq!(e.all.max, 0.030);
            assert_eq!(e.all.sqlstates["57014"], 1);
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn last_seen_follows_the_coarse_clock_once_ticked() {
        let t = Table::new(1000);
        let k = key(9, "crm", "app");
        t.record(k, rec(9, 0.001, None), make);
        let mut first = None;
        t.for_each(|e| first = Some(e.last_seen));
        let first = first.unwrap();
        assert!((Utc::now() - first).num_seconds().abs() <= 1);
        t.clock_ms
            .store(first.timestamp_millis() + 5_000, Ordering::Relaxed);
        t.record(k, rec(9, 0.001, None), make);
        t.for_each(|e| {
            assert_eq!(
                e.last_seen.timestamp_millis(),
                first.timestamp_millis() + 5_000
            );
            assert_eq!(e.first_seen, first);
            assert_eq!(e.all.sketch.count(), 2);
            assert_eq!(e.window.sketch.count(), 2);
        });
        t.tick();
        assert!(t.clock_ms.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_least_called() {
        let t = Table::new(SHARDS * 2);
        for fp in 0..1000u64 {
            t.record(key(fp, "crm", "app"), rec(fp, 0.001, None), make);
        }
        assert!(t.len() <= SHARDS * 2);
        assert!(t.evicted() >= 1000 - (SHARDS as u64 * 2));
    }
}
