//! What the data plane reads: one immutable [`GatewaySnapshot`] per applied configuration,
//! published through an atomic pointer ([`SnapshotCell`]). A request loads it once (a few
//! nanoseconds) and never waits for an actor. The backends inside are shared `Arc`s whose
//! atomics the actors keep updating, so health or drain changes need no new snapshot.

use crate::auth::RouteAuth;
use crate::backend::state::{ActiveGuard, BackendState, BreakerPosition};
use crate::balance::Balancer;
use crate::breaker::BreakerLink;
use crate::cors::CorsPolicy;
use crate::metrics::{IdleCounters, OutcomeCounters, RouteMetrics};
use crate::ratelimit::{KeyedLimiter, RateLimitSnapshot};
use crate::routing::{RouteRule, RouteTable};
use crate::split::{self, StickyKey};
use actix_http::header::{HeaderMap, HeaderName, HeaderValue};
use arc_swap::ArcSwap;
use gogate_config::{Cidr, Config, LimitsConfig, TcpPoolConfig, TimeoutsConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The atomically swappable pointer to the current snapshot (cheap to clone).
#[derive(Clone)]
pub struct SnapshotCell(Arc<ArcSwap<GatewaySnapshot>>);

impl SnapshotCell {
    pub fn new(snapshot: GatewaySnapshot) -> Self {
        SnapshotCell(Arc::new(ArcSwap::from_pointee(snapshot)))
    }

    /// The current snapshot (one atomic load plus a reference count).
    #[inline]
    pub fn load(&self) -> Arc<GatewaySnapshot> {
        self.0.load_full()
    }

    /// Publishes a new snapshot; requests already holding the old one finish with it.
    pub fn store(&self, snapshot: GatewaySnapshot) {
        self.0.store(Arc::new(snapshot));
    }
}

/// Everything one configuration generation means for the data plane.
pub struct GatewaySnapshot {
    pub generation: u64,
    pub config: Arc<Config>,
    pub upstreams: BTreeMap<String, Arc<UpstreamSnapshot>>,
    pub routes: RouteTable<Arc<RouteSnapshot>>,
    /// Serves requests no route matches; `None` when the default upstream has no backends.
    pub default_route: Option<Arc<RouteSnapshot>>,
    pub tcp: TcpSnapshot,
    /// Metrics of requests no route matched (`route="none"`).
    pub unmatched: RouteMetrics,
    /// `server.rateLimit` for requests no route matched.
    pub unmatched_rate_limit: Option<RateLimitSnapshot>,
    /// Limiters with per-key buckets (their sizes are exported as a gauge).
    pub keyed_rate_limits: Vec<KeyedLimiter>,
    pub trusted_proxies: Vec<Cidr>,
    pub limits: LimitsConfig,
    pub access_log: bool,
    /// Counts exchanges cut by `timeouts.idle`.
    pub idle_timeouts: IdleCounters,
    /// `jwt.forwardClaims` header names: removed from every forwarded request (anti-spoofing).
    pub claim_headers: Vec<HeaderName>,
    /// The cluster store (`cluster.store`), for `scope: global` rate limits.
    pub store: Option<Arc<crate::cluster::StoreSettings>>,
}

impl GatewaySnapshot {
    /// Every backend of every upstream, in upstream order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<BackendState>> {
        self.upstreams.values().flat_map(|u| u.backends.iter())
    }

    /// Whether `ip` is a trusted proxy whose X-Forwarded-For may be kept.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// Upstream connection settings that decide which per-worker HTTP client serves an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSettings {
    pub enabled: bool,
    pub max_idle: u32,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub connect_timeout: Duration,
}

impl PoolSettings {
    pub fn new(pool: &TcpPoolConfig, timeouts: &TimeoutsConfig) -> Self {
        PoolSettings {
            enabled: pool.enabled,
            max_idle: pool.max_idle,
            idle_timeout: pool.idle_timeout.get(),
            max_lifetime: pool.max_lifetime.get(),
            connect_timeout: timeouts.connect.get(),
        }
    }
}

/// One pool of backends and how to choose among them.
pub struct UpstreamSnapshot {
    pub name: String,
    pub backends: Vec<Arc<BackendState>>,
    pub balancer: Balancer,
    pub timeouts: TimeoutsConfig,
    /// Extra tries on another backend after a connect failure.
    pub retry_attempts: u32,
    pub pool: PoolSettings,
    /// The breaker's actor and settings; `None` when `circuitBreaker.enabled` is false.
    pub breaker: Option<BreakerLink>,
}

impl UpstreamSnapshot {
    /// Chooses an eligible backend not in `tried` (healthy, not draining, breaker not open).
    #[inline]
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        self.balancer.pick(
            self.backends.len(),
            |i| !tried.contains(&i) && self.backends[i].eligible(),
            |i| self.backends[i].active(),
        )
    }

    /// Picks a backend not in `tried` and marks a request in flight on it. A half-open backend
    /// is chosen only with one of its `successThreshold` probe permits, which the guard holds
    /// until the request ends; when another worker took the last permit first, the pick moves on.
    #[inline]
    pub fn acquire(&self, tried: &[usize]) -> Option<(usize, ActiveGuard)> {
        let limit = self.probe_limit();
        let mut lost: Vec<usize> = Vec::new(); // allocates only when a permit race is lost
        loop {
            let i = self.balancer.pick(
                self.backends.len(),
                |i| !tried.contains(&i) && !lost.contains(&i) && self.admits(i, limit),
                |i| self.backends[i].active(),
            )?;
            let b = &self.backends[i];
            if b.breaker() != BreakerPosition::HalfOpen {
                return Some((i, b.begin()));
            }
            match b.begin_probe(limit) {
                Some(guard) => return Some((i, guard)),
                None => lost.push(i),
            }
        }
    }

    /// The backend [`acquire`](Self::acquire) would choose for a new request now, moving
    /// nothing (no cursor, no permit): `/explain`.
    pub fn peek(&self) -> Option<usize> {
        let limit = self.probe_limit();
        self.balancer.peek(
            self.backends.len(),
            |i| self.admits(i, limit),
            |i| self.backends[i].active(),
        )
    }

    /// Whether backend `i` may take a new request: eligible (healthy, not draining, weighted,
    /// breaker not open) and, when half-open, with a probe permit left of `limit`.
    #[inline]
    pub fn admits(&self, i: usize, limit: u32) -> bool {
        let b = &self.backends[i];
        b.eligible() && (b.breaker() != BreakerPosition::HalfOpen || b.probe_room(limit))
    }

    /// How many half-open probe requests a backend admits (`successThreshold`; unbounded
    /// without a breaker).
    #[inline]
    pub fn probe_limit(&self) -> u32 {
        self.breaker
            .as_ref()
            .map_or(u32::MAX, |b| b.settings.success_threshold)
    }
}

/// A route's split target: an upstream, its weight, and the route×backend outcome counters.
pub struct RouteTarget {
    pub upstream: Arc<UpstreamSnapshot>,
    pub weight: u32,
    /// Parallel to `upstream.backends`.
    pub counters: Vec<OutcomeCounters>,
    /// `timeouts.request` of the route if set, else of the upstream.
    pub request_timeout: Duration,
}

/// One route, ready to serve.
pub struct RouteSnapshot {
    pub name: String,
    pub rule: RouteRule,
    pub targets: Vec<RouteTarget>,
    total_weight: u64,
    pub strip_prefix: Option<String>,
    pub preserve_host: bool,
    pub request_headers: CompiledHeaderRules,
    pub response_headers: CompiledHeaderRules,
    pub metrics: RouteMetrics,
    /// The limit this route's requests are checked against (its own, or the server's).
    pub rate_limit: Option<RateLimitSnapshot>,
    pub sticky: StickyKey,
    /// `auth: jwt`: the token check and its rejection counters.
    pub auth: Option<RouteAuth>,
    /// The `cors:` policy when the route says `cors: true` (one compiled policy, shared).
    pub cors: Option<Arc<CorsPolicy>>,
}

impl RouteSnapshot {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        rule: RouteRule,
        targets: Vec<RouteTarget>,
        strip_prefix: Option<String>,
        preserve_host: bool,
        request_headers: CompiledHeaderRules,
        response_headers: CompiledHeaderRules,
        metrics: RouteMetrics,
    ) -> Self {
        let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum();
        RouteSnapshot {
            name,
            rule,
            targets,
            total_weight,
            strip_prefix,
            preserve_host,
            request_headers,
            response_headers,
            metrics,
            rate_limit: None,
            sticky: StickyKey::None,
            auth: None,
            cors: None,
        }
    }

    pub(crate) fn with_auth(mut self, auth: Option<RouteAuth>) -> Self {
        self.auth = auth;
        self
    }

    pub(crate) fn with_rate_limit(mut self, limit: Option<RateLimitSnapshot>) -> Self {
        self.rate_limit = limit;
        self
    }

    pub(crate) fn with_sticky(mut self, sticky: StickyKey) -> Self {
        self.sticky = sticky;
        self
    }

    pub(crate) fn with_cors(mut self, cors: Option<Arc<CorsPolicy>>) -> Self {
        self.cors = cors;
        self
    }

    /// The split target for a request: sticky when the route is sticky and the request carries
    /// the value, else weighted random.
    #[inline]
    pub fn pick_target(&self, headers: &HeaderMap) -> &RouteTarget {
        match self.sticky_target(headers) {
            Some(i) => &self.targets[i],
            None => self.choose_target(),
        }
    }

    /// The index of the split target the request's sticky value maps to; `None` when the
    /// route does not split, is not sticky, or the request lacks the value (then the split is
    /// random).
    #[inline]
    pub fn sticky_target(&self, headers: &HeaderMap) -> Option<usize> {
        if self.targets.len() < 2 || self.total_weight == 0 {
            return None;
        }
        let value = self.sticky.value(headers)?;
        let point = split::sticky_point(value, self.total_weight);
        split::index_at(self.targets.iter().map(|t| u64::from(t.weight)), point)
    }

    /// Weighted random choice among the split targets (the only target when there is one).
    #[inline]
    pub fn choose_target(&self) -> &RouteTarget {
        if self.targets.len() == 1 || self.total_weight == 0 {
            return &self.targets[0];
        }
        let mut roll = fastrand::u64(0..self.total_weight);
        for t in &self.targets {
            let w = u64::from(t.weight);
            if roll < w {
                return t;
            }
            roll -= w;
        }
        &self.targets[self.targets.len() - 1]
    }
}

/// The L4 listener's view: the default upstream and its `listener="tcp"` counters.
pub struct TcpSnapshot {
    pub upstream: Arc<UpstreamSnapshot>,
    pub counters: Vec<OutcomeCounters>,
    pub metrics: RouteMetrics,
    /// `server.rateLimit` per accepted connection.
    pub rate_limit: Option<RateLimitSnapshot>,
}

/// `requestHeaders`/`responseHeaders` rules with names and values parsed once.
#[derive(Debug, Default, Clone)]
pub struct CompiledHeaderRules {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl CompiledHeaderRules {
    /// Compiles validated rules (invalid entries cannot reach here; they are skipped if so).
    pub fn new(rules: &gogate_config::HeaderRules) -> Self {
        let pair = |(k, v): (&String, &String)| {
            Some((
                HeaderName::try_from(k.as_str()).ok()?,
                HeaderValue::try_from(v.as_str()).ok()?,
            ))
        };
        CompiledHeaderRules {
            remove: rules
                .remove
                .iter()
                .filter_map(|k| HeaderName::try_from(k.as_str()).ok())
                .collect(),
            set: rules.set.iter().filter_map(pair).collect(),
            add: rules.add.iter().filter_map(pair).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies remove, then set (replacing), then add (appending).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (k, v) in &self.set {
            headers.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.add {
            headers.append(k.clone(), v.clone());
        }
    }
}
