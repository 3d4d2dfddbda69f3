//! The service registry's admin routes (DESIGN B6, B10): `/v1/services` register, list, get,
//! heartbeat and deregister. Registered only when `server.registry.enabled`; every handler
//! validates its input here and asks the `RegistryActor`, which owns the services.

use super::{time, AdminState};
use crate::proxy::errors::json_error;
use actix::{Addr, MailboxError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use gogate_actors::registry::spec::parse_spec;
use gogate_actors::registry::{
    Deregister, GetService, GetServices, Heartbeat, Register, Registration, RegistryActor,
    RegistryError, Service,
};
use gogate_config::Dur;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Registers the `/v1/services` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/services", web::post().to(register))
        .route("/v1/services", web::get().to(list))
        .route("/v1/services/{id}", web::get().to(get))
        .route("/v1/services/{id}", web::delete().to(deregister))
        .route("/v1/services/{id}/heartbeat", web::put().to(heartbeat));
}

/// The registry actor (present whenever these routes are registered).
fn actor(s: &AdminState) -> Result<&Addr<RegistryActor>, MailboxError> {
    s.registry.as_ref().ok_or(MailboxError::Closed)
}

fn unavailable(_: MailboxError) -> HttpResponse {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "registry actor unavailable",
        "",
    )
}

fn not_found(id: &str) -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, &format!("unknown service {id}"), "")
}

fn view(s: &Service) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "address": s.address,
        "tags": s.tags,
        "metadata": s.metadata,
        "weight": s.weight,
        "ttl": Dur(s.ttl).to_string(),
        "registered_at": time::system_time_rfc3339(s.registered_at),
        "last_heartbeat": time::system_time_rfc3339(s.last_heartbeat),
    })
}

async fn register(s: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    let spec = match parse_spec(&body) {
        Ok(spec) => spec,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e, ""),
    };
    let reg = match actor(&s) {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    match reg.send(Register(spec)).await {
        Ok(Ok(Registration::Created(svc))) => HttpResponse::Created().json(json!({"id": svc.id})),
        Ok(Ok(Registration::Updated(svc))) => HttpResponse::Ok().json(json!({"id": svc.id})),
        Ok(Err(e)) => refused(&e),
        Err(e) => unavailable(e),
    }
}

/// 503 for a command the registry could not carry out, saying why.
fn refused(e: &RegistryError) -> HttpResponse {
    let msg = match e {
        RegistryError::Full { max } => format!(
            "registry is full (server.registry.maxServices = {max}); deregister a service or raise the limit"
        ),
        RegistryError::Store(why) => why.clone(),
    };
    json_error(StatusCode::SERVICE_UNAVAILABLE, &msg, "")
}

async fn list(req: HttpRequest, s: web::Data<AdminState>) -> HttpResponse {
    let query = match web::Query::<HashMap<String, String>>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid query string: {e}"),
                "",
            )
        }
    };
    let msg = GetServices {
        name: query.get("name").cloned(),
        tag: query.get("tag").cloned(),
    };
    let reg = match actor(&s) {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    match reg.send(msg).await {
        Ok(list) => HttpResponse::Ok().json(list.iter().map(view).collect::<Vec<_>>()),
        Err(e) => unavailable(e),
    }
}

async fn get(s: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    let reg = match actor(&s) {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    match reg.send(GetService(id.clone())).await {
        Ok(Some(svc)) => HttpResponse::Ok().json(view(&svc)),
        Ok(None) => not_found(&id),
        Err(e) => unavailable(e),
    }
}

async fn heartbeat(s: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    id_command(&s, id.into_inner(), Heartbeat).await
}

async fn deregister(s: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    id_command(&s, id.into_inner(), Deregister).await
}

/// Sends a command about one service id: 204 when it was known, 404 when not.
async fn id_command<M>(s: &AdminState, id: String, make: fn(String) -> M) -> HttpResponse
where
    M: actix::Message<Result = Result<bool, RegistryError>> + Send + 'static,
    RegistryActor: actix::Handler<M>,
{
    let reg = match actor(s) {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    match reg.send(make(id.clone())).await {
        Ok(Ok(true)) => HttpResponse::NoContent().finish(),
        Ok(Ok(false)) => not_found(&id),
        Ok(Err(e)) => refused(&e),
        Err(e) => unavailable(e),
    }
}
