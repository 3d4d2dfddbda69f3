//! The command line (DESIGN B1, B2): the real `gogate` binary run as a child process. Every
//! child is killed (by its own handle, i.e. its PID) if a test fails before it exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test: `GOGATE_BIN` when set (CI points it at the release build, to test
/// the binary as shipped), else the one cargo built for these tests.
fn bin() -> String {
    std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").to_string())
}
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn gogate(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("GOGATE_CONFIG")
        .env_remove("GOGATE_ADMIN_TOKEN")
        .stdin(Stdio::null());
    c
}

/// A child process with its output collected in the background; killed on drop if running.
struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gogate");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Proc {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits for exit; panics (after killing it) if it runs longer than `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "gogate (pid {}) still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.pid(),
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {} failed", self.pid());
    }

    /// Whether it is still running (not exited).
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs to completion (at most 10 s); returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut p = Proc::spawn(gogate(args));
    let status = p.wait(Duration::from_secs(10));
    (status.code(), p.stdout(), p.stderr())
}

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A temp file with a unique name, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &str) -> TempFile {
        let n = FILES.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "gogate-cli-test-{}-{n}-{tag}.yaml",
            std::process::id()
        ));
        std::fs::write(&path, content).expect("write temp config");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config on loopback ports: L7 on `http`, admin on `admin`, metrics on 127.0.0.1:0, L4 off.
fn run_config(http: &str, admin: &str) -> String {
    format!(
        "server:\n  listenAddr: \"\"\n  httpListenAddr: \"{http}\"\n  backends:\n    - addr: \"127.0.0.1:9\"\n  \
         health: {{enabled: false}}\n  admin: {{listenAddr: \"{admin}\"}}\n  metrics: {{listenAddr: \"127.0.0.1:0\"}}\n  \
         shutdown: {{drainTimeout: 5s}}\nlogging: {{level: info}}\n"
    )
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let i = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&body[..i]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|e| e.to_string())?;
        body = &body[i + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// A blocking `GET path` with `Connection: close`, read to EOF.
fn http_get(addr: SocketAddr, path: &str) -> Result<Http, String> {
    http_get_with(addr, path, &[])
}

fn http_get_with(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Result<Http, String> {
    let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gogate-cli-test\r\n{extra}Connection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Http {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until `GET /health` on the admin port answers 200 (the process is serving).
fn wait_healthy(p: &mut Proc, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http_get(admin, "/health") {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            p.running(),
            "gogate exited before serving\nstdout:\n{}\nstderr:\n{}",
            p.stdout(),
            p.stderr()
        );
        assert!(
            Instant::now() < deadline,
            "gogate not healthy after 10 s\nstderr:\n{}",
            p.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn version_prints_the_version() {
    for args in [&["version"][..], &["--version"][..]] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(out.trim(), format!("gogate {VERSION}"), "{args:?}");
    }
}

#[test]
fn validate_accepts_a_good_file() {
    let f = TempFile::new("good", &run_config("127.0.0.1:0", "127.0.0.1:0"));
    let (code, out, err) = run(&["validate", "-config", f.path()]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert_eq!(out.trim(), "configuration OK");
}

#[test]
fn validate_rejects_an_unknown_key_naming_file_line_and_path() {
    let f = TempFile::new(
        "unknown-key",
        "server:\n  backends:\n    - addr: \"127.0.0.1:9001\"\n  health:\n    intervall: 5s\n",
    );
    let (code, out, err) = run(&["validate", "-config", f.path()]);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("configuration OK"), "{out}");
    assert!(
        err.contains(&format!("{}:5", f.path())),
        "stderr should name the file and line 5: {err}"
    );
    assert!(
        err.contains("server.health"),
        "stderr should name the key path: {err}"
    );
    assert!(
        err.contains("intervall"),
        "stderr should name the unknown key: {err}"
    );
}

#[test]
fn validate_reports_every_cors_mistake_with_file_line_and_path() {
    let f = TempFile::new(
        "bad-cors",
        "server:\n  backends:\n    - addr: \"127.0.0.1:9001\"\nroutes:\n  - match: {pathPrefix: /api}\n    upstreams: [{name: default}]\n    cors: true\ncors:\n  allowedOrigins:\n    - \"*\"\n    - \"https://app.example.com/path\"\n  allowCredentials: true\n",
    );
    let (code, out, err) = run(&["validate", "-config", f.path()]);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    for (line, path) in [
        (10, "cors.allowedOrigins[0]"),
        (11, "cors.allowedOrigins[1]"),
    ] {
        assert!(
            err.contains(&format!("{}:{line}", f.path())) && err.contains(path),
            "stderr should name {path} at line {line}: {err}"
        );
    }
    assert!(err.contains("allowCredentials"), "{err}");
}

/// One mistake of each kind, found in one run, each on its own line, sorted: by `validate` and
/// at startup alike.
#[test]
fn validate_and_startup_report_every_mistake_at_once_sorted_by_line() {
    let f = TempFile::new(
        "six-mistakes",
        "server:\n  listenAddr: \":8080\"\n  backends:\n    - addr: \"127.0.0.1:9001\"\n  loadBalancer: \"round_robbin\"\n  health:\n    intervall: 5s\n  timeouts:\n    connect: \"5 seconds\"\nupstreams:\n  api:\n    backends:\n      - addr: \"nope\"\nroutes:\n  - name: api\n    match:\n      pathPrefix: \"api\"\n    upstreams:\n      - name: apii\n",
    );
    let expected: Vec<String> = [
        "5:3: server.loadBalancer: invalid loadBalancer \"round_robbin\"; allowed: round_robin, weighted_round_robin, least_connections",
        "7:5: server.health: unknown field `intervall`, expected one of `enabled`, `interval`, `timeout`, `unhealthyThreshold`, `unhealthy_threshold`, `healthyThreshold`, `healthy_threshold`, `checkType`, `check_type`, `httpPath`, `http_path`",
        "9:5: server.timeouts.connect: unknown unit \" seconds\" in duration \"5 seconds\"; allowed units: ms, s, m, h",
        "13:9: upstreams.api.backends[0].addr: invalid backend address \"nope\"; expected \"host:port\", e.g. \"127.0.0.1:9001\"",
        "17:7: routes[0].match.pathPrefix: \"api\" must start with '/' and contain no '?', '#' or spaces",
        "19:9: routes[0].upstreams[0].name: unknown upstream \"apii\"; defined: default, api",
    ]
    .iter()
    .map(|l| format!("{}:{l}", f.path()))
    .collect();
    let (code, out, err) = run(&["validate", "-config", f.path()]);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");
    assert!(out.is_empty(), "{out}");
    let (code, out, err) = run(&["-config", f.path()]);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    for line in &expected {
        assert!(
            err.contains(line.as_str()),
            "startup should report {line}: {err}"
        );
    }
}

#[test]
fn validate_reads_gogate_config_when_no_flag_is_given() {
    let good = TempFile::new("env-good", &run_config("127.0.0.1:0", "127.0.0.1:0"));
    let mut cmd = gogate(&["validate"]);
    cmd.env("GOGATE_CONFIG", good.path());
    let mut p = Proc::spawn(cmd);
    let status = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", p.stderr());
    assert_eq!(p.stdout().trim(), "configuration OK");

    let bad = TempFile::new("env-bad", "server:\n  bogusKey: 1\n");
    let mut cmd = gogate(&["validate"]);
    cmd.env("GOGATE_CONFIG", bad.path());
    let mut p = Proc::spawn(cmd);
    let status = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", p.stdout());
    assert!(
        p.stderr().contains(bad.path()) && p.stderr().contains("bogusKey"),
        "{}",
        p.stderr()
    );
}

#[test]
fn validate_missing_file_exits_1() {
    let path = std::env::temp_dir().join(format!(
        "gogate-cli-test-{}-does-not-exist.yaml",
        std::process::id()
    ));
    let path = path.to_str().unwrap();
    let (code, _, err) = run(&["validate", "-config", path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(path), "stderr should name the file: {err}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, out, err) = run(&["validate"]);
    assert_eq!(code, Some(2), "validate without a file: {out} {err}");
    for args in [
        &["--bogus"][..],
        &["validate", "--no-such-flag"][..],
        &["-config"][..],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {out} {err}");
        assert!(
            !err.is_empty(),
            "{args:?}: a usage error says what is wrong"
        );
    }
}

#[test]
fn busy_http_port_exits_1_naming_the_key() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let f = TempFile::new(
        "busy",
        &run_config(&format!("127.0.0.1:{port}"), "127.0.0.1:0"),
    );
    let (code, out, err) = run(&["-config", f.path()]);
    assert_eq!(code, Some(1), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("server.httpListenAddr"),
        "stderr should name server.httpListenAddr: {err}"
    );
    drop(busy);
}

#[test]
fn sigterm_exits_0() {
    let admin = free_port();
    let f = TempFile::new(
        "sigterm",
        &run_config("127.0.0.1:0", &format!("127.0.0.1:{admin}")),
    );
    let mut p = Proc::spawn(gogate(&["-config", f.path()]));
    wait_healthy(&mut p, addr(admin));
    p.sigterm();
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM: {status}\nstderr:\n{}",
        p.stderr()
    );
}

#[test]
fn admin_token_from_the_environment_guards_the_admin_api() {
    let admin = free_port();
    let f = TempFile::new(
        "env-token",
        &run_config("127.0.0.1:0", &format!("127.0.0.1:{admin}")),
    );
    let mut cmd = gogate(&["-config", f.path()]);
    cmd.env("GOGATE_ADMIN_TOKEN", "env-t0ken");
    let mut p = Proc::spawn(cmd);
    wait_healthy(&mut p, addr(admin));
    assert_eq!(http_get(addr(admin), "/ready").unwrap().status, 200);
    assert_eq!(http_get(addr(admin), "/stats").unwrap().status, 401);
    assert_eq!(
        http_get_with(addr(admin), "/stats", &[("Authorization", "Bearer nope")])
            .unwrap()
            .status,
        401
    );
    let ok = http_get_with(
        addr(admin),
        "/stats",
        &[("Authorization", "Bearer env-t0ken")],
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.json()["requests"].is_object(), "{}", ok.body);
    p.sigterm();
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
}

#[test]
fn sigterm_with_a_stuck_l4_session_exits_0_after_the_drain_timeout() {
    // A backend that accepts and holds connections open without a word.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    thread::spawn(move || {
        for s in backend.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    let admin = free_port();
    let yaml = format!(
        "server:\n  listenAddr: \"127.0.0.1:0\"\n  httpListenAddr: \"\"\n  backends:\n    - addr: \"{backend_addr}\"\n  \
         health: {{enabled: false}}\n  admin: {{listenAddr: \"127.0.0.1:{admin}\"}}\n  metrics: {{listenAddr: \"127.0.0.1:0\"}}\n  \
         shutdown: {{drainTimeout: 1s}}\n"
    );
    let f = TempFile::new("stuck-session", &yaml);
    let mut p = Proc::spawn(gogate(&["-config", f.path()]));
    wait_healthy(&mut p, addr(admin));
    // The L4 port was 0 in the config: read the bound address from the "gogate started" log line.
    let deadline = Instant::now() + Duration::from_secs(5);
    let tcp: SocketAddr = loop {
        let out = p.stdout();
        if let Some(line) = out.lines().find(|l| l.contains("gogate started")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
            break v["tcp"]
                .as_str()
                .expect("tcp field in the start line")
                .parse()
                .expect("tcp address");
        }
        assert!(Instant::now() < deadline, "no start line in stdout:\n{out}");
        thread::sleep(Duration::from_millis(20));
    };
    let _client = TcpStream::connect_timeout(&tcp, Duration::from_secs(2)).expect("connect to L4");
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the L4 session never reached the backend"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    p.sigterm();
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "exited before the 1s drain deadline"
    );
}

/// An HTTP backend that answers every request `200 ok` after `delay`; counts arrivals.
fn slow_backend(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&arrived);
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(n) if n > 0 => head.extend_from_slice(&b[..n]),
                        _ => return,
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                thread::sleep(delay);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
                );
            });
        }
    });
    (addr, arrived)
}

/// Starts gogate with L7 on a free port in front of `backend`; returns the process, its config
/// file (kept until the test ends), and the L7 and admin addresses.
fn start_l7(
    tag: &str,
    backend: SocketAddr,
    drain: &str,
) -> (Proc, TempFile, SocketAddr, SocketAddr) {
    let (http, admin) = (addr(free_port()), addr(free_port()));
    let yaml = run_config(&http.to_string(), &admin.to_string())
        .replace("127.0.0.1:9\"", &format!("{backend}\""))
        .replace("drainTimeout: 5s", &format!("drainTimeout: {drain}"));
    let f = TempFile::new(tag, &yaml);
    let mut p = Proc::spawn(gogate(&["-config", f.path()]));
    wait_healthy(&mut p, admin);
    (p, f, http, admin)
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_with_a_request_in_flight_answers_it_then_exits_0() {
    let (backend, arrived) = slow_backend(Duration::from_millis(800));
    let (mut p, _f, http, admin) = start_l7("inflight", backend, "5s");
    let client = thread::spawn(move || http_get(http, "/slow"));
    wait_until("the request reached the backend", || {
        arrived.load(Ordering::SeqCst) == 1
    });
    let started = Instant::now();
    p.sigterm();
    wait_until("/ready answers 503 while draining", || {
        http_get(admin, "/ready").is_ok_and(|r| r.status == 503)
    });
    assert_eq!(http_get(admin, "/health").unwrap().status, 200);
    let res = client
        .join()
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!((res.status, res.body.as_str()), (200, "ok"));
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "exit follows the last request, not the 5s deadline: {:?}",
        started.elapsed()
    );
    let out = p.stdout();
    assert!(out.contains("shutdown: draining"), "{out}");
    assert!(out.contains("shutdown complete"), "{out}");
}

#[test]
fn sigint_drains_like_sigterm_and_exits_0() {
    let (backend, arrived) = slow_backend(Duration::from_millis(500));
    let (mut p, _f, http, _admin) = start_l7("sigint", backend, "5s");
    let client = thread::spawn(move || http_get(http, "/slow"));
    wait_until("the request reached the backend", || {
        arrived.load(Ordering::SeqCst) == 1
    });
    p.signal("-INT");
    let res = client
        .join()
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(res.status, 200);
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
}

#[test]
fn second_signal_during_the_drain_exits_1_at_once() {
    let (backend, arrived) = slow_backend(Duration::from_secs(20));
    let (mut p, _f, http, admin) = start_l7("second-signal", backend, "30s");
    let _client = thread::spawn(move || http_get(http, "/stuck"));
    wait_until("the request reached the backend", || {
        arrived.load(Ordering::SeqCst) == 1
    });
    p.sigterm();
    wait_until("the drain started", || {
        http_get(admin, "/ready").is_ok_and(|r| r.status == 503)
    });
    assert!(p.running(), "the first signal drains instead of exiting");
    let started = Instant::now();
    p.sigterm();
    let status = p.wait(Duration::from_secs(3));
    assert_eq!(status.code(), Some(1), "{status}\nstderr:\n{}", p.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(p.stderr().contains("second signal"), "{}", p.stderr());
}

#[test]
fn healthcheck_against_live_and_dead_admin() {
    let admin = free_port();
    let f = TempFile::new(
        "healthcheck",
        &run_config("127.0.0.1:0", &format!("127.0.0.1:{admin}")),
    );
    let mut p = Proc::spawn(gogate(&["-config", f.path()]));
    wait_healthy(&mut p, addr(admin));

    let url = format!("http://127.0.0.1:{admin}/health");
    let (code, out, err) = run(&["healthcheck", "--url", &url]);
    assert_eq!(
        code,
        Some(0),
        "healthcheck against a live gateway: {out} {err}"
    );

    let dead = free_port();
    let (code, out, err) = run(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{dead}/health"),
    ]);
    assert_eq!(
        code,
        Some(1),
        "healthcheck against a dead port: {out} {err}"
    );

    p.sigterm();
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
}

#[test]
fn demo_serves_both_backends_through_l7_and_l4() {
    const PORTS: [u16; 6] = [8080, 8081, 9090, 9091, 9001, 9002];
    let busy: Vec<u16> = PORTS
        .iter()
        .copied()
        .filter(|&p| TcpListener::bind(("0.0.0.0", p)).is_err())
        .collect();
    if !busy.is_empty() {
        println!("note: skipping the demo test: fixed demo port(s) {busy:?} are in use");
        return;
    }
    let mut p = Proc::spawn(gogate(&["demo"]));
    wait_healthy(&mut p, addr(9090));

    // L7: alternates demo-1, demo-2 (round robin from the first backend).
    let mut seen = Vec::new();
    for i in 0..4 {
        let r = http_get(addr(8081), &format!("/hello/{i}?x=1"))
            .unwrap_or_else(|e| panic!("GET :8081: {e}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let name = r
            .header("x-demo-backend")
            .unwrap_or_else(|| panic!("no X-Demo-Backend: {r:?}"))
            .to_string();
        let j = r.json();
        assert_eq!(j["backend"], name.as_str(), "{j}");
        assert_eq!(j["path"], format!("/hello/{i}"), "{j}");
        assert_eq!(j["query"], "x=1", "{j}");
        assert_eq!(j["method"], "GET", "{j}");
        assert!(j["headers"].is_object(), "{j}");
        seen.push(name);
    }
    assert_eq!(seen, ["demo-1", "demo-2", "demo-1", "demo-2"]);

    // L4: plain HTTP through the TCP listener reaches a demo backend.
    let r = http_get(addr(8080), "/via-l4").unwrap_or_else(|e| panic!("GET :8080: {e}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let name = r
        .header("x-demo-backend")
        .expect("X-Demo-Backend through L4")
        .to_string();
    assert!(name == "demo-1" || name == "demo-2", "{name}");
    assert_eq!(r.json()["backend"], name.as_str());
    assert_eq!(r.json()["path"], "/via-l4");

    // Admin lists the two demo backends.
    let r = http_get(addr(9090), "/backends").unwrap_or_else(|e| panic!("GET :9090/backends: {e}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    let mut addrs: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|b| b["addr"].as_str().expect("addr"))
        .collect();
    addrs.sort();
    assert_eq!(addrs, ["127.0.0.1:9001", "127.0.0.1:9002"], "{list}");

    // `gogate healthcheck` with its default URL (http://127.0.0.1:9090/health).
    let (code, out, err) = run(&["healthcheck"]);
    assert_eq!(
        code,
        Some(0),
        "default healthcheck against the demo: {out} {err}"
    );

    // Metrics on the default metrics port.
    let m = http_get(addr(9091), "/metrics").unwrap_or_else(|e| panic!("GET :9091/metrics: {e}"));
    assert_eq!(m.status, 200);
    assert!(m.body.contains("gogate_requests_total"), "{}", m.body);

    p.sigterm();
    let status = p.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}\nstderr:\n{}", p.stderr());
}

/// Reads the bound L4 address from the "gogate started" log line (the config asked for port 0).
fn started_tcp_addr(p: &Proc) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = p.stdout();
        if let Some(line) = out.lines().find(|l| l.contains("gogate started")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
            return v["tcp"]
                .as_str()
                .expect("tcp field in the start line")
                .parse()
                .expect("tcp address");
        }
        assert!(Instant::now() < deadline, "no start line in stdout:\n{out}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP echo backend (one thread per connection).
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `logging.level: debug` works in the binary under test (CI runs this file against the
/// release build too, where slog would compile debug lines out without its
/// `release_max_level_debug` feature): each L4 session logs its debug line; at `info` it does
/// not.
#[test]
fn debug_level_logs_each_tcp_session_and_info_does_not() {
    let echo = echo_backend();
    for level in ["debug", "info"] {
        let admin = free_port();
        let yaml = format!(
            "server:\n  listenAddr: \"127.0.0.1:0\"\n  httpListenAddr: \"\"\n  backends: [{{addr: \"{echo}\"}}]\n  \
             health: {{enabled: false}}\n  admin: {{listenAddr: \"127.0.0.1:{admin}\"}}\n  metrics: {{listenAddr: \"127.0.0.1:0\"}}\n\
             logging: {{level: {level}, format: json}}\n"
        );
        let f = TempFile::new(&format!("log-{level}"), &yaml);
        let mut p = Proc::spawn(gogate(&["-config", f.path()]));
        wait_healthy(&mut p, addr(admin));
        let tcp = started_tcp_addr(&p);
        {
            let mut s = TcpStream::connect_timeout(&tcp, Duration::from_secs(2)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).expect("echo through L4");
            assert_eq!(&buf, b"ping");
        }
        // A later info line (the shutdown) proves the log is flushed past the session's end.
        p.sigterm();
        let status = p.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        let out = p.stdout();
        assert!(out.contains("shutdown complete"), "{out}");
        let session_lines = out
            .lines()
            .filter(|l| l.contains("\"tcp session closed\""))
            .count();
        match level {
            "debug" => assert_eq!(session_lines, 1, "one debug line per session:\n{out}"),
            _ => assert_eq!(session_lines, 0, "no debug line at info:\n{out}"),
        }
    }
}

/// A panic while serving a request costs that request only, in the binary under test (the
/// release profile must unwind, not abort). Needs the test-only `fault-injection` feature,
/// which `cargo test` enables; CI builds its release binary for this file with it too.
#[test]
fn a_panicking_request_answers_500_and_the_process_serves_on() {
    let (backend, arrived) = slow_backend(Duration::ZERO);
    let (mut p, _f, http, _admin) = start_l7("panic", backend, "5s");
    for _ in 0..3 {
        let r = http_get(http, "/__gogate_fault/panic").expect("an answer, not a dead process");
        assert_eq!(r.status, 500, "{r:?}");
        assert_eq!(r.json()["error"], "internal error");
    }
    assert!(p.running(), "the process survived the panics");
    let r = http_get(http, "/after").expect("still serving");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        1,
        "only /after reached the backend"
    );
    p.sigterm();
    assert_eq!(p.wait(Duration::from_secs(10)).code(), Some(0));
}
