//! The admin API (DESIGN B6) and the metrics endpoint (B7). Control plane: handlers read the
//! published snapshot for views and message actors for commands; nothing here is on the
//! request path of proxied traffic. Every admin route sits behind one guard (`guard.rs`, the
//! rules in `auth.rs`): token, browser and DNS-rebinding checks, body size and type.

mod auth;
mod explain;
mod guard;
mod reload;
pub mod time;
mod ui;

use crate::proxy::errors::json_error;
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use gogate_actors::config_actor::{GetConfigInfo, SetDrain};
use gogate_actors::metrics::GetMetricsText;
use gogate_actors::{ConfigActor, MetricsActor, RegistryActor, SnapshotCell, Stats};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Shared by the admin workers (all fields are thread-safe handles).
#[derive(Clone)]
pub struct AdminState {
    pub cell: SnapshotCell,
    pub stats: Arc<Stats>,
    pub config_actor: Addr<ConfigActor>,
    pub metrics_actor: Addr<MetricsActor>,
    /// `Some` when `server.registry.enabled`.
    pub registry: Option<Addr<RegistryActor>>,
    pub ready: Arc<AtomicBool>,
    pub token: Option<String>,
    pub started: Instant,
}

pub use auth::MAX_ADMIN_BODY;

/// Registers the admin routes on an app (the registry's only when it runs), all behind the
/// admin guard (`auth`), and the metrics route at `metrics_path` when metrics share the
/// admin listener (behind the guard too: the token protects it there).
pub fn configure(cfg: &mut web::ServiceConfig, state: &AdminState, metrics_path: Option<&str>) {
    let mut scope = web::scope("")
        .wrap(actix_web::middleware::from_fn(guard::guard))
        .app_data(web::PayloadConfig::new(MAX_ADMIN_BODY))
        .app_data(web::JsonConfig::default().limit(MAX_ADMIN_BODY))
        .route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/stats", web::get().to(stats))
        .route("/backends", web::get().to(backends))
        .route("/backends/{addr}/drain", web::post().to(drain))
        .route("/backends/{addr}/drain", web::delete().to(undrain))
        .route("/config", web::get().to(config))
        .route("/reload", web::post().to(reload::reload))
        .route("/reloads", web::get().to(reload::reloads))
        .route("/explain", web::get().to(explain::explain_route))
        .configure(ui::configure);
    if state.registry.is_some() {
        scope = scope.configure(registry::configure);
    }
    if let Some(path) = metrics_path {
        scope = scope.route(path, web::get().to(metrics));
    }
    cfg.service(scope);
}

/// Registers the metrics route at `path` (a listener of its own: open, for scrapers).
pub fn configure_metrics(cfg: &mut web::ServiceConfig, path: &str) {
    cfg.route(path, web::get().to(metrics));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(s: web::Data<AdminState>) -> HttpResponse {
    if s.ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not ready"}))
    }
}

mod registry;

async fn stats(s: web::Data<AdminState>) -> HttpResponse {
    let st = &s.stats;
    let snap = s.cell.load();
    let mut per_backend = Map::new();
    for b in snap.backends() {
        let entry = per_backend.entry(b.addr.clone()).or_insert_with(|| {
            json!({"requests_total": 0, "failures_total": 0, "bytes_sent": 0, "bytes_received": 0, "active_connections": 0})
        });
        for (key, v) in [
            ("requests_total", b.requests_total() as i64),
            ("failures_total", b.failures_total() as i64),
            ("bytes_sent", b.bytes_sent() as i64),
            ("bytes_received", b.bytes_received() as i64),
            ("active_connections", b.active()),
        ] {
            entry[key] = json!(entry[key].as_i64().unwrap_or(0) + v);
        }
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    HttpResponse::Ok().json(json!({
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "connections": {
            "total": load(&st.connections_total),
            "active": st.connections_active.load(Ordering::Relaxed),
        },
        "requests": {
            "total": load(&st.requests_total),
            "success": load(&st.requests_success),
            "failure": load(&st.requests_failure),
            "rate_limited": load(&st.rate_limited),
        },
        "latency_ms": {
            "p50": st.latency.quantile_ms(0.50),
            "p90": st.latency.quantile_ms(0.90),
            "p99": st.latency.quantile_ms(0.99),
        },
        "backends": Value::Object(per_backend),
    }))
}

/// One backend as `GET /backends` (and the console's state) shows it.
pub(crate) fn backend_json(b: &gogate_actors::BackendState) -> Value {
    let probe = b.probe_record();
    json!({
        "id": b.id,
        "upstream": b.upstream,
        "addr": b.addr,
        "hostname": b.hostname().as_deref(),
        "weight": b.weight(),
        "healthy": b.healthy(),
        "draining": b.draining(),
        "circuit_breaker": b.breaker().as_str(),
        "active_connections": b.active(),
        "requests_total": b.requests_total(),
        "failures_total": b.failures_total(),
        "last_check": probe.last_check_unix_ms.map(time::rfc3339_ms),
        "last_error": probe.last_error,
        "source": b.source.as_str(),
    })
}

async fn backends(s: web::Data<AdminState>) -> HttpResponse {
    let snap = s.cell.load();
    let list: Vec<Value> = snap.backends().map(|b| backend_json(b)).collect();
    HttpResponse::Ok().json(list)
}

async fn set_drain(s: web::Data<AdminState>, addr: String, drain: bool) -> HttpResponse {
    match s
        .config_actor
        .send(SetDrain {
            addr: addr.clone(),
            drain,
        })
        .await
    {
        Ok(Ok(n)) => {
            HttpResponse::Ok().json(json!({"addr": addr, "draining": drain, "backends": n}))
        }
        Ok(Err(_)) => json_error(
            StatusCode::NOT_FOUND,
            &format!("unknown backend {addr}"),
            "",
        ),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "configuration actor unavailable",
            "",
        ),
    }
}

async fn drain(s: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    set_drain(s, path.into_inner(), true).await
}

async fn undrain(s: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    set_drain(s, path.into_inner(), false).await
}

async fn config(s: web::Data<AdminState>) -> HttpResponse {
    match s.config_actor.send(GetConfigInfo).await {
        Ok(info) => HttpResponse::Ok().json(json!({
            "generation": info.generation,
            "file": info.file.as_ref().map(|f| f.display().to_string()),
            "loaded_at": time::system_time_rfc3339(info.loaded_at),
            "last_reload": reload::last_reload_json(info.last_reload.as_ref()),
            "config": info.config.redacted_json(),
        })),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "configuration actor unavailable",
            "",
        ),
    }
}

async fn metrics(s: web::Data<AdminState>) -> HttpResponse {
    match s.metrics_actor.send(GetMetricsText).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics actor unavailable",
            "",
        ),
    }
}
