//! Exact tail probabilities in log space: binomial upper tail for failure proportions, Poisson
//! upper tail for event counts without a denominator.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// ln P(X = i) for X ~ Binomial(n, p), 0 < p < 1.
fn ln_binom_pmf(n: u64, i: u64, ln_p: f64, ln_q: f64) -> f64 {
    ln_choose(n, i) + i as f64 * ln_p + (n - i) as f64 * ln_q
}

/// ln(exp(a) + exp(b)) without overflow.
fn ln_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Sum pmf terms walking away from the mode, stopping once they no longer matter.
fn ln_sum_terms(mut terms: impl Iterator<Item = f64>) -> f64 {
    let mut acc = f64::NEG_INFINITY;
    for t in terms.by_ref() {
        acc = ln_add(acc, t);
        if t < acc - 40.0 {
            break;
        }
    }
    acc
}

/// P(X >= k) for X ~ Binomial(n, p): the chance of seeing at least `k` failures in `n` attempts
/// when the true failure rate is `p`. Exact (terms summed in log space, truncated only once they
/// fall below 1e-17 of the running sum, which is valid because they decrease monotonically away
/// from the mode).
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (p.ln(), (-p).ln_1p());
    let mode = ((n as f64 + 1.0) * p).floor() as u64;
    if k > mode {
        // Terms decrease from k upward.
        ln_sum_terms((k..=n).map(|i| ln_binom_pmf(n, i, ln_p, ln_q))).exp()
    } else {
        // 1 - P(X <= k-1); terms decrease from k-1 downward.
        let lower = ln_sum_terms((0..k).rev().map(|i| ln_binom_pmf(n, i, ln_p, ln_q))).exp();
        (1.0 - lower).clamp(0.0, 1.0)
    }
}

/// P(X >= k) for X ~ Poisson(lambda).
pub fn poisson_upper_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let ln_l = lambda.ln();
    let term = |i: u64| -lambda + i as f64 * ln_l - ln_gamma(i as f64 + 1.0);
    let mode = lambda.floor() as u64;
    if k > mode {
        ln_sum_terms((k..).map(term)).exp()
    } else {
        let lower = ln_sum_terms((0..k).rev().map(term)).exp();
        (1.0 - lower).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..30u32 {
            f *= f64::from(n);
            assert!(close(ln_gamma(f64::from(n) + 1.0), f.ln(), 1e-12), "n={n}");
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // n = 10, p = 0.1: P(X >= 3) = 1 - sum_{i<3} C(10,i) 0.1^i 0.9^(10-i)
        let direct: f64 =
            1.0 - (0.9f64.powi(10) + 10.0 * 0.1 * 0.9f64.powi(9) + 45.0 * 0.01 * 0.9f64.powi(8));
        assert!(close(binomial_upper_tail(3, 10, 0.1), direct, 1e-10));
        // Deep tail: P(X >= 8 | n=8, p=0.02) = 0.02^8.
        assert!(close(
            binomial_upper_tail(8, 8, 0.02),
            0.02f64.powi(8),
            1e-9
        ));
        assert_eq!(binomial_upper_tail(0, 5, 0.3), 1.0);
        assert_eq!(binomial_upper_tail(6, 5, 0.3), 0.0);
        // Below the mean the tail is large.
        assert!(binomial_upper_tail(90, 10_000, 0.01) > 0.8);
    }

    #[test]
    fn binomial_tail_is_finite_at_large_n_and_tiny_values() {
        let p = binomial_upper_tail(3_000, 300_000, 0.001);
        assert!(p > 0.0 && p < 1e-300 || p == 0.0);
        let q = binomial_upper_tail(330, 300_000, 0.001);
        assert!(q > 0.01 && q < 0.5, "{q}");
    }

    #[test]
    fn poisson_tail_matches_direct_sums() {
        let l: f64 = 2.0;
        let direct = 1.0 - (-l).exp() * (1.0 + l + l * l / 2.0);
        assert!(close(poisson_upper_tail(3, 2.0), direct, 1e-10));
        assert!(close(
            poisson_upper_tail(1, 0.5),
            1.0 - (-0.5f64).exp(),
            1e-10
        ));
    }
}
