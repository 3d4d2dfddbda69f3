//! The shipped example configurations (DESIGN B3: `config/examples/`) must always load, so a
//! schema change that breaks one fails here rather than in a user's first `gogate validate`.

use gogate_config::{
    load_file, load_str, BackendConfig, CheckType, CircuitBreakerOverride, Config, HealthOverride,
    JwtConfig, LbAlgorithm, RetryOverride, RouteConfig, RouteRateLimitConfig, RouteUpstream,
    TcpPoolOverride, TimeoutsOverride, UpstreamConfig, DEFAULT_CONFIG_YAML,
};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(EXAMPLES)
        .unwrap_or_else(|e| panic!("cannot read {EXAMPLES}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn load_example(name: &str) -> Config {
    let path = Path::new(EXAMPLES).join(name);
    load_file(&path).unwrap_or_else(|e| panic!("{} does not load:\n{e}", path.display()))
}

#[test]
fn every_example_loads() {
    let files = example_files();
    assert!(!files.is_empty(), "no *.yaml in {EXAMPLES}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p| load_file(p).err().map(|e| format!("{}:\n{e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "examples that do not load:\n{}",
        failures.join("\n")
    );
}

/// `gogate validate` also reads the certificate files an example names (they ship beside it).
#[test]
fn every_example_certificate_loads() {
    for path in example_files() {
        let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        if c.server.tls.enabled {
            gogate_config::tls::load(&c.server.tls, Some(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn required_examples_exist() {
    let names: Vec<String> = example_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for required in ["minimal.yaml", "production.yaml", "full.yaml"] {
        assert!(
            names.iter().any(|n| n == required),
            "{required} missing from {EXAMPLES}: {names:?}"
        );
    }
}

#[test]
fn minimal_example_has_both_proxies_and_two_backends() {
    let c = load_example("minimal.yaml");
    assert_eq!(c.server.listen_addr, ":8080");
    assert_eq!(c.server.http_listen_addr, ":8081");
    assert_eq!(c.server.backends.len(), 2);
    assert!(c.routes.is_empty() && c.upstreams.is_empty());
}

#[test]
fn production_example_values() {
    let c = load_example("production.yaml");
    assert_eq!(c.routes.len(), 4);
    assert_eq!(c.upstreams.len(), 4);
    assert_eq!(c.server.admin.listen_addr, ":9090");
    assert!(
        c.server.admin.token.is_empty(),
        "the token belongs in GOGATE_ADMIN_TOKEN"
    );
    assert_eq!(c.server.health.check_type, CheckType::Http);
    assert_eq!(c.server.load_balancer, LbAlgorithm::WeightedRoundRobin);

    let split = &c.routes[0];
    assert_eq!(split.name, "api-v2");
    let weights: Vec<(&str, u32)> = split
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), u.weight))
        .collect();
    assert_eq!(weights, [("api-v2", 90), ("api-v2-canary", 10)]);
    assert!(split.strip_prefix && !split.preserve_host);

    let v2 = c.upstream_settings("api-v2");
    assert_eq!(v2.load_balancer, LbAlgorithm::LeastConnections);
    assert_eq!(v2.timeouts.request.get(), Duration::from_secs(10));
    assert_eq!(
        v2.timeouts.connect.get(),
        Duration::from_secs(3),
        "inherited from server.timeouts"
    );

    let canary = c.upstream_settings("api-v2-canary");
    assert_eq!(
        canary.load_balancer,
        LbAlgorithm::WeightedRoundRobin,
        "inherited from server"
    );
    assert_eq!(canary.retry.attempts, 0);
    assert_eq!(canary.health.interval.get(), Duration::from_secs(5));
    assert_eq!(
        canary.health.check_type,
        CheckType::Http,
        "inherited from server.health"
    );
}

#[test]
fn full_example_keeps_unreleased_features_off() {
    let c = load_example("full.yaml");
    let s = &c.server;
    assert!(!s.rate_limit.enabled && !s.circuit_breaker.enabled);
    assert!(s.tls.enabled && !s.registry.enabled);
    assert!(c.jwt.is_some());
    assert!(c.cors.is_some() && c.routes.iter().all(|r| r.cors != Some(true)));
    assert_eq!(c.routes.len(), 2);
    // The JWT policy loads with its key file beside the example (DESIGN B10).
    let jwt = c.jwt.as_ref().expect("full.yaml has a jwt: block");
    assert!(jwt.keys.is_some() && c.routes[0].requires_jwt());
}

/// Every key path in `value`: `a.b` for mappings, `a[]` for list items, and `upstreams.*` for
/// any upstream name (user-chosen keys).
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or_default();
                let key = if prefix == "upstreams" { "*" } else { key };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn full_example_sets_every_key_of_the_schema() {
    // The schema as it serialises: every server/logging key, plus one upstream with every
    // override block, one route with every key and the jwt: block.
    let mut reference = Config {
        jwt: Some(JwtConfig::default()),
        ..Config::default()
    };
    let backend = BackendConfig {
        addr: "127.0.0.1:1".into(),
        weight: 1,
    };
    reference.server.backends.push(backend.clone());
    reference.upstreams.insert(
        "u".into(),
        UpstreamConfig {
            backends: vec![backend],
            load_balancer: Some(LbAlgorithm::RoundRobin),
            health: Some(HealthOverride::default()),
            circuit_breaker: Some(CircuitBreakerOverride::default()),
            retry: Some(RetryOverride::default()),
            timeouts: Some(TimeoutsOverride::default()),
            tcp_pool: Some(TcpPoolOverride::default()),
        },
    );
    reference.routes.push(RouteConfig {
        upstreams: vec![RouteUpstream {
            name: "default".into(),
            weight: 1,
        }],
        timeouts: Some(TimeoutsOverride::default()),
        rate_limit: Some(RouteRateLimitConfig::default()),
        cors: Some(false),
        auth: Some("jwt".into()),
        ..RouteConfig::default()
    });
    reference.cors = Some(gogate_config::CorsConfig::default());
    let mut want = BTreeSet::new();
    key_paths(
        &serde_yaml::to_value(&reference).expect("serialise"),
        "",
        &mut want,
    );

    let text =
        std::fs::read_to_string(Path::new(EXAMPLES).join("full.yaml")).expect("read full.yaml");
    let mut have = BTreeSet::new();
    key_paths(
        &serde_yaml::from_str(&text).expect("parse full.yaml"),
        "",
        &mut have,
    );

    let missing: Vec<&String> = want.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "full.yaml lacks these keys: {missing:?}"
    );
}

#[test]
fn embedded_default_config_loads() {
    let c = load_str(DEFAULT_CONFIG_YAML, None)
        .unwrap_or_else(|e| panic!("DEFAULT_CONFIG_YAML does not load:\n{e}"));
    assert_eq!(c.server.backends.len(), 2);
}
