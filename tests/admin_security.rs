//! Admin API protection (DESIGN B6) against a real gateway, one vector per test: browsers'
//! cross-origin and cross-site writes, DNS rebinding (a foreign `Host` from loopback), the token
//! on `/metrics` when it shares the admin listener, body size and type, secret redaction, the
//! warning for a token-less admin beyond loopback, and slow request heads.
mod common;
use common::*;

use gogate::gateway::{Gateway, GatewayOptions};
use serde_json::Value;
use slog::Drain;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw socket.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.body))
    }
}

/// Sends one request to `addr` over a raw socket (so `Host`, `Origin` and framing are exactly
/// as given; `Host` defaults to `addr`) and reads the answer until the server closes.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Raw {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let chunked = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    if !body.is_empty() && !chunked {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut wire = req.into_bytes();
    wire.extend_from_slice(body);
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before taking the whole body: ignore write errors.
    let _ = s.write_all(&wire).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `Transfer-Encoding: chunked` framing of `body` in chunks of at most 4 KiB.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(4096) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn draining(gw: &TestGateway, token: Option<&str>, addr: &str) -> bool {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h = Vec::new();
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    let list = raw(gw.admin, "GET", "/backends", &h, b"").await.json();
    list.as_array()
        .expect("array")
        .iter()
        .find(|b| b["addr"] == addr)
        .map(|b| b["draining"] == true)
        .expect("backend listed")
}

#[actix_rt::test]
async fn cross_origin_writes_are_refused_and_the_admins_own_origin_is_not() {
    let a = Upstream::new("a").start().await;
    let addr = a.addr_str();
    let gw = gateway(&backends_yaml(&[&addr], "")).await;
    let drain = format!("/backends/{addr}/drain");
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        for (method, path) in [
            ("POST", "/reload"),
            ("POST", drain.as_str()),
            ("DELETE", drain.as_str()),
        ] {
            let r = raw(gw.admin, method, path, &[("Origin", origin)], b"").await;
            assert_eq!(r.status, 403, "{method} {path} from {origin}: {}", r.body);
            assert!(
                r.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("Origin")),
                "{}",
                r.body
            );
        }
    }
    assert!(
        !draining(&gw, None, &addr).await,
        "a refused drain changed nothing"
    );
    let text = gw.metrics_text().await;
    assert!(
        text.contains("gogate_config_reloads_total{result=\"success\"} 0"),
        "a refused reload did not run: {text}"
    );
    // The admin's own origin (a page it serves) may write.
    let own = format!("http://{}", gw.admin);
    let r = raw(gw.admin, "POST", &drain, &[("Origin", &own)], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(draining(&gw, None, &addr).await);
    gw.stop().await;
}

#[actix_rt::test]
async fn cross_origin_writes_are_refused_even_with_the_token() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  admin: {token: \"s3cret\"}\n",
    ))
    .await;
    let auth = ("Authorization", "Bearer s3cret");
    let drain = format!("/backends/{}/drain", a.addr_str());
    let r = raw(
        gw.admin,
        "POST",
        &drain,
        &[auth, ("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!draining(&gw, Some("s3cret"), &a.addr_str()).await);
    let r = raw(gw.admin, "POST", &drain, &[auth], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn sec_fetch_site_other_than_same_origin_or_none_is_refused() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let drain = format!("/backends/{}/drain", a.addr_str());
    for site in ["cross-site", "same-site"] {
        let r = raw(gw.admin, "POST", &drain, &[("Sec-Fetch-Site", site)], b"").await;
        assert_eq!(r.status, 403, "{site}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
    assert!(!draining(&gw, None, &a.addr_str()).await);
    for site in ["same-origin", "none"] {
        let r = raw(gw.admin, "POST", &drain, &[("Sec-Fetch-Site", site)], b"").await;
        assert_eq!(r.status, 200, "{site}: {}", r.body);
    }
    // Reads stay possible (a cross-site page cannot read the answer anyway).
    let r = raw(
        gw.admin,
        "GET",
        "/stats",
        &[("Sec-Fetch-Site", "cross-site")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_loopback_exemption_needs_a_loopback_host() {
    let a = Upstream::new("a").start().await;
    let addr = a.addr_str();
    let gw = gateway(&backends_yaml(&[&addr], "")).await;
    let port = gw.admin.port();
    let drain = format!("/backends/{addr}/drain");
    // A DNS-rebound page: a loopback peer, but the attacker's name in Host.
    for host in [
        format!("evil.test:{port}"),
        format!("127.0.0.1.evil.test:{port}"),
        format!("localhost.evil.test:{port}"),
        "10.1.2.3".to_string(),
    ] {
        let r = raw(gw.admin, "POST", &drain, &[("Host", &host)], b"").await;
        assert_eq!(r.status, 403, "Host {host}: {}", r.body);
        assert!(
            r.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("admin.token")),
            "{}",
            r.body
        );
    }
    assert!(!draining(&gw, None, &addr).await);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".to_string(),
    ] {
        let r = raw(gw.admin, "DELETE", &drain, &[("Host", &host)], b"").await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn a_token_works_under_any_host() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  admin: {token: \"s3cret\"}\n",
    ))
    .await;
    let h = [
        ("Host", "gateway.internal:9090"),
        ("Authorization", "Bearer s3cret"),
    ];
    let drain = format!("/backends/{}/drain", a.addr_str());
    let r = raw(gw.admin, "POST", &drain, &h, b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn metrics_on_the_shared_admin_listener_need_the_token() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  admin: {token: \"s3cret\"}\n",
    ))
    .await;
    assert_eq!(
        gw.metrics, gw.admin,
        "the test kit shares the admin listener"
    );
    for auth in [None, Some("Bearer nope")] {
        let h: Vec<(&str, &str)> = auth.map(|v| ("Authorization", v)).into_iter().collect();
        let r = raw(gw.admin, "GET", "/metrics", &h, b"").await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{}",
            r.head
        );
        assert!(!r.body.contains("gogate_"), "metrics leaked: {}", r.body);
    }
    let r = raw(
        gw.admin,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("gogate_uptime_seconds"), "{}", r.body);
    // Unknown paths are behind the token too (no probing without it).
    let r = raw(gw.admin, "GET", "/nope", &[], b"").await;
    assert_eq!(r.status, 401, "{}", r.body);
    for open in ["/health", "/ready"] {
        assert_eq!(
            raw(gw.admin, "GET", open, &[], b"").await.status,
            200,
            "{open}"
        );
    }
    gw.stop().await;
}

/// A gateway with the admin and metrics listeners where the test says (the kit pins both to
/// 127.0.0.1:0, shared), with its log captured.
async fn custom_gateway(
    admin: &str,
    metrics: &str,
    token: &str,
    backend: &str,
) -> (Gateway, LogBuffer) {
    let yaml = format!(
        "server:\n  listenAddr: \"\"\n  httpListenAddr: \"127.0.0.1:0\"\n  backends: [{{addr: \"{backend}\"}}]\n  health: {{enabled: false}}\n  admin: {{listenAddr: \"{admin}\", token: \"{token}\"}}\n  metrics: {{listenAddr: \"{metrics}\"}}\n"
    );
    let config = gogate_config::load_str(&yaml, None).expect("valid config");
    let logs = LogBuffer::default();
    let drain = Mutex::new(
        slog_json::Json::new(logs.clone())
            .add_default_keys()
            .build(),
    )
    .fuse();
    let gw = Gateway::start(GatewayOptions {
        config,
        file: None,
        log: slog::Logger::root(drain, slog::o!()),
        workers: Some(1),
        env_admin_token: None,
        resolver: None,
    })
    .await
    .expect("gateway starts");
    (gw, logs)
}

const OPEN_ADMIN_WARNING: &str = "the admin API listens beyond loopback without a token";

#[actix_rt::test]
async fn a_token_less_admin_beyond_loopback_is_warned_about_at_start() {
    let a = Upstream::new("a").start().await;
    let (gw, logs) = custom_gateway("0.0.0.0:0", "127.0.0.1:0", "", &a.addr_str()).await;
    let warned = logs
        .lines()
        .into_iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with(OPEN_ADMIN_WARNING))
        })
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "{:?}", logs.lines());
    assert_eq!(warned[0]["level"], "WARN", "{}", warned[0]);
    gw.shutdown().await;

    for (admin, token) in [("0.0.0.0:0", "s3cret"), ("127.0.0.1:0", "")] {
        let (gw, logs) = custom_gateway(admin, "127.0.0.1:0", token, &a.addr_str()).await;
        assert!(
            !logs.lines().iter().any(|l| l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with(OPEN_ADMIN_WARNING))),
            "{admin} with token {token:?}: {:?}",
            logs.lines()
        );
        gw.shutdown().await;
    }
}

#[actix_rt::test]
async fn metrics_on_their_own_listener_stay_open_for_scrapers() {
    let a = Upstream::new("a").start().await;
    let (gw, _logs) = custom_gateway("127.0.0.1:0", "127.0.0.2:0", "s3cret", &a.addr_str()).await;
    let (admin, metrics) = (gw.admin_addr.unwrap(), gw.metrics_addr.unwrap());
    assert_ne!(admin, metrics);
    let r = raw(metrics, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(raw(admin, "GET", "/stats", &[], b"").await.status, 401);
    gw.shutdown().await;
}

async fn registry_gateway() -> TestGateway {
    let a = Upstream::new("a").start().await;
    let yaml = backends_yaml(&[&a.addr_str()], "  registry: {enabled: true}\n");
    gateway(&yaml).await
}

/// A registration of exactly `len` bytes (padded with JSON whitespace).
fn registration(len: usize) -> Vec<u8> {
    let doc = r#"{"name":"svc","address":"127.0.0.1:1"}"#;
    let pad = len - doc.len();
    format!("{}{doc}", " ".repeat(pad)).into_bytes()
}

#[actix_rt::test]
async fn admin_bodies_over_64_kib_get_413_json() {
    let gw = registry_gateway().await;
    let json = ("Content-Type", "application/json");
    let big = registration(64 * 1024 + 1);
    let r = raw(gw.admin, "POST", "/v1/services", &[json], &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].is_string(), "{}", r.body);
    let r = raw(
        gw.admin,
        "POST",
        "/v1/services",
        &[json, ("Transfer-Encoding", "chunked")],
        &chunked(&big),
    )
    .await;
    assert_eq!(r.status, 413, "chunked: {}", r.body);
    assert!(r.json()["error"].is_string(), "{}", r.body);
    // Exactly 64 KiB is accepted, framed either way.
    let exact = registration(64 * 1024);
    let r = raw(gw.admin, "POST", "/v1/services", &[json], &exact).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = raw(
        gw.admin,
        "POST",
        "/v1/services",
        &[json, ("Transfer-Encoding", "chunked")],
        &chunked(&exact),
    )
    .await;
    assert_eq!(r.status, 201, "chunked: {}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn admin_bodies_must_be_json() {
    let gw = registry_gateway().await;
    let body = br#"{"name":"svc","address":"127.0.0.1:1"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let h: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        let r = raw(gw.admin, "POST", "/v1/services", &h, body).await;
        assert_eq!(r.status, 415, "{ct:?}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
    let r = raw(gw.admin, "GET", "/v1/services", &[], b"").await;
    assert_eq!(r.json(), serde_json::json!([]), "nothing was registered");
    let r = raw(
        gw.admin,
        "POST",
        "/v1/services",
        &[("Content-Type", "application/json; charset=utf-8")],
        body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn config_redacts_secrets_by_key_name() {
    let a = Upstream::new("a").start().await;
    let yaml = format!(
        "{}routes:\n  - match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    requestHeaders:\n      set: {{Authorization: \"Bearer upstream-secret\", X-Api-Key: \"k3y-material\", X-Trace: \"on\"}}\n",
        backends_yaml(&[&a.addr_str()], "  admin: {token: \"s3cret\"}\n")
    );
    let gw = gateway(&yaml).await;
    let r = raw(
        gw.admin,
        "GET",
        "/config",
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for secret in ["s3cret", "upstream-secret", "k3y-material"] {
        assert!(!r.body.contains(secret), "{secret} leaks: {}", r.body);
    }
    let c = r.json();
    assert_eq!(c["config"]["server"]["admin"]["token"], "<redacted>");
    let set = &c["config"]["routes"][0]["requestHeaders"]["set"];
    assert_eq!(set["Authorization"], "<redacted>", "{set}");
    assert_eq!(set["X-Api-Key"], "<redacted>", "{set}");
    assert_eq!(set["X-Trace"], "on", "{set}");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_slow_admin_request_head_is_cut() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let mut s = TcpStream::connect(gw.admin).await.expect("connect");
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The head never ends: the admin server closes the connection (its head timeout is 5 s;
    // allow a generous bound, this is no timing assertion).
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the connection was held open");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
    gw.stop().await;
}
