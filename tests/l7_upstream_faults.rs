//! Upstreams that misbehave on the connection level: a pooled connection closed under a
//! request, keep-alive connections closed sooner than the pool expects, a backend that accepts
//! and never answers. What may be sent twice is sent twice (idempotent methods), nothing else.
mod common;
use common::scripted::{RawClient, Script, Scripted};
use common::*;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn reply(raw: &str) -> Script {
    Script::Reply(raw.as_bytes().to_vec())
}

/// Sends `method path` with a small body on a raw client.
async fn with_body(c: &mut RawClient, method: &str, path: &str) -> u16 {
    c.request_with_body(method, path, b"payload")
        .await
        .expect("a response")
        .status
}

#[actix_rt::test]
async fn a_post_is_never_sent_twice_when_a_pooled_connection_closes_under_it() {
    let up = Scripted::start(vec![
        ("/warm", reply(OK)),
        // Reads the request, then closes without a byte (a stale keep-alive race).
        ("/post", Script::Close),
        ("/get", Script::Close),
        ("/get", reply(OK)),
    ])
    .await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    assert_eq!(c.request("GET", "/warm").await.expect("200").status, 200);
    // The POST goes out on the pooled connection, which then closes before answering.
    assert_eq!(with_body(&mut c, "POST", "/post").await, 502);
    assert_eq!(
        up.seen("/post"),
        1,
        "the POST reached the upstream exactly once"
    );

    // An idempotent request in the same situation is sent again on a fresh connection.
    assert_eq!(c.request("GET", "/warm").await.expect("200").status, 200);
    let r = c.request("GET", "/get").await.expect("a response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.seen("/get"), 2, "the GET was replayed once");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_post_does_not_take_a_pooled_connection_idle_for_long() {
    let up = Scripted::start(vec![]).await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    assert_eq!(c.request("GET", "/warm").await.expect("200").status, 200);
    assert_eq!(with_body(&mut c, "POST", "/soon").await, 200);
    assert_eq!(
        up.connections(),
        1,
        "a connection busy a moment ago is fine for a POST"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(with_body(&mut c, "POST", "/later").await, 200);
    assert_eq!(
        up.connections(),
        2,
        "after a second idle, a POST opens a new connection"
    );
    // A GET still takes the pooled one.
    assert_eq!(c.request("GET", "/get").await.expect("200").status, 200);
    assert_eq!(up.connections(), 2);
    gw.stop().await;
}

fn idle_metric(text: &str, kind: &str) -> f64 {
    let prefix = format!("gogate_idle_timeouts_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
}

async fn no_request_in_flight(gw: &TestGateway) {
    eventually("the backend's in-flight slot is released", || async {
        let list = gw.admin_get("/backends").await.json();
        list.as_array()
            .is_some_and(|l| l.iter().all(|b| b["active_connections"] == 0))
    })
    .await;
}

/// Item 3: an upstream that sends its head and part of the body, then stalls.
#[actix_rt::test]
async fn a_body_stalled_after_the_head_is_cut_at_the_idle_timeout() {
    let up = Scripted::start(vec![(
        "/stall",
        Script::HeadThenStall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec()),
    )])
    .await;
    let gw = gateway(&backends_yaml(
        &[&up.addr_str()],
        "  timeouts: {idle: 300ms, request: 30s}\n",
    ))
    .await;
    let started = Instant::now();
    let text = raw_exchange(
        gw.http.unwrap(),
        b"GET /stall HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let waited = started.elapsed();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("partial"),
        "the part sent is relayed: {text}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "the client was held for {waited:?} (idle is 300 ms)"
    );
    no_request_in_flight(&gw).await;
    eventually("the gateway closed its upstream connection", || async {
        up.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(idle_metric(&gw.metrics_text().await, "response_body"), 1.0);
    gw.stop().await;
}

/// Item 3: `timeouts.request` bounds the wait for the response head once the request is out;
/// a slow upload that keeps moving is bounded by `timeouts.idle` between chunks instead.
#[actix_rt::test]
async fn a_slow_but_progressing_upload_outlives_the_request_timeout() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&up.addr_str()],
        "  timeouts: {request: 300ms, idle: 1s}\n",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.http.unwrap())
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    // Ten chunks, 150 ms apart: 1.5 s in all, five times the request timeout.
    for i in 0..10 {
        let chunk = format!("5\r\npart{i}\r\n");
        s.write_all(chunk.as_bytes()).await.expect("chunk");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    s.write_all(b"0\r\n\r\n").await.expect("end");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a response")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"body_len\":50"), "{text}");
    gw.stop().await;
}

/// Item 3: a client that declares a body and stalls is answered 408 after `timeouts.idle`, on
/// the streamed path (larger than 64 KiB) and on the buffered one.
#[actix_rt::test]
async fn a_stalled_upload_gets_408_at_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&up.addr_str()],
        "  timeouts: {request: 30s, idle: 300ms}\n",
    ))
    .await;
    for declared in [1_000usize, 200_000] {
        let mut s = tokio::net::TcpStream::connect(gw.http.unwrap())
            .await
            .expect("connect");
        let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {declared}\r\n\r\n");
        s.write_all(head.as_bytes()).await.expect("head");
        s.write_all(&[b'x'; 100]).await.expect("some body");
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "{declared}: {text}");
        assert!(text.contains("request body timed out"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{declared}");
    }
    no_request_in_flight(&gw).await;
    assert_eq!(idle_metric(&gw.metrics_text().await, "request_body"), 2.0);
    gw.stop().await;
}

/// Item 3: a WebSocket tunnel where both sides go quiet ends at `timeouts.idle`; one that
/// carries traffic in either direction does not.
#[actix_rt::test]
async fn a_silent_tunnel_is_cut_and_a_busy_one_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Scripted::start(vec![(
        "/ws",
        Script::HeadThenStall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec(),
        ),
    )])
    .await;
    let gw = gateway(&backends_yaml(
        &[&up.addr_str()],
        "  timeouts: {idle: 400ms}\n",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.http.unwrap())
        .await
        .expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("upgrade request");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("101")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // Client → upstream traffic every 150 ms for 1.2 s keeps the tunnel open.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(b"ping").await.expect("the busy tunnel is open");
    }
    // Then silence: cut after 400 ms.
    let quiet = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "{end:?}");
    assert!(quiet.elapsed() >= Duration::from_millis(300));
    assert!(quiet.elapsed() < Duration::from_secs(3));
    no_request_in_flight(&gw).await;
    assert_eq!(idle_metric(&gw.metrics_text().await, "tunnel"), 1.0);
    gw.stop().await;
}

/// Chaos: a backend that accepts and never answers gets 504 at `timeouts.request`; its
/// connection and in-flight slot are released; another upstream keeps serving meanwhile.
#[actix_rt::test]
async fn a_hung_backend_gets_504_and_releases_everything() {
    let hung = Scripted::start(vec![("/hung", Script::Silent)]).await;
    let fine = Upstream::new("fine").start().await;
    let gw = gateway(&format!(
        "{}upstreams:\n  fine:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - name: fine\n    match: {{pathPrefix: /fine}}\n    upstreams: [{{name: fine}}]\n",
        backends_yaml(&[&hung.addr_str()], "  timeouts: {request: 300ms}\n"),
        fine.addr_str()
    ))
    .await;
    let hung_requests: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/hung");
            actix_rt::spawn(async move { fetch(awc::Client::default().get(url)).await })
        })
        .collect();
    // Meanwhile the other upstream serves.
    for _ in 0..10 {
        assert_eq!(gw.get("/fine/x").await.status, 200);
    }
    for r in hung_requests {
        let r = r.await.expect("task");
        assert_eq!(r.status, 504, "{}", r.body);
    }
    no_request_in_flight(&gw).await;
    eventually(
        "the gateway closed every connection to the hung backend",
        || async { hung.closed.load(Ordering::SeqCst) == hung.connections() },
    )
    .await;
    gw.stop().await;
}

/// Chaos: the upstream closes idle keep-alive connections (after 100 ms) much sooner than the
/// pool's `idleTimeout` (60 s); clients pausing around that time never see an error for their
/// idempotent requests.
#[actix_rt::test]
async fn upstream_closing_idle_connections_early_costs_no_idempotent_request() {
    let up = Upstream::new("a")
        .keep_alive(Duration::from_millis(100))
        .start()
        .await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let url = gw.url(&format!("/c{i}"));
            actix_rt::spawn(async move {
                let client = awc::Client::default();
                let mut failures = Vec::new();
                for n in 0..100u64 {
                    // Pauses straddle the upstream's 100 ms keep-alive.
                    let pause = 60 + (n * 37 + i * 11) % 90;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let req = if i % 2 == 0 {
                        client.get(&url)
                    } else {
                        client.get(&url).insert_header(("connection", "close"))
                    };
                    let r = fetch(req).await;
                    if r.status != 200 {
                        failures.push((n, r.status, r.body));
                    }
                }
                failures
            })
        })
        .collect();
    for c in clients {
        let failures = c.await.expect("client task");
        assert!(failures.is_empty(), "{failures:?}");
    }
    gw.stop().await;
}
