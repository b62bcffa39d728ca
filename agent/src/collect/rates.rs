//! Per-second rates from running counters, computed on the agent between two samples.
//!
//! A rate needs two readings, so a key's first appearance sends nothing; a counter
//! that went backwards (device re-plugged, driver reset, 32-bit wrap) also sends
//! nothing for that step rather than a huge or negative rate.

use std::collections::HashMap;
use std::time::Instant;

/// The last counters seen for each key, and when.
pub(super) struct Rates {
    /// Key → (counter values in a fixed order, when read). Entries of keys that
    /// vanished are dropped at each update, so the map never outgrows the machine.
    last: HashMap<String, (Vec<u64>, Instant)>,
}

impl Rates {
    pub(super) fn new() -> Self {
        Rates {
            last: HashMap::new(),
        }
    }

    /// Records `now`'s counters for every key in `current` and returns, per key, the
    /// per-second rate of each counter since the previous update (`None` where there is
    /// no previous value, the counter went backwards, or no time passed).
    pub(super) fn update(
        &mut self,
        now: Instant,
        current: Vec<(String, Vec<u64>)>,
    ) -> Vec<(String, Vec<Option<f64>>)> {
        let mut next = HashMap::with_capacity(current.len());
        let mut out = Vec::with_capacity(current.len());
        for (key, values) in current {
            let rates = match self.last.get(&key) {
                Some((prev, then)) if prev.len() == values.len() => {
                    let secs = now.saturating_duration_since(*then).as_secs_f64();
                    values
                        .iter()
                        .zip(prev)
                        .map(|(v, p)| (secs > 0.0 && v >= p).then(|| (v - p) as f64 / secs))
                        .collect()
                }
                _ => vec![None; values.len()],
            };
            out.push((key.clone(), rates));
            next.insert(key, (values, now));
        }
        self.last = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn first_reading_gives_nothing_then_rates_then_reset_gives_nothing() {
        let mut r = Rates::new();
        let t0 = Instant::now();
        let got = r.update(t0, vec![("sda".into(), vec![100, 0])]);
        assert_eq!(got, [("sda".to_owned(), vec![None, None])]);
        let got = r.update(
            t0 + Duration::from_secs(2),
            vec![("sda".into(), vec![300, 10])],
        );
        assert_eq!(got, [("sda".to_owned(), vec![Some(100.0), Some(5.0)])]);
        // Counter reset: no rate for this step, the next one is fine again.
        let got = r.update(
            t0 + Duration::from_secs(4),
            vec![("sda".into(), vec![50, 12])],
        );
        assert_eq!(got, [("sda".to_owned(), vec![None, Some(1.0)])]);
        // A vanished key is forgotten: when it comes back it starts over.
        r.update(t0 + Duration::from_secs(6), vec![]);
        let got = r.update(
            t0 + Duration::from_secs(8),
            vec![("sda".into(), vec![60, 12])],
        );
        assert_eq!(got, [("sda".to_owned(), vec![None, None])]);
    }
}
