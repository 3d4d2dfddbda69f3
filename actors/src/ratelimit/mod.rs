//! Rate limiting (DESIGN B3/B10): a [`RateLimiter`] is one `rateLimit` block made live, a single
//! lock-free bucket for `keyBy: global` or a bounded map of buckets for `ip` and `header:NAME`.
//! Limiters are built with the snapshot: the server's L7 limiter is shared by every route
//! without its own block (one bucket set for all of them), a route's block gets its own, and
//! the L4 listener has a separate one (connections and requests are different units). Each use
//! site gets a [`RateLimitSnapshot`] carrying its resolved rejection counter, so a rejection
//! costs two atomic increments and no label lookup. Buckets start full after a reload.

mod bucket;
mod keyed;

pub use bucket::{BucketShape, Decision, TokenBucket};
pub use keyed::KeyedBuckets;

use crate::metrics::Metrics;
use crate::snapshot::SnapshotCell;
use crate::stats::Stats;
use actix_http::header::HeaderName;
use gogate_config::{KeyBy, RateLimitConfig, RouteConfig};
use prometheus::IntCounter;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What the data plane must extract from a request or connection for this limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Global,
    Ip,
    Header(HeaderName),
}

/// The key of one request or connection.
#[derive(Debug, Clone, Copy)]
pub enum RateKey<'a> {
    /// For `keyBy: global` (any key works; this one costs nothing).
    Global,
    Ip(IpAddr),
    /// The header's value; `None` (header absent) is one shared bucket.
    Header(Option<&'a [u8]>),
}

enum Buckets {
    Global(TokenBucket),
    Keyed(KeyedBuckets),
}

/// One live `rateLimit` block (global: shared by every worker thread).
pub struct RateLimiter {
    shape: BucketShape,
    key: LimitKey,
    epoch: Instant,
    buckets: Buckets,
    /// `scope: global` with a cluster store: the limit's name in the store (`server`,
    /// `route:NAME`); the buckets here are then the `onStoreDown: local` fallback.
    global: Option<Arc<str>>,
}

impl RateLimiter {
    /// A limiter for L7 requests.
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let key = match &cfg.key_by {
            KeyBy::Global => LimitKey::Global,
            KeyBy::Ip => LimitKey::Ip,
            KeyBy::Header(h) => HeaderName::try_from(h.as_str())
                .map(LimitKey::Header)
                .unwrap_or(LimitKey::Global),
        };
        let buckets = match key {
            LimitKey::Global => Buckets::Global(TokenBucket::new()),
            _ => Buckets::Keyed(KeyedBuckets::new(cfg.max_keys)),
        };
        RateLimiter {
            shape: BucketShape::new(cfg.rate, cfg.burst),
            key,
            epoch: Instant::now(),
            buckets,
            global: None,
        }
    }

    /// This limiter counted in the cluster store under `id`.
    pub fn shared_as(mut self, id: String) -> Self {
        self.global = Some(id.into());
        self
    }

    /// The limit's name in the cluster store, when it is global.
    pub fn global_id(&self) -> Option<&str> {
        self.global.as_deref()
    }

    pub fn shape(&self) -> &BucketShape {
        &self.shape
    }

    /// A limiter for L4 connections: `header:NAME` has no meaning there and becomes global.
    pub fn for_connections(cfg: &RateLimitConfig) -> Self {
        let mut cfg = cfg.clone();
        if matches!(cfg.key_by, KeyBy::Header(_)) {
            cfg.key_by = KeyBy::Global;
        }
        RateLimiter::new(&cfg)
    }

    pub fn key(&self) -> &LimitKey {
        &self.key
    }

    /// Takes a token for `key` now.
    #[inline]
    pub fn check(&self, key: RateKey<'_>) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(key, now)
    }

    /// Takes a token for `key` at `now` (nanoseconds since this limiter was built).
    pub fn check_at(&self, key: RateKey<'_>, now: u64) -> Decision {
        match &self.buckets {
            Buckets::Global(b) => b.try_take(&self.shape, now),
            Buckets::Keyed(map) => map
                .bucket(key_hash(map, key), now)
                .try_take(&self.shape, now),
        }
    }

    /// Tokens `key`'s bucket holds now (a key without a bucket yet has a full one), taking
    /// none and creating no bucket (`/explain`).
    pub fn available(&self, key: RateKey<'_>) -> u32 {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match &self.buckets {
            Buckets::Global(b) => b.available(&self.shape, now),
            Buckets::Keyed(map) => map
                .get(key_hash(map, key))
                .map_or(self.shape.burst(), |b| b.available(&self.shape, now)),
        }
    }

    /// Per-key buckets held now (0 for a global limiter).
    pub fn keys(&self) -> usize {
        match &self.buckets {
            Buckets::Global(_) => 0,
            Buckets::Keyed(map) => map.len(),
        }
    }
}

/// Where a key's bucket lives in a keyed map (kinds apart, so an IP never shares a header's).
#[inline]
fn key_hash(map: &KeyedBuckets, key: RateKey<'_>) -> u64 {
    match key {
        RateKey::Ip(ip) => map.hash((0u8, ip.to_canonical())),
        RateKey::Header(Some(v)) => map.hash((1u8, v)),
        RateKey::Header(None) | RateKey::Global => map.hash(2u8),
    }
}

/// A limiter as one listener × route uses it, with its rejection counter resolved.
pub struct RateLimitSnapshot {
    pub limiter: Arc<RateLimiter>,
    rejected: IntCounter,
}

impl RateLimitSnapshot {
    pub fn new(limiter: Arc<RateLimiter>, metrics: &Metrics, listener: &str, route: &str) -> Self {
        RateLimitSnapshot {
            rejected: metrics.rate_limited.with_label_values(&[listener, route]),
            limiter,
        }
    }

    /// Takes a token; a rejection is counted in the metric and in `/stats`.
    #[inline]
    pub fn check(&self, key: RateKey<'_>, stats: &Stats) -> Decision {
        let d = self.limiter.check(key);
        self.count(&d, stats);
        d
    }

    /// Counts a decision made elsewhere (the cluster store's bucket) like [`check`](Self::check)'s.
    #[inline]
    pub fn count(&self, d: &Decision, stats: &Stats) {
        if !d.allowed {
            self.rejected.inc();
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the L4 listener may serve a connection from `ip` (always, without `rateLimit`).
#[inline]
pub fn admit_connection(cell: &SnapshotCell, stats: &Stats, ip: IpAddr) -> bool {
    let snap = cell.load();
    match &snap.tcp.rate_limit {
        Some(limit) => limit.check(RateKey::Ip(ip), stats).allowed,
        None => true,
    }
}

/// One keyed limiter of a snapshot, for the `gogate_rate_limit_keys` gauge.
pub struct KeyedLimiter {
    pub listener: &'static str,
    /// `server`, or the name of the route whose own block it is.
    pub limit: String,
    pub limiter: Arc<RateLimiter>,
}

/// The limiters of one snapshot, built once per generation. A clone shares the buckets: the
/// config actor passes it back for rebuilds within a generation (registry changes), so those
/// do not refill them.
#[derive(Clone)]
pub struct RateLimits {
    /// `server.rateLimit` for L7 requests, shared by routes without their own block.
    http: Option<Arc<RateLimiter>>,
    /// `server.rateLimit` for L4 connections.
    tcp: Option<Arc<RateLimiter>>,
    /// Routes' own limiters, by route name.
    routes: Vec<(String, Arc<RateLimiter>)>,
    /// `scope: global` limits count in the cluster store (`cluster.store` with
    /// `cluster.rateLimit`); otherwise every limiter is this replica's own.
    shared: bool,
}

impl RateLimits {
    /// `shared`: the configuration's cluster store takes `scope: global` limits. L4 connection
    /// admission always counts locally (it is decided at accept, before any await).
    pub fn new(server: &RateLimitConfig, shared: bool) -> Self {
        let http = |cfg: &RateLimitConfig| {
            let l = RateLimiter::new(cfg);
            match shared && cfg.scope == gogate_config::Scope::Global {
                true => l.shared_as("server".into()),
                false => l,
            }
        };
        RateLimits {
            http: server.enabled.then(|| Arc::new(http(server))),
            tcp: server
                .enabled
                .then(|| Arc::new(RateLimiter::for_connections(server))),
            routes: Vec::new(),
            shared,
        }
    }

    /// The limit for requests served by `route`: its own block if it has one (none when that
    /// block says `enabled: false`), else the server's.
    pub fn for_route(
        &mut self,
        route: &RouteConfig,
        metrics: &Metrics,
    ) -> Option<RateLimitSnapshot> {
        let limiter = match &route.rate_limit {
            Some(own) if own.enabled => {
                if let Some((_, l)) = self.routes.iter().find(|(n, _)| *n == route.name) {
                    Arc::clone(l)
                } else {
                    let mut l = RateLimiter::new(&own.into());
                    if self.shared && own.scope == gogate_config::Scope::Global {
                        l = l.shared_as(format!("route:{}", route.name));
                    }
                    let own = Arc::new(l);
                    self.routes.push((route.name.clone(), Arc::clone(&own)));
                    own
                }
            }
            Some(_) => return None,
            None => Arc::clone(self.http.as_ref()?),
        };
        Some(RateLimitSnapshot::new(
            limiter,
            metrics,
            "http",
            &route.name,
        ))
    }

    /// The server's L7 limit under another route label (`default`, or `none` for no match).
    pub fn http(&self, metrics: &Metrics, route: &str) -> Option<RateLimitSnapshot> {
        let limiter = Arc::clone(self.http.as_ref()?);
        Some(RateLimitSnapshot::new(limiter, metrics, "http", route))
    }

    /// Every limiter with per-key buckets (global ones hold no map worth watching).
    pub fn keyed(&self) -> Vec<KeyedLimiter> {
        let server = [("http", &self.http), ("tcp", &self.tcp)]
            .into_iter()
            .filter_map(|(listener, l)| Some((listener, "server".to_string(), l.as_ref()?)));
        let routes = self
            .routes
            .iter()
            .map(|(name, l)| ("http", name.clone(), l));
        server
            .chain(routes)
            .filter(|(_, _, l)| l.key != LimitKey::Global)
            .map(|(listener, limit, l)| KeyedLimiter {
                listener,
                limit,
                limiter: Arc::clone(l),
            })
            .collect()
    }

    /// The server's L4 limit (`listener="tcp", route="default"`).
    pub fn tcp(&self, metrics: &Metrics) -> Option<RateLimitSnapshot> {
        let limiter = Arc::clone(self.tcp.as_ref()?);
        Some(RateLimitSnapshot::new(limiter, metrics, "tcp", "default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn cfg(key_by: KeyBy) -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            rate: 1.0,
            burst: 2,
            key_by,
            max_keys: 100,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn ip_keys_get_separate_buckets() {
        let l = RateLimiter::new(&cfg(KeyBy::Ip));
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let ok = |ip| l.check_at(RateKey::Ip(ip), S).allowed;
        assert!(ok(a) && ok(a) && !ok(a));
        assert!(ok(b) && ok(b) && !ok(b));
        // An IPv4-mapped IPv6 address is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(!ok(mapped));
        assert_eq!(l.keys(), 2);
    }

    #[test]
    fn requests_without_the_header_share_one_bucket() {
        let l = RateLimiter::new(&cfg(KeyBy::Header("x-api-key".into())));
        assert_eq!(
            l.key(),
            &LimitKey::Header(HeaderName::from_static("x-api-key"))
        );
        let ok = |v: Option<&[u8]>| l.check_at(RateKey::Header(v), S).allowed;
        assert!(ok(None) && ok(None) && !ok(None));
        assert!(ok(Some(b"k1")) && ok(Some(b"k1")) && !ok(Some(b"k1")));
        assert!(ok(Some(b"k2")));
    }

    #[test]
    fn global_ignores_the_key_and_l4_header_becomes_global() {
        let l = RateLimiter::new(&cfg(KeyBy::Global));
        let ip = "10.0.0.1".parse().unwrap();
        assert!(l.check_at(RateKey::Ip(ip), S).allowed);
        assert!(l.check_at(RateKey::Global, S).allowed);
        assert!(!l.check_at(RateKey::Header(None), S).allowed);
        let tcp = RateLimiter::for_connections(&cfg(KeyBy::Header("x".into())));
        assert_eq!(tcp.key(), &LimitKey::Global);
    }
}
