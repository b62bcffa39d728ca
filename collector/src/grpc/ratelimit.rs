//! Token-bucket rate limits, one bucket per key: enrollment attempts per source
//! address (`per_minute` attempts, refilled continuously), and certificate
//! renewals per device ([`RateLimiter::with_rate`]). Pure: the caller passes the
//! clock, so the tests need no sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most addresses remembered; beyond it, buckets that are full again are dropped
/// (an address with a full bucket is indistinguishable from a new one).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub(crate) struct RateLimiter<K = IpAddr> {
    /// Tokens a full bucket holds (the burst).
    capacity: f64,
    /// Tokens added per second.
    per_sec: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl RateLimiter<IpAddr> {
    /// `per_minute` attempts per address, all of them at once at most.
    pub(crate) fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self::with_rate(per_minute, Duration::from_secs_f64(60.0 / per_minute))
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A burst of `capacity`, then one more every `refill_every`.
    pub(crate) fn with_rate(capacity: f64, refill_every: Duration) -> Self {
        Self {
            capacity: capacity.max(1.0),
            per_sec: 1.0 / refill_every.as_secs_f64().max(1e-3),
            buckets: HashMap::new(),
        }
    }

    fn refill(&self, tokens: f64, last: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        (tokens + elapsed * self.per_sec).min(self.capacity)
    }

    /// Takes one attempt for `ip` at `now`; `Err(wait)` if none is left, with how long
    /// until the next one.
    pub(crate) fn check(&mut self, ip: K, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            let cap = self.capacity;
            let snapshot: Vec<_> = self.buckets.iter().map(|(k, v)| (k.clone(), *v)).collect();
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
            .unwrap_or((self.capacity, now));
        let tokens = self.refill(tokens, last, now);
        if tokens >= 1.0 {
            self.buckets.insert(ip, (tokens - 1.0, now));
            Ok(())
        } else {
            self.buckets.insert(ip, (tokens, now));
            let secs = (1.0 - tokens) / self.per_sec;
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
    fn a_burst_then_a_slower_refill_per_key() {
        let mut rl = RateLimiter::with_rate(3.0, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check("d1".to_owned(), t0).unwrap();
        }
        let wait = rl.check("d1".to_owned(), t0).unwrap_err();
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
        rl.check("d2".to_owned(), t0).unwrap();
        rl.check("d1".to_owned(), t0 + Duration::from_secs(61))
            .unwrap();
        assert!(
            rl.check("d1".to_owned(), t0 + Duration::from_secs(61))
                .is_err()
        );
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
