//! Properties of the pure logic, checked over generated inputs (proptest): the balancers, the
//! token bucket and the reload diff. Each property states what must hold for *every* input, not
//! for the handful of cases the unit tests pick.

use gogate_actors::balance::{smooth_schedule, Balancer};
use gogate_actors::dns::DnsTable;
use gogate_actors::ratelimit::{BucketShape, TokenBucket};
use gogate_actors::reload::diff::{desired_backends, plan_backends, Registration};
use gogate_config::LbAlgorithm;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const SEC: u64 = 1_000_000_000;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Round robin with every backend eligible: k rounds give each backend exactly k picks, and
    /// the first pick is the first backend.
    #[test]
    fn round_robin_is_fair(n in 1usize..20, rounds in 1usize..10) {
        let b = Balancer::new(LbAlgorithm::RoundRobin, &vec![1; n]);
        let mut counts = vec![0usize; n];
        let mut first = None;
        for _ in 0..n * rounds {
            let i = b.pick(n, |_| true, |_| 0).expect("all eligible");
            first.get_or_insert(i);
            counts[i] += 1;
        }
        prop_assert_eq!(first, Some(0));
        prop_assert!(counts.iter().all(|&c| c == rounds), "{:?}", counts);
    }

    /// Whatever the algorithm, only eligible backends are picked, and `None` means none was.
    #[test]
    fn only_eligible_backends_are_picked(
        weights in prop::collection::vec(0u32..20, 1..12),
        eligible in prop::collection::vec(any::<bool>(), 12),
        loads in prop::collection::vec(0i64..50, 12),
        algo in 0usize..3,
    ) {
        let n = weights.len();
        let algorithm = [
            LbAlgorithm::RoundRobin,
            LbAlgorithm::WeightedRoundRobin,
            LbAlgorithm::LeastConnections,
        ][algo];
        let b = Balancer::new(algorithm, &weights);
        // The snapshot never offers a zero-weight backend (`BackendState::eligible`).
        let ok = |i: usize| eligible[i] && weights[i] > 0;
        let any = (0..n).any(ok);
        for _ in 0..3 * n {
            match b.pick(n, ok, |i| loads[i]) {
                Some(i) => {
                    prop_assert!(i < n && ok(i), "picked {}", i);
                    if algorithm == LbAlgorithm::LeastConnections {
                        let best = (0..n).filter(|&j| ok(j)).map(|j| loads[j]).min();
                        prop_assert_eq!(Some(loads[i]), best);
                    }
                }
                None => prop_assert!(!any, "nothing picked though one was eligible"),
            }
        }
    }

    /// One cycle of smooth weighted round robin picks each backend in proportion to its weight
    /// (exactly, after dividing by the gcd), never a zero-weight one, and spreads the picks: no
    /// backend waits much longer than its share between two picks.
    #[test]
    fn weighted_schedule_is_proportional_and_smooth(
        weights in prop::collection::vec(0u32..30, 1..8),
    ) {
        let schedule = smooth_schedule(&weights);
        let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
        if g == 0 {
            prop_assert!(schedule.is_empty());
            return Ok(());
        }
        let total: u32 = weights.iter().map(|w| w / g).sum();
        prop_assert_eq!(schedule.len(), total as usize);
        for (i, w) in weights.iter().enumerate() {
            let picks = schedule.iter().filter(|&&s| s as usize == i).count();
            prop_assert_eq!(picks as u32, w / g, "backend {} of {:?}", i, weights);
        }
        // Smoothness: in every prefix, each backend's picks stay within two of its exact share
        // (below one does not hold for three or more backends, e.g. 5:13:13).
        let mut seen = vec![0i64; weights.len()];
        for (step, &s) in schedule.iter().enumerate() {
            seen[s as usize] += 1;
            for (i, w) in weights.iter().enumerate() {
                let share = (step as i64 + 1) * i64::from(w / g);
                let diff = (seen[i] * i64::from(total) - share).abs();
                prop_assert!(diff < 2 * i64::from(total), "prefix {} of {:?}", step, schedule);
            }
        }
    }

    /// A full bucket admits exactly `burst` requests at one instant, then refuses.
    #[test]
    fn a_full_bucket_admits_exactly_its_burst(rate in 0.5f64..10_000.0, burst in 1u32..500) {
        let shape = BucketShape::new(rate, burst);
        let bucket = TokenBucket::new();
        let now = 10 * SEC;
        for k in 0..burst {
            let d = bucket.try_take(&shape, now);
            prop_assert!(d.allowed, "take {} of {}", k, burst);
            prop_assert_eq!(d.remaining, burst - k - 1);
        }
        let refused = bucket.try_take(&shape, now);
        prop_assert!(!refused.allowed);
        prop_assert!(refused.retry_after_secs >= 1);
    }

    /// Over any sequence of requests, what is admitted never exceeds the burst plus what the
    /// rate refilled in the meantime; and a refused client that waits its `Retry-After` is
    /// admitted.
    #[test]
    fn a_bucket_never_admits_more_than_burst_plus_refill(
        rate in 1.0f64..1000.0,
        burst in 1u32..50,
        gaps in prop::collection::vec(0u64..50_000_000, 1..400),
    ) {
        let shape = BucketShape::new(rate, burst);
        let bucket = TokenBucket::new();
        let start = SEC;
        let mut now = start;
        let mut allowed = 0u64;
        for gap in gaps {
            now += gap;
            let d = bucket.try_take(&shape, now);
            prop_assert!(d.remaining <= burst);
            if d.allowed {
                allowed += 1;
            } else {
                // Honest Retry-After: a client that waits that long gets a token.
                now += d.retry_after_secs * SEC;
                let again = bucket.try_take(&shape, now);
                prop_assert!(again.allowed, "refused again after Retry-After {}", d.retry_after_secs);
                allowed += 1;
            }
        }
        let elapsed = (now - start) as f64 / SEC as f64;
        let bound = f64::from(burst) + elapsed * rate + 1.0;
        prop_assert!((allowed as f64) <= bound, "allowed {} > {}", allowed, bound);
    }

    /// Applying the reload plan to the current backends gives exactly the desired set: new ids
    /// added, missing ones removed, kept ones reweighted only when their weight changed; a host
    /// name is one backend per resolved address, whatever the answer was and becomes.
    #[test]
    fn the_reload_plan_reaches_the_desired_backends(
        before in backends_strategy(),
        after in backends_strategy(),
        registered in prop::collection::vec((0usize..2, 1u16..12, 1u32..5), 0..6),
        answer_before in prop::collection::btree_set(1u8..8, 0..4),
        answer_after in prop::collection::btree_set(1u8..8, 0..4),
    ) {
        let regs: BTreeMap<String, Registration> = registered
            .iter()
            .enumerate()
            .map(|(i, (up, port, w))| {
                (format!("r{i}"), Registration {
                    name: ["api", "nope"][*up].to_string(),
                    addr: format!("127.0.0.1:{}", 9000 + port),
                    weight: *w,
                })
            })
            .collect();
        let old = config(&before);
        let new = config(&after);
        let dns = |answer: &BTreeSet<u8>| {
            let mut t = DnsTable::default();
            let epoch = t.begin();
            let addrs = answer
                .iter()
                .map(|o| std::net::SocketAddr::from(([10, 0, 0, *o], 8080)))
                .collect();
            t.apply(NAME, epoch, Ok(addrs), std::time::Instant::now());
            t
        };
        let (dns_before, dns_after) = (dns(&answer_before), dns(&answer_after));
        let current: BTreeMap<String, u32> = desired_backends(&old, &regs, &dns_before)
            .into_iter()
            .map(|(id, d)| (id, d.weight))
            .collect();
        let desired = desired_backends(&new, &regs, &dns_after);
        // The name is one backend per resolved address (none while it never resolved).
        let resolved = desired.values().filter(|d| d.hostname.as_deref() == Some(NAME)).count();
        prop_assert_eq!(resolved, answer_after.len());
        let plan = plan_backends(&current, &desired);
        let mut applied = current.clone();
        for id in &plan.remove {
            prop_assert!(applied.remove(id).is_some());
        }
        for (id, w) in &plan.reweight {
            let old_w = applied.insert(id.clone(), *w);
            prop_assert!(old_w.is_some_and(|o| o != *w));
        }
        for id in &plan.add {
            prop_assert!(applied.insert(id.clone(), desired[id].weight).is_none());
        }
        let want: BTreeMap<String, u32> =
            desired.iter().map(|(id, d)| (id.clone(), d.weight)).collect();
        prop_assert_eq!(&applied, &want);
        prop_assert_eq!(
            plan.keep + plan.reweight.len() + plan.add.len(),
            desired.len()
        );
        // A registration at a static backend's address is that backend (no duplicate), and a
        // registration for an unknown upstream joins the default one.
        let ids: BTreeSet<&String> = desired.keys().collect();
        prop_assert_eq!(ids.len(), desired.len());
        prop_assert!(desired.values().all(|d| d.upstream == "default" || d.upstream == "api"));
    }
}

/// Backends of the default upstream and of upstream `api`: (port, weight) lists.
type Backends = (Vec<(u16, u32)>, Vec<(u16, u32)>);

fn backends_strategy() -> impl Strategy<Value = Backends> {
    let list = || {
        prop::collection::btree_map(1u16..12, 0u32..5, 1..5)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>())
    };
    (list(), list())
}

/// A backend given by host name, in upstream `api` of every generated config.
const NAME: &str = "svc.test:8080";

fn config((default, api): &Backends) -> gogate_config::Config {
    let list = |l: &[(u16, u32)]| {
        l.iter()
            .map(|(p, w)| format!("{{addr: \"127.0.0.1:{}\", weight: {w}}}", 9000 + p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let yaml = format!(
        "server:\n  backends: [{}]\n  health: {{enabled: false}}\nupstreams:\n  api:\n    backends: [{}, {{addr: \"{NAME}\", weight: 2}}]\n",
        list(default),
        list(api)
    );
    gogate_config::load_str(&yaml, None).expect("generated config is valid")
}
