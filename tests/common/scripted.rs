//! A scripted raw HTTP/1.1 upstream (for responses no well-behaved server library would send)
//! and a strict raw client, to see exactly the bytes a client gets through the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream does for one request path.
#[derive(Clone)]
pub enum Script {
    /// Writes these bytes, keeps the connection.
    Reply(Vec<u8>),
    /// Writes the first bytes, waits, writes the rest (late stray bytes), keeps the connection.
    ReplyLate(Vec<u8>, Duration, Vec<u8>),
    /// Writes these bytes, then closes.
    ReplyClose(Vec<u8>),
    /// Writes the head, then stays silent forever (holds the connection).
    HeadThenStall(Vec<u8>),
    /// Reads the request and never answers (holds the connection).
    Silent,
    /// Reads the request, then closes without a byte.
    Close,
}

/// A running scripted upstream.
pub struct Scripted {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests read (request line, in arrival order).
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Connections that ended (the peer closed or reset them).
    pub closed: Arc<AtomicUsize>,
}

impl Scripted {
    /// `scripts`: request path → behaviour; a path listed several times behaves as listed for
    /// its successive requests, then like its last entry; unknown paths get a 200 "ok".
    pub async fn start(scripts: Vec<(&str, Script)>) -> Scripted {
        let mut by_path: HashMap<String, Vec<Script>> = HashMap::new();
        for (p, s) in scripts {
            by_path.entry(p.to_string()).or_default().push(s);
        }
        let scripts = Arc::new(Mutex::new(by_path));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let (c, r, d) = (connections.clone(), requests.clone(), closed.clone());
        actix_rt::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (scripts, r, d) = (scripts.clone(), r.clone(), d.clone());
                actix_rt::spawn(async move {
                    serve(sock, &scripts, &r).await;
                    d.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted {
            addr,
            connections,
            requests,
            closed,
        }
    }

    pub fn addr_str(&self) -> String {
        self.addr.to_string()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Request lines seen for `path`.
    pub fn seen(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some(path))
            .count()
    }
}

async fn serve(
    mut s: TcpStream,
    scripts: &Mutex<HashMap<String, Vec<Script>>>,
    seen: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: head, then a Content-Length body if any.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let line = head.lines().next().unwrap_or_default().to_string();
        let path = line.split(' ').nth(1).unwrap_or("/").to_string();
        seen.lock().unwrap().push(line);
        let script = {
            let mut scripts = scripts.lock().unwrap();
            match scripts.get_mut(&path) {
                Some(list) if list.len() > 1 => list.remove(0),
                Some(list) => list[0].clone(),
                None => Script::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()),
            }
        };
        match script {
            Script::Reply(bytes) => {
                if s.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Script::ReplyLate(first, wait, rest) => {
                if s.write_all(&first).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                if s.write_all(&rest).await.is_err() {
                    return;
                }
            }
            Script::ReplyClose(bytes) => {
                let _ = s.write_all(&bytes).await;
                return;
            }
            Script::HeadThenStall(bytes) => {
                let _ = s.write_all(&bytes).await;
                hold(s).await;
                return;
            }
            Script::Silent => {
                hold(s).await;
                return;
            }
            Script::Close => return,
        }
    }
}

/// Keeps the connection until the peer closes it (bounded: 60 s).
async fn hold(mut s: TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

/// One response as a raw client reads it.
#[derive(Debug)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive client connection that reads responses strictly by their framing.
pub struct RawClient {
    s: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            s: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    /// Sends `method path` and reads its response (no body expected for HEAD, 1xx, 204, 304).
    pub async fn request(&mut self, method: &str, path: &str) -> Result<RawResponse, String> {
        self.request_with_body(method, path, b"").await
    }

    /// Sends `method path` with `body` (Content-Length framed when not empty).
    pub async fn request_with_body(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<RawResponse, String> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut wire = req.into_bytes();
        wire.extend_from_slice(body);
        self.s.write_all(&wire).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(5), self.read_response(method == "HEAD"))
            .await
            .map_err(|_| format!("no complete response to {method} {path} within 5 s"))?
    }

    /// Writes raw bytes (several pipelined requests, say).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Reads the next response (`head_request`: it answers a HEAD, so it has no body).
    pub async fn read(&mut self, head_request: bool) -> Result<RawResponse, String> {
        tokio::time::timeout(Duration::from_secs(5), self.read_response(head_request))
            .await
            .map_err(|_| "no complete response within 5 s".to_string())?
    }

    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        let n = self.s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self, head_request: bool) -> Result<RawResponse, String> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let version = status_line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        let bodyless = head_request || status < 200 || status == 204 || status == 304;
        if !bodyless {
            if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                loop {
                    let line_end = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        self.fill().await?;
                    };
                    let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                    let size = usize::from_str_radix(size_text.trim(), 16)
                        .map_err(|_| format!("bad chunk size {size_text:?}"))?;
                    self.buf.drain(..line_end + 2);
                    while self.buf.len() < size + 2 {
                        self.fill().await?;
                    }
                    body.extend_from_slice(&self.buf[..size]);
                    self.buf.drain(..size + 2);
                    if size == 0 {
                        break;
                    }
                }
            } else if let Some(len) = get("content-length") {
                let len: usize = len.parse().map_err(|_| "bad content-length")?;
                while self.buf.len() < len {
                    self.fill().await?;
                }
                body = self.buf.drain(..len).collect();
            } else {
                return Err("a response without framing on a keep-alive connection".into());
            }
        }
        Ok(RawResponse {
            version,
            status,
            headers,
            body,
        })
    }

    /// Bytes that arrived beyond the responses read so far (after a short wait).
    pub async fn stray_bytes(&mut self) -> Vec<u8> {
        let mut chunk = [0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), self.s.read(&mut chunk)).await
        {
            self.buf.extend_from_slice(&chunk[..n]);
        }
        std::mem::take(&mut self.buf)
    }
}
