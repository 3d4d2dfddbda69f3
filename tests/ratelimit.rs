//! Rate limiting (DESIGN B3, B4, B7, B10) through a real gateway: 429 with `Retry-After` and the
//! `RateLimit-*` headers for each `keyBy`, the headers on allowed responses, a route's own limit
//! replacing the server's, the L4 per-connection limit, and the rejection counters. Rates are
//! low (one token per 100 s) wherever refill must not hand out a token mid-test.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// L7 only, the default upstream = `up`, plus `extra` under `server:`.
fn l7_yaml(up: &RunningUpstream, extra: &str) -> String {
    backends_yaml(&[&up.addr_str()], &format!("  listenAddr: \"\"\n{extra}"))
}

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = awc::Client::default().get(gw.url(path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    fetch(req).await
}

fn num(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header: {r:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not a number ({e}): {r:?}"))
}

/// Asserts a proxied 200 with its quota headers; returns `RateLimit-Remaining`.
fn allowed(r: &Resp, limit: u64) -> u64 {
    assert_eq!(r.status, 200, "expected a proxied 200: {r:?}");
    assert_eq!(num(r, "ratelimit-limit"), limit, "{r:?}");
    assert!(num(r, "ratelimit-reset") >= 1, "{r:?}");
    num(r, "ratelimit-remaining")
}

/// Asserts the gateway's 429 with every header DESIGN B4 asks for.
fn rejected(r: &Resp, limit: u64) {
    assert_eq!(r.status, 429, "expected 429: {r:?}");
    let body = r.json();
    assert_eq!(body["error"], "rate limit exceeded", "{r:?}");
    assert_eq!(
        body["request_id"].as_str(),
        r.header("x-request-id"),
        "{r:?}"
    );
    assert!(num(r, "retry-after") >= 1, "{r:?}");
    assert_eq!(num(r, "ratelimit-limit"), limit, "{r:?}");
    assert_eq!(num(r, "ratelimit-remaining"), 0, "{r:?}");
    assert!(num(r, "ratelimit-reset") >= 1, "{r:?}");
}

/// The value of metric `name` with the given labels (0 when absent).
async fn metric(gw: &TestGateway, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = gw.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// `gogate_rate_limit_rejected_total{listener, route}`.
async fn rejected_metric(gw: &TestGateway, listener: &str, route: &str) -> u64 {
    let labels = [("listener", listener), ("route", route)];
    metric(gw, "gogate_rate_limit_rejected_total", &labels).await
}

async fn stats_rate_limited(gw: &TestGateway) -> u64 {
    gw.admin_get("/stats").await.json()["requests"]["rate_limited"]
        .as_u64()
        .expect("requests.rate_limited in /stats")
}

#[actix_rt::test]
async fn global_limit_answers_429_with_retry_after_and_quota_headers() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&l7_yaml(
        &up,
        "  rateLimit: {enabled: true, rate: 0.5, burst: 3, keyBy: global}\n",
    ))
    .await;
    let remaining: Vec<u64> = [gw.get("/a").await, gw.get("/b").await, gw.get("/c").await]
        .iter()
        .map(|r| allowed(r, 3))
        .collect();
    assert_eq!(remaining, [2, 1, 0]);

    let r = gw.get("/d").await;
    rejected(&r, 3);
    // One token per 2 s: the next one is at most 2 s away.
    assert!(num(&r, "retry-after") <= 2, "{r:?}");
    assert_eq!(
        up.hits(),
        3,
        "the rejected request never reached the upstream"
    );
    assert_eq!(rejected_metric(&gw, "http", "default").await, 1);
    assert_eq!(stats_rate_limited(&gw).await, 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn buckets_refill_at_the_configured_rate() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&l7_yaml(
        &up,
        "  rateLimit: {enabled: true, rate: 2, burst: 1}\n",
    ))
    .await;
    allowed(&gw.get("/").await, 1);
    rejected(&gw.get("/").await, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    allowed(&gw.get("/").await, 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn ip_limit_gives_each_client_behind_a_trusted_proxy_its_own_bucket() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&l7_yaml(
        &up,
        "  trustedProxies: [\"127.0.0.1/32\"]\n  rateLimit: {enabled: true, rate: 0.01, burst: 2, keyBy: ip}\n",
    ))
    .await;
    let a = [("x-forwarded-for", "203.0.113.1")];
    let b = [("x-forwarded-for", "198.51.100.7, 127.0.0.1")];
    assert_eq!(allowed(&get_with(&gw, "/", &a).await, 2), 1);
    assert_eq!(allowed(&get_with(&gw, "/", &a).await, 2), 0);
    rejected(&get_with(&gw, "/", &a).await, 2);
    // Another client (the right-most untrusted entry) still has its whole bucket.
    assert_eq!(allowed(&get_with(&gw, "/", &b).await, 2), 1);
    assert_eq!(allowed(&get_with(&gw, "/", &b).await, 2), 0);
    rejected(&get_with(&gw, "/", &b).await, 2);
    // The proxy itself, without X-Forwarded-For, is a third client.
    assert_eq!(allowed(&gw.get("/").await, 2), 1);
    assert_eq!(rejected_metric(&gw, "http", "default").await, 2);
    let labels = [("listener", "http"), ("limit", "server")];
    assert_eq!(metric(&gw, "gogate_rate_limit_keys", &labels).await, 3);
    gw.stop().await;
}

#[actix_rt::test]
async fn ip_limit_ignores_x_forwarded_for_from_untrusted_peers() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&l7_yaml(
        &up,
        "  rateLimit: {enabled: true, rate: 0.01, burst: 2, keyBy: ip}\n",
    ))
    .await;
    allowed(
        &get_with(&gw, "/", &[("x-forwarded-for", "203.0.113.1")]).await,
        2,
    );
    allowed(
        &get_with(&gw, "/", &[("x-forwarded-for", "203.0.113.2")]).await,
        2,
    );
    // A spoofed header does not buy a new bucket: the peer is the client.
    rejected(
        &get_with(&gw, "/", &[("x-forwarded-for", "203.0.113.3")]).await,
        2,
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn header_limit_keys_by_value_and_requests_without_it_share_a_bucket() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&l7_yaml(
        &up,
        "  rateLimit: {enabled: true, rate: 0.01, burst: 2, keyBy: \"header:X-Api-Key\"}\n",
    ))
    .await;
    for key in ["key-1", "key-2"] {
        let h = [("x-api-key", key)];
        allowed(&get_with(&gw, "/", &h).await, 2);
        allowed(&get_with(&gw, "/", &h).await, 2);
        rejected(&get_with(&gw, "/", &h).await, 2);
    }
    allowed(&gw.get("/").await, 2);
    allowed(&gw.get("/").await, 2);
    rejected(&gw.get("/").await, 2);
    assert_eq!(stats_rate_limited(&gw).await, 3);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_route_limit_replaces_the_server_limit_and_enabled_false_exempts() {
    let up = Upstream::new("a").start().await;
    let routes = "routes:\n  - name: strict\n    match: {pathPrefix: /strict}\n    upstreams: [{name: default}]\n    rateLimit: {rate: 0.01, burst: 1}\n  - name: free\n    match: {pathPrefix: /free}\n    upstreams: [{name: default}]\n    rateLimit: {enabled: false}\n  - name: shared\n    match: {pathPrefix: /shared}\n    upstreams: [{name: default}]\n";
    let yaml = format!(
        "{}{routes}",
        l7_yaml(&up, "  rateLimit: {enabled: true, rate: 0.01, burst: 3}\n")
    );
    let gw = gateway(&yaml).await;

    // Stricter than the server's: one request, then 429 with the route's numbers.
    allowed(&gw.get("/strict").await, 1);
    rejected(&gw.get("/strict").await, 1);
    // Checked against the route's limit only: the server's bucket still holds all 3 tokens.
    for _ in 0..3 {
        allowed(&gw.get("/shared").await, 3);
    }
    rejected(&gw.get("/shared").await, 3);
    // Exempt, with no quota headers, while the server bucket is empty.
    for _ in 0..10 {
        let r = gw.get("/free").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.header("ratelimit-limit").is_none(), "{r:?}");
    }
    assert_eq!(rejected_metric(&gw, "http", "strict").await, 1);
    assert_eq!(rejected_metric(&gw, "http", "shared").await, 1);
    assert_eq!(rejected_metric(&gw, "http", "free").await, 0);
    assert_eq!(stats_rate_limited(&gw).await, 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_route_limit_applies_while_the_server_limit_is_off() {
    let up = Upstream::new("a").start().await;
    let yaml = format!(
        "{}routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    rateLimit: {{rate: 0.01, burst: 2, keyBy: ip}}\n",
        l7_yaml(&up, "")
    );
    let gw = gateway(&yaml).await;
    allowed(&gw.get("/api/x").await, 2);
    allowed(&gw.get("/api/y").await, 2);
    rejected(&gw.get("/api/z").await, 2);
    // Other traffic is unlimited and carries no quota headers.
    let r = gw.get("/other").await;
    assert_eq!(r.status, 200);
    assert!(r.header("ratelimit-limit").is_none(), "{r:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn requests_no_route_matches_are_limited_too() {
    let up = Upstream::new("a").start().await;
    let yaml = format!(
        "server:\n  listenAddr: \"\"\n  backends: []\n  rateLimit: {{enabled: true, rate: 0.01, burst: 1}}\nupstreams:\n  api:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: api}}]\n",
        up.addr_str()
    );
    let gw = gateway(&yaml).await;
    let r = gw.get("/nowhere").await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(num(&r, "ratelimit-remaining"), 0, "{r:?}");
    rejected(&gw.get("/nowhere").await, 1);
    assert_eq!(rejected_metric(&gw, "http", "none").await, 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn an_allowed_websocket_upgrade_carries_the_quota_headers() {
    // A raw upstream that accepts the upgrade, then holds the tunnel until the client leaves.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(n @ 1..) => head.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await;
        while let Ok(1..) = s.read(&mut buf).await {}
    });
    let gw = gateway(&backends_yaml(
        &[&addr.to_string()],
        "  listenAddr: \"\"\n  rateLimit: {enabled: true, rate: 0.01, burst: 5}\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.http.expect("http"))
        .await
        .expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n @ 1..)) => head.extend_from_slice(&buf[..n]),
            other => panic!("no upgrade response: {other:?}"),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("ratelimit-limit: 5\r\n"), "{head}");
    assert!(head.contains("ratelimit-remaining: 4\r\n"), "{head}");
    drop(s);
    gw.stop().await;
}

/// An echo TCP backend counting the connections it accepted.
async fn echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    actix_rt::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            actix_rt::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn echoes(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping"
    )
}

#[actix_rt::test]
async fn l4_connections_beyond_the_burst_are_closed_at_once() {
    let (addr, accepted) = echo_backend().await;
    let gw = gateway(&backends_yaml(
        &[&addr.to_string()],
        "  httpListenAddr: \"\"\n  rateLimit: {enabled: true, rate: 0.01, burst: 2, keyBy: ip}\n",
    ))
    .await;
    let tcp = gw.tcp.expect("L4 listener");
    let mut one = TcpStream::connect(tcp).await.expect("connect");
    let mut two = TcpStream::connect(tcp).await.expect("connect");
    assert!(echoes(&mut one).await && echoes(&mut two).await);

    let started = Instant::now();
    if let Ok(mut three) = TcpStream::connect(tcp).await {
        let _ = three.write_all(b"ping").await;
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(2), three.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            other => panic!("the third connection was not closed: {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed too slowly"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no backend connection for it"
    );
    // Sessions already admitted are unaffected.
    assert!(echoes(&mut one).await);
    assert_eq!(rejected_metric(&gw, "tcp", "default").await, 1);
    assert_eq!(stats_rate_limited(&gw).await, 1);
    drop((one, two)); // so the shutdown drain has no session to wait for
    gw.stop().await;
}
