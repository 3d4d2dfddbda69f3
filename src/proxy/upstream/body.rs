//! The upstream response body, de-framed (length-bounded, chunked-decoded, or until EOF). When
//! a keep-alive body ends exactly where its framing says, the connection goes back to the
//! worker's pool for the next request. An upstream that falls silent mid-body for
//! `timeouts.idle` is cut off (the client sees the response end early), so it cannot hold the
//! client connection and the backend's in-flight slot forever.

use super::pool::ConnPool;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use gogate_actors::snapshot::PoolSettings;
use prometheus::IntCounter;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Longest chunk-size line accepted (size plus extensions).
pub(super) const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 64 * 1024;
/// Read buffer growth step.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Where a finished connection goes back to.
pub(super) struct Release {
    pub pool: Rc<ConnPool>,
    pub addr: String,
    pub created: Instant,
    pub settings: PoolSettings,
}

/// How the response body is delimited.
pub(super) enum Kind {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilEof,
}

impl Kind {
    /// A body delimited by the connection's end cannot leave the connection reusable.
    pub(super) fn until_eof(&self) -> bool {
        matches!(self, Kind::UntilEof)
    }
}

/// One step of body decoding.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

/// How long the upstream may stay silent mid-body, and what counts the cuts.
pub(super) struct IdleLimit {
    pub idle: Duration,
    pub cut: IntCounter,
}

/// Response body from the upstream, de-framed (chunked decoded / length-bounded / until close).
/// The connection is closed as soon as the body is complete (or when this is dropped).
pub struct UpstreamBody {
    io: Option<TcpStream>,
    buf: BytesMut,
    kind: Kind,
    eof: bool,
    /// Set when the connection may carry another request once this body ends cleanly.
    release: Option<Release>,
    limit: IdleLimit,
    /// Armed (lazily, once a read is pending) `idle` after the last byte; `armed` is cleared by
    /// each byte received, so a re-arm is a reset of the same timer.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl UpstreamBody {
    pub(super) fn new(
        io: TcpStream,
        buf: BytesMut,
        kind: Kind,
        release: Option<Release>,
        limit: IdleLimit,
    ) -> Self {
        let mut body = UpstreamBody {
            io: Some(io),
            buf,
            kind,
            eof: false,
            release,
            limit,
            timer: None,
            armed: false,
        };
        if matches!(body.kind, Kind::Done) {
            body.complete();
        }
        body
    }

    /// The body ended where its framing said: reuse the connection if allowed and clean.
    fn complete(&mut self) {
        if let (Some(r), Some(io)) = (self.release.take(), self.io.take()) {
            if self.buf.is_empty() && !self.eof {
                r.pool.checkin(&r.addr, io, r.created, &r.settings);
            }
        }
        self.finish();
    }

    /// Ends the body; the connection (if still held) is closed.
    fn finish(&mut self) {
        self.kind = Kind::Done;
        self.io = None;
        self.release = None;
        self.buf = BytesMut::new();
    }

    /// A read is pending: has the upstream been silent for `idle`? (Arms the timer first.)
    fn silent_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit.idle;
        let timer = match (&mut self.timer, self.armed) {
            (Some(t), true) => t,
            (Some(t), false) => {
                t.as_mut().reset(deadline);
                t
            }
            (slot @ None, _) => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        timer.as_mut().poll(cx).is_ready()
    }

    /// Decodes what is buffered; `NeedMore` means a read is required.
    fn step(&mut self) -> io::Result<Decoded> {
        let out = match &mut self.kind {
            Kind::Done => return Ok(Decoded::Done),
            Kind::UntilEof | Kind::Length(_) if self.buf.is_empty() => Decoded::NeedMore,
            Kind::UntilEof => Decoded::Data(self.buf.split().freeze()),
            Kind::Length(rem) => {
                let n = (*rem).min(self.buf.len() as u64);
                *rem -= n;
                // n <= buf.len(), so it fits in usize.
                Decoded::Data(self.buf.split_to(n as usize).freeze())
            }
            Kind::Chunked(dec) => dec.decode(&mut self.buf)?,
        };
        match out {
            Decoded::NeedMore if self.eof => match self.kind {
                Kind::UntilEof => Ok(Decoded::Done),
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed the connection before the end of the body",
                )),
            },
            Decoded::Done => Ok(Decoded::Done),
            other => {
                if matches!(self.kind, Kind::Length(0)) {
                    self.complete();
                }
                Ok(other)
            }
        }
    }
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.step() {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Decoded::NeedMore) => {}
                Ok(Decoded::Done) => {
                    if matches!(this.kind, Kind::Chunked(_)) {
                        this.complete();
                    } else {
                        this.finish();
                    }
                    return Poll::Ready(None);
                }
                Err(e) => {
                    this.finish();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let Some(io) = this.io.as_mut() else {
                this.finish();
                return Poll::Ready(None);
            };
            this.buf.reserve(READ_CHUNK);
            match pin!(io.read_buf(&mut this.buf)).poll(cx) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(_)) => this.armed = false,
                Poll::Ready(Err(e)) => {
                    this.finish();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending if this.silent_too_long(cx) => {
                    this.limit.cut.inc();
                    this.finish();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the upstream sent nothing for timeouts.idle in the middle of the body",
                    ))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Incremental decoder of a chunked body (RFC 9112 7.1); trailers are read and discarded.
#[derive(Debug)]
pub(super) struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
        }
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl ChunkedDecoder {
    /// Consumes framing from the front of `buf` and returns the next piece of data.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Decoded> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(rem) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = rem.min(buf.len() as u64);
                    self.state = if n == rem {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(rem - n)
                    };
                    return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
                }
                ChunkState::DataEnd => match buf.first() {
                    None => return Ok(Decoded::NeedMore),
                    Some(b'\n') => {
                        buf.advance(1);
                        self.state = ChunkState::Size;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(Decoded::NeedMore),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        self.state = ChunkState::Size;
                    }
                    Some(_) => return Err(invalid("missing CRLF after chunk data")),
                },
                ChunkState::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    } else if seen + line.len() > MAX_TRAILERS {
                        return Err(invalid("chunked trailers are too large"));
                    } else {
                        self.state = ChunkState::Trailers(seen + line.len());
                    }
                }
                ChunkState::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// Takes one line (without its CRLF or LF) from the front of `buf`, if complete.
pub(super) fn take_line(buf: &mut BytesMut, limit: usize) -> io::Result<Option<BytesMut>> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > limit => Err(invalid("chunked framing line is too long")),
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > limit => Err(invalid("chunked framing line is too long")),
        None => Ok(None),
    }
}

/// Parses `hex-size [BWS] [; extensions]`.
pub(super) fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 {
        return Err(invalid("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |size, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or_else(|| invalid("invalid chunk size"))?;
        Ok((size << 4) | u64::from(d))
    })
}
