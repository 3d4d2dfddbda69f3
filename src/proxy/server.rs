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
//!
//! The HTTPS listener (`server.tls`) is the same server with rustls in front (`super::tls`):
//! ALPN offers `h2` and `http/1.1`, and the gate also holds the slot through the handshake. A
//! refused TLS connection is closed at once (a plaintext 503 would mean nothing to a TLS client
//! and a handshake is what an overloaded listener cannot afford). Failed handshakes count in
//! `gogate_tls_handshake_errors_total{reason}`.

use super::ProxyWorker;
use actix_http::{HttpService, TlsAcceptorConfig};
use actix_server::{Server, ServerHandle};
use actix_service::{
    apply_fn_factory, boxed, map_config, IntoServiceFactory, Service, ServiceFactoryExt,
};
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use futures_util::future::{ready, Either};
use futures_util::FutureExt;
use gogate_actors::{Metrics, SnapshotCell, Stats};
use prometheus::{IntCounter, IntGauge};
use rustls::ServerConfig;
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
    /// Refusals are answered with a plaintext 503 (HTTP listener) or closed at once (HTTPS).
    plain: bool,
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
        if !self.plain {
            return; // dropped: closed without a handshake
        }
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

/// Which L7 listener a server is: plain HTTP, or HTTPS with its rustls configuration.
#[derive(Clone)]
pub enum Listener {
    Http,
    Https(Arc<rustls::ServerConfig>),
}

impl Listener {
    /// The `listener` label of its connection metrics.
    fn label(&self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Https(_) => "https",
        }
    }

    /// Its config key, for error messages.
    fn key(&self) -> &'static str {
        match self {
            Listener::Http => "server.httpListenAddr",
            Listener::Https(_) => "server.tls.listenAddr",
        }
    }
}

/// Starts an L7 proxy server on a bound socket; returns its handle (stop, graceful or not).
pub fn start(
    sock: TcpListener,
    listener: Listener,
    settings: &HttpSettings,
    cell: SnapshotCell,
    stats: Arc<Stats>,
    metrics: &Metrics,
    log: Logger,
) -> Result<ServerHandle, String> {
    let (label, key) = (listener.label(), listener.key());
    let addr = sock.local_addr().map_err(|e| format!("{key}: {e}"))?;
    let gate = Arc::new(Gate {
        max: settings.max_connections.max(1),
        plain: matches!(listener, Listener::Http),
        open: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        stats: Arc::clone(&stats),
        total: metrics.connections_total.with_label_values(&[label]),
        active: metrics.connections_active.with_label_values(&[label]),
        rejected: metrics
            .connections_rejected
            .with_label_values(&[label, "max_connections"]),
    });
    let handshake_errors = [
        metrics.tls_handshake_errors.with_label_values(&["error"]),
        metrics.tls_handshake_errors.with_label_values(&["timeout"]),
    ];
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
        .listen(label, sock, move || {
            // Called once per worker, on its thread: the worker's state (upstream pool) lives
            // in the app built here.
            let mut worker = ProxyWorker::new(cell.clone(), Arc::clone(&stats), log.clone());
            worker.tls = matches!(listener, Listener::Https(_));
            let app = App::new()
                .app_data(web::Data::new(worker))
                .default_service(web::to(super::handle))
                .into_factory()
                .map_err(|e| e.error_response());
            let signal = shutdown.clone();
            // The same service for both kinds; its stream type (TCP or TLS over TCP) is
            // inferred from the use below, hence a macro.
            macro_rules! http_service {
                () => {
                    HttpService::build()
                        .graceful_shutdown_signal(move || {
                            let signal = signal.clone();
                            async move { signal.notified().await }
                        })
                        .keep_alive(keep_alive)
                        // A response is often written in pieces (head, then body chunks as the
                        // upstream sends them): with Nagle on, a small piece waits for the
                        // client's delayed ACK (~40 ms). actix-http leaves Nagle on unless told.
                        .tcp_nodelay(true)
                        .client_request_timeout(header_timeout)
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(addr)
                        .finish(map_config(app, |_| AppConfig::default()))
                };
            }
            // Both kinds become one boxed factory (one indirect call per connection), so the
            // gate below is the same code for both.
            let served = match &listener {
                Listener::Http => boxed::factory(http_service!().tcp().map_err(|_| ())),
                Listener::Https(tls) => {
                    let errors = handshake_errors.clone();
                    // The handshake shares the header deadline: a client that stalls in it
                    // holds a slot no longer than one that stalls in its request head.
                    let acceptor = TlsAcceptorConfig::default().handshake_timeout(header_timeout);
                    let https =
                        http_service!().rustls_0_23_with_config(ServerConfig::clone(tls), acceptor);
                    boxed::factory(https.map_err(move |e| match e {
                        TlsError::Tls(_) => errors[0].inc(),
                        TlsError::Timeout => errors[1].inc(),
                        TlsError::Service(_) => {}
                    }))
                }
            };
            let gate = Arc::clone(&gate);
            apply_fn_factory(served, move |io: TcpStream, svc: &_| match gate.admit() {
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
        .map_err(|e| format!("{key}: {e}"))?;
    let server = builder.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}
