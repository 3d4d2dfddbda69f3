//! Admin API protection (DESIGN B6), decided once per request by [`check`] before any handler
//! runs (the `guard` middleware wraps every admin route, `/metrics` included when it shares the
//! listener). Only `GET /health`, `GET /ready` and the console's static files (`GET /ui`,
//! `/ui/app.js`, `/ui/app.css`: no data in them; a browser navigation cannot send a token) are
//! open to all. For the rest (`/ui/state`, the data the console shows, included), in order:
//!
//! 1. Browsers may not drive the admin API: a write (any method but GET, HEAD, OPTIONS) whose
//!    `Origin` is not the admin's own (`http://<Host>`), or whose `Sec-Fetch-Site` is anything
//!    but `same-origin` or `none` (`same-site` included: a page served through the gateway on
//!    another port of the same host is same-site), is refused with 403. Tools send neither
//!    header; the admin's own pages send matching ones.
//! 2. With a token (`server.admin.token` or `GOGATE_ADMIN_TOKEN`): `Authorization: Bearer
//!    <token>`, compared in constant time, or 401.
//! 3. Without one: reads are open; writes only from a loopback peer that also names a loopback
//!    host (`localhost`, `127.0.0.0/8`, `[::1]`, with any port), else 403. The `Host` check
//!    stops DNS rebinding: a page whose own name was re-pointed at 127.0.0.1 reaches the admin
//!    from loopback, but under its own name.
//! 4. A request with a body must say `Content-Type: application/json` (415): HTML forms cannot.

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use std::net::IpAddr;

/// Admin request bodies are small JSON documents.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Constant-time equality (the time depends only on the lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an admin request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403, with the reason.
    Forbidden(&'static str),
    /// 413: a declared body over [`MAX_ADMIN_BODY`].
    TooLarge,
    /// 415: a body that is not `application/json`.
    NotJson,
}

impl Denial {
    pub fn status(self) -> StatusCode {
        match self {
            Denial::Unauthorized => StatusCode::UNAUTHORIZED,
            Denial::Forbidden(_) => StatusCode::FORBIDDEN,
            Denial::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denial::Unauthorized => "missing or invalid admin token",
            Denial::Forbidden(why) => why,
            Denial::TooLarge => "admin request body too large (at most 64 KiB)",
            Denial::NotJson => "admin request bodies must be Content-Type: application/json",
        }
    }
}

const CROSS_ORIGIN: &str =
    "cross-origin requests may not change the gateway (Origin is not this admin API's own)";
const CROSS_SITE: &str =
    "requests from other sites may not change the gateway (Sec-Fetch-Site is not same-origin)";
const LOOPBACK_ONLY: &str = "admin write endpoints are only open to loopback clients unless server.admin.token (or GOGATE_ADMIN_TOKEN) is set";
const FOREIGN_HOST: &str = "admin write endpoints without server.admin.token (or GOGATE_ADMIN_TOKEN) need a loopback Host (localhost, 127.0.0.1, [::1])";

/// What [`check`] looks at.
pub struct AdminRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub peer: Option<IpAddr>,
}

/// Decides an admin request (see the module doc): `Ok` lets it through.
pub fn check(req: &AdminRequest<'_>, token: Option<&str>) -> Result<(), Denial> {
    let read = matches!(*req.method, Method::GET | Method::HEAD);
    if read && (req.path == "/health" || req.path == "/ready" || is_console_asset(req.path)) {
        return Ok(());
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let write = !matches!(*req.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if write {
        if let Some(site) = req.headers.get("sec-fetch-site") {
            if !(site == "same-origin" || site == "none") {
                return Err(Denial::Forbidden(CROSS_SITE));
            }
        }
        if let Some(origin) = req.headers.get("origin") {
            let own = match (origin.to_str(), header("host")) {
                (Ok(o), Some(host)) => o
                    .strip_prefix("http://")
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host)),
                _ => false,
            };
            if !own {
                return Err(Denial::Forbidden(CROSS_ORIGIN));
            }
        }
    }
    match token {
        Some(token) => {
            let presented = header("authorization")
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            match presented {
                Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => {}
                _ => return Err(Denial::Unauthorized),
            }
        }
        None if write => {
            if !req.peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
                return Err(Denial::Forbidden(LOOPBACK_ONLY));
            }
            // No Host at all (HTTP/1.0 from a local tool) names nothing a browser could.
            if !header("host").is_none_or(is_loopback_host)
                || req.headers.get_all("host").count() > 1
            {
                return Err(Denial::Forbidden(FOREIGN_HOST));
            }
        }
        None => {}
    }
    body_rules(req.headers)
}

/// The console's page, script and style sheet, by exact path (`/ui/state` is data: not one).
fn is_console_asset(path: &str) -> bool {
    super::ui::ASSET_PATHS.contains(&path)
}

/// 413 for a declared body over the cap, 415 for a body that is not JSON.
fn body_rules(headers: &HeaderMap) -> Result<(), Denial> {
    let length = headers.get("content-length").and_then(|v| v.to_str().ok());
    let declared = length.and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_ADMIN_BODY as u64) {
        return Err(Denial::TooLarge);
    }
    let has_body = declared.is_some_and(|n| n > 0) || headers.contains_key("transfer-encoding");
    if !has_body {
        return Ok(());
    }
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(Denial::NotJson)
    }
}

/// `localhost`, an address in `127.0.0.0/8`, or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, after)) if after.is_empty() || after.starts_with(':') => inner,
            _ => return false,
        }
    } else {
        host.split_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:9090",
            "127.0.0.1",
            "127.1.2.3:9090",
            "[::1]",
            "[::1]:9090",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.test",
            "localhost.evil.test",
            "127.0.0.1.evil.test",
            "10.0.0.1:9090",
            "[::2]",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    fn run(
        method: Method,
        path: &str,
        pairs: &[(&'static str, &'static str)],
        peer: &str,
        token: Option<&str>,
    ) -> Result<(), Denial> {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let req = AdminRequest {
            method: &method,
            path,
            headers: &headers,
            peer: peer.parse().ok(),
        };
        check(&req, token)
    }

    #[test]
    fn console_assets_are_open_its_data_is_not() {
        // The page, its script and style sheet: open to reads, token or not, from anywhere.
        for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
            for method in [Method::GET, Method::HEAD] {
                assert_eq!(
                    run(method.clone(), path, &[], "10.0.0.9", Some("t")),
                    Ok(()),
                    "{method} {path}"
                );
            }
            // Not writes (no such route, but the guard must not wave them through).
            assert_eq!(
                run(Method::POST, path, &[], "10.0.0.9", Some("t")),
                Err(Denial::Unauthorized),
                "POST {path}"
            );
            assert_eq!(
                run(Method::DELETE, path, &[], "10.0.0.9", None),
                Err(Denial::Forbidden(LOOPBACK_ONLY)),
                "DELETE {path}"
            );
        }
        // Everything else stays behind the token: the console's data, near-miss spellings
        // (the guard compares the raw path exactly), and every other admin read.
        for path in [
            "/ui/state",
            "/ui/",
            "/ui/state/",
            "/UI",
            "/ui/app.js/../../stats",
            "/ui/app.jsx",
            "/%75i/state",
            "/ui%2Fstate",
            "/uix",
            "/stats",
            "/backends",
            "/config",
            "/reloads",
            "/explain",
            "/metrics",
            "/v1/services",
            "/",
        ] {
            assert_eq!(
                run(Method::GET, path, &[], "127.0.0.1", Some("t")),
                Err(Denial::Unauthorized),
                "GET {path}"
            );
        }
        let bearer = [("authorization", "Bearer t")];
        assert_eq!(
            run(Method::GET, "/ui/state", &bearer, "10.0.0.9", Some("t")),
            Ok(())
        );
        assert_eq!(
            run(Method::GET, "/ui/state", &[], "10.0.0.9", None),
            Ok(()),
            "without a token reads are open, as for every admin read"
        );
    }

    #[test]
    fn decisions() {
        let local = [("host", "127.0.0.1:9090")];
        // Open endpoints.
        assert_eq!(
            run(Method::GET, "/health", &[], "10.0.0.9", Some("t")),
            Ok(())
        );
        assert_eq!(
            run(Method::GET, "/ready", &[], "10.0.0.9", Some("t")),
            Ok(())
        );
        assert_eq!(
            run(Method::POST, "/health", &[], "10.0.0.9", Some("t")),
            Err(Denial::Unauthorized)
        );
        // No token: reads open, writes loopback-only under a loopback Host.
        assert_eq!(run(Method::GET, "/config", &[], "10.0.0.9", None), Ok(()));
        assert_eq!(
            run(Method::POST, "/reload", &local, "127.0.0.1", None),
            Ok(())
        );
        assert_eq!(run(Method::POST, "/reload", &[], "127.0.0.1", None), Ok(()));
        assert_eq!(
            run(Method::POST, "/reload", &local, "::ffff:127.0.0.1", None),
            Ok(())
        );
        assert_eq!(
            run(Method::POST, "/reload", &local, "10.0.0.9", None),
            Err(Denial::Forbidden(LOOPBACK_ONLY))
        );
        assert_eq!(
            run(
                Method::POST,
                "/reload",
                &[("host", "evil.test:9090")],
                "127.0.0.1",
                None
            ),
            Err(Denial::Forbidden(FOREIGN_HOST))
        );
        // Browsers.
        let cross = [
            ("host", "127.0.0.1:9090"),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(
            run(Method::POST, "/reload", &cross, "127.0.0.1", None),
            Err(Denial::Forbidden(CROSS_ORIGIN))
        );
        assert_eq!(
            run(Method::POST, "/reload", &cross, "127.0.0.1", Some("t")),
            Err(Denial::Forbidden(CROSS_ORIGIN))
        );
        let own = [
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(
            run(Method::POST, "/reload", &own, "127.0.0.1", None),
            Ok(())
        );
        for site in ["cross-site", "same-site", "bogus"] {
            let h = [("host", "127.0.0.1:9090"), ("sec-fetch-site", site)];
            assert_eq!(
                run(Method::DELETE, "/backends/x/drain", &h, "127.0.0.1", None),
                Err(Denial::Forbidden(CROSS_SITE)),
                "{site}"
            );
        }
        let null = [("host", "127.0.0.1:9090"), ("origin", "null")];
        assert_eq!(
            run(Method::POST, "/reload", &null, "127.0.0.1", None),
            Err(Denial::Forbidden(CROSS_ORIGIN))
        );
        // A cross-site read is harmless (the page cannot read the answer): allowed.
        assert_eq!(
            run(Method::GET, "/stats", &cross, "127.0.0.1", None),
            Ok(())
        );
        // Tokens.
        let bearer = [("host", "gw.internal:9090"), ("authorization", "Bearer t")];
        assert_eq!(
            run(Method::POST, "/reload", &bearer, "10.0.0.9", Some("t")),
            Ok(())
        );
        assert_eq!(
            run(Method::GET, "/metrics", &[], "127.0.0.1", Some("t")),
            Err(Denial::Unauthorized)
        );
        // Bodies.
        let form = [
            ("host", "127.0.0.1:9090"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ];
        assert_eq!(
            run(Method::POST, "/v1/services", &form, "127.0.0.1", None),
            Err(Denial::NotJson)
        );
        let json = [
            ("host", "127.0.0.1:9090"),
            ("content-type", "Application/JSON; charset=utf-8"),
            ("content-length", "2"),
        ];
        assert_eq!(
            run(Method::POST, "/v1/services", &json, "127.0.0.1", None),
            Ok(())
        );
        let big = [
            ("host", "127.0.0.1:9090"),
            ("content-type", "application/json"),
            ("content-length", "65537"),
        ];
        assert_eq!(
            run(Method::POST, "/v1/services", &big, "127.0.0.1", None),
            Err(Denial::TooLarge)
        );
    }
}
