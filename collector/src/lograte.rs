//! Rate limits for log lines that a peer can cause at will (refused handshakes,
//! rate-limited enrollment attempts): at most one line per interval, and that line
//! says how many were left out since the last one. An unauthenticated client can
//! then not grow the log without bound, and the operator still sees that it happens.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rate-limited kind of log line.
#[derive(Debug)]
pub(crate) struct Every {
    interval: Duration,
    /// When a line was last let through, and how many were held back since. A std
    /// mutex: held for two assignments.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left_out)` if a line may be logged at `now` (`left_out` lines were
    /// held back since the previous one); `None` if this one is held back.
    pub(crate) fn check(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                s.1 += 1;
                None
            }
            _ => {
                let left_out = s.1;
                *s = (Some(now), 0);
                Some(left_out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counting_the_rest() {
        let e = Every::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(e.check(t0), Some(0));
        for i in 1..=100 {
            assert_eq!(e.check(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(e.check(t0 + Duration::from_secs(61)), Some(100));
        assert_eq!(e.check(t0 + Duration::from_secs(62)), None);
    }
}
