//! Responses the gateway makes itself (DESIGN B4): JSON `{"error", "request_id"}` with the
//! status that says what went wrong, and the request id header so clients can report it.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;

/// Why the gateway answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    BodyTooLarge,
    HeadersTooLarge,
    NoEligibleBackend,
    /// Every backend that could serve is behind an open (or probe-saturated) breaker.
    CircuitOpen,
    UpstreamConnect,
    UpstreamProtocol,
    UpstreamTimeout,
    BadRequest(&'static str),
    /// Refused by policy (a CORS preflight outside the policy).
    Forbidden(&'static str),
    RateLimited,
    /// The client's body stalled for `timeouts.idle`.
    BodyTimeout,
    /// `auth: jwt` without a bearer token (no `Authorization`, or another scheme).
    MissingToken,
    /// `auth: jwt` with a bearer token that does not verify.
    InvalidToken,
    /// A `scope: global` limit could not ask the cluster store (`onStoreDown: deny`).
    StoreUnavailable,
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::NoEligibleBackend
            | GatewayError::CircuitOpen
            | GatewayError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamConnect | GatewayError::UpstreamProtocol => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::MissingToken | GatewayError::InvalidToken => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no route matches this request",
            GatewayError::BodyTooLarge => "request body too large",
            GatewayError::HeadersTooLarge => "request headers too large",
            GatewayError::NoEligibleBackend => "no healthy backend available",
            GatewayError::CircuitOpen => "circuit open",
            GatewayError::UpstreamConnect => "upstream connection failed",
            GatewayError::UpstreamProtocol => "upstream protocol error",
            GatewayError::UpstreamTimeout => "upstream timed out",
            GatewayError::BadRequest(why) | GatewayError::Forbidden(why) => why,
            GatewayError::RateLimited => "rate limit exceeded",
            GatewayError::BodyTimeout => "request body timed out",
            GatewayError::MissingToken => "bearer token required",
            GatewayError::InvalidToken => "invalid bearer token",
            GatewayError::StoreUnavailable => "rate limit store unavailable",
        }
    }

    /// The JSON response for this error.
    pub fn response(self, request_id: &str) -> HttpResponse {
        json_error(self.status(), self.message(), request_id)
    }
}

/// A JSON error body with `X-Request-ID`.
pub fn json_error(status: StatusCode, message: &str, request_id: &str) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if !request_id.is_empty() {
        res.insert_header(("x-request-id", request_id));
    }
    if status == StatusCode::BAD_REQUEST
        || status == StatusCode::PAYLOAD_TOO_LARGE
        || status == StatusCode::REQUEST_TIMEOUT
    {
        // The rest of the request may still be on the wire: do not reuse the connection.
        res.force_close();
    }
    res.json(serde_json::json!({ "error": message, "request_id": request_id }))
}
