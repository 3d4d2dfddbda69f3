//! `GET /explain` (DESIGN B11): where a request would go and why, on the live snapshot, with
//! nothing moved (see `crate::explain`). The query names the request: `method`, `host`,
//! `path`, `header=Name:value` (repeatable), `client`.

use super::AdminState;
use crate::explain::{explain, ExplainRequest};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub(super) async fn explain_route(req: HttpRequest, s: web::Data<AdminState>) -> HttpResponse {
    let pairs = form_urlencoded::parse(req.query_string().as_bytes());
    match ExplainRequest::from_pairs(pairs) {
        Ok(r) => HttpResponse::Ok().json(explain(&s.cell.load(), &r)),
        Err(e) => HttpResponse::BadRequest().json(json!({ "error": e })),
    }
}
