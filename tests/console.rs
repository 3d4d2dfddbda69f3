//! The operator console (DESIGN B11 `GET /ui`): the page and its scripts and style sheet load
//! without a token (a browser navigation cannot send one) with a strict CSP and the other
//! security headers, while `GET /ui/state`, the data they show, is protected like every other
//! admin read; its document has the documented shape, routes in specificity order, histogram
//! counts whose differences give the interval's quantiles, the registry's TTLs and the reload
//! history; drain and undrain as the page sends them pass the guard. The browser side is
//! `tests/ui/console_test.py` (headless Chromium, in CI).
mod common;
use common::config_file::*;
use common::*;

use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "s3cret";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = awc::Client::default().get(gw.admin_url(path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    fetch(req).await
}

async fn state(gw: &TestGateway, token: Option<&str>) -> Value {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    let r = get_with(gw, "/ui/state", &headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

#[actix_rt::test]
async fn the_page_and_its_assets_load_without_the_token_its_data_does_not() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  admin: {token: \"s3cret\"}\n",
    ))
    .await;
    let page = gw.admin_get("/ui").await;
    // The scripts the page loads, and those they import, are all served (and open).
    let mut scripts = vec!["/ui/app.js".to_string()];
    let app = gw.admin_get("/ui/app.js").await.body;
    for part in app.split("from './").skip(1) {
        let name = part.split('\'').next().expect("a module name");
        scripts.push(format!("/ui/{name}"));
    }
    assert!(
        scripts.len() >= 3,
        "app.js imports its modules: {scripts:?}"
    );
    let mut assets = vec![
        ("/ui".to_string(), "text/html; charset=utf-8"),
        ("/ui/app.css".to_string(), "text/css; charset=utf-8"),
    ];
    assets.extend(
        scripts
            .iter()
            .map(|s| (s.clone(), "text/javascript; charset=utf-8")),
    );
    for (path, content_type) in &assets {
        let r = gw.admin_get(path).await;
        assert_eq!(r.status, 200, "{path} without a token: {}", r.body);
        assert_eq!(r.header("content-type"), Some(*content_type), "{path}");
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert!(!r.body.is_empty(), "{path}");
        // The assets are code, not data: no backend address in them.
        assert!(!r.body.contains(&a.addr_str()), "{path} holds no data");
    }
    assert!(page
        .body
        .contains("<script type=\"module\" src=\"/ui/app.js\">"));
    assert!(page.body.contains("href=\"/ui/app.css\""));
    // The data stays behind the token, under every spelling of its path.
    for path in [
        "/ui/state",
        "/%75i/state",
        "/ui/state?x=1",
        "/stats",
        "/backends",
        "/reloads",
    ] {
        let r = gw.admin_get(path).await;
        assert_eq!(r.status, 401, "{path} without the token: {}", r.body);
        assert!(r.header("www-authenticate").is_some(), "{path}");
    }
    let wrong = get_with(&gw, "/ui/state", &[("Authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, 401);
    let s = state(&gw, Some(TOKEN)).await;
    assert_eq!(s["upstreams"][0]["backends"][0]["addr"], a.addr_str());
    // The page loads over a plain navigation: a POST to it is no way around the guard.
    let r = fetch(awc::Client::default().post(gw.admin_url("/ui"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_state_has_the_documented_shape_with_routes_in_specificity_order() {
    let ups = [
        Upstream::new("d").start().await,
        Upstream::new("a").start().await,
        Upstream::new("w").start().await,
        Upstream::new("r").start().await,
    ];
    let (d, api, web, reg) = (
        ups[0].addr_str(),
        ups[1].addr_str(),
        ups[2].addr_str(),
        ups[3].addr_str(),
    );
    // File order is least specific first; the table must come out most specific first.
    let yaml = format!(
        r#"server:
  backends: [{{addr: "{d}"}}]
  health: {{enabled: false}}
  registry: {{enabled: true}}
upstreams:
  api:
    backends: [{{addr: "{api}", weight: 3}}]
    loadBalancer: least_connections
  web:
    backends: [{{addr: "{web}"}}]
routes:
  - name: catch-all
    match: {{pathPrefix: /}}
    upstreams: [{{name: web}}]
  - name: api
    match: {{pathPrefix: /api}}
    upstreams: [{{name: api, weight: 9}}, {{name: web, weight: 1}}]
  - name: api-v2
    match: {{pathPrefix: /api/v2}}
    upstreams: [{{name: api}}]
  - name: host
    match: {{host: admin.example.com}}
    upstreams: [{{name: web}}]
  - name: exact
    match: {{path: /api/v2/ping}}
    upstreams: [{{name: api}}]
  - name: keyed
    match: {{pathPrefix: /keyed, headers: {{X-Api-Key: hunter2}}}}
    upstreams: [{{name: api}}]
"#
    );
    let gw = gateway(&yaml).await;
    // A registration: listed with the TTL it has left.
    let body = format!(r#"{{"name": "catalog", "address": "{reg}", "ttl": "40s"}}"#);
    let r = send(
        awc::Client::default()
            .post(gw.admin_url("/v1/services"))
            .insert_header(("Content-Type", "application/json")),
        Some(body.into_bytes()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let s = state(&gw, None).await;

    let names: Vec<&str> = s["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["host", "exact", "api-v2", "keyed", "api", "catch-all"]
    );
    // A secret in a match condition is redacted, as /config does.
    assert!(!s.to_string().contains("hunter2"), "{}", s["routes"][3]);
    assert_eq!(
        s["routes"][3]["match"]["headers"]["X-Api-Key"],
        "<redacted>"
    );
    assert!(s["routes"][3]["specificity"]
        .to_string()
        .contains("header x-api-key: <redacted>"));
    for (i, r) in s["routes"].as_array().expect("routes").iter().enumerate() {
        assert_eq!(r["rank"], i + 1, "{r}");
        assert!(r["specificity"].as_array().is_some_and(|w| w.len() >= 3));
    }
    // The rank is the one /explain gives.
    let x = gw.admin_get("/explain?path=/api/v2/users").await.json();
    assert_eq!(x["route"]["name"], "api-v2");
    assert_eq!(x["route"]["rank"], 3);
    let api_route = &s["routes"][4];
    assert_eq!(
        api_route["upstreams"],
        serde_json::json!([{"name": "api", "weight": 9}, {"name": "web", "weight": 1}])
    );
    assert_eq!(api_route["match"]["pathPrefix"], "/api");
    assert_eq!(s["default_route"]["rank"], Value::Null);
    assert_eq!(s["default_route"]["upstreams"][0]["name"], "default");

    // Upstreams and every backend field the page shows.
    let upstreams = s["upstreams"].as_array().expect("upstreams");
    let by_name = |n: &str| {
        upstreams
            .iter()
            .find(|u| u["name"] == n)
            .unwrap_or_else(|| panic!("upstream {n}: {upstreams:?}"))
    };
    let up = by_name("api");
    assert_eq!(up["load_balancer"], "least_connections");
    assert_eq!(up["health_checks"], false);
    let b = &up["backends"][0];
    for key in [
        "addr",
        "hostname",
        "weight",
        "healthy",
        "draining",
        "circuit_breaker",
        "active_connections",
        "requests_total",
        "failures_total",
        "last_check",
        "last_error",
        "source",
    ] {
        assert!(b.get(key).is_some(), "backend field {key}: {b}");
    }
    assert_eq!(b["addr"], api);
    assert_eq!(b["weight"], 3);
    assert_eq!(b["healthy"], true);
    assert_eq!(b["circuit_breaker"], "closed");
    let default = by_name("default");
    let sources: Vec<(&str, &str)> = default["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["addr"].as_str().unwrap_or(""),
                b["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(sources.contains(&(d.as_str(), "static")), "{sources:?}");
    eventually("the registration joins the default upstream", || async {
        let s = state(&gw, None).await;
        s["upstreams"].as_array().is_some_and(|u| {
            u.iter()
                .any(|u| u["backends"].to_string().contains(&format!("\"{reg}\"")))
        })
    })
    .await;

    // Listeners, as configured (the test kit pins them to 127.0.0.1:0).
    let listeners: Vec<&str> = s["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| l["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listeners, ["tcp", "http", "https", "admin", "metrics"]);
    assert_eq!(s["listeners"][2]["addr"], Value::Null, "TLS is off");
    assert_eq!(s["listeners"][3]["addr"], "127.0.0.1:0");

    // The registry with TTL left, counted down by the server.
    let services = s["registry"]["services"].as_array().expect("services");
    assert_eq!(s["registry"]["enabled"], true);
    assert_eq!(services.len(), 1, "{services:?}");
    let svc = &services[0];
    assert_eq!(svc["name"], "catalog");
    assert_eq!(svc["address"], reg);
    assert_eq!(svc["ttl"], "40s");
    let left = svc["ttl_left_seconds"].as_f64().expect("ttl_left_seconds");
    assert!(left > 35.0 && left <= 40.0, "{left}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = state(&gw, None).await["registry"]["services"][0]["ttl_left_seconds"]
        .as_f64()
        .expect("ttl_left_seconds");
    assert!(later < left, "the TTL counts down: {left} then {later}");

    assert_eq!(s["generation"], 1);
    assert_eq!(s["reloads"], serde_json::json!([]));
    assert!(s["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(s["uptime_seconds"].as_f64().is_some_and(|u| u > 0.0));
    let latency = &s["stats"]["latency"];
    assert_eq!(latency["buckets"].as_array().map(Vec::len), Some(128));
    assert!(latency["bucket_rule"].as_str().is_some());
    for key in ["total", "success", "failure", "rate_limited"] {
        assert!(s["stats"]["requests"][key].is_u64(), "{key}");
    }
    gw.stop().await;
}

/// The `q` quantile in ms of histogram `counts` by the documented bucket rule, as the page
/// computes it.
fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if total > 0 && seen >= rank {
            return Some((2f64.powf((i as f64 + 1.0) / 4.0) - 1.0) / 1000.0);
        }
    }
    None
}

fn buckets(s: &Value) -> Vec<u64> {
    s["stats"]["latency"]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|v| v.as_u64().expect("a count"))
        .collect()
}

#[actix_rt::test]
async fn histogram_differences_give_the_interval_s_quantiles() {
    let fast = Upstream::new("fast").start().await;
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(40))
        .start()
        .await;
    let yaml = format!(
        "server:\n  backends: [{{addr: \"{}\"}}]\n  health: {{enabled: false}}\n\
         upstreams:\n  slow:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - name: slow\n    match: {{pathPrefix: /slow}}\n    upstreams: [{{name: slow}}]\n",
        fast.addr_str(),
        slow.addr_str()
    );
    let gw = gateway(&yaml).await;
    for _ in 0..60 {
        assert_eq!(gw.get("/fast").await.status, 200);
    }
    let before = state(&gw, None).await;
    for _ in 0..8 {
        assert_eq!(gw.get("/slow").await.status, 200);
    }
    let after = state(&gw, None).await;
    let (b0, b1) = (buckets(&before), buckets(&after));
    let delta: Vec<u64> = b1.iter().zip(&b0).map(|(x, y)| x - y).collect();
    assert_eq!(
        delta.iter().sum::<u64>(),
        8,
        "exactly the interval's requests"
    );
    let total = |s: &Value| s["stats"]["requests"]["total"].as_u64().expect("total");
    assert_eq!(total(&after) - total(&before), 8);
    assert_eq!(b0.iter().sum::<u64>(), total(&before));
    // The interval's p50 is the slow requests'; the since-start one is still the fast ones'.
    let p50 = quantile_ms(&delta, 0.5).expect("requests in the interval");
    assert!((40.0..80.0).contains(&p50), "interval p50 {p50} ms");
    let since_start = after["stats"]["latency"]["p50_ms_since_start"]
        .as_f64()
        .expect("p50");
    assert!(since_start < 40.0, "since-start p50 {since_start} ms");
    assert_eq!(
        quantile_ms(&vec![0; 128], 0.5),
        None,
        "no requests, no quantile"
    );
    // Per-backend counters move by the same requests.
    let reqs = |s: &Value| -> u64 {
        s["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .find(|u| u["name"] == "slow")
            .map(|u| u["backends"][0]["requests_total"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    assert_eq!(reqs(&after) - reqs(&before), 8);
    gw.stop().await;
}

#[actix_rt::test]
async fn drains_as_the_page_sends_them_pass_the_guard_and_show_in_the_state() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let own = format!("http://{}", gw.admin);
    // The page's fetch: the address percent-encoded, its own Origin, same-origin.
    let path = format!("/backends/{}/drain", a.addr_str().replace(':', "%3A"));
    let page_write = |method: &str| {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        awc::Client::default()
            .request(m, gw.admin_url(&path))
            .insert_header(("Origin", own.as_str()))
            .insert_header(("Sec-Fetch-Site", "same-origin"))
    };
    let r = fetch(page_write("POST")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = state(&gw, None).await;
    assert_eq!(s["upstreams"][0]["backends"][0]["draining"], true);
    let r = fetch(page_write("DELETE")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = state(&gw, None).await;
    assert_eq!(s["upstreams"][0]["backends"][0]["draining"], false);
    // A page served elsewhere cannot.
    let r = fetch(
        awc::Client::default()
            .post(gw.admin_url(&path))
            .insert_header(("Origin", "http://evil.example"))
            .insert_header(("Sec-Fetch-Site", "cross-site")),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_state_carries_the_reload_history_with_its_diffs() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let file = dir.path("gogate.yaml");
    let base = format!(
        "server:\n  backends: [{{addr: \"{}\"}}]\n  health: {{enabled: false}}\n\
         routes:\n  - name: api\n    match: {{pathPrefix: /api}}\n    upstreams: [{{name: default}}]\n",
        a.addr_str()
    );
    write_config(&file, &base);
    let gw = gateway_from_file(&file).await;
    let added = format!(
        "{base}  - name: extra\n    match: {{pathPrefix: /extra}}\n    upstreams: [{{name: default}}]\n"
    );
    write_config(&file, &added);
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the reload in the state", || async {
        let s = state(&gw, None).await;
        s["reloads"].as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["diff"]["routes"]["added"] == serde_json::json!(["extra"]))
        }) && s["routes"].to_string().contains("\"extra\"")
    })
    .await;
    let s = state(&gw, None).await;
    let newest = &s["reloads"][0];
    assert_eq!(newest["result"], "success");
    assert_eq!(newest["generation"], s["generation"]);
    // The same records as GET /reloads.
    assert_eq!(s["reloads"], gw.admin_get("/reloads").await.json());
    gw.stop().await;
}
