//! The data-plane side of the breaker: what an upstream snapshot carries when its breaker is
//! enabled, and how a request outcome reaches the `BreakerActor`. Outcomes are counted in the
//! backend's atomics; only edges become messages, sent with `try_send` (never awaited), so the
//! request path takes no lock and makes no round trip.

use super::actor::{BreakerActor, ProbeCompleted, ThresholdCrossed};
use super::machine::BreakerSettings;
use crate::backend::state::{ActiveGuard, BreakerPosition};
use crate::snapshot::UpstreamSnapshot;
use actix::Addr;
use std::sync::Arc;

/// The breaker of an upstream as the data plane sees it (`None` in the snapshot = disabled).
#[derive(Clone)]
pub struct BreakerLink {
    pub actor: Addr<BreakerActor>,
    pub settings: BreakerSettings,
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
            // Half-open probes are few (at most successThreshold at a time): report each.
            let _ = link.actor.try_send(ProbeCompleted {
                backend: Arc::clone(backend),
                settings: link.settings,
                success,
            });
        } else if !success && consecutive == link.settings.failure_threshold {
            // Only the failure that lands exactly on the threshold reports, so the actor sees
            // one event per trip however many workers fail at once.
            let _ = link.actor.try_send(ThresholdCrossed {
                backend: Arc::clone(backend),
                settings: link.settings,
            });
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
