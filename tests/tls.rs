//! TLS termination and HTTP/2 (DESIGN B2/B3 `server.tls`): certificates chosen by SNI, HTTP/1.1
//! and HTTP/2 through the HTTPS listener to HTTP/1.1 upstreams, `minVersion`, certificates that
//! reload live (file swap, reload) without dropping open connections, bad certificates refused
//! by `validate`, the start and a reload (which keeps the old one), the listener moving on
//! reload, and clients that keep succeeding while reloads happen. Certificates are made at test
//! time by a test CA the clients trust.
mod common;
#[path = "tls/kit.rs"]
mod kit;

use common::config_file::*;
use common::*;
use kit::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Certificates of one test: a CA, a default certificate (also valid for 127.0.0.1, so a client
/// without SNI can verify it), one for `a.test` and a wildcard one for `*.b.test`.
struct Pki {
    ca: Ca,
    default: Leaf,
    a: Leaf,
    b: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new();
        Pki {
            default: ca.leaf(&["default.test", "127.0.0.1"]),
            a: ca.leaf(&["a.test"]),
            b: ca.leaf(&["*.b.test"]),
            ca,
        }
    }

    fn write(&self, dir: &Path) {
        write_pair(dir, "default", &self.default);
        write_pair(dir, "a", &self.a);
        write_pair(dir, "b", &self.b);
    }
}

/// A gateway config whose HTTPS listener serves `default` plus `a` and `b` by SNI (paths
/// relative to the config file), every request to `upstream`; `extra` is added under `server`.
fn config(upstream: &str, tls_extra: &str, extra: &str) -> String {
    // `extra` lines go under `server:` when indented, at the top level otherwise.
    format!(
        "server:
  listenAddr: \"\"
  backends: [{{addr: \"{upstream}\"}}]
  health: {{enabled: false}}
  tls:
    enabled: true
    listenAddr: \"127.0.0.1:0\"
    certFile: default.crt
    keyFile: default.key
    certificates:
      - {{certFile: a.crt, keyFile: a.key}}
      - {{certFile: b.crt, keyFile: b.key}}
{tls_extra}{extra}"
    )
}

struct Setup {
    dir: TempDir,
    path: PathBuf,
    pki: Pki,
    gw: TestGateway,
    https: SocketAddr,
}

async fn setup(upstream: &str, tls_extra: &str, extra: &str) -> Setup {
    setup_yaml(&config(upstream, tls_extra, extra)).await
}

/// Writes the certificates and `yaml` to a fresh directory and starts a gateway from it.
async fn setup_yaml(yaml: &str) -> Setup {
    let dir = TempDir::new();
    let pki = Pki::new();
    pki.write(&dir.0);
    let path = dir.path("gogate.yaml");
    write_config(&path, yaml);
    let gw = gateway_from_file(&path).await;
    let https = https_addr(&gw);
    Setup {
        dir,
        path,
        pki,
        gw,
        https,
    }
}

fn https_addr(gw: &TestGateway) -> SocketAddr {
    gw.gw
        .as_ref()
        .and_then(|g| g.https_addr)
        .expect("the HTTPS listener runs")
}

/// The value of the metric line that starts with `series` (`name{labels}`), 0 when absent.
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = gw.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn sni_picks_the_certificate_of_each_name() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let cfg = h1_client(&s.pki.ca);
    for (name, want) in [
        ("a.test", &s.pki.a),
        ("x.b.test", &s.pki.b),
        ("default.test", &s.pki.default),
        // No SNI (an IP address): the default certificate.
        ("127.0.0.1", &s.pki.default),
    ] {
        let mut tls = connect(s.https, name, &cfg)
            .await
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(peer_leaf(&tls), want.der, "certificate served for {name}");
        let r = h1_request(&mut tls, "GET", name, "/sni", b"")
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{name}");
    }
    // A name no certificate covers gets the default one, which the client then refuses.
    assert!(connect(s.https, "other.test", &cfg).await.is_err());
    // Counted when the server side of that handshake ends (the client's alert or close).
    eventually("the refused handshake is counted", || async {
        metric(&s.gw, "gogate_tls_handshake_errors_total{reason=\"error\"}").await >= 1.0
    })
    .await;
    s.gw.stop().await;
}

#[actix_rt::test]
async fn http1_and_http2_reach_the_upstream_with_forwarded_proto_https() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;

    let mut tls = connect(s.https, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    assert_eq!(alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    for i in 0..3 {
        let r = h1_request(&mut tls, "GET", "a.test", &format!("/h1/{i}"), b"")
            .await
            .expect("HTTP/1.1 over TLS, kept alive");
        assert_eq!(r.status, 200);
        assert!(r.header("x-request-id").is_some());
    }
    let seen = up.last();
    assert_eq!(seen.path, "/h1/2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("host"), Some("a.test"));

    let tls = connect(s.https, "a.test", &h2_client(&s.pki.ca))
        .await
        .expect("handshake");
    assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]));
    let h2 = h2_connect(tls).await;
    let r = h2_request(&h2, "GET", "https://a.test/h2?q=1", &[], &[])
        .await
        .expect("HTTP/2 GET");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/h2?q=1");
    let seen = up.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    // HTTP/2's :authority becomes the upstream's Host (HTTP/1.1 requires one).
    assert_eq!(seen.header("host"), Some("a.test"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a.test"));
    assert!(seen.header("transfer-encoding").is_none() && seen.body.is_empty());

    // The plain listener still says http.
    let plain = s.gw.get("/plain").await;
    assert_eq!(plain.status, 200);
    assert_eq!(up.last().header("x-forwarded-proto"), Some("http"));

    assert!(metric(&s.gw, "gogate_connections_total{listener=\"https\"}").await >= 2.0);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn h2_request_bodies_arrive_whole() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let tls = connect(s.https, "a.test", &h2_client(&s.pki.ca))
        .await
        .expect("handshake");
    let h2 = h2_connect(tls).await;

    // No Content-Length, several DATA frames: streamed to the upstream chunked.
    let pieces: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 10_000]).collect();
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let r = h2_request(&h2, "POST", "https://a.test/upload", &[], &refs)
        .await
        .expect("h2 POST");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 50_000);
    let seen = up.last();
    assert_eq!(seen.body, pieces.concat());
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));

    // With a Content-Length: sent with it.
    let r = h2_request(
        &h2,
        "PUT",
        "https://a.test/put",
        &[("content-length", "11")],
        &[b"hello", b" world"],
    )
    .await
    .expect("h2 PUT");
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.body, b"hello world");
    assert_eq!(seen.header("content-length"), Some("11"));
    s.gw.stop().await;
}

/// Reads a request head (up to its blank line) from a raw upstream socket; false when the peer
/// closed or failed first.
async fn read_head(sock: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A raw upstream on 127.0.0.1: each connection's request head is read, then `serve` has the
/// socket.
async fn raw_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let serve = serve.clone();
            actix_rt::spawn(async move {
                if read_head(&mut sock).await {
                    serve(sock).await;
                }
            });
        }
    });
    addr
}

/// An upstream that answers every request with a chunked body and hop-by-hop headers.
async fn chunked_upstream() -> SocketAddr {
    raw_upstream(|mut sock| async move {
        use tokio::io::AsyncWriteExt;
        let reply = "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nkeep-alive: timeout=5\r\nx-hop: 1\r\nupgrade: h2c\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let _ = sock.write_all(reply.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await
}

#[actix_rt::test]
async fn h2_relays_chunked_upstream_responses_without_connection_headers() {
    let up = chunked_upstream().await;
    let s = setup(&up.to_string(), "", "").await;
    let tls = connect(s.https, "a.test", &h2_client(&s.pki.ca))
        .await
        .expect("handshake");
    let h2 = h2_connect(tls).await;
    // The h2 client refuses a response carrying connection-specific headers, so an answer at
    // all shows they were dropped; the header list is checked too.
    let r = h2_request(&h2, "GET", "https://a.test/chunked", &[], &[])
        .await
        .expect("h2 GET of a chunked response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world");
    for h in [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "x-hop",
    ] {
        assert!(r.header(h).is_none(), "{h} sent over h2: {:?}", r.headers);
    }
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // And over HTTP/1.1 through TLS the chunked body arrives the same.
    let mut tls = connect(s.https, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    let r = h1_request(&mut tls, "GET", "a.test", "/chunked", b"")
        .await
        .expect("h1 GET");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world"[..]));
    s.gw.stop().await;
}

#[actix_rt::test]
async fn gateway_errors_are_json_over_h2() {
    let up = Upstream::new("up").start().await;
    let (ok, dead) = (up.addr_str(), dead_addr());
    // No default backends (an unmatched request is a 404); an upstream whose only backend is
    // never picked (503); a rate-limited route (429).
    let routes = format!(
        "upstreams:
  ok: {{backends: [{{addr: \"{ok}\"}}]}}
  idle: {{backends: [{{addr: \"{dead}\", weight: 0}}]}}
routes:
  - name: limited
    match: {{pathPrefix: /limited}}
    upstreams: [{{name: ok}}]
    rateLimit: {{rate: 1, burst: 1}}
  - name: none-eligible
    match: {{pathPrefix: /none}}
    upstreams: [{{name: idle}}]
"
    );
    let yaml = config(&ok, "", &routes).replace(
        &format!("  backends: [{{addr: \"{ok}\"}}]\n"),
        "  backends: []\n",
    );
    let s = setup_yaml(&yaml).await;
    let tls = connect(s.https, "a.test", &h2_client(&s.pki.ca))
        .await
        .expect("handshake");
    let h2 = h2_connect(tls).await;
    for (uri, status) in [
        ("https://a.test/nothing", 404),
        ("https://a.test/none", 503),
    ] {
        let r = h2_request(&h2, "GET", uri, &[], &[]).await.expect(uri);
        assert_eq!(r.status, status, "{uri}");
        assert!(r.json()["error"].is_string(), "{uri}: {:?}", r.body);
        assert!(r.json()["request_id"].is_string(), "{uri}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let first = h2_request(&h2, "GET", "https://a.test/limited", &[], &[])
        .await
        .expect("first");
    assert_eq!(first.status, 200);
    let limited = h2_request(&h2, "GET", "https://a.test/limited", &[], &[])
        .await
        .expect("second");
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert!(limited.json()["error"].is_string());
    assert_eq!(
        up.hits(),
        1,
        "only the admitted request reached the upstream"
    );
    s.gw.stop().await;
}

#[actix_rt::test]
async fn min_version_13_refuses_a_tls12_client() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "    minVersion: \"1.3\"\n", "").await;
    let tls12 = client(&s.pki.ca, &[&rustls::version::TLS12], &[b"http/1.1"]);
    assert!(
        connect(s.https, "a.test", &tls12).await.is_err(),
        "a TLS 1.2-only client must be refused"
    );
    assert_eq!(up.hits(), 0);
    let tls13 = client(&s.pki.ca, &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut tls = connect(s.https, "a.test", &tls13).await.expect("TLS 1.3");
    let r = h1_request(&mut tls, "GET", "a.test", "/", b"")
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    assert!(metric(&s.gw, "gogate_tls_handshake_errors_total{reason=\"error\"}").await >= 1.0);
    s.gw.stop().await;

    // The default (1.2) accepts TLS 1.2.
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let tls12 = client(&s.pki.ca, &[&rustls::version::TLS12], &[b"http/1.1"]);
    let mut tls = connect(s.https, "a.test", &tls12).await.expect("TLS 1.2");
    let r = h1_request(&mut tls, "GET", "a.test", "/", b"")
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    s.gw.stop().await;
}

/// Waits (bounded) until a new handshake for `name` sees `want`.
async fn new_handshakes_see(addr: SocketAddr, name: &str, ca: &Ca, want: &Leaf) {
    let cfg = h1_client(ca);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(tls) = connect(addr, name, &cfg).await {
            if peer_leaf(&tls) == want.der {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "new handshakes for {name} never saw the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_certificate_swapped_on_disk_is_served_without_dropping_open_connections() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let mut h1 = connect(s.https, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    assert_eq!(peer_leaf(&h1), s.pki.a.der);
    let h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    let reloads = metric(&s.gw, "gogate_config_reloads_total{result=\"success\"}").await;

    // The file watcher sees the new pair (no reload asked for).
    let renewed = s.pki.ca.leaf(&["a.test"]);
    write_pair(&s.dir.0, "a", &renewed);
    new_handshakes_see(s.https, "a.test", &s.pki.ca, &renewed).await;
    assert!(metric(&s.gw, "gogate_config_reloads_total{result=\"success\"}").await > reloads);

    // The connections opened before the swap still serve, on their old session.
    let r = h1_request(&mut h1, "GET", "a.test", "/after-swap", b"")
        .await
        .expect("the open HTTP/1.1 connection survives the swap");
    assert_eq!(r.status, 200);
    let r = h2_request(&h2, "GET", "https://a.test/after-swap", &[], &[])
        .await
        .expect("the open HTTP/2 connection survives the swap");
    assert_eq!(r.status, 200);
    // Other names kept theirs.
    let tls = connect(s.https, "x.b.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    assert_eq!(peer_leaf(&tls), s.pki.b.der);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn a_bad_certificate_on_reload_keeps_the_old_one() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let failures = metric(&s.gw, "gogate_config_reloads_total{result=\"failure\"}").await;
    // A key that belongs to another certificate.
    let other = s.pki.ca.leaf(&["a.test"]);
    write_atomic(&s.dir.path("a.key"), other.key_pem.as_bytes());
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("a.key") && r.body.contains("does not match"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("server.tls.certificates[0].keyFile"),
        "{}",
        r.body
    );
    // Garbage in the certificate file.
    write_atomic(&s.dir.path("b.crt"), b"not a certificate");
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("b.crt"), "{}", r.body);

    // The old certificates are still served, and the failures are counted.
    for (name, want) in [("a.test", &s.pki.a), ("x.b.test", &s.pki.b)] {
        let mut tls = connect(s.https, name, &h1_client(&s.pki.ca))
            .await
            .expect("handshake");
        assert_eq!(peer_leaf(&tls), want.der, "{name}");
        let r = h1_request(&mut tls, "GET", name, "/", b"")
            .await
            .expect("GET");
        assert_eq!(r.status, 200);
    }
    eventually("failed reloads are counted", || async {
        metric(&s.gw, "gogate_config_reloads_total{result=\"failure\"}").await >= failures + 2.0
    })
    .await;
    let cfg = s.gw.admin_get("/config").await;
    assert_eq!(cfg.json()["last_reload"]["result"], "failure");

    // Mended: the next reload serves the new pair.
    write_pair(&s.dir.0, "a", &other);
    write_pair(&s.dir.0, "b", &s.pki.b);
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    new_handshakes_see(s.https, "a.test", &s.pki.ca, &other).await;
    s.gw.stop().await;
}

fn gogate_bin() -> String {
    std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").to_string())
}

#[actix_rt::test]
async fn validate_and_start_fail_naming_the_certificate_file() {
    let dir = TempDir::new();
    let pki = Pki::new();
    pki.write(&dir.0);
    let path = dir.path("gogate.yaml");
    write_config(&path, &config("127.0.0.1:9", "", ""));
    let validate = |path: &Path| {
        std::process::Command::new(gogate_bin())
            .args(["validate", "-config"])
            .arg(path)
            .output()
            .expect("run gogate validate")
    };
    let ok = validate(&path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::remove_file(dir.path("b.key")).expect("remove b.key");
    let missing = validate(&path);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{err}");
    assert!(
        err.contains("server.tls.certificates[1].keyFile") && err.contains("b.key"),
        "{err}"
    );
    let start = try_gateway_from_file(&path).await;
    assert!(start.contains("b.key"), "{start}");

    write_pair(&dir.0, "b", &pki.b);
    write_atomic(&dir.path("default.key"), pki.a.key_pem.as_bytes());
    let mismatch = validate(&path);
    let err = String::from_utf8_lossy(&mismatch.stderr);
    assert_eq!(mismatch.status.code(), Some(1), "{err}");
    assert!(
        err.contains("default.key")
            && err.contains("does not match")
            && err.contains("default.crt"),
        "{err}"
    );
    let start = try_gateway_from_file(&path).await;
    assert!(start.contains("default.key"), "{start}");
}

/// Starts a gateway from `path`, expecting it to fail; returns the error.
async fn try_gateway_from_file(path: &Path) -> String {
    let cfg = gogate_config::load_file(path).expect("the file parses");
    let opts = gogate::gateway::GatewayOptions {
        config: cfg,
        file: Some(path.to_path_buf()),
        log: slog::Logger::root(slog::Discard, slog::o!()),
        workers: Some(1),
        env_admin_token: None,
        resolver: None,
    };
    match gogate::gateway::Gateway::start(opts).await {
        Ok(gw) => {
            gw.shutdown().await;
            panic!("the gateway started with a bad certificate");
        }
        Err(e) => e.to_string(),
    }
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

async fn refused(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[actix_rt::test]
async fn the_https_listener_moves_and_is_disabled_and_enabled_on_reload() {
    let up = Upstream::new("up")
        .delay(Duration::from_millis(300))
        .start()
        .await;
    let s = setup(&up.addr_str(), "", "").await;
    let old = s.https;
    // A request in progress on the old listener when it moves.
    let mut open = connect(old, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    let in_flight =
        actix_rt::spawn(
            async move { h1_request(&mut open, "GET", "a.test", "/draining", b"").await },
        );
    eventually("the request reached the upstream", || async {
        up.hits() == 1
    })
    .await;

    let moved = free_addr();
    let yaml = config(&up.addr_str(), "", "").replace(
        "listenAddr: \"127.0.0.1:0\"\n    certFile",
        &format!("listenAddr: \"{moved}\"\n    certFile"),
    );
    write_config(&s.path, &yaml);
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["restart_required"],
        serde_json::json!([]),
        "{}",
        r.body
    );
    let new: SocketAddr = moved.parse().expect("address");
    let mut tls = connect(new, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("the moved listener serves");
    let r = h1_request(&mut tls, "GET", "a.test", "/moved", b"")
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    eventually("the old address stops accepting", || refused(old)).await;
    // It finishes while the old listener drains.
    let r = in_flight
        .await
        .expect("task")
        .expect("the request in progress on the old listener is answered");
    assert_eq!(r.status, 200);

    // Disabled, then enabled again, by reload.
    write_config(&s.path, &yaml.replace("enabled: true", "enabled: false"));
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the disabled listener stops accepting", || refused(new)).await;
    write_config(&s.path, &yaml);
    let r = s.gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tls = connect(new, "x.b.test", &h1_client(&s.pki.ca))
        .await
        .expect("enabled again");
    assert_eq!(peer_leaf(&tls), s.pki.b.der);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn shutdown_drains_https_connections_of_both_protocols() {
    let up = Upstream::new("up")
        .delay(Duration::from_millis(300))
        .start()
        .await;
    let s = setup(&up.addr_str(), "", "  shutdown: {drainTimeout: 5s}\n").await;
    // Idle connections of both kinds, and one HTTP/2 request in progress.
    let mut idle_h1 = connect(s.https, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    let r = h1_request(&mut idle_h1, "GET", "a.test", "/", b"")
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    let idle_h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    let busy_h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    let hits = up.hits();
    let in_flight = actix_rt::spawn(async move {
        h2_request(&busy_h2, "GET", "https://a.test/slow", &[], &[]).await
    });
    eventually("the slow request reached the upstream", || async {
        up.seen.lock().map(|v| v.len() > hits).unwrap_or(false)
    })
    .await;
    let logs = s.gw.logs.clone();
    s.gw.stop().await;
    let r = in_flight
        .await
        .expect("task")
        .expect("the request in progress finishes during the drain");
    assert_eq!(r.status, 200);
    // Nothing was left for the deadline to cut: the idle ones were closed (HTTP/2: GOAWAY).
    let done = logs.with_msg("shutdown complete");
    assert_eq!(done.len(), 1, "{:?}", logs.lines());
    assert_eq!(done[0]["l7_connections_cut"], 0, "{}", done[0]);
    assert!(h2_request(&idle_h2, "GET", "https://a.test/late", &[], &[])
        .await
        .is_err());
    drop(idle_h1);
}

/// What one client of the concurrency test saw: successes and failures (with the first error).
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: &str, r: Result<u16, String>) {
        match r {
            Ok(200) => self.ok += 1,
            Ok(status) => self.failed.push(format!("{what}: status {status}")),
            Err(e) => self.failed.push(format!("{what}: {e}")),
        }
    }
}

#[actix_rt::test]
async fn clients_keep_succeeding_while_certificates_and_config_reload() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let (addr, ca) = (s.https, std::sync::Arc::new(s.pki.ca));
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));

    // Several HTTP/1.1 keep-alive clients, one client making a new connection per request, and
    // an HTTP/2 client sending five multiplexed streams at a time.
    let mut clients = Vec::new();
    for c in 0..3 {
        let (cfg, stop) = (h1_client(&ca), stop.clone());
        clients.push(actix_rt::spawn(async move {
            let mut t = Tally::default();
            let mut tls = connect(addr, "a.test", &cfg).await.expect("handshake");
            for i in 0..200 {
                if stop.get() && i >= 20 {
                    break;
                }
                let path = format!("/ka/{c}/{i}");
                let r = h1_request(&mut tls, "GET", "a.test", &path, b"").await;
                t.record("keep-alive", r.map(|r| r.status).map_err(|e| e.to_string()));
            }
            t
        }));
    }
    {
        let (cfg, stop) = (h1_client(&ca), stop.clone());
        clients.push(actix_rt::spawn(async move {
            let mut t = Tally::default();
            for i in 0..200 {
                if stop.get() && i >= 10 {
                    break;
                }
                let r = async {
                    let mut tls = connect(addr, "x.b.test", &cfg)
                        .await
                        .map_err(|e| e.to_string())?;
                    let r = h1_request(&mut tls, "POST", "x.b.test", "/new", b"body");
                    r.await.map(|r| r.status).map_err(|e| e.to_string())
                };
                t.record("new connection", r.await);
            }
            t
        }));
    }
    {
        let (cfg, stop) = (h2_client(&ca), stop.clone());
        clients.push(actix_rt::spawn(async move {
            let mut t = Tally::default();
            let h2 = h2_connect(connect(addr, "a.test", &cfg).await.expect("handshake")).await;
            for round in 0..100 {
                if stop.get() && round >= 5 {
                    break;
                }
                let streams = (0..5).map(|i| {
                    let uri = format!("https://a.test/h2/{round}/{i}");
                    let h2 = h2.clone();
                    async move {
                        let body: &[&[u8]] = if i % 2 == 0 { &[] } else { &[b"x", b"yz"] };
                        let method = if i % 2 == 0 { "GET" } else { "POST" };
                        h2_request(&h2, method, &uri, &[], body)
                            .await
                            .map(|r| r.status)
                    }
                });
                for r in futures_util::future::join_all(streams).await {
                    t.record("h2 stream", r);
                }
            }
            t
        }));
    }

    // Meanwhile: certificates renewed on disk, and reloads that change the configuration.
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        write_pair(&s.dir.0, "a", &ca.leaf(&["a.test"]));
        let retry = format!("  retry: {{attempts: {}}}\n", round % 2 + 1);
        write_config(&s.path, &config(&up.addr_str(), "", &retry));
        let r = s.gw.admin_send("POST", "/reload").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    stop.set(true);
    let mut total = 0;
    for c in clients {
        let t = c.await.expect("client task");
        assert!(t.failed.is_empty(), "{:?}", t.failed);
        total += t.ok;
    }
    assert!(total >= 3 * 20 + 10 + 25, "{total} requests");
    let r = s.gw.admin_get("/config").await;
    assert_eq!(r.json()["last_reload"]["result"], "success", "{}", r.body);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn idle_http2_connections_close_but_slow_streams_are_not_cut() {
    let up = Upstream::new("up")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let s = setup(&up.addr_str(), "", "  timeouts: {idle: 1s}\n").await;
    let h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    // Longer than timeouts.idle, but a stream is open all along: not idle.
    let r = h2_request(&h2, "GET", "https://a.test/slow", &[], &[])
        .await
        .expect("a slow stream is served");
    assert_eq!(r.status, 200);
    let active = "gogate_connections_active{listener=\"https\"}";
    assert_eq!(metric(&s.gw, active).await, 1.0);
    // Then nothing: the connection is closed (GOAWAY) after timeouts.idle.
    eventually("the idle HTTP/2 connection is closed", || async {
        metric(&s.gw, active).await == 0.0
    })
    .await;
    assert!(h2_request(&h2, "GET", "https://a.test/late", &[], &[])
        .await
        .is_err());
    s.gw.stop().await;
}

/// An upstream that accepts a WebSocket upgrade and then echoes every byte.
async fn websocket_echo_upstream() -> SocketAddr {
    raw_upstream(|mut sock| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let reply = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        if sock.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
}

#[actix_rt::test]
async fn websocket_upgrades_are_tunnelled_through_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = websocket_echo_upstream().await;
    let s = setup(&up.to_string(), "", "").await;
    let mut tls = connect(s.https, "a.test", &h1_client(&s.pki.ca))
        .await
        .expect("handshake");
    let req = "GET /ws HTTP/1.1\r\nhost: a.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before the 101");
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the 101 arrives");
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Bytes after the handshake flow both ways through TLS, untouched.
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    let mut echoed = got[end..].to_vec();
    tls.write_all(b"\x81\x04ping").await.expect("write frame");
    let read = async {
        while echoed.len() < 6 {
            let n = tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "tunnel closed");
            echoed.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the echo arrives");
    assert_eq!(echoed, b"\x81\x04ping");
    // The client leaves; the tunnel ends with it (the shutdown would wait for it otherwise).
    drop(tls);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn oversized_h2_headers_never_reach_the_upstream() {
    let up = Upstream::new("up").start().await;
    let s = setup(&up.addr_str(), "", "").await;
    let h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    // Over limits.maxHeaderBytes (16 KiB): the gateway's own 431.
    let big = "x".repeat(20 * 1024);
    let r = h2_request(&h2, "GET", "https://a.test/big", &[("x-big", &big)], &[])
        .await
        .expect("answered");
    assert_eq!(r.status, 431);
    assert!(r.json()["error"].is_string(), "{:?}", r.body);
    // Over the HTTP/2 header list ceiling (64 KiB): refused by the HTTP/2 layer.
    let huge = "x".repeat(100 * 1024);
    let r = h2_request(&h2, "GET", "https://a.test/huge", &[("x-huge", &huge)], &[]).await;
    assert!(
        r.as_ref().map_or(true, |r| r.status == 431),
        "{:?}",
        r.map(|r| r.status)
    );
    assert_eq!(up.hits(), 0);
    // The listener still serves.
    let h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("handshake"),
    )
    .await;
    let r = h2_request(&h2, "GET", "https://a.test/ok", &[], &[])
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn connection_cap_body_limit_and_access_log_apply_over_tls() {
    let up = Upstream::new("up").start().await;
    let limits = "  limits: {maxConnections: 2, maxBodyBytes: 1000}\n";
    let s = setup(&up.addr_str(), "", limits).await;
    let cfg = h1_client(&s.pki.ca);
    let mut first = connect(s.https, "a.test", &cfg).await.expect("first");
    let h2 = h2_connect(
        connect(s.https, "a.test", &h2_client(&s.pki.ca))
            .await
            .expect("second"),
    )
    .await;
    // The third connection is closed before its handshake; the two held keep being served.
    assert!(connect(s.https, "a.test", &cfg).await.is_err());
    let rejected =
        "gogate_connections_rejected_total{listener=\"https\",reason=\"max_connections\"}";
    assert_eq!(metric(&s.gw, rejected).await, 1.0);
    let r = h1_request(&mut first, "GET", "a.test", "/held", b"")
        .await
        .expect("held connection");
    assert_eq!(r.status, 200);

    // Bodies over limits.maxBodyBytes: declared (413 before anything is sent) or streamed.
    let r = h2_request(
        &h2,
        "POST",
        "https://a.test/declared",
        &[("content-length", "2000")],
        &[&[b'x'; 1000], &[b'x'; 1000]],
    )
    .await
    .expect("answered");
    assert_eq!(r.status, 413);
    let r = h2_request(
        &h2,
        "POST",
        "https://a.test/streamed",
        &[],
        &[&[b'y'; 600], &[b'y'; 600], &[b'y'; 600]],
    )
    .await
    .expect("answered");
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].is_string());
    assert_eq!(up.hits(), 1, "only /held reached the upstream");

    // One access-log line per request, HTTP/2 ones included.
    let lines = s.gw.logs.with_msg("request completed");
    let find = |path: &str| lines.iter().find(|l| l["path"] == path).cloned();
    let held = find("/held").expect("access line for /held");
    assert_eq!(held["status"], 200);
    let streamed = find("/streamed").expect("access line for the h2 request");
    assert_eq!(streamed["status"], 413);
    assert_eq!(streamed["method"], "POST");

    // Once a connection closes, its slot is free again.
    drop(first);
    eventually("a slot frees up", || async {
        metric(&s.gw, "gogate_connections_active{listener=\"https\"}").await == 1.0
    })
    .await;
    let mut again = connect(s.https, "a.test", &cfg).await.expect("admitted");
    let r = h1_request(&mut again, "GET", "a.test", "/again", b"")
        .await
        .expect("GET");
    assert_eq!(r.status, 200);
    s.gw.stop().await;
}
