//! The registry end to end: a service registered through `POST /v1/services` becomes a backend
//! of the upstream named by its `name`, receives traffic through a route, survives a config
//! reload, and leaves rotation when it is deregistered or its TTL expires.
mod common;
use common::config_file::*;
use common::*;

fn config(static_api: &str) -> String {
    format!(
        "server:\n  listenAddr: \"\"\n  backends: [{{addr: \"{static_api}\"}}]\n  health: {{enabled: false}}\n  \
         registry: {{enabled: true, defaultTtl: 30s, cleanupInterval: 50ms}}\n\
         upstreams:\n  orders:\n    backends: []\n\
         routes:\n  - name: orders\n    match: {{pathPrefix: /orders}}\n    upstreams: [{{name: orders}}]\n"
    )
}

async fn register(gw: &TestGateway, body: serde_json::Value) -> Resp {
    let req = awc::Client::default().post(gw.admin_url("/v1/services"));
    send(
        req.insert_header(("content-type", "application/json")),
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn backend_of(gw: &TestGateway, path: &str) -> (u16, String) {
    let r = gw.get(path).await;
    let who = r.header("x-upstream").unwrap_or_default().to_string();
    (r.status, who)
}

#[actix_rt::test]
async fn registered_service_serves_its_route_survives_reload_and_leaves_on_deregister() {
    let fallback = Upstream::new("static").start().await;
    let svc = Upstream::new("orders-1").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &config(&fallback.addr_str()));
    let gw = gateway_from_file(&path).await;

    // Nothing registered yet: the route's upstream is empty.
    assert_eq!(gw.get("/orders/1").await.status, 503);

    let r = register(
        &gw,
        serde_json::json!({"name": "orders", "address": svc.addr_str()}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_string();
    eventually("the registered backend serves the route", || async {
        backend_of(&gw, "/orders/1").await == (200, "orders-1".to_string())
    })
    .await;
    let list = gw.admin_get("/backends").await.json();
    let entry = list
        .as_array()
        .expect("array")
        .iter()
        .find(|b| b["addr"] == svc.addr_str())
        .expect("registered backend listed")
        .clone();
    assert_eq!(entry["upstream"], "orders");
    assert_eq!(entry["source"], "registry");

    // A reload (here: a different static backend set) keeps the registration.
    let other = Upstream::new("static-2").start().await;
    let before = gw.admin_get("/config").await.json()["generation"]
        .as_u64()
        .expect("generation");
    write_config(&path, &config(&other.addr_str()));
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A new generation, applied by this reload or (first, on a busy machine) by the watcher.
    let after = r.json()["generation"].as_u64().expect("generation");
    assert_eq!(after, before + 1, "{}", r.body);
    assert_eq!(
        backend_of(&gw, "/orders/2").await,
        (200, "orders-1".to_string())
    );
    assert_eq!(
        backend_of(&gw, "/elsewhere").await,
        (200, "static-2".to_string())
    );

    // Deregistration takes it out of rotation.
    let r = gw.admin_send("DELETE", &format!("/v1/services/{id}")).await;
    assert_eq!(r.status, 204);
    eventually("the route has no backend again", || async {
        gw.get("/orders/3").await.status == 503
    })
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn expired_service_leaves_rotation() {
    let fallback = Upstream::new("static").start().await;
    let svc = Upstream::new("orders-1").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &config(&fallback.addr_str()));
    let gw = gateway_from_file(&path).await;
    let r = register(
        &gw,
        serde_json::json!({"name": "orders", "address": svc.addr_str(), "ttl": "300ms"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    eventually("the registered backend serves the route", || async {
        backend_of(&gw, "/orders/1").await.0 == 200
    })
    .await;
    // No heartbeat: after the TTL the backend is drained away and the route has none left.
    eventually("the expired service is gone from the route", || async {
        gw.get("/orders/1").await.status == 503
    })
    .await;
    gw.stop().await;
}
