//! Semantic checks after parsing: addresses parse, durations and thresholds are in range,
//! referenced upstreams exist, names are unique, and keys of features that have not landed yet
//! are refused loudly instead of being ignored. Every problem is collected (not just the first)
//! with the key path it belongs to; `lib.rs` adds file, line and column.

use crate::addr::{check_backend_addr, parse_listen_addr, Cidr};
use crate::error::ConfigError;
use crate::model::*;
use std::collections::HashSet;
use std::net::SocketAddr;

/// Largest backend or split weight (bounds the smooth weighted round-robin schedule).
pub const MAX_WEIGHT: u32 = 10_000;
/// Admin routes the metrics path may not shadow when both share a listener.
const ADMIN_PATHS: &[&str] = &[
    "/health",
    "/ready",
    "/stats",
    "/backends",
    "/config",
    "/reload",
    "/v1/services",
];

/// RFC 9110 token (header names, methods).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value we are willing to send: visible ASCII, spaces and tabs, no CR/LF.
pub fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

mod routes;

struct Validator<'a> {
    errors: Vec<ConfigError>,
    /// Whether the entry at a path lost something to a parse error (see `collect.rs`): a list
    /// that is empty for that reason is not reported empty, a removed upstream not unknown.
    incomplete: &'a dyn Fn(&str) -> bool,
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ConfigError::new(path, msg));
    }

    fn incomplete(&self, path: &str) -> bool {
        (self.incomplete)(path)
    }
}

/// Checks a parsed and normalised config; returns every problem found.
pub fn validate(cfg: &Config) -> Vec<ConfigError> {
    check(cfg, &|_| false)
}

/// [`validate`] of a configuration parsed with entries removed: `incomplete(path)` says whether
/// the entry at `path` lost anything to a parse error.
pub(crate) fn check(cfg: &Config, incomplete: &dyn Fn(&str) -> bool) -> Vec<ConfigError> {
    let mut v = Validator {
        errors: Vec::new(),
        incomplete,
    };
    let s = &cfg.server;
    let registry = s.registry.enabled;

    if let Some(jwt) = &cfg.jwt {
        v.errors.extend(crate::jwt::check(jwt));
    }
    if let Some(cors) = &cfg.cors {
        v.errors.extend(cors.check("cors"));
    }
    v.errors.extend(cfg.cluster.check());
    if s.http_transport.is_some() {
        v.err("server.http_transport", "has no meaning in gogate; upstream connection reuse is server.tcpPool and upstream timeouts are server.timeouts");
    }
    if s.registry.listen.is_some() {
        v.err("server.registry.listen", "the registry is served by the admin API (server.admin.listenAddr); remove registry.listen");
    }
    tls_section(&mut v, &s.tls);
    registry_section(&mut v, &s.registry);
    if registry && !s.admin.enabled {
        v.err("server.registry.enabled", "the registry is served by the admin API (/v1/services); set server.admin.enabled: true or disable the registry");
    }

    listeners(&mut v, s);
    if s.admin.token.chars().any(|c| !c.is_ascii_graphic()) {
        v.err("server.admin.token", "must be visible ASCII without spaces");
    }

    backends(&mut v, "server.backends", &s.backends);
    if s.dns_refresh.get() < MIN_DNS_REFRESH {
        v.err(
            "server.dnsRefresh",
            format!(
                "{} is too short; allowed {MIN_DNS_REFRESH:?} or longer",
                s.dns_refresh
            ),
        );
    }
    if s.backends.is_empty()
        && !s.listen_addr.is_empty()
        && !registry
        && !v.incomplete("server.backends")
    {
        v.err("server.listenAddr", "the L4 listener forwards to server.backends, which is empty; add backends or set listenAddr: \"\" to disable L4");
    }
    let first = v.errors.len();
    sections(
        &mut v,
        "server",
        &s.health,
        &s.circuit_breaker,
        &s.retry,
        &s.tcp_pool,
    );
    let server_sections = v.errors[first..].to_vec();
    for (i, cidr) in s.trusted_proxies.iter().enumerate() {
        if let Err(e) = Cidr::parse(cidr) {
            v.err(format!("server.trustedProxies[{i}]"), e);
        }
    }
    limits(&mut v, &s.limits);
    v.errors.extend(s.rate_limit.check("server.rateLimit"));

    for (name, up) in &cfg.upstreams {
        let path = format!("upstreams.{name}");
        if name == "default" {
            v.err(
                &path,
                "\"default\" is reserved for server.backends; choose another name",
            );
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            v.err(
                &path,
                "upstream names may use letters, digits, '.', '_' and '-'",
            );
        }
        if up.backends.is_empty() && !registry && !v.incomplete(&format!("{path}.backends")) {
            v.err(
                format!("{path}.backends"),
                "an upstream needs at least one backend",
            );
        }
        backends(&mut v, &format!("{path}.backends"), &up.backends);
        let eff = cfg.upstream_settings(name);
        let first = v.errors.len();
        sections(
            &mut v,
            &path,
            &eff.health,
            &eff.circuit_breaker,
            &eff.retry,
            &eff.tcp_pool,
        );
        // A bad `server.*` value the upstream inherits is reported once, at `server.*`.
        let own = serde_json::to_value(up).unwrap_or_default();
        for e in v.errors.split_off(first) {
            let rel = e.path.get(path.len() + 1..).unwrap_or_default();
            let set = own
                .pointer(&format!("/{}", rel.replace('.', "/")))
                .is_some();
            let inherited = !set
                && server_sections
                    .iter()
                    .any(|s| s.message == e.message && s.path.strip_prefix("server.") == Some(rel));
            if !inherited {
                v.errors.push(e);
            }
        }
    }

    routes::routes(&mut v, cfg);
    v.errors
}

fn listeners(v: &mut Validator, s: &ServerConfig) {
    let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
    let mut check =
        |v: &mut Validator, path: &'static str, text: &str| match parse_listen_addr(text) {
            Ok(a) => bound.push((path, a)),
            Err(e) => v.err(path, e),
        };
    if !s.listen_addr.is_empty() {
        check(v, "server.listenAddr", &s.listen_addr);
    }
    if !s.http_listen_addr.is_empty() {
        check(v, "server.httpListenAddr", &s.http_listen_addr);
    }
    if s.tls.enabled {
        check(v, "server.tls.listenAddr", &s.tls.listen_addr);
    }
    if s.admin.enabled {
        check(v, "server.admin.listenAddr", &s.admin.listen_addr);
    }
    if s.metrics.enabled {
        check(v, "server.metrics.listenAddr", &s.metrics.listen_addr);
        if !s.metrics.path.starts_with('/') {
            v.err("server.metrics.path", "must start with '/'");
        }
    }
    let shared_ok = |a: &str, b: &str| {
        matches!(
            (a, b),
            ("server.admin.listenAddr", "server.metrics.listenAddr")
        )
    };
    for (i, (pa, a)) in bound.iter().enumerate() {
        for (pb, b) in &bound[i + 1..] {
            let same_port = a.port() != 0 && a.port() == b.port();
            let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
            if same_port && overlap {
                if shared_ok(pa, pb) {
                    if a == b && ADMIN_PATHS.contains(&s.metrics.path.as_str()) {
                        v.err("server.metrics.path", format!("{} is an admin API path; the metrics and admin listeners share an address, so choose another path", s.metrics.path));
                    }
                    continue;
                }
                v.err(*pb, format!("address {b} conflicts with {pa} ({a})"));
            }
        }
    }
}

/// The shape of `server.tls`; the files themselves are read by `tls::load`.
fn tls_section(v: &mut Validator, t: &TlsConfig) {
    if crate::tls::protocol_versions(&t.min_version).is_none() {
        v.err(
            "server.tls.minVersion",
            format!(
                "invalid minVersion {:?}; allowed: {}",
                t.min_version,
                crate::tls::MIN_VERSIONS
            ),
        );
    }
    let mut pairs: Vec<(String, &str, &str)> = t
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("server.tls.certificates[{i}]"),
                c.cert_file.as_str(),
                c.key_file.as_str(),
            )
        })
        .collect();
    if !t.cert_file.is_empty() || !t.key_file.is_empty() {
        pairs.push(("server.tls".into(), &t.cert_file, &t.key_file));
    }
    for (key, cert, priv_key) in &pairs {
        if cert.is_empty() != priv_key.is_empty() {
            let missing = if cert.is_empty() {
                "certFile"
            } else {
                "keyFile"
            };
            v.err(
                format!("{key}.{missing}"),
                "certFile and keyFile go together; set both",
            );
        }
    }
    if t.enabled && pairs.is_empty() && !v.incomplete("server.tls.certificates") {
        v.err(
            "server.tls.certFile",
            "TLS is enabled without a certificate: set certFile and keyFile, or certificates",
        );
    }
}

fn registry_section(v: &mut Validator, r: &RegistryConfig) {
    for (key, d) in [
        ("defaultTtl", r.default_ttl),
        ("cleanupInterval", r.cleanup_interval),
    ] {
        if d.get().is_zero() {
            v.err(
                format!("server.registry.{key}"),
                "must be greater than zero",
            );
        }
    }
    if !(1..=MAX_REGISTRY_SERVICES).contains(&r.max_services) {
        v.err(
            "server.registry.maxServices",
            format!(
                "{} is out of range; allowed 1 to {MAX_REGISTRY_SERVICES}",
                r.max_services
            ),
        );
    }
}

/// Shortest `server.dnsRefresh`: a shorter period would have the gateway query its resolver
/// continuously.
pub const MIN_DNS_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// Upper bound of `registry.maxServices` (the registry map is bounded by it).
pub const MAX_REGISTRY_SERVICES: u32 = 1_000_000;

fn backends(v: &mut Validator, path: &str, list: &[BackendConfig]) {
    let mut seen = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        if let Err(e) = check_backend_addr(&b.addr) {
            v.err(format!("{path}[{i}].addr"), e);
        }
        if b.weight > MAX_WEIGHT {
            v.err(
                format!("{path}[{i}].weight"),
                format!("{} is too large; allowed 0 to {MAX_WEIGHT}", b.weight),
            );
        }
        if !seen.insert(b.addr.as_str()) {
            v.err(
                format!("{path}[{i}].addr"),
                format!("backend {} is listed twice", b.addr),
            );
        }
    }
}

fn sections(
    v: &mut Validator,
    base: &str,
    h: &HealthConfig,
    cb: &CircuitBreakerConfig,
    retry: &RetryConfig,
    pool: &TcpPoolConfig,
) {
    let range = |v: &mut Validator, path: String, val: u32, lo: u32, hi: u32| {
        if val < lo || val > hi {
            v.err(path, format!("{val} is out of range; allowed {lo} to {hi}"));
        }
    };
    range(
        v,
        format!("{base}.health.unhealthyThreshold"),
        h.unhealthy_threshold,
        1,
        100,
    );
    range(
        v,
        format!("{base}.health.healthyThreshold"),
        h.healthy_threshold,
        1,
        100,
    );
    if h.check_type == CheckType::Http && !h.http_path.starts_with('/') {
        v.err(format!("{base}.health.httpPath"), "must start with '/'");
    }
    range(
        v,
        format!("{base}.circuitBreaker.failureThreshold"),
        cb.failure_threshold,
        1,
        10_000,
    );
    range(
        v,
        format!("{base}.circuitBreaker.successThreshold"),
        cb.success_threshold,
        1,
        1_000,
    );
    range(v, format!("{base}.retry.attempts"), retry.attempts, 0, 10);
    range(
        v,
        format!("{base}.tcpPool.maxIdle"),
        pool.max_idle,
        0,
        100_000,
    );
}

fn limits(v: &mut Validator, l: &LimitsConfig) {
    if l.max_connections == 0 || l.max_connections > 1_000_000 {
        v.err(
            "server.limits.maxConnections",
            format!(
                "{} is out of range; allowed 1 to 1000000",
                l.max_connections
            ),
        );
    }
    if !(1024..=MAX_HEADER_BYTES_LIMIT).contains(&l.max_header_bytes) {
        v.err(
            "server.limits.maxHeaderBytes",
            format!(
                "{} is out of range; allowed 1024 to {MAX_HEADER_BYTES_LIMIT}",
                l.max_header_bytes
            ),
        );
    }
}

/// The HTTP parser's own header-block ceiling; `maxHeaderBytes` must stay below it.
pub const MAX_HEADER_BYTES_LIMIT: u32 = 32_768;
