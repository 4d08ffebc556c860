//! The pseudo-random source and the keyed hash that derive everything the generator emits.
//!
//! One [`SplitMix64`] stream drives every *decision* (which operation, which user, whether a value
//! is junk). Identifier *values* are not drawn from the stream: they are hashed from stable
//! integers (a person's ordinal, a device index, a line number) with [`mix64`], so a value can be
//! recomputed at any time instead of stored, and rendering a request never consumes randomness.
//!
//! SplitMix64 (Steele, Lea and Flood, 2014) is written out here rather than taken from the `rand`
//! crate because the output must stay byte-identical across versions of this crate's
//! dependencies: an upgrade of a third-party generator would silently change every workload file.

/// The SplitMix64 generator: a 64-bit state advanced by a Weyl sequence and scrambled by
/// [`mix64`]. Period 2^64, passes BigCrush, and costs a handful of integer operations per draw.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

/// The Weyl increment of SplitMix64 (2^64 divided by the golden ratio, made odd).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl SplitMix64 {
    /// A generator whose stream is fully determined by `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits (so every value is exact and the
    /// conversion is the same on every platform).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniform integer in `[0, n)`; `n` must be positive. Uses Lemire's multiply-shift, whose
    /// bias is below 2^-32 for the populations used here and which needs no division.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 / MurmurHash3 finaliser. A bijection on `u64`: distinct inputs give distinct
/// outputs, which is what makes derived identifier values unique (see `population.rs`).
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key for one purpose (`salt`) under one seed. Different salts give unrelated keys, so the
/// customer ID and the email of the same person do not share visible digits.
pub(crate) const fn derive_key(seed: u64, salt: u64) -> u64 {
    mix64(seed ^ mix64(salt.wrapping_mul(GOLDEN_GAMMA)))
}

/// A uniform float in `[0, 1)` from a hash value, for per-person and per-device attributes that are
/// recomputed rather than stored.
pub(crate) fn unit_from_hash(hash: u64) -> f64 {
    (hash >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn unit_floats_stay_in_range_and_below_is_bounded() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!(rng.below(3) < 3);
        }
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}
