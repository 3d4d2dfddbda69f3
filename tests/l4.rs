//! L4 (TCP) proxy behaviour (DESIGN B5): byte relay, round robin, half-close in both
//! directions, connect-failure failover, idle timeout, connection cap, per-backend byte
//! counters and draining. Backends are small tokio servers written here.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(3);

/// A scripted TCP backend: `accepted` counts connections; each one is served by `serve`.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Backend {
    fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn backend<F, Fut>(serve: F) -> Backend
where
    F: Fn(TcpStream) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    actix_rt::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            actix_rt::spawn(serve(sock));
        }
    });
    Backend { addr, accepted }
}

/// Copies everything back; half-closes its write side after the client's EOF.
async fn echo_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
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
}

async fn echo_backend() -> Backend {
    backend(echo_conn).await
}

/// Writes `<name>\n` first, then echoes.
async fn named_backend(name: &'static str) -> Backend {
    backend(move |mut s: TcpStream| async move {
        if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
            return;
        }
        echo_conn(s).await
    })
    .await
}

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.tcp.expect("L4 listener enabled"))
        .await
        .expect("connect to the L4 listener")
}

/// Reads exactly `n` bytes within STEP.
async fn read_exact_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(STEP, s.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("timed out reading {n} bytes"))
        .unwrap_or_else(|e| panic!("reading {n} bytes failed: {e}"));
    buf
}

/// Reads to EOF within STEP.
async fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("timed out waiting for EOF")
        .expect("read to EOF failed");
    out
}

/// Sends `msg` and expects it echoed back.
async fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write");
    let got = read_exact_n(s, msg.len()).await;
    assert_eq!(got, msg, "echo mismatch");
}

/// A connection the gateway refuses: the first read yields EOF or an error (a reset) quickly,
/// and never data.
async fn assert_closed_promptly(s: &mut TcpStream, what: &str) {
    let _ = s.write_all(b"hello?").await;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Err(_) => panic!("{what}: connection still open after 1 s"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "{what}: expected the connection closed, got {n} bytes: {:?}",
            &buf[..n]
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{what}: closed too slowly"
    );
}

/// Connects and expects the gateway to close the connection at once. A reset that arrives
/// before the handshake is even reported to us (the connect itself fails with a reset) counts.
async fn assert_refused(gw: &TestGateway, what: &str) {
    match TcpStream::connect(gw.tcp.unwrap()).await {
        Ok(mut s) => assert_closed_promptly(&mut s, what).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: unexpected connect error {e}"),
    }
}

fn tcp_only(addrs: &[&str], extra: &str) -> String {
    backends_yaml(addrs, extra)
}

#[actix_rt::test]
async fn bytes_round_trip_through_the_l4_listener() {
    let echo = echo_backend().await;
    let gw = gateway(&tcp_only(&[&echo.addr_str()], "")).await;

    // A short exchange, then a large payload streamed both ways at once.
    let mut s = connect(&gw).await;
    echo_roundtrip(&mut s, b"hello gogate").await;

    let payload: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let (mut rd, mut wr) = s.into_split();
    let to_send = payload.clone();
    let writer = async move {
        wr.write_all(&to_send).await.expect("write payload");
        wr.shutdown().await.expect("shutdown write");
    };
    let reader = async move {
        let mut out = Vec::new();
        rd.read_to_end(&mut out).await.expect("read payload");
        out
    };
    let (_, got) = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join(writer, reader),
    )
    .await
    .expect("1 MiB round trip timed out");
    assert_eq!(got.len(), payload.len(), "echoed length");
    assert!(got == payload, "echoed bytes differ from the bytes sent");
    assert_eq!(echo.accepted(), 1, "one session = one backend connection");
    gw.stop().await;
}

#[actix_rt::test]
async fn round_robin_across_two_backends_per_connection() {
    let a = named_backend("alpha").await;
    let b = named_backend("beta").await;
    let gw = gateway(&tcp_only(&[&a.addr_str(), &b.addr_str()], "")).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&gw).await;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.last() != Some(&b'\n') {
            let n = tokio::time::timeout(STEP, s.read(&mut byte))
                .await
                .expect("name line")
                .expect("read name");
            assert_eq!(
                n, 1,
                "backend closed before sending its name (got {:?})",
                line
            );
            line.push(byte[0]);
        }
        let name = String::from_utf8(line).unwrap().trim().to_string();
        // The session is a real relay, not just a greeting.
        echo_roundtrip(&mut s, name.as_bytes()).await;
        seen.push(name);
    }
    assert_eq!(
        seen,
        ["alpha", "beta", "alpha", "beta"],
        "round robin starts at the first backend and alternates"
    );
    assert_eq!((a.accepted(), b.accepted()), (2, 2));
    gw.stop().await;
}

#[actix_rt::test]
async fn client_half_close_still_gets_the_reply() {
    // The backend reads the whole request (to EOF), then replies and closes.
    let be = backend(|mut s: TcpStream| async move {
        let mut req = Vec::new();
        if s.read_to_end(&mut req).await.is_err() {
            return;
        }
        let reply = format!("got {} bytes: {}", req.len(), String::from_utf8_lossy(&req));
        let _ = s.write_all(reply.as_bytes()).await;
        let _ = s.shutdown().await;
    })
    .await;
    let gw = gateway(&tcp_only(&[&be.addr_str()], "")).await;

    let mut s = connect(&gw).await;
    s.write_all(b"the request").await.unwrap();
    s.shutdown()
        .await
        .expect("half-close the client's write side");
    let reply = read_to_eof(&mut s).await;
    assert_eq!(String::from_utf8_lossy(&reply), "got 11 bytes: the request");
    // EOF is final.
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).await.expect("read after EOF"), 0);
    gw.stop().await;
}

#[actix_rt::test]
async fn backend_half_close_still_receives_client_data() {
    // The backend greets, closes its write side, then reads what the client still sends.
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let be = backend(move |mut s: TcpStream| {
        let tx = tx.clone();
        async move {
            let _ = s.write_all(b"server done").await;
            let _ = s.shutdown().await;
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            let _ = tx.send(got);
        }
    })
    .await;
    let gw = gateway(&tcp_only(&[&be.addr_str()], "")).await;

    let mut s = connect(&gw).await;
    // The backend's FIN reaches the client after its data...
    let greeting = read_to_eof(&mut s).await;
    assert_eq!(greeting, b"server done");
    // ...and the client's direction is still open.
    s.write_all(b"late client data")
        .await
        .expect("write after the backend's FIN");
    s.shutdown().await.expect("client half-close");
    let got = tokio::time::timeout(STEP, rx.recv())
        .await
        .expect("backend never saw the client's EOF")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "late client data");
    gw.stop().await;
}

#[actix_rt::test]
async fn connect_failure_moves_to_the_next_backend() {
    let live = echo_backend().await;
    let dead = dead_addr();
    let gw = gateway(&tcp_only(&[&dead, &live.addr_str()], "")).await;
    for i in 0..4 {
        let mut s = connect(&gw).await;
        echo_roundtrip(&mut s, format!("connection {i}").as_bytes()).await;
    }
    assert_eq!(
        live.accepted(),
        4,
        "every connection ended on the live backend"
    );
    // The failed connects are counted against the dead backend.
    let backends = gw.admin_get("/backends").await.json();
    let dead_entry = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == dead.as_str())
        .expect("dead backend listed");
    assert!(
        dead_entry["failures_total"].as_u64().unwrap() >= 1,
        "{dead_entry}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn idle_session_is_closed_by_the_gateway() {
    let echo = echo_backend().await;
    let gw = gateway(&tcp_only(
        &[&echo.addr_str()],
        "  timeouts: {idle: 300ms}\n",
    ))
    .await;
    let mut s = connect(&gw).await;
    echo_roundtrip(&mut s, b"wake").await;
    let quiet_since = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("idle session was not closed within 2 s")
        .expect("idle close should be an orderly EOF");
    assert_eq!(n, 0, "expected EOF, got data {:?}", &buf[..n]);
    let waited = quiet_since.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after only {waited:?}, before the 300ms idle timeout"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn active_session_outlives_the_idle_timeout() {
    let echo = echo_backend().await;
    let gw = gateway(&tcp_only(
        &[&echo.addr_str()],
        "  timeouts: {idle: 300ms}\n",
    ))
    .await;
    let mut s = connect(&gw).await;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(1) {
        echo_roundtrip(&mut s, format!("tick {i}").as_bytes()).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await; // pacing, not synchronisation
    }
    // Still the same session, still open.
    echo_roundtrip(&mut s, b"still here").await;
    assert_eq!(echo.accepted(), 1);
    drop(s);
    gw.stop().await;
}

#[actix_rt::test]
async fn connection_cap_refuses_the_extra_connection() {
    let echo = echo_backend().await;
    let gw = gateway(&tcp_only(
        &[&echo.addr_str()],
        "  limits: {maxConnections: 2}\n",
    ))
    .await;
    let mut one = connect(&gw).await;
    echo_roundtrip(&mut one, b"one").await;
    let mut two = connect(&gw).await;
    echo_roundtrip(&mut two, b"two").await;

    assert_refused(&gw, "third connection over maxConnections: 2").await;
    assert_eq!(
        echo.accepted(),
        2,
        "the refused connection never reached the backend"
    );
    let rejected =
        "gogate_connections_rejected_total{listener=\"tcp\",reason=\"max_connections\"} 1";
    assert!(gw.metrics_text().await.contains(rejected));

    // The first two are unaffected.
    echo_roundtrip(&mut one, b"one again").await;
    drop(one);
    // Once a slot is free, a new connection works.
    eventually("a new connection is served after one closed", || async {
        let Ok(mut s) = TcpStream::connect(gw.tcp.unwrap()).await else { return false };
        if s.write_all(b"four").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        matches!(tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"four")
    })
    .await;
    echo_roundtrip(&mut two, b"two again").await;
    drop(two);
    gw.stop().await;
}

#[actix_rt::test]
async fn bytes_are_counted_per_backend() {
    const N: usize = 12_345;
    const M: usize = 54_321;
    let be = backend(|mut s: TcpStream| async move {
        let mut req = Vec::new();
        if s.read_to_end(&mut req).await.is_err() {
            return;
        }
        assert_eq!(req.len(), N);
        let _ = s.write_all(&vec![b'r'; M]).await;
        let _ = s.shutdown().await;
    })
    .await;
    let addr = be.addr_str();
    let gw = gateway(&tcp_only(&[&addr], "")).await;

    let mut s = connect(&gw).await;
    s.write_all(&vec![b's'; N]).await.unwrap();
    s.shutdown().await.unwrap();
    let reply = read_to_eof(&mut s).await;
    assert_eq!(reply.len(), M);

    eventually("GET /stats shows the bytes of the session", || async {
        let b = gw.admin_get("/stats").await.json()["backends"][&addr].clone();
        b["bytes_sent"] == N && b["bytes_received"] == M
    })
    .await;
    let last = gw.admin_get("/stats").await.json()["backends"][&addr].clone();
    assert_eq!(last["bytes_sent"], N, "{last}");
    assert_eq!(last["bytes_received"], M, "{last}");

    let sent_line = format!("gogate_backend_bytes_sent_total{{backend=\"{addr}\"}} {N}");
    let recv_line = format!("gogate_backend_bytes_received_total{{backend=\"{addr}\"}} {M}");
    eventually("metrics show the bytes of the session", || async {
        let text = gw.metrics_text().await;
        text.lines().any(|l| l == sent_line) && text.lines().any(|l| l == recv_line)
    })
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn no_eligible_backend_closes_the_connection() {
    let a = echo_backend().await;
    let b = echo_backend().await;
    let gw = gateway(&tcp_only(&[&a.addr_str(), &b.addr_str()], "")).await;
    for be in [&a, &b] {
        let r = gw
            .admin_send("POST", &format!("/backends/{}/drain", be.addr_str()))
            .await;
        assert_eq!(r.status, 200, "drain {}: {}", be.addr_str(), r.body);
    }
    for i in 0..2 {
        assert_refused(&gw, &format!("connection {i} with every backend drained")).await;
    }
    assert_eq!(
        (a.accepted(), b.accepted()),
        (0, 0),
        "drained backends got no connection"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn draining_keeps_established_sessions() {
    let a = echo_backend().await;
    let b = echo_backend().await;
    let gw = gateway(&tcp_only(&[&a.addr_str(), &b.addr_str()], "")).await;
    // Round robin starts at `a`.
    let mut old = connect(&gw).await;
    echo_roundtrip(&mut old, b"before drain").await;
    assert_eq!((a.accepted(), b.accepted()), (1, 0));

    let r = gw
        .admin_send("POST", &format!("/backends/{}/drain", a.addr_str()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The established session to the drained backend keeps working...
    echo_roundtrip(&mut old, b"after drain").await;
    // ...while new connections all go to the other backend.
    for i in 0..3 {
        let mut s = connect(&gw).await;
        echo_roundtrip(&mut s, format!("new {i}").as_bytes()).await;
    }
    assert_eq!((a.accepted(), b.accepted()), (1, 3));
    drop(old);
    gw.stop().await;
}

/// Chaos: a client that half-closes and a backend that reads but never answers nor closes. The
/// session must still end at `timeouts.idle`, not linger with one direction finished.
#[actix_rt::test]
async fn half_closed_client_and_silent_backend_end_at_the_idle_timeout() {
    let held: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = Arc::clone(&held);
    let silent = backend(move |mut s: TcpStream| {
        let keep = Arc::clone(&keep);
        async move {
            // Read what comes (the FIN too), then hold the socket open without a word.
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            keep.lock().unwrap().push(s);
        }
    })
    .await;
    let gw = gateway(&tcp_only(
        &[&silent.addr_str()],
        "  timeouts: {idle: 300ms}\n",
    ))
    .await;
    for _ in 0..3 {
        let mut s = connect(&gw).await;
        s.write_all(b"request, then EOF").await.expect("write");
        s.shutdown().await.expect("half-close");
        let quiet_since = Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("the half-closed session outlived the idle timeout by seconds")
            .unwrap_or(0);
        assert_eq!(n, 0, "no data from a silent backend");
        assert!(quiet_since.elapsed() >= Duration::from_millis(250));
    }
    eventually("no L4 session left", || async {
        gw.admin_get("/stats").await.json()["connections"]["active"] == 0
    })
    .await;
    gw.stop().await;
}
