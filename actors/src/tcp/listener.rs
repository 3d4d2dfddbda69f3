//! `ListenerActor`: one per L4 listener. It owns the bound socket and one accept loop per
//! worker arbiter (each worker is a single-threaded runtime; the kernel spreads connections
//! across them), enforces `limits.maxConnections`, and stops accepting on command while
//! sessions already running finish on their own. At the shutdown deadline `CloseSessions` cuts
//! whatever still runs: every session selects on one watch channel, so a single send ends them
//! all on their own arbiters (each client sees its socket close).

use super::session::{self, SessionContext};
use crate::metrics::Metrics;
use crate::panics::{self, PanicSite};
use crate::ratelimit::admit_connection;
use crate::snapshot::SnapshotCell;
use crate::stats::Stats;
use actix::prelude::*;
use futures_util::FutureExt;
use prometheus::{IntCounter, IntGauge};
use slog::{error, info, warn, Logger};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// State shared by every accept loop and session of one listener.
struct Shared {
    ctx: SessionContext,
    active: AtomicUsize,
    max: usize,
    conn_total: IntCounter,
    conn_active: IntGauge,
    /// Connections refused at the cap.
    rejected: IntCounter,
    /// Turns `true` once to end every running session (`CloseSessions`).
    cut: watch::Sender<bool>,
}

pub struct ListenerActor {
    addr: SocketAddr,
    socket: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    workers: usize,
    arbiters: Vec<Arbiter>,
    stop: watch::Sender<bool>,
    log: Logger,
}

impl ListenerActor {
    /// `socket` is already bound (so bind errors surface before anything starts).
    pub fn new(
        socket: std::net::TcpListener,
        cell: SnapshotCell,
        metrics: &Metrics,
        stats: Arc<Stats>,
        workers: usize,
        log: &Logger,
    ) -> std::io::Result<Self> {
        let addr = socket.local_addr()?;
        let max = cell.load().limits.max_connections as usize;
        let (stop, _) = watch::channel(false);
        let log = log.new(slog::o!("listener" => "tcp"));
        Ok(ListenerActor {
            addr,
            socket: Some(socket),
            shared: Arc::new(Shared {
                ctx: SessionContext {
                    cell,
                    stats,
                    log: log.clone(),
                },
                active: AtomicUsize::new(0),
                max,
                conn_total: metrics.connections_total.with_label_values(&["tcp"]),
                conn_active: metrics.connections_active.with_label_values(&["tcp"]),
                rejected: metrics
                    .connections_rejected
                    .with_label_values(&["tcp", "max_connections"]),
                cut: watch::channel(false).0,
            }),
            workers: workers.max(1),
            arbiters: Vec::new(),
            stop,
            log,
        })
    }

    /// Caps the sessions at `max` instead of the snapshot's `limits.maxConnections` (a listener
    /// moved by a reload keeps the cap the process started with).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.max = max;
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Actor for ListenerActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        for _ in 0..self.workers {
            let clone = match socket.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    warn!(self.log, "cannot share the listening socket with a worker"; "error" => e.to_string());
                    continue;
                }
            };
            let arbiter = Arbiter::new();
            let shared = Arc::clone(&self.shared);
            let stop = self.stop.subscribe();
            let log = self.log.clone();
            arbiter.spawn(async move {
                let listener = match tokio::net::TcpListener::from_std(clone) {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(log, "cannot start an accept loop"; "error" => e.to_string());
                        return;
                    }
                };
                // A panic in the loop must not leave this worker deaf: count it, start again.
                loop {
                    let run = accept_loop(&listener, Arc::clone(&shared), stop.clone());
                    match AssertUnwindSafe(run).catch_unwind().await {
                        Ok(()) => return,
                        Err(p) => {
                            panics::record(PanicSite::TcpSession);
                            error!(log, "tcp accept loop panicked; restarting it";
                                   "panic" => panics::message(p.as_ref()));
                        }
                    }
                }
            });
            self.arbiters.push(arbiter);
        }
        info!(self.log, "listener started"; "addr" => self.addr.to_string(), "workers" => self.workers);
    }
}

/// Accept loops and sessions run outside the actor, on the worker arbiters; a restart of the
/// actor (after a panic in a handler) leaves them running: `started` starts loops only once.
impl Supervised for ListenerActor {}

async fn accept_loop(
    listener: &tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(shared.ctx.log, "accept failed"; "error" => e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !admit_connection(&shared.ctx.cell, &shared.ctx.stats, peer.ip()) {
            // Over `rateLimit`: closed at once, with a reset like a refused connection below.
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
            continue;
        }
        if shared.active.fetch_add(1, Ordering::Relaxed) >= shared.max {
            shared.active.fetch_sub(1, Ordering::Relaxed);
            shared.rejected.inc();
            // Refuse at once with a reset rather than a FIN the client might mistake for data.
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
            continue;
        }
        shared.conn_total.inc();
        shared.conn_active.inc();
        shared
            .ctx
            .stats
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        shared
            .ctx
            .stats
            .connections_active
            .fetch_add(1, Ordering::Relaxed);
        let shared = Arc::clone(&shared);
        // Subscribed before the session starts: a cut sent meanwhile is seen at once.
        let mut cut = shared.cut.subscribe();
        actix_rt::spawn(async move {
            let _slot = SlotGuard(&shared);
            // A panic ends this session only (its sockets close as it unwinds).
            let serve = AssertUnwindSafe(session::serve(sock, peer, &shared.ctx)).catch_unwind();
            tokio::select! {
                done = serve => if let Err(p) = done {
                    panics::record(PanicSite::TcpSession);
                    error!(shared.ctx.log, "tcp session panicked; closed it";
                           "client" => peer.to_string(), "panic" => panics::message(p.as_ref()));
                },
                // Dropping the session closes both of its sockets.
                _ = cut.wait_for(|c| *c) => {}
            }
        });
    }
}

/// Releases a connection slot however the session ends.
struct SlotGuard<'a>(&'a Shared);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.conn_active.dec();
        self.0
            .ctx
            .stats
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Command: stop accepting new connections (running sessions continue).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Handler<StopAccepting> for ListenerActor {
    type Result = ();

    fn handle(&mut self, _: StopAccepting, _: &mut Context<Self>) {
        let _ = self.stop.send(true);
        info!(self.log, "listener stopped accepting"; "addr" => self.addr.to_string(),
              "active_sessions" => self.shared.active.load(Ordering::Relaxed));
    }
}

/// Query: sessions in flight.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct GetActiveSessions;

impl Handler<GetActiveSessions> for ListenerActor {
    type Result = usize;

    fn handle(&mut self, _: GetActiveSessions, _: &mut Context<Self>) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }
}

/// Command: close every session still running (the drain deadline); returns how many were cut.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseSessions;

impl Handler<CloseSessions> for ListenerActor {
    type Result = usize;

    fn handle(&mut self, _: CloseSessions, _: &mut Context<Self>) -> usize {
        let active = self.shared.active.load(Ordering::Relaxed);
        self.shared.cut.send_replace(true);
        if active > 0 {
            info!(self.log, "closing remaining tcp sessions"; "addr" => self.addr.to_string(),
                  "sessions" => active);
        }
        active
    }
}

impl Drop for ListenerActor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for a in &self.arbiters {
            a.stop();
        }
    }
}
