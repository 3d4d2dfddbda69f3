//! L7 data path through a real gateway: streaming bodies (chunked requests, server-sent events,
//! large responses, HEAD), WebSocket tunnelling, gateway-made JSON errors (502/503/504, retries),
//! request limits (431/413), the access log line and the request metrics (DESIGN B4, B8, B10).
mod common;
use common::*;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------------------------------------
// Helpers: special upstreams and raw HTTP/1.1 plumbing.
// ------------------------------------------------------------------------------------------------

/// Deterministic, non-periodic test bytes (xorshift), so any reordering or loss is detected.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Starts an actix-web server on 127.0.0.1:0 (one worker) configured by `configure`.
fn start_actix<F>(configure: F) -> SocketAddr
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind("127.0.0.1:0")
        .expect("bind test upstream");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    addr
}

/// A raw TCP server on 127.0.0.1:0; `handler` serves each accepted connection.
fn spawn_raw<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind raw upstream");
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = TcpListener::from_std(std_listener).unwrap();
    let handler = Rc::new(handler);
    actix_rt::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let h = Rc::clone(&handler);
            actix_rt::spawn(async move { h(s).await });
        }
    });
    addr
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP head (up to and including the blank line); returns it and the bytes after it.
async fn read_head(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return Ok((head, buf[i + 4..].to_vec()));
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before end of head",
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Status and headers (lower-case names) of a response head.
fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn hget<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Writes one chunk of a chunked body.
async fn write_chunk(s: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    s.write_all(&out).await
}

/// A request as the collecting upstream saw it (headers and the whole streamed body).
#[derive(Clone, Debug)]
struct Collected {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct CollectState {
    requests: Mutex<Vec<Collected>>,
    /// Reports the body length received so far, after every chunk.
    progress: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
}

async fn collect_handler(
    req: HttpRequest,
    mut payload: web::Payload,
    st: web::Data<CollectState>,
) -> HttpResponse {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) => {
                body.extend_from_slice(&c);
                if let Some(tx) = &st.progress {
                    let _ = tx.send(body.len());
                }
            }
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let len = body.len();
    st.requests
        .lock()
        .unwrap()
        .push(Collected { headers, body });
    HttpResponse::Ok().json(serde_json::json!({ "len": len }))
}

/// An upstream that reads request bodies as a stream (no size limit) and keeps them.
fn collecting_upstream(
    progress: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
) -> (SocketAddr, Arc<CollectState>) {
    let state = Arc::new(CollectState {
        requests: Mutex::new(Vec::new()),
        progress,
    });
    let st = Arc::clone(&state);
    let addr = start_actix(move |cfg| {
        cfg.app_data(web::Data::from(Arc::clone(&st)))
            .default_service(web::to(collect_handler));
    });
    (addr, state)
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

fn assert_json_error(r: &Resp, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.body);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type of a gateway error: {ct:?}"
    );
    let j = r.json();
    let err = j["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `error` in {j}"));
    assert!(!err.is_empty(), "empty error message in {j}");
    let rid = j["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `request_id` in {j}"));
    assert!(!rid.is_empty(), "empty request_id in {j}");
    assert_eq!(
        r.header("x-request-id"),
        Some(rid),
        "X-Request-ID header must equal request_id"
    );
    j
}

// ------------------------------------------------------------------------------------------------
// 1. Streaming
// ------------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn chunked_request_body_of_one_megabyte_arrives_intact_at_the_upstream() {
    let (addr, up) = collecting_upstream(None);
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    let data = pattern(1024 * 1024 + 17, 7);
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(16 * 1024 + 3)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut res = client()
        .post(gw.url("/upload"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("chunked upload through the gateway");
    assert_eq!(res.status().as_u16(), 200);
    let body = res.body().await.unwrap();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["len"], data.len());
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "upstream saw exactly one request");
    assert_eq!(seen[0].body.len(), data.len());
    assert!(
        seen[0].body == data,
        "request body bytes differ at the upstream"
    );
    let te = seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "transfer-encoding")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        te,
        Some("chunked"),
        "a body of unknown length goes upstream chunked, not buffered"
    );
    gw.stop().await;
}

/// Sends a chunked upload over a raw socket: `first_len` bytes, then (only after the upstream has
/// reported receiving them) `second_len` more. Panics if the upstream does not see the first part
/// while the client still holds the rest back.
async fn streamed_upload(first_len: usize, second_len: usize) {
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let (addr, up) = collecting_upstream(Some(progress_tx));
    let gw = gateway(&backends_yaml(
        &[&addr.to_string()],
        "  shutdown: {drainTimeout: 1s}\n",
    ))
    .await;

    let mut s = TcpStream::connect(gw.http.unwrap()).await.unwrap();
    s.write_all(
        b"POST /stream-up HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/octet-stream\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let first = pattern(first_len, 11);
    write_chunk(&mut s, &first).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let n = progress_rx.recv().await.expect("upstream progress channel");
            if n >= first.len() {
                return n;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the upstream did not receive the first {first_len} bytes while the client held back the rest (request body buffered)")
    });
    assert_eq!(
        got,
        first.len(),
        "upstream received more than the client had sent"
    );

    let second = pattern(second_len, 12);
    write_chunk(&mut s, &second).await.unwrap();
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("response")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "response: {text}");
    assert!(
        text.contains(&format!("\"len\":{}", first_len + second_len)),
        "response: {text}"
    );
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body == [first, second].concat(),
        "body bytes differ at the upstream"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn chunked_request_body_reaches_the_upstream_before_the_client_finishes_sending() {
    streamed_upload(64 * 1024, 5000).await;
}

#[actix_rt::test]
async fn small_request_body_chunk_is_forwarded_without_waiting_for_more_data() {
    // A 1 KiB chunk (an interactive/streaming upload) must not sit in a proxy buffer until more
    // data or the end of the body arrives.
    streamed_upload(1024, 1000).await;
}

#[actix_rt::test]
async fn server_sent_events_reach_the_client_before_the_upstream_sends_the_next_one() {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go_rx = Rc::new(RefCell::new(Some(go_rx)));
    let second_sent = Rc::new(Cell::new(false));
    let flag = Rc::clone(&second_sent);
    let addr = spawn_raw(move |mut s| {
        let go = go_rx.borrow_mut().take();
        let flag = Rc::clone(&flag);
        async move {
            if read_head(&mut s).await.is_err() {
                return;
            }
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err()
                || write_chunk(&mut s, b"data: one\n\n").await.is_err()
            {
                return;
            }
            if let Some(go) = go {
                let _ = go.await;
            }
            flag.set(true);
            let _ = write_chunk(&mut s, b"data: two\n\n").await;
            let _ = s.write_all(b"0\r\n\r\n").await;
            let _ = s.flush().await;
        }
    });
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;

    let mut res = client()
        .get(gw.url("/events"))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .expect("SSE request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );

    let mut got = Vec::new();
    while find(&got, b"data: one\n\n").is_none() {
        let chunk = tokio::time::timeout(Duration::from_secs(3), res.next())
            .await
            .expect("first event not delivered while the upstream holds the second (response buffered?)")
            .expect("stream ended before the first event")
            .expect("body error");
        got.extend_from_slice(&chunk);
    }
    assert!(
        !second_sent.get(),
        "the upstream had not sent the second event yet"
    );
    assert_eq!(got, b"data: one\n\n", "only the first event so far");

    go_tx.send(()).unwrap();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(3), res.next())
        .await
        .expect("rest of the stream")
    {
        got.extend_from_slice(&chunk.expect("body error"));
    }
    assert_eq!(got, b"data: one\n\ndata: two\n\n");
    gw.stop().await;
}

#[actix_rt::test]
async fn five_megabyte_response_with_content_length_streams_through_intact() {
    let data = Bytes::from(pattern(5 * 1024 * 1024, 3));
    let served = data.clone();
    let addr = start_actix(move |cfg| {
        let d = served.clone();
        cfg.default_service(web::to(move || {
            let d = d.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/octet-stream")
                    .body(d)
            }
        }));
    });
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    let mut res = client().get(gw.url("/big")).send().await.expect("GET /big");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        data.len().to_string()
    );
    let body = res
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("read 5 MB body");
    assert_eq!(body.len(), data.len());
    assert!(body == data, "response bytes differ");
    gw.stop().await;
}

#[actix_rt::test]
async fn five_megabyte_chunked_response_without_length_streams_through_intact() {
    let data = Bytes::from(pattern(5 * 1024 * 1024 + 5, 4));
    let served = data.clone();
    let addr = start_actix(move |cfg| {
        let d = served.clone();
        cfg.default_service(web::to(move || {
            let d = d.clone();
            async move {
                let chunks: Vec<Result<Bytes, std::io::Error>> = (0..d.len())
                    .step_by(64 * 1024)
                    .map(|i| Ok(d.slice(i..(i + 64 * 1024).min(d.len()))))
                    .collect();
                HttpResponse::Ok().streaming(futures_util::stream::iter(chunks))
            }
        }));
    });
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    let mut res = client()
        .get(gw.url("/big-chunked"))
        .send()
        .await
        .expect("GET /big-chunked");
    assert_eq!(res.status().as_u16(), 200);
    let body = res
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("read chunked body");
    assert_eq!(body.len(), data.len());
    assert!(body == data, "response bytes differ");
    gw.stop().await;
}

#[actix_rt::test]
async fn head_request_gets_upstream_status_and_content_length_without_a_body() {
    let methods = Rc::new(RefCell::new(Vec::<String>::new()));
    let m = Rc::clone(&methods);
    let addr = spawn_raw(move |mut s| {
        let m = Rc::clone(&m);
        async move {
            let Ok((head, _)) = read_head(&mut s).await else {
                return;
            };
            m.borrow_mut()
                .push(head.split(' ').next().unwrap_or_default().to_string());
            let _ = s
                .write_all(b"HTTP/1.1 203 Non-Authoritative Information\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\nX-Upstream: head\r\nConnection: close\r\n\r\n")
                .await;
            let _ = s.shutdown().await;
        }
    });
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;

    let mut s = TcpStream::connect(gw.http.unwrap()).await.unwrap();
    s.write_all(b"HEAD /h HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("gateway did not finish the HEAD response and close (waiting for a body that never comes?)")
        .unwrap();
    let end = find(&out, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head: {:?}", String::from_utf8_lossy(&out)));
    let (status, headers) = parse_head(&String::from_utf8_lossy(&out[..end + 4]));
    assert_eq!(status, 203);
    assert_eq!(
        hget(&headers, "content-length"),
        Some("1234"),
        "headers: {headers:?}"
    );
    assert_eq!(hget(&headers, "x-upstream"), Some("head"));
    assert!(
        hget(&headers, "transfer-encoding").is_none(),
        "headers: {headers:?}"
    );
    assert!(
        out[end + 4..].is_empty(),
        "a HEAD response carried body bytes: {:?}",
        String::from_utf8_lossy(&out[end + 4..])
    );
    assert_eq!(
        *methods.borrow(),
        vec!["HEAD".to_string()],
        "the upstream saw the HEAD request once"
    );
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------------
// 2. WebSocket
// ------------------------------------------------------------------------------------------------

/// The RFC 6455 example key and its accept value.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Upgrades on any path except `/deny*` (403), then echoes every byte; records request heads and
/// counts tunnels that ended (the gateway closed its side).
type Heads = Rc<RefCell<Vec<String>>>;

fn websocket_upstream() -> (SocketAddr, Heads, Rc<Cell<usize>>) {
    let heads = Rc::new(RefCell::new(Vec::new()));
    let closed = Rc::new(Cell::new(0));
    let (h, c) = (Rc::clone(&heads), Rc::clone(&closed));
    let addr = spawn_raw(move |mut s| {
        let (h, c) = (Rc::clone(&h), Rc::clone(&c));
        async move {
            let Ok((head, rest)) = read_head(&mut s).await else {
                return;
            };
            h.borrow_mut().push(head.clone());
            if head.starts_with("GET /deny") {
                let _ = s
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden")
                    .await;
                let _ = s.shutdown().await;
                return;
            }
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            if !rest.is_empty() && s.write_all(&rest).await.is_err() {
                return;
            }
            let mut buf = [0u8; 16 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            c.set(c.get() + 1);
            let _ = s.shutdown().await;
        }
    });
    (addr, heads, closed)
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[actix_rt::test]
async fn websocket_upgrade_is_tunnelled_and_bytes_echo_both_ways() {
    let (addr, heads, closed) = websocket_upstream();
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    let mut s = TcpStream::connect(gw.http.unwrap()).await.unwrap();
    s.write_all(upgrade_request("/ws").as_bytes())
        .await
        .unwrap();
    let (head, rest) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("no handshake response")
        .expect("read handshake response");
    let (status, headers) = parse_head(&head);
    assert_eq!(status, 101, "head: {head}");
    assert!(
        hget(&headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "head: {head}"
    );
    assert!(
        hget(&headers, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "head: {head}"
    );
    assert_eq!(
        hget(&headers, "sec-websocket-accept"),
        Some(WS_ACCEPT),
        "head: {head}"
    );
    assert!(
        hget(&headers, "transfer-encoding").is_none(),
        "a 101 must not be framed: {head}"
    );
    assert!(
        rest.is_empty(),
        "unexpected bytes after the 101 head: {rest:?}"
    );

    for msg in [&b"hello through gogate"[..], &pattern(20_000, 9)[..]] {
        s.write_all(msg).await.unwrap();
        let mut echoed = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
            .await
            .expect("echo did not come back through the tunnel")
            .expect("read echo");
        assert!(
            echoed == msg,
            "echoed bytes differ (framing added or data lost)"
        );
    }
    assert_eq!(
        closed.get(),
        0,
        "tunnel still open while the client is connected"
    );
    // The client goes away: the gateway must tear the tunnel down (close the upstream side).
    drop(s);
    let c = &closed;
    eventually(
        "the upstream side of the tunnel closes after the client leaves",
        || async move { c.get() == 1 },
    )
    .await;

    let seen = heads.borrow().clone();
    assert_eq!(seen.len(), 1);
    let (_, up_headers) = parse_head(&seen[0].replacen("GET /ws HTTP/1.1", "HTTP/1.1 200 X", 1));
    assert!(
        seen[0].starts_with("GET /ws HTTP/1.1\r\n"),
        "upstream head: {}",
        seen[0]
    );
    assert!(
        hget(&up_headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{}",
        seen[0]
    );
    assert!(
        hget(&up_headers, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "{}",
        seen[0]
    );
    assert_eq!(hget(&up_headers, "sec-websocket-key"), Some(WS_KEY));
    assert_eq!(hget(&up_headers, "sec-websocket-version"), Some("13"));
    gw.stop().await;
}

#[actix_rt::test]
async fn websocket_upgrade_refused_by_the_upstream_returns_its_403() {
    let (addr, heads, _) = websocket_upstream();
    let gw = gateway(&backends_yaml(&[&addr.to_string()], "")).await;
    let mut s = TcpStream::connect(gw.http.unwrap()).await.unwrap();
    s.write_all(upgrade_request("/deny").as_bytes())
        .await
        .unwrap();
    let (head, mut body) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("no response to a refused upgrade")
        .expect("read response head");
    let (status, headers) = parse_head(&head);
    assert_eq!(status, 403, "head: {head}");
    assert_eq!(
        hget(&headers, "content-type"),
        Some("text/plain"),
        "upstream headers are relayed: {head}"
    );
    assert!(
        hget(&headers, "sec-websocket-accept").is_none() && hget(&headers, "upgrade").is_none(),
        "{head}"
    );
    let len: usize = hget(&headers, "content-length")
        .unwrap_or_else(|| panic!("no Content-Length on the relayed 403: {head}"))
        .parse()
        .unwrap();
    let mut tmp = [0u8; 1024];
    while body.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .expect("403 body")
            .unwrap();
        assert!(n > 0, "connection closed before the 403 body was complete");
        body.extend_from_slice(&tmp[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&body),
        "forbidden",
        "the upstream's body is relayed"
    );
    assert_eq!(
        heads.borrow().len(),
        1,
        "the upstream saw the upgrade request"
    );
    drop(s);
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------------
// 3. Errors
// ------------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn every_backend_refusing_connections_gives_502_json_with_request_id() {
    let (d1, d2) = (dead_addr(), dead_addr());
    let gw = gateway(&backends_yaml(&[&d1, &d2], "")).await;
    let r = gw.get("/x").await;
    assert_json_error(&r, 502);

    let r = fetch(
        client()
            .get(gw.url("/y"))
            .insert_header(("x-request-id", "client-id-502")),
    )
    .await;
    let j = assert_json_error(&r, 502);
    assert_eq!(
        j["request_id"], "client-id-502",
        "a sane client X-Request-ID is kept"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn every_backend_drained_gives_503_json_and_the_upstream_is_not_hit() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    assert_eq!(gw.get("/before").await.status, 200);
    let d = gw
        .admin_send("POST", &format!("/backends/{}/drain", a.addr_str()))
        .await;
    assert_eq!(d.status, 200, "drain answer: {}", d.body);
    let g = &gw;
    eventually(
        "requests get 503 once the only backend drains",
        || async move { g.get("/x").await.status == 503 },
    )
    .await;
    let hits = a.hits();
    let r = gw.get("/after").await;
    assert_json_error(&r, 503);
    assert_eq!(a.hits(), hits, "a drained backend got a new request");
    gw.stop().await;
}

#[actix_rt::test]
async fn upstream_slower_than_the_request_timeout_gives_504_json() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let gw = gateway(&backends_yaml(
        &[&slow.addr_str()],
        "  timeouts: {request: 300ms}\n",
    ))
    .await;
    let t = Instant::now();
    let r = gw.get("/slow").await;
    let took = t.elapsed();
    assert_json_error(&r, 504);
    assert!(
        took >= Duration::from_millis(250),
        "answered before the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the gateway waited for the slow upstream: {took:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn connect_failure_retries_on_the_next_backend_and_counts_the_failure() {
    let dead = dead_addr();
    let live = Upstream::new("live").start().await;
    let gw = gateway(&backends_yaml(
        &[&dead, &live.addr_str()],
        "  loadBalancer: round_robin\n",
    ))
    .await;
    for i in 0..10 {
        let r = gw.get(&format!("/r{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.json()["backend"], "live");
    }
    assert_eq!(live.hits(), 10);
    let b = gw.admin_get("/backends").await;
    assert_eq!(b.status, 200);
    let list = b.json();
    let entry = list
        .as_array()
        .expect("GET /backends is an array")
        .iter()
        .find(|e| e["addr"] == dead.as_str())
        .unwrap_or_else(|| panic!("dead backend missing from {list}"))
        .clone();
    assert!(
        entry["failures_total"]
            .as_u64()
            .expect("failures_total is a number")
            > 0,
        "entry: {entry}"
    );
    gw.stop().await;
}

/// POSTs `len` bytes (with Content-Length) through [dead, live]; the first pick is the dead one.
async fn post_after_connect_failure(len: usize) {
    let dead = dead_addr();
    let (live, up) = collecting_upstream(None);
    let gw = gateway(&backends_yaml(
        &[&dead, &live.to_string()],
        "  loadBalancer: round_robin\n",
    ))
    .await;
    let data = pattern(len, 31);
    let mut res = client()
        .post(gw.url("/upload"))
        .send_body(data.clone())
        .await
        .expect("upload");
    let status = res.status().as_u16();
    let body = res.body().await.unwrap_or_default();
    assert_eq!(
        status,
        200,
        "a connect failure must move to the next backend: {}",
        String::from_utf8_lossy(&body)
    );
    let seen = up.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].body == data,
        "the retried request carried different bytes"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn small_post_body_is_resent_to_the_next_backend_after_a_connect_failure() {
    post_after_connect_failure(10 * 1024).await;
}

#[actix_rt::test]
async fn large_post_body_is_resent_to_the_next_backend_after_a_connect_failure() {
    // Nothing of the body has been read from the client when the connect fails, so the next
    // backend can still get all of it (DESIGN B3 retry: a connect failure tries another backend).
    post_after_connect_failure(200 * 1024).await;
}

#[actix_rt::test]
async fn without_retries_a_connect_failure_gives_502_for_requests_routed_to_the_dead_backend() {
    let dead = dead_addr();
    let live = Upstream::new("live").start().await;
    let gw = gateway(&backends_yaml(
        &[&dead, &live.addr_str()],
        "  loadBalancer: round_robin\n  retry: {attempts: 0}\n",
    ))
    .await;
    let (mut ok, mut bad) = (0, 0);
    for i in 0..10 {
        let r = gw.get(&format!("/n{i}")).await;
        match r.status {
            200 => ok += 1,
            502 => {
                assert_json_error(&r, 502);
                bad += 1;
            }
            s => panic!("request {i}: unexpected status {s}: {}", r.body),
        }
    }
    // Round robin over two backends alternates strictly.
    assert_eq!((ok, bad), (5, 5), "ok/502 split over 10 requests");
    assert_eq!(live.hits(), 5);
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------------
// 4. Limits
// ------------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn headers_over_max_header_bytes_get_431_json_and_are_not_forwarded() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  limits: {maxHeaderBytes: 2048}\n",
    ))
    .await;
    // Well under the limit: forwarded.
    let r = fetch(
        client()
            .get(gw.url("/small"))
            .insert_header(("x-pad", "a".repeat(1000))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.hits(), 1);
    // Over the limit: 431 from the gateway.
    let r = fetch(
        client()
            .get(gw.url("/big"))
            .insert_header(("x-pad", "a".repeat(3000))),
    )
    .await;
    assert_json_error(&r, 431);
    assert_eq!(
        a.hits(),
        1,
        "a request with oversized headers reached the upstream"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn content_length_over_max_body_bytes_gets_413_and_the_upstream_is_never_hit() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  limits: {maxBodyBytes: 1000}\n",
    ))
    .await;
    let r = send(client().post(gw.url("/upload")), Some(vec![b'x'; 1001])).await;
    assert_json_error(&r, 413);
    assert_eq!(a.hits(), 0, "an oversized body reached the upstream");
    gw.stop().await;
}

#[actix_rt::test]
async fn body_of_exactly_max_body_bytes_is_accepted_and_forwarded_whole() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  limits: {maxBodyBytes: 1000}\n",
    ))
    .await;
    let body = pattern(1000, 21);
    let r = send(client().post(gw.url("/upload")), Some(body.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body_len"], 1000);
    assert_eq!(a.hits(), 1);
    assert!(a.last().body == body, "upstream got different bytes");
    gw.stop().await;
}

#[actix_rt::test]
async fn chunked_body_over_max_body_bytes_is_rejected_with_413_or_closed_never_200() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  limits: {maxBodyBytes: 1000}\n",
    ))
    .await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = pattern(5000, 5)
        .chunks(700)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let res = client()
        .post(gw.url("/upload"))
        .send_stream(futures_util::stream::iter(chunks))
        .await;
    match res {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body().await.unwrap_or_default();
            assert_eq!(
                status,
                413,
                "an over-limit chunked body got {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let j: serde_json::Value = serde_json::from_slice(&body).expect("413 body is JSON");
            assert!(j["error"].is_string() && j["request_id"].is_string(), "{j}");
            assert_eq!(
                r.headers().get("x-request-id").unwrap().to_str().unwrap(),
                j["request_id"].as_str().unwrap()
            );
        }
        Err(e) => {
            // Acceptable per the brief: the gateway closed the connection without a 2xx.
            eprintln!("over-limit chunked upload ended with a client error: {e}");
        }
    }
    let seen = a.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.body.len() <= 1000),
        "the upstream received more than maxBodyBytes"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn chunked_body_within_max_body_bytes_is_forwarded() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  limits: {maxBodyBytes: 1000}\n",
    ))
    .await;
    let data = pattern(1000, 6);
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(300)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut r = client()
        .post(gw.url("/upload"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 200);
    let _ = r.body().await;
    assert_eq!(a.hits(), 1);
    assert!(a.last().body == data, "upstream got different bytes");
    gw.stop().await;
}

// ------------------------------------------------------------------------------------------------
// 5. Access log
// ------------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn access_log_line_describes_the_completed_request() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let body = vec![b'b'; 123];
    let r = send(client().post(gw.url("/logged/path?q=1")), Some(body)).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    let rid = r
        .header("x-request-id")
        .expect("X-Request-ID on a proxied response")
        .to_string();
    let logs = gw.logs.clone();
    let find_line = || {
        logs.with_msg("request completed")
            .into_iter()
            .find(|l| l["request_id"] == rid.as_str())
    };
    eventually("access log line for the request", || {
        let found = find_line().is_some();
        async move { found }
    })
    .await;
    let line = find_line().unwrap();
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/logged/path", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    let d = line["duration_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("duration_ms not a number: {line}"));
    assert!(d >= 0.0, "{line}");
    assert_eq!(line["route"], "default", "{line}");
    assert_eq!(line["backend"], a.addr_str().as_str(), "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["bytes_in"], 123, "{line}");
    assert_eq!(
        line["bytes_out"].as_u64(),
        Some(r.body.len() as u64),
        "{line}"
    );
    assert!(!r.body.is_empty());
    assert_eq!(
        gw.logs.with_msg("request completed").len(),
        1,
        "one access line per request"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn access_log_disabled_writes_no_request_lines() {
    let a = Upstream::new("a").start().await;
    let yaml = backends_yaml(
        &[&a.addr_str()],
        "  shutdown: {drainTimeout: 2s}\nlogging: {accessLog: false}\n",
    );
    let gw = gateway(&yaml).await;
    for i in 0..3 {
        assert_eq!(gw.get(&format!("/quiet{i}")).await.status, 200);
    }
    let logs = gw.logs.clone();
    // After a graceful stop every response body has been dropped, so any access line is written.
    gw.stop().await;
    assert!(
        !logs.lines().is_empty(),
        "the gateway's log capture works (lifecycle lines present)"
    );
    assert!(
        logs.lines().iter().any(|l| l["msg"] == "shutdown complete"),
        "shutdown finished before checking the log"
    );
    let lines = logs.with_msg("request completed");
    assert!(
        lines.is_empty(),
        "access lines written with accessLog: false: {lines:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// 6. Metrics
// ------------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn metrics_count_proxied_requests_by_backend_route_and_code() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    for i in 0..3 {
        assert_eq!(gw.get(&format!("/m{i}")).await.status, 200);
    }
    let requests = format!(
        "gogate_requests_total{{backend=\"{}\",listener=\"http\",route=\"default\",status=\"success\"}} 3",
        a.addr_str()
    );
    let responses = "gogate_http_responses_total{code=\"200\",route=\"default\"} 3";
    let count = "gogate_request_duration_seconds_count{listener=\"http\",route=\"default\"} 3";
    let g = &gw;
    let (rq, rs, c) = (&requests, responses, count);
    eventually("request metrics reach 3", || async move {
        let t = g.metrics_text().await;
        [rq.as_str(), rs, c]
            .iter()
            .all(|want| t.lines().any(|l| l == *want))
    })
    .await;
    let text = gw.metrics_text().await;
    let inf_bucket = text.lines().find(|l| {
        l.starts_with("gogate_request_duration_seconds_bucket{")
            && l.contains("listener=\"http\"")
            && l.contains("route=\"default\"")
            && l.contains("le=\"+Inf\"")
    });
    assert_eq!(
        inf_bucket.and_then(|l| l.rsplit(' ').next()),
        Some("3"),
        "+Inf bucket: {inf_bucket:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("gogate_requests_total{")
            && l.contains("status=\"failure\"")
            && !l.ends_with(" 0")),
        "no failures were expected:\n{text}"
    );
    gw.stop().await;
}
