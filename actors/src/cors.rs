//! The CORS policy as the data plane applies it (DESIGN B4, B10): `cors:` compiled once per
//! generation into an origin set and case-insensitive method and header sets, with every header
//! value the answers need built up front. Pure logic, no actix: the L7 handler asks
//! [`CorsPolicy::preflight`] for a preflight's answer and [`CorsPolicy::apply`] to put the
//! policy's headers on every response of a `cors: true` route.
//!
//! Origins compare by their canonical form (`gogate_config::cors::normalize_origin`): scheme and
//! host case-insensitive, a default port the same as none, nothing else tolerated. So
//! `https://app.example.com.evil.test`, `http://` for an `https://` entry, another port, or
//! `null` are simply other origins, and get no CORS headers at all.

use actix_http::header::{HeaderMap, HeaderName, HeaderValue};
use gogate_config::cors::normalize_origin;
use gogate_config::CorsConfig;
use std::collections::HashSet;

const ACAO: HeaderName = HeaderName::from_static("access-control-allow-origin");
const ACAC: HeaderName = HeaderName::from_static("access-control-allow-credentials");
const ACAM: HeaderName = HeaderName::from_static("access-control-allow-methods");
const ACAH: HeaderName = HeaderName::from_static("access-control-allow-headers");
const ACEH: HeaderName = HeaderName::from_static("access-control-expose-headers");
const ACMA: HeaderName = HeaderName::from_static("access-control-max-age");
const ACRM: &str = "access-control-request-method";
const ACRH: &str = "access-control-request-headers";
const VARY: HeaderName = HeaderName::from_static("vary");

/// The response headers only the policy may set on a `cors: true` route: an upstream's own are
/// removed first, so a backend that reflects any origin cannot widen the policy.
const POLICY_HEADERS: [HeaderName; 6] = [ACAO, ACAC, ACAM, ACAH, ACEH, ACMA];

/// Most headers a preflight may ask for (browsers send a handful).
const MAX_REQUESTED_HEADERS: usize = 64;

/// A list of allowed names: any (`"*"`), or this set (upper-case methods, lower-case headers).
#[derive(Debug)]
enum Allowed {
    Any,
    Set(HashSet<String>),
}

impl Allowed {
    fn new(items: &[String], fold: fn(&str) -> String) -> Self {
        if items.iter().any(|i| i == "*") {
            Allowed::Any
        } else {
            Allowed::Set(items.iter().map(|i| fold(i)).collect())
        }
    }

    fn contains(&self, folded: &str) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Set(set) => set.contains(folded),
        }
    }
}

/// Why a preflight is refused (the 403's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Origin,
    Method,
    Header,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Origin => "CORS: origin not allowed",
            Refusal::Method => "CORS: method not allowed",
            Refusal::Header => "CORS: request header not allowed",
        }
    }
}

/// `cors:` compiled.
#[derive(Debug)]
pub struct CorsPolicy {
    /// `"*"` in `allowedOrigins`: every origin, answered with `*` (never with credentials).
    any_origin: bool,
    /// Canonical origins.
    origins: HashSet<String>,
    methods: Allowed,
    headers: Allowed,
    /// `Access-Control-Allow-Methods` (`None` = echo the requested method).
    allow_methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers` (`None` = echo the requested headers, or none).
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    credentials: bool,
}

/// Joins names into one header value (`None` for an empty list or one a header cannot hold,
/// which validation rules out).
fn joined(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

impl CorsPolicy {
    /// Compiles a validated block (entries validation refuses cannot occur; they are skipped).
    pub fn new(c: &CorsConfig) -> Self {
        let methods = Allowed::new(&c.allowed_methods, |m| m.to_ascii_uppercase());
        let headers = Allowed::new(&c.allowed_headers, |h| h.to_ascii_lowercase());
        CorsPolicy {
            any_origin: c.any_origin() && !c.allow_credentials,
            origins: c
                .allowed_origins
                .iter()
                .filter_map(|o| normalize_origin(o).ok())
                .collect(),
            allow_methods: match methods {
                Allowed::Any => None,
                Allowed::Set(_) => joined(&c.allowed_methods),
            },
            allow_headers: match headers {
                Allowed::Any => None,
                Allowed::Set(_) => joined(&c.allowed_headers),
            },
            methods,
            headers,
            expose_headers: joined(&c.exposed_headers),
            max_age: HeaderValue::from(c.max_age.get().as_secs()),
            credentials: c.allow_credentials,
        }
    }

    /// Whether a request's `Origin` value is one the policy allows.
    pub fn allows_origin(&self, origin: &HeaderValue) -> bool {
        if self.any_origin {
            return true;
        }
        match origin.to_str() {
            Ok(text) => normalize_origin(text).is_ok_and(|o| self.origins.contains(&o)),
            Err(_) => false,
        }
    }

    /// What `Access-Control-Allow-Origin` says to an allowed origin.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`;
    /// see [`is_preflight`]): the headers of the 204, or why it is refused.
    pub fn preflight(&self, req: &HeaderMap) -> Result<HeaderMap, Refusal> {
        let origin = match req.get("origin") {
            Some(o) if self.allows_origin(o) => o,
            _ => return Err(Refusal::Origin),
        };
        let method = req
            .get(ACRM)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|m| gogate_config::validate::is_token(m))
            .ok_or(Refusal::Method)?;
        if !self.methods.contains(&method.to_ascii_uppercase()) {
            return Err(Refusal::Method);
        }
        let mut requested: Vec<String> = Vec::new();
        for value in req.get_all(ACRH) {
            let text = value.to_str().map_err(|_| Refusal::Header)?;
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let name = name.to_ascii_lowercase();
                if requested.len() >= MAX_REQUESTED_HEADERS
                    || !gogate_config::validate::is_token(&name)
                    || !self.headers.contains(&name)
                {
                    return Err(Refusal::Header);
                }
                requested.push(name);
            }
        }

        let mut h = HeaderMap::new();
        h.insert(ACAO, self.allow_origin_value(origin));
        let methods = match &self.allow_methods {
            Some(v) => Some(v.clone()),
            None => HeaderValue::from_str(method).ok(),
        };
        if let Some(v) = methods {
            h.insert(ACAM, v);
        }
        let headers = match &self.allow_headers {
            Some(v) => Some(v.clone()),
            None if requested.is_empty() => None,
            None => HeaderValue::from_str(&requested.join(", ")).ok(),
        };
        if let Some(v) = headers {
            h.insert(ACAH, v);
        }
        h.insert(ACMA, self.max_age.clone());
        if self.credentials {
            h.insert(ACAC, HeaderValue::from_static("true"));
        }
        h.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(h)
    }

    /// Puts the policy on a response of a `cors: true` route (upstream's or the gateway's own):
    /// removes any CORS headers already there, adds `Vary: Origin` (beside an existing `Vary`),
    /// and, for an allowed `origin`, `Access-Control-Allow-Origin`, `-Expose-Headers` and
    /// `-Allow-Credentials` when enabled.
    pub fn apply(&self, origin: Option<&HeaderValue>, res: &mut HeaderMap) {
        for name in POLICY_HEADERS {
            res.remove(name);
        }
        add_vary_origin(res);
        let Some(origin) = origin.filter(|o| self.allows_origin(o)) else {
            return;
        };
        res.insert(ACAO, self.allow_origin_value(origin));
        if let Some(v) = &self.expose_headers {
            res.insert(ACEH, v.clone());
        }
        if self.credentials {
            res.insert(ACAC, HeaderValue::from_static("true"));
        }
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. A plain `OPTIONS` is an ordinary request.
pub fn is_preflight(method: &str, req: &HeaderMap) -> bool {
    method == "OPTIONS" && req.contains_key("origin") && req.contains_key(ACRM)
}

/// The method a preflight announces (what the real request will be).
pub fn requested_method(req: &HeaderMap) -> Option<&str> {
    req.get(ACRM)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|m| gogate_config::validate::is_token(m))
}

/// Appends `Origin` to `Vary` unless it is there already (or `Vary: *` covers it).
fn add_vary_origin(res: &mut HeaderMap) {
    let covered = res.get_all(VARY).any(|v| {
        v.to_str().is_ok_and(|t| {
            t.split(',')
                .map(str::trim)
                .any(|n| n == "*" || n.eq_ignore_ascii_case("origin"))
        })
    });
    if !covered {
        res.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gogate_config::Dur;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_credentials: credentials,
            max_age: Dur::secs(600),
            ..CorsConfig::default()
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn only_exact_origins_are_allowed() {
        let p = policy(&["https://app.example.com", "http://localhost:3000"], true);
        for ok in [
            "https://app.example.com",
            "https://APP.example.com",
            "https://app.example.com:443",
            "http://localhost:3000",
        ] {
            assert!(p.allows_origin(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "https://app.example.com.evil.test",
            "https://evil-app.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com/",
            "null",
            "",
            "http://localhost:3001",
            "http://localhost",
            "https://user@app.example.com",
        ] {
            assert!(!p.allows_origin(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn preflight_answers_with_the_policy_or_says_why_not() {
        let p = policy(&["https://app.example.com"], true);
        let ok = p
            .preflight(&headers(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "put"),
                (
                    "access-control-request-headers",
                    "content-type, X-Request-ID",
                ),
            ]))
            .expect("allowed");
        assert_eq!(
            get(&ok, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(&ok, "access-control-allow-methods"),
            Some("GET, POST, PUT, DELETE, PATCH, OPTIONS")
        );
        assert_eq!(
            get(&ok, "access-control-allow-headers"),
            Some("Authorization, Content-Type, X-Request-ID")
        );
        assert_eq!(get(&ok, "access-control-max-age"), Some("600"));
        assert_eq!(get(&ok, "access-control-allow-credentials"), Some("true"));
        assert!(get(&ok, "vary").is_some_and(|v| v.starts_with("Origin")));

        let refused = |pairs: &[(&'static str, &'static str)]| p.preflight(&headers(pairs)).err();
        assert_eq!(
            refused(&[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET")
            ]),
            Some(Refusal::Origin)
        );
        assert_eq!(
            refused(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "TRACE")
            ]),
            Some(Refusal::Method)
        );
        assert_eq!(
            refused(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "content-type, x-secret")
            ]),
            Some(Refusal::Header)
        );
    }

    #[test]
    fn the_wildcard_policy_answers_star_and_echoes_wildcard_lists() {
        let p = CorsPolicy::new(&CorsConfig {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["*".into()],
            allowed_headers: vec!["*".into()],
            ..CorsConfig::default()
        });
        let ok = p
            .preflight(&headers(&[
                ("origin", "https://anyone.test"),
                ("access-control-request-method", "PURGE"),
                ("access-control-request-headers", "X-One,x-two"),
            ]))
            .expect("allowed");
        assert_eq!(get(&ok, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&ok, "access-control-allow-methods"), Some("PURGE"));
        assert_eq!(
            get(&ok, "access-control-allow-headers"),
            Some("x-one, x-two")
        );
        assert_eq!(get(&ok, "access-control-allow-credentials"), None);
    }

    #[test]
    fn apply_replaces_upstream_cors_headers_and_appends_vary() {
        let p = policy(&["https://app.example.com"], false);
        let mut res = headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("vary", "Accept-Encoding"),
        ]);
        p.apply(
            Some(&HeaderValue::from_static("https://app.example.com")),
            &mut res,
        );
        assert_eq!(
            get(&res, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(get(&res, "access-control-allow-credentials"), None);
        assert_eq!(
            get(&res, "access-control-expose-headers"),
            Some("X-Request-ID")
        );
        let vary: Vec<&str> = res
            .get_all("vary")
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);

        // A disallowed origin: the upstream's CORS headers are gone and none are added.
        let mut res = headers(&[
            ("access-control-allow-origin", "https://evil.test"),
            ("vary", "origin"),
        ]);
        p.apply(
            Some(&HeaderValue::from_static("https://evil.test")),
            &mut res,
        );
        assert!(
            res.keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{res:?}"
        );
        assert_eq!(res.get_all("vary").count(), 1, "Vary already names Origin");
    }

    #[test]
    fn preflight_shape() {
        let h = headers(&[
            ("origin", "https://a.test"),
            ("access-control-request-method", "PUT"),
        ]);
        assert!(is_preflight("OPTIONS", &h));
        assert!(!is_preflight("GET", &h));
        assert!(!is_preflight(
            "OPTIONS",
            &headers(&[("origin", "https://a.test")])
        ));
        assert_eq!(requested_method(&h), Some("PUT"));
    }
}
