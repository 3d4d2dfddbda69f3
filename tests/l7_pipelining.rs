//! Pipelined requests (several written before the first answer) are answered in order, each
//! framed for its own request: a HEAD's response has no body whatever request follows it, a
//! GET's has its body whatever follows it, the HTTP version and `Connection: close` of each
//! request apply to its own response. actix-http decoded ahead and framed responses with the
//! state of the last request it had read (fixed in `vendor/actix-http`, GOGATE-PATCH.md).
mod common;
use common::scripted::{RawClient, RawResponse};
use common::*;

fn request(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Checks a response answers `method path`: GETs carry the upstream's JSON naming the path;
/// HEADs carry the same Content-Length and no body.
fn check(r: &RawResponse, method: &str, path: &str, get_len: usize) {
    assert_eq!(r.status, 200, "{method} {path}: {r:?}");
    let len: usize = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no content-length: {r:?}"));
    assert_eq!(len, get_len, "{method} {path}: {r:?}");
    if method == "HEAD" {
        assert!(r.body.is_empty(), "a HEAD response with a body: {r:?}");
    } else {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains(&format!("\"path\":\"{path}\"")),
            "{method} {path}: {body}"
        );
    }
}

/// The length of the GET response for each path (asked one at a time, not pipelined).
async fn lengths(gw: &TestGateway, paths: &[&str]) -> Vec<usize> {
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let mut out = Vec::new();
    for p in paths {
        out.push(c.request("GET", p).await.expect("GET").body.len());
    }
    out
}

async fn pipeline(gw: &TestGateway, reqs: &[(&str, &str)]) {
    let paths: Vec<&str> = reqs.iter().map(|(_, p)| *p).collect();
    let lens = lengths(gw, &paths).await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let wire: String = reqs.iter().map(|(m, p)| request(m, p)).collect();
    c.send_raw(wire.as_bytes()).await;
    for (i, (m, p)) in reqs.iter().enumerate() {
        let r = c
            .read(*m == "HEAD")
            .await
            .unwrap_or_else(|e| panic!("response {i} ({m} {p}): {e}"));
        check(&r, m, p, lens[i]);
    }
    // Still in step afterwards.
    let after = c.request("GET", "/after").await.expect("a later request");
    assert_eq!(after.status, 200);
    assert!(c.stray_bytes().await.is_empty());
}

#[actix_rt::test]
async fn get_then_head_pipelined() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    pipeline(&gw, &[("GET", "/a"), ("HEAD", "/bb")]).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn head_then_get_pipelined() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    pipeline(&gw, &[("HEAD", "/a"), ("GET", "/bb")]).await;
    assert_eq!(
        up.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == "/bb")
            .count(),
        2
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn a_longer_mix_is_answered_in_order() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    pipeline(
        &gw,
        &[
            ("GET", "/one"),
            ("HEAD", "/two-two"),
            ("GET", "/three-three-three"),
            ("HEAD", "/4"),
            ("GET", "/five"),
        ],
    )
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn version_and_close_of_a_later_request_do_not_leak_into_an_earlier_response() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let lens = lengths(&gw, &["/first", "/second"]).await;

    // HTTP/1.1 then HTTP/1.0 (which closes after its answer).
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    c.send_raw(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.0\r\nHost: t\r\n\r\n")
        .await;
    let r1 = c.read(false).await.expect("first response");
    assert_eq!(r1.version, "HTTP/1.1", "{r1:?}");
    assert_ne!(r1.header("connection"), Some("close"), "{r1:?}");
    check(&r1, "GET", "/first", lens[0]);
    let r2 = c.read(false).await.expect("second response");
    assert_eq!(r2.version, "HTTP/1.0", "{r2:?}");
    check(&r2, "GET", "/second", lens[1]);

    // Connection: close on the second request only.
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    c.send_raw(
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r1 = c.read(false).await.expect("first response");
    assert_ne!(r1.header("connection"), Some("close"), "{r1:?}");
    check(&r1, "GET", "/first", lens[0]);
    let r2 = c.read(false).await.expect("second response");
    assert_eq!(r2.header("connection"), Some("close"), "{r2:?}");
    check(&r2, "GET", "/second", lens[1]);
    gw.stop().await;
}

/// A request that closes the connection is the last one served on it: requests pipelined
/// after it are neither answered nor sent upstream (RFC 9112 9.6), whatever its version.
#[actix_rt::test]
async fn nothing_after_a_closing_request_is_served() {
    let up = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let lens = lengths(&gw, &["/first"]).await;
    for closing in [
        "GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /first HTTP/1.0\r\nHost: t\r\n\r\n",
    ] {
        let mut c = RawClient::connect(gw.http.unwrap()).await;
        let wire = format!("{closing}GET /never HTTP/1.1\r\nHost: t\r\n\r\nHEAD /never HTTP/1.1\r\nHost: t\r\n\r\n");
        c.send_raw(wire.as_bytes()).await;
        let r1 = c.read(false).await.expect("first response");
        check(&r1, "GET", "/first", lens[0]);
        assert!(
            c.stray_bytes().await.is_empty(),
            "bytes after the closing response"
        );
    }
    // Give a wrongly served request time to reach the upstream before looking.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let never = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/never")
        .count();
    assert_eq!(
        never, 0,
        "a request after a closing one reached the upstream"
    );
    gw.stop().await;
}
