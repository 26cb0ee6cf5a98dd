//! CRM upstream instances: round-robin selection skipping instances that passive outlier
//! ejection took out (consecutive connection failures or timeouts), for a configured time.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};

/// One upstream instance.
#[derive(Debug)]
pub struct Instance {
    pub scheme: Scheme,
    pub authority: Authority,
    failures: AtomicU32,
    /// Milliseconds since the pool's epoch until which the instance is skipped.
    ejected_until_ms: AtomicU64,
}

/// The instances and the round-robin cursor.
#[derive(Debug)]
pub struct Pool {
    instances: Vec<Instance>,
    next: AtomicUsize,
    epoch: Instant,
    eject_after: u32,
    eject_for: Duration,
}

impl Pool {
    pub fn new(urls: &[String], eject_after: u32, eject_for: Duration) -> Pool {
        let instances = urls
            .iter()
            .filter_map(|u| u.parse::<http::Uri>().ok())
            .filter_map(|u| {
                Some(Instance {
                    scheme: u.scheme().cloned().unwrap_or(Scheme::HTTP),
                    authority: u.authority()?.clone(),
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                })
            })
            .collect();
        Pool {
            instances,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            eject_after: eject_after.max(1),
            eject_for,
        }
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next healthy instance, not in `exclude` when another is available.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let n = self.instances.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let healthy = |i: usize| self.instances[i].ejected_until_ms.load(Ordering::Relaxed) <= now;
        let candidates = (0..n).map(|k| (start + k) % n);
        let mut fallback = None;
        for i in candidates {
            if healthy(i) {
                if !exclude.contains(&i) {
                    return Some(i);
                }
                fallback.get_or_insert(i);
            }
        }
        fallback
    }

    pub fn get(&self, i: usize) -> &Instance {
        &self.instances[i]
    }

    /// Records a connection failure or timeout; true when this ejected the instance.
    pub fn failure(&self, i: usize) -> bool {
        let inst = &self.instances[i];
        let f = inst.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if f >= self.eject_after {
            inst.failures.store(0, Ordering::Relaxed);
            let until = self.now_ms() + self.eject_for.as_millis() as u64;
            inst.ejected_until_ms.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// An active health check failed: skip the instance until a check passes.
    pub fn mark_down(&self, i: usize) -> bool {
        let prev = self.instances[i]
            .ejected_until_ms
            .swap(u64::MAX, Ordering::Relaxed);
        prev <= self.now_ms()
    }

    /// An active health check passed: the instance takes traffic again.
    pub fn mark_up(&self, i: usize) {
        let inst = &self.instances[i];
        inst.failures.store(0, Ordering::Relaxed);
        inst.ejected_until_ms.store(0, Ordering::Relaxed);
    }

    pub fn success(&self, i: usize) {
        self.instances[i].failures.store(0, Ordering::Relaxed);
    }

    /// How many instances are currently healthy.
    pub fn healthy(&self) -> usize {
        let now = self.now_ms();
        self.instances
            .iter()
            .filter(|i| i.ejected_until_ms.load(Ordering::Relaxed) <= now)
            .count()
    }
}

/// A retry budget: every request deposits a fifth of a token, every retry spends one, so
/// retries stay under about 20% of traffic (plus a small reserve) when an upstream is failing.
#[derive(Debug)]
pub struct RetryBudget {
    /// Tokens in thousandths.
    milli: AtomicU64,
}

const DEPOSIT: u64 = 200;
const COST: u64 = 1000;
const CAP: u64 = 100 * COST;

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            milli: AtomicU64::new(10 * COST),
        }
    }
}

impl RetryBudget {
    pub fn deposit(&self) {
        let _ = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v + DEPOSIT).min(CAP))
            });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                v.checked_sub(COST)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_budget_limits_retries() {
        let b = RetryBudget::default();
        let mut n = 0;
        while b.withdraw() {
            n += 1;
        }
        assert_eq!(n, 10, "the initial reserve");
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.withdraw(), "five requests earn one retry");
        assert!(!b.withdraw());
    }

    #[test]
    fn round_robin_and_ejection() {
        let p = Pool::new(
            &["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            2,
            Duration::from_secs(60),
        );
        let a = p.pick(&[]).unwrap();
        let b = p.pick(&[]).unwrap();
        assert_ne!(a, b);
        assert!(!p.failure(0));
        assert!(p.failure(0));
        assert_eq!(p.healthy(), 1);
        for _ in 0..4 {
            assert_eq!(p.pick(&[]), Some(1));
        }
        assert_eq!(
            p.pick(&[1]),
            Some(1),
            "falls back to an excluded healthy one"
        );
        p.failure(1);
        p.failure(1);
        assert_eq!(p.pick(&[]), None);
    }
}
