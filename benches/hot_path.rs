//! Micro-benchmarks of the per-request pieces (issue 11): route matching over 1,000 routes, the
//! balancers' picks, the token bucket, header rewriting and the snapshot load. Run with
//! `cargo bench --bench hot_path`; the figures below (and in PERFORMANCE.md) are of one run on
//! the 2-core build machine, 2026-12-08: compare them within one run, on one machine.
//!
//! | benchmark | time |
//! |---|---:|
//! | `route_match_1000/exact_host_first` | 197 ns (a scan: 10.4 ns) |
//! | `route_match_1000/exact_host_last` | 200 ns (a scan: 2.36 µs) |
//! | `route_match_1000/path_only_last` | 175 ns (a scan: 3.12 µs) |
//! | `route_match_1000/no_match` | 160 ns (a scan: 3.64 µs) |
//! | `route_match_5/last` (scanned: small tables are not indexed) | 34 ns |
//! | `balancer_pick/round_robin_8` | 2.16 ns |
//! | `balancer_pick/weighted_5_1_1` | 2.34 ns |
//! | `balancer_pick/least_connections_8` | 15.4 ns |
//! | `balancer_pick/weighted_heavy_ineligible` | 4.5 ns (23.0 µs before the fallback rotation) |
//! | `token_bucket/global` | 38.1 ns |
//! | `token_bucket/per_ip` | 82.7 ns |
//! | `header_rewrite_8_headers` (clone of the map included) | 531 ns |
//! | `snapshot_load` | 8.9 ns |

use actix_http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gogate_actors::balance::Balancer;
use gogate_actors::ratelimit::{RateKey, RateLimiter};
use gogate_actors::routing::{RequestFacts, RouteRule, RouteTable};
use gogate_actors::snapshot::CompiledHeaderRules;
use gogate_config::{HeaderRules, KeyBy, LbAlgorithm, MatchConfig, RateLimitConfig};
use std::collections::BTreeMap;

/// 1,000 routes: 500 on exact hosts `svcN.example.com` with a prefix each, 250 wildcard-host
/// ones, 250 path-only ones (`/apiN`), in file order.
fn table() -> RouteTable<usize> {
    let mut entries = Vec::new();
    for i in 0..1000 {
        let m = match i % 4 {
            0 | 1 => MatchConfig {
                host: format!("svc{i}.example.com"),
                path_prefix: format!("/v{}", i % 7),
                ..MatchConfig::default()
            },
            2 => MatchConfig {
                host: format!("*.zone{i}.example.com"),
                path_prefix: "/".into(),
                ..MatchConfig::default()
            },
            _ => MatchConfig {
                path_prefix: format!("/api{i}"),
                ..MatchConfig::default()
            },
        };
        entries.push((RouteRule::new(&m, i), i));
    }
    RouteTable::new(entries)
}

fn routing(c: &mut Criterion) {
    let t = table();
    let none = |_: &str| None;
    let mut g = c.benchmark_group("route_match_1000");
    for (name, host, path) in [
        ("exact_host_first", Some("svc0.example.com"), "/v0/users"),
        ("exact_host_last", Some("svc997.example.com"), "/v3/x"),
        ("path_only_last", Some("nomatch.test"), "/api999/items"),
        ("no_match", Some("nomatch.test"), "/nothing"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = RequestFacts {
                    host: black_box(host),
                    path: black_box(path),
                    method: "GET",
                    header: &none,
                };
                black_box(t.find(&req).map(|(_, i)| *i))
            })
        });
    }
    g.finish();
    // A small table (scanned, not indexed): the common case.
    let small = RouteTable::new(
        ["/api", "/static", "/auth", "/admin", "/"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let m = MatchConfig {
                    path_prefix: p.to_string(),
                    ..MatchConfig::default()
                };
                (RouteRule::new(&m, i), i)
            })
            .collect(),
    );
    c.bench_function("route_match_5/last", |b| {
        b.iter(|| {
            let req = RequestFacts {
                host: black_box(Some("api.example.com")),
                path: black_box("/other/x"),
                method: "GET",
                header: &none,
            };
            black_box(small.find(&req).map(|(_, i)| *i))
        })
    });
}

fn balancing(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer_pick");
    let loads = [3i64, 1, 2, 0, 5, 1, 2, 4];
    for (name, algo, weights) in [
        ("round_robin_8", LbAlgorithm::RoundRobin, vec![1u32; 8]),
        (
            "weighted_5_1_1",
            LbAlgorithm::WeightedRoundRobin,
            vec![5, 1, 1],
        ),
        (
            "least_connections_8",
            LbAlgorithm::LeastConnections,
            vec![1u32; 8],
        ),
    ] {
        let b = Balancer::new(algo, &weights);
        let n = weights.len();
        g.bench_function(name, |bench| {
            bench.iter(|| black_box(b.pick(n, |_| true, |i| loads[i])))
        });
    }
    // The worst case the issue names: a heavy backend ineligible in a long weighted schedule.
    let heavy = Balancer::new(LbAlgorithm::WeightedRoundRobin, &[10_000, 1]);
    g.bench_function("weighted_heavy_ineligible", |bench| {
        bench.iter(|| black_box(heavy.pick(2, |i| i == 1, |_| 0)))
    });
    g.finish();
}

fn rate_limiting(c: &mut Criterion) {
    let cfg = |key_by| RateLimitConfig {
        enabled: true,
        rate: 1e9,
        burst: 1_000_000,
        key_by,
        ..RateLimitConfig::default()
    };
    let global = RateLimiter::new(&cfg(KeyBy::Global));
    let per_ip = RateLimiter::new(&cfg(KeyBy::Ip));
    let ip = "10.1.2.3".parse().expect("ip");
    let mut g = c.benchmark_group("token_bucket");
    g.bench_function("global", |b| {
        b.iter(|| black_box(global.check(RateKey::Global)))
    });
    g.bench_function("per_ip", |b| {
        b.iter(|| black_box(per_ip.check(RateKey::Ip(ip))))
    });
    g.finish();
}

fn header_rewriting(c: &mut Criterion) {
    let rules = CompiledHeaderRules::new(&HeaderRules {
        set: BTreeMap::from([
            ("X-Api-Version".to_string(), "2".to_string()),
            ("Cache-Control".to_string(), "no-store".to_string()),
        ]),
        add: BTreeMap::from([("X-Served-By".to_string(), "gogate".to_string())]),
        remove: vec!["X-Debug".into(), "Server".into()],
    });
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "*/*"),
        ("x-debug", "1"),
        ("x-request-id", "0123456789abcdef"),
        ("content-type", "application/json"),
        ("authorization", "Bearer abc"),
        ("x-forwarded-for", "10.0.0.1"),
    ] {
        base.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    c.bench_function("header_rewrite_8_headers", |b| {
        b.iter(|| {
            let mut h = base.clone();
            rules.apply(&mut h);
            black_box(h)
        })
    });
}

fn snapshot_load(c: &mut Criterion) {
    let cfg = gogate_config::load_str(
        "server:\n  backends: [{addr: \"127.0.0.1:9001\"}, {addr: \"127.0.0.1:9002\"}]\n  health: {enabled: false}\n",
        None,
    )
    .expect("valid config");
    let system = actix_rt::System::new();
    let cell = system.block_on(async move {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let actor = gogate_actors::ConfigActor::new(cfg, None, gogate_actors::Metrics::new(), &log);
        actor.cell()
    });
    c.bench_function("snapshot_load", |b| b.iter(|| black_box(cell.load())));
}

criterion_group!(
    benches,
    routing,
    balancing,
    rate_limiting,
    header_rewriting,
    snapshot_load
);
criterion_main!(benches);
