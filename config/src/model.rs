//! The YAML schema: one struct per block, named after the key it parses (`HealthConfig` for
//! `health:`), camelCase keys with the snake_case aliases of the original binary. Every struct
//! denies unknown keys so a typo is an error, never a silently disabled feature. Defaults are
//! those of DESIGN B3/B10. Values are checked in `validate.rs`, not here.

pub use crate::cors::CorsConfig;
use crate::duration::Dur;
pub use crate::rate_limit::{KeyBy, RateLimitConfig, RouteRateLimitConfig, Scope};
pub use crate::sections::*;
pub use crate::sticky::Sticky;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    pub server: ServerConfig,
    /// Named pools beside the `default` one (`server.backends`).
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub logging: LoggingConfig,
    /// Token policy of routes with `auth: jwt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtConfig>,
    /// The CORS policy of routes with `cors: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// State shared with other replicas (registry, `scope: global` rate limits).
    pub cluster: crate::cluster::ClusterConfig,
}

/// `server:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerConfig {
    /// L4 listener; empty disables it.
    #[serde(alias = "listen", alias = "listen_addr")]
    pub listen_addr: String,
    /// L7 listener; empty disables it.
    #[serde(alias = "http_listen", alias = "http_listen_addr")]
    pub http_listen_addr: String,
    /// The `default` upstream.
    pub backends: Vec<BackendConfig>,
    /// How often backends given by host name are resolved again (DESIGN B11 "DNS").
    #[serde(alias = "dns_refresh")]
    pub dns_refresh: Dur,
    #[serde(alias = "load_balancer")]
    pub load_balancer: LbAlgorithm,
    pub health: HealthConfig,
    #[serde(alias = "rate_limit")]
    pub rate_limit: RateLimitConfig,
    #[serde(alias = "circuit_breaker")]
    pub circuit_breaker: CircuitBreakerConfig,
    pub retry: RetryConfig,
    pub timeouts: TimeoutsConfig,
    #[serde(alias = "tcp_pool")]
    pub tcp_pool: TcpPoolConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub registry: RegistryConfig,
    #[serde(alias = "trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    /// The original binary's `server.logging`; folded into the top-level `logging` at load.
    #[serde(skip_serializing)]
    pub logging: Option<LoggingConfig>,
    /// The original binary's `server.http_transport`; replaced by `tcpPool`/`timeouts` (error).
    #[serde(skip_serializing, alias = "httpTransport")]
    pub http_transport: Option<serde_yaml::Value>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: ":8080".into(),
            http_listen_addr: ":8081".into(),
            backends: Vec::new(),
            dns_refresh: Dur::secs(30),
            load_balancer: LbAlgorithm::RoundRobin,
            health: HealthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            retry: RetryConfig::default(),
            timeouts: TimeoutsConfig::default(),
            tcp_pool: TcpPoolConfig::default(),
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            registry: RegistryConfig::default(),
            trusted_proxies: Vec::new(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            logging: None,
            http_transport: None,
        }
    }
}

/// One backend: `host:port` and a weight (0 = never picked). A host name (not an IP literal) is
/// resolved at load and every `server.dnsRefresh`; each address it resolves to is a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    #[serde(alias = "address")]
    pub addr: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Load-balancing algorithm. Accepts `round_robin`, `round-robin`, `roundrobin` and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbAlgorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
}

impl LbAlgorithm {
    pub const ALLOWED: &'static str = "round_robin, weighted_round_robin, least_connections";

    pub fn as_str(self) -> &'static str {
        match self {
            LbAlgorithm::RoundRobin => "round_robin",
            LbAlgorithm::WeightedRoundRobin => "weighted_round_robin",
            LbAlgorithm::LeastConnections => "least_connections",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let norm: String = text
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect();
        match norm.as_str() {
            "roundrobin" | "rr" => Some(LbAlgorithm::RoundRobin),
            "weightedroundrobin" | "wrr" => Some(LbAlgorithm::WeightedRoundRobin),
            "leastconnections" | "leastconn" | "leastconns" => Some(LbAlgorithm::LeastConnections),
            _ => None,
        }
    }
}

impl Serialize for LbAlgorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LbAlgorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a load-balancing algorithm", |text| {
            LbAlgorithm::parse(text).ok_or_else(|| {
                format!(
                    "invalid loadBalancer {text:?}; allowed: {}",
                    LbAlgorithm::ALLOWED
                )
            })
        })
    }
}

/// Deserializes a scalar through `parse`. The error is raised while the scalar is read, so
/// serde_yaml gives it the value's own key path and position, not the enclosing mapping's.
pub(crate) fn parse_str<'de, D, T, F>(
    d: D,
    expecting: &'static str,
    parse: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<F>(F, &'static str);
    impl<T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(parse, expecting))
}

/// `tls:` TLS termination for L7 (rustls): the HTTPS listener, its certificates (chosen by SNI,
/// see `tls.rs`) and the lowest protocol version it accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsConfig {
    pub enabled: bool,
    #[serde(alias = "listen", alias = "listen_addr")]
    pub listen_addr: String,
    /// The default certificate (PEM chain, leaf first); relative to the config file's directory.
    #[serde(alias = "cert_file")]
    pub cert_file: String,
    #[serde(alias = "key_file")]
    pub key_file: String,
    /// Extra certificates, each chosen when the client's SNI matches one of its DNS names.
    pub certificates: Vec<CertificateConfig>,
    /// `"1.2"` or `"1.3"`.
    #[serde(alias = "min_version")]
    pub min_version: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen_addr: ":8443".into(),
            cert_file: String::new(),
            key_file: String::new(),
            certificates: Vec::new(),
            min_version: "1.2".into(),
        }
    }
}

impl TlsConfig {
    /// The address the HTTPS listener serves on: `listenAddr` when enabled, else `""` (none).
    pub fn active_addr(&self) -> &str {
        if self.enabled {
            &self.listen_addr
        } else {
            ""
        }
    }
}

/// One entry of `tls.certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CertificateConfig {
    #[serde(alias = "cert_file")]
    pub cert_file: String,
    #[serde(alias = "key_file")]
    pub key_file: String,
}

/// `admin:` the admin API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AdminConfig {
    pub enabled: bool,
    #[serde(alias = "listen", alias = "listen_addr")]
    pub listen_addr: String,
    /// Bearer token for the admin API; `GOGATE_ADMIN_TOKEN` is used when empty.
    pub token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_addr: "127.0.0.1:9090".into(),
            token: String::new(),
        }
    }
}

/// `metrics:` the Prometheus listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsConfig {
    pub enabled: bool,
    #[serde(alias = "listen", alias = "listen_addr")]
    pub listen_addr: String,
    pub path: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen_addr: ":9091".into(),
            path: "/metrics".into(),
        }
    }
}

/// `registry:` the TTL service registry, served on the admin API under `/v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RegistryConfig {
    pub enabled: bool,
    #[serde(alias = "default_ttl")]
    pub default_ttl: Dur,
    #[serde(alias = "cleanup_interval")]
    pub cleanup_interval: Dur,
    #[serde(alias = "max_services")]
    pub max_services: u32,
    /// The original binary's separate registry listener; the registry now lives on the admin API.
    #[serde(skip_serializing)]
    pub listen: Option<serde_yaml::Value>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_ttl: Dur::secs(30),
            cleanup_interval: Dur::secs(5),
            max_services: 1000,
            listen: None,
        }
    }
}

/// `limits:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LimitsConfig {
    #[serde(alias = "max_connections")]
    pub max_connections: u32,
    #[serde(alias = "max_header_bytes")]
    pub max_header_bytes: u32,
    /// 0 = unlimited.
    #[serde(alias = "max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(alias = "header_timeout")]
    pub header_timeout: Dur,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_header_bytes: 16_384,
            max_body_bytes: 10_485_760,
            header_timeout: Dur::secs(10),
        }
    }
}

/// `shutdown:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ShutdownConfig {
    #[serde(alias = "drain_timeout")]
    pub drain_timeout: Dur,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Dur::secs(30),
        }
    }
}

/// A named upstream under `upstreams:`; unset blocks inherit `server.*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct UpstreamConfig {
    pub backends: Vec<BackendConfig>,
    #[serde(alias = "load_balancer", skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LbAlgorithm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthOverride>,
    #[serde(alias = "circuit_breaker", skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsOverride>,
    #[serde(alias = "tcp_pool", skip_serializing_if = "Option::is_none")]
    pub tcp_pool: Option<TcpPoolOverride>,
}

/// One entry of `routes:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouteConfig {
    /// Metric label and log field; `route-N` (1-based file position) when empty.
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// Weighted traffic split; empty = the `default` upstream.
    pub upstreams: Vec<RouteUpstream>,
    /// `cookie:NAME` / `header:NAME` pins a value to one split target; `""` = random.
    pub sticky: Sticky,
    #[serde(alias = "strip_prefix")]
    pub strip_prefix: bool,
    #[serde(alias = "preserve_host")]
    pub preserve_host: bool,
    #[serde(alias = "request_headers")]
    pub request_headers: HeaderRules,
    #[serde(alias = "response_headers")]
    pub response_headers: HeaderRules,
    /// `jwt`: requests need a valid bearer token (the top-level `jwt:` policy); unset = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(alias = "rate_limit", skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RouteRateLimitConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsOverride>,
    /// Applies the top-level `cors:` policy (which must then exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<bool>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            matcher: MatchConfig::default(),
            upstreams: Vec::new(),
            sticky: Sticky::None,
            strip_prefix: false,
            preserve_host: true,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            auth: None,
            rate_limit: None,
            timeouts: None,
            cors: None,
        }
    }
}

impl RouteConfig {
    /// `auth: jwt` (any case): requests need a valid bearer token.
    pub fn requires_jwt(&self) -> bool {
        self.auth
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("jwt"))
    }
}

/// `match:` of a route. All set conditions must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MatchConfig {
    pub host: String,
    #[serde(alias = "path_prefix", alias = "prefix")]
    pub path_prefix: String,
    pub path: String,
    pub methods: Vec<String>,
    pub headers: BTreeMap<String, String>,
}

/// One target of a route's traffic split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteUpstream {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
}

/// `requestHeaders:` / `responseHeaders:` rewrite rules, applied remove → set → add.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HeaderRules {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    #[serde(alias = "warning")]
    Warn,
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `logging:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LoggingConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    #[serde(alias = "access_log")]
    pub access_log: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Json,
            access_log: true,
        }
    }
}
