//! Entry points for the fuzz targets (feature `fuzzing`, never in a shipped build): the upstream
//! response-head parser with its framing decision, and the chunked-body decoder, driven the way
//! the client drives them.

use super::body::{ChunkedDecoder, Decoded, Kind};
use super::codec::{parse_head, response_kind};
use actix_web::http::Method;
use bytes::BytesMut;
use std::io;

/// What a parsed head decided.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedHead {
    /// Bytes the head took.
    pub len: usize,
    pub status: u16,
    pub keep_alive: bool,
    /// `none`, `length:N`, `chunked` or `until_eof`.
    pub framing: String,
    /// The connection could be reused once the body ends (the head is trusted).
    pub clean: bool,
    /// Forwarded header names (after the hop-by-hop ones were removed), sorted.
    pub headers: Vec<String>,
}

/// Parses a response head at the start of `bytes` as the answer to `method`; `Ok(None)` when
/// the head is incomplete.
pub fn response_head(method: &Method, bytes: &[u8]) -> Result<Option<ParsedHead>, String> {
    let Some((len, mut head)) = parse_head(bytes).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let framed =
        response_kind(method, head.status, &mut head.headers).map_err(|e| e.to_string())?;
    let mut headers: Vec<String> = head
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .collect();
    headers.sort();
    let framing = match framed.kind {
        Kind::Done => "none".to_string(),
        Kind::Length(n) => format!("length:{n}"),
        Kind::Chunked(_) => "chunked".to_string(),
        Kind::UntilEof => "until_eof".to_string(),
    };
    Ok(Some(ParsedHead {
        len,
        status: head.status.as_u16(),
        keep_alive: head.keep_alive,
        framing,
        clean: framed.clean,
        headers,
    }))
}

/// Decodes a chunked body delivered in `pieces` (as reads would deliver it): the data, or the
/// decoding error. `Ok` only when the terminating chunk was seen.
pub fn dechunk(pieces: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut dec = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::NeedMore => break,
                Decoded::Done => return Ok(out),
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "no last chunk",
    ))
}
