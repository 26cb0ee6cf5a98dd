//! CRM upstream instances: round-robin or least-requests selection skipping instances that
//! passive outlier ejection took out (consecutive connection failures or timeouts), for a
//! configured time. Least-requests counts, per instance, the requests sent and still waiting for
//! their response headers ([`Pool::begin`]); ties rotate like round-robin.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};

use crate::http::config::Balance;

/// One upstream instance.
#[derive(Debug)]
pub struct Instance {
    pub scheme: Scheme,
    pub authority: Authority,
    failures: AtomicU32,
    /// Requests sent to this instance still waiting for their response headers.
    in_flight: AtomicU32,
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
    balance: Balance,
}

/// Counts one request in flight on an instance until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
                    in_flight: AtomicU32::new(0),
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
            balance: Balance::RoundRobin,
        }
    }

    /// The selection policy (round-robin by default).
    pub fn with_balance(mut self, balance: Balance) -> Pool {
        self.balance = balance;
        self
    }

    /// Marks a request as sent to instance `i` until the guard is dropped (least-requests).
    pub fn begin(&self, i: usize) -> InFlight<'_> {
        let c = &self.instances[i].in_flight;
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }

    /// Requests currently in flight on instance `i`.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.instances[i].in_flight.load(Ordering::Relaxed)
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
        if self.balance == Balance::LeastRequests {
            // The least loaded healthy instance not excluded, else the least loaded healthy one;
            // the rotating start breaks ties.
            let load = |i: &usize| self.instances[*i].in_flight.load(Ordering::Relaxed);
            return candidates
                .clone()
                .filter(|&i| healthy(i) && !exclude.contains(&i))
                .min_by_key(load)
                .or_else(|| candidates.filter(|&i| healthy(i)).min_by_key(load));
        }
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

    #[test]
    fn least_requests_prefers_the_idle_instance() {
        let urls = ["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()];
        let p = Pool::new(&urls, 2, Duration::from_secs(60)).with_balance(Balance::LeastRequests);
        let busy = p.begin(0);
        for _ in 0..4 {
            assert_eq!(p.pick(&[]), Some(1));
        }
        let _also = p.begin(1);
        let _more = p.begin(1);
        assert_eq!(p.pick(&[]), Some(0), "instance 0 has 1 in flight, 1 has 2");
        assert_eq!(
            p.pick(&[0]),
            Some(1),
            "excluded unless it is the only healthy one"
        );
        drop(busy);
        assert_eq!(p.in_flight(0), 0);
        assert!(!p.failure(0));
        assert!(p.failure(0));
        assert_eq!(p.pick(&[]), Some(1), "ejected instances are skipped");
        // Ties rotate.
        let q = Pool::new(&urls, 2, Duration::from_secs(60)).with_balance(Balance::LeastRequests);
        let picks: Vec<_> = (0..4).map(|_| q.pick(&[]).unwrap()).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }
}
