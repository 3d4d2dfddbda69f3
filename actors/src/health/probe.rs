//! One active probe against one backend, as a plain async function: `tcp` connects; `http`
//! connects, sends `GET httpPath` and reads only the status line and headers (2xx/3xx =
//! healthy). The whole probe, connect included, is bounded by `timeout`. A hand-written
//! HTTP/1.1 request (with `Connection: close`) rather than the pooled proxy client keeps each
//! probe on a fresh connection, so a probe tests what a new request would meet, and keeps the
//! memory a misbehaving backend can make us hold bounded by [`MAX_RESPONSE_HEAD`].

use gogate_config::CheckType;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest status line plus headers a probe reads before calling the answer invalid.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// What to probe and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Where to connect: the backend's `ip:port` (or a registered `host:port`).
    pub addr: String,
    /// The `Host` header of an HTTP probe: the configured host name the address was resolved
    /// from, else the address.
    pub host: String,
    pub check: CheckType,
    pub http_path: String,
    pub timeout: Duration,
}

/// Runs one probe; `Err` carries the reason shown as `/backends` `last_error`.
pub async fn probe(spec: &ProbeSpec) -> Result<(), String> {
    match tokio::time::timeout(spec.timeout, run(spec)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{} check timed out after {:?}",
            check_name(spec.check),
            spec.timeout
        )),
    }
}

fn check_name(c: CheckType) -> &'static str {
    match c {
        CheckType::Tcp => "tcp",
        CheckType::Http => "http",
    }
}

async fn run(spec: &ProbeSpec) -> Result<(), String> {
    let stream = TcpStream::connect(spec.addr.as_str())
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    match spec.check {
        CheckType::Tcp => Ok(()),
        CheckType::Http => http_get(stream, &spec.host, &spec.http_path).await,
    }
}

async fn http_get(mut stream: TcpStream, host: &str, path: &str) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gogate-health/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending request failed: {e}"))?;
    let code = read_status(&mut stream).await?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("http status {code}"))
    }
}

/// Reads until the response head is complete and returns its status code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading response failed: {e}"))?;
        if n == 0 {
            return Err("connection closed before a complete response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return res
                    .code
                    .ok_or_else(|| "response without a status code".to_string());
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "response head larger than {MAX_RESPONSE_HEAD} bytes"
                ))
            }
            Err(e) => return Err(format!("invalid http response: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection-at-a-time server that answers every connection with `reply` (or holds
    /// it open silently when `reply` is `None`). Returns its address.
    async fn server(reply: Option<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    match reply {
                        Some(r) => {
                            let _ = s.write_all(r.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(10)).await,
                    }
                });
            }
        });
        addr
    }

    fn spec(addr: &str, check: CheckType) -> ProbeSpec {
        ProbeSpec {
            addr: addr.into(),
            host: addr.into(),
            check,
            http_path: "/health".into(),
            timeout: Duration::from_millis(300),
        }
    }

    fn dead_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
        // dropped here: nothing listens any more
    }

    #[tokio::test]
    async fn tcp_probe_succeeds_on_connect() {
        let addr = server(None).await;
        assert_eq!(probe(&spec(&addr, CheckType::Tcp)).await, Ok(()));
    }

    #[tokio::test]
    async fn tcp_probe_fails_when_refused() {
        let err = probe(&spec(&dead_addr(), CheckType::Tcp))
            .await
            .expect_err("refused");
        assert!(err.starts_with("connect failed"), "{err}");
    }

    #[tokio::test]
    async fn http_probe_counts_2xx_and_3xx_as_healthy() {
        for reply in [
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
        ] {
            let addr = server(Some(reply)).await;
            assert_eq!(
                probe(&spec(&addr, CheckType::Http)).await,
                Ok(()),
                "{reply}"
            );
        }
    }

    #[tokio::test]
    async fn http_probe_counts_4xx_and_5xx_as_failed() {
        for (reply, code) in [
            ("HTTP/1.1 404 Not Found\r\n\r\n", "404"),
            ("HTTP/1.1 500 Internal Server Error\r\n\r\n", "500"),
            ("HTTP/1.1 503 Service Unavailable\r\n\r\n", "503"),
        ] {
            let addr = server(Some(reply)).await;
            let err = probe(&spec(&addr, CheckType::Http)).await.expect_err(reply);
            assert_eq!(err, format!("http status {code}"));
        }
    }

    #[tokio::test]
    async fn http_probe_fails_on_silence_within_the_timeout() {
        let addr = server(None).await;
        let started = std::time::Instant::now();
        let err = probe(&spec(&addr, CheckType::Http))
            .await
            .expect_err("silent backend");
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn http_probe_fails_on_garbage_and_early_close() {
        let addr = server(Some("SSH-2.0-OpenSSH\r\n\r\n")).await;
        let err = probe(&spec(&addr, CheckType::Http))
            .await
            .expect_err("garbage");
        assert!(err.starts_with("invalid http response"), "{err}");
        let addr = server(Some("HTTP/1.1 200 OK\r\n")).await;
        let err = probe(&spec(&addr, CheckType::Http)).await.expect_err("cut");
        assert!(err.contains("closed before"), "{err}");
    }

    #[tokio::test]
    async fn http_probe_sends_path_and_host() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let seen = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let mut sp = spec(&addr, CheckType::Http);
        sp.http_path = "/hz?deep=1".into();
        assert_eq!(probe(&sp).await, Ok(()));
        let req = seen.await.expect("server task");
        assert!(req.starts_with("GET /hz?deep=1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
    }
}
