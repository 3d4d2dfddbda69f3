//! Upstream connection reuse (tcpPool): keep-alive connections are reused, a connection the
//! upstream closed while idle is replaced transparently, `enabled: false` opens one connection
//! per request, and `Connection: close` from the upstream is honoured.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Keep-alive: serve requests until the client closes.
    KeepAlive,
    /// Answer one request, then close silently (no `Connection: close`): the gateway's pooled
    /// connection goes stale.
    CloseSilently,
    /// Answer with `Connection: close`, then close.
    CloseAnnounced,
}

/// A raw HTTP/1.1 upstream that counts the TCP connections it accepted.
async fn counting_upstream(mode: Mode) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    counting_upstream_slow(mode, std::time::Duration::ZERO).await
}

async fn counting_upstream_slow(
    mode: Mode,
    delay: std::time::Duration,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), requests.clone());
    actix_rt::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            actix_rt::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut tmp = [0u8; 4096];
                    let n = match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("req{n}");
                        let close = if mode == Mode::CloseAnnounced {
                            "Connection: close\r\n"
                        } else {
                            ""
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\n{close}Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        if mode != Mode::KeepAlive {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns, requests)
}

#[actix_rt::test]
async fn keep_alive_connections_are_reused() {
    let (addr, conns, requests) = counting_upstream(Mode::KeepAlive).await;
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    for i in 1..=20 {
        let r = gw.get("/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("req{i}"));
    }
    assert_eq!(requests.load(Ordering::SeqCst), 20);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "sequential requests share one upstream connection"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn stale_pooled_connection_is_replaced_without_an_error() {
    let (addr, conns, _) = counting_upstream(Mode::CloseSilently).await;
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    for _ in 0..5 {
        let r = gw.get("/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        // Let the upstream's close reach the gateway's idle connection.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 5);
    let backends = gw.admin_get("/backends").await.json();
    assert_eq!(
        backends[0]["failures_total"], 0,
        "a stale idle connection is not a backend failure"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn stale_connection_without_delay_is_retried_on_a_fresh_one() {
    // No pause between requests: the upstream's FIN may not have arrived when the pooled
    // connection is picked, so the request is written to a dead connection and must be retried.
    let (addr, conns, requests) = counting_upstream(Mode::CloseSilently).await;
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    for _ in 0..20 {
        let r = gw.get("/").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(requests.load(Ordering::SeqCst), 20);
    assert_eq!(conns.load(Ordering::SeqCst), 20);
    gw.stop().await;
}

#[actix_rt::test]
async fn pool_disabled_opens_a_connection_per_request() {
    let (addr, conns, _) = counting_upstream(Mode::KeepAlive).await;
    let gw = gateway(&backends_yaml(
        &[&addr.to_string()],
        "  tcpPool: {enabled: false}\n",
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 5);
    gw.stop().await;
}

#[actix_rt::test]
async fn upstream_connection_close_is_honoured() {
    let (addr, conns, _) = counting_upstream(Mode::CloseAnnounced).await;
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 5);
    let backends = gw.admin_get("/backends").await.json();
    assert_eq!(backends[0]["failures_total"], 0);
    gw.stop().await;
}

#[actix_rt::test]
async fn max_idle_bounds_the_pool() {
    // 8 concurrent slow requests need 8 connections; with maxIdle 2 only 2 stay pooled, so the
    // next burst of 8 needs 6 new connections (14 in all). Without the bound it would be 8.
    let delay = std::time::Duration::from_millis(150);
    let (addr, conns, requests) = counting_upstream_slow(Mode::KeepAlive, delay).await;
    let gw = gateway(&backends_yaml(
        &[&addr.to_string()],
        "  tcpPool: {maxIdle: 2}\n",
    ))
    .await;
    for _ in 0..2 {
        let reqs = (0..8).map(|_| gw.get("/"));
        for r in futures_util::future::join_all(reqs).await {
            assert_eq!(r.status, 200);
        }
    }
    assert_eq!(requests.load(Ordering::SeqCst), 16);
    assert_eq!(conns.load(Ordering::SeqCst), 14);
    gw.stop().await;
}
