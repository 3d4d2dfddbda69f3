//! The middleware that puts every admin route behind [`auth::check`] (one place, so a route
//! added later cannot forget it), and caps request bodies: a declared length over 64 KiB is
//! refused before anything is read, and a chunked body is read here, up to the cap and within
//! [`BODY_TIMEOUT`], then handed to the handler whole.

use super::auth::{self, AdminRequest, Denial, MAX_ADMIN_BODY};
use super::AdminState;
use crate::proxy::errors::json_error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use std::time::Duration;

/// Longest an admin request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

fn denied(d: Denial) -> HttpResponse {
    let mut res = json_error(d.status(), d.message(), "");
    if d == Denial::Unauthorized {
        res.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gogate-admin\""),
        );
    }
    res
}

/// `actix_web::middleware::from_fn` body of the admin guard.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let token = req
        .app_data::<web::Data<AdminState>>()
        .and_then(|s| s.token.clone());
    let decision = auth::check(
        &AdminRequest {
            method: req.method(),
            path: req.path(),
            headers: req.headers(),
            peer: req.peer_addr().map(|a| a.ip()),
        },
        token.as_deref(),
    );
    if let Err(d) = decision {
        return Ok(req.into_response(denied(d)));
    }
    if req.headers().contains_key("transfer-encoding") {
        match read_capped(req.take_payload()).await {
            Ok(body) => req.set_payload(Payload::from(body.freeze())),
            Err(e) => return Ok(req.into_response(e.response())),
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Why a chunked admin body was not read.
enum BodyError {
    Malformed,
    TooLarge,
    Timeout,
}

impl BodyError {
    fn response(self) -> HttpResponse {
        match self {
            BodyError::Malformed => {
                json_error(StatusCode::BAD_REQUEST, "malformed request body", "")
            }
            BodyError::TooLarge => denied(Denial::TooLarge),
            BodyError::Timeout => json_error(
                StatusCode::REQUEST_TIMEOUT,
                "admin request body timed out",
                "",
            ),
        }
    }
}

/// Reads a body of unknown length, at most [`MAX_ADMIN_BODY`] bytes.
async fn read_capped(mut payload: Payload) -> Result<BytesMut, BodyError> {
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| BodyError::Malformed)?;
            if buf.len() + chunk.len() > MAX_ADMIN_BODY {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}
