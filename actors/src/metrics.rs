//! The Prometheus registry (DESIGN B7) and the `MetricsActor` that owns it. Per-request metrics
//! are atomics incremented directly by the data plane through label handles resolved when a
//! snapshot is built; per-backend gauges and byte counters are derived from the published
//! backend atomics when Prometheus scrapes, so the request path never touches a label map.

use crate::panics::{self, PanicSite};
use crate::snapshot::SnapshotCell;
use actix::prelude::*;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every gogate metric family, registered once at start.
pub struct Metrics {
    pub registry: Registry,
    pub requests_total: IntCounterVec,
    pub http_responses: IntCounterVec,
    pub request_duration: HistogramVec,
    pub connections_total: IntCounterVec,
    pub connections_active: IntGaugeVec,
    pub backend_healthy: IntGaugeVec,
    pub backend_active: IntGaugeVec,
    pub backend_bytes_sent: IntCounterVec,
    pub backend_bytes_received: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub rate_limited: IntCounterVec,
    /// Requests refused by a route's `auth: jwt`, by route and reason.
    pub auth_rejected: IntCounterVec,
    pub rate_limit_keys: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub dns_resolutions: IntCounterVec,
    pub registry_services: IntGauge,
    pub uptime: Gauge,
    /// Messages a full actor mailbox refused (`try_send` on a bounded mailbox), by actor.
    pub messages_dropped: IntCounterVec,
    /// Panics caught while serving (a request, a connection, an actor), by where.
    pub panics: IntCounterVec,
    /// Client connections refused at accept, by listener and reason.
    pub connections_rejected: IntCounterVec,
    /// Log records dropped because stdout could not keep up (derived at scrape time).
    pub log_dropped: IntCounter,
    /// Exchanges cut because a stream fell silent for `timeouts.idle`, by which stream.
    pub idle_timeouts: IntCounterVec,
    /// TLS handshakes that failed on the HTTPS listener, by reason (`error`, `timeout`).
    pub tls_handshake_errors: IntCounterVec,
    /// 1 while the cluster store answers (`cluster.store`), else 0; 0 without a store.
    pub store_up: IntGauge,
    /// Cluster store operations that failed or timed out, by operation.
    pub store_errors: IntCounterVec,
    started: Instant,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("gogate metric names are unique");
    c
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let m = Metrics {
            requests_total: counter(
                "gogate_requests_total",
                "Proxied requests (http) and sessions (tcp) by outcome.",
                &["listener", "route", "backend", "status"],
            ),
            http_responses: counter(
                "gogate_http_responses_total",
                "HTTP responses sent to clients by status code.",
                &["route", "code"],
            ),
            request_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "gogate_request_duration_seconds",
                        "Time from request arrival to response headers (http) or session end (tcp).",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    &["listener", "route"],
                )
                .expect("valid metric"),
            ),
            connections_total: counter(
                "gogate_connections_total",
                "Client connections accepted.",
                &["listener"],
            ),
            connections_active: gauge(
                "gogate_connections_active",
                "Client connections open now.",
                &["listener"],
            ),
            backend_healthy: gauge(
                "gogate_backend_healthy",
                "1 when the backend passes health checks.",
                &["upstream", "backend"],
            ),
            backend_active: gauge(
                "gogate_backend_connections_active",
                "Requests and sessions in flight to the backend.",
                &["upstream", "backend"],
            ),
            backend_bytes_sent: counter(
                "gogate_backend_bytes_sent_total",
                "Bytes sent to the backend.",
                &["backend"],
            ),
            backend_bytes_received: counter(
                "gogate_backend_bytes_received_total",
                "Bytes received from the backend.",
                &["backend"],
            ),
            breaker_state: gauge(
                "gogate_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                &["upstream", "backend"],
            ),
            rate_limited: counter(
                "gogate_rate_limit_rejected_total",
                "Requests and connections rejected by a rate limit.",
                &["listener", "route"],
            ),
            auth_rejected: counter(
                "gogate_auth_rejected_total",
                "Requests refused by a route's JWT check (401), by reason.",
                &["route", "reason"],
            ),
            rate_limit_keys: gauge(
                "gogate_rate_limit_keys",
                "Per-key rate-limit buckets held (bounded by rateLimit.maxKeys).",
                &["listener", "limit"],
            ),
            config_reloads: counter(
                "gogate_config_reloads_total",
                "Configuration reloads by result.",
                &["result"],
            ),
            dns_resolutions: counter(
                "gogate_dns_resolutions_total",
                "Lookups of backend host names by result (a failure keeps the last good answer).",
                &["result"],
            ),
            registry_services: reg(
                &r,
                IntGauge::new("gogate_registry_services", "Services in the registry.")
                    .expect("valid metric"),
            ),
            uptime: reg(
                &r,
                Gauge::new("gogate_uptime_seconds", "Seconds since gogate started.")
                    .expect("valid metric"),
            ),
            store_up: reg(
                &r,
                IntGauge::new(
                    "gogate_store_up",
                    "1 while the cluster store (cluster.store) answers, else 0.",
                )
                .expect("valid metric"),
            ),
            store_errors: counter(
                "gogate_store_errors_total",
                "Cluster store operations that failed or timed out, by operation.",
                &["op"],
            ),
            messages_dropped: counter(
                "gogate_actor_messages_dropped_total",
                "Messages dropped because an actor's bounded mailbox was full.",
                &["actor"],
            ),
            panics: counter(
                "gogate_panics_total",
                "Panics caught and contained (the request, session or actor restarted).",
                &["where"],
            ),
            connections_rejected: counter(
                "gogate_connections_rejected_total",
                "Client connections refused at accept.",
                &["listener", "reason"],
            ),
            idle_timeouts: counter(
                "gogate_idle_timeouts_total",
                "Exchanges cut after timeouts.idle without a byte, by what fell silent.",
                &["kind"],
            ),
            tls_handshake_errors: counter(
                "gogate_tls_handshake_errors_total",
                "TLS handshakes that failed on the HTTPS listener (bad client hello, no shared version or cipher, unknown certificate, timeout).",
                &["reason"],
            ),
            log_dropped: reg(
                &r,
                IntCounter::new(
                    "gogate_log_records_dropped_total",
                    "Log records dropped because the log writer could not keep up.",
                )
                .expect("valid metric"),
            ),
            started: Instant::now(),
            registry: r,
        };
        for result in ["success", "failure"] {
            m.config_reloads.with_label_values(&[result]);
            m.dns_resolutions.with_label_values(&[result]);
        }
        // Families whose series should read 0 before anything happens.
        for actor in ["breaker", "config"] {
            m.messages_dropped.with_label_values(&[actor]);
        }
        for reason in ["error", "timeout"] {
            m.tls_handshake_errors.with_label_values(&[reason]);
        }
        for listener in ["http", "tcp"] {
            m.connections_rejected
                .with_label_values(&[listener, "max_connections"]);
        }
        for kind in IdleKind::ALL {
            m.idle_timeouts.with_label_values(&[kind]);
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
        }
        Arc::new(m)
    }

    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Label values of `gogate_idle_timeouts_total{kind}`.
struct IdleKind;

impl IdleKind {
    const ALL: [&'static str; 4] = ["response_body", "request_body", "tunnel", "tcp"];
}

/// `gogate_idle_timeouts_total` handles, resolved when the snapshot is built.
#[derive(Clone)]
pub struct IdleCounters {
    /// An upstream response body silent for `timeouts.idle` after its head.
    pub response_body: IntCounter,
    /// A client upload silent (or an upstream not taking it) for `timeouts.idle`.
    pub request_body: IntCounter,
    /// An upgraded (WebSocket) tunnel silent both ways.
    pub tunnel: IntCounter,
    /// An L4 session silent both ways.
    pub tcp: IntCounter,
}

impl IdleCounters {
    pub fn new(m: &Metrics) -> Self {
        let c = |kind: &str| m.idle_timeouts.with_label_values(&[kind]);
        IdleCounters {
            response_body: c("response_body"),
            request_body: c("request_body"),
            tunnel: c("tunnel"),
            tcp: c("tcp"),
        }
    }
}

/// Per-route handles, resolved when the snapshot is built.
pub struct RouteMetrics {
    pub name: String,
    listener_duration: Histogram,
    responses: IntCounterVec,
    /// Status code 100..=599 → counter, resolved on first use of that code.
    codes: Box<[OnceLock<IntCounter>]>,
}

impl RouteMetrics {
    pub fn new(m: &Metrics, listener: &str, route: &str) -> Self {
        RouteMetrics {
            name: route.to_string(),
            listener_duration: m.request_duration.with_label_values(&[listener, route]),
            responses: m.http_responses.clone(),
            codes: (100..600).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Records one finished exchange.
    #[inline]
    pub fn observe(&self, status: u16, seconds: f64) {
        self.listener_duration.observe(seconds);
        if let Some(slot) = self.codes.get(usize::from(status).wrapping_sub(100)) {
            slot.get_or_init(|| {
                self.responses
                    .with_label_values(&[&self.name, &status.to_string()])
            })
            .inc();
        }
    }

    #[inline]
    pub fn observe_duration(&self, seconds: f64) {
        self.listener_duration.observe(seconds);
    }
}

/// `gogate_requests_total{status="success"|"failure"}` for one (listener, route, backend).
#[derive(Clone)]
pub struct OutcomeCounters {
    pub success: IntCounter,
    pub failure: IntCounter,
}

impl OutcomeCounters {
    pub fn new(m: &Metrics, listener: &str, route: &str, backend: &str) -> Self {
        OutcomeCounters {
            success: m
                .requests_total
                .with_label_values(&[listener, route, backend, "success"]),
            failure: m
                .requests_total
                .with_label_values(&[listener, route, backend, "failure"]),
        }
    }

    #[inline]
    pub fn record(&self, success: bool) {
        if success {
            self.success.inc()
        } else {
            self.failure.inc()
        }
    }
}

/// Owns the registry: refreshes derived gauges from the published snapshot and encodes the
/// text exposition for each scrape.
pub struct MetricsActor {
    metrics: Arc<Metrics>,
    cell: SnapshotCell,
    /// Last value read from each backend's byte atomics, by (upstream, addr): the byte counters
    /// grow by what the atomics grew since the previous scrape, so they never go down.
    bytes_seen: HashMap<(String, String), (u64, u64)>,
    /// Route names and backend addresses of the snapshot seen at the previous scrape: the
    /// series of those gone since are deleted (registry churn must not grow the scrape forever).
    routes_seen: HashSet<String>,
    addrs_seen: HashSet<String>,
}

impl MetricsActor {
    pub fn new(metrics: Arc<Metrics>, cell: SnapshotCell) -> Self {
        MetricsActor {
            metrics,
            cell,
            bytes_seen: HashMap::new(),
            routes_seen: HashSet::new(),
            addrs_seen: HashSet::new(),
        }
    }

    fn refresh(&mut self) {
        let m = &self.metrics;
        m.uptime.set(m.uptime_seconds());
        let snap = self.cell.load();
        m.backend_healthy.reset();
        m.backend_active.reset();
        m.breaker_state.reset();
        // Growth of the byte atomics since the last scrape, per backend address.
        let mut grown: HashMap<&str, (u64, u64)> = HashMap::new();
        let mut seen_now: HashMap<(String, String), (u64, u64)> =
            HashMap::with_capacity(self.bytes_seen.len());
        for up in snap.upstreams.values() {
            for b in &up.backends {
                let labels = [b.upstream.as_str(), b.addr.as_str()];
                m.backend_healthy
                    .with_label_values(&labels)
                    .set(i64::from(b.healthy()));
                m.backend_active.with_label_values(&labels).set(b.active());
                m.breaker_state
                    .with_label_values(&labels)
                    .set(b.breaker() as i64);
                let now = (b.bytes_sent(), b.bytes_received());
                let key = (b.upstream.clone(), b.addr.clone());
                let last = self.bytes_seen.get(&key).copied().unwrap_or((0, 0));
                // An atomic below its last value belongs to a new backend state: all of it is new.
                let delta = |now: u64, last: u64| if now >= last { now - last } else { now };
                let g = grown.entry(&b.addr).or_default();
                g.0 += delta(now.0, last.0);
                g.1 += delta(now.1, last.1);
                seen_now.insert(key, now);
            }
        }
        let dropped = crate::logging::dropped_records();
        m.log_dropped
            .inc_by(dropped.saturating_sub(m.log_dropped.get()));
        m.panics.reset();
        for site in PanicSite::ALL {
            m.panics
                .with_label_values(&[site.label()])
                .inc_by(panics::count(site));
        }
        m.rate_limit_keys.reset();
        for k in &snap.keyed_rate_limits {
            m.rate_limit_keys
                .with_label_values(&[k.listener, &k.limit])
                .set(k.limiter.keys() as i64);
        }
        // Counters derived from the backend atomics: grown by what the atomics grew, so a
        // `_total` never goes down while its series exists; the series of an address no backend
        // has any more are deleted.
        for (addr, (sent, received)) in &grown {
            m.backend_bytes_sent
                .with_label_values(&[addr])
                .inc_by(*sent);
            m.backend_bytes_received
                .with_label_values(&[addr])
                .inc_by(*received);
        }
        for (_, old_addr) in self.bytes_seen.keys() {
            if !grown.contains_key(old_addr.as_str()) {
                let _ = m.backend_bytes_sent.remove_label_values(&[old_addr]);
                let _ = m.backend_bytes_received.remove_label_values(&[old_addr]);
            }
        }
        self.bytes_seen = seen_now;
        self.prune_gone(&snap);
    }
}

impl Actor for MetricsActor {
    type Context = Context<Self>;
}

impl Supervised for MetricsActor {}

/// Query: the Prometheus text exposition of every metric.
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetMetricsText;

impl Handler<GetMetricsText> for MetricsActor {
    type Result = String;

    fn handle(&mut self, _: GetMetricsText, _: &mut Context<Self>) -> String {
        self.refresh();
        let mut buf = Vec::new();
        let families = self.metrics.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl MetricsActor {
    /// Deletes the request series of routes and backend addresses that were in the previous
    /// scrape's snapshot and are in this one no more. Only names the configuration once had are
    /// touched, never the fixed labels (`default`, ...); a route or address that comes back
    /// starts new series.
    fn prune_gone(&mut self, snap: &crate::snapshot::GatewaySnapshot) {
        let routes: HashSet<String> = snap.routes.values().map(|r| r.name.clone()).collect();
        let addrs: HashSet<String> = snap.backends().map(|b| b.addr.clone()).collect();
        let gone_routes: HashSet<&String> = self.routes_seen.difference(&routes).collect();
        let gone_addrs: HashSet<&String> = self.addrs_seen.difference(&addrs).collect();
        if !gone_routes.is_empty() || !gone_addrs.is_empty() {
            let gone = |name: &str, value: &str| match name {
                "route" => gone_routes.iter().any(|r| r.as_str() == value),
                "backend" => gone_addrs.iter().any(|a| a.as_str() == value),
                _ => false,
            };
            let m = &self.metrics;
            prune_series(&m.requests_total, &gone);
            prune_series(&m.http_responses, &gone);
            prune_series(&m.request_duration, &gone);
            prune_series(&m.rate_limited, &gone);
            prune_series(&m.auth_rejected, &gone);
        }
        self.routes_seen = routes;
        self.addrs_seen = addrs;
    }
}

/// Removes every series of `vec` that carries a label `gone` says is gone.
fn prune_series<P: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<P>,
    gone: &dyn Fn(&str, &str) -> bool,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.iter().any(|(n, v)| gone(n, v)) {
                let _ = vec.remove(&labels);
            }
        }
    }
}
