//! The L7 side of `auth: jwt`: run the route's compiled verifier on the request's
//! `Authorization` header, keep the accepted token's claim headers on the exchange for the
//! upstream request, or answer 401 with the RFC 6750 challenge. The reason of a refusal goes to
//! the debug log and `gogate_auth_rejected_total{route, reason}` only; the client learns no more
//! than "missing" or "invalid".

use super::errors::GatewayError;
use super::{Exchange, ProxyWorker};
use actix_web::http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use actix_web::http::ConnectionType;
use actix_web::HttpResponse;
use gogate_actors::auth::Rejection;
use gogate_actors::snapshot::RouteSnapshot;
use slog::debug;

/// Checks the request when the route asks for a JWT. Returns the 401 to send, or `None` with
/// the claim headers recorded on the exchange.
pub(crate) fn authorize(
    w: &ProxyWorker,
    ex: &mut Exchange,
    route: &RouteSnapshot,
) -> Option<HttpResponse> {
    let auth = route.auth.as_ref()?;
    let verdict = match &auth.verifier {
        Some(v) => {
            // The clock jsonwebtoken checks exp/nbf against.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut cache = w.tokens.borrow_mut();
            v.check_cached(&mut cache, ex.req.headers().get_all(AUTHORIZATION), now)
        }
        // The policy's keys were not compiled: nothing can be verified.
        None => Err(Rejection::Algorithm),
    };
    let rejection = match verdict {
        Ok(claims) => {
            ex.claims = claims;
            return None;
        }
        Err(r) => r,
    };
    auth.rejected.inc(rejection);
    debug!(w.log, "request refused by jwt auth";
           "route" => &route.name, "reason" => rejection.reason(),
           "request_id" => &ex.request_id, "client_ip" => %ex.fwd.client_ip);
    let (err, challenge) = if rejection.invalid_token() {
        (
            GatewayError::InvalidToken,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        )
    } else {
        (
            GatewayError::MissingToken,
            HeaderValue::from_static("Bearer"),
        )
    };
    let mut res = ex.fail(w, Some(route), err);
    res.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    // The refused request's body is never read: do not take what follows it for a request.
    let declared = ex.req.headers().get(CONTENT_LENGTH).map(|v| v.as_bytes());
    if ex.req.headers().contains_key("transfer-encoding") || declared.is_some_and(|v| v != b"0") {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    Some(res)
}
