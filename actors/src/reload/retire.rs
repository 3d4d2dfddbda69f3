//! Removed backends drain before their actor stops: no new requests (no snapshot published after
//! the removal holds them), in-flight ones finish, then `Retire` once `active()` reaches 0 or
//! `shutdown.drainTimeout` passed. A
//! backend re-added while it still drains is restored with its state (health verdict, breaker,
//! counters) instead of starting afresh as healthy (B9).
//!
//! ```text
//!  in service ──removed──▶ retiring ──active = 0 or deadline──▶ retired (actor stops)
//!       ▲                      │
//!       └──re-added (restore)──┘   whichever claims first wins (one atomic swap)
//! ```

use crate::backend::actor::{BackendActor, Retire};
use crate::backend::state::BackendState;
use crate::config_actor::ConfigActor;
use actix::{Addr, WeakAddr};
use slog::info;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A removed backend still finishing its requests.
pub(crate) struct Retiring {
    state: Arc<BackendState>,
    /// Weak: only the drain task keeps the actor alive, so `Retire` really stops it.
    actor: Option<WeakAddr<BackendActor>>,
    /// Set by whichever comes first: the drain task (retire) or a re-add (restore).
    claimed: Arc<AtomicBool>,
    /// Drained by the admin before it was removed: a restore keeps it drained.
    was_draining: bool,
}

impl Retiring {
    pub(crate) fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }
}

impl ConfigActor {
    /// Takes backend `id` out of service and drains it for at most `drain`.
    pub(crate) fn retire(&mut self, id: &str, drain: Duration) {
        let (Some(state), actor) = (self.states.remove(id), self.actors.remove(id)) else {
            return;
        };
        info!(self.log, "backend removed; draining"; "backend" => &state.addr,
              "upstream" => &state.upstream, "active" => state.active());
        // Not flagged draining: no snapshot published from now on holds it, so no new request
        // picks it; a request that took the previous snapshot just before this reload may
        // still pick it, and is served (a flag here answered those with a 503 when it was the
        // upstream's only backend).
        let was_draining = state.draining();
        let claimed = Arc::new(AtomicBool::new(false));
        self.retiring.insert(
            id.to_string(),
            Retiring {
                state: Arc::clone(&state),
                actor: actor.as_ref().map(Addr::downgrade),
                claimed: Arc::clone(&claimed),
                was_draining,
            },
        );
        let deadline = Instant::now() + drain;
        actix_rt::spawn(async move {
            while state.active() > 0
                && Instant::now() < deadline
                && !claimed.load(Ordering::Acquire)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Dropping the last address after `Retire` ends the supervised actor.
            if !claimed.swap(true, Ordering::AcqRel) {
                if let Some(a) = actor {
                    a.do_send(Retire);
                }
            }
        });
    }

    /// Puts a still-draining backend back in service with weight `weight`; false when there is
    /// none to restore (the caller then starts a new one). `keep_drained`: it comes back drained
    /// (its host name is drained by the admin).
    pub(crate) fn restore(&mut self, id: &str, weight: u32, keep_drained: bool) -> bool {
        let Some(r) = self.retiring.remove(id) else {
            return false;
        };
        if r.claimed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let Some(actor) = r.actor.and_then(|w| w.upgrade()) else {
            return false;
        };
        // Set before the snapshot that holds it again is published (a message to its actor
        // would leave a window where that snapshot holds it in the wrong state).
        r.state.set_draining(r.was_draining || keep_drained);
        r.state.set_weight(weight);
        info!(self.log, "backend restored while draining"; "backend" => &r.state.addr,
              "upstream" => &r.state.upstream, "healthy" => r.state.healthy());
        self.states.insert(id.to_string(), r.state);
        self.actors.insert(id.to_string(), actor);
        true
    }
}
