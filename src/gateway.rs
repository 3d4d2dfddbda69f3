//! Wiring: binds every listener first (so a busy port fails the start with a clear message
//! before anything runs), starts the supervised actors, then the actix-web servers for the L7
//! proxy, the admin API and the metrics endpoint. Must run inside an actix system.

use crate::admin::{self, AdminState};
use crate::proxy::{self, ProxyWorker};
use actix::{Actor, Addr, Supervisor};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use gogate_actors::tcp::bind_listener;
use gogate_actors::tcp::listener::{GetActiveSessions, StopAccepting};
use gogate_actors::{ConfigActor, ListenerActor, Metrics, MetricsActor, Stats};
use gogate_config::{parse_listen_addr, Config};
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

/// A running gateway and the addresses it actually bound (ports may have been 0).
pub struct Gateway {
    pub http_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    proxy_server: Option<ServerHandle>,
    control_servers: Vec<ServerHandle>,
    listener: Option<Addr<ListenerActor>>,
    config_actor: Addr<ConfigActor>,
    ready: Arc<AtomicBool>,
    drain_timeout: Duration,
    log: Logger,
}

fn bind(key: &str, text: &str) -> Result<std::net::TcpListener, StartError> {
    let addr = parse_listen_addr(text).map_err(|e| StartError(format!("{key}: {e}")))?;
    bind_listener(addr).map_err(|e| StartError(format!("cannot bind {key} ({addr}): {e}")))
}

/// Worker count from the CPU affinity (so `taskset -c 0` gives one worker).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Counts an L7 client connection while it is open (dropped with the connection's extensions).
struct ConnSlot {
    stats: Arc<Stats>,
    gauge: IntGauge,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.stats
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

impl Gateway {
    pub async fn start(opts: GatewayOptions) -> Result<Gateway, StartError> {
        let cfg = &opts.config;
        let s = &cfg.server;
        let log = opts.log.clone();
        let workers = opts.workers.unwrap_or_else(default_workers).max(1);

        // 1. Bind everything before starting anything.
        let tcp_sock = (!s.listen_addr.is_empty())
            .then(|| bind("server.listenAddr", &s.listen_addr))
            .transpose()?;
        let http_sock = (!s.http_listen_addr.is_empty())
            .then(|| bind("server.httpListenAddr", &s.http_listen_addr))
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
        let metrics_addr = if metrics_shared {
            admin_addr
        } else {
            local(&metrics_sock)
        };

        // 2. Control plane.
        let metrics = Metrics::new();
        let stats = Arc::new(Stats::default());
        let config_actor =
            ConfigActor::new(cfg.clone(), opts.file.clone(), Arc::clone(&metrics), &log);
        let cell = config_actor.cell();
        let config_addr = Supervisor::start(move |_| config_actor);
        let metrics_actor = {
            let (m, c) = (Arc::clone(&metrics), cell.clone());
            Supervisor::start(move |_| MetricsActor::new(m, c))
        };
        let listener = match tcp_sock {
            Some(sock) => {
                let actor = ListenerActor::new(
                    sock,
                    cell.clone(),
                    &metrics,
                    Arc::clone(&stats),
                    workers,
                    &log,
                )
                .map_err(|e| StartError(format!("server.listenAddr: {e}")))?;
                Some(actor.start())
            }
            None => None,
        };

        // 3. L7 proxy.
        let limits = &s.limits;
        let drain_timeout = s.shutdown.drain_timeout.get();
        let proxy_server = match http_sock {
            Some(sock) => {
                let (cell, stats, plog) = (
                    cell.clone(),
                    Arc::clone(&stats),
                    log.new(slog::o!("listener" => "http")),
                );
                let conn_stats = Arc::clone(&stats);
                let conn_total = metrics.connections_total.with_label_values(&["http"]);
                let conn_active = metrics.connections_active.with_label_values(&["http"]);
                let per_worker = (limits.max_connections as usize).div_ceil(workers).max(1);
                let server = HttpServer::new(move || {
                    // Built once per worker thread: the awc clients inside are per worker.
                    let w = ProxyWorker::new(cell.clone(), Arc::clone(&stats), plog.clone());
                    App::new()
                        .app_data(web::Data::new(w))
                        .default_service(web::to(proxy::handle))
                })
                .on_connect(move |_, ext| {
                    conn_total.inc();
                    conn_active.inc();
                    conn_stats.connections_total.fetch_add(1, Ordering::Relaxed);
                    conn_stats
                        .connections_active
                        .fetch_add(1, Ordering::Relaxed);
                    ext.insert(ConnSlot {
                        stats: Arc::clone(&conn_stats),
                        gauge: conn_active.clone(),
                    });
                })
                .workers(workers)
                .disable_signals()
                .shutdown_timeout(drain_timeout.as_secs().max(1))
                .client_request_timeout(limits.header_timeout.get())
                .keep_alive(s.timeouts.idle.get())
                .max_connections(per_worker)
                .backlog(4096)
                .listen(sock)
                .map_err(|e| StartError(format!("server.httpListenAddr: {e}")))?
                .run();
                let handle = server.handle();
                actix_rt::spawn(server);
                Some(handle)
            }
            None => None,
        };

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
            ready: Arc::clone(&ready),
            token,
            started: Instant::now(),
        };
        let mut control_servers = Vec::new();
        let metrics_path = s.metrics.path.clone();
        if let Some(sock) = admin_sock {
            let st = admin_state.clone();
            let path = metrics_shared.then(|| metrics_path.clone());
            control_servers.push(control_server(
                sock,
                "server.admin.listenAddr",
                move |cfg| {
                    cfg.app_data(web::Data::new(st.clone()));
                    admin::configure(cfg);
                    if let Some(p) = &path {
                        admin::configure_metrics(cfg, p);
                    }
                },
            )?);
        }
        if let Some(sock) = metrics_sock {
            let st = admin_state.clone();
            control_servers.push(control_server(
                sock,
                "server.metrics.listenAddr",
                move |cfg| {
                    cfg.app_data(web::Data::new(st.clone()));
                    admin::configure_metrics(cfg, &metrics_path);
                },
            )?);
        }

        ready.store(true, Ordering::Relaxed);
        let show = |a: Option<SocketAddr>| {
            a.map(|a| a.to_string())
                .unwrap_or_else(|| "disabled".into())
        };
        info!(log, "gogate started"; "version" => env!("CARGO_PKG_VERSION"),
              "tcp" => show(tcp_addr), "http" => show(http_addr), "admin" => show(admin_addr),
              "metrics" => show(metrics_addr), "workers" => workers);
        Ok(Gateway {
            http_addr,
            tcp_addr,
            admin_addr,
            metrics_addr,
            proxy_server,
            control_servers,
            listener,
            config_actor: config_addr,
            ready,
            drain_timeout,
            log,
        })
    }

    /// The config actor, for reload triggers outside the admin API (`SIGHUP`, tests): send it
    /// `reload::Reload`, or `config_actor::SetLogLevelHandle` to let reloads set the log level.
    pub fn reload_handle(&self) -> Addr<ConfigActor> {
        self.config_actor.clone()
    }

    /// Stops gracefully: not ready, stop accepting, let in-flight requests and sessions finish
    /// within `shutdown.drainTimeout`, then close the admin and metrics listeners last.
    pub async fn shutdown(self) {
        info!(self.log, "shutting down"; "drain_timeout_s" => self.drain_timeout.as_secs_f64());
        self.ready.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + self.drain_timeout;
        if let Some(l) = &self.listener {
            let _ = l.send(StopAccepting).await;
        }
        if let Some(h) = &self.proxy_server {
            // Graceful: in-flight requests finish (bounded by the server's shutdown timeout).
            h.stop(true).await;
        }
        let mut cut = 0;
        if let Some(l) = &self.listener {
            loop {
                let active = l.send(GetActiveSessions).await.unwrap_or(0);
                if active == 0 || Instant::now() >= deadline {
                    cut = active;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if cut > 0 {
            warn!(self.log, "drain timeout reached; closing remaining tcp sessions"; "sessions" => cut);
        }
        for h in &self.control_servers {
            h.stop(false).await;
        }
        info!(self.log, "shutdown complete");
    }
}

fn control_server<F>(
    sock: std::net::TcpListener,
    key: &str,
    routes: F,
) -> Result<ServerHandle, StartError>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let server = HttpServer::new(move || App::new().configure(routes.clone()))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .client_request_timeout(Duration::from_secs(5))
        .keep_alive(Duration::from_secs(30))
        .max_connections(256)
        .listen(sock)
        .map_err(|e| StartError(format!("{key}: {e}")))?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}
