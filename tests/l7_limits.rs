//! The L7 listener's client connections: `limits.maxConnections` is one cap for the whole
//! listener (not per worker thread); connections beyond it are refused at once with a 503 and
//! `Connection: close` while those held keep being served; refusals are counted; and every
//! accepted socket has Nagle off.
mod common;
use common::*;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response read from a keep-alive connection: status, headers, body (by Content-Length).
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status: u16 = head[9..12].parse().expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .expect("a content-length");
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    (status, head, body)
}

async fn request(s: &mut TcpStream, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    tokio::time::timeout(Duration::from_secs(5), read_response(s))
        .await
        .unwrap_or_else(|_| panic!("no response to GET {path} within 5 s"))
}

fn rejected(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "gogate_connections_rejected_total{listener=\"http\",reason=\"max_connections\"} ",
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn connections_over_the_cap_are_refused_at_once_and_held_ones_keep_working() {
    let up = Upstream::new("a").start().await;
    let yaml = backends_yaml(&[&up.addr_str()], "  limits: {maxConnections: 20}\n");
    // Two workers: the cap is the listener's, not each worker's (that would allow 40).
    let gw = try_gateway_with_workers(&yaml, 2)
        .await
        .expect("gateway starts");
    let addr = gw.http.expect("http listener");
    let mut held = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let (status, _, _) = request(&mut s, &format!("/held/{i}")).await;
        assert_eq!(status, 200, "connection {i} is within the cap");
        held.push(s);
    }
    for i in 0..5 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let (status, head, body) = request(&mut s, &format!("/extra/{i}")).await;
        assert_eq!(status, 503, "extra connection {i}: {head}{body}");
        assert!(head.contains("connection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(json["error"], "too many connections", "{json}");
        // And then the gateway closes it.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");
    }
    assert!(
        up.seen
            .lock()
            .unwrap()
            .iter()
            .all(|r| !r.path.starts_with("/extra")),
        "refused connections never reach the upstream"
    );
    // The held connections are still served.
    for (i, s) in held.iter_mut().enumerate() {
        let (status, _, _) = request(s, &format!("/again/{i}")).await;
        assert_eq!(status, 200, "held connection {i} still served");
    }
    assert_eq!(rejected(&gw.metrics_text().await), 5.0);
    // A slot freed is a slot taken again.
    drop(held.pop());
    eventually("a new connection is served once one closed", || async {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return false;
        };
        request(&mut s, "/later").await.0 == 200
    })
    .await;
    drop(held);
    gw.stop().await;
}

/// The gateway-side socket of each L7 client connection has Nagle off: a response written in
/// pieces (head, then body chunks as they come) must not wait ~40 ms for the client's delayed
/// ACK. Checked on the socket itself (the gateway runs in this process), not with a timer.
#[actix_rt::test]
async fn client_connections_have_nagle_off() {
    use std::os::fd::BorrowedFd;
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let mut s = TcpStream::connect(gw.http.expect("http listener"))
        .await
        .expect("connect");
    assert_eq!(request(&mut s, "/nodelay").await.0, 200);
    let client = s.local_addr().expect("client address");
    let mut found = None;
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("list fds")
        .flatten()
    {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: only getsockopt/getpeername on a descriptor number of this process; a
        // descriptor closed meanwhile makes them fail, which is skipped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        if peer == Some(client) {
            found = Some(sock.nodelay().expect("TCP_NODELAY readable"));
        }
    }
    assert_eq!(
        found,
        Some(true),
        "the gateway's socket for this client has TCP_NODELAY"
    );
    drop(s);
    gw.stop().await;
}
