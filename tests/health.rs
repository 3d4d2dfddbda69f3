//! Active health checks (DESIGN A2 HealthActor/BackendActor, B3 `health`, B6 `/backends`, B7
//! `gogate_backend_healthy`, B9 "healthyThreshold ignored; HTTP checks that only connect"):
//! real upstreams, the real gateway, short probe intervals and `eventually`.
mod common;
use common::*;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config with `addrs` as the default upstream and the given `server.health` flow mapping.
fn health_yaml(addrs: &[&str], health: &str) -> String {
    let mut y = String::from("server:\n  backends:\n");
    for a in addrs {
        y.push_str(&format!("    - addr: \"{a}\"\n"));
    }
    y.push_str(&format!("  health: {health}\n"));
    y
}

async fn backends(gw: &TestGateway) -> Value {
    let r = gw.admin_get("/backends").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// The `/backends` entry of `addr` in `upstream`.
async fn entry(gw: &TestGateway, upstream: &str, addr: &str) -> Value {
    let list = backends(gw).await;
    list.as_array()
        .expect("/backends is an array")
        .iter()
        .find(|b| b["addr"] == addr && b["upstream"] == upstream)
        .cloned()
        .unwrap_or_else(|| panic!("{upstream}/{addr} not in /backends: {list}"))
}

async fn is_healthy(gw: &TestGateway, upstream: &str, addr: &str) -> bool {
    entry(gw, upstream, addr).await["healthy"] == true
}

/// `2026-11-25T19:45:09.123Z`
fn is_rfc3339_ms(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars().filter(char::is_ascii_digit).count() == 17
}

/// An L7 GET that must succeed; returns the answering backend's name.
async fn backend_of(gw: &TestGateway) -> String {
    let r = gw.get("/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["backend"].as_str().expect("backend").to_string()
}

/// Binds a plain listener on a port a stopped upstream used (retrying while the old socket
/// closes). It never accepts; the kernel completes handshakes, which is all a tcp check needs.
async fn rebind(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

#[actix_rt::test]
async fn tcp_check_fails_over_at_unhealthy_threshold_and_recovers_at_healthy_threshold() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let (a_addr, b_addr) = (a.addr_str(), b.addr_str());
    let gw = gateway(&health_yaml(
        &[&a_addr, &b_addr],
        "{checkType: tcp, interval: 300ms, timeout: 200ms, unhealthyThreshold: 3, healthyThreshold: 2}",
    ))
    .await;
    eventually("first probes recorded", || async {
        entry(&gw, "default", &b_addr).await["last_check"].is_string()
    })
    .await;
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..4 {
        seen.push(backend_of(&gw).await);
    }
    assert!(
        seen.contains(&"b".to_string()),
        "both in rotation: {seen:?}"
    );

    b.stop().await;
    // After the first failed probe (of three) b has an error but is still healthy.
    eventually("b failed a probe but is still healthy", || async {
        let e = entry(&gw, "default", &b_addr).await;
        e["last_error"].is_string() && e["healthy"] == true
    })
    .await;
    eventually("b unhealthy", || async {
        !is_healthy(&gw, "default", &b_addr).await
    })
    .await;
    let down = gw.logs.with_msg("backend unhealthy");
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0]["failures"], 3, "{:?}", down[0]);
    assert_eq!(down[0]["backend"], b_addr.as_str());
    assert_eq!(down[0]["upstream"], "default");
    assert!(
        down[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("connect failed")),
        "{:?}",
        down[0]
    );
    assert_eq!(down[0]["level"], "WARN");
    let hits_before = a.hits();
    for _ in 0..6 {
        assert_eq!(backend_of(&gw).await, "a", "traffic fails over to a");
    }
    assert_eq!(a.hits(), hits_before + 6);
    assert!(is_healthy(&gw, "default", &a_addr).await);

    // Back on the same port: one success clears the error but is not enough (threshold 2).
    let _listener = rebind(b.addr).await;
    eventually("b probed fine once, still unhealthy", || async {
        let e = entry(&gw, "default", &b_addr).await;
        e["last_error"].is_null() && e["healthy"] == false
    })
    .await;
    eventually("b healthy again", || async {
        is_healthy(&gw, "default", &b_addr).await
    })
    .await;
    let up = gw.logs.with_msg("backend healthy");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["successes"], 2, "{:?}", up[0]);
    assert_eq!(up[0]["backend"], b_addr.as_str());
    assert_eq!(up[0]["level"], "INFO");
    gw.stop().await;
}

#[actix_rt::test]
async fn http_check_needs_2xx_or_3xx_within_the_timeout() {
    let ok = Upstream::new("ok").start().await;
    let redirect = Upstream::new("redirect").status(301).start().await;
    let broken = Upstream::new("broken").status(500).start().await;
    // Accepts TCP (kernel backlog) and never answers HTTP.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let addrs = [
        ok.addr_str(),
        redirect.addr_str(),
        broken.addr_str(),
        silent_addr.clone(),
    ];
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let gw = gateway(&health_yaml(
        &refs,
        "{checkType: http, httpPath: /health, interval: 100ms, timeout: 80ms, unhealthyThreshold: 2, healthyThreshold: 1}",
    ))
    .await;

    eventually("500 and silent backends unhealthy", || async {
        !is_healthy(&gw, "default", &broken.addr_str()).await
            && !is_healthy(&gw, "default", &silent_addr).await
    })
    .await;
    let e = entry(&gw, "default", &broken.addr_str()).await;
    assert_eq!(e["last_error"], "http status 500", "{e}");
    let e = entry(&gw, "default", &silent_addr).await;
    assert!(
        e["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("timed out")),
        "{e}"
    );
    for up in [&ok, &redirect] {
        let e = entry(&gw, "default", &up.addr_str()).await;
        assert_eq!(e["healthy"], true, "{e}");
        assert!(is_rfc3339_ms(&e["last_check"]), "{e}");
        assert!(e["last_error"].is_null(), "{e}");
    }
    // The probe is a real GET of httpPath with the backend address as Host.
    let probe = ok.last();
    assert_eq!(
        (probe.method.as_str(), probe.path.as_str()),
        ("GET", "/health")
    );
    assert_eq!(probe.header("host"), Some(ok.addr_str().as_str()));
    // Traffic reaches only the healthy ones.
    for _ in 0..6 {
        let r = gw.get("/").await;
        assert!(
            r.status == 200 || r.status == 301,
            "{} {}",
            r.status,
            r.body
        );
        let name = r.json()["backend"].as_str().unwrap_or_default().to_string();
        assert!(name == "ok" || name == "redirect", "{name}");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn all_backends_unhealthy_gives_503_closes_l4_and_stays_ready() {
    let (d1, d2) = (dead_addr(), dead_addr());
    let gw = gateway(&health_yaml(
        &[&d1, &d2],
        "{interval: 50ms, timeout: 50ms, unhealthyThreshold: 1}",
    ))
    .await;
    eventually("both unhealthy", || async {
        let list = backends(&gw).await;
        list.as_array()
            .is_some_and(|l| l.iter().all(|b| b["healthy"] == false))
    })
    .await;

    let started = Instant::now();
    let r = gw.get("/anything").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let body = r.json();
    assert!(body["error"].is_string(), "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1), "503 promptly");

    let mut s = TcpStream::connect(gw.tcp.expect("L4 enabled"))
        .await
        .expect("connect to L4");
    let _ = s.write_all(b"hello?").await;
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Err(_) => panic!("L4 connection still open after 1 s"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("L4 sent {n} bytes"),
    }

    let ready = gw.admin_get("/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    for d in [&d1, &d2] {
        let e = entry(&gw, "default", d).await;
        assert!(is_rfc3339_ms(&e["last_check"]), "{e}");
        assert!(
            e["last_error"]
                .as_str()
                .is_some_and(|s| s.contains("connect failed")),
            "{e}"
        );
    }
    let text = gw.metrics_text().await;
    for d in [&d1, &d2] {
        let line = format!("gogate_backend_healthy{{upstream=\"default\",backend=\"{d}\"}} 0");
        let alt = format!("gogate_backend_healthy{{backend=\"{d}\",upstream=\"default\"}} 0");
        assert!(
            text.contains(&line) || text.contains(&alt),
            "{line} not in:\n{text}"
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn upstream_health_override_inherits_unset_keys_from_server() {
    // Both backends answer 500: a tcp check passes them, an http check fails them.
    let plain = Upstream::new("plain").status(500).start().await;
    let api = Upstream::new("api").status(500).start().await;
    let yaml = format!(
        "{}upstreams:\n  api:\n    backends: [{{addr: \"{}\"}}]\n    health: {{checkType: http}}\n",
        health_yaml(
            &[&plain.addr_str()],
            "{checkType: tcp, interval: 50ms, timeout: 40ms, unhealthyThreshold: 2}"
        ),
        api.addr_str()
    );
    let gw = gateway(&yaml).await;
    // Unhealthy within the 5 s deadline only if interval and threshold were inherited (the
    // defaults would take 5 s × 3).
    eventually("api backend unhealthy by its http check", || async {
        !is_healthy(&gw, "api", &api.addr_str()).await
    })
    .await;
    let e = entry(&gw, "api", &api.addr_str()).await;
    assert_eq!(e["last_error"], "http status 500", "{e}");
    let e = entry(&gw, "default", &plain.addr_str()).await;
    assert_eq!(
        e["healthy"], true,
        "tcp check passes a 500-answering backend: {e}"
    );
    assert!(
        e["last_check"].is_string() && e["last_error"].is_null(),
        "{e}"
    );
    assert!(
        plain.seen.lock().expect("lock").is_empty(),
        "a tcp check sends no HTTP request"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn disabled_health_sends_no_probes_and_keeps_backends_healthy() {
    let quiet_dead = dead_addr();
    let checked_dead = dead_addr();
    let yaml = format!(
        "{}upstreams:\n  quiet:\n    backends: [{{addr: \"{quiet_dead}\"}}]\n    health: {{enabled: false}}\n",
        health_yaml(&[&checked_dead], "{interval: 50ms, timeout: 50ms, unhealthyThreshold: 1}")
    );
    let gw = gateway(&yaml).await;
    eventually("the checked backend is probed", || async {
        !is_healthy(&gw, "default", &checked_dead).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = entry(&gw, "quiet", &quiet_dead).await;
    assert_eq!(e["healthy"], true, "{e}");
    assert!(e["last_check"].is_null(), "{e}");
    assert!(e["last_error"].is_null(), "{e}");
    gw.stop().await;

    // `server.health.enabled: false` (the test kit's default) turns off every probe.
    let gw = gateway(&backends_yaml(&[&checked_dead], "")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = entry(&gw, "default", &checked_dead).await;
    assert_eq!(e["healthy"], true, "{e}");
    assert!(e["last_check"].is_null(), "{e}");
    gw.stop().await;
}
