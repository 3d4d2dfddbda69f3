//! Route explain (DESIGN B11): where a request would go, and why, on a published snapshot. It
//! walks the L7 request path's own steps with the data plane's own functions (host checks,
//! path normalisation, CORS preflight, route matching, the split, the balancer) but moves no
//! state: the balancer is peeked (`Balancer::peek`), no token is taken from a rate limit, no
//! half-open permit is held, no counter or cache is touched. `GET /explain` runs it on the
//! live snapshot; `gogate explain` on one built from a file (`offline`).

pub mod offline;
mod report;
pub mod request;

pub use report::*;
pub use request::ExplainRequest;

use crate::proxy::headers;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use gogate_actors::cors::{is_preflight, requested_method};
use gogate_actors::dns::is_host_name;
use gogate_actors::ratelimit::LimitKey;
use gogate_actors::snapshot::RouteSnapshot;
use gogate_actors::{GatewaySnapshot, UpstreamSnapshot};
use std::sync::Arc;

/// Explains `req` against `snap`. `req` was checked when it was built (`ExplainRequest`).
pub fn explain(snap: &GatewaySnapshot, req: &ExplainRequest) -> Explanation {
    let mut out = Explanation::new(snap.generation, req);
    let Ok(headers) = req.header_map() else {
        return out.reject(400, "malformed request headers");
    };
    if let Some(why) = headers::host_problem(&headers) {
        return out.reject(400, why);
    }
    let normal = match gogate_actors::path::normalize(req.path_only()) {
        Ok(n) => n,
        Err(e) => return out.reject(400, e.message()),
    };
    let client = req
        .client
        .map(|peer| headers::forwarded(snap, peer, &headers).client_ip);
    out.client_ip = client;

    // A CORS preflight is routed as the request it announces and answered by the gateway.
    if is_preflight(&req.method, &headers) {
        let method = requested_method(&headers).unwrap_or("OPTIONS");
        let route = crate::proxy::with_facts(&headers, None, &normal.matching, method, |f| {
            snap.routes.find(f).map(|(_, r)| Arc::clone(r))
        });
        if let Some(route) = route.filter(|r| r.cors.is_some()) {
            let verdict = route.cors.as_ref().map(|p| p.preflight(&headers));
            out.route = Some(RouteReport::chosen(&route, None));
            out.cors = Some(CorsReport::new(&route, &headers, true));
            return match verdict {
                Some(Err(why)) => out.reject(403, why.message()),
                _ => out.answer(204, "CORS preflight answered by the gateway"),
            };
        }
    }

    let (matched, rivals) =
        crate::proxy::with_facts(&headers, None, &normal.matching, &req.method, |f| {
            let all: Vec<(usize, Arc<RouteSnapshot>)> = snap
                .routes
                .matching(f)
                .map(|(rank, _, r)| (rank, Arc::clone(r)))
                .collect();
            let mut it = all.into_iter();
            (it.next(), it.collect::<Vec<_>>())
        });
    let route = match matched {
        Some((rank, route)) => {
            out.route = Some(RouteReport::chosen(&route, Some(rank)));
            out.also_matched = rivals
                .iter()
                .map(|(rank, r)| RivalReport {
                    name: r.name.clone(),
                    rank: *rank,
                    lost_because: format!("{} has {}", route.name, route.rule.beats(&r.rule)),
                })
                .collect();
            route
        }
        None => match &snap.default_route {
            Some(d) => {
                out.route = Some(RouteReport::chosen(d, None));
                Arc::clone(d)
            }
            None => {
                out.rate_limit = snap.unmatched_rate_limit.as_ref().map(|l| {
                    RateLimitReport::new(
                        l,
                        None,
                        &snap.config.server.rate_limit,
                        &headers,
                        client,
                        snap.store.is_some(),
                    )
                });
                return out.reject(
                    404,
                    "no route matches and the default upstream has no backends",
                );
            }
        },
    };
    let config = snap.config.routes.iter().find(|r| r.name == route.name);
    out.upstream_path = Some(crate::proxy::forward::upstream_path_of(
        &normal.forward,
        req.query(),
        &route,
    ));
    out.cors = route
        .cors
        .is_some()
        .then(|| CorsReport::new(&route, &headers, false));
    out.rate_limit = route.rate_limit.as_ref().map(|l| {
        let own = config.and_then(|c| c.rate_limit.as_ref());
        RateLimitReport::new(
            l,
            own,
            &snap.config.server.rate_limit,
            &headers,
            client,
            snap.store.is_some(),
        )
    });
    if out.rate_limited() {
        return out.reject(429, "rate limited");
    }
    if let Some(auth) = &route.auth {
        let verdict = match &auth.verifier {
            Some(v) => v.check(headers.get_all(AUTHORIZATION)).map(|_| ()),
            None => Err(gogate_actors::auth::Rejection::Algorithm),
        };
        out.auth = Some(AuthReport::new(&verdict));
        if let Err(r) = verdict {
            let why = if r.invalid_token() {
                "invalid token"
            } else {
                "missing token"
            };
            out.split = Some(SplitReport::new(&route, &headers));
            return out.reject(401, why);
        }
    }

    let split = SplitReport::new(&route, &headers);
    let chosen = split.chosen;
    out.upstreams = route
        .targets
        .iter()
        .map(|t| upstream_report(snap, &t.upstream))
        .collect();
    out.split = Some(split);
    // The request's fate is known when the target is: a single one, or the sticky one.
    let Some(t) = chosen else {
        let any = out.upstreams.iter().any(|u| u.next.is_some());
        return match any {
            true => out.forward(None, "split at random by weight; see each upstream's next"),
            false => out.reject(503, "no healthy backend available"),
        };
    };
    let target = &route.targets[t];
    let up = &out.upstreams[t];
    match up.next.clone() {
        Some(next) => {
            out.host_header = host_header(&route, &headers, &target.upstream, &next);
            let why = format!("upstream {}, backend {next}", target.upstream.name);
            out.forward(Some(next), &why)
        }
        None if target.upstream.breaker_blocked() => out.reject(503, "circuit open"),
        None => out.reject(503, "no healthy backend available"),
    }
}

/// One split target's upstream: every backend with its eligibility, and the next pick.
fn upstream_report(snap: &GatewaySnapshot, up: &UpstreamSnapshot) -> UpstreamReport {
    let limit = up.probe_limit();
    let backends = up
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| BackendReport::new(b, up.admits(i, limit)))
        .collect();
    let settings = snap.config.upstream_settings(&up.name);
    // A host name with no address yet has no backend: say so rather than leave it out.
    let unresolved = settings
        .backends
        .iter()
        .filter(|c| is_host_name(&c.addr))
        .filter(|c| {
            !up.backends
                .iter()
                .any(|b| b.hostname().is_some_and(|h| *h == c.addr))
        })
        .map(|c| c.addr.clone())
        .collect();
    UpstreamReport {
        name: up.name.clone(),
        load_balancer: settings.load_balancer.as_str().to_string(),
        retry_attempts: up.retry_attempts,
        backends,
        unresolved,
        next: up.peek().map(|i| up.backends[i].addr.clone()),
    }
}

/// The `Host` the upstream would receive from backend `next`.
fn host_header(
    route: &RouteSnapshot,
    headers: &HeaderMap,
    up: &UpstreamSnapshot,
    next: &str,
) -> Option<String> {
    if route.preserve_host {
        return headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    let b = up.backends.iter().find(|b| b.addr == next)?;
    Some(b.with_host(str::to_string))
}

/// The key a limiter with `key` would count this request under.
fn limit_key(key: &LimitKey, headers: &HeaderMap, client: Option<std::net::IpAddr>) -> String {
    match key {
        LimitKey::Global => "global (one bucket for every request)".into(),
        LimitKey::Ip => match client {
            Some(ip) => format!("ip {ip}"),
            None => "ip (the client address; pass client=IP to see it)".into(),
        },
        LimitKey::Header(name) => match headers.get(name).map(|v| v.to_str()) {
            Some(Ok(v)) => format!("header {name}: {v}"),
            Some(Err(_)) => format!("header {name} (binary value)"),
            None => format!("header {name} absent (the shared bucket of requests without it)"),
        },
    }
}
