//! Wiring: binds every listener first (so a busy port fails the start with a clear message
//! before anything runs), starts the supervised actors, the data-plane listeners (owned by the
//! `listeners::ListenerManagerActor`, which moves them on reload), then the actix-web servers
//! for the admin API and the metrics endpoint (owned by it too). Must run inside an actix
//! system.

use crate::admin::{self, AdminState};
use crate::listeners::{
    self, drain_sessions, ControlServer, Current, ListenerManagerActor, ProxyParts, TakeListeners,
    Taken,
};
use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::web;
use futures_util::FutureExt;
use gogate_actors::cluster::StoreSettings;
use gogate_actors::config_actor::StopHealthChecks;
use gogate_actors::dns::resolve_at_start;
use gogate_actors::registry::shared::SharedSettings;
use gogate_actors::registry::RegistrySink;
use gogate_actors::reload::SetListenerSink;
use gogate_actors::supervise;
use gogate_actors::tcp::listener::{GetActiveSessions, StopAccepting};
use gogate_actors::tls::CertStore;
use gogate_actors::{
    ConfigActor, Metrics, MetricsActor, RegistryActor, Resolver, Stats, SystemResolver,
};
use gogate_config::Config;
use prometheus::IntGauge;
use slog::{info, warn, Logger};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to start a gateway.
pub struct GatewayOptions {
    pub config: Config,
    pub file: Option<PathBuf>,
    pub log: Logger,
    /// Worker threads per data-plane listener; `None` = the CPUs this process may run on.
    pub workers: Option<usize>,
    /// Admin token from the environment (`GOGATE_ADMIN_TOKEN`), used when the config has none.
    pub env_admin_token: Option<String>,
    /// Resolves backends given by host name; `None` = the system resolver. Tests inject their
    /// own to map names to their upstreams.
    pub resolver: Option<Arc<dyn Resolver>>,
}

/// A start failure (exit code 1).
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running gateway and the addresses it actually bound at start (ports may have been 0). A
/// reload may move the listeners (`ListenerManagerActor`); these fields keep the addresses
/// bound at start, and the new ones are those of the reloaded file (`GET /config`).
pub struct Gateway {
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS listener (`server.tls`), when enabled.
    pub https_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// Owns the current listeners (they move on reload).
    listeners: Addr<ListenerManagerActor>,
    config_actor: Addr<ConfigActor>,
    ready: Arc<AtomicBool>,
    /// Open L7 client connections, HTTP and HTTPS (for the shutdown logs).
    http_active: IntGauge,
    https_active: IntGauge,
    drain_timeout: Duration,
    log: Logger,
}

fn bind(key: &str, text: &str) -> Result<std::net::TcpListener, StartError> {
    listeners::bind(key, text).map_err(StartError)
}

/// Worker count from the CPU affinity (so `taskset -c 0` gives one worker).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Gateway {
    pub async fn start(opts: GatewayOptions) -> Result<Gateway, StartError> {
        let cfg = &opts.config;
        let s = &cfg.server;
        let log = opts.log.clone();
        let workers = opts.workers.unwrap_or_else(default_workers).max(1);

        // 0. The certificates: a bad file fails the start before anything is bound.
        let certs = s
            .tls
            .enabled
            .then(|| gogate_config::tls::load(&s.tls, opts.file.as_deref()))
            .transpose()
            .map_err(|e| StartError(e.to_string()))?;
        let cert_store = CertStore::new(certs);

        // 1. Bind everything before starting anything.
        let tcp_sock = (!s.listen_addr.is_empty())
            .then(|| bind("server.listenAddr", &s.listen_addr))
            .transpose()?;
        let http_sock = (!s.http_listen_addr.is_empty())
            .then(|| bind("server.httpListenAddr", &s.http_listen_addr))
            .transpose()?;
        let https_sock = s
            .tls
            .enabled
            .then(|| bind("server.tls.listenAddr", &s.tls.listen_addr))
            .transpose()?;
        let admin_sock = s
            .admin
            .enabled
            .then(|| bind("server.admin.listenAddr", &s.admin.listen_addr))
            .transpose()?;
        let metrics_shared =
            s.admin.enabled && s.metrics.enabled && s.metrics.listen_addr == s.admin.listen_addr;
        let metrics_sock = (s.metrics.enabled && !metrics_shared)
            .then(|| bind("server.metrics.listenAddr", &s.metrics.listen_addr))
            .transpose()?;
        let local =
            |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let (tcp_addr, http_addr, admin_addr) =
            (local(&tcp_sock), local(&http_sock), local(&admin_sock));
        let https_addr = local(&https_sock);
        let metrics_addr = if metrics_shared {
            admin_addr
        } else {
            local(&metrics_sock)
        };

        // 2. Control plane.
        let metrics = Metrics::new();
        let stats = Arc::new(Stats::default());
        // Host-name backends are resolved before anything serves (a name that does not
        // resolve only has no backend yet; it is retried).
        let resolver = opts
            .resolver
            .clone()
            .unwrap_or_else(|| Arc::new(SystemResolver));
        let dns = resolve_at_start(cfg, &resolver, &metrics, &log).await;
        let config_actor = ConfigActor::with_dns(
            cfg.clone(),
            opts.file.clone(),
            Arc::clone(&metrics),
            &log,
            resolver,
            dns,
        )
        .with_cert_store(Arc::clone(&cert_store));
        let cell = config_actor.cell();
        let config_addr = supervise::start("config", &log, move |ctx| {
            // Bounded: admin requests wait (`send`) when it is full, the registry delivers one
            // change at a time, the watcher's `try_send` drops (a pending check covers it).
            ctx.set_mailbox_capacity(CONFIG_MAILBOX);
            config_actor
        });
        let metrics_actor = {
            let (m, c) = (Arc::clone(&metrics), cell.clone());
            supervise::start("metrics", &log, move |_| MetricsActor::new(m, c))
        };
        // Registrations become registry backends through the config actor (RegistryUpsert /
        // RegistryRemove), so they join snapshots and survive reloads.
        let registry = s.registry.enabled.then(|| {
            let (rc, gauge, rlog) = (
                s.registry.clone(),
                metrics.registry_services.clone(),
                log.clone(),
            );
            let sink = RegistrySink::to(&config_addr);
            // `cluster.registry` with a store: the registry lives there, mirrored here.
            let shared = cfg
                .cluster
                .shares_registry()
                .then(|| StoreSettings::from_config(cfg, &metrics))
                .flatten()
                .map(|st| SharedSettings {
                    target: st.target.clone(),
                    prefix: st.prefix.clone(),
                    errors: metrics.store_errors.with_label_values(&["registry"]),
                });
            supervise::start("registry", &log, move |_| {
                let actor = RegistryActor::new(&rc, Some(sink), gauge, &rlog);
                match shared.clone() {
                    Some(settings) => actor.with_store(settings),
                    None => actor,
                }
            })
        });
        // `gogate_store_up` follows the store the published configuration names.
        actix_rt::spawn(gogate_actors::cluster::monitor(
            cell.clone(),
            metrics.store_up.clone(),
        ));
        // 3. The data-plane listeners, owned by the manager that moves them on reload.
        let limits = &s.limits;
        let drain_timeout = s.shutdown.drain_timeout.get();
        let http_active = metrics.connections_active.with_label_values(&["http"]);
        let https_active = metrics.connections_active.with_label_values(&["https"]);
        let parts = ProxyParts {
            cell: cell.clone(),
            stats: Arc::clone(&stats),
            metrics: Arc::clone(&metrics),
            log: log.clone(),
            workers,
            max_connections: limits.max_connections,
            header_timeout: limits.header_timeout.get(),
            idle: s.timeouts.idle.get(),
            drain_timeout,
            certs: Arc::clone(&cert_store),
            tls_min_version: s.tls.min_version.clone(),
        };
        let tcp = tcp_sock
            .map(|sock| listeners::start_tcp(sock, &parts))
            .transpose()
            .map_err(StartError)?;
        let http = http_sock
            .map(|sock| listeners::start_http(sock, &parts))
            .transpose()
            .map_err(StartError)?;
        let https = https_sock
            .map(|sock| listeners::start_https(sock, &parts))
            .transpose()
            .map_err(StartError)?;

        // 4. Admin and metrics.
        let ready = Arc::new(AtomicBool::new(false));
        let token = Some(s.admin.token.clone())
            .filter(|t| !t.is_empty())
            .or(opts.env_admin_token.clone().filter(|t| !t.is_empty()));
        let admin_state = AdminState {
            cell: cell.clone(),
            stats: Arc::clone(&stats),
            config_actor: config_addr.clone(),
            metrics_actor,
            registry,
            ready: Arc::clone(&ready),
            token,
            started: Instant::now(),
        };
        if let (Some(addr), None) = (admin_addr, &admin_state.token) {
            if !addr.ip().is_loopback() {
                warn!(log, "the admin API listens beyond loopback without a token: anyone who can reach it can read the configuration and stats; set server.admin.token or GOGATE_ADMIN_TOKEN (writes stay loopback-only until then)";
                      "admin" => addr.to_string());
            }
        }
        let metrics_path = s.metrics.path.clone();
        let admin = admin_sock
            .map(|sock| {
                let st = admin_state.clone();
                let path = metrics_shared.then(|| metrics_path.clone());
                ControlServer::start(sock, "server.admin.listenAddr", move |cfg| {
                    cfg.app_data(web::Data::new(st.clone()));
                    admin::configure(cfg, &st, path.as_deref());
                })
            })
            .transpose()
            .map_err(StartError)?;
        let metrics = metrics_sock
            .map(|sock| {
                let st = admin_state.clone();
                ControlServer::start(sock, "server.metrics.listenAddr", move |cfg| {
                    cfg.app_data(web::Data::new(st.clone()));
                    admin::configure_metrics(cfg, &metrics_path);
                })
            })
            .transpose()
            .map_err(StartError)?;
        let current = Current {
            tcp,
            http,
            https,
            admin,
            metrics,
        };
        let listeners = supervise::start("listeners", &log, move |_| {
            ListenerManagerActor::new(parts, current)
        });
        // Awaited, so no reload triggered after the start can miss the listener manager.
        config_addr
            .send(SetListenerSink(listeners.clone().recipient()))
            .await
            .map_err(|e| StartError(format!("configuration actor unavailable: {e}")))?;

        ready.store(true, Ordering::Relaxed);
        let show = |a: Option<SocketAddr>| {
            a.map(|a| a.to_string())
                .unwrap_or_else(|| "disabled".into())
        };
        info!(log, "gogate started"; "version" => env!("CARGO_PKG_VERSION"),
              "tcp" => show(tcp_addr), "http" => show(http_addr), "https" => show(https_addr),
              "admin" => show(admin_addr),
              "metrics" => show(metrics_addr), "workers" => workers);
        Ok(Gateway {
            http_addr,
            https_addr,
            tcp_addr,
            admin_addr,
            metrics_addr,
            listeners,
            config_actor: config_addr,
            ready,
            http_active,
            https_active,
            drain_timeout,
            log,
        })
    }

    /// The config actor, for reload triggers outside the admin API (`SIGHUP`, tests): send it
    /// `reload::Reload`, or `config_actor::SetLogLevelHandle` to let reloads set the log level.
    pub fn reload_handle(&self) -> Addr<ConfigActor> {
        self.config_actor.clone()
    }

    /// Stops gracefully (DESIGN A2): not ready, stop accepting, let in-flight requests and L4
    /// sessions finish until `shutdown.drainTimeout`, cut whatever remains, then close the admin
    /// and metrics listeners last (so `/health` answers throughout). actix-web's graceful stop
    /// (since 4.14.1) closes idle keep-alive connections at once and answers the request in
    /// progress on a busy one with `Connection: close`, so clients reconnect elsewhere.
    pub async fn shutdown(self) {
        let started = Instant::now();
        let deadline = started + self.drain_timeout;
        self.ready.store(false, Ordering::Relaxed);
        self.config_actor.do_send(StopHealthChecks);
        // The listeners current now (a reload may have moved them); reloads cannot move them
        // any more. Listeners retired by a reload drain on their own.
        let current = self.listeners.send(TakeListeners).await.unwrap_or(Taken {
            tcp: None,
            http: None,
            https: None,
            control: Vec::new(),
        });
        if let Some(l) = &current.tcp {
            let _ = l.send(StopAccepting).await;
        }
        let l4_active = match &current.tcp {
            Some(l) => l.send(GetActiveSessions).await.unwrap_or(0),
            None => 0,
        };
        info!(self.log, "shutdown: draining";
              "l7_connections" => self.http_active.get() + self.https_active.get(),
              "l4_sessions" => l4_active,
              "drain_timeout_ms" => self.drain_timeout.as_millis() as u64);
        let l7 = futures_util::future::join(
            drain_l7(current.http.as_ref(), &self.http_active, deadline),
            drain_l7(current.https.as_ref(), &self.https_active, deadline),
        )
        .map(|(a, b)| a + b);
        let l4 = async {
            match &current.tcp {
                Some(l) => drain_sessions(l, deadline).await,
                None => 0,
            }
        };
        let (l7_cut, l4_cut) = futures_util::future::join(l7, l4).await;
        if l7_cut > 0 || l4_cut > 0 {
            warn!(self.log, "shutdown: drain timeout reached, closed what remained";
                  "l7_connections" => l7_cut, "l4_sessions" => l4_cut);
        }
        for h in &current.control {
            h.stop(false).await;
        }
        info!(self.log, "shutdown complete";
              "duration_ms" => started.elapsed().as_millis() as u64,
              "l7_connections_cut" => l7_cut, "l4_sessions_cut" => l4_cut);
    }
}

/// Drains one L7 server (HTTP or HTTPS) until `deadline`; returns how many of its connections
/// were cut there. Graceful: stops accepting at once, waits for the requests in progress, and
/// at its (whole-second) shutdown timeout drops what remains. It tells nothing of what it
/// dropped, so the open connections (`active`) are sampled: those still open just before the
/// deadline (`sample_at`, taken then on purpose, as actix may drop them right at it) were cut
/// if the drain outlives it. Its workers look only once a second whether they are done, so the
/// drain ends as soon as no connection is left (the stop command is sent; the idle workers
/// finish on their own).
async fn drain_l7(h: Option<&ServerHandle>, active: &IntGauge, deadline: Instant) -> u64 {
    let Some(h) = h else {
        return 0;
    };
    let sample_at = deadline
        .checked_sub(Duration::from_millis(25))
        .unwrap_or(deadline);
    let stop = h.stop(true);
    tokio::pin!(stop);
    let mut open = active.get();
    let mut at_deadline = None;
    while open > 0 {
        let step = match at_deadline {
            None => sample_at.saturating_duration_since(Instant::now()),
            Some(_) => SAMPLE_EVERY,
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(step.min(SAMPLE_EVERY)) => {
                open = active.get();
            }
        }
        if at_deadline.is_none() && Instant::now() >= sample_at {
            at_deadline = Some(open);
        }
    }
    if Instant::now() >= deadline {
        at_deadline.unwrap_or(open).max(0) as u64
    } else {
        0
    }
}

/// Messages the configuration actor may have queued.
const CONFIG_MAILBOX: usize = 64;

/// How often the shutdown looks at what is still open.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
