//! W3C Trace Context through a real gateway (DESIGN B11): a valid `traceparent` is continued
//! with the gateway's own span id and its `tracestate` kept, an invalid or missing one starts a
//! new trace (flags `01`), the access line carries the trace id the upstream saw, and the
//! WebSocket handshake is traced the same way.
mod common;
use common::*;

use std::collections::HashSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// Checks the shape of a `traceparent` the gateway sent: version 00, lowercase hex, ids not
/// zero; returns (trace id, parent id, flags).
fn parts(tp: &str) -> (String, String, String) {
    let f: Vec<&str> = tp.split('-').collect();
    assert_eq!(f.len(), 4, "traceparent {tp}");
    assert_eq!(f[0], "00", "traceparent {tp}");
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    assert!(hex(f[1], 32) && f[1] != "0".repeat(32), "traceparent {tp}");
    assert!(hex(f[2], 16) && f[2] != "0".repeat(16), "traceparent {tp}");
    assert!(hex(f[3], 2), "traceparent {tp}");
    (f[1].into(), f[2].into(), f[3].into())
}

/// Sends one request with `headers` and returns what the upstream saw of it.
async fn through(gw: &TestGateway, a: &RunningUpstream, headers: &[(&str, &str)]) -> Seen {
    let before = a.hits();
    let mut req = client().get(gw.url("/traced"));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let r = send(req, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.hits(), before + 1);
    a.last()
}

#[actix_rt::test]
async fn valid_traceparent_is_continued_with_the_gateways_span_and_tracestate_kept() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let seen = through(
        &gw,
        &a,
        &[
            ("traceparent", &tp),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ],
    )
    .await;
    let up = seen.header_all("traceparent");
    assert_eq!(up.len(), 1, "one traceparent upstream: {up:?}");
    let (trace, parent, flags) = parts(up[0]);
    assert_eq!(trace, TRACE);
    assert_ne!(parent, PARENT, "the gateway's own span is the parent");
    assert_eq!(flags, "01");
    assert_eq!(
        seen.header("tracestate"),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    // Flags other than 01 are kept as well.
    let seen = through(
        &gw,
        &a,
        &[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))],
    )
    .await;
    let (trace, _, flags) = parts(seen.header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));
    gw.stop().await;
}

#[actix_rt::test]
async fn invalid_or_missing_traceparent_starts_a_new_trace_and_drops_tracestate() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let bad = [
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", &TRACE[2..]),
        format!("00-{TRACE}-{}-01", &PARENT[2..]),
        format!("00-{TRACE}-{PARENT}-001"),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
    ];
    let mut traces = HashSet::new();
    for tp in &bad {
        let seen = through(&gw, &a, &[("traceparent", tp), ("tracestate", "k=v")]).await;
        let up = seen.header("traceparent").expect("a traceparent upstream");
        let (trace, _, flags) = parts(up);
        assert_ne!(trace, TRACE, "{tp} must not be continued");
        assert_eq!(flags, "01", "a started trace is sampled");
        assert_eq!(
            seen.header("tracestate"),
            None,
            "{tp}: tracestate of an invalid parent"
        );
        traces.insert(trace);
    }
    let seen = through(&gw, &a, &[]).await;
    let (trace, _, flags) = parts(seen.header("traceparent").expect("a traceparent upstream"));
    assert_eq!(flags, "01");
    traces.insert(trace);
    assert_eq!(traces.len(), bad.len() + 1, "every started trace is new");
    gw.stop().await;
}

#[actix_rt::test]
async fn access_line_carries_the_trace_id_the_upstream_saw() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    for headers in [
        vec![("traceparent", format!("00-{TRACE}-{PARENT}-01"))],
        vec![],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let seen = through(&gw, &a, &h).await;
        let (trace, _, _) = parts(seen.header("traceparent").unwrap());
        let rid = seen.header("x-request-id").unwrap().to_string();
        let logs = gw.logs.clone();
        let line = || {
            logs.with_msg("request completed")
                .into_iter()
                .find(|l| l["request_id"] == rid.as_str())
        };
        eventually("the access line of the request", || {
            let found = line().is_some();
            async move { found }
        })
        .await;
        let l = line().unwrap();
        assert_eq!(l["trace_id"], trace.as_str(), "{l}");
        assert_eq!(l["status"], 200, "{l}");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn concurrent_clients_each_get_their_own_trace() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    const N: usize = 16;
    let ids: Vec<String> = (0..N)
        .map(|i| format!("{:032x}", 0xabc0_0000 + i))
        .collect();
    let sends = ids.iter().enumerate().map(|(i, id)| {
        let mut req = client()
            .get(gw.url(&format!("/c{i}")))
            .insert_header(("x-request-id", format!("rid-{i}")));
        // Half continue their own trace, half have one started by the gateway.
        if i.is_multiple_of(2) {
            req = req.insert_header(("traceparent", format!("00-{id}-{PARENT}-01")));
        }
        send(req, None)
    });
    let res = futures_util::future::join_all(sends).await;
    assert!(res.iter().all(|r| r.status == 200));
    let seen = a.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), N);
    let mut traces = HashSet::new();
    for s in &seen {
        let i: usize = s.header("x-request-id").unwrap()["rid-".len()..]
            .parse()
            .unwrap();
        let (trace, _, _) = parts(s.header("traceparent").unwrap());
        if i.is_multiple_of(2) {
            assert_eq!(trace, ids[i], "request {i} continues its own trace");
        }
        traces.insert(trace);
    }
    assert_eq!(traces.len(), N, "no two clients share a trace");
    gw.stop().await;
}

#[actix_rt::test]
async fn websocket_handshake_is_traced_like_a_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.ok()?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await
        .ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    });
    let gw = gateway(&backends_yaml(&[&up.to_string()], "")).await;
    let mut s = TcpStream::connect(gw.http.unwrap()).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: k=v\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), upstream)
        .await
        .expect("the upstream saw no handshake in time")
        .unwrap()
        .expect("a handshake head");
    let lines: Vec<(String, String)> = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |n: &str| {
        lines
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let tp = get("traceparent");
    assert_eq!(tp.len(), 1, "{head}");
    let (trace, parent, _) = parts(tp[0]);
    assert_eq!(trace, TRACE, "{head}");
    assert_ne!(parent, PARENT, "{head}");
    assert_eq!(get("tracestate"), vec!["k=v"], "{head}");
    let mut resp = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut resp))
        .await
        .expect("no handshake answer")
        .unwrap();
    assert_eq!(&resp, b"HTTP/1.1 101");
    drop(s);
    gw.stop().await;
}
