//! Test kit: fake upstreams on ephemeral ports, a real gateway started from YAML, raw-socket
//! helpers and `eventually`, so integration tests read like scenarios.
#![allow(dead_code)]

pub mod config_file;
pub mod controlled;
pub mod redis;
pub mod resolver;
pub mod scripted;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use gogate::gateway::{Gateway, GatewayOptions};
use slog::Drain;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request as an upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Builder for a fake HTTP upstream.
#[derive(Clone)]
pub struct Upstream {
    name: String,
    status: u16,
    delay: Duration,
    headers: Vec<(String, String)>,
    /// How long the upstream keeps an idle keep-alive connection (actix's default otherwise).
    keep_alive: Option<Duration>,
}

/// A running fake upstream.
pub struct RunningUpstream {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handle: ServerHandle,
}

struct UpstreamState {
    cfg: Upstream,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn new(name: &str) -> Self {
        Upstream {
            name: name.into(),
            status: 200,
            delay: Duration::ZERO,
            headers: Vec::new(),
            keep_alive: None,
        }
    }
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    /// Closes idle keep-alive connections after `d` (sooner than the gateway's pool expects).
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = Some(d);
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Starts on 127.0.0.1 with an ephemeral port (inside the test's actix system).
    pub async fn start(self) -> RunningUpstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(UpstreamState {
            cfg: self.clone(),
            hits: hits.clone(),
            seen: seen.clone(),
        });
        let keep_alive = self.keep_alive;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(upstream_handler))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1);
        if let Some(d) = keep_alive {
            server = server.keep_alive(d);
        }
        let server = server.bind("127.0.0.1:0").expect("bind upstream");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        RunningUpstream {
            name: self.name,
            addr,
            hits,
            seen,
            handle,
        }
    }
}

async fn upstream_handler(
    req: HttpRequest,
    body: web::Bytes,
    st: web::Data<UpstreamState>,
) -> HttpResponse {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let path = match req.uri().query() {
        Some(q) => format!("{}?{}", req.path(), q),
        None => req.path().to_string(),
    };
    st.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: path.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    if !st.cfg.delay.is_zero() {
        tokio::time::sleep(st.cfg.delay).await;
    }
    let mut res =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(st.cfg.status).unwrap());
    res.insert_header(("x-upstream", st.cfg.name.as_str()));
    for (k, v) in &st.cfg.headers {
        res.append_header((k.as_str(), v.as_str()));
    }
    res.json(serde_json::json!({"backend": st.cfg.name, "path": path, "body_len": body.len()}))
}

impl RunningUpstream {
    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// An address nothing listens on (connections are refused).
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

/// Log lines the gateway wrote (JSON), captured in memory.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    pub fn with_msg(&self, msg: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["msg"] == msg)
            .collect()
    }
}

/// A gateway started from YAML with every listener moved to 127.0.0.1:0 (a listener set to
/// `""` stays disabled).
pub struct TestGateway {
    pub gw: Option<Gateway>,
    pub http: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub logs: LogBuffer,
}

pub async fn try_gateway(yaml: &str) -> Result<TestGateway, String> {
    try_gateway_options(yaml, 1, None).await
}

/// Like [`try_gateway`] with `workers` worker threads per data-plane listener.
pub async fn try_gateway_with_workers(yaml: &str, workers: usize) -> Result<TestGateway, String> {
    try_gateway_options(yaml, workers, None).await
}

/// Like [`try_gateway`], resolving backends given by host name with `resolver` (`None` = the
/// system resolver).
pub async fn try_gateway_with(
    yaml: &str,
    resolver: Option<Arc<dyn gogate_actors::Resolver>>,
) -> Result<TestGateway, String> {
    try_gateway_options(yaml, 1, resolver).await
}

async fn try_gateway_options(
    yaml: &str,
    workers: usize,
    resolver: Option<Arc<dyn gogate_actors::Resolver>>,
) -> Result<TestGateway, String> {
    let mut cfg = gogate_config::load_str(yaml, None).map_err(|e| e.to_string())?;
    let s = &mut cfg.server;
    for addr in [&mut s.listen_addr, &mut s.http_listen_addr] {
        if !addr.is_empty() {
            *addr = "127.0.0.1:0".into();
        }
    }
    s.admin.enabled = true;
    s.admin.listen_addr = "127.0.0.1:0".into();
    s.metrics.enabled = true;
    s.metrics.listen_addr = "127.0.0.1:0".into();
    let logs = LogBuffer::default();
    let drain = Mutex::new(
        slog_json::Json::new(logs.clone())
            .add_default_keys()
            .build(),
    )
    .fuse();
    let log = slog::Logger::root(drain, slog::o!());
    let gw = Gateway::start(GatewayOptions {
        config: cfg,
        file: None,
        log,
        workers: Some(workers),
        env_admin_token: None,
        resolver,
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(TestGateway {
        http: gw.http_addr,
        tcp: gw.tcp_addr,
        admin: gw.admin_addr.expect("admin enabled"),
        metrics: gw.metrics_addr.expect("metrics enabled"),
        gw: Some(gw),
        logs,
    })
}

pub async fn gateway(yaml: &str) -> TestGateway {
    try_gateway(yaml)
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e}"))
}

/// A gateway whose host-name backends are resolved by `resolver`.
pub async fn gateway_with_resolver(
    yaml: &str,
    resolver: Arc<dyn gogate_actors::Resolver>,
) -> TestGateway {
    try_gateway_with(yaml, Some(resolver))
        .await
        .unwrap_or_else(|e| panic!("gateway failed to start: {e}"))
}

/// A YAML config with `backends` as the default upstream (L4 and L7 on).
pub fn backends_yaml(addrs: &[&str], extra_server: &str) -> String {
    let mut y = String::from("server:\n  backends:\n");
    for a in addrs {
        y.push_str(&format!("    - addr: \"{a}\"\n"));
    }
    y.push_str("  health: {enabled: false}\n");
    y.push_str(extra_server);
    y
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.http.expect("http listener enabled"),
            path
        )
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }
    pub async fn get(&self, path: &str) -> Resp {
        fetch(awc::Client::default().get(self.url(path))).await
    }
    pub async fn admin_get(&self, path: &str) -> Resp {
        fetch(awc::Client::default().get(self.admin_url(path))).await
    }
    pub async fn admin_send(&self, method: &str, path: &str) -> Resp {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        fetch(awc::Client::default().request(m, self.admin_url(path))).await
    }
    pub async fn metrics_text(&self) -> String {
        fetch(awc::Client::default().get(self.metrics_url()))
            .await
            .body
    }
    pub async fn stop(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
    }
}

/// Sends a request and reads the whole response.
pub async fn fetch(req: awc::ClientRequest) -> Resp {
    send(req, None).await
}

pub async fn send(req: awc::ClientRequest, body: Option<Vec<u8>>) -> Resp {
    let req = req.timeout(Duration::from_secs(10));
    let mut res = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("request failed: {e}"));
    let bytes = res.body().limit(64 * 1024 * 1024).await.unwrap_or_default();
    Resp {
        status: res.status().as_u16(),
        headers: res
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Writes raw bytes and reads until the peer closes or `timeout` passes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` every 20 ms until it holds, or panics after 5 s naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
