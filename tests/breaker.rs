//! Per-backend circuit breakers (DESIGN B3, B4, B7, B10) end to end: a real gateway in front
//! of controllable upstreams. A failing backend opens after `failureThreshold` failures and
//! traffic fails over; the breaker goes half-open on its timer without traffic, admits at most
//! `successThreshold` concurrent probes, closes on their success and re-opens on a failure.
mod common;
use common::controlled::Controlled;
use common::*;

use std::time::{Duration, Instant};

fn breaker_yaml(addrs: &[&str], failures: u32, successes: u32, timeout: &str) -> String {
    backends_yaml(
        addrs,
        &format!(
            "  circuitBreaker: {{enabled: true, failureThreshold: {failures}, \
             successThreshold: {successes}, timeout: {timeout}}}\n"
        ),
    )
}

/// `circuit_breaker` of the backend at `addr` in `/backends`.
async fn position(gw: &TestGateway, addr: &str) -> String {
    let list = gw.admin_get("/backends").await.json();
    let b = list
        .as_array()
        .and_then(|l| l.iter().find(|b| b["addr"] == addr))
        .unwrap_or_else(|| panic!("{addr} not in /backends: {list}"))
        .clone();
    b["circuit_breaker"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn failures_total(gw: &TestGateway, addr: &str) -> u64 {
    let list = gw.admin_get("/backends").await.json();
    list.as_array()
        .and_then(|l| l.iter().find(|b| b["addr"] == addr))
        .and_then(|b| b["failures_total"].as_u64())
        .unwrap_or_else(|| panic!("{addr} not in /backends: {list}"))
}

/// `gogate_circuit_breaker_state` of the backend at `addr`.
async fn metric(gw: &TestGateway, addr: &str) -> Option<i64> {
    let text = gw.metrics_text().await;
    let label = format!("backend=\"{addr}\"");
    text.lines()
        .find(|l| l.starts_with("gogate_circuit_breaker_state{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_position(gw: &TestGateway, addr: &str, want: &str) {
    eventually(&format!("{addr} breaker {want}"), || async {
        position(gw, addr).await == want
    })
    .await;
}

/// Sends requests until `b` has answered `n` more of them (its breaker lets them through).
async fn hit(gw: &TestGateway, b: &Controlled, n: usize) {
    let target = b.hits() + n;
    for _ in 0..40 {
        if b.hits() >= target {
            return;
        }
        gw.get("/").await;
    }
    panic!("{} did not get {n} more requests", b.name);
}

async fn trip(gw: &TestGateway, b: &Controlled, failures: usize) {
    hit(gw, b, failures).await;
    wait_position(gw, &b.addr_str(), "open").await;
}

#[actix_rt::test]
async fn failing_backend_opens_and_traffic_fails_over() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 500).await;
    let gw = gateway(&breaker_yaml(&[&a.addr_str(), &b.addr_str()], 3, 2, "60s")).await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(gw.get("/").await.status);
    }
    assert_eq!(
        b.hits(),
        3,
        "after failureThreshold failures no request reaches it"
    );
    assert_eq!(codes.iter().filter(|&&c| c == 500).count(), 3, "{codes:?}");
    assert_eq!(position(&gw, &b.addr_str()).await, "open");
    assert_eq!(position(&gw, &a.addr_str()).await, "closed");
    assert_eq!(metric(&gw, &b.addr_str()).await, Some(1));
    assert_eq!(metric(&gw, &a.addr_str()).await, Some(0));
    for _ in 0..10 {
        let r = gw.get("/").await;
        assert_eq!((r.status, r.header("x-upstream")), (200, Some("a")));
    }
    assert_eq!(b.hits(), 3);
    let opened = gw.logs.with_msg("circuit breaker opened");
    assert_eq!(opened.len(), 1, "one event per trip: {opened:?}");
    assert_eq!(opened[0]["level"], "WARN");
    assert_eq!(opened[0]["backend"], b.addr_str());
    assert_eq!(opened[0]["upstream"], "default");
    gw.stop().await;
}

#[actix_rt::test]
async fn stopped_backend_opens_on_connect_failures_and_clients_never_notice() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 200).await;
    let gw = gateway(&breaker_yaml(&[&a.addr_str(), &b.addr_str()], 2, 1, "60s")).await;
    hit(&gw, &b, 1).await;
    b.stop().await;
    for _ in 0..10 {
        // A connect failure moves on to the other backend (retry.attempts 1).
        assert_eq!(gw.get("/").await.status, 200);
    }
    wait_position(&gw, &b.addr_str(), "open").await;
    let failed = failures_total(&gw, &b.addr_str()).await;
    for _ in 0..6 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(
        failures_total(&gw, &b.addr_str()).await,
        failed,
        "not tried once open"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn open_breaker_goes_half_open_on_its_timer_without_traffic() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 503).await;
    let gw = gateway(&breaker_yaml(
        &[&a.addr_str(), &b.addr_str()],
        2,
        2,
        "300ms",
    ))
    .await;
    trip(&gw, &b, 2).await;
    let hits = (a.hits(), b.hits());
    wait_position(&gw, &b.addr_str(), "half_open").await;
    assert_eq!(metric(&gw, &b.addr_str()).await, Some(2));
    assert_eq!((a.hits(), b.hits()), hits, "no traffic was needed");
    let half = gw.logs.with_msg("circuit breaker half-open");
    assert_eq!(half.len(), 1, "{half:?}");
    assert_eq!(half[0]["backend"], b.addr_str());
    gw.stop().await;
}

#[actix_rt::test]
async fn half_open_admits_at_most_success_threshold_concurrent_probes_then_closes() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 500).await;
    let gw = gateway(&breaker_yaml(
        &[&a.addr_str(), &b.addr_str()],
        2,
        2,
        "200ms",
    ))
    .await;
    trip(&gw, &b, 2).await;
    wait_position(&gw, &b.addr_str(), "half_open").await;

    // Recovered but slow: every probe is still in flight when the others arrive.
    b.set_status(200);
    b.set_delay(Duration::from_millis(700));
    b.reset_max_concurrent();
    let before = b.hits();
    let burst = (0..12).map(|_| gw.get("/"));
    let answers = futures_util::future::join_all(burst).await;
    assert!(answers.iter().all(|r| r.status == 200), "failover to a");
    assert_eq!(b.max_concurrent(), 2, "successThreshold concurrent probes");
    assert_eq!(b.hits() - before, 2, "the others went to a");

    wait_position(&gw, &b.addr_str(), "closed").await;
    assert_eq!(metric(&gw, &b.addr_str()).await, Some(0));
    assert_eq!(gw.logs.with_msg("circuit breaker closed").len(), 1);
    b.set_delay(Duration::ZERO);
    hit(&gw, &b, 3).await; // back in rotation
    gw.stop().await;
}

#[actix_rt::test]
async fn failed_probe_reopens_and_restarts_the_timeout() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 500).await;
    let gw = gateway(&breaker_yaml(
        &[&a.addr_str(), &b.addr_str()],
        2,
        2,
        "500ms",
    ))
    .await;
    trip(&gw, &b, 2).await;
    wait_position(&gw, &b.addr_str(), "half_open").await;

    hit(&gw, &b, 1).await; // the probe fails (500)
    let reopened = Instant::now();
    wait_position(&gw, &b.addr_str(), "open").await;
    assert_eq!(metric(&gw, &b.addr_str()).await, Some(1));
    tokio::time::sleep(Duration::from_millis(250).saturating_sub(reopened.elapsed())).await;
    assert_eq!(
        position(&gw, &b.addr_str()).await,
        "open",
        "the timeout restarted"
    );
    wait_position(&gw, &b.addr_str(), "half_open").await;
    assert!(reopened.elapsed() >= Duration::from_millis(450));
    assert_eq!(gw.logs.with_msg("circuit breaker opened").len(), 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn all_backends_open_answers_503_circuit_open() {
    let b = Controlled::start("b", 502).await;
    let gw = gateway(&breaker_yaml(&[&b.addr_str()], 2, 1, "60s")).await;
    assert_eq!(gw.get("/").await.status, 502);
    assert_eq!(gw.get("/").await.status, 502);
    wait_position(&gw, &b.addr_str(), "open").await;
    let r = gw.get("/").await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["error"], "circuit open");
    assert!(!body["request_id"].as_str().unwrap_or_default().is_empty());
    assert_eq!(r.header("x-request-id"), body["request_id"].as_str());
    assert_eq!(b.hits(), 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn disabled_breaker_keeps_sending_to_a_failing_backend() {
    let a = Upstream::new("a").start().await;
    let b = Controlled::start("b", 500).await;
    let gw = gateway(&backends_yaml(&[&a.addr_str(), &b.addr_str()], "")).await;
    for _ in 0..20 {
        gw.get("/").await;
    }
    assert_eq!(b.hits(), 10);
    assert_eq!(position(&gw, &b.addr_str()).await, "closed");
    assert_eq!(metric(&gw, &b.addr_str()).await, Some(0));
    assert!(gw.logs.with_msg("circuit breaker opened").is_empty());
    gw.stop().await;
}

#[actix_rt::test]
async fn per_upstream_override_enables_the_breaker_for_that_upstream_only() {
    let a = Controlled::start("a", 500).await;
    let b = Controlled::start("b", 500).await;
    let yaml = format!(
        "{}upstreams:\n  api:\n    backends: [{{addr: \"{}\"}}]\n    \
         circuitBreaker: {{enabled: true, failureThreshold: 1}}\n\
         routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: api}}]\n",
        backends_yaml(&[&a.addr_str()], ""),
        b.addr_str()
    );
    let gw = gateway(&yaml).await;
    assert_eq!(gw.get("/api").await.status, 500);
    wait_position(&gw, &b.addr_str(), "open").await;
    assert_eq!(gw.get("/api").await.status, 503);
    for _ in 0..3 {
        assert_eq!(
            gw.get("/").await.status,
            500,
            "default upstream has no breaker"
        );
    }
    assert_eq!(position(&gw, &a.addr_str()).await, "closed");
    gw.stop().await;
}

const L4_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n";

#[actix_rt::test]
async fn l4_dead_backend_opens_after_connect_failures_and_sessions_go_to_the_other() {
    let a = Upstream::new("a").start().await;
    let dead = dead_addr();
    let gw = gateway(&breaker_yaml(&[&dead, &a.addr_str()], 2, 1, "60s")).await;
    let tcp = gw.tcp.expect("tcp listener");
    for _ in 0..3 {
        let out = raw_exchange(tcp, L4_REQUEST, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    wait_position(&gw, &dead, "open").await;
    assert_eq!(metric(&gw, &dead).await, Some(1));
    assert_eq!(
        failures_total(&gw, &dead).await,
        2,
        "failureThreshold connect failures"
    );
    for _ in 0..4 {
        let out = raw_exchange(tcp, L4_REQUEST, Duration::from_secs(3)).await;
        assert!(out.contains("x-upstream: a"), "{out}");
    }
    assert_eq!(failures_total(&gw, &dead).await, 2, "not tried once open");
    gw.stop().await;
}

#[actix_rt::test]
async fn l4_connection_closes_when_every_backend_is_open() {
    let dead = dead_addr();
    let gw = gateway(&breaker_yaml(&[&dead], 1, 1, "60s")).await;
    let tcp = gw.tcp.expect("tcp listener");
    let out = raw_exchange(tcp, L4_REQUEST, Duration::from_secs(3)).await;
    assert!(out.is_empty(), "{out}");
    wait_position(&gw, &dead, "open").await;
    let started = Instant::now();
    let out = raw_exchange(tcp, L4_REQUEST, Duration::from_secs(3)).await;
    assert!(out.is_empty() && started.elapsed() < Duration::from_secs(2));
    assert_eq!(failures_total(&gw, &dead).await, 1);
    gw.stop().await;
}
