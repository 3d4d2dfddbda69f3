//! One token bucket in one `AtomicU64`, so any number of worker threads can take tokens with a
//! compare-and-swap loop and no lock. The bucket is stored GCRA-style as its *theoretical
//! arrival time* (`tat`): the instant at which it would be full again. That single number holds
//! the whole state: tokens = (`burst` × interval − (`tat` − now)) / interval, refill is
//! continuous (time passing is the refill), and a bucket whose `tat` lies in the past is full,
//! which is why a fresh bucket (`tat` = 0) starts full and an idle one can be forgotten without
//! losing anything. Time is injected as nanoseconds since the limiter's epoch.
//!
//! ```text
//!   take one token at `now`:  next = max(tat, now) + interval
//!                             allowed  ⇔ next − now ≤ burst × interval   (then tat := next)
//!                             rejected ⇒ retry after next − now − burst × interval
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The shape of a bucket: refill interval per token and capacity. Copied into every limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketShape {
    /// Nanoseconds per token (1 / rate), at least 1.
    interval: u64,
    /// Bucket size in tokens.
    burst: u32,
    /// `burst × interval`: how far `tat` may run ahead of now.
    capacity: u64,
}

impl BucketShape {
    /// `rate` tokens per second (validated > 0), `burst` ≥ 1 tokens.
    pub fn new(rate: f64, burst: u32) -> Self {
        // `as` saturates: absurdly slow rates become "one token per ~584 years".
        let interval = ((NANOS_PER_SEC as f64) / rate).round().max(1.0) as u64;
        let burst = burst.max(1);
        BucketShape {
            interval,
            burst,
            capacity: interval.saturating_mul(u64::from(burst)),
        }
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds per token.
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }

    /// Tokens left when the bucket's `tat` is `tat` at `now`.
    fn remaining(&self, tat: u64, now: u64) -> u32 {
        let used = tat.saturating_sub(now);
        let left = self.capacity.saturating_sub(used) / self.interval;
        u32::try_from(left).unwrap_or(u32::MAX).min(self.burst)
    }
}

/// The answer to one "may I?": the quota numbers for the `RateLimit-*` headers either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Bucket size (`RateLimit-Limit`).
    pub limit: u32,
    /// Tokens left after this decision (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Whole seconds until the bucket is full again (`RateLimit-Reset`), rounded up.
    pub reset_secs: u64,
    /// Whole seconds until a token is available, at least 1 (`Retry-After`); 0 when allowed.
    pub retry_after_secs: u64,
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SEC)
}

/// A lock-free token bucket (see the module docs for the encoding).
#[derive(Debug, Default)]
pub struct TokenBucket {
    tat: AtomicU64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new() -> Self {
        TokenBucket::default()
    }

    /// Takes one token at `now` (nanoseconds since the limiter's epoch) if there is one.
    #[inline]
    pub fn try_take(&self, shape: &BucketShape, now: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(shape.interval);
            let ahead = next - now;
            if ahead > shape.capacity {
                let wait = ahead - shape.capacity;
                return Decision {
                    allowed: false,
                    limit: shape.burst,
                    remaining: shape.remaining(tat, now),
                    reset_secs: ceil_secs(tat.saturating_sub(now)),
                    retry_after_secs: ceil_secs(wait).max(1),
                };
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Decision {
                        allowed: true,
                        limit: shape.burst,
                        remaining: shape.remaining(next, now),
                        reset_secs: ceil_secs(ahead),
                        retry_after_secs: 0,
                    }
                }
                Err(current) => tat = current,
            }
        }
    }

    /// Tokens the bucket holds at `now`, taking none (`/explain`).
    #[inline]
    pub fn available(&self, shape: &BucketShape, now: u64) -> u32 {
        shape.remaining(self.tat.load(Ordering::Relaxed), now)
    }

    /// Whether the bucket is full at `now` (it then equals a fresh bucket and may be dropped).
    #[inline]
    pub fn is_full(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }

    /// When the bucket will be full again (its `tat`); older = more idle.
    #[inline]
    pub fn full_at(&self) -> u64 {
        self.tat.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;
    const MS: u64 = 1_000_000;

    fn take_n(b: &TokenBucket, shape: &BucketShape, now: u64, n: usize) -> usize {
        (0..n).filter(|_| b.try_take(shape, now).allowed).count()
    }

    #[test]
    fn starts_full_and_allows_exactly_burst_at_once() {
        let shape = BucketShape::new(1.0, 5);
        let b = TokenBucket::new();
        let first = b.try_take(&shape, 10 * S);
        assert!(first.allowed);
        assert_eq!((first.limit, first.remaining), (5, 4));
        assert_eq!(take_n(&b, &shape, 10 * S, 10), 4);
        let no = b.try_take(&shape, 10 * S);
        assert!(!no.allowed);
        assert_eq!(no.remaining, 0);
    }

    #[test]
    fn refills_continuously_at_rate() {
        let shape = BucketShape::new(10.0, 2); // one token per 100 ms
        let b = TokenBucket::new();
        assert_eq!(take_n(&b, &shape, 0, 5), 2);
        assert!(!b.try_take(&shape, 99 * MS).allowed);
        assert!(b.try_take(&shape, 100 * MS).allowed);
        assert!(!b.try_take(&shape, 150 * MS).allowed);
        assert!(b.try_take(&shape, 200 * MS).allowed);
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let shape = BucketShape::new(100.0, 3);
        let b = TokenBucket::new();
        assert_eq!(take_n(&b, &shape, 0, 3), 3);
        // An hour idle refills 360000 tokens' worth, but the bucket holds 3.
        assert!(b.is_full(3600 * S));
        assert_eq!(take_n(&b, &shape, 3600 * S, 10), 3);
    }

    #[test]
    fn retry_after_and_reset_are_whole_seconds_rounded_up() {
        let shape = BucketShape::new(0.5, 2); // one token per 2 s
        let b = TokenBucket::new();
        let now = 100 * S;
        let a = b.try_take(&shape, now);
        assert_eq!((a.remaining, a.reset_secs, a.retry_after_secs), (1, 2, 0));
        let a = b.try_take(&shape, now);
        assert_eq!((a.remaining, a.reset_secs), (0, 4));
        let r = b.try_take(&shape, now + 500 * MS);
        assert!(!r.allowed);
        assert_eq!(r.retry_after_secs, 2, "1.5 s until a token rounds up to 2");
        assert_eq!(r.reset_secs, 4, "3.5 s until full rounds up to 4");
        // Fast buckets still say at least 1 second.
        let fast = BucketShape::new(1000.0, 1);
        let f = TokenBucket::new();
        assert!(f.try_take(&fast, 0).allowed);
        assert_eq!(f.try_take(&fast, 0).retry_after_secs, 1);
    }

    #[test]
    fn concurrent_takers_never_exceed_burst() {
        let shape = BucketShape::new(1e-3, 1000);
        let b = std::sync::Arc::new(TokenBucket::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || take_n(&b, &shape, S, 500))
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
