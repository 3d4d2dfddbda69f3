//! Builds a [`GatewaySnapshot`] from a validated config and the backend states the config actor
//! owns. Everything the request path would otherwise compute per request (route order, balancer
//! schedules, header names, metric label handles) is computed here, once per generation.

use crate::auth::{claim_header_names, AuthCounters, JwtVerifier, RouteAuth};
use crate::backend::state::BackendState;
use crate::balance::Balancer;
use crate::breaker::{BreakerActor, BreakerLink};
use crate::cors::CorsPolicy;
use crate::dns::is_host_name;
use crate::metrics::{IdleCounters, Metrics, OutcomeCounters, RouteMetrics};
use crate::ratelimit::RateLimits;
use crate::routing::{RouteRule, RouteTable};
use crate::snapshot::*;
use crate::split::StickyKey;
use gogate_config::{Cidr, Config, MatchConfig, DEFAULT_UPSTREAM};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Backend id (`upstream/addr`) → its shared state.
pub type BackendStates = HashMap<String, Arc<BackendState>>;

/// Identity of a backend within the gateway.
pub fn backend_id(upstream: &str, addr: &str) -> String {
    format!("{upstream}/{addr}")
}

/// The backends of upstream `name`: the static ones in file order (a host name in place, as the
/// addresses it resolved to in address order), then registry ones (any other state of that
/// upstream) by id, so the order is stable across rebuilds.
fn upstream_backends(
    name: &str,
    configured: &[gogate_config::BackendConfig],
    states: &BackendStates,
) -> Vec<Arc<BackendState>> {
    let mut out: Vec<Arc<BackendState>> = Vec::new();
    let mut listed: HashSet<String> = HashSet::new();
    for b in configured {
        let mut found: Vec<Arc<BackendState>> = if is_host_name(&b.addr) {
            states
                .values()
                .filter(|s| s.upstream == name && s.hostname().is_some_and(|h| *h == b.addr))
                .cloned()
                .collect()
        } else {
            states
                .get(&backend_id(name, &b.addr))
                .cloned()
                .into_iter()
                .collect()
        };
        found.sort_by_key(|s| (s.addr.parse::<SocketAddr>().ok(), s.id.clone()));
        for s in found {
            if listed.insert(s.id.clone()) {
                out.push(s);
            }
        }
    }
    let mut extra: Vec<Arc<BackendState>> = states
        .values()
        .filter(|b| b.upstream == name && !listed.contains(&b.id))
        .cloned()
        .collect();
    extra.sort_by(|a, b| a.id.cmp(&b.id));
    out.extend(extra);
    out
}

/// `limits`: fresh (`RateLimits::new`) for a new generation, or the previous build's to keep
/// the buckets when only backends changed.
pub fn build_snapshot(
    config: Arc<Config>,
    generation: u64,
    states: &BackendStates,
    metrics: &Metrics,
    breaker: &actix::Addr<BreakerActor>,
    limits: &mut RateLimits,
) -> GatewaySnapshot {
    let mut upstreams = BTreeMap::new();
    for name in config.upstream_names() {
        let s = config.upstream_settings(&name);
        let backends = upstream_backends(&name, &s.backends, states);
        let weights: Vec<u32> = backends.iter().map(|b| b.weight()).collect();
        let up = UpstreamSnapshot {
            name: name.clone(),
            balancer: Balancer::new(s.load_balancer, &weights),
            backends,
            timeouts: s.timeouts.clone(),
            retry_attempts: s.retry.attempts,
            pool: PoolSettings::new(&s.tcp_pool, &s.timeouts),
            breaker: s.circuit_breaker.enabled.then(|| BreakerLink {
                actor: breaker.clone(),
                dropped: metrics.messages_dropped.with_label_values(&["breaker"]),
                settings: (&s.circuit_breaker).into(),
            }),
        };
        upstreams.insert(name, Arc::new(up));
    }
    let default_up = Arc::clone(&upstreams[DEFAULT_UPSTREAM]);

    let target = |route: &str, name: &str, weight: u32, timeout: Option<std::time::Duration>| {
        let up = Arc::clone(&upstreams[name]);
        RouteTarget {
            counters: up
                .backends
                .iter()
                .map(|b| OutcomeCounters::new(metrics, "http", route, &b.addr))
                .collect(),
            request_timeout: timeout.unwrap_or(up.timeouts.request.get()),
            upstream: up,
            weight,
        }
    };

    // One compiled policy for every `auth: jwt` route of this generation.
    let verifier = config.jwt.as_ref().and_then(JwtVerifier::new).map(Arc::new);
    // One compiled policy, shared by every `cors: true` route.
    let cors = config.cors.as_ref().map(|c| Arc::new(CorsPolicy::new(c)));
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rule = RouteRule::new(&r.matcher, i);
            let timeout = r.timeouts.as_ref().and_then(|t| t.request).map(|d| d.get());
            let targets = r
                .upstreams
                .iter()
                .map(|u| target(&r.name, &u.name, u.weight, timeout))
                .collect();
            let strip = r
                .strip_prefix
                .then(|| rule.prefix().unwrap_or("/").to_string());
            let snap = RouteSnapshot::new(
                r.name.clone(),
                rule.clone(),
                targets,
                strip,
                r.preserve_host,
                CompiledHeaderRules::new(&r.request_headers),
                CompiledHeaderRules::new(&r.response_headers),
                RouteMetrics::new(metrics, "http", &r.name),
            )
            .with_rate_limit(limits.for_route(r, metrics))
            .with_sticky(StickyKey::new(&r.sticky))
            .with_auth(r.requires_jwt().then(|| RouteAuth {
                verifier: verifier.clone(),
                rejected: AuthCounters::new(metrics, &r.name),
            }))
            .with_cors(cors.clone().filter(|_| r.cors == Some(true)));
            (rule, Arc::new(snap))
        })
        .collect();

    // A default upstream whose only backends are host names that have not resolved yet still
    // serves unmatched requests (503, no eligible backend), rather than 404.
    let default_serves = !default_up.backends.is_empty() || !config.server.backends.is_empty();
    let default_route = default_serves.then(|| {
        let route = RouteSnapshot::new(
            DEFAULT_UPSTREAM.to_string(),
            RouteRule::new(&MatchConfig::default(), usize::MAX),
            vec![target(DEFAULT_UPSTREAM, DEFAULT_UPSTREAM, 1, None)],
            None,
            true,
            CompiledHeaderRules::default(),
            CompiledHeaderRules::default(),
            RouteMetrics::new(metrics, "http", DEFAULT_UPSTREAM),
        );
        Arc::new(route.with_rate_limit(limits.http(metrics, DEFAULT_UPSTREAM)))
    });

    let tcp = TcpSnapshot {
        counters: default_up
            .backends
            .iter()
            .map(|b| OutcomeCounters::new(metrics, "tcp", DEFAULT_UPSTREAM, &b.addr))
            .collect(),
        metrics: RouteMetrics::new(metrics, "tcp", DEFAULT_UPSTREAM),
        rate_limit: limits.tcp(metrics),
        upstream: default_up,
    };

    GatewaySnapshot {
        generation,
        trusted_proxies: config
            .server
            .trusted_proxies
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .collect(),
        limits: config.server.limits.clone(),
        access_log: config.logging.access_log,
        unmatched: RouteMetrics::new(metrics, "http", "none"),
        idle_timeouts: IdleCounters::new(metrics),
        unmatched_rate_limit: limits.http(metrics, "none"),
        keyed_rate_limits: limits.keyed(),
        claim_headers: claim_header_names(config.jwt.as_ref()),
        store: crate::cluster::StoreSettings::from_config(&config, metrics).map(Arc::new),
        routes: RouteTable::new(routes),
        default_route,
        tcp,
        upstreams,
        config,
    }
}
