//! Load-balancing choice as pure logic over a backend list: which index gets the next request.
//! Shared counters are atomics, so every worker thread picks without a lock.
//!
//! - `round_robin`: rotates over eligible backends, starting with the first.
//! - `weighted_round_robin`: nginx's smooth weighted round robin, precomputed into one cycle at
//!   snapshot build time (5:1:1 gives A A B A C A A); an atomic cursor walks it. A slot whose
//!   backend is ineligible goes to the eligible backends by a weighted rotation of its own
//!   cursor, so their shares keep their weights and a pick costs at most two atomic increments
//!   and one pass over the backends, however long the cycle (a drained 10,000:1 backend used
//!   to make each pick walk up to 10,000 slots).
//! - `least_connections`: fewest active requests; ties rotate.

use gogate_config::LbAlgorithm;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Upper bound on a precomputed weighted schedule (weights are first divided by their gcd).
const MAX_SCHEDULE: usize = 1 << 16;

/// A balancer: the algorithm and one shared cursor (round-robin position, schedule slot, or
/// where least-connections ties start).
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    next: AtomicUsize,
    /// Weighted only: the rotation that gives an ineligible backend's slots to eligible ones.
    fallback: AtomicUsize,
}

#[derive(Debug)]
enum Kind {
    RoundRobin,
    Weighted {
        schedule: Vec<u32>,
        weights: Vec<u32>,
    },
    LeastConnections,
}

impl Balancer {
    pub fn new(algorithm: LbAlgorithm, weights: &[u32]) -> Self {
        let kind = match algorithm {
            LbAlgorithm::RoundRobin => Kind::RoundRobin,
            LbAlgorithm::WeightedRoundRobin => Kind::Weighted {
                schedule: smooth_schedule(weights),
                weights: weights.to_vec(),
            },
            LbAlgorithm::LeastConnections => Kind::LeastConnections,
        };
        Balancer {
            kind,
            next: AtomicUsize::new(0),
            fallback: AtomicUsize::new(0),
        }
    }

    /// Picks an index in `0..n` for which `eligible` holds; `load(i)` is the active count.
    /// `None` when no backend is eligible. Moves the cursor.
    #[inline]
    pub fn pick(
        &self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> i64,
    ) -> Option<usize> {
        self.walk(
            n,
            eligible,
            load,
            || self.next.fetch_add(1, Ordering::Relaxed),
            || self.fallback.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// What [`pick`](Self::pick) would answer now, without moving the cursor (`/explain`).
    pub fn peek(
        &self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> i64,
    ) -> Option<usize> {
        let (cursor, fallback) = (
            self.next.load(Ordering::Relaxed),
            self.fallback.load(Ordering::Relaxed),
        );
        self.walk(n, eligible, load, move || cursor, move || fallback)
    }

    /// The choice itself; `tick` yields the cursor's position (and, for a real pick, advances
    /// the shared one), `tick_fallback` likewise for the weighted fallback rotation, so a pick
    /// and a peek cannot disagree.
    #[inline]
    fn walk(
        &self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> i64,
        tick: impl FnOnce() -> usize,
        tick_fallback: impl FnOnce() -> usize,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        match &self.kind {
            Kind::RoundRobin => {
                let start = tick();
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            Kind::Weighted { schedule, weights } => {
                if schedule.is_empty() {
                    return None;
                }
                let i = schedule[tick() % schedule.len()] as usize;
                if i < n && eligible(i) {
                    return Some(i);
                }
                // The slot's backend may not take it: the eligible backends share it by weight,
                // in a rotation of its own, so over a cycle each still gets its weight's share.
                let weight = |k: usize| u64::from(weights.get(k).copied().unwrap_or(0));
                let total: u64 = (0..n).filter(|&k| eligible(k)).map(weight).sum();
                if total == 0 {
                    return None;
                }
                let mut point = tick_fallback() as u64 % total;
                for k in (0..n).filter(|&k| eligible(k)) {
                    let w = weight(k);
                    if point < w {
                        return Some(k);
                    }
                    point -= w;
                }
                None
            }
            Kind::LeastConnections => {
                let start = tick();
                let mut best: Option<(usize, i64)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !eligible(i) {
                        continue;
                    }
                    let l = load(i);
                    if best.is_none_or(|(_, bl)| l < bl) {
                        best = Some((i, l));
                    }
                }
                best.map(|(i, _)| i)
            }
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One full cycle of nginx's smooth weighted round robin: each step adds every weight to its
/// current value, picks the largest current, and subtracts the total from it.
pub fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    let mut w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let mut total: i64 = w.iter().sum();
    // Keep the schedule bounded: scale weights down proportionally (keeping every positive
    // weight at least 1) when one cycle would be too long.
    if total as usize > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        for x in w.iter_mut() {
            if *x > 0 {
                *x = ((*x as f64 / scale) as i64).max(1);
            }
        }
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(b: &Balancer, n: usize, count: usize, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..count)
            .filter_map(|_| b.pick(n, &eligible, |_| 0))
            .collect()
    }

    #[test]
    fn round_robin_starts_with_the_first_backend() {
        let b = Balancer::new(LbAlgorithm::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&b, 3, 6, |_| true), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn round_robin_skips_ineligible() {
        let b = Balancer::new(LbAlgorithm::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&b, 3, 4, |i| i != 1), vec![0, 2, 2, 0]);
        assert_eq!(b.pick(3, |_| false, |_| 0), None);
    }

    #[test]
    fn smooth_weighted_matches_nginx() {
        let b = Balancer::new(LbAlgorithm::WeightedRoundRobin, &[5, 1, 1]);
        assert_eq!(picks(&b, 3, 7, |_| true), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(picks(&b, 3, 7, |_| true), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_reduces_by_gcd_and_ignores_zero() {
        assert_eq!(smooth_schedule(&[10, 0, 10]), vec![0, 2]);
        assert!(smooth_schedule(&[0, 0]).is_empty());
        let big = smooth_schedule(&[10_000, 9_999, 1]);
        assert!(big.len() <= MAX_SCHEDULE + 3 && big.contains(&2));
    }

    #[test]
    fn weighted_skips_ineligible_keeping_proportions() {
        let b = Balancer::new(LbAlgorithm::WeightedRoundRobin, &[2, 1, 1]);
        let got = picks(&b, 3, 300, |i| i != 0);
        assert_eq!(got.iter().filter(|&&i| i == 1).count(), 150);
        assert_eq!(got.iter().filter(|&&i| i == 2).count(), 150);
    }

    #[test]
    fn an_ineligible_heavy_backend_s_slots_keep_the_others_weights() {
        // One cycle of the 10,000:3:1 schedule with the heavy backend out: its 10,000 slots go
        // to the others 3:1 by the fallback rotation, their own 3 + 1 slots directly.
        let b = Balancer::new(LbAlgorithm::WeightedRoundRobin, &[10_000, 3, 1]);
        let got = picks(&b, 3, 10_004, |i| i != 0);
        assert_eq!(got.len(), 10_004);
        assert_eq!(got.iter().filter(|&&i| i == 1).count(), 7_503);
        assert_eq!(got.iter().filter(|&&i| i == 2).count(), 2_501);
        assert_eq!(b.pick(3, |_| false, |_| 0), None);
    }

    #[test]
    fn peek_answers_the_next_pick_and_moves_nothing() {
        let load = [3i64, 1, 1];
        for algorithm in [
            LbAlgorithm::RoundRobin,
            LbAlgorithm::WeightedRoundRobin,
            LbAlgorithm::LeastConnections,
        ] {
            let b = Balancer::new(algorithm, &[3, 1, 2]);
            for round in 0..20 {
                let eligible = |i: usize| round % 3 != 0 || i != 0;
                let peeked = b.peek(3, eligible, |i| load[i]);
                assert_eq!(peeked, b.peek(3, eligible, |i| load[i]), "{algorithm:?}");
                assert_eq!(
                    peeked,
                    b.pick(3, eligible, |i| load[i]),
                    "{algorithm:?} {round}"
                );
            }
            assert_eq!(b.peek(3, |_| false, |_| 0), None);
        }
    }

    #[test]
    fn least_connections_prefers_idle_and_rotates_ties() {
        let b = Balancer::new(LbAlgorithm::LeastConnections, &[1, 1, 1]);
        let load = [5i64, 1, 1];
        let got: Vec<_> = (0..4)
            .filter_map(|_| b.pick(3, |_| true, |i| load[i]))
            .collect();
        assert_eq!(got, vec![1, 1, 2, 1]);
        assert_eq!(b.pick(3, |i| i == 0, |i| load[i]), Some(0));
    }
}
