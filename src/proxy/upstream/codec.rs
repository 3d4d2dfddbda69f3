//! HTTP/1.1 framing toward upstreams: request heads and bodies out, response heads in, and the
//! framing decisions (RFC 9112) for the response body.

use super::body::{ChunkedDecoder, Kind, READ_CHUNK};
use super::UpstreamError;
use actix_web::error::PayloadError;
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING,
};
use actix_web::http::{Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most response headers accepted in one head.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// How the request body is framed toward the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body and no framing header (GET and friends without a body).
    None,
    /// `Transfer-Encoding: chunked`; every non-empty body chunk becomes one HTTP chunk.
    Chunked,
    /// `Content-Length: N`; the body must yield exactly N bytes.
    Length(u64),
}

fn protocol(msg: impl Into<String>) -> UpstreamError {
    UpstreamError::Protocol(msg.into())
}

/// Builds the request line and headers with the framing header (keep-alive is HTTP/1.1's
/// default, so no `Connection` header is sent).
pub(super) fn encode_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    framing: Framing,
) -> Result<BytesMut, UpstreamError> {
    if path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(protocol("invalid request target"));
    }
    let target = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    let mut out = BytesMut::with_capacity(512);
    for part in [method.as_str(), " ", target, " HTTP/1.1\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || name == CONNECTION
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::None => {}
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(n) => {
            // Formatting into a BytesMut cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// The head of a `GET` that asks to switch protocols (WebSocket): the same header rules as
/// [`encode_head`], no body framing, and `connection: upgrade` (`headers` keeps `upgrade`).
pub(crate) fn encode_upgrade_head(
    path_and_query: &str,
    headers: &HeaderMap,
) -> Result<BytesMut, UpstreamError> {
    let mut out = encode_head(&Method::GET, path_and_query, headers, Framing::None)?;
    // Put the connection header before the blank line that ends the head.
    out.truncate(out.len() - 2);
    out.extend_from_slice(b"connection: upgrade\r\n\r\n");
    Ok(out)
}

pub(super) enum SendError {
    Body(PayloadError),
    Io(io::Error),
    Length(String),
}

/// How an upload is going, for its idle bound: when it last moved (a chunk from the client, or
/// a write to the upstream done), and which side it waits for now.
pub(super) struct UploadProgress {
    pub last: Cell<Instant>,
    pub awaiting_client: Cell<bool>,
}

impl UploadProgress {
    pub fn new() -> Self {
        UploadProgress {
            last: Cell::new(Instant::now()),
            awaiting_client: Cell::new(false),
        }
    }

    fn moved(&self) {
        self.last.set(Instant::now());
    }
}

/// Writes the head (one write), then each body chunk as it arrives, then the terminator,
/// reporting each step to `progress`.
pub(super) async fn send_request<W, S>(
    wr: &mut W,
    head: BytesMut,
    framing: Framing,
    mut body: S,
    progress: &UploadProgress,
) -> Result<(), SendError>
where
    W: AsyncWrite + Unpin,
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    wr.write_all(&head).await.map_err(SendError::Io)?;
    progress.moved();
    drop(head);
    if framing == Framing::None {
        return Ok(());
    }
    let mut sent: u64 = 0;
    let mut frame = BytesMut::new();
    loop {
        progress.awaiting_client.set(true);
        let next = body.next().await;
        progress.awaiting_client.set(false);
        progress.moved();
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(SendError::Body)?;
        if chunk.is_empty() {
            continue;
        }
        sent = sent.saturating_add(chunk.len() as u64);
        match framing {
            Framing::None => {}
            Framing::Chunked => {
                frame.clear();
                frame.reserve(chunk.len() + 20);
                // Formatting into a BytesMut cannot fail.
                let _ = write!(frame, "{:x}\r\n", chunk.len());
                frame.extend_from_slice(&chunk);
                frame.extend_from_slice(b"\r\n");
                wr.write_all(&frame).await.map_err(SendError::Io)?;
                progress.moved();
            }
            Framing::Length(n) if sent > n => {
                return Err(SendError::Length(format!(
                    "request body is longer than its content-length {n}"
                )));
            }
            Framing::Length(_) => {
                wr.write_all(&chunk).await.map_err(SendError::Io)?;
                progress.moved();
            }
        }
    }
    match framing {
        Framing::None => {}
        Framing::Chunked => wr.write_all(b"0\r\n\r\n").await.map_err(SendError::Io)?,
        Framing::Length(n) if sent != n => {
            return Err(SendError::Length(format!(
                "request body ended after {sent} of {n} bytes"
            )));
        }
        Framing::Length(_) => {}
    }
    wr.flush().await.map_err(SendError::Io)
}

/// A parsed final response head.
pub(crate) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// Reads until a final response head is parsed; interim 1xx heads (but 101) are skipped. The
/// bytes after the head stay in `buf`. A connection that closes or resets before the first
/// response byte is reported as `Closed` (a reused connection may simply have been stale).
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Head, UpstreamError> {
    let mut any = false;
    loop {
        if let Some((len, head)) = parse_head(buf)? {
            buf.advance(len);
            any = true;
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(protocol("upstream response head is larger than 64 KiB"));
        }
        buf.reserve(READ_CHUNK);
        let n = match rd.read_buf(buf).await {
            Ok(n) => n,
            Err(e) if !any && buf.is_empty() => return Err(UpstreamError::Closed(e.to_string())),
            Err(e) => return Err(protocol(format!("reading the response head: {e}"))),
        };
        if n == 0 {
            if !any && buf.is_empty() {
                return Err(UpstreamError::Closed(
                    "upstream closed the connection".into(),
                ));
            }
            return Err(protocol(
                "upstream closed the connection before the response head",
            ));
        }
    }
}

/// Parses one response head at the start of `buf`: `None` when it is still incomplete.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, UpstreamError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(protocol(format!("invalid response head: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(protocol("upstream response head is larger than 64 KiB"));
    }
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| protocol("invalid response status"))?;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    let mut close = resp.version != Some(1);
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| protocol("invalid response header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| protocol("invalid response header value"))?;
        if name == CONNECTION
            && value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            close = true;
        }
        headers.append(name, value);
    }
    Ok(Some((
        len,
        Head {
            status,
            headers,
            keep_alive: !close,
        },
    )))
}

/// How the response body is framed, and whether the connection may carry another request once
/// the body ends where that framing says.
pub(super) struct ResponseFraming {
    pub kind: Kind,
    /// False when the response cannot be trusted to end where it says: a bodyless response
    /// (to HEAD, or 204/304) that announced a body with chunked framing, or a 204 with a
    /// non-zero length. Its stray bytes could be read as the next request's response.
    pub clean: bool,
}

/// Decides the response body framing from the head as received (RFC 9112 6.3), then removes
/// the framing and hop-by-hop headers from what is forwarded. `Content-Length` stays when it
/// describes the body (or, for HEAD and 304, the body a GET would get), even if `Connection`
/// lists it: framing toward the client is the gateway's own.
pub(super) fn response_kind(
    method: &Method,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Result<ResponseFraming, UpstreamError> {
    // 1. Framing, before any header is dropped.
    let te = headers.get_all(TRANSFER_ENCODING).last().map(|v| {
        let last = v
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default();
        last.trim_ascii().eq_ignore_ascii_case(b"chunked")
    });
    // Transfer-Encoding overrides Content-Length, which must not be passed on then.
    let length = match te {
        Some(_) => {
            headers.remove(CONTENT_LENGTH);
            None
        }
        None => content_length(headers)?,
    };
    let no_content = status == StatusCode::NO_CONTENT;
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || no_content
        || status == StatusCode::NOT_MODIFIED;
    let clean = !no_body || (te.is_none() && !(no_content && length.is_some_and(|n| n > 0)));

    // 2. Hop-by-hop headers leave the forwarded set only now.
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .filter(|n| *n != CONTENT_LENGTH)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    headers.remove(CONNECTION);
    headers.remove("keep-alive");
    headers.remove(TRANSFER_ENCODING);
    if no_content || status.is_informational() {
        headers.remove(CONTENT_LENGTH);
    }
    let kind = match (te, length) {
        _ if no_body => Kind::Done,
        (Some(true), _) => Kind::Chunked(ChunkedDecoder::default()),
        (Some(false), _) | (None, None) => Kind::UntilEof,
        (None, Some(0)) => Kind::Done,
        (None, Some(n)) => Kind::Length(n),
    };
    Ok(ResponseFraming { kind, clean })
}

/// The response's Content-Length (all values must agree); normalised to a single header.
fn content_length(headers: &mut HeaderMap) -> Result<Option<u64>, UpstreamError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii())
                .ok_or_else(|| protocol("invalid response content-length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(protocol("conflicting response content-length values"));
            }
            found = Some(n);
        }
    }
    if let Some(n) = found {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    Ok(found)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
