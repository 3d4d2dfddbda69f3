//! CORS on the L7 path (DESIGN B4, B10), for routes with `cors: true`; the policy itself is
//! compiled in the snapshot (`gogate_actors::cors`). A preflight is routed as the request it
//! announces (its `Access-Control-Request-Method`), so a route limited to `methods: [PUT]`
//! still owns the preflight of a PUT; when that route is a CORS route the gateway answers (204,
//! or 403 when the origin, method or a header is outside the policy) and nothing reaches an
//! upstream. Preflights come before rate limiting: they cost no upstream work, and browsers
//! send one per cached `maxAge`.
//!
//! Every other response of a CORS route (the upstream's, and the gateway's own errors such as
//! 429 or 503, which a browser would otherwise hide from the page) carries the policy's headers
//! for an allowed origin, and `Vary: Origin` for all.

use super::errors::GatewayError;
use super::{Exchange, ProxyWorker};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use gogate_actors::cors::{is_preflight, requested_method, CorsPolicy};
use gogate_actors::snapshot::RouteSnapshot;
use std::sync::Arc;

/// A request's standing on a CORS route: the route's policy and the request's `Origin`.
pub(crate) struct CorsGrant {
    policy: Arc<CorsPolicy>,
    origin: Option<HeaderValue>,
}

impl CorsGrant {
    /// `Some` when the route applies a CORS policy.
    pub(crate) fn for_route(route: &RouteSnapshot, headers: &HeaderMap) -> Option<Self> {
        route.cors.as_ref().map(|policy| CorsGrant {
            policy: Arc::clone(policy),
            origin: headers.get("origin").cloned(),
        })
    }

    /// Puts the policy's headers on a response (see `CorsPolicy::apply`).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        self.policy.apply(self.origin.as_ref(), headers);
    }
}

/// Answers a preflight whose announced request goes to a CORS route; `None` for anything else
/// (which is then served as an ordinary request).
pub(crate) fn preflight(w: &ProxyWorker, ex: &Exchange) -> Option<HttpResponse> {
    let headers = ex.req.headers();
    if !is_preflight(ex.req.method().as_str(), headers) {
        return None;
    }
    let snap = Arc::clone(&ex.snap);
    let method = requested_method(headers).unwrap_or("OPTIONS");
    let route = super::find_route(&snap, ex, method)?;
    let policy = route.cors.as_ref()?;
    Some(match policy.preflight(headers) {
        Ok(allow) => {
            let mut res = HttpResponse::build(StatusCode::NO_CONTENT).finish();
            let h = res.headers_mut();
            for (name, value) in allow {
                h.append(name, value);
            }
            if let Ok(id) = HeaderValue::from_str(&ex.request_id) {
                h.insert(HeaderName::from_static("x-request-id"), id);
            }
            ex.answer(w, route, res)
        }
        Err(why) => ex.fail(w, Some(route), GatewayError::Forbidden(why.message())),
    })
}
