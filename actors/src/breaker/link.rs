//! The data-plane side of the breaker: what an upstream snapshot carries when its breaker is
//! enabled, and how a request outcome reaches the `BreakerActor`. Outcomes are counted in the
//! backend's atomics; only edges become messages, sent with `try_send` (never awaited), so the
//! request path takes no lock and makes no round trip.
//!
//! A trip is reported by the first failure at or past `failureThreshold` that finds no report
//! pending (a per-backend flag the actor clears when it handles the event). So the actor sees
//! one event per trip however many workers fail at once, and an event dropped by a full mailbox
//! (counted in `gogate_actor_messages_dropped_total{actor="breaker"}`) is sent again by the
//! next failure instead of being lost for good.

use super::actor::{BreakerActor, ProbeCompleted, ThresholdCrossed};
use super::machine::BreakerSettings;
use crate::backend::state::{ActiveGuard, BreakerPosition};
use crate::snapshot::UpstreamSnapshot;
use actix::Addr;
use prometheus::IntCounter;
use std::sync::Arc;

/// The breaker of an upstream as the data plane sees it (`None` in the snapshot = disabled).
#[derive(Clone)]
pub struct BreakerLink {
    pub actor: Addr<BreakerActor>,
    pub settings: BreakerSettings,
    /// Events the actor's full mailbox refused.
    pub dropped: IntCounter,
}

impl UpstreamSnapshot {
    /// Records the outcome of the request `guard` holds (failures: connect errors, upstream
    /// timeouts, 5xx; the caller decides) and feeds the breaker.
    #[inline]
    pub fn record_outcome(&self, guard: &ActiveGuard, success: bool) {
        let backend = guard.backend();
        let consecutive = backend.record_outcome(success);
        let Some(link) = &self.breaker else { return };
        if guard.is_probe() {
            // Half-open probes are few (at most successThreshold at a time): report each. A
            // dropped one leaves its permit free, so the next probe reports instead.
            let sent = link.actor.try_send(ProbeCompleted {
                backend: Arc::clone(backend),
                settings: link.settings,
                success,
            });
            if sent.is_err() {
                link.dropped.inc();
            }
        } else if !success
            && consecutive >= link.settings.failure_threshold
            && backend.breaker() == BreakerPosition::Closed
            && backend.claim_trip_report()
        {
            let sent = link.actor.try_send(ThresholdCrossed {
                backend: Arc::clone(backend),
                settings: link.settings,
            });
            if sent.is_err() {
                backend.release_trip_report();
                link.dropped.inc();
            }
        }
    }

    /// Would a backend be available but for its breaker (open, or half-open with every probe
    /// permit taken)? Tells "circuit open" from "no healthy backend" when nothing was picked.
    pub fn breaker_blocked(&self) -> bool {
        self.breaker.is_some()
            && self
                .backends
                .iter()
                .any(|b| b.available() && b.breaker() != BreakerPosition::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::state::{BackendState, Source};
    use crate::balance::Balancer;
    use crate::breaker::machine::BreakerSettings;
    use crate::snapshot::PoolSettings;
    use gogate_config::{LbAlgorithm, TcpPoolConfig, TimeoutsConfig};
    use std::time::Duration;

    fn upstream(breaker: Option<BreakerLink>) -> UpstreamSnapshot {
        let backends = vec![
            BackendState::new("default", "127.0.0.1:1", 1, Source::Static),
            BackendState::new("default", "127.0.0.1:2", 1, Source::Static),
        ];
        UpstreamSnapshot {
            name: "default".into(),
            balancer: Balancer::new(LbAlgorithm::RoundRobin, &[1, 1]),
            backends,
            timeouts: TimeoutsConfig::default(),
            retry_attempts: 1,
            pool: PoolSettings::new(&TcpPoolConfig::default(), &TimeoutsConfig::default()),
            breaker,
        }
    }

    fn link() -> BreakerLink {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        BreakerLink {
            actor: BreakerActor::start_bounded(&log),
            settings: BreakerSettings {
                failure_threshold: 2,
                success_threshold: 2,
                timeout: Duration::from_secs(60),
            },
            dropped: IntCounter::new("dropped", "test").expect("counter"),
        }
    }

    #[actix_rt::test]
    async fn half_open_backend_is_picked_only_with_a_probe_permit() {
        let up = upstream(Some(link()));
        up.backends[0].set_breaker(BreakerPosition::HalfOpen);
        let mut probes = Vec::new();
        let mut others = Vec::new();
        for _ in 0..8 {
            let (i, g) = up.acquire(&[]).expect("backend 1 is always there");
            if i == 0 {
                assert!(g.is_probe());
                probes.push(g);
            } else {
                assert!(!g.is_probe());
                others.push(g);
            }
        }
        assert_eq!(probes.len(), 2, "successThreshold concurrent probes");
        assert_eq!(others.len(), 6, "the rest fail over");
        probes.pop();
        let (i, g) = up.acquire(&[1]).expect("a freed permit is taken again");
        assert!(i == 0 && g.is_probe());
        // Nothing but the probe-saturated backend left: the breaker is what blocks.
        assert!(up.acquire(&[1]).is_none());
        assert!(up.breaker_blocked());
    }

    #[actix_rt::test]
    async fn open_backend_is_skipped_and_blocks_only_when_enabled() {
        let up = upstream(Some(link()));
        up.backends[0].set_breaker(BreakerPosition::Open);
        for _ in 0..4 {
            assert_eq!(up.acquire(&[]).map(|(i, _)| i), Some(1));
        }
        assert!(up.acquire(&[1]).is_none() && up.breaker_blocked());
        let disabled = upstream(None);
        assert!(!disabled.breaker_blocked());
        assert!(disabled.acquire(&[]).is_some_and(|(_, g)| !g.is_probe()));
    }

    #[actix_rt::test]
    async fn the_failure_landing_on_the_threshold_opens_the_breaker() {
        let up = upstream(Some(link()));
        let (i, guard) = up.acquire(&[]).expect("a backend");
        up.record_outcome(&guard, false);
        up.record_outcome(&guard, false);
        let b = &up.backends[i];
        for _ in 0..100 {
            if b.breaker() == BreakerPosition::Open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the breaker did not open");
    }

    #[actix_rt::test]
    async fn a_trip_dropped_by_a_full_mailbox_is_reported_by_the_next_failure() {
        let up = upstream(Some(link()));
        let link = up.breaker.as_ref().expect("breaker enabled");
        let (i, guard) = up.acquire(&[]).expect("a backend");
        let b = &up.backends[i];
        // Fill the mailbox while the actor cannot run (this task does not yield), with events
        // that change nothing (the other backend has no failures).
        let other = Arc::clone(&up.backends[1 - i]);
        let mut queued = 0;
        while link
            .actor
            .try_send(ThresholdCrossed {
                backend: Arc::clone(&other),
                settings: link.settings,
            })
            .is_ok()
        {
            queued += 1;
            assert!(queued < 100_000, "the breaker mailbox is bounded");
        }
        up.record_outcome(&guard, false);
        up.record_outcome(&guard, false);
        assert_eq!(
            link.dropped.get(),
            1,
            "the trip at the threshold was dropped"
        );
        // Let the actor drain its mailbox: the trip is lost so far.
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(b.breaker(), BreakerPosition::Closed);
        // The next failure past the threshold reports again.
        up.record_outcome(&guard, false);
        for _ in 0..100 {
            if b.breaker() == BreakerPosition::Open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the breaker never opened after its trip was dropped");
    }

    #[actix_rt::test]
    async fn failures_past_the_threshold_queue_one_event() {
        let up = upstream(Some(link()));
        let (i, guard) = up.acquire(&[]).expect("a backend");
        for _ in 0..50 {
            up.record_outcome(&guard, false);
        }
        let link = up.breaker.as_ref().expect("breaker enabled");
        assert_eq!(link.dropped.get(), 0);
        let b = &up.backends[i];
        assert!(
            !b.claim_trip_report(),
            "one report is pending, not one per failure"
        );
        b.release_trip_report();
        for _ in 0..100 {
            if b.breaker() == BreakerPosition::Open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the breaker did not open");
    }
}
