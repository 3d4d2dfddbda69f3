//! Ambiguous requests (DESIGN B4, B10) through a real gateway over raw sockets: bare-LF line
//! endings (in the request line, after a header, as the blank line, in a chunk-size line) and a
//! `Host` that is not one authority (a list, userinfo, a duplicate) are answered 400, the
//! connection is closed, and the recording upstream receives nothing.
mod common;
use common::scripted::Scripted;
use common::*;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> (Scripted, TestGateway) {
    let up = Scripted::start(Vec::new()).await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    (up, gw)
}

/// Sends `raw` on a new connection; returns everything read until the gateway closes it
/// (bounded: 5 s) and whether it closed.
async fn exchange(gw: &TestGateway, raw: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(gw.http.expect("http listener"))
        .await
        .expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// `raw` gets a 400, the connection closes, and the upstream saw no connection at all.
async fn refused(up: &Scripted, gw: &TestGateway, what: &str, raw: &[u8]) {
    let (answer, closed) = exchange(gw, raw).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "{what}: expected 400, got {answer:?}"
    );
    assert!(closed, "{what}: the connection stays open after a 400");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "{what}: one response only: {answer:?}"
    );
    // Give a wrongly forwarded request time to arrive before looking.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(up.connections(), 0, "{what}: the upstream was contacted");
    assert!(up.requests.lock().unwrap().is_empty(), "{what}");
}

/// After the refusals the same gateway still forwards a clean request (so the upstream's
/// counters above could have seen one).
async fn clean_request_is_forwarded(up: &Scripted, gw: &TestGateway) {
    let (answer, _) = exchange(
        gw,
        b"GET /clean HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    assert_eq!(up.seen("/clean"), 1);
}

#[actix_rt::test]
async fn bare_lf_in_the_request_line_only_is_refused() {
    let (up, gw) = start().await;
    refused(
        &up,
        &gw,
        "bare LF after the request line",
        b"GET /x HTTP/1.1\nHost: a.test\r\n\r\n",
    )
    .await;
    clean_request_is_forwarded(&up, &gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn bare_lf_between_headers_or_as_the_blank_line_is_refused() {
    let (up, gw) = start().await;
    for (what, raw) in [
        (
            "bare LF after a header",
            &b"GET /x HTTP/1.1\r\nHost: a.test\nX-Hidden: 1\r\n\r\n"[..],
        ),
        (
            "bare LF as the blank line",
            &b"GET /x HTTP/1.1\r\nHost: a.test\r\n\n"[..],
        ),
        (
            "bare LF everywhere",
            &b"GET /x HTTP/1.1\nHost: a.test\n\n"[..],
        ),
        (
            "bare LF hiding a Content-Length",
            &b"POST /x HTTP/1.1\r\nHost: a.test\nContent-Length: 5\r\n\r\nhello"[..],
        ),
    ] {
        refused(&up, &gw, what, raw).await;
    }
    clean_request_is_forwarded(&up, &gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn bare_lf_in_a_chunk_size_line_is_refused() {
    let (up, gw) = start().await;
    refused(
        &up,
        &gw,
        "bare LF after a chunk size",
        b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    )
    .await;
    refused(
        &up,
        &gw,
        "bare LF after a chunk extension",
        b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\nhello\r\n0\r\n\r\n",
    )
    .await;
    clean_request_is_forwarded(&up, &gw).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn a_host_that_is_not_one_authority_is_refused() {
    let (up, gw) = start().await;
    for (what, host) in [
        ("a list of hosts", "a.test, b.test"),
        ("a list without spaces", "a.test,b.test"),
        ("userinfo", "user@a.test"),
        ("userinfo with a password", "user:pw@a.test:8080"),
        ("a path", "a.test/admin"),
        ("two ports", "a.test:80:81"),
    ] {
        let raw = format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n");
        refused(&up, &gw, what, raw.as_bytes()).await;
    }
    refused(
        &up,
        &gw,
        "duplicate Host headers",
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    )
    .await;
    refused(
        &up,
        &gw,
        "duplicate identical Host headers",
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
    )
    .await;
    // The gateway's own 400s are JSON with a request id.
    let (answer, _) = exchange(&gw, b"GET /x HTTP/1.1\r\nHost: user@a.test\r\n\r\n").await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("userinfo")),
        "{json}"
    );
    assert!(json["request_id"].is_string(), "{json}");
    clean_request_is_forwarded(&up, &gw).await;
    for ok in ["a.test:8080", "127.0.0.1", "[::1]:8081"] {
        let raw = format!("GET /ok HTTP/1.1\r\nHost: {ok}\r\nConnection: close\r\n\r\n");
        let (answer, _) = exchange(&gw, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{ok}: {answer:?}");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn well_formed_clients_are_served_while_others_are_refused() {
    let (up, gw) = start().await;
    let addr = gw.http.expect("http listener");
    let mut tasks = Vec::new();
    for c in 0..4usize {
        tasks.push(actix_rt::spawn(async move {
            // Keep-alive clients sending clean requests.
            let mut s = TcpStream::connect(addr).await.expect("connect");
            for i in 0..20 {
                let req = format!("GET /good/{c}/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n");
                s.write_all(req.as_bytes()).await.expect("write");
                let mut buf = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                    .await
                    .expect("an answer")
                    .expect("read");
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
            }
        }));
    }
    for c in 0..4usize {
        tasks.push(actix_rt::spawn(async move {
            // New connections with ambiguous requests.
            for i in 0..20 {
                let req = match i % 3 {
                    0 => format!("GET /bad/{c}/{i} HTTP/1.1\nHost: a.test\r\n\r\n"),
                    1 => format!("GET /bad/{c}/{i} HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n"),
                    _ => format!("GET /bad/{c}/{i} HTTP/1.1\r\nHost: u@a.test\r\n\r\n"),
                };
                let answer = raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)).await;
                assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 80, "every good request, nothing else");
    assert!(seen.iter().all(|l| l.contains("/good/")), "{seen:?}");
    gw.stop().await;
}
