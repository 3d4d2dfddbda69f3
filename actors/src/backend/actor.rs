//! `BackendActor`: the single writer of one backend's lifecycle flags (drain now; health and
//! breaker verdicts as those features land). It publishes by storing into the shared
//! [`BackendState`] atomics that the data plane reads, so a change is visible to the very next
//! request without a new snapshot.
//!
//! ```text
//!   in rotation ──StartDrain──▶ draining (no new requests; in-flight ones finish)
//!        ▲                         │
//!        └────────StopDrain────────┘
//! ```

use crate::backend::state::BackendState;
use actix::prelude::*;
use slog::{info, Logger};
use std::sync::Arc;

pub struct BackendActor {
    state: Arc<BackendState>,
    log: Logger,
}

impl BackendActor {
    pub fn new(state: Arc<BackendState>, log: &Logger) -> Self {
        let log = log
            .new(slog::o!("backend" => state.addr.clone(), "upstream" => state.upstream.clone()));
        BackendActor { state, log }
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
        self.state.set_draining(true);
        ctx.stop();
    }
}

/// Health verdict as decided by the health checker (thresholds applied by the caller).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetHealthy {
    pub healthy: bool,
    pub error: Option<String>,
}

impl Handler<SetHealthy> for BackendActor {
    type Result = ();

    fn handle(&mut self, msg: SetHealthy, _: &mut Context<Self>) {
        self.state.record_probe(msg.error.clone());
        if self.state.healthy() != msg.healthy {
            self.state.set_healthy(msg.healthy);
            if msg.healthy {
                info!(self.log, "backend healthy");
            } else {
                slog::warn!(self.log, "backend unhealthy"; "reason" => msg.error.unwrap_or_default());
            }
        }
    }
}
