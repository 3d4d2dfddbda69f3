//! Gateway-wide counters for `GET /stats`: totals and a log-bucketed latency histogram whose
//! buckets are atomics, so recording costs a few relaxed increments and no lock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How many buckets a [`LatencyHistogram`] has.
pub const BUCKETS: usize = 128;

/// Buckets of width 2^(1/4) over microseconds: bucket `i` holds the latencies `us` with
/// `floor(4 * log2(us + 1)) == i`, that is below [`upper_bound_micros`]`(i)` = 2^((i+1)/4) − 1 µs
/// (the last bucket also holds everything longer).
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    #[inline]
    pub fn record_micros(&self, us: u64) {
        let idx = (((us as f64) + 1.0).log2() * 4.0) as usize;
        self.buckets[idx.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every bucket's count since start (relaxed loads, bucket by bucket: a request recorded
    /// meanwhile may or may not be in). Two reads apart give the histogram of the interval.
    pub fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper bound of the bucket holding it.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (upper_bound_micros(i) / 1000.0 * 1000.0).round() / 1000.0;
            }
        }
        0.0
    }
}

/// The exclusive upper bound of bucket `i`, in microseconds: 2^((i+1)/4) − 1.
pub fn upper_bound_micros(i: usize) -> f64 {
    2f64.powf((i as f64 + 1.0) / 4.0) - 1.0
}

/// Totals since start, for `/stats`.
#[derive(Default)]
pub struct Stats {
    pub requests_total: AtomicU64,
    pub requests_success: AtomicU64,
    pub requests_failure: AtomicU64,
    pub rate_limited: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_active: AtomicI64,
    pub latency: LatencyHistogram,
}

impl Stats {
    #[inline]
    pub fn record_request(&self, success: bool, micros: u64) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if success {
            self.requests_success.fetch_add(1, Ordering::Relaxed);
        } else {
            self.requests_failure.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record_micros(micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let h = LatencyHistogram::default();
        for _ in 0..90 {
            h.record_micros(1_000);
        }
        for _ in 0..10 {
            h.record_micros(100_000);
        }
        let p50 = h.quantile_ms(0.5);
        let p99 = h.quantile_ms(0.99);
        assert!((1.0..1.2).contains(&p50), "{p50}");
        assert!((100.0..120.0).contains(&p99), "{p99}");
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn counts_follow_the_bucket_rule() {
        let h = LatencyHistogram::default();
        for us in [0, 1, 999, 1_000, 250_000, u64::MAX] {
            h.record_micros(us);
        }
        let counts = h.counts();
        assert_eq!(counts.iter().sum::<u64>(), 6);
        for us in [0u64, 1, 999, 1_000, 250_000] {
            // The bucket the rule names for `us` counted it, and `us` is below its bound.
            let i = (((us as f64) + 1.0).log2() * 4.0) as usize;
            assert!(counts[i] >= 1, "{us} µs in bucket {i}");
            assert!(
                (us as f64) < upper_bound_micros(i),
                "{us} µs < bound of {i}"
            );
            assert!(i == 0 || (us as f64) >= upper_bound_micros(i - 1));
        }
        assert_eq!(counts[BUCKETS - 1], 1, "overflow lands in the last bucket");
        assert_eq!(upper_bound_micros(3), 1.0);
    }
}
