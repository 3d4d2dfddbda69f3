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
