//! Cache metrics (Prometheus) and per-fingerprint counters for `/api/cache`. Fingerprints and
//! normalized text only: never parameter values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::eligibility::BypassReason;
use super::rules::Rules;
use super::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Counters of one fingerprint.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct FingerprintStatus {
    pub fingerprint: String,
    pub rule: Option<String>,
    pub hits: u64,
    pub misses: u64,
    /// Observe-only: lookups that would have hit / missed.
    pub observe_hits: u64,
    pub observe_misses: u64,
    pub bypass: BTreeMap<&'static str, u64>,
    pub bytes_stored: u64,
    pub saved_seconds: f64,
}

/// `/api/cache`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheStatus {
    pub backend: &'static str,
    pub store_available: bool,
    pub hits: u64,
    pub misses: u64,
    pub fills: u64,
    pub bypass: BTreeMap<&'static str, u64>,
    pub saved_seconds: f64,
    pub l1_bytes: u64,
    pub l1_entries: u64,
    pub redis_errors: u64,
    pub invalidations: u64,
    pub external_invalidations: u64,
    /// Misses that waited for another replica's fill (Redis fill lock held elsewhere).
    pub fill_waits: u64,
    /// Of those, the waits that ran out (`fill_lock_wait_ms`) and went upstream themselves.
    pub fill_wait_timeouts: u64,
    pub rules: usize,
    pub auto: bool,
    pub fingerprints: Vec<FingerprintStatus>,
}

pub(crate) struct Stats {
    hits: Counter,
    misses: Counter,
    fills: Counter,
    bypass: Family<ReasonLabel, Counter>,
    saved: Counter<f64, std::sync::atomic::AtomicU64>,
    stored_bytes: Counter,
    invalidations: Counter,
    external: Counter,
    fill_waits: Counter,
    fill_wait_timeouts: Counter,
    l1_bytes: Gauge,
    saved_ns: AtomicU64,
    per_fp: Mutex<HashMap<u64, FingerprintStatus>>,
    bypass_totals: Mutex<BTreeMap<&'static str, u64>>,
    /// The commonest bypass (a statement no rule covers, once per such statement): its series
    /// of `bypass` and its total, kept apart so counting it takes no lock or map lookup.
    no_rule: Counter,
    no_rule_total: AtomicU64,
}

const MAX_FINGERPRINTS: usize = 5_000;

impl Stats {
    pub fn new(registry: &mut Registry) -> Stats {
        let bypass = Family::<ReasonLabel, Counter>::default();
        let no_rule = bypass
            .get_or_create(&ReasonLabel {
                reason: BypassReason::NoRule.as_str(),
            })
            .clone();
        let s = Stats {
            hits: Counter::default(),
            misses: Counter::default(),
            fills: Counter::default(),
            bypass,
            saved: Counter::default(),
            stored_bytes: Counter::default(),
            invalidations: Counter::default(),
            external: Counter::default(),
            fill_waits: Counter::default(),
            fill_wait_timeouts: Counter::default(),
            l1_bytes: Gauge::default(),
            saved_ns: AtomicU64::new(0),
            per_fp: Mutex::new(HashMap::new()),
            bypass_totals: Mutex::new(BTreeMap::new()),
            no_rule,
            no_rule_total: AtomicU64::new(0),
        };
        let r = registry.sub_registry_with_prefix("vigil_cache");
        r.register("hits", "Statements answered from the cache", s.hits.clone());
        r.register(
            "misses",
            "Eligible statements run upstream",
            s.misses.clone(),
        );
        r.register("fills", "Results stored", s.fills.clone());
        r.register(
            "bypass",
            "Statements not served from the cache, by reason",
            s.bypass.clone(),
        );
        r.register(
            "saved_seconds",
            "Database time saved by hits",
            s.saved.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes of results stored",
            s.stored_bytes.clone(),
        );
        r.register(
            "invalidations",
            "Generation bumps by writes through Vigil",
            s.invalidations.clone(),
        );
        r.register(
            "external_invalidations",
            "Generation bumps from NOTIFY (writes outside Vigil)",
            s.external.clone(),
        );
        r.register(
            "fill_waits",
            "Misses that waited for another replica's fill of the same key (Redis fill lock)",
            s.fill_waits.clone(),
        );
        r.register(
            "fill_wait_timeouts",
            "Fill waits that ran out (fill_lock_wait_ms) and ran the statement upstream",
            s.fill_wait_timeouts.clone(),
        );
        r.register(
            "l1_bytes",
            "Bytes held in the in-process cache",
            s.l1_bytes.clone(),
        );
        s
    }

    fn fp<R>(&self, fp: u64, f: impl FnOnce(&mut FingerprintStatus) -> R) -> R {
        let mut m = self.per_fp.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_FINGERPRINTS && !m.contains_key(&fp) {
            m.clear();
        }
        let e = m.entry(fp).or_insert_with(|| FingerprintStatus {
            fingerprint: vigil_analyzer::format_id(fp),
            ..Default::default()
        });
        f(e)
    }

    pub fn hit(&self, fp: u64, rule: &str, saved_ns: u64) {
        self.hits.inc();
        self.saved.inc_by(saved_ns as f64 / 1e9);
        self.saved_ns.fetch_add(saved_ns, Ordering::Relaxed);
        self.fp(fp, |e| {
            e.hits += 1;
            e.saved_seconds += saved_ns as f64 / 1e9;
            if e.rule.is_none() {
                e.rule = Some(rule.to_owned());
            }
        });
    }

    pub fn miss(&self, fp: u64, rule: &str) {
        self.misses.inc();
        self.fp(fp, |e| {
            e.misses += 1;
            if e.rule.is_none() {
                e.rule = Some(rule.to_owned());
            }
        });
    }

    pub fn observe(&self, fp: u64, rule: &str, would_hit: bool) {
        self.fp(fp, |e| {
            if would_hit {
                e.observe_hits += 1;
            } else {
                e.observe_misses += 1;
            }
            if e.rule.is_none() {
                e.rule = Some(rule.to_owned());
            }
        });
    }

    pub fn filled(&self, fp: u64, bytes: usize) {
        self.fills.inc();
        self.stored_bytes.inc_by(bytes as u64);
        self.fp(fp, |e| e.bytes_stored += bytes as u64);
    }

    /// Count a bypass. `no_rule` is counted in totals only (it is the common case).
    pub fn bypass(&self, fp: u64, reason: BypassReason) {
        if reason == BypassReason::NoRule {
            self.no_rule.inc();
            self.no_rule_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let r = reason.as_str();
        self.bypass.get_or_create(&ReasonLabel { reason: r }).inc();
        *self
            .bypass_totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(r)
            .or_insert(0) += 1;
        self.fp(fp, |e| *e.bypass.entry(r).or_insert(0) += 1);
    }

    pub fn invalidation(&self) {
        self.invalidations.inc();
    }

    pub fn external_invalidation(&self) {
        self.external.inc();
    }

    /// A miss started waiting for another replica's fill.
    pub fn fill_wait(&self) {
        self.fill_waits.inc();
    }

    /// A fill wait ran out: the statement goes upstream here too.
    pub fn fill_wait_timeout(&self) {
        self.fill_wait_timeouts.inc();
    }

    /// Bypasses so far by reason (reasons that never happened are absent).
    fn bypass_totals(&self) -> BTreeMap<&'static str, u64> {
        let mut b = self
            .bypass_totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let no_rule = self.no_rule_total.load(Ordering::Relaxed);
        if no_rule > 0 {
            b.insert(BypassReason::NoRule.as_str(), no_rule);
        }
        b
    }

    pub fn status(&self, store: &Store, rules: &Rules) -> CacheStatus {
        self.l1_bytes.set(store.l1_bytes() as i64);
        let mut fps: Vec<FingerprintStatus> = self
            .per_fp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        fps.sort_by(|a, b| {
            (b.hits + b.misses + b.observe_hits + b.observe_misses)
                .cmp(&(a.hits + a.misses + a.observe_hits + a.observe_misses))
        });
        fps.truncate(200);
        CacheStatus {
            backend: if store.is_redis() { "redis" } else { "memory" },
            store_available: !store.redis_down(),
            hits: self.hits.get(),
            misses: self.misses.get(),
            fills: self.fills.get(),
            bypass: self.bypass_totals(),
            saved_seconds: self.saved_ns.load(Ordering::Relaxed) as f64 / 1e9,
            l1_bytes: store.l1_bytes(),
            l1_entries: store.l1_entries(),
            redis_errors: store.redis_errors.load(Ordering::Relaxed),
            invalidations: self.invalidations.get(),
            external_invalidations: self.external.get(),
            fill_waits: self.fill_waits.get(),
            fill_wait_timeouts: self.fill_wait_timeouts.get(),
            rules: rules.rules.len(),
            auto: rules.auto.enabled,
            fingerprints: fps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypasses_are_counted_by_reason_in_the_api_and_the_metric() {
        let mut registry = Registry::default();
        let stats = Stats::new(&mut registry);
        assert!(stats.bypass_totals().is_empty());
        stats.bypass(1, BypassReason::NoRule);
        stats.bypass(2, BypassReason::NoRule);
        stats.bypass(3, BypassReason::InTransaction);
        let totals = stats.bypass_totals();
        assert_eq!(totals.get("no_rule"), Some(&2));
        assert_eq!(totals.get("in_transaction"), Some(&1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"vigil_cache_bypass_total{reason="no_rule"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"vigil_cache_bypass_total{reason="in_transaction"} 1"#),
            "{text}"
        );
    }
}
