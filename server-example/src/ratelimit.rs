//! Rate limits: per IP address, per user, per user's WebSocket frames, and for phone
//! verification per IP — each a keyed GCRA limiter from `governor`.
//!
//! A limit of 0 per period disables that limiter. A refusal is [`ApiError::RateLimited`] with
//! the time after which a retry may pass (sent as `Retry-After`). Keyed limiters keep one small
//! state per key; [`RateLimiters::retain_recent`] (run every minute by the server) forgets keys
//! that are back to a full burst, so memory follows the active keys only.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::error::ApiError;

/// One keyed limiter; `None` inside when disabled.
pub struct Limiter<K: Hash + Eq + Clone> {
    what: &'static str,
    inner: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("what", &self.what)
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `count` events per `period` with bursts of `burst` (at least 1); `count == 0` disables.
    pub fn new(what: &'static str, count: u32, period: Duration, burst: u32) -> Self {
        let inner = NonZeroU32::new(count).and_then(|count| {
            let quota = Quota::with_period(period / count.get())?
                .allow_burst(NonZeroU32::new(burst).unwrap_or(count));
            Some(RateLimiter::keyed(quota))
        });
        Self { what, inner }
    }

    /// A limiter that allows everything.
    pub fn disabled(what: &'static str) -> Self {
        Self { what, inner: None }
    }

    /// Counts one event for `key`; `Err` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(format!("too many {}; slow down", self.what), Some(wait))
        })
    }

    /// Forgets keys whose state is back to a full burst.
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |l| l.len())
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The server's limiters.
#[derive(Debug)]
pub struct RateLimiters {
    /// Every request, by peer IP address.
    pub ip: Limiter<IpAddr>,
    /// Authenticated requests, by user.
    pub user: Limiter<u64>,
    /// WebSocket frames, by user.
    pub ws_frames: Limiter<u64>,
    /// verify-phone and verify-code, by peer IP address.
    pub verify: Limiter<IpAddr>,
}

impl RateLimiters {
    /// The limiters `config` asks for.
    pub fn new(config: &Config) -> Self {
        let second = Duration::from_secs(1);
        Self {
            ip: Limiter::new(
                "requests",
                config.ip_requests_per_s,
                second,
                config.ip_requests_burst,
            ),
            user: Limiter::new(
                "requests",
                config.user_requests_per_s,
                second,
                config.user_requests_burst,
            ),
            ws_frames: Limiter::new(
                "frames",
                config.ws_frames_per_s,
                second,
                config.ws_frames_burst,
            ),
            verify: Limiter::new(
                "verification attempts",
                config.verify_per_ip_per_min,
                Duration::from_secs(60),
                config.verify_per_ip_per_min,
            ),
        }
    }

    /// Forgets idle keys in every limiter.
    pub fn retain_recent(&self) {
        self.ip.retain_recent();
        self.user.retain_recent();
        self.ws_frames.retain_recent();
        self.verify.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_limit_bites() {
        let l: Limiter<u64> = Limiter::new("requests", 1, Duration::from_secs(60), 3);
        for _ in 0..3 {
            l.check(&1).unwrap();
        }
        let err = l.check(&1).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        match err {
            ApiError::RateLimited {
                retry_after: Some(after),
                ..
            } => assert!(after > Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        // Other keys are unaffected.
        l.check(&2).unwrap();
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn zero_disables() {
        let l: Limiter<u64> = Limiter::new("requests", 0, Duration::from_secs(1), 0);
        for _ in 0..10_000 {
            l.check(&1).unwrap();
        }
        assert!(l.is_empty());
    }
}
