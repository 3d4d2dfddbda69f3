//! Per-key token buckets (`keyBy: ip` / `header:NAME`) in a sharded, bounded map. A key is
//! hashed once with the limiter's SipHash (random keys, so clients cannot aim at one shard or
//! one hash chain); some middle bits pick one of up to 64 shards, and the hash itself is the map
//! key (no client bytes are stored, so a long header value costs 8 bytes). A shard's mutex is
//! held only to find or insert the bucket; tokens are then taken lock-free on the bucket.
//!
//! Bounded: the shards' capacities add up to `maxKeys`. A full shard first drops its full
//! buckets (a full bucket equals a fresh one, so forgetting it changes no decision); if that
//! frees nothing it drops the most idle eighth (earliest "full again" time), so the cost of an
//! eviction is spread over many inserts and a flood of new keys cannot grow memory.

use super::bucket::TokenBucket;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

const MAX_SHARDS: usize = 64;
/// Fewest keys one shard is sized for (small `maxKeys` get fewer shards).
const MIN_SHARD_KEYS: usize = 64;

/// The map key is already a SipHash output: use it as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type BucketMap = HashMap<u64, Arc<TokenBucket>, BuildHasherDefault<PassThrough>>;

struct Shard {
    map: BucketMap,
    cap: usize,
}

impl Shard {
    /// Makes room for one more key (see the module docs).
    fn evict(&mut self, now: u64) {
        self.map.retain(|_, b| !b.is_full(now));
        if self.map.len() < self.cap {
            return;
        }
        let keep = self.cap - self.cap / 8 - 1;
        let drop = self.map.len() - keep;
        // Exactly the `drop` most idle keys go (ties broken arbitrarily, never all of them).
        let mut ages: Vec<(u64, u64)> = self.map.iter().map(|(k, b)| (b.full_at(), *k)).collect();
        ages.select_nth_unstable(drop - 1);
        for (_, key) in &ages[..drop] {
            self.map.remove(key);
        }
    }
}

/// Buckets by key, at most `max_keys` of them.
pub struct KeyedBuckets {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl KeyedBuckets {
    pub fn new(max_keys: u32) -> Self {
        let max_keys = (max_keys as usize).max(1);
        // A power of two that leaves every shard room for at least MIN_SHARD_KEYS keys: hashing
        // spreads keys unevenly, and a tiny shard would evict a busy key long before the map
        // as a whole reaches `max_keys`.
        let n = MAX_SHARDS.min(1 << (max_keys / MIN_SHARD_KEYS).max(1).ilog2());
        let shards = (0..n)
            .map(|i| {
                let cap = max_keys / n + usize::from(i < max_keys % n);
                Mutex::new(Shard {
                    map: BucketMap::default(),
                    cap,
                })
            })
            .collect();
        KeyedBuckets {
            shards,
            hasher: RandomState::new(),
        }
    }

    /// The key's hash under this map's secret SipHash keys.
    #[inline]
    pub fn hash<K: Hash>(&self, key: K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The bucket for `hash`, created full if new.
    #[inline]
    pub fn bucket(&self, hash: u64, now: u64) -> Arc<TokenBucket> {
        let mut shard = self.shard(hash);
        if let Some(b) = shard.map.get(&hash) {
            return Arc::clone(b);
        }
        if shard.map.len() >= shard.cap {
            shard.evict(now);
        }
        let b = Arc::new(TokenBucket::new());
        shard.map.insert(hash, Arc::clone(&b));
        b
    }

    /// The bucket for `hash` if one is held, creating none (`/explain`).
    pub fn get(&self, hash: u64) -> Option<Arc<TokenBucket>> {
        self.shard(hash).map.get(&hash).cloned()
    }

    #[inline]
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // Middle bits: the map itself uses the low bits (slot) and the top 7 (tag).
        let idx = (hash >> 32) as usize & (self.shards.len() - 1);
        self.shards[idx]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::bucket::BucketShape;
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn same_key_same_bucket_different_keys_apart() {
        let shape = BucketShape::new(1.0, 1);
        let m = KeyedBuckets::new(100);
        let (a, b) = (m.hash("a"), m.hash("b"));
        assert!(m.bucket(a, S).try_take(&shape, S).allowed);
        assert!(!m.bucket(a, S).try_take(&shape, S).allowed);
        assert!(m.bucket(b, S).try_take(&shape, S).allowed);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_flood_of_keys_stays_within_max_keys() {
        let shape = BucketShape::new(1.0, 10);
        for max in [1u32, 7, 64, 1000] {
            let m = KeyedBuckets::new(max);
            for i in 0..20_000u32 {
                // Every bucket stays in use (never full again), the worst case for eviction.
                m.bucket(m.hash(i), S).try_take(&shape, S);
                assert!(m.len() <= max as usize, "max {max}: {} keys", m.len());
            }
            assert!(
                m.len() as u32 >= max / 2,
                "max {max}: only {} keys",
                m.len()
            );
        }
    }

    #[test]
    fn full_buckets_are_evicted_before_busy_ones() {
        let shape = BucketShape::new(1.0, 1);
        let m = KeyedBuckets::new(1);
        let busy = m.hash("busy");
        assert!(m.bucket(busy, 0).try_take(&shape, 0).allowed);
        // A second key while "busy" still refills: the bound wins and "busy" goes. When "busy"
        // returns, the other key's bucket is full (unused) and is the one dropped.
        m.bucket(m.hash("other"), S / 2);
        assert_eq!(m.len(), 1);
        let b = m.bucket(busy, S / 2);
        assert!(b.try_take(&shape, S / 2).allowed, "evicted key starts full");
    }

    #[test]
    fn idle_keys_make_room_without_touching_recent_ones() {
        let shape = BucketShape::new(1.0, 5);
        let m = KeyedBuckets::new(64); // one shard of 64 keys
        let keys: Vec<u64> = (0..64u32).map(|i| m.hash(i)).collect();
        for k in &keys {
            m.bucket(*k, 0).try_take(&shape, 0);
        }
        // Ten seconds later every bucket is full: new keys replace them freely.
        for i in 64..128u32 {
            m.bucket(m.hash(i), 10 * S);
        }
        assert!(m.len() <= 64);
    }
}
