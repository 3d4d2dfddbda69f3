//! Leaks: 10,000 L7 and 10,000 L4 connections opened and closed in batches (each batch held open
//! at once) through the real binary; afterwards its open file descriptors and resident memory
//! return to within a small margin of what they were after a warm-up. CI runs this against the
//! release build too (`GOGATE_BIN`).

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BATCH: usize = 250;
const CONNECTIONS: usize = 10_000;
const WARM_UP: usize = 1_000;

fn bin() -> String {
    std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").to_string())
}

/// The gateway process; killed (by its own PID) when dropped.
struct Gateway {
    child: Child,
    stdout: Arc<Mutex<String>>,
    _config: tempfile_path::TempPath,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Gateway {
    fn start(backend: SocketAddr) -> Gateway {
        let path = std::env::temp_dir().join(format!(
            "gogate-leaks-{}-{}.yaml",
            std::process::id(),
            fastrand::u64(..)
        ));
        let yaml = format!(
            "server:\n  listenAddr: \"127.0.0.1:0\"\n  httpListenAddr: \"127.0.0.1:0\"\n  \
             backends: [{{addr: \"{backend}\"}}]\n  health: {{enabled: false}}\n  \
             admin: {{listenAddr: \"127.0.0.1:0\"}}\n  metrics: {{listenAddr: \"127.0.0.1:0\"}}\n\
             logging: {{level: info, format: json, accessLog: false}}\n"
        );
        std::fs::write(&path, yaml).expect("write config");
        let mut child = Command::new(bin())
            .args(["-config", path.to_str().expect("utf-8 path")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gogate");
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stdout lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Gateway {
            child,
            stdout,
            _config: tempfile_path::TempPath(path),
        }
    }

    /// The L7 and L4 addresses, from the "gogate started" line.
    async fn addrs(&self) -> (SocketAddr, SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let line = {
                let out = self.stdout.lock().expect("stdout lock");
                out.lines()
                    .find(|l| l.contains("gogate started"))
                    .map(str::to_string)
            };
            if let Some(line) = line {
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                let addr = |k: &str| v[k].as_str().expect("address").parse().expect("addr");
                return (addr("http"), addr("tcp"));
            }
            assert!(Instant::now() < deadline, "gogate did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Open file descriptors and resident memory (KiB) of `pid`.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    (fds, rss)
}

/// An HTTP backend that answers every request on a connection (keep-alive), also reachable
/// through L4 (the client then speaks HTTP to it through the tunnel).
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    actix_rt::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            actix_rt::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(res).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// Opens `n` connections in batches of [`BATCH`] held at once: each sends one request (with
/// `Connection: close` on L7), reads the answer, and closes. Returns how many got `200`.
async fn churn(addr: SocketAddr, n: usize, l7: bool) -> usize {
    let mut ok = 0;
    for start in (0..n).step_by(BATCH) {
        let batch = (start..n.min(start + BATCH)).map(|_| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            let req: &[u8] = if l7 {
                b"GET /leak HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            } else {
                b"GET /leak HTTP/1.1\r\nHost: t\r\n\r\n"
            };
            s.write_all(req).await.ok()?;
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            let read = async {
                loop {
                    let n = s.read(&mut buf).await.ok()?;
                    got.extend_from_slice(&buf[..n]);
                    if n == 0 || got.ends_with(b"ok") {
                        return Some(());
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .ok()??;
            got.starts_with(b"HTTP/1.1 200").then_some(())
        });
        ok += futures_util::future::join_all(batch)
            .await
            .into_iter()
            .flatten()
            .count();
    }
    ok
}

/// Waits (bounded) until the gateway's fds come back to at most `limit`.
async fn settle_fds(pid: u32, limit: usize) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (fds, rss) = usage(pid);
        if fds <= limit || Instant::now() > deadline {
            return (fds, rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn ten_thousand_connections_leave_no_fds_or_memory_behind() {
    let backend = backend().await;
    let gw = Gateway::start(backend);
    let (http, tcp) = gw.addrs().await;
    let pid = gw.pid();

    // Warm-up: worker threads, buffers and pools reach their steady size.
    assert_eq!(churn(http, WARM_UP, true).await, WARM_UP);
    assert_eq!(churn(tcp, WARM_UP, false).await, WARM_UP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base_fds, base_rss) = usage(pid);

    assert_eq!(churn(http, CONNECTIONS, true).await, CONNECTIONS, "L7");
    let (l7_fds, l7_rss) = settle_fds(pid, base_fds + 2).await;
    assert_eq!(churn(tcp, CONNECTIONS, false).await, CONNECTIONS, "L4");
    let (fds, rss) = settle_fds(pid, base_fds + 2).await;

    let report = format!(
        "baseline fds {base_fds} rss {base_rss} KiB; after L7 fds {l7_fds} rss {l7_rss} KiB; \
         after L4 fds {fds} rss {rss} KiB"
    );
    eprintln!("{report}");
    // Idle upstream keep-alive connections (at most the pool's few) may differ by a couple.
    assert!(fds <= base_fds + 2, "file descriptors leaked: {report}");
    // The allocator keeps some freed memory; growth must stay small next to 20,000 sessions.
    let margin = base_rss / 10 + 2048;
    assert!(rss <= base_rss + margin, "memory not returned: {report}");
}
