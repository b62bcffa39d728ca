//! A fixed-size latency histogram: log-linear buckets (128 per power of two, so any
//! value is reported within 0.8 % of itself), constant memory however long the
//! collector runs, and every sample counted.

/// Sub-buckets per power of two (2^7).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every u64: 128 exact values below 128, then 128 per octave.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

/// Counts of values (microseconds here) by bucket, plus the exact maximum.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // floor(log2 v) >= SUB_BITS
    let m = v >> (e - SUB_BITS); // in [SUB, 2 SUB)
    (SUB + u64::from(e - SUB_BITS) * SUB + (m - SUB)) as usize
}

/// The largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i - SUB) / SUB + u64::from(SUB_BITS);
    let m = (i - SUB) % SUB + SUB;
    let shift = e - u64::from(SUB_BITS);
    ((m + 1) << shift).wrapping_sub(1).max(m << shift)
}

impl Histogram {
    /// Counts `n` occurrences of `v`.
    pub(crate) fn record(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.counts[index(v)] += n;
        self.total += n;
        self.max = self.max.max(v);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `p` (0–1], nearest rank: the upper bound of its bucket
    /// (never above the exact maximum); `None` when empty.
    pub fn quantile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(i >= last, "buckets are ordered: {v}");
            assert!(upper(i) >= v, "{v} within its bucket");
            last = i;
        }
        assert_eq!(upper(index(u64::MAX)), u64::MAX);
    }

    #[test]
    fn quantiles_are_within_one_percent_of_the_exact_ones() {
        // A spread like the engine's: mostly ~1 ms, a tail up to a few seconds.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = Vec::new();
        let mut h = Histogram::default();
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 1000) * (x % 7 + 1).pow(3) + x % 97;
            values.push(v);
            h.record(v, 1);
        }
        values.sort_unstable();
        for p in [0.5, 0.9, 0.99, 0.999, 1.0] {
            let i = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
            let exact = values[i] as f64;
            let got = h.quantile(p).unwrap() as f64;
            assert!(
                got >= exact && got <= exact * 1.008 + 1.0,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), values.last().copied());
        assert_eq!(h.count(), 200_000);
    }

    #[test]
    fn empty_and_repeated() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.record(42, 0);
        assert_eq!(h.count(), 0);
        h.record(42, 3);
        h.record(1_000_000, 1);
        assert_eq!(h.quantile(0.5), Some(42));
        assert_eq!(h.quantile(0.75), Some(42));
        assert_eq!(h.quantile(1.0), Some(1_000_000));
    }
}
