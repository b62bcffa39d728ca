//! Per-source-address rate limit of enrollment attempts: a token bucket per IP
//! address holding `per_minute` attempts, refilled continuously. Pure: the caller
//! passes the clock, so the tests need no sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most addresses remembered; beyond it, buckets that are full again are dropped
/// (an address with a full bucket is indistinguishable from a new one).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, tokens: f64, last: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        (tokens + elapsed * self.per_minute / 60.0).min(self.per_minute)
    }

    /// Takes one attempt for `ip` at `now`; `Err(wait)` if none is left, with how long
    /// until the next one.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            let cap = self.per_minute;
            let snapshot: Vec<_> = self.buckets.iter().map(|(k, v)| (*k, *v)).collect();
            for (k, (t, last)) in snapshot {
                if self.refill(t, last, now) >= cap {
                    self.buckets.remove(&k);
                }
            }
        }
        let (tokens, last) = self
            .buckets
            .get(&ip)
            .copied()
            .unwrap_or((self.per_minute, now));
        let tokens = self.refill(tokens, last, now);
        if tokens >= 1.0 {
            self.buckets.insert(ip, (tokens - 1.0, now));
            Ok(())
        } else {
            self.buckets.insert(ip, (tokens, now));
            let secs = (1.0 - tokens) * 60.0 / self.per_minute;
            Err(Duration::from_secs_f64(secs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_budget_then_refuses_then_refills() {
        let mut rl = RateLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check(a, t0).unwrap();
        }
        let wait = rl.check(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another address has its own budget.
        rl.check(b, t0).unwrap();
        // One attempt comes back every 20 s.
        assert!(rl.check(a, t0 + Duration::from_secs(10)).is_err());
        rl.check(a, t0 + Duration::from_secs(21)).unwrap();
        assert!(rl.check(a, t0 + Duration::from_secs(21)).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut rl = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            rl.check(IpAddr::from(i.to_be_bytes()), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(120);
        rl.check("198.51.100.1".parse().unwrap(), later).unwrap();
        assert!(rl.buckets.len() < 10, "full buckets were dropped");
    }
}
