//! Supervision that survives panics. `actix::Supervisor` restarts an actor that *stops*, but a
//! panic in a handler unwinds through the task that runs the actor and ends it for good (its
//! address then refuses every message). [`start`] runs the actor's context inside
//! `catch_unwind` instead: a panic is logged, counted (`gogate_panics_total{where="actor"}`),
//! and the actor restarts in place, keeping its address and mailbox. Restarting cancels the
//! futures and timers the actor had spawned, calls `Supervised::restarting` (where each actor
//! goes back to the state it last published) and then `Actor::started` again.
//!
//! ```text
//!   running ──panic──▶ backing off ──delay──▶ restarting() ──▶ started() ──▶ running
//!      │                  (0, then 50 ms doubling to 5 s
//!      │                   while panics keep coming)
//!      └──stopped, mailbox closed──▶ done
//! ```

use crate::panics::{self, PanicSite};
use actix::dev::ContextFut;
use actix::prelude::*;
use slog::{error, Logger};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{self, Poll};
use std::time::{Duration, Instant};

/// First delay before restarting an actor that panicked again soon after a restart.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between restarts of an actor that keeps panicking.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A panic this long after the previous one counts as a fresh start (no delay).
const CALM: Duration = Duration::from_secs(10);

/// Starts `A` under panic-catching supervision (inside an actix system); `name` is for logs.
pub fn start<A, F>(name: &'static str, log: &Logger, f: F) -> Addr<A>
where
    A: Actor<Context = Context<A>> + Supervised,
    F: FnOnce(&mut Context<A>) -> A,
{
    let mut ctx = Context::new();
    let act = f(&mut ctx);
    let addr = ctx.address();
    actix_rt::spawn(Contained {
        fut: ctx.into_future(act),
        name,
        log: log.new(slog::o!("actor" => name)),
        last_panic: None,
        backoff: Duration::ZERO,
        sleep: None,
    });
    addr
}

struct Contained<A: Actor<Context = Context<A>>> {
    fut: ContextFut<A, Context<A>>,
    name: &'static str,
    log: Logger,
    last_panic: Option<Instant>,
    backoff: Duration,
    /// Set while waiting to restart after a panic.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<A> Contained<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    /// How long to wait before restarting after a panic now.
    fn next_delay(&mut self, now: Instant) -> Duration {
        let recent = self
            .last_panic
            .is_some_and(|t| now.duration_since(t) < CALM);
        self.last_panic = Some(now);
        self.backoff = if recent {
            (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
        } else {
            Duration::ZERO
        };
        self.backoff
    }
}

impl<A> Future for Contained<A>
where
    A: Actor<Context = Context<A>> + Supervised,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
                if !this.fut.restart() {
                    return Poll::Ready(());
                }
            }
            let fut = &mut this.fut;
            match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                // Stopped: restart like `actix::Supervisor` does, unless nobody can reach it.
                Ok(Poll::Ready(())) => {
                    if !this.fut.restart() {
                        return Poll::Ready(());
                    }
                }
                Err(payload) => {
                    panics::record(PanicSite::Actor);
                    let delay = this.next_delay(Instant::now());
                    error!(this.log, "actor panicked; restarting it from its published state";
                           "actor_name" => this.name, "panic" => panics::message(payload.as_ref()),
                           "restart_in_ms" => delay.as_millis() as u64);
                    this.sleep = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts starts and restarts; `Boom` panics inside its handler.
    struct Fragile {
        starts: Arc<AtomicUsize>,
        restarts: Arc<AtomicUsize>,
        value: u32,
    }

    impl Actor for Fragile {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            self.starts.fetch_add(1, Ordering::SeqCst);
            // A timer spawned by the actor: it must keep working after a restart.
            ctx.run_interval(Duration::from_millis(5), |act, _| act.value += 0);
        }
    }

    impl Supervised for Fragile {
        fn restarting(&mut self, _: &mut Context<Self>) {
            self.restarts.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Boom;

    impl Handler<Boom> for Fragile {
        type Result = ();
        fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
            panic!("injected fault");
        }
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Bump;

    impl Handler<Bump> for Fragile {
        type Result = u32;
        fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u32 {
            self.value += 1;
            self.value
        }
    }

    #[actix_rt::test]
    async fn a_panicking_handler_restarts_the_actor_behind_the_same_address() {
        let (starts, restarts) = (Arc::default(), Arc::default());
        let log = crate::logging::discard();
        let before = panics::count(PanicSite::Actor);
        let addr = start("fragile", &log, {
            let (s, r) = (Arc::clone(&starts), Arc::clone(&restarts));
            move |_| Fragile {
                starts: s,
                restarts: r,
                value: 0,
            }
        });
        assert_eq!(addr.send(Bump).await.expect("alive"), 1);
        // The panicking message gets no answer, but the actor lives on.
        assert!(addr.send(Boom).await.is_err());
        assert_eq!(addr.send(Bump).await.expect("restarted"), 2, "state kept");
        assert_eq!(restarts.load(Ordering::SeqCst), 1);
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert!(panics::count(PanicSite::Actor) > before);
        // Repeated panics back off but never end the actor.
        for _ in 0..3 {
            assert!(addr.send(Boom).await.is_err());
        }
        assert_eq!(addr.send(Bump).await.expect("still restarted"), 3);
        assert_eq!(restarts.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_grows_while_panics_keep_coming_and_resets_when_calm() {
        let sys = actix::System::new();
        sys.block_on(async {
            let log = crate::logging::discard();
            let ctx: Context<Fragile> = Context::new();
            let act = Fragile {
                starts: Arc::default(),
                restarts: Arc::default(),
                value: 0,
            };
            let _addr = ctx.address();
            let mut c = Contained {
                fut: ctx.into_future(act),
                name: "fragile",
                log,
                last_panic: None,
                backoff: Duration::ZERO,
                sleep: None,
            };
            let t0 = Instant::now();
            assert_eq!(c.next_delay(t0), Duration::ZERO);
            assert_eq!(c.next_delay(t0 + Duration::from_secs(1)), FIRST_BACKOFF);
            assert_eq!(c.next_delay(t0 + Duration::from_secs(2)), FIRST_BACKOFF * 2);
            let mut d = Duration::ZERO;
            for i in 3..20 {
                d = c.next_delay(t0 + Duration::from_secs(i));
            }
            assert_eq!(d, MAX_BACKOFF);
            assert_eq!(c.next_delay(t0 + Duration::from_secs(60)), Duration::ZERO);
        });
    }
}
