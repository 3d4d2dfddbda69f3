//! Response framing through the gateway against upstreams that send legal but unusual heads or
//! break the rules: bodyless responses that announce a body, framing headers named in
//! `Connection`, a `101` nobody asked for. After each, the client's connection must still be in
//! step (its next request gets its own response), and a connection whose response cannot be
//! trusted is not reused toward the upstream.
mod common;
use common::scripted::{RawClient, Script, Scripted};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn reply(raw: &str) -> Script {
    Script::Reply(raw.as_bytes().to_vec())
}

async fn start(scripts: Vec<(&str, Script)>) -> (Scripted, TestGateway) {
    let up = Scripted::start(scripts).await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    (up, gw)
}

/// The next request on the same client connection is answered correctly.
async fn still_in_step(c: &mut RawClient) {
    let next = c.request("GET", "/next").await.expect("the next response");
    assert_eq!(
        (next.status, next.body.as_slice()),
        (200, &b"ok"[..]),
        "{next:?}"
    );
}

#[actix_rt::test]
async fn a_304_with_a_content_length_is_relayed_without_a_body() {
    let (up, gw) = start(vec![(
        "/cached",
        reply("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n"),
    )])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let r = c.request("GET", "/cached").await.expect("a 304");
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some("50"),
        "the representation's length"
    );
    assert_eq!(r.header("etag"), Some("\"v1\""));
    still_in_step(&mut c).await;
    assert_eq!(
        up.connections(),
        1,
        "a clean 304 leaves the connection reusable"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn a_204_with_a_content_length_is_relayed_without_it() {
    // The upstream even sends the bytes it announced: they must reach nobody.
    let (up, gw) = start(vec![(
        "/gone",
        reply("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nstray"),
    )])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let r = c.request("GET", "/gone").await.expect("a 204");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("content-length"), None);
    still_in_step(&mut c).await;
    assert_eq!(
        up.connections(),
        2,
        "the 204 announced a body: its connection is not reused"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn chunked_framing_on_204_and_304_does_not_reach_the_client() {
    let (up, gw) = start(vec![
        (
            "/nc",
            reply("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "/nm",
            reply("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
    ])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    for (path, status) in [("/nc", 204), ("/nm", 304)] {
        let r = c.request("GET", path).await.expect("a bodyless response");
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
        still_in_step(&mut c).await;
    }
    assert!(c.stray_bytes().await.is_empty());
    // /nc, /next (new connection), /nm, /next (new connection).
    assert_eq!(
        up.connections(),
        3,
        "neither bodyless-but-chunked response was reused"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn head_responses_keep_their_length_and_carry_no_body() {
    let (up, gw) = start(vec![
        (
            "/len",
            reply("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        ),
        (
            "/chunked",
            reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
    ])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let r = c.request("HEAD", "/len").await.expect("HEAD response");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("100")),
        "{r:?}"
    );
    still_in_step(&mut c).await;
    let r = c.request("HEAD", "/chunked").await.expect("HEAD response");
    assert_eq!(r.status, 200, "{r:?}");
    still_in_step(&mut c).await;
    assert!(c.stray_bytes().await.is_empty());
    // /len and /next share one connection; the chunked HEAD's connection is not reused.
    assert_eq!(up.connections(), 2);
    gw.stop().await;
}

/// The hardening of item 13: the terminator of a bodyless-but-chunked response arrives late,
/// after the response was relayed. Were the connection pooled, the next request on it would
/// read `0\r\n\r\n` as its response.
#[actix_rt::test]
async fn late_bytes_after_a_bodyless_chunked_response_reach_no_other_request() {
    let late = |status: &str| {
        Script::ReplyLate(
            format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes(),
            std::time::Duration::from_millis(30),
            b"0\r\n\r\n".to_vec(),
        )
    };
    let (up, gw) = start(vec![
        ("/nc", late("204 No Content")),
        ("/nm", late("304 Not Modified")),
    ])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    for path in ["/nc", "/nm"] {
        let r = c.request("GET", path).await.expect("a bodyless response");
        assert!(r.status == 204 || r.status == 304, "{r:?}");
        // Give the stray terminator time to land on the upstream connection.
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        still_in_step(&mut c).await;
    }
    let r = c.request("HEAD", "/nc").await.expect("a HEAD response");
    assert_eq!(r.status, 204);
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    still_in_step(&mut c).await;
    assert_eq!(up.seen("/next"), 3);
    gw.stop().await;
}

#[actix_rt::test]
async fn an_unrequested_101_is_a_bad_gateway() {
    let (_up, gw) = start(vec![(
        "/switch",
        reply(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ),
    )])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let r = c.request("GET", "/switch").await.expect("a response");
    assert_eq!(r.status, 502, "{r:?}");
    still_in_step(&mut c).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn framing_headers_named_in_connection_still_frame_the_body() {
    // The upstream keeps the connection open after the body: reading until it closes would hang.
    let (_up, gw) = start(vec![(
        "/listed",
        reply("HTTP/1.1 200 OK\r\nConnection: X-Secret, content-length\r\nX-Secret: 1\r\nContent-Length: 5\r\n\r\nhello"),
    )])
    .await;
    let mut c = RawClient::connect(gw.http.unwrap()).await;
    let r = c.request("GET", "/listed").await.expect("the body, framed");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]), "{r:?}");
    assert_eq!(
        r.header("x-secret"),
        None,
        "a header named in Connection is hop-by-hop"
    );
    still_in_step(&mut c).await;
    gw.stop().await;
}

/// An HTTP/1.0 client does not know chunked framing: a streamed (chunked) upstream body reaches
/// it unframed, delimited by the gateway closing the connection (RFC 9112 7.1: a server must
/// not send chunked to a 1.0 recipient).
#[actix_rt::test]
async fn an_http10_client_gets_a_chunked_body_delimited_by_close() {
    let up = Scripted::start(vec![(
        "/stream",
        reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    )])
    .await;
    let gw = gateway(&backends_yaml(&[&up.addr_str()], "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.http.unwrap())
        .await
        .expect("connect");
    s.write_all(b"GET /stream HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("the gateway closes the connection after the body")
        .expect("read");
    let text = String::from_utf8_lossy(&all).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "chunked framing sent to an HTTP/1.0 client: {head}"
    );
    assert_eq!(body, "hello world", "{text}");
    gw.stop().await;
}
