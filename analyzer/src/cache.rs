//! [`AnalysisCache`]: a bounded, thread-safe map fingerprint -> `Arc<Analysis>` so deep
//! analysis runs once per fingerprint.
//!
//! Sharded (`Mutex<HashMap>` per shard, shard chosen by the fingerprint's high bits) with FIFO
//! eviction inside each shard. Analysis runs outside the lock; two threads missing the same
//! fingerprint at once may both analyze it (the results are equal; the first insert wins).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::analysis::{Analysis, FunctionVolatility, analyze_with};

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Arc<Analysis>>,
    order: VecDeque<u64>,
}

/// Counters of an [`AnalysisCache`] (monotonic since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Analyses whose statement sqlparser could not parse.
    pub parse_failures: u64,
    pub evictions: u64,
    pub entries: u64,
}

/// A bounded fingerprint -> analysis cache.
pub struct AnalysisCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    functions: Option<Arc<FunctionVolatility>>,
    hits: AtomicU64,
    misses: AtomicU64,
    parse_failures: AtomicU64,
    evictions: AtomicU64,
}

impl AnalysisCache {
    /// A cache holding at most about `capacity` analyses (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        AnalysisCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            functions: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            parse_failures: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Uses `functions` (e.g. loaded from `pg_proc.provolatile`) for function volatility.
    pub fn with_functions(mut self, functions: Arc<FunctionVolatility>) -> Self {
        self.functions = Some(functions);
        self
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(id >> 60) as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached analysis of fingerprint `id`, if any.
    pub fn get(&self, id: u64) -> Option<Arc<Analysis>> {
        let hit = self.shard(id).map.get(&id).cloned();
        match hit {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        hit
    }

    /// The analysis of `sql` whose fingerprint is `id`: cached, or analyzed now and cached.
    pub fn get_or_analyze(&self, id: u64, sql: &str) -> Arc<Analysis> {
        if let Some(a) = self.get(id) {
            return a;
        }
        let a = Arc::new(analyze_with(sql, self.functions.as_deref()));
        if a.parse_failed {
            self.parse_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.insert(id, a)
    }

    /// Inserts an analysis; returns the cached one (an earlier insert for `id` wins).
    pub fn insert(&self, id: u64, a: Arc<Analysis>) -> Arc<Analysis> {
        let mut s = self.shard(id);
        if let Some(existing) = s.map.get(&id) {
            return existing.clone();
        }
        while s.map.len() >= self.per_shard {
            match s.order.pop_front() {
                Some(old) => {
                    s.map.remove(&old);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        s.map.insert(id, a.clone());
        s.order.push_back(id);
        a
    }

    /// Number of cached analyses.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (e.g. after the function volatility table changed).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
            s.map.clear();
            s.order.clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            parse_failures: self.parse_failures.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint_id;

    #[test]
    fn analyzes_once_per_fingerprint() {
        let c = AnalysisCache::new(100);
        let a = "SELECT * FROM contacts WHERE id = 1";
        let b = "select *  from CONTACTS where id = 2";
        let x = c.get_or_analyze(fingerprint_id(a), a);
        let y = c.get_or_analyze(fingerprint_id(b), b);
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(c.stats().hits, 1);
        assert_eq!(c.stats().misses, 1);
        assert_eq!(c.len(), 1);
        assert_eq!(x.tables_read, vec!["contacts".to_string()]);
    }

    #[test]
    fn is_bounded_and_counts_parse_failures() {
        let c = AnalysisCache::new(32);
        for i in 0..500u64 {
            let sql = format!("SELECT c{i} FROM t");
            c.get_or_analyze(fingerprint_id(&sql), &sql);
        }
        assert!(c.len() <= c.capacity(), "{} > {}", c.len(), c.capacity());
        assert!(c.stats().evictions >= 500 - c.capacity() as u64);
        let bad = "SELEKT garbage ((";
        let a = c.get_or_analyze(fingerprint_id(bad), bad);
        assert!(a.parse_failed && a.may_write() && !a.is_cacheable());
        assert_eq!(c.stats().parse_failures, 1);
    }

    #[test]
    fn shared_across_threads() {
        let c = Arc::new(AnalysisCache::new(1000));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let sql = format!("SELECT * FROM t{} WHERE id = {t}", i % 50);
                        c.get_or_analyze(fingerprint_id(&sql), &sql);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.len(), 50);
    }
}
