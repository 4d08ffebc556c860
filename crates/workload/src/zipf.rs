//! A Zipf sampler over a population that grows while sampling.
//!
//! Who is active is skewed: rank `k` (1-based) is drawn with probability proportional to `k^-s`.
//! The population is "everyone seen so far", which grows as new visitors arrive, so the sampler
//! takes the population size per draw instead of precomputing a table for a fixed one. It uses
//! rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate variates from
//! monotone discrete distributions", 1996), as Apache Commons Math does: O(1) time and memory per
//! draw for any population size and exponent, with an expected number of iterations close to 1.
//! An alias table would need memory per user and a rebuild whenever the population grows.
//!
//! All floating-point work goes through `crate::math`, so draws are bit-identical across platforms.

use crate::math::{exp, exp_m1, ln, ln_1p};
use crate::rng::SplitMix64;

/// Zipf ranks in `1..=n` with exponent `s >= 0` (`s = 0` is uniform).
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    exponent: f64,
    /// `H(1.5) - 1`, the upper end of the inversion interval; independent of `n`.
    h_integral_x1: f64,
    /// The squeeze constant `s` of the paper: ranks within it of `x` are accepted without the
    /// second test.
    squeeze: f64,
    /// The population size the cached `h_integral_n` is for (0: none yet).
    cached_n: u64,
    /// `H(n + 0.5)`, recomputed only when `n` changes (that is, when a new user arrives).
    h_integral_n: f64,
}

impl Zipf {
    /// A sampler with this exponent; `exponent` must be finite and non-negative.
    pub(crate) fn new(exponent: f64) -> Zipf {
        assert!(exponent.is_finite() && exponent >= 0.0, "Zipf exponent {exponent}");
        let mut zipf =
            Zipf { exponent, h_integral_x1: 0.0, squeeze: 0.0, cached_n: 0, h_integral_n: 0.0 };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// A rank in `1..=n`; `n` must be positive.
    pub(crate) fn sample(&mut self, n: u64, rng: &mut SplitMix64) -> u64 {
        assert!(n > 0, "Zipf over an empty population");
        if self.exponent == 0.0 {
            return 1 + rng.below(n);
        }
        if n != self.cached_n {
            self.cached_n = n;
            self.h_integral_n = self.h_integral(n as f64 + 0.5);
        }
        loop {
            // u is uniform in (h_integral_x1, h_integral_n].
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            // Round to the nearest rank, clamped into the population.
            let k = ((x + 0.5) as u64).clamp(1, n);
            let k_float = k as f64;
            if k_float - x <= self.squeeze || u >= self.h_integral(k_float + 0.5) - self.h(k_float)
            {
                return k;
            }
        }
    }

    /// `h(x) = x^-s`.
    fn h(&self, x: f64) -> f64 {
        exp(-self.exponent * ln(x))
    }

    /// `H(x)`, an antiderivative of `h`: `(x^(1-s) - 1) / (1 - s)`, or `ln x` for `s = 1`, written
    /// so that it is continuous in `s`.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = ln(x);
        expm1_over_x((1.0 - self.exponent) * log_x) * log_x
    }

    /// The inverse of `H`.
    fn h_integral_inverse(&self, x: f64) -> f64 {
        // Clamp against rounding: t < -1 would be outside H's range.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        exp(ln1p_over_x(t) * x)
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 { ln_1p(x) / x } else { 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x)) }
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        exp_m1(x) / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws `n_draws` ranks over `n` and compares each rank's frequency with `k^-s / sum`.
    fn check_frequencies(n: u64, exponent: f64, n_draws: u32) {
        let mut zipf = Zipf::new(exponent);
        let mut rng = SplitMix64::new(42);
        let mut counts = vec![0u32; n as usize];
        for _ in 0..n_draws {
            let k = zipf.sample(n, &mut rng);
            assert!((1..=n).contains(&k));
            counts[(k - 1) as usize] += 1;
        }
        let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-exponent)).collect();
        let total: f64 = weights.iter().sum();
        for (idx, (&count, &weight)) in counts.iter().zip(&weights).enumerate() {
            let expected = weight / total;
            let observed = f64::from(count) / f64::from(n_draws);
            assert!(
                (observed - expected).abs() < 0.01,
                "n={n} s={exponent} rank {}: observed {observed:.4}, expected {expected:.4}",
                idx + 1
            );
        }
    }

    #[test]
    fn frequencies_follow_the_power_law() {
        check_frequencies(10, 1.0, 100_000);
        check_frequencies(10, 0.5, 100_000);
        check_frequencies(20, 2.0, 100_000);
        check_frequencies(7, 0.0, 50_000);
        check_frequencies(1, 1.2, 1_000);
    }

    #[test]
    fn growing_population_is_supported() {
        let mut zipf = Zipf::new(0.9);
        let mut rng = SplitMix64::new(1);
        for n in 1..2_000u64 {
            assert!(zipf.sample(n, &mut rng) <= n);
        }
        assert!(zipf.sample(u64::MAX / 2, &mut rng) >= 1);
    }
}
