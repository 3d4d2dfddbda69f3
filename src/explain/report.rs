//! The answer of route explain, as JSON (snake_case fields like the rest of the admin API).
//! Every part is read from the snapshot without changing it.

use super::request::ExplainRequest;
use actix_web::http::header::HeaderMap;
use gogate_actors::auth::Rejection;
use gogate_actors::ratelimit::{LimitKey, RateLimitSnapshot};
use gogate_actors::snapshot::RouteSnapshot;
use gogate_actors::BackendState;
use gogate_config::{RateLimitConfig, RouteRateLimitConfig};
use serde::Serialize;
use std::net::IpAddr;

/// Where a request would go, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The configuration generation explained.
    pub generation: u64,
    pub request: ExplainRequest,
    /// What the gateway would do: forward, answer itself (a preflight) or reject, with the
    /// status it would send when it is its own.
    pub outcome: Outcome,
    /// The client address the gateway would derive (`trustedProxies` applied), when given.
    pub client_ip: Option<IpAddr>,
    /// The route chosen (`default` for the default upstream when no route matched).
    pub route: Option<RouteReport>,
    /// The other routes that matched too, with why they lost.
    pub also_matched: Vec<RivalReport>,
    /// Path and query the upstream would receive (after `stripPrefix`).
    pub upstream_path: Option<String>,
    /// The `Host` the upstream would receive (known once a backend is).
    pub host_header: Option<String>,
    pub split: Option<SplitReport>,
    /// The upstream of every split target, in the route's order.
    pub upstreams: Vec<UpstreamReport>,
    pub rate_limit: Option<RateLimitReport>,
    pub auth: Option<AuthReport>,
    pub cors: Option<CorsReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `forward`, `answer` (the gateway answers itself) or `reject`.
    pub action: &'static str,
    /// The status the gateway itself would send (`None` when the upstream answers).
    pub status: Option<u16>,
    pub reason: String,
    /// The backend that would get the request, when it is known now (`None` for a random
    /// split: see each upstream's `next`).
    pub backend: Option<String>,
}

impl Explanation {
    pub(super) fn new(generation: u64, req: &ExplainRequest) -> Self {
        Explanation {
            generation,
            request: req.clone(),
            outcome: Outcome {
                action: "reject",
                status: None,
                reason: String::new(),
                backend: None,
            },
            client_ip: None,
            route: None,
            also_matched: Vec::new(),
            upstream_path: None,
            host_header: None,
            split: None,
            upstreams: Vec::new(),
            rate_limit: None,
            auth: None,
            cors: None,
        }
    }

    fn finish(mut self, action: &'static str, status: Option<u16>, reason: &str) -> Self {
        self.outcome.action = action;
        self.outcome.status = status;
        self.outcome.reason = reason.to_string();
        self
    }

    /// The rate limit that applies has no token left for this request.
    pub(super) fn rate_limited(&self) -> bool {
        self.rate_limit.as_ref().and_then(|r| r.tokens) == Some(0)
    }

    pub(super) fn reject(self, status: u16, reason: &str) -> Self {
        self.finish("reject", Some(status), reason)
    }

    pub(super) fn answer(self, status: u16, reason: &str) -> Self {
        self.finish("answer", Some(status), reason)
    }

    pub(super) fn forward(mut self, backend: Option<String>, reason: &str) -> Self {
        self.outcome.backend = backend;
        self.finish("forward", None, reason)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    pub name: String,
    /// Position in specificity order (1 = most specific); `None` for the default upstream.
    pub rank: Option<usize>,
    /// What ranks it: host, path, conditions, file position.
    pub specificity: Vec<String>,
    pub strip_prefix: Option<String>,
    pub preserve_host: bool,
}

impl RouteReport {
    pub(super) fn chosen(route: &RouteSnapshot, rank: Option<usize>) -> Self {
        RouteReport {
            name: route.name.clone(),
            rank,
            specificity: route.rule.specificity(),
            strip_prefix: route.strip_prefix.clone(),
            preserve_host: route.preserve_host,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RivalReport {
    pub name: String,
    pub rank: usize,
    pub lost_because: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `single` (one target), `sticky` (the request's value chose) or `random` (by weight).
    pub mode: &'static str,
    /// The route's `sticky` setting.
    pub sticky: Option<String>,
    /// The request's sticky value, when it carries one.
    pub sticky_value: Option<String>,
    pub targets: Vec<TargetReport>,
    /// Index into `targets` of the one chosen, when it is known now.
    pub chosen: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub upstream: String,
    pub weight: u32,
    /// Share of the route's requests (weight / total).
    pub share: f64,
}

impl SplitReport {
    pub(super) fn new(route: &RouteSnapshot, headers: &HeaderMap) -> Self {
        let total: u64 = route.targets.iter().map(|t| u64::from(t.weight)).sum();
        let targets = route
            .targets
            .iter()
            .map(|t| TargetReport {
                upstream: t.upstream.name.clone(),
                weight: t.weight,
                share: if total == 0 {
                    0.0
                } else {
                    f64::from(t.weight) / total as f64
                },
            })
            .collect();
        let sticky_value = route
            .sticky
            .value(headers)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let (mode, chosen) = if route.targets.len() == 1 || total == 0 {
            ("single", Some(0))
        } else {
            match route.sticky_target(headers) {
                Some(i) => ("sticky", Some(i)),
                None => ("random", None),
            }
        };
        SplitReport {
            mode,
            sticky: route.sticky.describe(),
            sticky_value,
            targets,
            chosen,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReport {
    pub name: String,
    pub load_balancer: String,
    pub retry_attempts: u32,
    pub backends: Vec<BackendReport>,
    /// Configured host names with no address yet (or not resolved: `gogate explain` offline).
    pub unresolved: Vec<String>,
    /// The backend the balancer would pick next; `None` when none is eligible.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub addr: String,
    pub hostname: Option<String>,
    pub weight: u32,
    pub healthy: bool,
    pub draining: bool,
    pub circuit_breaker: &'static str,
    pub active_connections: i64,
    /// May it take this request now?
    pub eligible: bool,
    /// Why not, when it may not.
    pub why_not: Vec<&'static str>,
}

impl BackendReport {
    pub(super) fn new(b: &BackendState, eligible: bool) -> Self {
        let mut why_not = Vec::new();
        if !eligible {
            let breaker = b.breaker();
            for (bad, why) in [
                (b.weight() == 0, "weight 0"),
                (!b.healthy(), "unhealthy"),
                (b.draining(), "draining"),
                (breaker.as_str() == "open", "circuit breaker open"),
                (
                    breaker.as_str() == "half_open",
                    "circuit breaker half-open, every probe permit taken",
                ),
            ] {
                if bad {
                    why_not.push(why);
                }
            }
        }
        BackendReport {
            addr: b.addr.clone(),
            hostname: b.hostname().map(|h| h.to_string()),
            weight: b.weight(),
            healthy: b.healthy(),
            draining: b.draining(),
            circuit_breaker: b.breaker().as_str(),
            active_connections: b.active(),
            eligible,
            why_not,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitReport {
    /// `route` (the route's own block) or `server` (`server.rateLimit`).
    pub scope: &'static str,
    pub rate: f64,
    pub burst: u32,
    pub key_by: String,
    /// The bucket this request would take its token from.
    pub key: String,
    /// Tokens that bucket holds now (none taken); `None` when the key is unknown (a per-IP
    /// limit without `client`) or the bucket is the cluster store's. 0 = the request would
    /// get 429.
    pub tokens: Option<u32>,
    /// `scope: global` with a cluster store: the bucket is shared by every replica (and is
    /// not read by explain).
    pub shared: bool,
}

impl RateLimitReport {
    pub(super) fn new(
        limit: &RateLimitSnapshot,
        own: Option<&RouteRateLimitConfig>,
        server: &RateLimitConfig,
        headers: &HeaderMap,
        client: Option<IpAddr>,
        store: bool,
    ) -> Self {
        let shared = store && limit.limiter.global_id().is_some();
        let (scope, rate, burst) = match own.filter(|o| o.enabled) {
            Some(o) => ("route", o.rate, o.burst),
            None => ("server", server.rate, server.burst),
        };
        let key = limit.limiter.key();
        let tokens = match (key, client) {
            _ if shared => None,
            (LimitKey::Ip, None) => None,
            (_, ip) => {
                let ip = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                let rate_key = crate::proxy::ratelimit::rate_key(key, ip, headers);
                Some(limit.limiter.available(rate_key))
            }
        };
        let key_by = match key {
            LimitKey::Global => "global".to_string(),
            LimitKey::Ip => "ip".to_string(),
            LimitKey::Header(name) => format!("header:{name}"),
        };
        RateLimitReport {
            scope,
            rate,
            burst,
            key_by,
            key: super::limit_key(key, headers, client),
            tokens,
            shared,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthReport {
    /// `jwt`.
    pub kind: &'static str,
    /// `accepted`, or why the token is refused (the reasons of `gogate_auth_rejected_total`).
    pub token: &'static str,
}

impl AuthReport {
    pub(super) fn new(verdict: &Result<(), Rejection>) -> Self {
        AuthReport {
            kind: "jwt",
            token: match verdict {
                Ok(()) => "accepted",
                Err(r) => r.reason(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CorsReport {
    /// The request's `Origin`, if it sent one.
    pub origin: Option<String>,
    /// Whether the route's policy allows that origin (`None` without an `Origin`).
    pub origin_allowed: Option<bool>,
    /// The request is a preflight the gateway answers.
    pub preflight: bool,
}

impl CorsReport {
    pub(super) fn new(route: &RouteSnapshot, headers: &HeaderMap, preflight: bool) -> Self {
        let origin = headers.get("origin");
        CorsReport {
            origin: origin.map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned()),
            origin_allowed: match (&route.cors, origin) {
                (Some(policy), Some(o)) => Some(policy.allows_origin(o)),
                _ => None,
            },
            preflight,
        }
    }
}
