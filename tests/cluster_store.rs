//! Reaching the cluster store (DESIGN B11 "Cluster"): `rediss://` (TLS, the server's CA from
//! `cluster.caFile`), a password in the URL or in `GOGATE_REDIS_PASSWORD`, and a wrong one
//! refused and reported, never a silent pass of a global limit; `GET /config` shows no
//! password.
mod common;
#[path = "tls/kit.rs"]
mod kit;
use common::redis::{free_port, RedisServer};
use common::*;

fn yaml(up: &str, store: &str, extra: &str) -> String {
    format!(
        "{}routes:\n  - name: api\n    match: {{pathPrefix: /}}\n    upstreams: [{{name: default}}]\n    rateLimit: {{rate: 0.001, burst: 2, scope: global}}\n\
         cluster:\n  store: \"{store}\"\n  timeout: 500ms\n  onStoreDown: deny\n{extra}",
        backends_yaml(&[up], "  listenAddr: \"\"\n")
    )
}

/// Statuses of three requests: two tokens from the shared bucket, then 429; a store the
/// gateway cannot use gives 503s instead (onStoreDown: deny).
async fn three(gw: &TestGateway) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(gw.get("/x").await.status);
    }
    out
}

#[actix_rt::test]
async fn rediss_with_a_private_ca_and_a_password_in_the_url() {
    let ca = kit::Ca::new();
    let leaf = ca.leaf(&["localhost"]);
    let tls_port = free_port();
    let ca_pem = ca.pem();
    let redis = RedisServer::start_with(
        |dir| {
            let (crt, key, cap) = (dir.join("r.crt"), dir.join("r.key"), dir.join("ca.crt"));
            std::fs::write(&crt, &leaf.cert_pem).expect("write");
            std::fs::write(&key, &leaf.key_pem).expect("write");
            std::fs::write(&cap, &ca_pem).expect("write");
            [
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &crt.display().to_string(),
                "--tls-key-file",
                &key.display().to_string(),
                "--tls-ca-cert-file",
                &cap.display().to_string(),
                "--tls-auth-clients",
                "no",
            ]
            .map(str::to_string)
            .to_vec()
        },
        Some("s3cret-pw"),
    );
    let dir = common::config_file::TempDir::new();
    let ca_file = dir.path("store-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let up = Upstream::new("up").start().await;
    let store = format!("rediss://:s3cret-pw@localhost:{tls_port}/0");
    let gw = gateway(&yaml(
        &up.addr_str(),
        &store,
        &format!("  caFile: \"{}\"\n", ca_file.display()),
    ))
    .await;
    assert_eq!(
        three(&gw).await,
        vec![200, 200, 429],
        "the shared bucket over TLS"
    );
    let keys = redis.cli(&["KEYS", "gogate:rl:*"]);
    assert!(keys.contains("gogate:rl:route:api:g"), "{keys}");
    let cfg = gw.admin_get("/config").await;
    assert!(!cfg.body.contains("s3cret-pw"), "{}", cfg.body);
    assert_eq!(
        cfg.json()["config"]["cluster"]["store"],
        format!("rediss://:<redacted>@localhost:{tls_port}/0")
    );
    gw.stop().await;

    // A CA that did not sign the server's certificate: the handshake fails, nothing passes.
    let other = kit::Ca::new();
    std::fs::write(&ca_file, other.pem()).expect("write CA");
    let gw = gateway(&yaml(
        &up.addr_str(),
        &store,
        &format!("  caFile: \"{}\"\n", ca_file.display()),
    ))
    .await;
    assert_eq!(three(&gw).await, vec![503, 503, 503]);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_password_may_come_from_the_environment_and_a_wrong_one_is_refused() {
    let redis = RedisServer::start_with(|_| Vec::new(), Some("env-pw"));
    let up = Upstream::new("up").start().await;
    let store = format!("redis://127.0.0.1:{}/3", redis.port);
    // This test binary sets the variable once, before any gateway reads it.
    std::env::set_var("GOGATE_REDIS_PASSWORD", "env-pw");
    let gw = gateway(&yaml(&up.addr_str(), &store, "")).await;
    assert_eq!(three(&gw).await, vec![200, 200, 429]);
    let keys = redis.cli(&["-n", "3", "KEYS", "*"]);
    assert!(
        keys.contains("gogate:rl:route:api:g"),
        "database 3 holds the bucket: {keys}"
    );
    gw.stop().await;

    // A password in the URL wins over the environment; a wrong one is refused.
    let wrong = format!("redis://:nope@127.0.0.1:{}/3", redis.port);
    let gw = gateway(&yaml(&up.addr_str(), &wrong, "")).await;
    assert_eq!(three(&gw).await, vec![503, 503, 503]);
    eventually("the store errors are counted", || async {
        gw.metrics_text().await.lines().any(|l| {
            l.starts_with("gogate_store_errors_total{op=\"ratelimit\"} ") && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(gw.metrics_text().await.contains("gogate_store_up 0"));
    gw.stop().await;
}
