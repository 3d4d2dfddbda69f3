//! Header rules of DESIGN B4 for the hop to the upstream: hop-by-hop headers (including every
//! header named in `Connection`) are dropped, `X-Forwarded-*` and `X-Real-IP` are derived from
//! the peer and `trustedProxies`, and `X-Request-ID` is kept only when it is sane.

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
