//! `GET /ui/state`: everything the console shows, in one document it polls every second. Read
//! from the published snapshot (routes in specificity order, upstreams and their backends'
//! atomics), the gateway-wide counters (totals and the raw latency histogram: the page derives
//! rates and per-interval p50/p99 from the differences between two polls), the configuration
//! actor (the reload history) and the registry actor (services and the TTL they have left).
//! Nothing moves: no counter, cursor, permit or token; the data plane is not asked anything.
//! Secrets in route matches (a header condition on `X-Api-Key`) are redacted as `/config` does.

use super::super::{reload, time, AdminState};
use super::secured;
use actix_web::{web, HttpResponse};
use gogate_actors::config_actor::GetReloads;
use gogate_actors::registry::{GetServices, Service};
use gogate_actors::snapshot::{RouteSnapshot, UpstreamSnapshot};
use gogate_actors::stats::BUCKETS;
use gogate_actors::GatewaySnapshot;
use gogate_config::{redact, Config, Dur};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The bucket rule of `stats.latency.buckets`, for readers of the JSON.
const BUCKET_RULE: &str =
    "bucket i counts latencies of us microseconds with floor(4*log2(us+1)) = i: below 2^((i+1)/4)-1 us; the last bucket also holds longer ones";

pub(super) async fn state(s: web::Data<AdminState>) -> HttpResponse {
    let snap = s.cell.load();
    let reloads = match s.config_actor.send(GetReloads).await {
        Ok(list) => list.iter().map(reload::record_json).collect::<Vec<_>>(),
        Err(_) => {
            return secured(HttpResponse::ServiceUnavailable())
                .json(json!({"error": "configuration actor unavailable"}))
        }
    };
    let registry = match &s.registry {
        None => json!({"enabled": false, "services": []}),
        Some(actor) => match actor.send(GetServices::default()).await {
            Ok(list) => {
                let now = Instant::now();
                let services: Vec<Value> = list.iter().map(|svc| service(svc, now)).collect();
                json!({"enabled": true, "services": services})
            }
            Err(_) => json!({
                "enabled": true,
                "services": [],
                "error": "registry actor unavailable",
            }),
        },
    };
    let body = json!({
        "time": time::system_time_rfc3339(std::time::SystemTime::now()),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "generation": snap.generation,
        "listeners": listeners(&snap.config),
        "routes": snap.routes.values().enumerate().map(|(i, r)| route(&snap, r, Some(i + 1))).collect::<Vec<_>>(),
        "default_route": snap.default_route.as_ref().map(|r| route(&snap, r, None)),
        "upstreams": snap.upstreams.values().map(|u| upstream(&snap, u)).collect::<Vec<_>>(),
        "stats": stats(&s),
        "registry": registry,
        "reloads": reloads,
    });
    secured(HttpResponse::Ok()).json(body)
}

/// The listeners as the live configuration has them (`null` = disabled).
fn listeners(cfg: &Config) -> Value {
    let s = &cfg.server;
    let on = |enabled: bool, addr: &str| (enabled && !addr.is_empty()).then(|| addr.to_string());
    let metrics_shared =
        s.admin.enabled && s.metrics.enabled && s.metrics.listen_addr == s.admin.listen_addr;
    json!([
        {"name": "tcp", "key": "server.listenAddr", "addr": on(true, &s.listen_addr), "detail": "L4"},
        {"name": "http", "key": "server.httpListenAddr", "addr": on(true, &s.http_listen_addr), "detail": "L7"},
        {"name": "https", "key": "server.tls.listenAddr", "addr": on(s.tls.enabled, &s.tls.listen_addr), "detail": "L7, TLS"},
        {"name": "admin", "key": "server.admin.listenAddr", "addr": on(s.admin.enabled, &s.admin.listen_addr), "detail": "admin API and this console"},
        {"name": "metrics", "key": "server.metrics.listenAddr", "addr": on(s.metrics.enabled, &s.metrics.listen_addr),
         "detail": if metrics_shared { format!("{} (on the admin listener)", s.metrics.path) } else { s.metrics.path.clone() }},
    ])
}

/// One route: `rank` is its 1-based place in specificity order (`None` for the default route).
fn route(snap: &GatewaySnapshot, r: &RouteSnapshot, rank: Option<usize>) -> Value {
    let config = snap.config.routes.iter().find(|c| c.name == r.name);
    json!({
        "name": r.name,
        "rank": rank,
        "specificity": r.rule.specificity().into_iter().map(redact_word).collect::<Vec<_>>(),
        "match": config.map(|c| {
            let mut m = serde_json::to_value(&c.matcher).unwrap_or(Value::Null);
            redact::redact(&mut m);
            m
        }),
        "upstreams": r.targets.iter().map(|t| json!({"name": t.upstream.name, "weight": t.weight})).collect::<Vec<_>>(),
        "strip_prefix": r.strip_prefix,
        "preserve_host": r.preserve_host,
        "auth": r.auth.is_some(),
        "rate_limit": r.rate_limit.is_some(),
        "cors": r.cors.is_some(),
    })
}

/// A `header name: value` word with its value redacted when the name is a secret's (as
/// `GET /config` would redact it: `X-Api-Key`, `Authorization`, ...).
fn redact_word(word: String) -> String {
    match word
        .strip_prefix("header ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((name, _)) if redact::is_sensitive_key(name) => {
            format!("header {name}: {}", redact::REDACTED)
        }
        _ => word,
    }
}

fn upstream(snap: &GatewaySnapshot, u: &UpstreamSnapshot) -> Value {
    let settings = snap.config.upstream_settings(&u.name);
    let backends: Vec<Value> = u
        .backends
        .iter()
        .map(|b| super::super::backend_json(b))
        .collect();
    json!({
        "name": u.name,
        "load_balancer": settings.load_balancer.as_str(),
        "health_checks": settings.health.enabled,
        "circuit_breaker": u.breaker.is_some(),
        "retry_attempts": u.retry_attempts,
        "backends": backends,
    })
}

fn stats(s: &AdminState) -> Value {
    let st = &s.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let buckets = st.latency.counts();
    debug_assert_eq!(buckets.len(), BUCKETS);
    json!({
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
        "latency": {
            "buckets": buckets.to_vec(),
            "bucket_rule": BUCKET_RULE,
            "p50_ms_since_start": st.latency.quantile_ms(0.50),
            "p99_ms_since_start": st.latency.quantile_ms(0.99),
        },
    })
}

/// A registered service with the TTL it has left (`ttl_left_seconds`, 0 once past its deadline).
fn service(svc: &Service, now: Instant) -> Value {
    json!({
        "id": svc.id,
        "name": svc.name,
        "address": svc.address,
        "weight": svc.weight,
        "tags": svc.tags,
        "ttl": Dur(svc.ttl).to_string(),
        "ttl_seconds": svc.ttl.as_secs_f64(),
        "ttl_left_seconds": svc.expires_at.saturating_duration_since(now).as_secs_f64(),
        "registered_at": time::system_time_rfc3339(svc.registered_at),
        "last_heartbeat": time::system_time_rfc3339(svc.last_heartbeat),
    })
}
