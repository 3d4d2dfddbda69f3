//! Unit tests of loading: defaults, dialects, and that every kind of bad value is an error that
//! names the key path and, where the YAML shows it, the line.

use super::*;
use std::time::Duration;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, Some(Path::new("test.yaml")))
}

fn err_text(text: &str) -> String {
    load(text)
        .expect_err("config should be rejected")
        .to_string()
}

const BASE: &str = "server:\n  backends:\n    - addr: \"127.0.0.1:9001\"\n";

#[test]
fn embedded_default_matches_the_contract() {
    let c = default_config();
    assert_eq!(c.server.listen_addr, ":8080");
    assert_eq!(c.server.http_listen_addr, ":8081");
    assert_eq!(c.server.admin.listen_addr, "127.0.0.1:9090");
    assert_eq!(c.server.metrics.listen_addr, ":9091");
    assert_eq!(c.server.backends.len(), 2);
    assert_eq!(c.server.load_balancer, LbAlgorithm::RoundRobin);
    assert!(c.server.health.enabled);
    assert!(!c.server.rate_limit.enabled && !c.server.circuit_breaker.enabled);
}

#[test]
fn b10_defaults_apply() {
    let c = load(BASE).unwrap();
    assert_eq!(c.server.retry.attempts, 1);
    assert_eq!(c.server.health.check_type, CheckType::Tcp);
    assert_eq!(c.server.timeouts.connect.get(), Duration::from_secs(5));
    assert_eq!(c.server.limits.max_body_bytes, 10_485_760);
    assert!(c.logging.access_log);
}

#[test]
fn snake_case_dialect_loads() {
    let c = load(
        "server:\n  listen: \":7000\"\n  http_listen: \":7001\"\n  load_balancer: least-connections\n  backends: [{addr: \"10.0.0.1:80\"}]\n  health: {unhealthy_threshold: 4, check_type: http, http_path: /hz}\n  tcp_pool: {max_idle: 3}\n  logging: {level: debug, format: text}\n",
    )
    .unwrap();
    assert_eq!(c.server.listen_addr, ":7000");
    assert_eq!(c.server.http_listen_addr, ":7001");
    assert_eq!(c.server.load_balancer, LbAlgorithm::LeastConnections);
    assert_eq!(c.server.health.unhealthy_threshold, 4);
    assert_eq!(c.server.health.check_type, CheckType::Http);
    assert_eq!(c.server.tcp_pool.max_idle, 3);
    assert_eq!(c.logging.level, LogLevel::Debug);
    assert_eq!(c.logging.format, LogFormat::Text);
}

#[test]
fn unknown_key_names_path_and_line() {
    let e = err_text("server:\n  backends: [{addr: \"a:1\"}]\n  health:\n    intervall: 5s\n");
    assert!(e.contains("test.yaml:4:5"), "{e}");
    assert!(e.contains("server.health"), "{e}");
    assert!(e.contains("unknown field `intervall`"), "{e}");
}

#[test]
fn unknown_load_balancer_lists_allowed() {
    let e = err_text("server:\n  backends: [{addr: \"a:1\"}]\n  loadBalancer: random\n");
    assert!(
        e.contains("server.loadBalancer: invalid loadBalancer \"random\""),
        "{e}"
    );
    assert!(e.contains("least_connections"), "{e}");
}

#[test]
fn bad_values_are_located() {
    let e =
        err_text("server:\n  backends:\n    - addr: \"127.0.0.1:9001\"\n    - addr: \"nope\"\n");
    assert!(e.contains("test.yaml:4:7: server.backends[1].addr"), "{e}");
    let e = err_text("server:\n  backends: [{addr: \"a:1\"}]\n  health:\n    interval: 0s\n");
    assert!(e.contains("greater than zero"), "{e}");
    let e =
        err_text("server:\n  backends: [{addr: \"a:1\"}]\n  health:\n    healthyThreshold: 0\n");
    assert!(
        e.contains("server.health.healthyThreshold: 0 is out of range"),
        "{e}"
    );
    let e = err_text("server:\n  backends: [{addr: \"a:1\", weight: -1}]\n");
    assert!(e.contains("weight"), "{e}");
}

#[test]
fn every_error_is_reported() {
    let e = load("server:\n  listenAddr: \"nope\"\n  backends: [{addr: \"x\"}]\n  limits: {maxConnections: 0}\n")
        .unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
}

#[test]
fn listener_conflicts_are_errors_but_admin_may_share_with_metrics() {
    let e = err_text(&format!(
        "{BASE}  listenAddr: \":7000\"\n  httpListenAddr: \"127.0.0.1:7000\"\n"
    ));
    assert!(e.contains("conflicts"), "{e}");
    let ok = format!("{BASE}  admin: {{listenAddr: \"127.0.0.1:7100\"}}\n  metrics: {{listenAddr: \"127.0.0.1:7100\"}}\n");
    assert!(load(&ok).is_ok());
    let e = err_text(&format!("{BASE}  admin: {{listenAddr: \"127.0.0.1:7100\"}}\n  metrics: {{listenAddr: \"127.0.0.1:7100\", path: /health}}\n"));
    assert!(e.contains("admin API path"), "{e}");
}

#[test]
fn routes_reference_known_upstreams() {
    let e = err_text(&format!(
        "{BASE}routes:\n  - name: a\n    upstreams: [{{name: nope}}]\n"
    ));
    assert!(
        e.contains("routes[0].upstreams[0].name: unknown upstream \"nope\""),
        "{e}"
    );
    let e = err_text(&format!("{BASE}routes:\n  - name: a\n    match: {{path: /x, pathPrefix: /y}}\n    upstreams: [{{name: default}}]\n"));
    assert!(e.contains("not both"), "{e}");
    let e = err_text(&format!("{BASE}routes:\n  - name: a\n    upstreams: [{{name: default}}]\n  - name: a\n    upstreams: [{{name: default}}]\n"));
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn unnamed_routes_get_positional_names_and_methods_are_uppercased() {
    let c = load(&format!("{BASE}routes:\n  - match: {{methods: [get], host: API.Example.com}}\n    upstreams: [{{name: default}}]\n")).unwrap();
    assert_eq!(c.routes[0].name, "route-1");
    assert_eq!(c.routes[0].matcher.methods, vec!["GET"]);
    assert_eq!(c.routes[0].matcher.host, "api.example.com");
    assert!(c.routes[0].preserve_host);
}

#[test]
fn rate_limits_load_and_bad_values_name_their_key() {
    let c = load(&format!("{BASE}  rateLimit: {{enabled: true, rate: 5, burst: 2, keyBy: ip, maxKeys: 10}}\nroutes:\n  - name: a\n    upstreams: [{{name: default}}]\n    rateLimit: {{rate: 1, keyBy: \"header:X-Api-Key\"}}\n  - name: b\n    upstreams: [{{name: default}}]\n    rate_limit: {{enabled: false}}\n")).unwrap();
    assert!(c.server.rate_limit.enabled && c.server.rate_limit.max_keys == 10);
    let a = c.routes[0].rate_limit.as_ref().unwrap();
    assert!(a.enabled && a.key_by == KeyBy::Header("x-api-key".into()));
    assert!(!c.routes[1].rate_limit.as_ref().unwrap().enabled);

    let e = load(&format!(
        "{BASE}  rateLimit:\n    rate: 0\n    burst: 0\n    maxKeys: 0\n"
    ))
    .unwrap_err();
    let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.rateLimit.rate",
            "server.rateLimit.burst",
            "server.rateLimit.maxKeys"
        ]
    );
    assert_eq!(e.0[0].line, Some(5), "{e}");
    let e = err_text(&format!(
        "{BASE}routes:\n  - upstreams: [{{name: default}}]\n    rateLimit: {{rate: -1}}\n"
    ));
    assert!(
        e.contains("routes[0].rateLimit.rate") && e.contains("out of range"),
        "{e}"
    );
    let e = err_text(&format!("{BASE}  rateLimit: {{keyBy: cookie}}\n"));
    assert!(
        e.contains("server.rateLimit.keyBy") && e.contains("header:NAME"),
        "{e}"
    );
}

#[test]
fn sticky_syntax_is_checked() {
    let c = load(&format!(
        "{BASE}routes:\n  - upstreams: [{{name: default}}]\n    sticky: \"cookie:sid\"\n"
    ))
    .unwrap();
    assert_eq!(c.routes[0].sticky, Sticky::Cookie("sid".into()));
    let e = err_text(&format!(
        "{BASE}routes:\n  - upstreams: [{{name: default}}]\n    sticky: \"query:x\"\n"
    ));
    assert!(
        e.contains("routes[0].sticky") && e.contains("cookie:NAME"),
        "{e}"
    );
}

#[test]
fn circuit_breaker_can_be_enabled_and_is_still_range_checked() {
    let c = load(&format!(
        "{BASE}  circuitBreaker: {{enabled: true, failureThreshold: 3, timeout: 500ms}}\n"
    ))
    .unwrap();
    assert!(c.server.circuit_breaker.enabled);
    let e = err_text(&format!(
        "{BASE}  circuit_breaker: {{enabled: true, success_threshold: 0}}\n"
    ));
    assert!(e.contains("server.circuitBreaker.successThreshold"), "{e}");
}

#[test]
fn original_keys_without_meaning_say_what_replaces_them() {
    let e = err_text(&format!("{BASE}  http_transport: {{max_idle: 4}}\n"));
    assert!(e.contains("server.tcpPool"), "{e}");
    let e = err_text(&format!("{BASE}  circuit_breaker: {{window: 10s}}\n"));
    assert!(e.contains("failureThreshold"), "{e}");
}

#[test]
fn upstream_overrides_inherit_server_settings() {
    let c = load(&format!("{BASE}  health: {{interval: 9s, checkType: http}}\n  retry: {{attempts: 3}}\nupstreams:\n  v2:\n    backends: [{{addr: \"127.0.0.1:9003\"}}]\n    loadBalancer: least_connections\n    health: {{timeout: 1s}}\n")).unwrap();
    let s = c.upstream_settings("v2");
    assert_eq!(s.load_balancer, LbAlgorithm::LeastConnections);
    assert_eq!(s.health.interval, Dur::secs(9));
    assert_eq!(s.health.timeout, Dur::secs(1));
    assert_eq!(s.health.check_type, CheckType::Http);
    assert_eq!(s.retry.attempts, 3);
    assert_eq!(c.upstream_names(), vec!["default", "v2"]);
}

#[test]
fn reserved_and_empty_upstreams_are_rejected() {
    let e = err_text(&format!(
        "{BASE}upstreams:\n  default:\n    backends: [{{addr: \"a:1\"}}]\n"
    ));
    assert!(e.contains("reserved"), "{e}");
    let e = err_text(&format!("{BASE}upstreams:\n  empty: {{}}\n"));
    assert!(e.contains("upstreams.empty.backends"), "{e}");
}

#[test]
fn l4_without_backends_must_be_disabled_explicitly() {
    let e = err_text("server:\n  backends: []\n");
    assert!(e.contains("server.listenAddr"), "{e}");
    assert!(load("server:\n  listenAddr: \"\"\n").is_ok());
}

#[test]
fn redaction_hides_the_admin_token() {
    let c = load(&format!("{BASE}  admin: {{token: s3cret}}\n")).unwrap();
    let json = c.redacted_json().to_string();
    assert!(
        !json.contains("s3cret") && json.contains("<redacted>"),
        "{json}"
    );
}

#[test]
fn syntax_errors_carry_a_location() {
    let e = load("server:\n  backends: [\n").unwrap_err();
    assert!(e.0[0].line.is_some(), "{e}");
}

#[test]
fn registry_loads_and_bad_values_name_their_key() {
    let c = load(&format!(
        "{BASE}  registry: {{enabled: true, default_ttl: 10s, cleanupInterval: 500ms, maxServices: 7}}\nupstreams:\n  api:\n    backends: []\n"
    ))
    .unwrap();
    let r = &c.server.registry;
    assert!(r.enabled && r.max_services == 7);
    assert_eq!(
        r.cleanup_interval.get(),
        std::time::Duration::from_millis(500)
    );

    for (snippet, needle) in [
        (
            "maxServices: 0",
            "server.registry.maxServices: 0 is out of range",
        ),
        ("maxServices: 1000001", "allowed 1 to 1000000"),
        ("defaultTtl: 0s", "greater than zero"),
        ("cleanupInterval: 0", "greater than zero"),
        ("listen: \":8500\"", "served by the admin API"),
    ] {
        let e = err_text(&format!("{BASE}  registry: {{enabled: true, {snippet}}}\n"));
        assert!(e.contains(needle), "{snippet}: {e}");
    }
    let e = err_text(&format!("{BASE}upstreams:\n  api:\n    backends: []\n"));
    assert!(e.contains("at least one backend"), "{e}");
    let e = err_text(&format!(
        "{BASE}  admin: {{enabled: false}}\n  registry: {{enabled: true}}\n"
    ));
    assert!(
        e.contains("server.registry.enabled") && e.contains("admin API"),
        "{e}"
    );
}

#[test]
fn health_timeout_may_exceed_the_interval() {
    let cfg = load(&format!(
        "{BASE}  health: {{interval: 500ms, timeout: 1s}}\nupstreams:\n  slow:\n    backends: [{{addr: \"127.0.0.1:9003\"}}]\n    health: {{interval: 1s, timeout: 5s}}\n"
    ))
    .expect("a probe slower than its interval is allowed (one at a time)");
    assert_eq!(cfg.server.health.timeout.get(), Duration::from_secs(1));
    assert_eq!(
        cfg.upstream_settings("slow").health.timeout.get(),
        Duration::from_secs(5)
    );
}

#[test]
fn dns_refresh_is_parsed_defaulted_aliased_and_bounded() {
    let c = load(BASE).unwrap();
    assert_eq!(c.server.dns_refresh.get(), Duration::from_secs(30));
    let c = load(&format!("{BASE}  dnsRefresh: 1m30s\n")).unwrap();
    assert_eq!(c.server.dns_refresh.get(), Duration::from_secs(90));
    let c = load(&format!("{BASE}  dns_refresh: 250ms\n")).unwrap();
    assert_eq!(c.server.dns_refresh.get(), Duration::from_millis(250));
    let e = err_text(&format!("{BASE}  dnsRefresh: 0s\n"));
    assert!(
        e.contains("server.dnsRefresh") && e.contains("greater than zero"),
        "{e}"
    );
    let e = err_text(&format!("{BASE}  dnsRefresh: 10ms\n"));
    assert!(
        e.contains("test.yaml:4:3: server.dnsRefresh: 10ms is too short; allowed 100ms or longer"),
        "{e}"
    );
    // Host names are syntax-checked only: loading never resolves them.
    let c = load("server:\n  backends: [{addr: \"no-such-host.invalid:80\"}]\n").unwrap();
    assert_eq!(c.server.backends[0].addr, "no-such-host.invalid:80");
}

#[test]
fn route_paths_must_be_matchable_after_normalisation() {
    let route = |m: &str| {
        let text = format!(
            "server:\n  backends: [{{addr: \"127.0.0.1:9001\"}}]\nroutes:\n  - match: {{{m}}}\n    upstreams: [{{name: default}}]\n"
        );
        load_str(&text, None).map_err(|e| e.to_string())
    };
    for ok in [
        "pathPrefix: /",
        "pathPrefix: /api/",
        "path: /a/b",
        "pathPrefix: /.well-known",
    ] {
        assert!(route(ok).is_ok(), "{ok}");
    }
    for bad in [
        "pathPrefix: //api",
        "path: /a/../b",
        "pathPrefix: /a/./b",
        "path: /a;x",
        "pathPrefix: /a//",
    ] {
        let e = route(bad).expect_err(bad);
        assert!(e.contains("can never match"), "{bad}: {e}");
    }
}

#[test]
fn tls_settings_are_checked() {
    let tls = |body: &str| format!("{BASE}  tls: {{{body}}}\n");
    let e = err_text(&tls("enabled: true"));
    assert!(
        e.contains("server.tls.certFile") && e.contains("without a certificate"),
        "{e}"
    );
    let e = err_text(&tls("enabled: true, certFile: a.crt"));
    assert!(
        e.contains("server.tls.keyFile") && e.contains("set both"),
        "{e}"
    );
    let e = err_text(&tls(
        "enabled: true, certificates: [{keyFile: a.key}], certFile: c, keyFile: k",
    ));
    assert!(e.contains("server.tls.certificates[0].certFile"), "{e}");
    let e = err_text(&tls("minVersion: \"1.1\""));
    assert!(
        e.contains("server.tls.minVersion") && e.contains("\"1.2\", \"1.3\""),
        "{e}"
    );
    let e = err_text(&format!(
        "{BASE}  httpListenAddr: \":9443\"\n  tls: {{enabled: true, listenAddr: \":9443\", certFile: c, keyFile: k}}\n"
    ));
    assert!(
        e.contains("server.tls.listenAddr") && e.contains("conflicts"),
        "{e}"
    );
    // Enabled with a pair (the files are read by `tls::load`, not here); snake_case accepted.
    let c = load(&tls(
        "enabled: true, listen: \":9443\", cert_file: c, key_file: k, min_version: \"1.3\"",
    ))
    .expect("valid");
    assert_eq!(c.server.tls.active_addr(), ":9443");
    assert_eq!(c.server.tls.min_version, "1.3");
    assert_eq!(load(BASE).expect("valid").server.tls.active_addr(), "");
}

#[test]
fn cors_block_loads_in_both_dialects_with_defaults() {
    let c = load(&format!(
        "{BASE}routes:\n  - match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    cors: true\ncors:\n  allowedOrigins: [\"https://app.example.com\"]\n"
    ))
    .unwrap();
    let cors = c.cors.as_ref().expect("cors block");
    assert_eq!(cors.allowed_origins, ["https://app.example.com"]);
    assert_eq!(
        cors.allowed_methods,
        ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    );
    assert_eq!(
        cors.allowed_headers,
        ["Authorization", "Content-Type", "X-Request-ID"]
    );
    assert_eq!(cors.exposed_headers, ["X-Request-ID"]);
    assert!(!cors.allow_credentials);
    assert_eq!(cors.max_age.get(), Duration::from_secs(86_400));
    assert_eq!(c.routes[0].cors, Some(true));

    let c = load(&format!(
        "{BASE}cors:\n  allowed_origins: [\"http://localhost:3000\"]\n  allowed_methods: [GET]\n  allowed_headers: [X-A]\n  exposed_headers: [X-B]\n  allow_credentials: true\n  max_age: 10m\n"
    ))
    .unwrap();
    let cors = c.cors.as_ref().expect("cors block");
    assert_eq!(cors.allowed_methods, ["GET"]);
    assert_eq!(cors.allowed_headers, ["X-A"]);
    assert_eq!(cors.exposed_headers, ["X-B"]);
    assert!(cors.allow_credentials);
    assert_eq!(cors.max_age.get(), Duration::from_secs(600));
}

#[test]
fn cors_mistakes_name_their_key_and_line() {
    let e = err_text(&format!(
        "{BASE}cors:\n  allowedOrigins: [\"https://a.test\"]\n  allowOrigins: [x]\n"
    ));
    assert!(e.contains("unknown field `allowOrigins`"), "{e}");
    let e = err_text(&format!(
        "{BASE}cors:\n  allowedOrigins: [\"*\"]\n  allowCredentials: true\n"
    ));
    assert!(
        e.contains("test.yaml:5:")
            && e.contains("cors.allowedOrigins[0]")
            && e.contains("allowCredentials"),
        "{e}"
    );
    for origin in [
        "https://a.test/",
        "https://a.test/app",
        "null",
        "a.test",
        "https://u@a.test",
    ] {
        let e = err_text(&format!(
            "{BASE}cors:\n  allowedOrigins: [\"https://ok.test\", \"{origin}\"]\n"
        ));
        assert!(
            e.contains("cors.allowedOrigins[1]") && e.contains("scheme://host[:port]"),
            "{origin}: {e}"
        );
    }
    let e = err_text(&format!(
        "{BASE}cors:\n  allowedOrigins: [\"https://a.test\"]\n  allowedMethods: [\"GET POST\"]\n  allowedHeaders: [\"X-Ok\", \"Bad Header\"]\n"
    ));
    assert!(e.contains("cors.allowedMethods[0]"), "{e}");
    assert!(e.contains("cors.allowedHeaders[1]"), "{e}");
    let e = err_text(&format!("{BASE}cors: {{}}\n"));
    assert!(e.contains("cors.allowedOrigins"), "{e}");
}

#[test]
fn a_cors_route_needs_the_cors_block() {
    let e = err_text(&format!(
        "{BASE}routes:\n  - match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    cors: true\n"
    ));
    assert!(e.contains("routes[0].cors") && e.contains("cors:"), "{e}");
    // `cors: false` needs nothing.
    assert!(load(&format!(
        "{BASE}routes:\n  - match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    cors: false\n"
    ))
    .is_ok());
}
