//! `BackendActor`: the single writer of one backend's lifecycle flags (drain, the health verdict;
//! the breaker verdict as that feature lands). It publishes by storing into the shared
//! [`BackendState`] atomics that the data plane reads, so a change is visible to the very next
//! request without a new snapshot.
//!
//! ```text
//!   in rotation ──StartDrain──▶ draining (no new requests; in-flight ones finish)
//!        ▲                         │
//!        └────────StopDrain────────┘
//! ```
//! Health: `ReportProbe` feeds a [`HealthTracker`] (its diagram is in `health::tracker`); only
//! a threshold crossing flips the published `healthy` flag and logs the transition.

use crate::backend::state::BackendState;
use crate::health::tracker::{HealthTracker, Thresholds, Transition};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::sync::Arc;

pub struct BackendActor {
    state: Arc<BackendState>,
    /// Applies the health thresholds to probe reports; its verdict is published to `state`.
    health: HealthTracker,
    log: Logger,
}

impl BackendActor {
    pub fn new(state: Arc<BackendState>, log: &Logger) -> Self {
        let log = log
            .new(slog::o!("backend" => state.addr.clone(), "upstream" => state.upstream.clone()));
        let health = HealthTracker::new(state.healthy());
        BackendActor { state, health, log }
    }
}

impl Actor for BackendActor {
    type Context = Context<Self>;
}

impl Supervised for BackendActor {}

/// Command: take the backend out of rotation (`true`) or put it back (`false`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetDraining(pub bool);

impl Handler<SetDraining> for BackendActor {
    type Result = ();

    fn handle(&mut self, msg: SetDraining, _: &mut Context<Self>) {
        if self.state.draining() == msg.0 {
            return;
        }
        self.state.set_draining(msg.0);
        if msg.0 {
            info!(self.log, "backend draining"; "active" => self.state.active());
        } else {
            info!(self.log, "backend back in rotation");
        }
    }
}

/// Command: stop the actor (its backend left the configuration).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl Handler<Retire> for BackendActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        // Not flagged draining: no published snapshot holds this backend any more, and a request
        // that took an older one just before the reload may still pick it (it would get a 503
        // when this was its snapshot's only backend).
        ctx.stop();
    }
}

/// Command: the outcome of one active health probe (sent by the `HealthActor`). Carries the
/// thresholds of the probe's upstream, so a reload that changes them reaches the verdict with the
/// next probe and this actor keeps no copy of the health config.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct ReportProbe {
    /// `Err` holds the reason, shown as `last_error` in `/backends`.
    pub result: Result<(), String>,
    pub thresholds: Thresholds,
}

impl Handler<ReportProbe> for BackendActor {
    type Result = ();

    fn handle(&mut self, msg: ReportProbe, _: &mut Context<Self>) {
        let ReportProbe { result, thresholds } = msg;
        let transition = self.health.record(result.is_ok(), thresholds);
        let error = result.err();
        match transition {
            Some(Transition::BecameUnhealthy { failures }) => {
                self.state.set_healthy(false);
                warn!(self.log, "backend unhealthy"; "failures" => failures,
                      "reason" => error.as_deref().unwrap_or("probe failed"));
            }
            Some(Transition::BecameHealthy { successes }) => {
                self.state.set_healthy(true);
                info!(self.log, "backend healthy"; "successes" => successes,
                      "reason" => format!("{successes} consecutive successful probes"));
            }
            None => {}
        }
        // Recorded last: a reader that sees this probe's time also sees the verdict it led to.
        self.state.record_probe(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::state::Source;

    const TH: Thresholds = Thresholds {
        unhealthy: 2,
        healthy: 2,
    };

    fn report(ok: bool) -> ReportProbe {
        ReportProbe {
            result: if ok {
                Ok(())
            } else {
                Err("connect failed: refused".into())
            },
            thresholds: TH,
        }
    }

    #[actix_rt::test]
    async fn probe_reports_flip_the_published_flag_at_the_thresholds() {
        let state = BackendState::new("default", "127.0.0.1:1", 1, Source::Static);
        let log = Logger::root(slog::Discard, slog::o!());
        let actor = BackendActor::new(Arc::clone(&state), &log).start();
        let send = |ok| actor.send(report(ok));

        send(false).await.expect("actor alive");
        assert!(state.healthy(), "one failure of two");
        let probe = state.probe_record();
        assert!(probe.last_check_unix_ms.is_some());
        assert_eq!(probe.last_error.as_deref(), Some("connect failed: refused"));

        send(false).await.expect("actor alive");
        assert!(!state.healthy(), "two failures in a row");
        assert!(!state.eligible());

        send(true).await.expect("actor alive");
        assert!(!state.healthy(), "one success of two");
        assert_eq!(state.probe_record().last_error, None);

        send(true).await.expect("actor alive");
        assert!(state.healthy(), "two successes in a row");
        assert!(state.eligible());
    }
}
