//! Admin API protection (DESIGN B6): with a token configured, everything but `/health` and
//! `/ready` needs `Authorization: Bearer <token>` (compared in constant time); without one,
//! write methods are accepted only from loopback clients.

use crate::proxy::errors::json_error;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

/// Constant-time equality (the time depends only on the lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the request may proceed, else the 401/403 answer.
pub fn denial(req: &HttpRequest, token: Option<&str>) -> Option<HttpResponse> {
    if let Some(token) = token {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        return match presented {
            Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => None,
            _ => {
                let mut res = json_error(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid admin token",
                    "",
                );
                res.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static(
                        "Bearer realm=\"gogate-admin\"",
                    ),
                );
                Some(res)
            }
        };
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let loopback = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if write && !loopback {
        return Some(json_error(
            StatusCode::FORBIDDEN,
            "admin write endpoints are only open to loopback clients unless server.admin.token (or GOGATE_ADMIN_TOKEN) is set",
            "",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
