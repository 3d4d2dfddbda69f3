//! Route explain (DESIGN B11): `GET /explain` predicts what real traffic does (route, rewritten
//! path, `Host`, split target, backend) over a table of requests, and moves no state: the
//! balancer's next pick, the rate-limit bucket and the counters are what they were.
//! `gogate explain -config FILE` gives the same answer offline.
mod common;
use common::*;

use serde_json::Value;
use std::collections::HashMap;

struct Setup {
    gw: TestGateway,
    yaml: String,
    /// Backend address → the name its upstream answers with (`x-upstream`).
    names: HashMap<String, String>,
    ups: Vec<RunningUpstream>,
}

async fn setup() -> Setup {
    let mut ups = Vec::new();
    for name in ["u1", "u2", "a1", "a2", "c1", "s1"] {
        ups.push(Upstream::new(name).start().await);
    }
    let a = |i: usize| ups[i].addr_str();
    let yaml = format!(
        r#"server:
  listenAddr: ""
  backends: [{{addr: "{u1}"}}, {{addr: "{u2}"}}]
  health: {{enabled: false}}
upstreams:
  api:
    backends: [{{addr: "{a1}", weight: 3}}, {{addr: "{a2}", weight: 1}}]
    loadBalancer: weighted_round_robin
  canary:
    backends: [{{addr: "{c1}"}}]
  static:
    backends: [{{addr: "{s1}"}}]
    loadBalancer: least_connections
routes:
  - name: api
    match: {{host: api.example.com, pathPrefix: /api}}
    upstreams: [{{name: api, weight: 90}}, {{name: canary, weight: 10}}]
    sticky: "header:x-user"
    stripPrefix: true
  - name: api-canary
    match: {{host: api.example.com, pathPrefix: /api, headers: {{X-Canary: "always"}}}}
    upstreams: [{{name: canary}}]
  - name: wild
    match: {{host: "*.example.com", pathPrefix: /}}
    upstreams: [{{name: static}}]
    preserveHost: false
  - name: exact
    match: {{path: /health/live}}
    upstreams: [{{name: canary}}]
  - name: posts
    match: {{pathPrefix: /submit, methods: [POST]}}
    upstreams: [{{name: canary}}]
    rateLimit: {{rate: 0.001, burst: 1, keyBy: ip}}
"#,
        u1 = a(0),
        u2 = a(1),
        a1 = a(2),
        a2 = a(3),
        c1 = a(4),
        s1 = a(5)
    );
    let gw = gateway(&yaml).await;
    let names = ups.iter().map(|u| (u.addr_str(), u.name.clone())).collect();
    Setup {
        gw,
        yaml,
        names,
        ups,
    }
}

/// One request of the table: method, Host, path, extra headers.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const TABLE: &[Case] = &[
    (
        "GET",
        "api.example.com",
        "/api/v1/users?x=1",
        &[("X-User", "alice")],
    ),
    (
        "GET",
        "api.example.com",
        "/api/v1/users",
        &[("X-User", "bob")],
    ),
    (
        "GET",
        "API.example.com:8081",
        "/api",
        &[("X-User", "carol")],
    ),
    (
        "GET",
        "api.example.com",
        "/api/x",
        &[("X-Canary", "always")],
    ),
    ("GET", "img.example.com", "/logo.png", &[]),
    ("GET", "a.b.example.com", "/api/v1", &[]),
    ("GET", "other.test", "/health/live", &[]),
    ("GET", "other.test", "/health/live/x", &[]),
    ("GET", "example.com", "/apiary", &[]),
    ("POST", "other.test", "/submit/form", &[]),
    ("PUT", "other.test", "/submit/form", &[]),
    ("GET", "plain.test", "/a/../api/./x", &[]),
];

fn query(case: &Case) -> String {
    let (method, host, path, headers) = case;
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("method", method)
        .append_pair("path", path)
        .append_pair("client", "127.0.0.1");
    if !host.is_empty() {
        q.append_pair("host", host);
    }
    for (k, v) in *headers {
        q.append_pair("header", &format!("{k}: {v}"));
    }
    format!("/explain?{}", q.finish())
}

async fn explain(gw: &TestGateway, case: &Case) -> Value {
    let r = gw.admin_get(&query(case)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Sends the request for real; returns (status, the upstream that answered, what it saw).
async fn send_case(s: &Setup, case: &Case) -> (u16, Option<String>, Option<Seen>) {
    let (method, host, path, headers) = case;
    let m = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = awc::Client::default().request(m, s.gw.url(path));
    if !host.is_empty() {
        req = req.insert_header(("host", *host));
    }
    for (k, v) in *headers {
        req = req.insert_header((*k, *v));
    }
    let r = fetch(req).await;
    let name = r.header("x-upstream").map(str::to_string);
    let seen = name
        .as_ref()
        .and_then(|n| s.ups.iter().find(|u| &u.name == n).map(|u| u.last()));
    (r.status, name, seen)
}

#[actix_rt::test]
async fn explain_predicts_real_traffic_over_a_table_of_requests() {
    let s = setup().await;
    // Three rounds, so the weighted and round-robin cursors move between predictions.
    for round in 0..3 {
        for case in TABLE {
            let e = explain(&s.gw, case).await;
            let (status, served, seen) = send_case(&s, case).await;
            let ctx = format!("round {round}, {case:?}: {e:#}");
            match e["outcome"]["action"].as_str() {
                Some("forward") => {
                    assert_eq!(status, 200, "{ctx}");
                    let backend = e["outcome"]["backend"].as_str().expect(&ctx);
                    assert_eq!(served.as_deref(), Some(s.names[backend].as_str()), "{ctx}");
                    let seen = seen.expect("the upstream saw it");
                    assert_eq!(
                        Some(seen.path.as_str()),
                        e["upstream_path"].as_str(),
                        "{ctx}"
                    );
                    assert_eq!(seen.header("host"), e["host_header"].as_str(), "{ctx}");
                }
                _ => {
                    let want = e["outcome"]["status"].as_u64().expect(&ctx);
                    assert_eq!(u64::from(status), want, "{ctx}");
                    assert_eq!(served, None, "{ctx}");
                }
            }
        }
    }
    // The table reaches every kind of answer.
    let routes: Vec<String> = {
        let mut v = Vec::new();
        for case in TABLE {
            let e = explain(&s.gw, case).await;
            v.push(format!("{}:{}", e["route"]["name"], e["outcome"]["action"]));
        }
        v
    };
    for want in [
        "\"api\":\"forward\"",
        "\"api-canary\":\"forward\"",
        "\"wild\":\"forward\"",
        "\"exact\":\"forward\"",
        "\"default\":\"forward\"",
        "\"posts\":\"reject\"",
    ] {
        assert!(routes.iter().any(|r| r == want), "{want} not in {routes:?}");
    }
    s.gw.stop().await;
}

#[actix_rt::test]
async fn explain_says_why_the_route_won_and_how_the_split_and_balancer_choose() {
    let s = setup().await;
    let e = explain(&s.gw, &TABLE[3]).await;
    assert_eq!(e["route"]["name"], "api-canary");
    assert_eq!(e["route"]["rank"], 1);
    assert_eq!(e["also_matched"][0]["name"], "api");
    assert_eq!(
        e["also_matched"][0]["lost_because"],
        "api-canary has a method or header condition"
    );
    assert_eq!(e["also_matched"][1]["name"], "wild");
    assert_eq!(
        e["also_matched"][1]["lost_because"],
        "api-canary has a more specific host"
    );

    let e = explain(&s.gw, &TABLE[0]).await;
    assert_eq!(e["split"]["mode"], "sticky");
    assert_eq!(e["split"]["sticky"], "header:x-user");
    assert_eq!(e["split"]["sticky_value"], "alice");
    assert_eq!(e["split"]["targets"][0]["share"], 0.9);
    assert_eq!(e["upstream_path"], "/v1/users?x=1");
    let api = &e["upstreams"][0];
    assert_eq!(api["load_balancer"], "weighted_round_robin");
    assert_eq!(api["backends"].as_array().map(Vec::len), Some(2));

    // Without the sticky value the split is random: no backend is promised, each upstream's
    // next pick is shown.
    let e = explain(&s.gw, &("GET", "api.example.com", "/api", &[])).await;
    assert_eq!(e["split"]["mode"], "random");
    assert_eq!(e["outcome"]["action"], "forward");
    assert_eq!(e["outcome"]["backend"], Value::Null);
    assert_eq!(e["upstreams"].as_array().map(Vec::len), Some(2));
    assert!(e["upstreams"][1]["next"].is_string(), "{e:#}");

    // Bad paths and hosts are refused as the data plane refuses them.
    let e = explain(&s.gw, &("GET", "", "/a/%2f/b", &[])).await;
    assert_eq!(e["outcome"]["status"], 400, "{e:#}");
    let e = explain(&s.gw, &("GET", "a.test, b.test", "/", &[])).await;
    assert_eq!(e["outcome"]["status"], 400, "{e:#}");
    s.gw.stop().await;
}

#[actix_rt::test]
async fn explain_moves_no_state() {
    let s = setup().await;
    let stats_before = s.gw.admin_get("/stats").await.json();
    let case: Case = ("GET", "api.example.com", "/api/x", &[("X-User", "alice")]);
    let first = explain(&s.gw, &case).await;
    for _ in 0..10 {
        let again = explain(&s.gw, &case).await;
        assert_eq!(again["outcome"], first["outcome"]);
    }
    // The explained requests counted nowhere.
    let stats_after = s.gw.admin_get("/stats").await.json();
    assert_eq!(stats_after["requests"], stats_before["requests"]);
    // And the balancer's cursor did not move: the real request goes where the first answer said.
    let (_, served, _) = send_case(&s, &case).await;
    let want = first["outcome"]["backend"].as_str().expect("a backend");
    assert_eq!(served.as_deref(), Some(s.names[want].as_str()));

    // No rate-limit token is taken: the bucket holds one token, refilled once in 1000 s.
    let post: Case = ("POST", "other.test", "/submit/x", &[]);
    for _ in 0..5 {
        let e = explain(&s.gw, &post).await;
        assert_eq!(e["rate_limit"]["scope"], "route");
        assert_eq!(e["rate_limit"]["key"], "ip 127.0.0.1");
    }
    assert_eq!(
        send_case(&s, &post).await.0,
        200,
        "the only token was still there"
    );
    assert_eq!(send_case(&s, &post).await.0, 429);
    s.gw.stop().await;
}

#[actix_rt::test]
async fn explain_follows_drains_while_clients_keep_sending() {
    let s = setup().await;
    let a1 = s.ups[2].addr_str();
    let case: Case = ("GET", "api.example.com", "/api/x", &[("X-User", "alice")]);
    assert_eq!(
        s.gw.admin_send("POST", &format!("/backends/{a1}/drain"))
            .await
            .status,
        200
    );
    // Four keep-alive clients keep the gateway busy meanwhile.
    let load = async {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let url = s.gw.url("/anything");
            tasks.push(async move {
                let client = awc::Client::default();
                for _ in 0..50 {
                    let r = fetch(client.get(&url)).await;
                    assert_eq!(r.status, 200);
                }
            });
        }
        futures_util::future::join_all(tasks).await;
    };
    let probe = async {
        for _ in 0..20 {
            let e = explain(&s.gw, &case).await;
            let api = &e["upstreams"][0]["backends"][0];
            assert_eq!(api["addr"], a1.as_str());
            assert_eq!(api["eligible"], false);
            assert_eq!(api["why_not"][0], "draining");
            assert_ne!(e["outcome"]["backend"], a1.as_str());
        }
    };
    futures_util::future::join(load, probe).await;
    for _ in 0..4 {
        let (_, served, _) = send_case(&s, &case).await;
        assert_eq!(served.as_deref(), Some("a2"));
    }
    s.gw.stop().await;
}

#[actix_rt::test]
async fn explain_refuses_bad_parameters_with_400() {
    let s = setup().await;
    for q in [
        "/explain?pth=/",
        "/explain?method=G%20T",
        "/explain?path=nope",
        "/explain?header=NoColon",
        "/explain?client=not-an-ip",
    ] {
        let r = s.gw.admin_get(q).await;
        assert_eq!(r.status, 400, "{q}: {r:?}");
        assert!(r.json()["error"].is_string(), "{q}: {r:?}");
    }
    s.gw.stop().await;
}

#[actix_rt::test]
async fn offline_explain_gives_the_live_answer() {
    let s = setup().await;
    let dir = common::config_file::TempDir::new();
    let file = dir.path("gogate.yaml");
    common::config_file::write_raw(&file, &s.yaml);
    let bin = std::env::var("GOGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gogate").into());
    for case in TABLE {
        let (method, host, path, headers) = case;
        let mut args = vec![
            "explain".to_string(),
            "-config".into(),
            file.display().to_string(),
        ];
        args.extend([
            "--method".into(),
            method.to_string(),
            "--path".into(),
            path.to_string(),
        ]);
        args.extend(["--client".into(), "127.0.0.1".into()]);
        if !host.is_empty() {
            args.extend(["--host".into(), host.to_string()]);
        }
        for (k, v) in *headers {
            args.extend(["--header".into(), format!("{k}:{v}")]);
        }
        let out = std::process::Command::new(&bin)
            .args(&args)
            .output()
            .expect("run gogate explain");
        assert!(
            out.status.success(),
            "{case:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let offline: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        // A fresh gateway has not moved its cursors either: the answers are equal.
        let live = explain(&s.gw, case).await;
        for key in [
            "outcome",
            "route",
            "also_matched",
            "upstream_path",
            "split",
            "upstreams",
        ] {
            assert_eq!(offline[key], live[key], "{case:?} {key}");
        }
    }
    let bad = std::process::Command::new(&bin)
        .args([
            "explain",
            "-config",
            &file.display().to_string(),
            "--path",
            "x",
        ])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    s.gw.stop().await;
}

/// A CORS route and a JWT route: explain's verdicts (preflight 204/403, 401 without a valid
/// token, forward with one) are what real requests get.
#[actix_rt::test]
async fn explain_applies_cors_and_jwt_as_the_data_plane_does() {
    const SECRET: &str = "explain-test-secret-of-32-bytes!!";
    let up = Upstream::new("up").start().await;
    let yaml = format!(
        "{}routes:\n  - name: app\n    match: {{pathPrefix: /app}}\n    upstreams: [{{name: default}}]\n    cors: true\n\
         \x20 - name: private\n    match: {{pathPrefix: /private}}\n    upstreams: [{{name: default}}]\n    auth: jwt\n\
         cors:\n  allowedOrigins: [\"https://app.test\"]\n\
         jwt:\n  algorithms: [HS256]\n  secret: \"{SECRET}\"\n  requireExp: false\n",
        backends_yaml(&[&up.addr_str()], "")
    );
    let gw = gateway(&yaml).await;
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "u1"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let bearer = format!("Bearer {good}");
    /// Method, path, headers, the status both must give.
    type Probe<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Probe> = vec![
        (
            "OPTIONS",
            "/app/x",
            vec![
                ("Origin", "https://app.test"),
                ("Access-Control-Request-Method", "GET"),
            ],
            204,
        ),
        (
            "OPTIONS",
            "/app/x",
            vec![
                ("Origin", "https://evil.test"),
                ("Access-Control-Request-Method", "GET"),
            ],
            403,
        ),
        ("GET", "/app/x", vec![("Origin", "https://app.test")], 200),
        ("GET", "/private/x", vec![], 401),
        (
            "GET",
            "/private/x",
            vec![("Authorization", "Bearer not.a.token")],
            401,
        ),
        (
            "GET",
            "/private/x",
            vec![("Authorization", bearer.as_str())],
            200,
        ),
    ];
    for (method, path, headers, want) in &cases {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("method", method).append_pair("path", path);
        for (k, v) in headers {
            q.append_pair("header", &format!("{k}:{v}"));
        }
        let e = gw
            .admin_get(&format!("/explain?{}", q.finish()))
            .await
            .json();
        let predicted = e["outcome"]["status"].as_u64().map_or(200, |s| s as u16);
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = awc::Client::default().request(m, gw.url(path));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let real = fetch(req).await.status;
        assert_eq!(
            (predicted, real),
            (*want, *want),
            "{method} {path} {headers:?}: {e:#}"
        );
        if path.starts_with("/private") {
            let token = e["auth"]["token"].as_str().expect("auth report");
            assert_eq!(token == "accepted", *want == 200, "{e:#}");
        } else {
            assert_eq!(e["cors"]["origin_allowed"], *want != 403, "{e:#}");
        }
    }
    gw.stop().await;
}
