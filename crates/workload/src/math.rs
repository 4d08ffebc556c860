//! `ln`, `exp`, `ln_1p` and `exp_m1` from basic IEEE-754 arithmetic only.
//!
//! The Zipf sampler needs logarithms and exponentials. `f64::ln` and friends call the platform's
//! libm, whose last-bit rounding differs between glibc, musl, macOS and Windows; a one-ulp
//! difference can flip a rejection test and change every following line of a workload. Addition,
//! multiplication, division and rounding are exactly specified by IEEE 754 (and Rust never fuses
//! them into FMAs on its own), so these versions give the same bits everywhere. They are accurate to
//! a few ulps, which is far more than sampling needs.

/// ln(2) split into a part with trailing zero bits (so `k * LN2_HI` is exact for the `k` used here)
/// and the remainder (fdlibm's `ln2_hi` and `ln2_lo`, given by their bits to be exact).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// 2^54, to scale subnormals up (written by its bits, so it is exact by construction).
const TWO_POW_54: f64 = f64::from_bits(0x4350_0000_0000_0000);

/// Natural logarithm for `x > 0` (returns `-inf` for 0 and NaN for negatives and NaN).
pub(crate) fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // Scale subnormals into the normal range so the exponent field is meaningful.
    let (x, mut exponent) = if x < f64::MIN_POSITIVE { (x * TWO_POW_54, -54) } else { (x, 0) };
    let bits = x.to_bits();
    exponent += ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as a number in [1, 2), then moved to [sqrt(2)/2, sqrt(2)) so |t| below is small.
    let mut mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if mantissa > std::f64::consts::SQRT_2 {
        mantissa *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(t) with t = (m - 1) / (m + 1), |t| <= 0.1716; the series converges fast.
    let t = (mantissa - 1.0) / (mantissa + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum = 0.0;
    let mut odd = 1.0;
    // 12 terms: t^25 / 25 < 1e-20, below the last bit of the result.
    for _ in 0..12 {
        sum += term / odd;
        term *= t2;
        odd += 2.0;
    }
    let k = exponent as f64;
    k * LN2_HI + (2.0 * sum + k * LN2_LO)
}

const _: () = assert!(LN2_HI + LN2_LO == std::f64::consts::LN_2);

/// e^x (overflows to `inf` above ~709.78, underflows to 0 below ~-745.13).
pub(crate) fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.133_219_101_941_1 {
        return 0.0;
    }
    // x = k ln2 + r with |r| <= ln2 / 2, so e^x = 2^k e^r.
    // Round half away from zero by hand: `f64::round` is a libm call on baseline x86-64, and any
    // nearby integer would do (the cast truncates exactly, so this is deterministic too).
    let scaled = x * std::f64::consts::LOG2_E;
    let k = ((scaled + 0.5f64.copysign(scaled)) as i64) as f64;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r; 14 terms leave an error below 1e-18 for |r| <= 0.35.
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..=14 {
        term *= r / f64::from(n);
        sum += term;
    }
    scale_by_power_of_two(sum, k as i32)
}

/// `value * 2^k`, in two steps when `2^k` alone is not a normal float.
fn scale_by_power_of_two(value: f64, k: i32) -> f64 {
    let power = |k: i32| f64::from_bits(((k + 1023) as u64) << 52);
    if k > 1023 {
        value * power(1023) * power(k - 1023)
    } else if k < -1022 {
        value * power(-1022) * power(k + 1022)
    } else {
        value * power(k)
    }
}

/// ln(1 + x), accurate also for tiny `x` (Goldberg's trick: the rounding error of `1 + x` cancels).
pub(crate) fn ln_1p(x: f64) -> f64 {
    let u = 1.0 + x;
    if u == 1.0 { x } else { ln(u) * (x / (u - 1.0)) }
}

/// e^x - 1, accurate also for tiny `x` (Kahan's trick, the counterpart of [`ln_1p`]).
pub(crate) fn exp_m1(x: f64) -> f64 {
    let u = exp(x);
    if u == 1.0 {
        return x;
    }
    let um1 = u - 1.0;
    if um1 == -1.0 {
        return -1.0;
    }
    if u.is_infinite() {
        return u;
    }
    um1 * (x / ln(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64, what: &str) {
        let tolerance = 4.0 * f64::EPSILON * expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: {actual:e} vs std {expected:e} (diff {:e})",
            actual - expected
        );
    }

    #[test]
    fn agrees_with_std_to_a_few_ulps() {
        let mut x = 1e-300;
        while x < 1e300 {
            assert_close(ln(x), x.ln(), &format!("ln({x:e})"));
            x *= 1.37;
        }
        let mut x = -700.0;
        while x < 700.0 {
            assert_close(exp(x), x.exp(), &format!("exp({x})"));
            x += 0.731;
        }
        for &x in &[1e-12, -1e-12, 1e-7, -3e-5, 0.01, -0.3, 0.7, 2.5, -0.9, 40.0] {
            assert_close(ln_1p(x), x.ln_1p(), &format!("ln_1p({x:e})"));
            assert_close(exp_m1(x), x.exp_m1(), &format!("exp_m1({x:e})"));
        }
    }

    #[test]
    fn edges() {
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1000.0), f64::INFINITY);
        assert_eq!(exp(-1000.0), 0.0);
        assert_close(ln(f64::MIN_POSITIVE / 8.0), (f64::MIN_POSITIVE / 8.0).ln(), "subnormal");
    }
}
