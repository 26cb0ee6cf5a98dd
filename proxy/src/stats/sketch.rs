//! A mergeable quantile sketch with bounded relative error (the DDSketch idea).
//!
//! A value `x > 0` goes to bucket `ceil(log_gamma(x))` with `gamma = (1 + a) / (1 - a)`; any
//! quantile is then known within relative error `a` (1% here). Buckets are sparse, merging is
//! adding counts, and memory is bounded: past [`MAX_BUCKETS`] the lowest buckets collapse into one
//! (the high quantiles, which heavy-query detection reads, stay exact to 1%).

use std::collections::BTreeMap;

/// Relative accuracy of quantiles.
const ALPHA: f64 = 0.01;
/// Bucket budget per sketch.
pub const MAX_BUCKETS: usize = 512;
/// Values at or below this (seconds) count in the zero bucket (1 µs).
const MIN_VALUE: f64 = 1e-6;

fn gamma_ln() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

/// `1 / ln(gamma)` for ALPHA = 0.01 (a multiplication instead of a division per value; checked
/// against [`gamma_ln`] by a test).
const INV_GAMMA_LN: f64 = 49.998_333_288_886_78;

/// Quantile sketch over positive values (durations in seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    buckets: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
}

impl Sketch {
    pub fn add(&mut self, x: f64) {
        self.add_index(Self::index(x));
    }

    /// The bucket of `x` (`None`: the zero bucket), to add one value to several sketches with
    /// one logarithm.
    pub fn index(x: f64) -> Option<i32> {
        if x.is_nan() || x <= MIN_VALUE {
            return None;
        }
        Some((x.ln() * INV_GAMMA_LN).ceil() as i32)
    }

    /// Add a value by its [`Sketch::index`].
    pub fn add_index(&mut self, idx: Option<i32>) {
        self.count += 1;
        let Some(idx) = idx else {
            self.zero += 1;
            return;
        };
        if let Some(c) = self.buckets.get_mut(&idx) {
            *c += 1;
            return;
        }
        self.buckets.insert(idx, 1);
        if self.buckets.len() > MAX_BUCKETS {
            self.collapse_lowest();
        }
    }

    fn collapse_lowest(&mut self) {
        let mut it = self.buckets.iter();
        let (Some((&a, &ca)), Some((&b, _))) = (it.next(), it.next()) else {
            return;
        };
        self.buckets.remove(&a);
        *self.buckets.entry(b).or_insert(0) += ca;
    }

    /// Add every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        self.zero += other.zero;
        self.count += other.count;
        for (k, v) in &other.buckets {
            *self.buckets.entry(*k).or_insert(0) += v;
        }
        while self.buckets.len() > MAX_BUCKETS {
            self.collapse_lowest();
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1); 0 for an empty sketch.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).round() as u64;
        if rank < self.zero {
            return 0.0;
        }
        let mut seen = self.zero;
        let g = gamma_ln();
        for (&idx, &c) in &self.buckets {
            seen += c;
            if seen > rank {
                // The bucket's representative value: the midpoint (in relative terms) of
                // (gamma^(i-1), gamma^i], within ALPHA of every value in it.
                let upper = (idx as f64 * g).exp();
                return upper * 2.0 / (1.0 + (1.0 + ALPHA) / (1.0 - ALPHA));
            }
        }
        self.buckets
            .keys()
            .next_back()
            .map(|&i| (i as f64 * g).exp())
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        values[((q * (values.len() - 1) as f64).round()) as usize]
    }

    #[test]
    fn quantiles_are_within_the_relative_error() {
        let mut s = Sketch::default();
        let mut values: Vec<f64> = (1..=10_000)
            .map(|i| 0.0001 * (i as f64).powf(1.3))
            .collect();
        for v in &values {
            s.add(*v);
        }
        for q in [0.5, 0.9, 0.95, 0.99, 1.0] {
            let want = exact(&mut values, q);
            let got = s.quantile(q);
            assert!(
                (got - want).abs() / want <= ALPHA * 1.01,
                "q{q}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        let mut both = Sketch::default();
        for i in 1..=1000 {
            let v = i as f64 / 1000.0;
            if i % 3 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            both.add(v);
        }
        a.merge(&b);
        assert_eq!(a, both);
        assert_eq!(a.count(), 1000);
    }

    #[test]
    fn memory_stays_bounded_and_high_quantiles_stay_right() {
        let mut s = Sketch::default();
        // 12 decades of values: far more buckets than the budget.
        for i in 0..100_000 {
            s.add(10f64.powf(-6.0 + 12.0 * (i as f64) / 100_000.0));
        }
        assert!(s.buckets.len() <= MAX_BUCKETS);
        let p99 = s.quantile(0.99);
        let want = 10f64.powf(-6.0 + 12.0 * 0.99);
        assert!((p99 - want).abs() / want < 0.05, "{p99} vs {want}");
    }

    #[test]
    fn the_index_constant_matches_alpha() {
        assert!((INV_GAMMA_LN * gamma_ln() - 1.0).abs() < 1e-12);
        // Bucket boundaries agree with the division form on typical durations.
        for i in 1..20_000 {
            let x = 1e-6 * 1.0007f64.powi(i);
            assert_eq!(
                Sketch::index(x),
                Some((x.ln() / gamma_ln()).ceil() as i32),
                "{x}"
            );
        }
    }

    #[test]
    fn zero_and_empty() {
        let mut s = Sketch::default();
        assert_eq!(s.quantile(0.5), 0.0);
        s.add(0.0);
        assert_eq!(s.quantile(0.5), 0.0);
        assert_eq!(s.count(), 1);
    }
}
