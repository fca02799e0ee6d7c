//! Log-bucketed latency histograms: [`AtomicHistogram`] is recorded into from many tasks
//! without a lock, and drained once a second into a plain [`Histogram`] that answers
//! percentiles. Used by `warren-cli perf` for end-to-end and confirm latencies.
//!
//! Buckets follow the HdrHistogram layout with [`SUB_BUCKET_BITS`] bits of mantissa: values
//! below 2^(SUB_BUCKET_BITS+1) get a bucket each, and every power of two above that is split
//! into 2^SUB_BUCKET_BITS equal buckets. A reported value is the middle of its bucket, so it
//! is within 1/2^(SUB_BUCKET_BITS+1) (0.4 %) of the recorded one over the whole u64 range,
//! in a fixed 58 KiB per histogram. Written here rather than taken from the `hdrhistogram`
//! crate because recording must be lock-free across tasks (one relaxed `fetch_add`), which
//! that crate leaves to a mutex or per-thread recorders.

use std::sync::atomic::{AtomicU64, Ordering};

/// Mantissa bits kept per value: 7 gives 128 buckets per power of two.
pub const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Enough buckets for any u64: the last index is (65 - bits) * 2^bits - 1.
const BUCKETS: usize = ((65 - SUB_BUCKET_BITS) as usize) << SUB_BUCKET_BITS;

/// The bucket a value falls in.
fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB_BUCKETS {
        return value as usize;
    }
    let magnitude = 63 - u64::from(value.leading_zeros());
    let shift = magnitude - u64::from(SUB_BUCKET_BITS);
    let mantissa = value >> shift; // in [SUB_BUCKETS, 2 * SUB_BUCKETS)
    (shift * SUB_BUCKETS + mantissa) as usize
}

/// The smallest and largest value of a bucket.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * SUB_BUCKETS {
        return (index, index);
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index - shift * SUB_BUCKETS;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// The value reported for a bucket: its middle.
fn bucket_value(index: usize) -> u64 {
    let (low, high) = bucket_bounds(index);
    low + (high - low) / 2
}

/// A histogram owned by one task: merge, clear, and percentiles.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest recorded value (exact), if any.
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// The largest recorded value (exact), if any.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The mean of the recorded values (exact), if any.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value at percentile `p` (0..=100) by nearest rank: the smallest recorded value
    /// that at least `p` % of the values are less than or equal to, to the histogram's
    /// precision and never outside [min, max]. `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let p = p.clamp(0.0, 100.0);
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let value = bucket_value(index);
                // Exact at the ends; a min/max lagging a concurrent drain is not trusted.
                return Some(if self.min <= self.max {
                    value.clamp(self.min, self.max)
                } else {
                    value
                });
            }
        }
        Some(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }
}

/// A histogram that any number of tasks record into concurrently. Its contents move into a
/// [`Histogram`] with [`drain_into`](AtomicHistogram::drain_into); a value recorded during a
/// drain lands in this drain or the next one, never in neither.
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicHistogram {
    pub fn new() -> AtomicHistogram {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        // Relaxed: the counts are statistics, read after a drain, and order with nothing.
        self.counts[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.min.fetch_min(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// Moves everything recorded since the last drain into `into` (added to what it holds).
    pub fn drain_into(&self, into: &mut Histogram) {
        let mut drained = 0;
        for (slot, mine) in into.counts.iter_mut().zip(self.counts.iter()) {
            // Most buckets are empty: a load is cheaper than a swap on them.
            if mine.load(Ordering::Relaxed) != 0 {
                let n = mine.swap(0, Ordering::Relaxed);
                *slot += n;
                drained += n;
            }
        }
        into.total += drained;
        into.sum += u128::from(self.sum.swap(0, Ordering::Relaxed));
        // A value recorded between the count swaps and these may leave its min/max for the
        // next drain; `percentile` copes with a min/max that lags its counts.
        into.min = into.min.min(self.min.swap(u64::MAX, Ordering::Relaxed));
        into.max = into.max.max(self.max.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        for v in 0..(2 * SUB_BUCKETS) {
            assert_eq!(bucket_bounds(bucket_of(v)), (v, v));
        }
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_contains_it() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for probe in [v - 1, v, v + 1, v * 2 - 1, v + v / 3] {
                let (low, high) = bucket_bounds(bucket_of(probe));
                assert!(
                    low <= probe && probe <= high,
                    "{probe} not in [{low}, {high}]"
                );
                // Precision: a bucket is at most 1/128 of its lower bound wide.
                assert!(
                    (high - low) <= low / SUB_BUCKETS,
                    "bucket of {probe} too wide"
                );
            }
            v = v.saturating_mul(3).saturating_add(7);
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
        let (_, high) = bucket_bounds(bucket_of(u64::MAX));
        assert_eq!(high, u64::MAX);
    }

    #[test]
    fn buckets_are_contiguous_and_increasing() {
        for index in 1..BUCKETS {
            let (_, previous_high) = bucket_bounds(index - 1);
            let (low, _) = bucket_bounds(index);
            assert_eq!(low, previous_high + 1, "gap before bucket {index}");
        }
    }

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(1000));
        assert_eq!(h.mean(), Some(500.5));
        for (p, exact) in [(50.0, 500.0), (95.0, 950.0), (99.0, 990.0), (99.9, 999.0)] {
            let got = h.percentile(p).unwrap() as f64;
            assert!(
                (got - exact).abs() <= exact / 256.0 + 1.0,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), Some(1000));
        assert_eq!(h.percentile(0.0), Some(1));
    }

    #[test]
    fn a_single_outlier_shows_only_in_the_top_percentiles() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(1_000_000); // 1 ms
        }
        h.record(500_000_000); // 500 ms
        let p99 = h.percentile(99.0).unwrap();
        assert!((995_000..=1_005_000).contains(&p99), "p99 {p99}");
        assert_eq!(h.percentile(99.95), Some(500_000_000));
        assert_eq!(h.max(), Some(500_000_000));
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.mean(), None);
    }

    #[test]
    fn atomic_drains_move_every_value_once() {
        let atomic = AtomicHistogram::new();
        let mut total = Histogram::new();
        for v in [3, 5_000, 7_000_000] {
            atomic.record(v);
        }
        atomic.drain_into(&mut total);
        atomic.drain_into(&mut total); // nothing new
        assert_eq!(total.count(), 3);
        assert_eq!(total.min(), Some(3));
        assert_eq!(total.max(), Some(7_000_000));
        atomic.record(1);
        let mut interval = Histogram::new();
        atomic.drain_into(&mut interval);
        assert_eq!(interval.count(), 1);
        total.merge(&interval);
        assert_eq!(total.count(), 4);
        assert_eq!(total.min(), Some(1));
        interval.clear();
        assert_eq!(interval.percentile(50.0), None);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let atomic = std::sync::Arc::new(AtomicHistogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let atomic = atomic.clone();
                std::thread::spawn(move || {
                    for v in 0..10_000u64 {
                        atomic.record(v * (t + 1));
                    }
                })
            })
            .collect();
        let mut total = Histogram::new();
        while !threads.iter().all(|t| t.is_finished()) {
            atomic.drain_into(&mut total);
        }
        for t in threads {
            t.join().unwrap();
        }
        atomic.drain_into(&mut total);
        assert_eq!(total.count(), 40_000);
        assert_eq!(total.max(), Some(9_999 * 4));
    }
}
