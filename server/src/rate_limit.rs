//! Token buckets per user and per client address, on the gRPC and the HTTP side. An
//! exhausted bucket answers RESOURCE_EXHAUSTED (gRPC) or 429 (HTTP) with how long to
//! wait; the call was refused before it did anything, so the client waits and sends it
//! again. Calls over the embedded server's unix socket have no client address and are
//! not limited.
//!
//! The buckets live in each server process: with several servers behind a balancer a
//! client gets each server's rate (failed link passwords, which must be counted across
//! servers, are throttled in the metadata store instead).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Calls a second a bucket refills with; it holds as many (one second of burst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub NonZeroU32);

/// The limits of `loft-server serve --rate-limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Per signed-in user, over all its devices; `None`: unlimited.
    pub user: Option<Rate>,
    /// Per client IP address, signed in or not; `None`: unlimited.
    pub ip: Option<Rate>,
}

impl Default for RateLimits {
    /// High enough that a busy mount (thousands of small files a second) is never slowed:
    /// it is a guard against runaway clients, not a budget.
    fn default() -> Self {
        RateLimits {
            user: Some(Rate(NonZeroU32::new(20_000).expect("non-zero"))),
            ip: Some(Rate(NonZeroU32::new(40_000).expect("non-zero"))),
        }
    }
}

impl FromStr for RateLimits {
    type Err = String;

    /// `user=N,ip=N` (calls per second; either may be `off` or left out, which keeps its
    /// default), or `off` for no limits.
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(RateLimits {
                user: None,
                ip: None,
            });
        }
        let mut limits = RateLimits::default();
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("expected user=N or ip=N, found {part:?}"))?;
            let rate = match value {
                "off" => None,
                number => Some(Rate(number.parse().map_err(|_| {
                    format!("{key}: expected calls per second (a positive number) or off, found {number:?}")
                })?)),
            };
            match key {
                "user" => limits.user = rate,
                "ip" => limits.ip = rate,
                other => return Err(format!("unknown rate limit {other:?} (user or ip)")),
            }
        }
        Ok(limits)
    }
}

impl fmt::Display for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |rate: Option<Rate>| rate.map_or("off".to_string(), |r| r.0.to_string());
        write!(f, "user={},ip={}", show(self.user), show(self.ip))
    }
}

/// The buckets of one server process.
pub struct RateLimiter {
    user: Option<DefaultKeyedRateLimiter<u64>>,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn buckets<K: std::hash::Hash + Eq + Clone>(
    rate: Option<Rate>,
) -> Option<DefaultKeyedRateLimiter<K>> {
    rate.map(|Rate(per_second)| DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second)))
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            user: buckets(limits.user),
            ip: buckets(limits.ip),
        }
    }

    /// Takes a token from `address`'s bucket; `Err` holds how long until one is there.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Duration> {
        check(self.ip.as_ref(), &address)
    }

    /// Takes a token from `user`'s bucket; `Err` holds how long until one is there.
    pub fn check_user(&self, user: u64) -> Result<(), Duration> {
        check(self.user.as_ref(), &user)
    }

    /// Drops the buckets that are full again (their keys have been idle a while), so
    /// memory follows the active clients, not every client ever seen.
    pub fn forget_idle(&self) {
        if let Some(user) = &self.user {
            user.retain_recent();
            user.shrink_to_fit();
        }
        if let Some(ip) = &self.ip {
            ip.retain_recent();
            ip.shrink_to_fit();
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    buckets: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Duration> {
    match buckets {
        None => Ok(()),
        Some(buckets) => buckets
            .check_key(key)
            .map_err(|refused| refused.wait_time_from(DefaultClock::default().now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits_and_refuses_bad_ones() {
        assert_eq!(
            "user=5,ip=off".parse::<RateLimits>().unwrap(),
            RateLimits {
                user: Some(Rate(NonZeroU32::new(5).unwrap())),
                ip: None
            }
        );
        let off: RateLimits = "off".parse().unwrap();
        assert_eq!((off.user, off.ip), (None, None));
        assert_eq!(
            "ip=7".parse::<RateLimits>().unwrap().user,
            RateLimits::default().user
        );
        for bad in ["user=0", "user=-1", "user", "disk=5", "user=5/s"] {
            assert!(bad.parse::<RateLimits>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_how_long_to_wait() {
        let limiter = RateLimiter::new("user=3,ip=off".parse().unwrap());
        for _ in 0..3 {
            limiter.check_user(1).unwrap();
        }
        let wait = limiter.check_user(1).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another user has a bucket of its own; addresses are unlimited.
        limiter.check_user(2).unwrap();
        for _ in 0..100 {
            limiter.check_address("127.0.0.1".parse().unwrap()).unwrap();
        }
    }
}
