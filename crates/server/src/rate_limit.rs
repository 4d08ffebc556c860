//! A token bucket per API key: `rate` requests per second, with a burst of one second's worth.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Per-key buckets. A `BTreeMap` behind a mutex: keys are few (one per workspace) and the critical
/// section is a few arithmetic operations.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<BTreeMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes a token for `key`; `Err(seconds)` says when to retry. A rate of 0 is unlimited.
    pub fn admit(&self, key: &str, rate_per_second: u32) -> Result<(), u64> {
        if rate_per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(rate_per_second);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_rate_is_refused_with_a_retry_time() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert_eq!(limiter.admit("k", 5), Ok(()));
        }
        assert_eq!(limiter.admit("k", 5), Err(1));
        assert_eq!(limiter.admit("other", 5), Ok(()), "keys are separate");
        assert_eq!(limiter.admit("k", 0), Ok(()), "0 is unlimited");
    }
}
