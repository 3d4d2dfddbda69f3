//! The request `/explain` and `gogate explain` describe: method, host, path (with its query),
//! headers and the client address, from the admin query string or the command line, checked
//! the way the L7 listener's parser would check a real request (a bad one is a usage error,
//! never a guess).

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use std::net::IpAddr;

/// Bounds on what one explained request may carry (the admin API's query string is already
/// bounded by the listener's header limit; the command line is not).
const MAX_HEADERS: usize = 100;
const MAX_FIELD: usize = 8192;

/// A request to explain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExplainRequest {
    pub method: String,
    /// `Host` as a client would send it (port allowed); `None` = no `Host` header.
    pub host: Option<String>,
    /// The request target: a path, with its `?query` if any.
    pub path: String,
    /// Extra headers, in order (repeated names allowed, as on the wire).
    pub headers: Vec<(String, String)>,
    /// The peer address the request comes from; `None` = not given (a per-IP rate limit's key
    /// is then unknown).
    pub client: Option<IpAddr>,
}

impl Default for ExplainRequest {
    fn default() -> Self {
        ExplainRequest {
            method: "GET".into(),
            host: None,
            path: "/".into(),
            headers: Vec::new(),
            client: None,
        }
    }
}

impl ExplainRequest {
    /// From `name=value` pairs (an already-decoded query string): `method`, `host`, `path`,
    /// `header` (repeated, `Name:value`), `client`. Unknown names are an error, so a typo
    /// does not silently explain another request.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, String>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut req = ExplainRequest::default();
        for (k, v) in pairs {
            let v = v.as_ref();
            if v.len() > MAX_FIELD {
                return Err(format!("{} is longer than {MAX_FIELD} bytes", k.as_ref()));
            }
            match k.as_ref() {
                "method" => req.method = v.to_string(),
                "host" => req.host = Some(v.to_string()).filter(|h| !h.is_empty()),
                "path" => req.path = v.to_string(),
                "header" => req.headers.push(parse_header(v)?),
                "client" => {
                    req.client = Some(
                        v.parse()
                            .map_err(|_| format!("client: {v:?} is not an IP address"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; use method, host, path, header (Name:value, repeatable), client"
                    ))
                }
            }
        }
        req.check()?;
        Ok(req)
    }

    /// Checks what the listener's HTTP parser would refuse before the gateway sees a request.
    pub fn check(&self) -> Result<(), String> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if self.method.is_empty() || !self.method.bytes().all(token) {
            return Err(format!("method: {:?} is not an HTTP method", self.method));
        }
        if !(self.path.starts_with('/') || self.path == "*")
            || self.path.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            return Err(format!(
                "path: {:?} must start with '/' and hold no spaces or control characters",
                self.path
            ));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(format!("at most {MAX_HEADERS} headers"));
        }
        self.header_map().map(|_| ())
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// The query, if the target has one.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The request's headers as the data plane would see them: `Host` first, then the rest.
    pub fn header_map(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::new();
        if let Some(h) = &self.host {
            let v = HeaderValue::from_str(h).map_err(|_| format!("host: {h:?} is not valid"))?;
            map.append(HOST, v);
        }
        for (k, v) in &self.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("header: {k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("header {k}: the value holds characters a header cannot"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// `Name:value` (spaces around the value trimmed, as an HTTP parser does).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("header: {text:?} must be Name:value"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("header: {text:?} has no name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_build_the_request_and_header_may_repeat() {
        let r = ExplainRequest::from_pairs([
            ("method", "POST"),
            ("host", "api.example.com:8081"),
            ("path", "/api/x?a=1"),
            ("header", "X-Canary: true"),
            ("header", "Cookie:a=1"),
            ("client", "203.0.113.9"),
        ])
        .expect("valid");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path_only(), "/api/x");
        assert_eq!(r.query(), Some("a=1"));
        assert_eq!(
            r.headers,
            vec![
                ("X-Canary".to_string(), "true".to_string()),
                ("Cookie".to_string(), "a=1".to_string())
            ]
        );
        let map = r.header_map().expect("headers");
        assert_eq!(
            map.get("host").map(|v| v.as_bytes()),
            Some(&b"api.example.com:8081"[..])
        );
        assert_eq!(r.client, Some("203.0.113.9".parse().expect("ip")));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_parameter() {
        let err = |pairs: &[(&str, &str)]| {
            ExplainRequest::from_pairs(pairs.iter().copied()).expect_err("refused")
        };
        assert!(err(&[("pth", "/")]).contains("unknown parameter \"pth\""));
        assert!(err(&[("method", "GE T")]).starts_with("method:"));
        assert!(err(&[("path", "api")]).starts_with("path:"));
        assert!(err(&[("path", "/a b")]).starts_with("path:"));
        assert!(err(&[("header", "novalue")]).starts_with("header:"));
        assert!(err(&[("header", "Bad Name:x")]).starts_with("header:"));
        assert!(err(&[("header", "X:a\u{1}b")]).starts_with("header X"));
        assert!(err(&[("client", "host.example")]).starts_with("client:"));
        assert!(err(&[("host", "a\nb")]).starts_with("host:"));
    }
}
