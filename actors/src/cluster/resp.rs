//! RESP2, the Redis wire protocol, as pure functions: commands are encoded as arrays of bulk
//! strings, replies decoded incrementally from whatever bytes have arrived. A server that
//! sends something malformed or oversized gets the connection closed, never a panic or an
//! unbounded allocation: bulk strings are capped at [`MAX_BULK`], arrays at [`MAX_ARRAY`]
//! elements and [`MAX_DEPTH`] levels.

use std::fmt;

/// Largest bulk string accepted from the server.
pub const MAX_BULK: usize = 8 << 20;
/// Most elements in one array reply (a full registry resync reads one key per service).
pub const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of arrays (gogate's replies nest two levels at most).
pub const MAX_DEPTH: usize = 8;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    Int(i64),
    /// `$-1` is `Nil`.
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Nil,
}

impl Value {
    /// The reply as an integer (`:n`, or a bulk/simple string holding one).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Simple(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The reply as text (bulk or simple string).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            Value::Simple(s) => Some(s),
            _ => None,
        }
    }
}

/// Why bytes from the server are not RESP (the connection is then unusable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis protocol error: {}", self.0)
    }
}

/// Appends `args` as one command (`*N\r\n$len\r\narg\r\n...`).
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(itoa(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn itoa(n: usize) -> String {
    n.to_string()
}

/// Decodes one reply from the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// value and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    decode_at(buf, 0, 0)
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("arrays nested too deep"));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    let text = || std::str::from_utf8(line).map_err(|_| ProtocolError("reply line is not UTF-8"));
    match kind {
        b'+' => Ok(Some((Value::Simple(text()?.to_string()), next))),
        b'-' => Ok(Some((Value::Error(text()?.to_string()), next))),
        b':' => Ok(Some((Value::Int(int(line)?), next))),
        b'$' => {
            let len = int(line)?;
            if len == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            let len = usize::try_from(len).map_err(|_| ProtocolError("negative bulk length"))?;
            if len > MAX_BULK {
                return Err(ProtocolError("bulk string too large"));
            }
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF"));
            }
            Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let n = int(line)?;
            if n == -1 {
                return Ok(Some((Value::Nil, next)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError("negative array length"))?;
            if n > MAX_ARRAY {
                return Err(ProtocolError("array too large"));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            let mut pos = next;
            for _ in 0..n {
                match decode_at(buf, pos, depth + 1)? {
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), pos)))
        }
        _ => Err(ProtocolError("unknown reply type")),
    }
}

/// The line starting at `at` (without CRLF) and where the next one starts. Lines longer than
/// 64 KiB are refused (only bulk payloads may be long, and they are not lines).
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[at.min(buf.len())..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], at + i + 2))),
        None if rest.len() > 64 * 1024 => Err(ProtocolError("reply line too long")),
        None => Ok(None),
    }
}

fn int(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&["SET", "k", "v a"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv a\r\n");
    }

    #[test]
    fn every_reply_kind_decodes_and_reports_its_length() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-ERR no\r\n", Value::Error("ERR no".into())),
            (b":-42\r\n", Value::Int(-42)),
            (b"$3\r\na\r\n\r\n", Value::Bulk(b"a\r\n".to_vec())),
            (b"$-1\r\n", Value::Nil),
            (b"*-1\r\n", Value::Nil),
            (
                b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n",
                Value::Array(vec![
                    Value::Int(1),
                    Value::Array(vec![Value::Bulk(b"x".to_vec())]),
                ]),
            ),
        ];
        for (bytes, want) in cases {
            let mut with_more = bytes.to_vec();
            with_more.extend_from_slice(b"+next\r\n");
            assert_eq!(
                decode(&with_more),
                Ok(Some((want, bytes.len()))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_partial_reply_waits_for_more_bytes() {
        let full = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..full.len() {
            assert_eq!(decode(&full[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(decode(full), Ok(Some((_, n))) if n == full.len()));
    }

    #[test]
    fn malformed_or_oversized_replies_are_errors() {
        for bad in [
            &b"?x\r\n"[..],
            b":abc\r\n",
            b"$3\r\nabcd\r\n",
            b"$-5\r\n",
            b"*-2\r\n",
            b"$99999999999\r\n",
            b"*99999999999\r\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(decode(deep.as_bytes()).is_err());
        let long = vec![b'+'; 70 * 1024];
        assert!(decode(&long).is_err());
    }
}
