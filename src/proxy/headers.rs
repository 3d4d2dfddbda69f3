//! Header rules of DESIGN B4 for the hop to the upstream: hop-by-hop headers (including every
//! header named in `Connection`) are dropped, `X-Forwarded-*` and `X-Real-IP` are derived from
//! the peer and `trustedProxies`, and `X-Request-ID` is kept only when it is sane. W3C Trace
//! Context (DESIGN B11): a valid `traceparent` is continued with the gateway's own span id,
//! anything else starts a new trace.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use gogate_actors::GatewaySnapshot;
use std::net::IpAddr;

/// Hop-by-hop headers (RFC 9110 7.6.1 plus common non-standard ones).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers the gateway sets itself on the upstream request.
/// `Expect` is answered by the gateway's own server, so it is not forwarded either.
const REPLACED: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "expect",
    "traceparent",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Header names listed in `Connection` (lower-case), which are hop-by-hop for this hop.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Copies end-to-end headers from `src` to `dst`; `keep_upgrade` keeps `Upgrade`/`Connection:
/// upgrade` for WebSocket handshakes.
pub fn copy_end_to_end(
    src: &HeaderMap,
    dst: &mut HeaderMap,
    keep_upgrade: bool,
    skip_replaced: bool,
) {
    let listed = connection_listed(src);
    for (name, value) in src.iter() {
        let n = name.as_str();
        if is_hop_by_hop(name) && !(keep_upgrade && n == "upgrade") {
            continue;
        }
        if skip_replaced && REPLACED.contains(&n) {
            continue;
        }
        if listed.iter().any(|l| l == n) && !(keep_upgrade && n == "upgrade") {
            continue;
        }
        dst.append(name.clone(), value.clone());
    }
    if keep_upgrade {
        dst.insert(
            HeaderName::from_static("connection"),
            HeaderValue::from_static("upgrade"),
        );
    }
}

/// Drops hop-by-hop headers of an upstream response in place.
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key("connection") {
        for h in connection_listed(headers) {
            if let Ok(name) = HeaderName::try_from(h.as_str()) {
                headers.remove(&name);
            }
        }
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// The client address and the `X-Forwarded-For` value to send upstream.
pub struct Forwarded {
    pub client_ip: IpAddr,
    pub xff: String,
    /// True when the peer is a trusted proxy (its X-Forwarded-Proto/Host are kept).
    pub peer_trusted: bool,
}

/// Derives the client address (DESIGN B10): the peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not itself trusted.
pub fn forwarded(snap: &GatewaySnapshot, peer: IpAddr, headers: &HeaderMap) -> Forwarded {
    let peer_trusted = !snap.trusted_proxies.is_empty() && snap.is_trusted(peer);
    if !peer_trusted {
        return Forwarded {
            client_ip: peer,
            xff: peer.to_string(),
            peer_trusted,
        };
    }
    let incoming: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let client_ip = incoming
        .iter()
        .rev()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| !snap.is_trusted(*ip))
        .unwrap_or(peer);
    let mut xff = incoming.join(", ");
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&peer.to_string());
    Forwarded {
        client_ip,
        xff,
        peer_trusted,
    }
}

/// The client's `X-Request-ID` when sane (1..=128 visible ASCII characters), else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            // Visible ASCII is valid UTF-8.
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    format!("{:032x}", fastrand::u128(..))
}

/// The W3C Trace Context of one exchange (DESIGN B11).
pub struct Trace {
    /// `traceparent` for the upstream: `00-<trace id>-<the gateway's span id>-<flags>`.
    pub traceparent: HeaderValue,
    /// The client's `traceparent` was valid and is continued (its `tracestate` goes upstream
    /// unchanged); otherwise the gateway started the trace and `tracestate` is dropped.
    pub continued: bool,
}

/// Length of a version-00 `traceparent`: `vv-<32 hex>-<16 hex>-ff`.
const TRACEPARENT_LEN: usize = 55;

/// Flags of a trace the gateway starts: `01` (sampled), so the services behind record the
/// request; the gateway does not sample by itself.
const STARTED_FLAGS: &[u8; 2] = b"01";

impl Trace {
    /// The 32 lowercase hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        trace_id_of(&self.traceparent)
    }
}

/// The trace id of a `traceparent` the gateway made (always valid ASCII of the right length).
pub fn trace_id_of(traceparent: &HeaderValue) -> &str {
    traceparent
        .to_str()
        .ok()
        .and_then(|s| s.get(3..35))
        .unwrap_or_default()
}

fn is_lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace id and flags of a valid version-00 `traceparent` (exactly one header, strict
/// lowercase hex, ids not all zero), else `None`.
fn parse_traceparent(headers: &HeaderMap) -> Option<([u8; 32], [u8; 2])> {
    let mut all = headers.get_all("traceparent");
    let v = all.next()?.as_bytes();
    if all.next().is_some() || v.len() != TRACEPARENT_LEN {
        return None;
    }
    if &v[0..2] != b"00" || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    if !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    let mut t = [0u8; 32];
    t.copy_from_slice(trace);
    Some((t, [flags[0], flags[1]]))
}

fn write_hex(out: &mut [u8], mut n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// The trace context for the upstream: the client's trace continued with a new span id of the
/// gateway, or a new trace (random ids, flags `01`) when `traceparent` is missing or invalid.
pub fn trace(headers: &HeaderMap) -> Trace {
    let mut buf = [b'-'; TRACEPARENT_LEN];
    buf[0..2].copy_from_slice(b"00");
    let continued = match parse_traceparent(headers) {
        Some((trace, flags)) => {
            buf[3..35].copy_from_slice(&trace);
            buf[53..55].copy_from_slice(&flags);
            true
        }
        None => {
            write_hex(&mut buf[3..35], fastrand::u128(1..));
            buf[53..55].copy_from_slice(STARTED_FLAGS);
            false
        }
    };
    write_hex(&mut buf[36..52], u128::from(fastrand::u64(1..)));
    let traceparent = HeaderValue::from_bytes(&buf).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
    });
    Trace {
        traceparent,
        continued,
    }
}

/// Size of the request head as the limit counts it: request line plus header lines.
pub fn head_size(method: &str, uri_len: usize, headers: &HeaderMap) -> usize {
    let line = method.len() + uri_len + 11;
    line + headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

/// Why a request's `Host` is ambiguous, if it is (DESIGN B4: answered 400, never forwarded).
/// actix's parser already refuses a second `Host` line on HTTP/1.1; the count is checked here
/// too so every listener (HTTP/2 included) gets the same rule. A value must be one authority:
/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address, so a list
/// (`a.test, b.test`), userinfo (`user@a.test`), a path or spaces are refused instead of being
/// read one way by the gateway and another by the upstream. An empty value is allowed (RFC 9112
/// 3.2, a target without authority).
pub fn host_problem(headers: &HeaderMap) -> Option<&'static str> {
    let mut values = headers.get_all("host");
    let value = values.next()?;
    if values.next().is_some() {
        return Some("more than one Host header");
    }
    let Ok(text) = value.to_str() else {
        return Some("invalid Host header");
    };
    if text.contains(',') {
        return Some("invalid Host header: a list of hosts");
    }
    if text.contains('@') {
        return Some("invalid Host header: userinfo is not allowed");
    }
    if text.is_empty() || is_authority(text) {
        None
    } else {
        Some("invalid Host header")
    }
}

/// `host[:port]`: a reg-name of letters, digits, `-`, `.`, `_`, `~`, or `[IPv6]`; a port of at
/// most 5 digits.
fn is_authority(text: &str) -> bool {
    let port = if let Some(rest) = text.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return false;
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        }
    } else {
        let (name, port) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return false;
        }
        port
    };
    port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Host of the request without the port, from `Host` (or the absolute URI).
pub fn request_host<'a>(headers: &'a HeaderMap, uri_host: Option<&'a str>) -> Option<&'a str> {
    let raw = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .or(uri_host)?;
    let host = if raw.starts_with('[') {
        raw.find(']').map(|i| &raw[..=i]).unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_hosts_are_named() {
        for ok in [
            "a.test",
            "a.test:8080",
            "A.Test",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "my_host",
            "",
        ] {
            assert_eq!(host_problem(&map(&[("host", ok)])), None, "{ok:?}");
        }
        for bad in [
            "a.test, b.test",
            "a.test,b.test",
            "user@a.test",
            "user:pw@a.test:80",
            "a.test/path",
            "a test",
            "a.test:80:80",
            "a.test:123456",
            "a.test:8o",
            "[::1",
            "[::1]x",
            "[zz]",
            ":80",
        ] {
            assert!(host_problem(&map(&[("host", bad)])).is_some(), "{bad:?}");
        }
        assert_eq!(
            host_problem(&map(&[("host", "a.test"), ("host", "a.test")])),
            Some("more than one Host header")
        );
        assert_eq!(host_problem(&map(&[])), None, "HTTP/1.0 may omit Host");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn valid_traceparent_is_continued_with_a_new_span() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        let t = trace(&map(&[("traceparent", tp)]));
        assert!(t.continued);
        let v = t.traceparent.to_str().unwrap();
        assert_eq!(&v[..36], &tp[..36]);
        assert_ne!(&v[36..52], &tp[36..52]);
        assert_eq!(&v[52..], "-03");
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for bad in [
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("01-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("00-{}-00f067aa0ba902b7-01", &id[1..]),
            format!("00-{id}-00f067aa0ba902b-01"),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00F067AA0BA902B7-01"),
            format!("00-{id}-00f067aa0ba902b7-0A"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("00_{id}-00f067aa0ba902b7-01"),
            format!("00-{id}-00f067aa0ba902g7-01"),
        ] {
            let t = trace(&map(&[("traceparent", &bad)]));
            assert!(!t.continued, "{bad}");
            assert_ne!(t.trace_id(), id, "{bad}");
        }
        let two = map(&[
            ("traceparent", &format!("00-{id}-00f067aa0ba902b7-01")),
            ("traceparent", &format!("00-{id}-00f067aa0ba902b8-01")),
        ]);
        assert!(!trace(&two).continued);
    }

    #[test]
    fn started_traces_are_valid_and_distinct() {
        let a = trace(&HeaderMap::new());
        let b = trace(&HeaderMap::new());
        assert!(!a.continued);
        assert_ne!(a.trace_id(), b.trace_id());
        // What the gateway sends is itself a valid traceparent with the chosen flags.
        let again = trace(&map(&[("traceparent", a.traceparent.to_str().unwrap())]));
        assert!(again.continued);
        assert_eq!(again.trace_id(), a.trace_id());
        assert!(a.traceparent.to_str().unwrap().ends_with("-01"));
    }

    #[test]
    fn connection_listed_headers_are_dropped() {
        let src = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("accept", "*/*"),
            ("host", "a"),
        ]);
        let mut dst = HeaderMap::new();
        copy_end_to_end(&src, &mut dst, false, true);
        assert!(
            dst.get("x-secret").is_none() && dst.get("te").is_none() && dst.get("host").is_none()
        );
        assert_eq!(dst.get("accept").unwrap(), "*/*");
    }

    #[test]
    fn request_id_is_kept_only_when_sane() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        assert_eq!(request_id(&map(&[("x-request-id", "has space")])).len(), 32);
        assert_eq!(
            request_id(&map(&[("x-request-id", &"a".repeat(129))])).len(),
            32
        );
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn host_without_port() {
        assert_eq!(
            request_host(&map(&[("host", "a.example.com:8080")]), None),
            Some("a.example.com")
        );
        assert_eq!(
            request_host(&map(&[("host", "[::1]:80")]), None),
            Some("[::1]")
        );
        assert_eq!(request_host(&HeaderMap::new(), Some("x.y")), Some("x.y"));
    }
}
