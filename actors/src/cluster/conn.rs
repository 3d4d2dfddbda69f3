//! One pipelined Redis connection, owned by a task on the runtime that started it: callers
//! queue commands through a bounded channel and await their replies; the task writes every
//! queued command in one write and matches replies in order. Callers bound the wait
//! themselves (`cluster.timeout`): a late reply is read and dropped, the connection stays.
//!
//! ```text
//!  connect ─ok─▶ AUTH/SELECT ─ok─▶ serving ──I/O or protocol error──┐
//!     ▲  └─fail──────┴────────────────────────────────────────────────┤
//!     └──── backoff 100 ms doubling to 2 s, commands answered Down ◀──┘
//! ```
//! The queue holds at most [`QUEUE`] requests (full = `Busy`, at once). Requests made while
//! the first connection is being made wait for it (within the caller's bound); after that,
//! while disconnected, they fail with `Down` at once, so nothing waits on a store that is gone.

use super::resp::{self, Value};
use gogate_config::cluster::StoreUrl;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests waiting to be written, per connection.
pub const QUEUE: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a store operation did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Not connected (or reconnecting).
    Down(String),
    /// The connection's queue is full.
    Busy,
    /// No answer within the caller's bound.
    Timeout,
    /// The server answered with an error.
    Server(String),
    /// The answer was not what the command returns.
    Unexpected(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Down(why) => write!(f, "store unreachable: {why}"),
            StoreError::Busy => f.write_str("store queue full"),
            StoreError::Timeout => f.write_str("store timed out"),
            StoreError::Server(e) => write!(f, "store error: {e}"),
            StoreError::Unexpected(e) => write!(f, "unexpected store reply: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A request written and not fully answered: replies expected, replies so far, where they go.
type InFlight = (usize, Vec<Value>, Replies);
type Replies = oneshot::Sender<Result<Vec<Value>, StoreError>>;

/// Encoded commands and where their replies go.
struct Request {
    bytes: Vec<u8>,
    replies: usize,
    done: Replies,
}

/// How to reach the store (shared by every connection of a gateway).
#[derive(Clone)]
pub struct Target {
    pub url: StoreUrl,
    /// `AUTH` password when the URL has none (`GOGATE_REDIS_PASSWORD`).
    pub password: Option<String>,
    /// For `rediss://`: the CA file (absolute) the server's certificate must chain to; `None`
    /// = the system bundle. Read by the connection task (off any actor), once per start.
    pub ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.url.redacted())
    }
}

/// A handle on one connection (cheap to clone; the task ends when every handle is gone).
#[derive(Clone)]
pub struct Conn {
    tx: mpsc::Sender<Request>,
    up: Arc<AtomicBool>,
    /// The first connection attempt ended (either way).
    tried: Arc<AtomicBool>,
    epoch: watch::Receiver<u64>,
}

impl Conn {
    /// Starts the connection's task on the current runtime (it connects in the background).
    pub fn start(target: Target) -> Conn {
        let (tx, rx) = mpsc::channel(QUEUE);
        let up = Arc::new(AtomicBool::new(false));
        let tried = Arc::new(AtomicBool::new(false));
        let (epoch_tx, epoch) = watch::channel(0);
        let state = (Arc::clone(&up), Arc::clone(&tried), epoch_tx);
        tokio::task::spawn_local(run(target, rx, state));
        Conn {
            tx,
            up,
            tried,
            epoch,
        }
    }

    /// Whether the connection is established now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Counts established connections: changes at every (re)connect.
    pub fn epoch(&self) -> watch::Receiver<u64> {
        self.epoch.clone()
    }

    /// Sends one command; its reply (a server error reply is `Err(Server)`).
    pub async fn call<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, StoreError> {
        let mut bytes = Vec::with_capacity(64);
        resp::encode(args, &mut bytes);
        let mut replies = self.send(bytes, 1).await?;
        match replies.pop() {
            Some(Value::Error(e)) => Err(StoreError::Server(e)),
            Some(v) => Ok(v),
            None => Err(StoreError::Unexpected("no reply".into())),
        }
    }

    /// Sends several commands in one write; their replies in order (error replies included).
    pub async fn pipeline<A: AsRef<[u8]>>(
        &self,
        cmds: &[Vec<A>],
    ) -> Result<Vec<Value>, StoreError> {
        let mut bytes = Vec::with_capacity(64 * cmds.len());
        for c in cmds {
            resp::encode(c, &mut bytes);
        }
        self.send(bytes, cmds.len()).await
    }

    async fn send(&self, bytes: Vec<u8>, replies: usize) -> Result<Vec<Value>, StoreError> {
        if !self.is_up() {
            // The first connection is still being made: wait for it (the caller's bound
            // applies), so a fresh gateway does not skip the store. Once it was up, a lost
            // connection fails fast.
            let mut epoch = self.epoch.clone();
            if self.tried.load(Ordering::Relaxed) || epoch.changed().await.is_err() || !self.is_up()
            {
                return Err(StoreError::Down("not connected".into()));
            }
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Request {
                bytes,
                replies,
                done,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Down("closed".into()),
            })?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Down("connection lost".into())))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// The TLS client configuration of a `rediss://` target, read with `tokio::fs` (the blocking
/// pool), so no worker or actor thread waits on the disk.
async fn load_tls(t: &Target) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = match &t.ca_file {
        Some(f) => Some(
            tokio::fs::read(f)
                .await
                .map_err(|e| format!("cluster.caFile {}: {e}", f.display()))?,
        ),
        None => {
            let mut found = None;
            for p in SYSTEM_BUNDLES {
                if let Ok(b) = tokio::fs::read(p).await {
                    found = Some(b);
                    break;
                }
            }
            Some(found.ok_or("no system CA bundle found; set cluster.caFile")?)
        }
    };
    tls_config(pem.as_deref().unwrap_or_default())
}

/// Connects, authenticates and selects the database.
async fn connect(
    t: &Target,
    tls: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<Box<dyn Io>, String> {
    let addr = format!("{}:{}", t.url.host, t.url.port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if t.url.tls && tls.is_none() {
        *tls = Some(load_tls(t).await?);
    }
    let mut io: Box<dyn Io> = match tls.as_ref().filter(|_| t.url.tls) {
        None => Box::new(tcp),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(t.url.host.clone())
                .map_err(|_| format!("{} is not a TLS server name", t.url.host))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(cfg));
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake: {e}"))?;
            Box::new(stream)
        }
    };
    let password = t.url.password.as_ref().or(t.password.as_ref());
    let mut hello: Vec<Vec<String>> = Vec::new();
    if let Some(p) = password {
        match &t.url.username {
            Some(u) => hello.push(vec!["AUTH".into(), u.clone(), p.clone()]),
            None => hello.push(vec!["AUTH".into(), p.clone()]),
        }
    }
    if t.url.db != 0 {
        hello.push(vec!["SELECT".into(), t.url.db.to_string()]);
    }
    hello.push(vec!["PING".into()]);
    let mut out = Vec::new();
    for c in &hello {
        resp::encode(c, &mut out);
    }
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while got < hello.len() {
        let n = tokio::time::timeout_at(deadline, io.read_buf(&mut buf))
            .await
            .map_err(|_| "no answer to AUTH/SELECT/PING".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        while let Some((v, used)) = resp::decode(&buf).map_err(|e| e.to_string())? {
            buf.drain(..used);
            if let Value::Error(e) = v {
                let cmd = hello
                    .get(got)
                    .and_then(|c| c.first())
                    .cloned()
                    .unwrap_or_default();
                return Err(format!("{cmd} refused: {e}"));
            }
            got += 1;
        }
    }
    Ok(io)
}

/// The connection task: connect, serve until an error, back off, again; ends when every
/// handle is dropped.
async fn run(
    t: Target,
    mut rx: mpsc::Receiver<Request>,
    (up, tried, epoch): (Arc<AtomicBool>, Arc<AtomicBool>, watch::Sender<u64>),
) {
    let mut backoff = BACKOFF_MIN;
    let mut tls = None;
    loop {
        let attempt = connect(&t, &mut tls).await;
        let first = !tried.load(Ordering::Relaxed);
        let why = match attempt {
            Ok(io) => {
                backoff = BACKOFF_MIN;
                // `up` before `tried`: a request never sees "tried, not up" for a success.
                up.store(true, Ordering::Relaxed);
                tried.store(true, Ordering::Relaxed);
                epoch.send_modify(|e| *e += 1);
                let why = serve(io, &mut rx).await;
                up.store(false, Ordering::Relaxed);
                match why {
                    None => return, // every handle dropped
                    Some(e) => e,
                }
            }
            Err(e) => {
                tried.store(true, Ordering::Relaxed);
                if first {
                    // Wake the requests waiting for the first connection: it failed.
                    epoch.send_modify(|_| {});
                }
                e
            }
        };
        // Down: answer at once whatever arrives until it is time to try again.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                r = rx.recv() => match r {
                    Some(r) => { let _ = r.done.send(Err(StoreError::Down(why.clone()))); }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Serves requests on an established connection; `None` when every handle is gone, else why
/// the connection is unusable (every request in flight is answered with it).
async fn serve(io: Box<dyn Io>, rx: &mut mpsc::Receiver<Request>) -> Option<String> {
    let (mut rd, mut wr) = tokio::io::split(io);
    // Per request in flight: replies still expected, replies so far, where they go.
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let why = loop {
        tokio::select! {
            r = rx.recv() => {
                let r = r?;
                let mut next = Some(r);
                // Everything queued goes out in one write.
                while let Some(r) = next.take() {
                    wbuf.extend_from_slice(&r.bytes);
                    inflight.push_back((r.replies, Vec::with_capacity(r.replies), r.done));
                    if wbuf.len() < 64 * 1024 {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(e) = wr.write_all(&wbuf).await {
                    break e.to_string();
                }
                wbuf.clear();
            }
            n = rd.read_buf(&mut rbuf) => {
                match n {
                    Ok(0) => break "closed by the server".to_string(),
                    Err(e) => break e.to_string(),
                    Ok(_) => {}
                }
                if let Err(e) = deliver(&mut rbuf, &mut inflight) {
                    break e;
                }
            }
        }
    };
    for (_, _, done) in inflight {
        let _ = done.send(Err(StoreError::Down(why.clone())));
    }
    Some(why)
}

/// Hands every complete reply in `rbuf` to the request it answers.
fn deliver(rbuf: &mut Vec<u8>, inflight: &mut VecDeque<InFlight>) -> Result<(), String> {
    let mut pos = 0;
    while let Some((v, used)) = resp::decode(&rbuf[pos..]).map_err(|e| e.to_string())? {
        pos += used;
        let Some(front) = inflight.front_mut() else {
            return Err("a reply nobody asked for".into());
        };
        front.1.push(v);
        if front.1.len() == front.0 {
            if let Some((_, replies, done)) = inflight.pop_front() {
                // The caller may have given up (timeout): the reply is dropped.
                let _ = done.send(Ok(replies));
            }
        }
    }
    rbuf.drain(..pos);
    Ok(())
}

/// The rustls client configuration for a `rediss://` store trusting the CAs in `pem`.
pub fn tls_config(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // A system bundle may hold certificates rustls cannot use; those are skipped.
    let certs = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok);
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err("the CA file holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Where Linux distributions keep the CA bundle (Debian/Ubuntu/Alpine/distroless, RHEL,
/// others).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What a subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// (Re)subscribed: messages sent while it was not may be lost; resynchronise.
    Subscribed,
    /// A message on the channel.
    Message(Vec<u8>),
    /// The connection was lost (it is being made again).
    Lost(String),
}

/// Subscribes to `channel` on a connection of its own (a subscribed connection takes no other
/// command), reconnecting with backoff; events go to the returned queue, which holds at most
/// [`QUEUE`] (beyond that messages are dropped and a `Subscribed` forces a resync). The task
/// ends when the receiver is dropped.
pub fn subscribe(target: Target, channel: String) -> mpsc::Receiver<SubEvent> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_local(async move {
        let mut backoff = BACKOFF_MIN;
        let mut tls = None;
        loop {
            let why = match connect(&target, &mut tls).await {
                Ok(io) => {
                    backoff = BACKOFF_MIN;
                    match listen(io, &channel, &tx).await {
                        None => return,
                        Some(why) => why,
                    }
                }
                Err(e) => e,
            };
            if tx.send(SubEvent::Lost(why)).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    rx
}

/// Serves one subscribed connection; `None` when the receiver is gone, else why it ended.
async fn listen(mut io: Box<dyn Io>, channel: &str, tx: &mpsc::Sender<SubEvent>) -> Option<String> {
    let mut out = Vec::new();
    resp::encode(&["SUBSCRIBE", channel], &mut out);
    if let Err(e) = io.write_all(&out).await {
        return Some(e.to_string());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut dropped = false;
    loop {
        tokio::select! {
            _ = tx.closed() => return None,
            n = io.read_buf(&mut buf) => match n {
                Ok(0) => return Some("closed by the server".into()),
                Err(e) => return Some(e.to_string()),
                Ok(_) => {}
            },
        }
        let mut pos = 0;
        loop {
            let (v, used) = match resp::decode(&buf[pos..]) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => return Some(e.to_string()),
            };
            pos += used;
            let Value::Array(items) = v else { continue };
            let kind = items.first().and_then(Value::as_str).unwrap_or_default();
            let event = match (kind, items.get(2)) {
                ("subscribe", _) => SubEvent::Subscribed,
                ("message", Some(Value::Bulk(payload))) => SubEvent::Message(payload.clone()),
                _ => continue,
            };
            // A full queue drops the message; the next `Subscribed` (sent once there is room)
            // makes the receiver resynchronise.
            match tx.try_send(event) {
                Ok(()) if dropped => {
                    dropped = tx.try_send(SubEvent::Subscribed).is_err();
                }
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => dropped = true,
                Err(mpsc::error::TrySendError::Closed(_)) => return None,
            }
        }
        buf.drain(..pos);
    }
}
