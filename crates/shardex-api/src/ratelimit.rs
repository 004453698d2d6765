//! The per-token rate limit: each tenant token may make `per_second` requests a second on
//! average, with bursts of `burst` (a token bucket, GCRA as `governor` implements it); past
//! that, 429 with `Retry-After`. The admin token is the operator's and is not limited. Only
//! authenticated tokens are counted, so the state is bounded by the tokens issued.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

/// How fast one token may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a second, on average.
    pub per_second: NonZeroU32,
    /// How many may come at once.
    pub burst: NonZeroU32,
}

/// The limiter over every token.
pub struct Limiter {
    inner: RateLimiter<String, HashMapStateStore<String>, DefaultClock>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl Limiter {
    /// A limiter that allows `limit` per token.
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self {
            inner: RateLimiter::hashmap(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when `token` may make a request now; else how long until it may.
    pub fn check(&self, token: &str) -> Result<(), Duration> {
        self.inner
            .check_key(&token.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_waits_and_others_are_not_affected() {
        let limit = RateLimit {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        };
        let l = Limiter::new(limit);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check("b").is_ok(), "another token has its own bucket");
    }
}
