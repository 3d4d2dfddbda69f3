//! Wire-level tests of the upstream HTTP/1.1 client against raw TCP servers.

use super::body::{ChunkedDecoder, Decoded, MAX_CHUNK_LINE};
use super::codec::*;
use super::*;
use actix_web::http::header::HOST;
use actix_web::http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Chunk = Result<Bytes, PayloadError>;
const WAIT: Duration = Duration::from_secs(5);

/// Accepts one connection on 127.0.0.1 and runs `handler` on it.
async fn server<F, Fut>(handler: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        handler(sock).await;
    });
    (addr, task)
}

/// Reads into `buf` until it contains `needle`.
async fn read_until(sock: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let mut tmp = [0u8; 4096];
        let n = timeout(WAIT, sock.read(&mut tmp)).await.unwrap().unwrap();
        assert!(n > 0, "EOF before {:?}", String::from_utf8_lossy(needle));
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Waits until the client closes (or resets) the connection.
async fn hold(mut sock: TcpStream) {
    let mut tmp = [0u8; 4096];
    while let Ok(Ok(n)) = timeout(WAIT, sock.read(&mut tmp)).await {
        if n == 0 {
            break;
        }
    }
}

/// Reads a bodiless request head, answers `response`, then closes or holds the connection.
async fn canned(response: &'static [u8], close: bool) -> (String, JoinHandle<()>) {
    server(move |mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        s.write_all(response).await.unwrap();
        if !close {
            hold(s).await;
        }
    })
    .await
}

fn iter_body(chunks: &[&'static [u8]]) -> impl Stream<Item = Chunk> + Unpin + 'static {
    let items: Vec<Chunk> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
    futures_util::stream::iter(items)
}

fn channel_body() -> (
    mpsc::UnboundedSender<Chunk>,
    impl Stream<Item = Chunk> + Unpin + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    (
        tx,
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
    )
}

struct PanicBody;
impl Stream for PanicBody {
    type Item = Chunk;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Chunk>> {
        panic!("the body must not be polled");
    }
}

async fn call<S>(
    addr: &str,
    method: Method,
    framing: Framing,
    body: S,
) -> Result<UpstreamResponse, UpstreamError>
where
    S: Stream<Item = Chunk> + Unpin + 'static,
{
    let mut h = HeaderMap::new();
    h.insert(HOST, HeaderValue::from_static("example"));
    send_streaming(addr, WAIT, WAIT, &method, "/up?x=1", &h, framing, body).await
}

async fn get(addr: &str) -> Result<UpstreamResponse, UpstreamError> {
    call(addr, Method::GET, Framing::Length(0), iter_body(&[])).await
}

async fn collect(mut body: UpstreamBody) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = timeout(WAIT, body.next()).await.expect("body hung") {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn small_first_chunk_reaches_upstream_before_more_is_sent() {
    let (got_tx, got_rx) = oneshot::channel();
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\na\r\n0123456789\r\n").await;
        got_tx.send(()).unwrap();
        read_until(&mut s, &mut buf, b"0\r\n\r\n").await;
        assert!(buf.ends_with(b"0123456789\r\n5\r\nhello\r\n0\r\n\r\n"));
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        hold(s).await;
    })
    .await;
    let (tx, body) = channel_body();
    let driver = async move {
        tx.send(Ok(Bytes::from_static(b"0123456789"))).unwrap();
        timeout(WAIT, got_rx)
            .await
            .expect("first chunk was held back")
            .unwrap();
        tx.send(Ok(Bytes::from_static(b"hello"))).unwrap();
    };
    let (resp, ()) = tokio::join!(call(&addr, Method::POST, Framing::Chunked, body), driver);
    let resp = resp.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(collect(resp.body).await.unwrap(), b"ok");
    srv.await.unwrap();
}

#[tokio::test]
async fn chunked_request_framing_on_the_wire() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n0\r\n\r\n").await;
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        seen_tx.send(buf).unwrap();
        hold(s).await;
    })
    .await;
    let mut h = HeaderMap::new();
    h.insert(HOST, HeaderValue::from_static("example"));
    // Framing headers passed by mistake are replaced, never duplicated.
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
    h.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
    h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    let body = iter_body(&[b"abc", b"", b"0123456789abcdef"]);
    let resp = send_streaming(
        &addr,
        WAIT,
        WAIT,
        &Method::PUT,
        "/up?x=1",
        &h,
        Framing::Chunked,
        body,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let wire = seen_rx.await.unwrap();
    assert_eq!(
        String::from_utf8(wire).unwrap(),
        "PUT /up?x=1 HTTP/1.1\r\nhost: example\r\n\
         transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
    );
    assert_eq!(collect(resp.body).await.unwrap(), b"");
    srv.await.unwrap();
}

#[tokio::test]
async fn length_request_framing_on_the_wire() {
    let (seen_tx, seen_rx) = oneshot::channel();
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"hello world").await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        seen_tx.send(buf).unwrap();
        hold(s).await;
    })
    .await;
    let body = iter_body(&[b"hello ", b"", b"world"]);
    let resp = call(&addr, Method::POST, Framing::Length(11), body)
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        String::from_utf8(seen_rx.await.unwrap()).unwrap(),
        "POST /up?x=1 HTTP/1.1\r\nhost: example\r\n\
         content-length: 11\r\n\r\nhello world"
    );
    assert_eq!(resp.headers.get(CONTENT_LENGTH).unwrap(), "0");
    assert_eq!(collect(resp.body).await.unwrap(), b"");
    srv.await.unwrap();
}

#[tokio::test]
async fn length_mismatch_is_a_protocol_error() {
    for (n, chunks) in [(5, &[&b"abc"[..]][..]), (2, &[&b"a"[..], &b"bc"[..]][..])] {
        let (addr, srv) = server(hold).await;
        let err = call(&addr, Method::POST, Framing::Length(n), iter_body(chunks))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, UpstreamError::Protocol(_)), "{err:?}");
        srv.await.unwrap();
    }
}

#[tokio::test]
async fn body_stream_error_is_reported() {
    let (addr, srv) = server(hold).await;
    let body = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(PayloadError::Overflow),
    ]);
    let err = call(&addr, Method::POST, Framing::Chunked, body)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, UpstreamError::Body(PayloadError::Overflow)),
        "{err:?}"
    );
    srv.await.unwrap();
}

#[tokio::test]
async fn response_with_content_length_stops_at_the_length() {
    let (addr, srv) = canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-hop\r\n\
          Keep-Alive: timeout=5\r\nX-Hop: 1\r\nX-End: 2\r\n\r\nhelloEXTRA",
        false,
    )
    .await;
    let resp = get(&addr).await.unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers.get(CONTENT_LENGTH).unwrap(), "5");
    assert_eq!(resp.headers.get("x-end").unwrap(), "2");
    for gone in ["connection", "keep-alive", "x-hop", "transfer-encoding"] {
        assert!(!resp.headers.contains_key(gone), "{gone}");
    }
    assert_eq!(collect(resp.body).await.unwrap(), b"hello");
    srv.await.unwrap();
}

#[tokio::test]
async fn response_shorter_than_content_length_is_unexpected_eof() {
    let (addr, srv) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true).await;
    let resp = get(&addr).await.unwrap();
    let err = collect(resp.body).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    srv.await.unwrap();
}

#[tokio::test]
async fn chunked_response_split_at_awkward_places() {
    let (addr, srv) = server(|mut s| async move {
        s.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        let pieces: [&[u8]; 7] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n5;ext",
            b"=1\r\nhel",
            b"lo\r",
            b"\nA ; a=\"b\"\r\n0123456789\r\n0",
            b"\r\nX-Tr",
            b"ailer: t\r\n\r",
            b"\nGARBAGE",
        ];
        for p in pieces {
            s.write_all(p).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hold(s).await;
    })
    .await;
    let resp = get(&addr).await.unwrap();
    assert!(!resp.headers.contains_key(TRANSFER_ENCODING));
    assert!(!resp.headers.contains_key(CONTENT_LENGTH));
    assert_eq!(collect(resp.body).await.unwrap(), b"hello0123456789");
    srv.await.unwrap();
}

#[tokio::test]
async fn chunked_response_with_bad_size_is_invalid_data() {
    let (addr, srv) = canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n",
        false,
    )
    .await;
    let mut body = get(&addr).await.unwrap().body;
    assert_eq!(body.next().await.unwrap().unwrap(), "ok");
    let err = body.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(body.next().await.is_none());
    drop(body);
    srv.await.unwrap();
}

#[tokio::test]
async fn response_until_eof() {
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        s.write_all(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nsome data")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(b" and more").await.unwrap();
    })
    .await;
    let resp = get(&addr).await.unwrap();
    assert!(!resp.headers.contains_key(CONTENT_LENGTH));
    assert_eq!(collect(resp.body).await.unwrap(), b"some data and more");
    srv.await.unwrap();
}

#[tokio::test]
async fn head_and_204_and_304_have_no_body() {
    let (addr, srv) = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false).await;
    let resp = call(&addr, Method::HEAD, Framing::Length(0), iter_body(&[]))
        .await
        .unwrap();
    assert_eq!(resp.headers.get(CONTENT_LENGTH).unwrap(), "100");
    assert_eq!(collect(resp.body).await.unwrap(), b"");
    srv.await.unwrap();
    for head in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        &b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"[..],
    ] {
        let (addr, srv) = canned(head, false).await;
        let resp = get(&addr).await.unwrap();
        assert_eq!(collect(resp.body).await.unwrap(), b"");
        srv.await.unwrap();
    }
}

#[tokio::test]
async fn early_response_stops_the_upload() {
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\na\r\n0123456789\r\n").await;
        s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
            .await
            .unwrap();
        hold(s).await;
    })
    .await;
    let (tx, body) = channel_body();
    tx.send(Ok(Bytes::from_static(b"0123456789"))).unwrap();
    let resp = timeout(WAIT, call(&addr, Method::POST, Framing::Chunked, body))
        .await
        .expect("early response not returned")
        .unwrap();
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(tx.is_closed(), "the body stream must be dropped");
    assert_eq!(collect(resp.body).await.unwrap(), b"big!");
    srv.await.unwrap();
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (addr, srv) = server(|mut s| async move {
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\r\n\r\n").await;
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
        read_until(&mut s, &mut buf, b"0\r\n\r\n").await;
        s.write_all(
            b"HTTP/1.1 102 Processing\r\nX-I: 1\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        )
        .await
        .unwrap();
        hold(s).await;
    })
    .await;
    let resp = call(&addr, Method::POST, Framing::Chunked, iter_body(&[b"data"]))
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::CREATED);
    assert!(!resp.headers.contains_key("x-i"));
    assert_eq!(collect(resp.body).await.unwrap(), b"ok");
    srv.await.unwrap();
}

#[tokio::test]
async fn connect_refused_does_not_poll_the_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = call(&addr, Method::POST, Framing::Chunked, PanicBody)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn connect_timeout_does_not_poll_the_body() {
    // A listener whose accept queue is full drops further SYNs, so connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(conn) => fillers.push(conn.unwrap()),
            Err(_) => break,
        }
    }
    let (h, short) = (HeaderMap::new(), Duration::from_millis(100));
    let r = send_streaming(
        &addr.to_string(),
        short,
        WAIT,
        &Method::GET,
        "/",
        &h,
        Framing::Chunked,
        PanicBody,
    )
    .await;
    assert!(
        matches!(r, Err(UpstreamError::ConnectTimeout)),
        "{:?}",
        r.err()
    );
    drop(fillers);
}

#[tokio::test]
async fn response_timeout_covers_the_head() {
    let (addr, srv) = server(hold).await;
    let h = HeaderMap::new();
    let short = Duration::from_millis(100);
    let r = send_streaming(
        &addr,
        WAIT,
        short,
        &Method::GET,
        "/",
        &h,
        Framing::Length(0),
        iter_body(&[]),
    )
    .await;
    assert!(matches!(r, Err(UpstreamError::Timeout)));
    srv.await.unwrap();
}

#[tokio::test]
async fn malformed_responses_are_protocol_errors() {
    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X-A: b\r\n".repeat(101));
    let huge = format!("HTTP/1.1 200 OK\r\nX-A: {}\r\n\r\n", "a".repeat(70 * 1024));
    let cases: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
        Box::leak(many.into_bytes().into_boxed_slice()),
        Box::leak(huge.into_bytes().into_boxed_slice()),
    ];
    for case in cases {
        let (addr, srv) = canned(case, true).await;
        let err = get(&addr).await.err().unwrap();
        assert!(matches!(err, UpstreamError::Protocol(_)), "{err:?}");
        srv.await.unwrap();
    }
}

fn decode_in_steps(input: &[u8], step: usize) -> io::Result<Vec<u8>> {
    let mut dec = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::NeedMore => break,
                Decoded::Done => return Ok(out),
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "not done"))
}

#[test]
fn chunked_decoder_handles_every_split() {
    let input = b"5;name=value\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\nxyz\n\
                  0;last\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n";
    for step in 1..=input.len() {
        let out = decode_in_steps(input, step).unwrap();
        assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyzxyz", "step {step}");
    }
}

#[test]
fn chunked_decoder_rejects_bad_framing() {
    for bad in [
        &b"zz\r\n"[..],
        b"\r\n",
        b";ext\r\n",
        b"11111111111111111\r\n",
        b"-1\r\n",
        b"3\r\nabcX\r\n",
    ] {
        let err = decode_in_steps(bad, bad.len()).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidData,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = vec![b'1'; MAX_CHUNK_LINE + 2];
    assert_eq!(
        decode_in_steps(&long, long.len()).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}

/// The streamed-upload path on an unpooled client (what the tests above exercise).
#[allow(clippy::too_many_arguments)]
async fn send_streaming<S>(
    addr: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    framing: Framing,
    body: S,
) -> Result<UpstreamResponse, UpstreamError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let pool = Rc::new(ConnPool::default());
    let settings = PoolSettings {
        enabled: false,
        max_idle: 0,
        idle_timeout: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(300),
        connect_timeout,
    };
    let metrics = gogate_actors::Metrics::new();
    let idle_cuts = gogate_actors::metrics::IdleCounters::new(&metrics);
    let target = Target {
        addr,
        pool: &pool,
        settings: &settings,
        response_timeout,
        idle: Duration::from_secs(60),
        idle_cuts: &idle_cuts,
    };
    let request = Request {
        method,
        path_and_query,
        headers,
    };
    send(&target, &request, Payload::Stream(body, framing)).await
}
