//! `ListenerManagerActor`: owns the data-plane listeners (the L4 `ListenerActor` and the L7
//! actix-web server) and what is needed to start new ones, so a reload can move them live
//! (DESIGN B3: new listeners start, old ones drain). The config actor sends it
//! `ApplyListeners` before it swaps a snapshot whose `server.listenAddr`,
//! `server.httpListenAddr` or HTTPS listener (`server.tls`) changed: every new socket is bound first (a bind failure changes
//! nothing and fails the reload, naming the key and address), then the new listeners start, then
//! the old ones stop accepting and drain in the background for up to `shutdown.drainTimeout`
//! (in-flight requests and sessions finish; what remains at the deadline is cut). The shutdown
//! takes the current listeners from it (`TakeListeners`) and drains them.
//!
//! The servers are built with the settings the process started with (`limits`, idle timeout,
//! workers): changing those still needs a restart, as `restart_required` says.

use crate::proxy;
use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use gogate_actors::reload::ApplyListeners;
use gogate_actors::snapshot::SnapshotCell;
use gogate_actors::supervise;
use gogate_actors::tcp::bind_listener;
use gogate_actors::tcp::listener::{CloseSessions, GetActiveSessions, StopAccepting};
use gogate_actors::tls::CertStore;
use gogate_actors::{ListenerActor, Metrics, Stats};
use gogate_config::parse_listen_addr;
use slog::{info, Logger};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Binds the listener of config key `key` at `text`; the error names both.
pub fn bind(key: &str, text: &str) -> Result<TcpListener, String> {
    let addr = parse_listen_addr(text).map_err(|e| format!("{key}: {e}"))?;
    bind_listener(addr).map_err(|e| format!("cannot bind {key} ({addr}): {e}"))
}

/// What starting a data-plane listener needs (fixed at start).
#[derive(Clone)]
pub struct ProxyParts {
    pub cell: SnapshotCell,
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    pub log: Logger,
    pub workers: usize,
    pub max_connections: u32,
    pub header_timeout: Duration,
    pub idle: Duration,
    /// The L7 server's graceful-stop timeout (rounded up to whole seconds).
    pub drain_timeout: Duration,
    /// The certificates HTTPS listeners serve (the config actor publishes them).
    pub certs: Arc<CertStore>,
    /// `server.tls.minVersion` at start.
    pub tls_min_version: String,
}

/// Starts the L4 listener on a bound socket.
pub fn start_tcp(sock: TcpListener, p: &ProxyParts) -> Result<Addr<ListenerActor>, String> {
    let actor = ListenerActor::new(
        sock,
        p.cell.clone(),
        &p.metrics,
        Arc::clone(&p.stats),
        p.workers,
        &p.log,
    )
    .map_err(|e| format!("server.listenAddr: {e}"))?
    .with_max_connections(p.max_connections as usize);
    Ok(supervise::start("tcp-listener", &p.log, move |_| actor))
}

/// Starts the L7 proxy server on a bound socket (`proxy::server`).
pub fn start_http(sock: TcpListener, p: &ProxyParts) -> Result<ServerHandle, String> {
    start_l7(sock, p, proxy::server::Listener::Http)
}

/// Starts the HTTPS proxy server (TLS, HTTP/1.1 and HTTP/2) on a bound socket.
pub fn start_https(sock: TcpListener, p: &ProxyParts) -> Result<ServerHandle, String> {
    let tls = proxy::tls::server_config(Arc::clone(&p.certs), &p.tls_min_version)?;
    start_l7(sock, p, proxy::server::Listener::Https(Arc::new(tls)))
}

fn start_l7(
    sock: TcpListener,
    p: &ProxyParts,
    listener: proxy::server::Listener,
) -> Result<ServerHandle, String> {
    let name = match listener {
        proxy::server::Listener::Http => "http",
        proxy::server::Listener::Https(_) => "https",
    };
    let settings = proxy::server::HttpSettings {
        workers: p.workers,
        max_connections: p.max_connections as usize,
        header_timeout: p.header_timeout,
        keep_alive: p.idle,
        drain_timeout: p.drain_timeout,
    };
    proxy::server::start(
        sock,
        listener,
        &settings,
        p.cell.clone(),
        Arc::clone(&p.stats),
        &p.metrics,
        p.log.new(slog::o!("listener" => name)),
    )
}

/// Waits for the L4 sessions to end on their own until `deadline`, then cuts the rest; returns
/// how many were cut.
pub async fn drain_sessions(l: &Addr<ListenerActor>, deadline: Instant) -> usize {
    loop {
        let active = l.send(GetActiveSessions).await.unwrap_or(0);
        if active == 0 {
            return 0;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = l.send(CloseSessions).await.unwrap_or(0);
    // The sessions end on their own arbiters; give them a moment so their sockets are closed
    // (and counted out) before the caller reports completion.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle && l.send(GetActiveSessions).await.unwrap_or(0) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cut
}

/// Starts an admin or metrics server (one worker) on a bound socket.
pub type ControlStart = Box<dyn Fn(TcpListener) -> Result<ServerHandle, String>>;

/// A running admin or metrics server and how to start it again elsewhere.
pub struct ControlServer {
    pub handle: ServerHandle,
    start: ControlStart,
}

impl ControlServer {
    /// Starts the server of config key `key` serving `routes` on `sock`.
    pub fn start<F>(sock: TcpListener, key: &'static str, routes: F) -> Result<Self, String>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let start: ControlStart = Box::new(move |sock| {
            let routes = routes.clone();
            let server = HttpServer::new(move || App::new().configure(routes.clone()))
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .client_request_timeout(Duration::from_secs(5))
                .keep_alive(Duration::from_secs(30))
                .max_connections(256)
                .listen(sock)
                .map_err(|e| format!("{key}: {e}"))?
                .run();
            let handle = server.handle();
            actix_rt::spawn(server);
            Ok(handle)
        });
        let handle = start(sock)?;
        Ok(ControlServer { handle, start })
    }
}

/// The current listeners. With admin and metrics on one listener, it is `admin`.
pub struct Current {
    pub tcp: Option<Addr<ListenerActor>>,
    pub http: Option<ServerHandle>,
    pub https: Option<ServerHandle>,
    pub admin: Option<ControlServer>,
    pub metrics: Option<ControlServer>,
}

/// What the shutdown drains: the listeners current when it asked.
pub struct Taken {
    pub tcp: Option<Addr<ListenerActor>>,
    pub http: Option<ServerHandle>,
    pub https: Option<ServerHandle>,
    pub control: Vec<ServerHandle>,
}

pub struct ListenerManagerActor {
    parts: ProxyParts,
    current: Current,
    /// Set by `TakeListeners` (shutdown): later moves are refused.
    closed: bool,
    log: Logger,
}

impl ListenerManagerActor {
    pub fn new(parts: ProxyParts, current: Current) -> Self {
        let log = parts.log.new(slog::o!("component" => "listeners"));
        ListenerManagerActor {
            parts,
            current,
            closed: false,
            log,
        }
    }
}

/// Its state (the current listeners) is the truth; a restart keeps it as it is.
impl Supervised for ListenerManagerActor {}

impl Actor for ListenerManagerActor {
    type Context = Context<Self>;
}

/// Binds `Some(addr)` changes (`Some(None)` = disable); nothing is started here.
fn bind_change(key: &str, change: &Option<String>) -> Result<Option<Option<TcpListener>>, String> {
    match change.as_deref() {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(addr) => bind(key, addr).map(|s| Some(Some(s))),
    }
}

/// Binds the new socket of a running admin or metrics listener asked to move.
fn bind_control(
    key: &str,
    current: &Option<ControlServer>,
    change: &Option<String>,
) -> Result<Option<TcpListener>, String> {
    match (current, change.as_deref()) {
        (Some(_), Some(addr)) if !addr.is_empty() => bind(key, addr).map(Some),
        _ => Ok(None),
    }
}

/// Starts the moved admin or metrics server on its new socket.
fn start_control(
    current: &Option<ControlServer>,
    sock: Option<TcpListener>,
) -> Result<Option<ServerHandle>, String> {
    match (current, sock) {
        (Some(server), Some(sock)) => (server.start)(sock).map(Some),
        _ => Ok(None),
    }
}

/// A listener failed to start (rare: its socket is bound): stops those this move started, so
/// nothing changes, and returns the error.
fn abort(
    error: String,
    tcp: &Option<Option<Addr<ListenerActor>>>,
    servers: Vec<Option<ServerHandle>>,
) -> String {
    if let Some(Some(t)) = tcp {
        t.do_send(StopAccepting);
    }
    for h in servers.into_iter().flatten() {
        actix_rt::spawn(async move { h.stop(false).await });
    }
    error
}

impl Handler<ApplyListeners> for ListenerManagerActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: ApplyListeners, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err("the gateway is shutting down: listeners cannot move".into());
        }
        // 1. Bind every new socket; any failure drops those bound and changes nothing.
        let tcp = bind_change("server.listenAddr", &msg.tcp)?;
        let http = bind_change("server.httpListenAddr", &msg.http)?;
        let https = bind_change("server.tls.listenAddr", &msg.tls)?;
        // Admin and metrics move only when they run (enabling them needs a restart).
        let admin = bind_control("server.admin.listenAddr", &self.current.admin, &msg.admin)?;
        let metrics = bind_control(
            "server.metrics.listenAddr",
            &self.current.metrics,
            &msg.metrics,
        )?;
        // 2. Start the new listeners (a failure stops those started: nothing changes).
        let new_tcp = match tcp {
            Some(sock) => Some(sock.map(|s| start_tcp(s, &self.parts)).transpose()?),
            None => None,
        };
        let new_http = match http
            .map(|sock| sock.map(|s| start_http(s, &self.parts)).transpose())
            .transpose()
        {
            Ok(h) => h,
            Err(e) => return Err(abort(e, &new_tcp, Vec::new())),
        };
        let new_https = match https
            .map(|sock| sock.map(|s| start_https(s, &self.parts)).transpose())
            .transpose()
        {
            Ok(h) => h,
            Err(e) => return Err(abort(e, &new_tcp, vec![new_http.clone().flatten()])),
        };
        let started = vec![new_http.clone().flatten(), new_https.clone().flatten()];
        let new_admin = match start_control(&self.current.admin, admin) {
            Ok(h) => h,
            Err(e) => return Err(abort(e, &new_tcp, started)),
        };
        let new_metrics = match start_control(&self.current.metrics, metrics) {
            Ok(h) => h,
            Err(e) => {
                let mut started = started;
                started.push(new_admin.clone());
                return Err(abort(e, &new_tcp, started));
            }
        };
        // 3. Retire the old ones: they stop accepting and drain in the background.
        let deadline = Instant::now() + msg.drain;
        if let Some(new) = new_tcp {
            if let Some(old) = std::mem::replace(&mut self.current.tcp, new) {
                old.do_send(StopAccepting);
                let log = self.log.clone();
                actix_rt::spawn(async move {
                    let cut = drain_sessions(&old, deadline).await;
                    info!(log, "old tcp listener drained"; "sessions_cut" => cut);
                    // Dropping the last address stops the actor and its worker arbiters.
                });
            }
        }
        for (new, slot, name) in [
            (new_http, &mut self.current.http, "http"),
            (new_https, &mut self.current.https, "https"),
        ] {
            if let Some(new) = new {
                if let Some(old) = std::mem::replace(slot, new) {
                    let log = self.log.clone();
                    // Graceful: stops accepting at once, lets requests in progress finish.
                    actix_rt::spawn(async move {
                        old.stop(true).await;
                        info!(log, "old listener drained"; "listener" => name);
                    });
                }
            }
        }
        for (new, slot) in [
            (new_admin, &mut self.current.admin),
            (new_metrics, &mut self.current.metrics),
        ] {
            if let (Some(handle), Some(server)) = (new, slot.as_mut()) {
                let old = std::mem::replace(&mut server.handle, handle);
                // The request that asked for this reload may be in flight on it: graceful.
                actix_rt::spawn(async move { old.stop(true).await });
            }
        }
        info!(self.log, "listeners moved"; "tcp" => msg.tcp.as_deref(),
              "http" => msg.http.as_deref(), "https" => msg.tls.as_deref(),
              "admin" => msg.admin.as_deref(),
              "metrics" => msg.metrics.as_deref());
        Ok(())
    }
}

/// Query for the shutdown: the current listeners; from then on reloads cannot move them.
#[derive(Message)]
#[rtype(result = "Taken")]
pub struct TakeListeners;

impl Handler<TakeListeners> for ListenerManagerActor {
    type Result = MessageResult<TakeListeners>;

    fn handle(&mut self, _: TakeListeners, _: &mut Context<Self>) -> Self::Result {
        self.closed = true;
        let control = [&self.current.admin, &self.current.metrics];
        MessageResult(Taken {
            tcp: self.current.tcp.clone(),
            http: self.current.http.clone(),
            https: self.current.https.clone(),
            control: control
                .iter()
                .filter_map(|c| c.as_ref().map(|c| c.handle.clone()))
                .collect(),
        })
    }
}
