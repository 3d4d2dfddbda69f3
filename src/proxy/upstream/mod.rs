//! gogate's HTTP/1.1 client for the hop to upstreams, with a per-worker connection pool.
//!
//! Why not awc on this path: awc builds a fresh codec per request whose `ServiceConfig` spawns a
//! date-keeping task with its own timer (a task spawn, a timer registration and an eventfd
//! wake-up per request, measured at ~1 syscall per request), and it holds back streamed request
//! bodies until 8 KiB accumulate. Here a request is one write of head and body, streamed bodies
//! are written chunk by chunk as they arrive, and finished keep-alive connections return to a
//! pool that honours `tcpPool` (`maxIdle`, `idleTimeout`, `maxLifetime`).

mod body;
mod codec;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod pool;
#[cfg(test)]
mod tests;

pub use body::UpstreamBody;
pub use codec::Framing;
/// Response-head reading, shared with the upgrade tunnel (which speaks HTTP only until `101`).
pub(crate) use codec::{encode_upgrade_head, read_head, Head};
pub use pool::ConnPool;

use actix_web::error::PayloadError;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use body::{IdleLimit, Release, READ_CHUNK};
use bytes::{Bytes, BytesMut};
use codec::{encode_head, response_kind, send_request, SendError, UploadProgress};
use futures_util::Stream;
use gogate_actors::metrics::IdleCounters;
use gogate_actors::snapshot::PoolSettings;
use pool::PooledConn;
use std::fmt;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// TCP connect failed (the body was not read: safe to try another backend).
    Connect(io::Error),
    /// TCP connect did not finish within the connect timeout (body not read).
    ConnectTimeout,
    /// No response head within the response timeout.
    Timeout,
    /// The upstream took no byte of the request body for `timeouts.idle`.
    UpstreamIdle,
    /// The client sent no byte of its body for `timeouts.idle` while it was being forwarded.
    ClientIdle,
    /// The client's body stream failed (e.g. the gateway's size limit tripped).
    Body(PayloadError),
    /// Malformed upstream response or I/O error after connecting.
    Protocol(String),
    /// The connection closed before any response byte (internal: a stale pooled connection is
    /// retried on a fresh one; otherwise reported as `Protocol`).
    Closed(String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect to upstream failed: {e}"),
            UpstreamError::ConnectTimeout => f.write_str("connect to upstream timed out"),
            UpstreamError::Timeout => f.write_str("upstream response timed out"),
            UpstreamError::UpstreamIdle => {
                f.write_str("the upstream stopped taking the request body")
            }
            UpstreamError::ClientIdle => f.write_str("the client's request body stalled"),
            UpstreamError::Body(e) => write!(f, "request body failed: {e}"),
            UpstreamError::Protocol(m) => write!(f, "upstream exchange failed: {m}"),
            UpstreamError::Closed(m) => write!(f, "upstream closed the connection: {m}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// The upstream's final response head and its de-framed body.
pub struct UpstreamResponse {
    pub status: StatusCode,
    /// Response headers without `transfer-encoding`, `connection`, `keep-alive` and the headers
    /// `connection` lists; `content-length` is kept (one value) when the body is delimited by it.
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

/// Where to send: one backend, the worker's pool, and the timeouts.
pub struct Target<'a> {
    pub addr: &'a str,
    pub pool: &'a Rc<ConnPool>,
    pub settings: &'a PoolSettings,
    /// From the end of connect until the response head is read.
    pub response_timeout: Duration,
    /// Longest silence of the upstream in the middle of a response body (`timeouts.idle`).
    pub idle: Duration,
    /// Counts the exchanges cut by it.
    pub idle_cuts: &'a IdleCounters,
}

/// The request line and headers (the final upstream headers, framing headers excluded).
pub struct Request<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
}

/// The request body.
pub enum Payload<S> {
    /// No body; `declared_zero` sends `Content-Length: 0` (the client sent it).
    Empty { declared_zero: bool },
    /// A body in hand (sent with the head in one write; replayable).
    Full(Bytes),
    /// A body streamed as it arrives from the client (always on a fresh connection, since it
    /// cannot be replayed if a pooled connection turns out to be stale).
    Stream(S, Framing),
}

/// Sends one request and returns the response head with its streaming body.
pub async fn send<S>(
    t: &Target<'_>,
    req: &Request<'_>,
    body: Payload<S>,
) -> Result<UpstreamResponse, UpstreamError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    match body {
        Payload::Stream(stream, framing) => {
            let head = encode_head(req.method, req.path_and_query, req.headers, framing)?;
            let conn = connect(t).await?;
            streamed(t, req, conn, head, framing, stream).await
        }
        Payload::Empty { declared_zero } => {
            let framing = if declared_zero {
                Framing::Length(0)
            } else {
                Framing::None
            };
            let wire = encode_head(req.method, req.path_and_query, req.headers, framing)?;
            in_hand(t, req, wire).await
        }
        Payload::Full(bytes) => {
            let mut wire = encode_head(
                req.method,
                req.path_and_query,
                req.headers,
                Framing::Length(bytes.len() as u64),
            )?;
            wire.extend_from_slice(&bytes);
            in_hand(t, req, wire).await
        }
    }
}

async fn connect(t: &Target<'_>) -> Result<PooledConn, UpstreamError> {
    let stream = match timeout(t.settings.connect_timeout, TcpStream::connect(t.addr)).await {
        Err(_) => return Err(UpstreamError::ConnectTimeout),
        Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
        Ok(Ok(s)) => s,
    };
    // Without NODELAY a small write could wait for an ACK; failing to set it is not fatal.
    let _ = stream.set_nodelay(true);
    Ok(PooledConn {
        stream,
        created: Instant::now(),
        reused: false,
    })
}

/// Longest a pooled connection may have been idle to carry a non-idempotent request. An
/// upstream may close an idle connection just as a request goes out on it; a request lost that
/// way must not be sent again unless it is idempotent, so those others avoid the race instead:
/// they only take a connection that was busy a moment ago (upstream keep-alive timeouts are a
/// few seconds at the least), or open a new one.
pub const NON_IDEMPOTENT_MAX_IDLE: Duration = Duration::from_secs(1);

/// Methods that may be sent again after a failure (DESIGN B11).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Head and body already serialised: try a pooled connection, and when it turns out stale
/// (closed before any response byte) send again on a fresh one, if that is safe: nothing of the
/// request left (its first write failed), or the method is idempotent. Otherwise it is a 502,
/// as with nginx and hyper: the upstream may have acted on it.
async fn in_hand(
    t: &Target<'_>,
    req: &Request<'_>,
    wire: BytesMut,
) -> Result<UpstreamResponse, UpstreamError> {
    let idempotent = is_idempotent(req.method);
    let max_idle = (!idempotent).then_some(NON_IDEMPOTENT_MAX_IDLE);
    let mut pooled = t.pool.checkout(t.addr, t.settings, max_idle);
    loop {
        let mut conn = match pooled.take() {
            Some(c) => c,
            None => connect(t).await?,
        };
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let exchange = async {
            // A failed first write sent nothing: the request provably never left.
            let first = conn
                .stream
                .write(&wire)
                .await
                .map_err(|e| (false, UpstreamError::Closed(e.to_string())))?;
            conn.stream
                .write_all(&wire[first..])
                .await
                .map_err(|e| (true, UpstreamError::Closed(e.to_string())))?;
            read_head(&mut conn.stream, &mut buf)
                .await
                .map_err(|e| (true, e))
        };
        match timeout(t.response_timeout, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err((sent, UpstreamError::Closed(_)))) if conn.reused && (idempotent || !sent) => {
                continue
            }
            Ok(Err((_, UpstreamError::Closed(m)))) => return Err(UpstreamError::Protocol(m)),
            Ok(Err((_, e))) => return Err(e),
            Ok(Ok(head)) => return finish(t, req, conn, buf, head, true),
        }
    }
}

/// A streamed body: written chunk by chunk while the response head is awaited.
async fn streamed<S>(
    t: &Target<'_>,
    req: &Request<'_>,
    mut conn: PooledConn,
    head: BytesMut,
    framing: Framing,
    body: S,
) -> Result<UpstreamResponse, UpstreamError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let (rd, wr) = conn.stream.split();
    let limits = ExchangeLimits {
        idle: t.idle,
        response: t.response_timeout,
    };
    let exchanged = exchange_head(rd, wr, &mut buf, head, framing, body, limits).await;
    if let Err(UpstreamError::ClientIdle | UpstreamError::UpstreamIdle) = exchanged {
        t.idle_cuts.request_body.inc();
    }
    let (head, sent_all) = exchanged?;
    finish(t, req, conn, buf, head, sent_all)
}

/// The time limits of a streamed exchange: while the body goes out, `idle` between two steps of
/// progress (a slow upload that keeps moving is never cut); once it is out, `response` for the
/// response head.
#[derive(Clone, Copy)]
struct ExchangeLimits {
    idle: Duration,
    response: Duration,
}

fn finish(
    t: &Target<'_>,
    req: &Request<'_>,
    conn: PooledConn,
    buf: BytesMut,
    mut head: Head,
    sent_all: bool,
) -> Result<UpstreamResponse, UpstreamError> {
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        // Only the upgrade tunnel asks to switch protocols; this request did not.
        return Err(UpstreamError::Protocol(
            "101 Switching Protocols to a request that asked for no upgrade".into(),
        ));
    }
    let framing = response_kind(req.method, head.status, &mut head.headers)?;
    let kind = framing.kind;
    let reusable = head.keep_alive && sent_all && framing.clean && !kind.until_eof();
    let release = reusable.then(|| Release {
        pool: Rc::clone(t.pool),
        addr: t.addr.to_string(),
        created: conn.created,
        settings: t.settings.clone(),
    });
    Ok(UpstreamResponse {
        status: head.status,
        headers: head.headers,
        body: UpstreamBody::new(
            conn.stream,
            buf,
            kind,
            release,
            IdleLimit {
                idle: t.idle,
                cut: t.idle_cuts.response_body.clone(),
            },
        ),
    })
}

/// Sends the request and reads the final response head concurrently; an early answer stops the
/// upload. Returns the head and whether the whole request went out. The write half stays open
/// afterwards (no half-close: some servers cancel a request when they see EOF from the client).
async fn exchange_head<R, W, S>(
    mut rd: R,
    mut wr: W,
    buf: &mut BytesMut,
    head: BytesMut,
    framing: Framing,
    body: S,
    limits: ExchangeLimits,
) -> Result<(Head, bool), UpstreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let progress = UploadProgress::new();
    let mut send = pin!(send_request(&mut wr, head, framing, body, &progress));
    let mut recv = pin!(read_head(&mut rd, buf));
    let mut deadline = pin!(tokio::time::sleep(limits.idle));
    let mut sending = true;
    let mut write_error: Option<io::Error> = None;
    loop {
        tokio::select! {
            biased;
            head = &mut recv => {
                return match (head, write_error) {
                    (Err(UpstreamError::Protocol(e) | UpstreamError::Closed(e)), Some(w)) => {
                        Err(UpstreamError::Protocol(format!("writing the request: {w}; then {e}")))
                    }
                    (Err(UpstreamError::Closed(e)), None) => Err(UpstreamError::Protocol(e)),
                    (head, _) => head.map(|h| (h, !sending)),
                };
            }
            sent = &mut send, if sending => {
                sending = false;
                // From now on the upstream has `response` to answer.
                deadline.as_mut().reset(tokio::time::Instant::now() + limits.response);
                match sent {
                    Ok(()) => {}
                    // The upstream may have answered and closed: keep reading the head.
                    Err(SendError::Io(e)) => write_error = Some(e),
                    Err(SendError::Body(e)) => return Err(UpstreamError::Body(e)),
                    Err(SendError::Length(m)) => return Err(UpstreamError::Protocol(m)),
                }
            }
            () = &mut deadline => {
                if !sending {
                    return Err(UpstreamError::Timeout);
                }
                let quiet_until = progress.last.get() + limits.idle;
                if Instant::now() >= quiet_until {
                    return Err(if progress.awaiting_client.get() {
                        UpstreamError::ClientIdle
                    } else {
                        UpstreamError::UpstreamIdle
                    });
                }
                deadline.as_mut().reset(quiet_until.into());
            }
        }
    }
}
