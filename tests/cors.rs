//! CORS (DESIGN B4, B10) against a real gateway: preflights answered by the gateway (never
//! forwarded), policy headers on actual responses and on the gateway's own errors, look-alike
//! origins getting nothing, upstream CORS headers replaced, and the policy across a hot reload
//! and under concurrent clients.
mod common;
use common::config_file::*;
use common::*;

use std::time::Duration;

const APP: &str = "https://app.example.com";

/// A gateway whose `/api` route applies `cors` (the block's YAML body), `extra_route` appended
/// to that route, and a `/plain` route without CORS; both to `up`.
fn yaml(up: &str, cors: &str, extra_route: &str) -> String {
    format!(
        "{}routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n    cors: true\n{extra_route}  - name: plain\n    match: {{pathPrefix: /plain}}\n    upstreams: [{{name: default}}]\ncors:\n{cors}",
        backends_yaml(&[up], "")
    )
}

fn policy(origins: &str, credentials: bool) -> String {
    format!("  allowedOrigins: {origins}\n  allowCredentials: {credentials}\n  maxAge: 600\n")
}

/// Sends `method path` with `headers` to the gateway's L7 listener.
async fn request(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = awc::Client::default().request(m, gw.url(path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    fetch(req).await
}

async fn preflight(gw: &TestGateway, path: &str, origin: &str, method: &str, hdrs: &str) -> Resp {
    let mut h = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if !hdrs.is_empty() {
        h.push(("Access-Control-Request-Headers", hdrs));
    }
    request(gw, "OPTIONS", path, &h).await
}

/// Every `access-control-*` header of a response.
fn cors_headers(r: &Resp) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

fn vary(r: &Resp) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .collect()
}

#[actix_rt::test]
async fn preflight_from_an_allowed_origin_is_answered_by_the_gateway() {
    let up = Upstream::new("up").start().await;
    let gw = gateway(&yaml(
        &up.addr_str(),
        &policy(&format!("[\"{APP}\"]"), true),
        "",
    ))
    .await;

    let r = preflight(&gw, "/api/items", APP, "PUT", "content-type,x-request-id").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization, Content-Type, X-Request-ID")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        vary(&r),
        [
            "Origin",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers"
        ]
    );
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    // The same origin in another case, and with its default port, is the same origin.
    let r = preflight(&gw, "/api", "https://APP.example.com:443", "GET", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(up.hits(), 0, "a preflight never reaches the upstream");

    // Counted like any request of the route.
    let text = gw.metrics_text().await;
    assert!(
        text.contains("gogate_http_responses_total{code=\"204\",route=\"api\"} 2"),
        "{text}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn preflight_outside_the_policy_is_403_json_and_not_forwarded() {
    let up = Upstream::new("up").start().await;
    let cors = format!(
        "{}  allowedMethods: [GET, POST]\n  allowedHeaders: [Content-Type]\n",
        policy(&format!("[\"{APP}\"]"), false)
    );
    let gw = gateway(&yaml(&up.addr_str(), &cors, "")).await;
    for (origin, method, headers, why) in [
        ("https://evil.test", "GET", "", "origin"),
        (APP, "DELETE", "", "method"),
        (APP, "GET", "content-type, x-secret", "header"),
        (APP, "GET", "authorization", "header"),
    ] {
        let r = preflight(&gw, "/api/x", origin, method, headers).await;
        assert_eq!(r.status, 403, "{origin} {method} {headers}: {r:?}");
        let j = r.json();
        assert!(j["error"].as_str().is_some_and(|e| e.contains(why)), "{j}");
        assert!(j["request_id"].is_string(), "{j}");
        assert!(cors_headers(&r).is_empty(), "{r:?}");
    }
    // Methods and headers compare case-insensitively.
    let r = preflight(&gw, "/api/x", APP, "post", "CONTENT-TYPE").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(up.hits(), 0, "no preflight reached the upstream");
    gw.stop().await;
}

#[actix_rt::test]
async fn look_alike_origins_get_no_cors_headers() {
    let up = Upstream::new("up")
        // An upstream that reflects any origin must not widen the policy.
        .header(
            "Access-Control-Allow-Origin",
            "https://app.example.com.evil.test",
        )
        .header("Access-Control-Allow-Credentials", "true")
        .start()
        .await;
    let gw = gateway(&yaml(
        &up.addr_str(),
        &policy(&format!("[\"{APP}\"]"), true),
        "",
    ))
    .await;
    for origin in [
        "https://app.example.com.evil.test",
        "https://evilapp.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
        "https://app.example.com/",
        "https://user@app.example.com",
    ] {
        let r = request(&gw, "GET", "/api/data", &[("Origin", origin)]).await;
        assert_eq!(r.status, 200, "{origin}: {r:?}");
        assert!(
            cors_headers(&r).is_empty(),
            "{origin} got CORS headers: {:?}",
            cors_headers(&r)
        );
        assert!(vary(&r).iter().any(|v| v == "Origin"), "{r:?}");
        let p = preflight(&gw, "/api/data", origin, "GET", "").await;
        assert_eq!(p.status, 403, "{origin}: {p:?}");
        assert!(cors_headers(&p).is_empty(), "{p:?}");
    }
    // No Origin at all: no CORS headers either (the upstream's are removed on a CORS route).
    let r = request(&gw, "GET", "/api/data", &[]).await;
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn actual_requests_get_the_policy_headers_replacing_the_upstreams() {
    let up = Upstream::new("up")
        .header("Access-Control-Allow-Origin", "*")
        .header("Access-Control-Expose-Headers", "X-Internal")
        .header("Vary", "Accept-Encoding")
        .start()
        .await;
    let cors = format!(
        "{}  exposedHeaders: [X-Request-ID, X-Upstream]\n",
        policy(&format!("[\"{APP}\", \"http://localhost:3000\"]"), true)
    );
    let gw = gateway(&yaml(&up.addr_str(), &cors, "")).await;
    for origin in [APP, "http://localhost:3000"] {
        let r = request(&gw, "POST", "/api/items", &[("Origin", origin)]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("X-Request-ID, X-Upstream")
        );
        assert_eq!(
            cors_headers(&r).len(),
            3,
            "only the policy's: {:?}",
            cors_headers(&r)
        );
        assert_eq!(vary(&r), ["Accept-Encoding", "Origin"], "{r:?}");
        assert_eq!(r.json()["backend"], "up", "the request was forwarded");
    }
    // An OPTIONS that is not a preflight (no Access-Control-Request-Method) is forwarded.
    let r = request(&gw, "OPTIONS", "/api/items", &[("Origin", APP)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(up.hits(), 3);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_wildcard_policy_answers_star_without_credentials() {
    let up = Upstream::new("up").start().await;
    let gw = gateway(&yaml(&up.addr_str(), &policy("[\"*\"]", false), "")).await;
    let r = preflight(&gw, "/api", "https://anyone.test", "GET", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = request(&gw, "GET", "/api", &[("Origin", "https://other.test")]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    gw.stop().await;
}

#[actix_rt::test]
async fn routes_without_cors_pass_preflights_and_upstream_headers_through() {
    let up = Upstream::new("up")
        .header("Access-Control-Allow-Origin", "https://mine.test")
        .start()
        .await;
    let gw = gateway(&yaml(
        &up.addr_str(),
        &policy(&format!("[\"{APP}\"]"), false),
        "",
    ))
    .await;
    let r = preflight(&gw, "/plain/x", "https://evil.test", "GET", "").await;
    assert_eq!(r.status, 200, "forwarded to the upstream: {r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://mine.test")
    );
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn a_preflight_is_routed_as_the_request_it_announces() {
    let (put, other) = (
        Upstream::new("put").start().await,
        Upstream::new("other").start().await,
    );
    // `/api` for PUT is a CORS route on its own upstream; every other method goes to `other`.
    let text = format!(
        "{}upstreams:\n  writes:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - name: api-put\n    match: {{pathPrefix: /api, methods: [PUT]}}\n    upstreams: [{{name: writes}}]\n    cors: true\ncors:\n{}",
        backends_yaml(&[&other.addr_str()], ""),
        put.addr_str(),
        policy(&format!("[\"{APP}\"]"), false)
    );
    let gw = gateway(&text).await;
    let r = preflight(&gw, "/api/x", APP, "PUT", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    // A preflight for a GET announces a request of the default upstream: forwarded there.
    let r = preflight(&gw, "/api/x", APP, "GET", "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!((put.hits(), other.hits()), (0, 1));
    gw.stop().await;
}

#[actix_rt::test]
async fn gateway_errors_on_cors_routes_carry_the_policy_headers() {
    let up = Upstream::new("up").start().await;
    // One token per 100 s: the second request is rate limited.
    let extra = "    rateLimit: {rate: 0.01, burst: 1}\n  - name: dead\n    match: {pathPrefix: /dead}\n    upstreams: [{name: nowhere}]\n    cors: true\n";
    let text =
        format!(
        "{}upstreams:\n  nowhere:\n    backends: [{{addr: \"{}\"}}]\n    retry: {{attempts: 0}}\n",
        yaml(&up.addr_str(), &policy(&format!("[\"{APP}\"]"), true), extra),
        dead_addr()
    );
    let gw = gateway(&text).await;
    let origin = [("Origin", APP)];
    assert_eq!(request(&gw, "GET", "/api/1", &origin).await.status, 200);
    let r = request(&gw, "GET", "/api/2", &origin).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let r = request(&gw, "GET", "/dead", &origin).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    assert!(vary(&r).iter().any(|v| v == "Origin"), "{r:?}");
    // ... and never for another origin.
    let r = request(&gw, "GET", "/dead", &[("Origin", "https://evil.test")]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    // Preflights come before the rate limit: the bucket is empty, the preflight still answers.
    let r = preflight(&gw, "/api/3", APP, "GET", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_policy_follows_a_hot_reload() {
    let up = Upstream::new("up").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let other = "https://other.example.com";
    write_config(
        &path,
        &yaml(&up.addr_str(), &policy(&format!("[\"{APP}\"]"), false), ""),
    );
    let gw = gateway_from_file(&path).await;
    assert_eq!(preflight(&gw, "/api", APP, "GET", "").await.status, 204);
    assert_eq!(preflight(&gw, "/api", other, "GET", "").await.status, 403);

    write_config(
        &path,
        &yaml(&up.addr_str(), &policy(&format!("[\"{other}\"]"), true), ""),
    );
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = preflight(&gw, "/api", other, "GET", "").await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(preflight(&gw, "/api", APP, "GET", "").await.status, 403);

    // A bad policy (wildcard with credentials) fails the reload and the last one keeps serving.
    write_config(&path, &yaml(&up.addr_str(), &policy("[\"*\"]", true), ""));
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("cors.allowedOrigins[0]") && e.contains("gogate.yaml")),
        "{r:?}"
    );
    assert_eq!(preflight(&gw, "/api", other, "GET", "").await.status, 204);
    assert_eq!(preflight(&gw, "/api", APP, "GET", "").await.status, 403);

    // Removing cors: true from the route: requests pass through untouched again.
    let plain = yaml(&up.addr_str(), &policy(&format!("[\"{APP}\"]"), false), "")
        .replace("    cors: true\n", "");
    write_config(&path, &plain);
    assert_eq!(gw.admin_send("POST", "/reload").await.status, 200);
    let r = preflight(&gw, "/api", APP, "GET", "").await;
    assert_eq!(r.status, 200, "forwarded once the route has no CORS: {r:?}");
    assert_eq!(up.hits(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn concurrent_clients_each_get_their_own_answer() {
    let up = Upstream::new("up").start().await;
    let gw = try_gateway_with_workers(
        &yaml(&up.addr_str(), &policy(&format!("[\"{APP}\"]"), true), ""),
        2,
    )
    .await
    .expect("gateway starts");
    let base = gw.url("");
    let mut tasks = Vec::new();
    for c in 0..6usize {
        let base = base.clone();
        tasks.push(actix_rt::spawn(async move {
            // Even clients keep one connection; odd ones open a new one per request.
            let keep = awc::Client::default();
            for i in 0..25usize {
                let client = if c % 2 == 0 {
                    keep.clone()
                } else {
                    awc::Client::builder().disable_redirects().finish()
                };
                let allowed = (c + i) % 3 != 0;
                let origin = if allowed { APP } else { "https://evil.test" };
                let pre = i % 2 == 0;
                let m = if pre { "OPTIONS" } else { "GET" };
                let mut req = client
                    .request(
                        actix_web::http::Method::from_bytes(m.as_bytes()).unwrap(),
                        format!("{base}/api/{c}/{i}"),
                    )
                    .insert_header(("Origin", origin));
                if pre {
                    req = req.insert_header(("Access-Control-Request-Method", "GET"));
                }
                if c % 2 == 1 {
                    req = req.insert_header(("Connection", "close"));
                }
                let r = fetch(req).await;
                let acao = r.header("access-control-allow-origin").map(str::to_string);
                match (pre, allowed) {
                    (true, true) => assert_eq!((r.status, acao.as_deref()), (204, Some(APP))),
                    (true, false) => assert_eq!((r.status, acao), (403, None)),
                    (false, true) => assert_eq!((r.status, acao.as_deref()), (200, Some(APP))),
                    (false, false) => assert_eq!((r.status, acao), (200, None)),
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    // 12 actual requests per client were forwarded; none of the 13 preflights was.
    assert_eq!(up.hits(), 6 * 12);
    gw.stop().await;
}
