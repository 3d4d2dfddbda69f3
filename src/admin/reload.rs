//! `POST /reload` (B6, B10, B11): asks the config actor to re-read its file. 200 `{generation,
//! changed, restart_required, diff}` on success; 400 `{error}` when the file is bad (the old
//! configuration keeps serving). `GET /reloads`: the last 20 reloads, newest first. Also the
//! `last_reload` object of `GET /config`.

use super::{time, AdminState};
use actix_web::{web, HttpResponse};
use gogate_actors::config_actor::GetReloads;
use gogate_actors::reload::{LastReload, Reload};
use serde_json::{json, Value};

pub(super) async fn reload(s: web::Data<AdminState>) -> HttpResponse {
    match s.config_actor.send(Reload { trigger: "api" }).await {
        Ok(Ok(outcome)) => HttpResponse::Ok().json(json!({
            "generation": outcome.generation,
            "changed": outcome.changed,
            "restart_required": outcome.restart_required,
            "diff": outcome.diff,
        })),
        Ok(Err(e)) => HttpResponse::BadRequest().json(json!({"error": e.0})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"error": "configuration actor unavailable"})),
    }
}

pub(super) async fn reloads(s: web::Data<AdminState>) -> HttpResponse {
    match s.config_actor.send(GetReloads).await {
        Ok(list) => HttpResponse::Ok().json(list.iter().map(record_json).collect::<Vec<_>>()),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"error": "configuration actor unavailable"})),
    }
}

/// `{time, trigger, result, error, generation, restart_required, diff}` (`diff` null for a
/// failed reload).
pub(super) fn record_json(r: &LastReload) -> Value {
    json!({
        "time": time::system_time_rfc3339(r.time),
        "trigger": r.trigger,
        "result": if r.error.is_none() { "success" } else { "failure" },
        "error": r.error,
        "generation": r.generation,
        "restart_required": r.restart_required,
        "diff": r.diff,
    })
}

/// The last reload's record, or null before the first reload.
pub(super) fn last_reload_json(last: Option<&LastReload>) -> Value {
    last.map_or(Value::Null, record_json)
}
