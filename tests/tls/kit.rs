//! The TLS side of the test kit: a CA and leaf certificates made at test time (rcgen), written
//! where a gateway's config points, and clients that trust only that CA: raw HTTP/1.1 over
//! tokio-rustls, and HTTP/2 with the `h2` crate.
#![allow(dead_code)]

use bytes::Bytes;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A test certificate authority.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, PEM, plus the DER a client sees.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gogate test CA");
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses), common name the first of them.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// The CA certificate, PEM (for a config's CA file).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA as root");
        roots
    }
}

/// Writes `stem.crt` and `stem.key` in `dir`, each replaced atomically (rename over).
pub fn write_pair(dir: &Path, stem: &str, leaf: &Leaf) {
    write_atomic(&dir.join(format!("{stem}.crt")), leaf.cert_pem.as_bytes());
    write_atomic(&dir.join(format!("{stem}.key")), leaf.key_pem.as_bytes());
}

pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A client that trusts `ca`, speaks `versions`, and offers `alpn`.
pub fn client(
    ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn h1_client(ca: &Ca) -> Arc<ClientConfig> {
    client(ca, rustls::ALL_VERSIONS, &[b"http/1.1"])
}

/// TLS 1.2 and 1.3, ALPN `h2`.
pub fn h2_client(ca: &Ca) -> Arc<ClientConfig> {
    client(ca, rustls::ALL_VERSIONS, &[b"h2"])
}

/// Connects and handshakes with `name` as SNI (an IP address sends no SNI).
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    cfg: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let connect = TlsConnector::from(Arc::clone(cfg)).connect(server_name, tcp);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// The leaf certificate the server presented.
pub fn peer_leaf(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .expect("the server presented a certificate")
}

/// The protocol ALPN chose.
pub fn alpn(s: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// A response as a client read it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request on a kept-alive TLS connection; reads a `Content-Length` or chunked
/// response (all the gateway sends here). `Err` when the connection failed.
pub async fn h1_request(
    s: &mut TlsStream<TcpStream>,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Reply> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let read = read_h1_response(s);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))?
}

async fn read_h1_response(s: &mut TlsStream<TcpStream>) -> std::io::Result<Reply> {
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-response");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(eof());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, head.clone()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = buf[end..].to_vec();
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(eof());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(eof());
                }
                rest.extend_from_slice(&chunk[..n]);
                continue;
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "chunk size"))?;
            while rest.len() < i + 2 + size + 2 {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(eof());
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest.drain(..i + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        Vec::new()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// An HTTP/2 connection over TLS, its connection task spawned.
pub async fn h2_connect(s: TlsStream<TcpStream>) -> h2::client::SendRequest<Bytes> {
    let (send, conn) = h2::client::handshake(s).await.expect("h2 handshake");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One HTTP/2 request; `body` is sent as one DATA frame per piece. `Err` names what failed.
pub async fn h2_request(
    send: &h2::client::SendRequest<Bytes>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[&[u8]],
) -> Result<Reply, String> {
    let exchange = async {
        let mut send = send.clone().ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).map_err(|e| e.to_string())?;
        let (resp, mut stream) = send
            .send_request(req, body.is_empty())
            .map_err(|e| e.to_string())?;
        for (i, piece) in body.iter().enumerate() {
            let last = i + 1 == body.len();
            stream
                .send_data(Bytes::copy_from_slice(piece), last)
                .map_err(|e| e.to_string())?;
        }
        let resp = resp.await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        let mut recv = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body: out,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "h2 request timed out".to_string())?
}
