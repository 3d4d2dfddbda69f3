//! Graceful shutdown (DESIGN A2, B10) of an in-process gateway: in-flight L7 requests and L4
//! sessions finish, new connections are refused, keep-alive connections are closed, and what
//! still runs at `shutdown.drainTimeout` is cut. Exit codes are pinned in `tests/cli.rs`.
mod common;
use common::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for any single wait in these tests.
const STEP: Duration = Duration::from_secs(5);

/// A TCP backend that echoes each connection until the client's EOF.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    actix_rt::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            actix_rt::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// One HTTP/1.1 response read off a raw connection: the head (lowercased) and the body.
struct RawResponse {
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    }
}

/// Reads one response with a `Content-Length` body (the gateway's JSON answers have one).
async fn read_response(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                return RawResponse { head, body };
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            other => panic!(
                "no complete response ({other:?}); got: {}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}

/// Whether the peer closes `s` (EOF or reset) within `limit`, with nothing more to read.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n").into_bytes()
}

async fn admin_status(admin: SocketAddr, path: &str) -> u16 {
    fetch(awc::Client::default().get(format!("http://{admin}{path}")))
        .await
        .status
}

/// The L7-only gateway config used below (L4 off), with `drainTimeout`.
fn l7_yaml(upstream: &str, drain: &str) -> String {
    backends_yaml(
        &[upstream],
        &format!("  shutdown: {{drainTimeout: {drain}}}\n"),
    )
    .replacen("server:\n", "server:\n  listenAddr: \"\"\n", 1)
}

/// The L4-only gateway config used below (L7 off), with `drainTimeout`.
fn l4_yaml(backend: &str, drain: &str) -> String {
    backends_yaml(
        &[backend],
        &format!("  shutdown: {{drainTimeout: {drain}}}\n"),
    )
    .replacen("server:\n", "server:\n  httpListenAddr: \"\"\n", 1)
}

#[actix_rt::test]
async fn slow_in_flight_request_completes_with_connection_close_while_ready_is_503() {
    let up = Upstream::new("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let gw = gateway(&l7_yaml(&up.addr_str(), "5s")).await;
    let (http, admin, logs) = (gw.http.unwrap(), gw.admin, gw.logs.clone());
    // A keep-alive client whose request is in flight when the shutdown starts.
    let mut client = TcpStream::connect(http).await.unwrap();
    client.write_all(&get_request("/slow")).await.unwrap();
    eventually("the request reached the upstream", || async {
        up.hits() == 1
    })
    .await;

    let started = Instant::now();
    let stopping = actix_rt::spawn(gw.stop());
    eventually("/ready answers 503 while draining", || async {
        admin_status(admin, "/ready").await == 503
    })
    .await;
    assert_eq!(admin_status(admin, "/health").await, 200);

    let res = read_response(&mut client).await;
    assert_eq!(res.status(), 200, "{}", res.head);
    assert!(String::from_utf8_lossy(&res.body).contains("slow"));
    assert_eq!(
        res.header("connection"),
        Some("close"),
        "a response during the drain asks the client to reconnect: {}",
        res.head
    );
    assert!(
        closed_within(&mut client, Duration::from_secs(2)).await,
        "the connection is closed after that response"
    );
    tokio::time::timeout(STEP, stopping)
        .await
        .expect("shutdown finished")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown ended with the last request, not at the 5s deadline: {:?}",
        started.elapsed()
    );
    let draining = logs.with_msg("shutdown: draining");
    assert_eq!(draining.len(), 1, "{:?}", logs.lines());
    assert_eq!(draining[0]["l7_connections"], 1, "{}", draining[0]);
    assert_eq!(draining[0]["l4_sessions"], 0, "{}", draining[0]);
    let done = logs.with_msg("shutdown complete");
    assert_eq!(done.len(), 1, "{:?}", logs.lines());
    assert_eq!(done[0]["l7_connections_cut"], 0);
    assert!(logs
        .with_msg("shutdown: drain timeout reached, closed what remained")
        .is_empty());
}

#[actix_rt::test]
async fn new_connections_are_refused_during_the_drain() {
    let up = Upstream::new("slow")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let gw = gateway(&l7_yaml(&up.addr_str(), "5s")).await;
    let (http, admin) = (gw.http.unwrap(), gw.admin);
    let mut busy = TcpStream::connect(http).await.unwrap();
    busy.write_all(&get_request("/hold")).await.unwrap();
    eventually("the request reached the upstream", || async {
        up.hits() == 1
    })
    .await;
    let stopping = actix_rt::spawn(gw.stop());
    eventually("/ready answers 503", || async {
        admin_status(admin, "/ready").await == 503
    })
    .await;
    // Give actix's accept loop a moment to release the listening socket.
    let deadline = Instant::now() + STEP;
    loop {
        match TcpStream::connect(http).await {
            Err(_) => break,
            Ok(mut s) => {
                // Accepted by the kernel before the socket closed: it must not be served.
                let _ = s.write_all(&get_request("/new")).await;
                assert!(
                    closed_within(&mut s, Duration::from_secs(2)).await,
                    "a new connection was served during the drain"
                );
            }
        }
        assert!(Instant::now() < deadline, "new connections still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_response(&mut busy).await.status(), 200);
    assert_eq!(
        up.hits(),
        1,
        "no request of a new connection reached the upstream"
    );
    tokio::time::timeout(STEP, stopping).await.unwrap().unwrap();
}

#[actix_rt::test]
async fn idle_keep_alive_connection_is_closed_at_once_and_does_not_hold_the_drain() {
    let up = Upstream::new("a").start().await;
    // The idle timeout (keep-alive) is far longer than the test: only the drain can close it.
    let gw = gateway(&l7_yaml(&up.addr_str(), "10s").replacen(
        "server:\n",
        "server:\n  timeouts: {idle: 60s}\n",
        1,
    ))
    .await;
    let http = gw.http.unwrap();
    let mut idle = TcpStream::connect(http).await.unwrap();
    idle.write_all(&get_request("/once")).await.unwrap();
    let first = read_response(&mut idle).await;
    assert_eq!(first.status(), 200);
    assert_ne!(first.header("connection"), Some("close"), "{}", first.head);

    let started = Instant::now();
    let stopping = actix_rt::spawn(gw.stop());
    assert!(
        closed_within(&mut idle, Duration::from_secs(2)).await,
        "the idle keep-alive connection was closed by the gateway"
    );
    tokio::time::timeout(STEP, stopping).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an idle connection held the drain: {:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn l4_session_keeps_working_during_the_drain_and_shutdown_ends_when_it_closes() {
    let echo = echo_backend().await;
    let gw = gateway(&l4_yaml(&echo.to_string(), "10s")).await;
    let (tcp, admin, logs) = (gw.tcp.unwrap(), gw.admin, gw.logs.clone());
    let mut session = TcpStream::connect(tcp).await.unwrap();
    session.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tokio::time::timeout(STEP, session.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let started = Instant::now();
    let stopping = actix_rt::spawn(gw.stop());
    eventually("/ready answers 503", || async {
        admin_status(admin, "/ready").await == 503
    })
    .await;
    session.write_all(b"during").await.unwrap();
    tokio::time::timeout(STEP, session.read_exact(&mut buf))
        .await
        .expect("the session still relays during the drain")
        .unwrap();
    assert_eq!(&buf, b"during");
    assert!(!stopping.is_finished(), "shutdown waits for the session");

    // The client half-closes; the echo backend closes back; the session ends on its own.
    session.shutdown().await.unwrap();
    assert!(closed_within(&mut session, STEP).await);
    tokio::time::timeout(STEP, stopping).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown ended with the session, well before the 10s deadline: {:?}",
        started.elapsed()
    );
    let draining = logs.with_msg("shutdown: draining");
    assert_eq!(draining[0]["l4_sessions"], 1, "{}", draining[0]);
    assert_eq!(logs.with_msg("shutdown complete")[0]["l4_sessions_cut"], 0);
}

#[actix_rt::test]
async fn l4_session_still_open_at_the_drain_timeout_is_cut() {
    let echo = echo_backend().await;
    let gw = gateway(&l4_yaml(&echo.to_string(), "1s")).await;
    let (tcp, logs) = (gw.tcp.unwrap(), gw.logs.clone());
    let mut session = TcpStream::connect(tcp).await.unwrap();
    session.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    tokio::time::timeout(STEP, session.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let started = Instant::now();
    let stopping = actix_rt::spawn(gw.stop());
    assert!(
        closed_within(&mut session, STEP).await,
        "the client sees its session closed at the deadline"
    );
    let cut_after = started.elapsed();
    tokio::time::timeout(STEP, stopping).await.unwrap().unwrap();
    let total = started.elapsed();
    assert!(
        cut_after >= Duration::from_millis(900),
        "cut before the 1s deadline: {cut_after:?}"
    );
    assert!(
        total < Duration::from_millis(2500),
        "shutdown ends around the deadline: {total:?}"
    );
    let warned = logs.with_msg("shutdown: drain timeout reached, closed what remained");
    assert_eq!(warned.len(), 1, "{:?}", logs.lines());
    assert_eq!(warned[0]["level"], "WARN", "{}", warned[0]);
    assert_eq!(warned[0]["l4_sessions"], 1, "{}", warned[0]);
    assert_eq!(logs.with_msg("shutdown complete")[0]["l4_sessions_cut"], 1);
}

#[actix_rt::test]
async fn l7_request_still_running_at_the_drain_timeout_is_cut() {
    let up = Upstream::new("stuck")
        .delay(Duration::from_secs(4))
        .start()
        .await;
    let gw = gateway(&l7_yaml(&up.addr_str(), "1s")).await;
    let (http, logs) = (gw.http.unwrap(), gw.logs.clone());
    let mut client = TcpStream::connect(http).await.unwrap();
    client.write_all(&get_request("/stuck")).await.unwrap();
    eventually("the request reached the upstream", || async {
        up.hits() == 1
    })
    .await;

    let started = Instant::now();
    let stopping = actix_rt::spawn(gw.stop());
    assert!(
        closed_within(&mut client, STEP).await,
        "the client sees its connection closed at the deadline"
    );
    tokio::time::timeout(STEP, stopping).await.unwrap().unwrap();
    let total = started.elapsed();
    assert!(
        total >= Duration::from_millis(900) && total < Duration::from_millis(2500),
        "shutdown ends around the 1s deadline: {total:?}"
    );
    let warned = logs.with_msg("shutdown: drain timeout reached, closed what remained");
    assert_eq!(warned.len(), 1, "{:?}", logs.lines());
    assert_eq!(warned[0]["l7_connections"], 1, "{}", warned[0]);
}
