//! `BreakerActor`: owns breaker timing for every backend and is the single writer of the
//! published breaker position ([`BackendState::breaker`]). The data plane counts failures in
//! atomics and sends an event only on the edges (the first failure at or past the threshold
//! with no report pending, and half-open probe outcomes, which are rare), with `try_send` into a bounded
//! mailbox. The actor re-checks, steps the pure [`Breaker`] machine, schedules open → half-open
//! on a timer (so the change shows in metrics and `/backends` without traffic), and logs.

use super::machine::{Breaker, BreakerSettings, Transition};
use crate::backend::state::{BackendState, BreakerPosition};
use crate::supervise;
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Events the data plane may have queued at once; beyond that `try_send` drops and counts (the
/// next failure past the threshold, or the next probe once its permit is free, reports again).
pub const MAILBOX_CAPACITY: usize = 1024;

/// The breaker of one backend and its pending half-open timer.
struct Entry {
    backend: Arc<BackendState>,
    machine: Breaker,
    timer: Option<SpawnHandle>,
}

/// One actor for the gateway; its map holds one entry per backend that has ever tripped (so it
/// is bounded by the number of backends).
pub struct BreakerActor {
    entries: HashMap<String, Entry>,
    log: Logger,
}

impl BreakerActor {
    pub fn new(log: &Logger) -> Self {
        BreakerActor {
            entries: HashMap::new(),
            log: log.clone(),
        }
    }

    /// Starts the actor, supervised, with its bounded mailbox (inside an actix system).
    pub fn start_bounded(log: &Logger) -> Addr<Self> {
        supervise::start("breaker", log, |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            BreakerActor::new(log)
        })
    }

    fn entry(&mut self, backend: &Arc<BackendState>, settings: BreakerSettings) -> &mut Entry {
        let e = self
            .entries
            .entry(backend.id.clone())
            .or_insert_with(|| Entry {
                backend: Arc::clone(backend),
                machine: Breaker::new(settings),
                timer: None,
            });
        e.machine.set_settings(settings);
        e
    }

    /// Publishes a transition, logs it, and (re)arms or cancels the half-open timer.
    fn apply(&mut self, id: &str, t: Transition, ctx: &mut Context<Self>) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let b = &e.backend;
        b.set_breaker(t.position());
        if let Some(h) = e.timer.take() {
            ctx.cancel_future(h);
        }
        let (backend, upstream) = (b.addr.as_str(), b.upstream.as_str());
        match t {
            Transition::Opened => {
                b.reset_failures();
                let timeout = e.machine.settings().timeout;
                warn!(self.log, "circuit breaker opened"; "backend" => backend,
                      "upstream" => upstream, "timeout_ms" => timeout.as_millis() as u64);
                e.timer = Some(Self::arm(id, e.machine.half_open_at(), ctx));
            }
            Transition::HalfOpened => {
                info!(self.log, "circuit breaker half-open"; "backend" => backend,
                      "upstream" => upstream,
                      "probes" => e.machine.settings().success_threshold);
            }
            Transition::Closed => {
                b.reset_failures();
                info!(self.log, "circuit breaker closed"; "backend" => backend,
                      "upstream" => upstream);
            }
        }
    }

    fn arm(id: &str, at: Option<Instant>, ctx: &mut Context<Self>) -> SpawnHandle {
        let wait = at.map_or(Default::default(), |at| {
            at.saturating_duration_since(Instant::now())
        });
        let id = id.to_string();
        ctx.run_later(wait, move |act, ctx| act.on_timer(&id, ctx))
    }

    fn on_timer(&mut self, id: &str, ctx: &mut Context<Self>) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.timer = None;
        match e.machine.on_timer(Instant::now()) {
            Some(t) => self.apply(id, t, ctx),
            // Woken early (timers round): wait for the rest.
            None if e.machine.half_open_at().is_some() => {
                e.timer = Some(Self::arm(id, e.machine.half_open_at(), ctx));
            }
            None => {}
        }
    }
}

impl Actor for BreakerActor {
    type Context = Context<Self>;

    /// Also runs after a restart: every open breaker gets its half-open timer back.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let pending: Vec<(String, Option<Instant>)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.machine.position() == BreakerPosition::Open)
            .map(|(id, e)| (id.clone(), e.machine.half_open_at()))
            .collect();
        for (id, at) in pending {
            let timer = Self::arm(&id, at, ctx);
            if let Some(e) = self.entries.get_mut(&id) {
                e.timer = Some(timer);
            }
        }
    }
}

/// A panic may have struck between a machine's transition and its publication: each machine
/// is rebuilt from the position the data plane sees (`Breaker::restore`); the timers, cancelled
/// by the restart, are armed again by `started`.
impl Supervised for BreakerActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        let now = Instant::now();
        for e in self.entries.values_mut() {
            e.timer = None;
            e.machine = Breaker::restore(e.machine.settings(), e.backend.breaker(), now);
            e.backend.release_trip_report();
        }
    }
}

/// Event: a backend's consecutive failures reached `failureThreshold` (at most one queued per
/// backend: its handler clears the backend's pending flag, see `breaker::link`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ThresholdCrossed {
    pub backend: Arc<BackendState>,
    pub settings: BreakerSettings,
}

impl Handler<ThresholdCrossed> for BreakerActor {
    type Result = ();

    fn handle(&mut self, msg: ThresholdCrossed, ctx: &mut Context<Self>) {
        msg.backend.release_trip_report();
        let consecutive = msg.backend.consecutive_failures();
        let e = self.entry(&msg.backend, msg.settings);
        if let Some(t) = e.machine.on_failures(consecutive, Instant::now()) {
            self.apply(&msg.backend.id, t, ctx);
        }
    }
}

/// Event: a half-open probe request finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeCompleted {
    pub backend: Arc<BackendState>,
    pub settings: BreakerSettings,
    pub success: bool,
}

impl Handler<ProbeCompleted> for BreakerActor {
    type Result = ();

    fn handle(&mut self, msg: ProbeCompleted, ctx: &mut Context<Self>) {
        let e = self.entry(&msg.backend, msg.settings);
        if let Some(t) = e.machine.on_probe(msg.success, Instant::now()) {
            self.apply(&msg.backend.id, t, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::state::{BreakerPosition, Source};
    use std::time::Duration;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 2,
        success_threshold: 2,
        timeout: Duration::from_millis(80),
    };

    fn quiet() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    async fn trip(addr: &Addr<BreakerActor>, b: &Arc<BackendState>) {
        b.record_outcome(false);
        b.record_outcome(false);
        let msg = ThresholdCrossed {
            backend: Arc::clone(b),
            settings: SETTINGS,
        };
        addr.send(msg).await.expect("actor alive");
    }

    async fn probe(addr: &Addr<BreakerActor>, b: &Arc<BackendState>, success: bool) {
        let msg = ProbeCompleted {
            backend: Arc::clone(b),
            settings: SETTINGS,
            success,
        };
        addr.send(msg).await.expect("actor alive");
    }

    async fn wait_for(b: &BackendState, want: BreakerPosition) {
        for _ in 0..100 {
            if b.breaker() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("breaker never became {want:?}");
    }

    #[actix_rt::test]
    async fn breaker_actor_walks_every_transition_on_its_timer() {
        let addr = BreakerActor::start_bounded(&quiet());
        let b = BackendState::new("default", "127.0.0.1:1", 1, Source::Static);

        trip(&addr, &b).await;
        assert_eq!(b.breaker(), BreakerPosition::Open);
        assert!(!b.eligible());
        assert_eq!(b.consecutive_failures(), 0, "reset on opening");

        // Half-open on the timer alone, with no traffic.
        wait_for(&b, BreakerPosition::HalfOpen).await;
        probe(&addr, &b, true).await;
        assert_eq!(
            b.breaker(),
            BreakerPosition::HalfOpen,
            "one of two successes"
        );
        probe(&addr, &b, true).await;
        assert_eq!(b.breaker(), BreakerPosition::Closed);
        assert!(b.eligible());
    }

    #[actix_rt::test]
    async fn probe_failure_reopens_and_restarts_the_timer() {
        let addr = BreakerActor::start_bounded(&quiet());
        let b = BackendState::new("default", "127.0.0.1:2", 1, Source::Static);
        trip(&addr, &b).await;
        wait_for(&b, BreakerPosition::HalfOpen).await;
        probe(&addr, &b, false).await;
        assert_eq!(b.breaker(), BreakerPosition::Open);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(b.breaker(), BreakerPosition::Open, "the timeout restarted");
        wait_for(&b, BreakerPosition::HalfOpen).await;
    }

    #[actix_rt::test]
    async fn stale_threshold_event_is_rechecked() {
        let addr = BreakerActor::start_bounded(&quiet());
        let b = BackendState::new("default", "127.0.0.1:3", 1, Source::Static);
        b.record_outcome(false);
        b.record_outcome(false);
        b.record_outcome(true); // recovered before the actor saw the event
        let msg = ThresholdCrossed {
            backend: Arc::clone(&b),
            settings: SETTINGS,
        };
        addr.send(msg).await.expect("actor alive");
        assert_eq!(b.breaker(), BreakerPosition::Closed);
    }

    /// A test-only fault: the handler panics.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Crash;

    impl Handler<Crash> for BreakerActor {
        type Result = ();
        fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
            panic!("injected fault in the breaker actor");
        }
    }

    #[actix_rt::test]
    async fn a_panic_restarts_the_actor_with_open_breakers_still_timed() {
        let addr = BreakerActor::start_bounded(&quiet());
        let b = BackendState::new("default", "127.0.0.1:4", 1, Source::Static);
        trip(&addr, &b).await;
        assert_eq!(b.breaker(), BreakerPosition::Open);
        assert!(
            addr.send(Crash).await.is_err(),
            "the crashing message has no answer"
        );
        // Same address, same published state; the open breaker's timer was re-armed.
        wait_for(&b, BreakerPosition::HalfOpen).await;
        probe(&addr, &b, true).await;
        probe(&addr, &b, true).await;
        assert_eq!(b.breaker(), BreakerPosition::Closed);
        // And a new trip still opens it.
        trip(&addr, &b).await;
        assert_eq!(b.breaker(), BreakerPosition::Open);
    }
}
