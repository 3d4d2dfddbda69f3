//! The TTL service registry (DESIGN B6, B10) through the real admin API of a real gateway:
//! every endpoint and status, list filters, TTL expiry and heartbeats, token protection.
mod common;
use common::*;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A gateway with the registry on (one static backend nothing listens on; no probes).
async fn registry_gateway(registry: &str, extra: &str) -> TestGateway {
    let dead = dead_addr();
    gateway(&backends_yaml(
        &[&dead],
        &format!("  registry: {{enabled: true, {registry}}}\n{extra}"),
    ))
    .await
}

fn request(gw: &TestGateway, method: &str, path: &str, token: Option<&str>) -> awc::ClientRequest {
    let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let req = awc::Client::default().request(m, gw.admin_url(path));
    match token {
        Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
        None => req,
    }
}

async fn register(gw: &TestGateway, body: &str) -> Resp {
    let req = request(gw, "POST", "/v1/services", None)
        .insert_header(("content-type", "application/json"));
    send(req, Some(body.as_bytes().to_vec())).await
}

async fn registered_id(gw: &TestGateway, body: Value) -> String {
    let r = register(gw, &body.to_string()).await;
    assert_eq!(r.status, 201, "{body}: {}", r.body);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn ids(gw: &TestGateway, query: &str) -> Vec<String> {
    let r = gw.admin_get(&format!("/v1/services{query}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ids: Vec<String> = r
        .json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[actix_rt::test]
async fn register_creates_with_201_and_an_existing_id_updates_with_200() {
    let gw = registry_gateway("", "").await;
    let body = json!({"name": "api", "address": "127.0.0.1:7001", "tags": ["v1"],
                      "metadata": {"zone": "a"}, "weight": 5, "ttl": "1m"});
    let id = registered_id(&gw, body).await;
    assert_eq!(id.len(), 32, "generated ids are 128-bit hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_ne!(
        id,
        registered_id(&gw, json!({"name": "api", "address": "127.0.0.1:7001"})).await
    );

    let one = gw.admin_get(&format!("/v1/services/{id}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    let s = one.json();
    for f in [
        "id",
        "name",
        "address",
        "tags",
        "metadata",
        "weight",
        "ttl",
        "registered_at",
        "last_heartbeat",
    ] {
        assert!(s.get(f).is_some(), "field {f} missing: {s}");
    }
    assert_eq!(
        (&s["id"], &s["name"], &s["address"]),
        (&json!(id), &json!("api"), &json!("127.0.0.1:7001"))
    );
    assert_eq!(
        (&s["tags"], &s["metadata"], &s["weight"], &s["ttl"]),
        (
            &json!(["v1"]),
            &json!({"zone": "a"}),
            &json!(5),
            &json!("1m")
        )
    );
    let registered_at = s["registered_at"]
        .as_str()
        .expect("RFC 3339 string")
        .to_string();
    assert!(
        registered_at.ends_with('Z') && registered_at.contains('T'),
        "{registered_at}"
    );

    tokio::time::sleep(Duration::from_millis(5)).await;
    let update = json!({"id": id, "name": "web", "address": "10.0.0.9:80", "ttl": 2});
    let r = register(&gw, &update.to_string()).await;
    assert_eq!(r.status, 200, "an existing id updates: {}", r.body);
    assert_eq!(r.json(), json!({"id": id}));
    let s = gw.admin_get(&format!("/v1/services/{id}")).await.json();
    assert_eq!(
        (&s["name"], &s["address"], &s["ttl"], &s["weight"]),
        (
            &json!("web"),
            &json!("10.0.0.9:80"),
            &json!("2s"),
            &json!(1)
        )
    );
    assert_eq!(
        s["registered_at"],
        json!(registered_at),
        "an update keeps registered_at"
    );
    assert_eq!(ids(&gw, "").await.len(), 2);

    let client_id = registered_id(
        &gw,
        json!({"id": "my-svc-1", "name": "api", "address": "h.local:1"}),
    )
    .await;
    assert_eq!(client_id, "my-svc-1");
    assert!(gw
        .metrics_text()
        .await
        .contains("gogate_registry_services 3"));
    let logged = gw.logs.with_msg("service registered");
    assert!(
        logged
            .iter()
            .any(|l| l["id"] == "my-svc-1" && l["name"] == "api" && l["address"] == "h.local:1"),
        "{logged:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn bad_registrations_get_400_with_a_clear_message() {
    let gw = registry_gateway("", "").await;
    for (body, needle) in [
        ("{\"name\": ", "invalid JSON"),
        ("[1, 2]", "invalid JSON"),
        (r#"{"address": "127.0.0.1:7001"}"#, "missing field \"name\""),
        (r#"{"name": "api"}"#, "missing field \"address\""),
        (
            r#"{"name": "api", "address": "not an address"}"#,
            "invalid backend address",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1"}"#,
            "invalid backend address",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "ttl": "0s"}"#,
            "ttl",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "ttl": 0}"#,
            "ttl",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "ttl": -5}"#,
            "ttl",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "ttl": "soon"}"#,
            "ttl",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "weight": 10001}"#,
            "weight 10001 is too large",
        ),
        (
            r#"{"name": "api", "address": "127.0.0.1:7001", "id": "../x"}"#,
            "invalid id",
        ),
    ] {
        let r = register(&gw, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let msg = r.json()["error"]
            .as_str()
            .expect("error message")
            .to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    assert!(ids(&gw, "").await.is_empty(), "nothing was registered");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_full_registry_answers_503_for_new_ids_only() {
    let gw = registry_gateway("maxServices: 2", "").await;
    let a = registered_id(&gw, json!({"name": "api", "address": "127.0.0.1:7001"})).await;
    registered_id(&gw, json!({"name": "api", "address": "127.0.0.1:7002"})).await;
    let r = register(&gw, r#"{"name": "api", "address": "127.0.0.1:7003"}"#).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("maxServices"),
        "{}",
        r.body
    );
    let update = json!({"id": a, "name": "api", "address": "127.0.0.1:7009"}).to_string();
    assert_eq!(
        register(&gw, &update).await.status,
        200,
        "updates still work when full"
    );
    let del = gw.admin_send("DELETE", &format!("/v1/services/{a}")).await;
    assert_eq!(del.status, 204);
    registered_id(&gw, json!({"name": "api", "address": "127.0.0.1:7003"})).await;
    gw.stop().await;
}

#[actix_rt::test]
async fn heartbeat_and_deregister_answer_204_and_unknown_ids_404() {
    let gw = registry_gateway("", "").await;
    let id = registered_id(&gw, json!({"name": "api", "address": "127.0.0.1:7001"})).await;
    let hb = gw
        .admin_send("PUT", &format!("/v1/services/{id}/heartbeat"))
        .await;
    assert_eq!((hb.status, hb.body.as_str()), (204, ""));
    let del = gw.admin_send("DELETE", &format!("/v1/services/{id}")).await;
    assert_eq!((del.status, del.body.as_str()), (204, ""));
    for (method, path) in [
        ("GET", format!("/v1/services/{id}")),
        ("PUT", format!("/v1/services/{id}/heartbeat")),
        ("DELETE", format!("/v1/services/{id}")),
        ("GET", "/v1/services/never-registered".to_string()),
    ] {
        let r = gw.admin_send(method, &path).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or("")
                .contains("unknown service"),
            "{}",
            r.body
        );
    }
    let logged = gw.logs.with_msg("service deregistered");
    assert!(
        logged
            .iter()
            .any(|l| l["id"] == json!(id) && l["address"] == "127.0.0.1:7001"),
        "{logged:?}"
    );
    assert!(gw
        .metrics_text()
        .await
        .contains("gogate_registry_services 0"));
    gw.stop().await;
}

#[actix_rt::test]
async fn list_filters_by_name_and_tag() {
    let gw = registry_gateway("", "").await;
    for (id, name, tags) in [
        ("a1", "api", json!(["v1", "blue"])),
        ("a2", "api", json!(["v2"])),
        ("w1", "web", json!(["v2"])),
    ] {
        registered_id(
            &gw,
            json!({"id": id, "name": name, "address": "127.0.0.1:7001", "tags": tags}),
        )
        .await;
    }
    assert_eq!(ids(&gw, "").await, ["a1", "a2", "w1"]);
    assert_eq!(ids(&gw, "?name=api").await, ["a1", "a2"]);
    assert_eq!(ids(&gw, "?tag=v2").await, ["a2", "w1"]);
    assert_eq!(ids(&gw, "?name=api&tag=v2").await, ["a2"]);
    assert_eq!(ids(&gw, "?tag=blue").await, ["a1"]);
    assert!(ids(&gw, "?name=nope").await.is_empty());
    gw.stop().await;
}

#[actix_rt::test]
async fn a_service_expires_ttl_after_its_last_heartbeat() {
    let gw = registry_gateway("cleanupInterval: 50ms", "").await;
    let start = Instant::now();
    let id = registered_id(
        &gw,
        json!({"name": "api", "address": "127.0.0.1:7001", "ttl": "300ms"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        ids(&gw, "").await,
        std::slice::from_ref(&id),
        "alive before its ttl"
    );
    eventually("the service expires", || async {
        ids(&gw, "").await.is_empty()
    })
    .await;
    let gone_after = start.elapsed();
    assert!(
        gone_after < Duration::from_millis(500),
        "expired after {gone_after:?}"
    );
    // The cleanup timer, not only the next request, removes it (metric and log).
    assert!(gw
        .metrics_text()
        .await
        .contains("gogate_registry_services 0"));
    let expired = gw.logs.with_msg("service expired");
    assert!(
        expired.iter().any(|l| l["id"] == json!(id)
            && l["name"] == "api"
            && l["address"] == "127.0.0.1:7001"
            && l["level"] == "WARN"),
        "{expired:?}"
    );
    assert_eq!(
        gw.admin_send("PUT", &format!("/v1/services/{id}/heartbeat"))
            .await
            .status,
        404
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn the_cleanup_timer_expires_services_without_any_request() {
    let gw = registry_gateway("cleanupInterval: 50ms", "").await;
    registered_id(
        &gw,
        json!({"name": "api", "address": "127.0.0.1:7001", "ttl": "300ms"}),
    )
    .await;
    eventually("the gauge drops to 0", || async {
        gw.metrics_text()
            .await
            .contains("gogate_registry_services 0")
    })
    .await;
    assert_eq!(gw.logs.with_msg("service expired").len(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn heartbeats_keep_a_service_registered() {
    let gw = registry_gateway("cleanupInterval: 50ms", "").await;
    let id = registered_id(
        &gw,
        json!({"name": "api", "address": "127.0.0.1:7001", "ttl": "300ms"}),
    )
    .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hb = gw
            .admin_send("PUT", &format!("/v1/services/{id}/heartbeat"))
            .await;
        assert_eq!(hb.status, 204, "heartbeat refused: {}", hb.body);
    }
    assert_eq!(ids(&gw, "").await, [id]);
    assert!(gw.logs.with_msg("service expired").is_empty());
    gw.stop().await;
}

#[actix_rt::test]
async fn registry_endpoints_require_the_admin_token() {
    let gw = registry_gateway("", "  admin: {token: \"s3cret\"}\n").await;
    let body = r#"{"id": "x", "name": "api", "address": "127.0.0.1:7001"}"#;
    let calls = [
        ("POST", "/v1/services"),
        ("GET", "/v1/services"),
        ("GET", "/v1/services/x"),
        ("PUT", "/v1/services/x/heartbeat"),
        ("DELETE", "/v1/services/x"),
    ];
    for (method, path) in calls {
        for token in [None, Some("wrong")] {
            let r = send(
                request(&gw, method, path, token),
                Some(body.as_bytes().to_vec()),
            )
            .await;
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
        }
    }
    let expected = [201, 200, 200, 204, 204];
    for ((method, path), status) in calls.into_iter().zip(expected) {
        // Admin request bodies are JSON and say so (415 otherwise).
        let req = request(&gw, method, path, Some("s3cret"))
            .insert_header(("content-type", "application/json"));
        let r = send(req, Some(body.as_bytes().to_vec())).await;
        assert_eq!(
            r.status, status,
            "{method} {path} with the token: {}",
            r.body
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn registry_routes_do_not_exist_when_disabled() {
    let dead = dead_addr();
    let gw = gateway(&backends_yaml(&[&dead], "")).await;
    assert_eq!(gw.admin_get("/v1/services").await.status, 404);
    gw.stop().await;
}
