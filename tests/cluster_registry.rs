//! The service registry shared through the cluster store (DESIGN B11 "Cluster"): two gateway
//! replicas and a real `redis-server`. A registration through one is routed by the other, a
//! heartbeat through either keeps it alive, expiry removes it from both; while the store is
//! down both keep serving what they knew and registry writes answer 503 naming the store;
//! when it returns they resynchronise.
mod common;
use common::redis::RedisServer;
use common::*;

use serde_json::json;

fn yaml(store: &str) -> String {
    format!(
        "server:\n  listenAddr: \"\"\n  backends: []\n  health: {{enabled: false}}\n  registry: {{enabled: true, defaultTtl: 1s, cleanupInterval: 100ms}}\n\
         upstreams:\n  api:\n    backends: []\n\
         routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: api}}]\n\
         cluster:\n  store: \"{store}\"\n"
    )
}

async fn post_json(gw: &TestGateway, path: &str, body: serde_json::Value) -> Resp {
    send(
        awc::Client::default()
            .post(gw.admin_url(path))
            .insert_header(("content-type", "application/json")),
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// Whether `gw` routes `/api` to the upstream named `name`.
async fn routes_to(gw: &TestGateway, name: &str) -> bool {
    let r = gw.get("/api/x").await;
    r.status == 200 && r.header("x-upstream") == Some(name)
}

async fn listed(gw: &TestGateway, id: &str) -> bool {
    let r = gw.admin_get("/v1/services").await;
    r.status == 200
        && r.json()
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["id"] == id))
}

#[actix_rt::test]
async fn a_registration_through_one_replica_is_routed_by_the_other_and_expires_from_both() {
    let redis = RedisServer::start();
    let up = Upstream::new("svc").start().await;
    let a = gateway(&yaml(&redis.url())).await;
    let b = gateway(&yaml(&redis.url())).await;

    let r = post_json(
        &a,
        "/v1/services",
        json!({"id": "svc-1", "name": "api", "address": up.addr_str(), "ttl": "1s"}),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    eventually("replica B routes the service registered through A", || {
        routes_to(&b, "svc")
    })
    .await;
    assert!(listed(&b, "svc-1").await);
    // An update of the same id through B is an update (200), cluster-wide.
    let r = post_json(
        &b,
        "/v1/services",
        json!({"id": "svc-1", "name": "api", "address": up.addr_str(), "ttl": "1s"}),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    // Heartbeats through B keep it alive well past its 1 s ttl, on both replicas.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        assert_eq!(
            b.admin_send("PUT", "/v1/services/svc-1/heartbeat")
                .await
                .status,
            204
        );
        assert!(routes_to(&a, "svc").await, "A still routes it");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // Without heartbeats it expires from both.
    eventually("A drops the expired service", || async {
        !listed(&a, "svc-1").await
    })
    .await;
    eventually("B drops the expired service", || async {
        !listed(&b, "svc-1").await
    })
    .await;
    assert_eq!(a.get("/api/x").await.status, 503, "no backend left");
    assert_eq!(
        a.admin_send("PUT", "/v1/services/svc-1/heartbeat")
            .await
            .status,
        404
    );

    // A deregistration through one replica removes it from the other.
    let r = post_json(
        &a,
        "/v1/services",
        json!({"id": "svc-2", "name": "api", "address": up.addr_str(), "ttl": "30s"}),
    )
    .await;
    assert_eq!(r.status, 201);
    eventually("B sees svc-2", || listed(&b, "svc-2")).await;
    assert_eq!(
        b.admin_send("DELETE", "/v1/services/svc-2").await.status,
        204
    );
    eventually("A drops svc-2", || async { !listed(&a, "svc-2").await }).await;
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_replica_that_starts_later_converges() {
    let redis = RedisServer::start();
    let up = Upstream::new("svc").start().await;
    let a = gateway(&yaml(&redis.url())).await;
    for i in 0..5 {
        let r = post_json(
            &a,
            "/v1/services",
            json!({"id": format!("s{i}"), "name": "api", "address": up.addr_str(), "ttl": "30s"}),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let late = gateway(&yaml(&redis.url())).await;
    eventually("the late replica lists all five", || async {
        let r = late.admin_get("/v1/services").await;
        r.json().as_array().map(Vec::len) == Some(5)
    })
    .await;
    assert!(routes_to(&late, "svc").await);
    a.stop().await;
    late.stop().await;
}

#[actix_rt::test]
async fn while_the_store_is_down_replicas_serve_what_they_knew_and_writes_get_503() {
    let mut redis = RedisServer::start();
    let up = Upstream::new("svc").start().await;
    let a = gateway(&yaml(&redis.url())).await;
    let b = gateway(&yaml(&redis.url())).await;
    let r = post_json(
        &a,
        "/v1/services",
        json!({"id": "svc-1", "name": "api", "address": up.addr_str(), "ttl": "3s"}),
    )
    .await;
    assert_eq!(r.status, 201);
    eventually("B routes svc-1", || routes_to(&b, "svc")).await;

    eventually("gogate_store_up is 1", || async {
        a.metrics_text().await.contains("gogate_store_up 1")
    })
    .await;
    redis.stop_saving();
    eventually("gogate_store_up turns 0", || async {
        a.metrics_text().await.contains("gogate_store_up 0")
    })
    .await;
    // Well past the ttl: nobody can heartbeat, and nothing expires from the mirrors.
    let r = post_json(
        &b,
        "/v1/services",
        json!({"name": "api", "address": up.addr_str()}),
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    let err = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains(&format!("redis://127.0.0.1:{}", redis.port)),
        "names the store: {err}"
    );
    assert_eq!(
        a.admin_send("PUT", "/v1/services/svc-1/heartbeat")
            .await
            .status,
        503
    );
    assert_eq!(
        b.admin_send("DELETE", "/v1/services/svc-1").await.status,
        503
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    for gw in [&a, &b] {
        assert!(
            routes_to(gw, "svc").await,
            "keeps serving its last known set"
        );
        assert!(listed(gw, "svc-1").await);
        assert_eq!(gw.admin_get("/ready").await.status, 200);
    }

    // The store comes back (with its data): writes work again and both resynchronise (the
    // service's own ttl ran out meanwhile in the store, so it is gone everywhere).
    redis.start_again();
    eventually("A resynchronises with the store", || async {
        !listed(&a, "svc-1").await
    })
    .await;
    eventually("B resynchronises with the store", || async {
        !listed(&b, "svc-1").await
    })
    .await;
    let r = post_json(
        &b,
        "/v1/services",
        json!({"id": "svc-3", "name": "api", "address": up.addr_str(), "ttl": "30s"}),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    eventually("A routes svc-3 registered through B", || {
        routes_to(&a, "svc")
    })
    .await;
    eventually("gogate_store_up is 1 again", || async {
        a.metrics_text().await.contains("gogate_store_up 1")
    })
    .await;
    a.stop().await;
    b.stop().await;
}
