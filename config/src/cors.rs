//! `cors:` the gateway's CORS policy, applied to routes with `cors: true` (DESIGN B3, B10), and
//! the origin grammar both validation and the data plane use, so what `validate` accepts is
//! exactly what a request's `Origin` is compared with: `scheme://host[:port]`, scheme and host
//! case-insensitive, a default port (`http` 80, `https` 443) the same as none.

use crate::duration::Dur;
use crate::error::ConfigError;
use crate::validate::is_token;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Longest `maxAge` accepted (browsers cap it lower anyway: Chromium at 2 h, Firefox at 24 h).
pub const MAX_MAX_AGE_SECS: u64 = 7 * 24 * 3600;

/// `cors:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`, `http://localhost:3000`), or `"*"` for any
    /// origin (only without `allowCredentials`).
    #[serde(alias = "allowed_origins")]
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for (case-insensitive); `"*"` = any.
    #[serde(alias = "allowed_methods")]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (case-insensitive); `"*"` = any.
    #[serde(alias = "allowed_headers")]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser lets the page read (`Access-Control-Expose-Headers`).
    #[serde(alias = "exposed_headers")]
    pub exposed_headers: Vec<String>,
    /// Sends `Access-Control-Allow-Credentials: true` (cookies, HTTP auth).
    #[serde(alias = "allow_credentials")]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`); a bare
    /// number is seconds.
    #[serde(alias = "max_age")]
    pub max_age: Dur,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: list(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
            allowed_headers: list(&["Authorization", "Content-Type", "X-Request-ID"]),
            exposed_headers: list(&["X-Request-ID"]),
            allow_credentials: false,
            max_age: Dur::secs(86_400),
        }
    }
}

impl CorsConfig {
    /// Whether `allowedOrigins` lets every origin in (`"*"`).
    pub fn any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }

    /// Every problem of the block, with key paths under `path` (`cors`).
    pub fn check(&self, path: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: String, msg: String| errors.push(ConfigError::new(key, msg));
        if self.allowed_origins.is_empty() {
            err(
                format!("{path}.allowedOrigins"),
                "lists no origin, so every cross-origin request would be refused; list origins such as \"https://app.example.com\", or \"*\"".into(),
            );
        }
        let mut seen = HashSet::new();
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let key = format!("{path}.allowedOrigins[{i}]");
            if o == "*" {
                if self.allow_credentials {
                    err(key, "\"*\" cannot be combined with allowCredentials: true (browsers refuse it, and reflecting any origin with credentials lets every site act as the user); list the origins".into());
                }
                continue;
            }
            match normalize_origin(o) {
                Ok(n) => {
                    if !seen.insert(n) {
                        err(key, format!("origin {o:?} is listed twice"));
                    }
                }
                Err(e) => err(key, e),
            }
        }
        for (key, list) in [
            ("allowedMethods", &self.allowed_methods),
            ("allowedHeaders", &self.allowed_headers),
            ("exposedHeaders", &self.exposed_headers),
        ] {
            for (i, item) in list.iter().enumerate() {
                let wildcard_ok = key != "exposedHeaders";
                if !(is_token(item) && (item != "*" || wildcard_ok)) {
                    let what = if key == "allowedMethods" {
                        "an HTTP method"
                    } else {
                        "a header name"
                    };
                    err(
                        format!("{path}.{key}[{i}]"),
                        format!("{item:?} is not {what}"),
                    );
                }
            }
        }
        if self.max_age.get().as_secs() > MAX_MAX_AGE_SECS {
            err(
                format!("{path}.maxAge"),
                format!(
                    "{} is too long; allowed up to {MAX_MAX_AGE_SECS} seconds",
                    self.max_age
                ),
            );
        }
        errors
    }
}

/// The canonical form of an origin: lower-case `scheme://host[:port]` without a default port.
/// Accepts exactly what a browser sends in `Origin` (and the same with upper-case letters or an
/// explicit default port); anything else (a path, userinfo, a query, `null`, spaces) is an
/// error saying what is expected.
pub fn normalize_origin(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "invalid origin {text:?}; expected scheme://host[:port] with no path, e.g. \"https://app.example.com\" or \"http://localhost:3000\""
        )
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(bad());
    }
    let (host, port) = split_host_port(rest).ok_or_else(bad)?;
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(p) if Some(p) != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// `host[:port]` of an origin: a DNS name or IPv4 address, or `[IPv6]`; a port of 1 to 5 digits
/// (not 0). `None` when it is anything else.
fn split_host_port(rest: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (h, after) = rest.split_at(end + 1);
        let inner = &h[1..h.len() - 1];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return None;
        }
        match after {
            "" => (h, None),
            _ => (h, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (h, p) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !h.split('.').all(label_ok) {
            return None;
        }
        (h, p)
    };
    let port = match port {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|n| *n != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalise_case_and_default_ports() {
        for (text, want) in [
            ("https://App.Example.com", "https://app.example.com"),
            ("HTTPS://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:3000", "http://localhost:3000"),
            (
                "https://app.example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
            ("app://my-app", "app://my-app"),
        ] {
            assert_eq!(normalize_origin(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        for text in [
            "",
            "null",
            "*",
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "https://app.example.com:",
            "https://app.example.com:0",
            "https://app.example.com:70000",
            "https://app.example.com:443x",
            "https://app..example.com",
            "https://app.example.com ",
            " https://app.example.com",
            "https://app.exa mple.com",
            "https://[::1",
            "https://[zz]",
            "1http://x",
            "https://app.example.com,https://b.example.com",
        ] {
            assert!(normalize_origin(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn check_names_each_bad_key() {
        let c = CorsConfig {
            allowed_origins: vec!["*".into(), "https://a.test/x".into()],
            allowed_methods: vec!["GET".into(), "BAD METHOD".into()],
            allowed_headers: vec!["X-Ok".into(), "X:Bad".into()],
            exposed_headers: vec!["*".into()],
            allow_credentials: true,
            max_age: Dur::secs(MAX_MAX_AGE_SECS + 1),
        };
        let paths: Vec<String> = c.check("cors").into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "cors.allowedOrigins[0]",
                "cors.allowedOrigins[1]",
                "cors.allowedMethods[1]",
                "cors.allowedHeaders[1]",
                "cors.exposedHeaders[0]",
                "cors.maxAge",
            ]
        );
        assert!(CorsConfig {
            allowed_origins: vec!["https://a.test".into()],
            ..CorsConfig::default()
        }
        .check("cors")
        .is_empty());
    }
}
