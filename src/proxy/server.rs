//! The L7 proxy server: actix-http's HTTP/1 service on actix-server workers, behind an admission
//! gate that enforces `limits.maxConnections` for the whole listener (actix-web's own cap is per
//! worker and merely stops accepting, leaving clients beyond it hanging in the backlog).
//!
//! The gate is one atomic count shared by every worker. A connection within the cap is served
//! and holds its slot until it closes; one beyond it is refused at once: it gets a `503` with
//! `Connection: close`, the gateway stops writing, and reads what the client sends for a short
//! moment so that closing does not reset the connection before the client has read the answer.
//! Those refusals are bounded too: past [`MAX_REFUSING`] at once the connection is reset
//! instead. Refusals count in `gogate_connections_rejected_total{listener="http"}`.

use super::ProxyWorker;
use actix_http::HttpService;
use actix_server::{Server, ServerHandle};
use actix_service::{apply_fn_factory, map_config, IntoServiceFactory, Service, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use futures_util::future::{ready, Either};
use futures_util::FutureExt;
use gogate_actors::{Metrics, SnapshotCell, Stats};
use prometheus::{IntCounter, IntGauge};
use slog::Logger;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Refused connections being answered at once; beyond this they are reset without an answer.
pub const MAX_REFUSING: usize = 256;
/// How long a refused connection is read (and discarded) before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// How much of a refused client's request is read before closing anyway.
const REFUSAL_READ_LIMIT: usize = 64 * 1024;

/// What the L7 server is built with (fixed for the listener's life; see `restart_required`).
pub struct HttpSettings {
    pub workers: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    /// Graceful-stop timeout (rounded up to whole seconds by actix-server).
    pub drain_timeout: Duration,
}

/// The connection count of one listener, shared by its workers.
struct Gate {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    stats: Arc<Stats>,
    total: IntCounter,
    active: IntGauge,
    rejected: IntCounter,
}

/// A connection's place under the cap; released (and counted out) when the connection ends.
struct Slot(Arc<Gate>);

impl Gate {
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.total.inc();
        self.active.inc();
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        self.stats
            .connections_active
            .fetch_add(1, Ordering::Relaxed);
        Some(Slot(Arc::clone(self)))
    }

    /// Answers a connection beyond the cap with a 503 and closes it, in the background.
    fn refuse(self: &Arc<Self>, io: TcpStream) {
        self.rejected.inc();
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            // Too many at once: a reset costs nothing to send.
            let _ = socket2::SockRef::from(&io).set_linger(Some(Duration::ZERO));
            return;
        }
        let gate = Arc::clone(self);
        actix_rt::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_LINGER, answer_refused(io)).await;
            gate.refusing.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let g = &self.0;
        g.open.fetch_sub(1, Ordering::AcqRel);
        g.active.dec();
        g.stats.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes the 503, half-closes, and reads until the client closes (or enough was read).
async fn answer_refused(mut io: TcpStream) {
    let body = format!(
        "{{\"error\":\"too many connections\",\"request_id\":\"{:032x}\"}}",
        fastrand::u128(..)
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    if io.write_all(head.as_bytes()).await.is_err() || io.write_all(body.as_bytes()).await.is_err()
    {
        return;
    }
    let _ = io.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < REFUSAL_READ_LIMIT {
        match io.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

/// Starts the L7 proxy server on a bound socket; returns its handle (stop, graceful or not).
pub fn start(
    sock: TcpListener,
    settings: &HttpSettings,
    cell: SnapshotCell,
    stats: Arc<Stats>,
    metrics: &Metrics,
    log: Logger,
) -> Result<ServerHandle, String> {
    let addr = sock
        .local_addr()
        .map_err(|e| format!("server.httpListenAddr: {e}"))?;
    let gate = Arc::new(Gate {
        max: settings.max_connections.max(1),
        open: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        stats: Arc::clone(&stats),
        total: metrics.connections_total.with_label_values(&["http"]),
        active: metrics.connections_active.with_label_values(&["http"]),
        rejected: metrics
            .connections_rejected
            .with_label_values(&["http", "max_connections"]),
    });
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let (keep_alive, header_timeout) = (settings.keep_alive, settings.header_timeout);
    let builder = builder
        .workers(settings.workers.max(1))
        .disable_signals()
        // Whole seconds only: round up, so actix never cuts before the drain deadline.
        .shutdown_timeout(settings.drain_timeout.as_millis().div_ceil(1000).max(1) as u64)
        // The gate refuses first; this per-worker ceiling only bounds a worker that got them all.
        .max_concurrent_connections(settings.max_connections + MAX_REFUSING)
        .listen("gogate-http", sock, move || {
            // Called once per worker, on its thread: the worker's state (upstream pool) lives
            // in the app built here.
            let worker = ProxyWorker::new(cell.clone(), Arc::clone(&stats), log.clone());
            let app = App::new()
                .app_data(web::Data::new(worker))
                .default_service(web::to(super::handle))
                .into_factory()
                .map_err(|e| e.error_response());
            let signal = shutdown.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(keep_alive)
                // A response is often written in pieces (head, then body chunks as the upstream
                // sends them): with Nagle on, a small piece waits for the client's delayed ACK
                // (~40 ms). actix-http leaves Nagle on unless told.
                .tcp_nodelay(true)
                .client_request_timeout(header_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp();
            let gate = Arc::clone(&gate);
            apply_fn_factory(http, move |io: TcpStream, svc: &_| match gate.admit() {
                Some(slot) => Either::Left(Service::call(svc, io).map(move |r| {
                    drop(slot);
                    r
                })),
                None => {
                    gate.refuse(io);
                    Either::Right(ready(Ok(())))
                }
            })
        })
        .map_err(|e| format!("server.httpListenAddr: {e}"))?;
    let server = builder.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}
