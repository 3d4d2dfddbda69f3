//! `POST /reload` (B6, B10): asks the config actor to re-read its file. 200 `{generation,
//! changed, restart_required}` on success; 400 `{error}` when the file is bad (the old
//! configuration keeps serving). Also the `last_reload` object of `GET /config`.

use super::{time, AdminState};
use actix_web::{web, HttpResponse};
use gogate_actors::reload::{LastReload, Reload};
use serde_json::{json, Value};

pub(super) async fn reload(s: web::Data<AdminState>) -> HttpResponse {
    match s.config_actor.send(Reload { trigger: "api" }).await {
        Ok(Ok(outcome)) => HttpResponse::Ok().json(json!({
            "generation": outcome.generation,
            "changed": outcome.changed,
            "restart_required": outcome.restart_required,
        })),
        Ok(Err(e)) => HttpResponse::BadRequest().json(json!({"error": e.0})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"error": "configuration actor unavailable"})),
    }
}

/// `{time, result, error}`, or null before the first reload.
pub(super) fn last_reload_json(last: Option<&LastReload>) -> Value {
    match last {
        None => Value::Null,
        Some(r) => json!({
            "time": time::system_time_rfc3339(r.time),
            "result": if r.error.is_none() { "success" } else { "failure" },
            "error": r.error,
        }),
    }
}
