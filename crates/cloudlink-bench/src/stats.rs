//! Latency histograms and medians: the only statistics the report needs.
//!
//! Each receiving client keeps its own histogram of delivery latencies, so no
//! shared counter is touched per message, and every message is recorded (no
//! sampling to keep memory bounded: a histogram is a fixed ~15 KB however many
//! messages arrive). Buckets are logarithmic with 32 steps per power of two,
//! which puts every percentile within about 3% of the true value.

/// log2 of the number of buckets per power of two.
const SUB_BITS: u32 = 5;
/// Buckets per power of two; values below this are kept exactly.
const SUB: usize = 1 << SUB_BITS;
/// Enough groups for any `u64` value.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Empty until the first value, so clients that never record cost nothing.
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    /// Counts one value (microseconds).
    pub fn record(&mut self, micros: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[index(micros)] += 1;
        self.total += 1;
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The value (microseconds) below which `p` % of the recorded values lie; `None` if empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(middle(i));
            }
        }
        None
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (shift as usize + 1) * SUB + ((v >> shift) as usize & (SUB - 1))
}

/// The middle of bucket `i`, the value reported for everything in it.
fn middle(i: usize) -> f64 {
    if i < SUB {
        return i as f64;
    }
    let shift = (i / SUB - 1) as u32;
    let low = ((SUB + i % SUB) as u64) << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

/// The median of `values` (the upper one for an even count); `None` if empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_and_large_ones_close() {
        let mut h = Histogram::default();
        for v in 0..=20 {
            h.record(v);
        }
        assert_eq!(h.total, 21);
        assert_eq!(h.percentile(50.0), Some(10.0));
        assert_eq!(h.percentile(100.0), Some(20.0));
        let mut big = Histogram::default();
        for v in 1..=100_000u64 {
            big.record(v);
        }
        for (p, want) in [(50.0, 50_000.0), (99.0, 99_000.0)] {
            let got = big.percentile(p).unwrap();
            assert!((got - want).abs() / want < 0.035, "p{p}: {got} vs {want}");
        }
        big.record(u64::MAX);
        assert!(big.percentile(100.0).unwrap() > 1e18);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(5);
        b.record(7);
        b.record(7);
        a.merge(&b);
        a.merge(&Histogram::default());
        assert_eq!(a.total, 3);
        assert_eq!(a.percentile(50.0), Some(7.0));
        assert_eq!(Histogram::default().percentile(50.0), None);
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
