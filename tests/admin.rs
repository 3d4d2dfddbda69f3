//! Admin API (DESIGN B6, B10) and the metrics endpoint (B7) against a real gateway.
mod common;
use common::*;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An L7 GET through the gateway that must succeed; returns the backend name that answered.
async fn get_backend(gw: &TestGateway, path: &str) -> String {
    let r = gw.get(path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()["backend"]
        .as_str()
        .expect("backend field")
        .to_string()
}

fn find_backend<'a>(list: &'a Value, addr: &str) -> &'a Value {
    list.as_array()
        .expect("/backends is an array")
        .iter()
        .find(|b| b["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in /backends: {list}"))
}

#[actix_rt::test]
async fn health_and_ready() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let h = gw.admin_get("/health").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json(), json!({"status": "ok"}));
    let r = gw.admin_get("/ready").await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

#[actix_rt::test]
async fn backends_lists_every_backend_with_all_fields() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let c = Upstream::new("c").start().await;
    let yaml = format!(
        "{}upstreams:\n  api-v2:\n    backends: [{{addr: \"{}\", weight: 3}}]\n",
        backends_yaml(&[&a.addr_str(), &b.addr_str()], ""),
        c.addr_str()
    );
    let gw = gateway(&yaml).await;
    let r = gw.admin_get("/backends").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    let arr = list.as_array().expect("array");
    assert_eq!(arr.len(), 3, "{list}");

    let fields = [
        "id",
        "upstream",
        "addr",
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
    ];
    for entry in arr {
        let obj = entry.as_object().expect("backend object");
        for f in fields {
            assert!(obj.contains_key(f), "field {f} missing in {entry}");
        }
        assert!(
            entry["id"].as_str().is_some_and(|s| !s.is_empty()),
            "{entry}"
        );
        assert_eq!(entry["healthy"], true, "{entry}");
        assert_eq!(entry["draining"], false, "{entry}");
        assert_eq!(entry["circuit_breaker"], "closed", "{entry}");
        assert_eq!(entry["active_connections"], 0, "{entry}");
        assert_eq!(entry["requests_total"], 0, "{entry}");
        assert_eq!(entry["failures_total"], 0, "{entry}");
        assert!(
            entry["last_check"].is_null() || entry["last_check"].is_string(),
            "{entry}"
        );
        assert!(
            entry["last_error"].is_null() || entry["last_error"].is_string(),
            "{entry}"
        );
        assert_eq!(entry["source"], "static", "{entry}");
    }
    let ids: std::collections::HashSet<&str> =
        arr.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ids are unique: {list}");

    let ea = find_backend(&list, &a.addr_str());
    assert_eq!(ea["upstream"], "default");
    assert_eq!(ea["weight"], 1);
    assert_eq!(find_backend(&list, &b.addr_str())["upstream"], "default");
    let ec = find_backend(&list, &c.addr_str());
    assert_eq!(
        ec["upstream"], "api-v2",
        "named upstream appears with its name: {ec}"
    );
    assert_eq!(ec["weight"], 3);

    // Counters move with traffic.
    get_backend(&gw, "/one").await;
    let list = gw.admin_get("/backends").await.json();
    assert_eq!(
        find_backend(&list, &a.addr_str())["requests_total"],
        1,
        "{list}"
    );
    assert_eq!(
        find_backend(&list, &b.addr_str())["requests_total"],
        0,
        "{list}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn stats_has_the_contract_shape_and_counts_requests() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str(), &b.addr_str()], "")).await;

    let before = gw.admin_get("/stats").await;
    assert_eq!(before.status, 200);
    let before = before.json();
    assert_eq!(before["requests"]["total"], 0, "{before}");

    for i in 0..3 {
        get_backend(&gw, &format!("/r{i}")).await;
    }
    eventually("/stats counts 3 requests", || async {
        gw.admin_get("/stats").await.json()["requests"]["total"] == 3
    })
    .await;
    let s = gw.admin_get("/stats").await.json();

    assert!(
        s["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0),
        "{s}"
    );
    assert!(
        s["connections"]["total"].as_u64().is_some_and(|n| n >= 1),
        "{s}"
    );
    assert!(s["connections"]["active"].is_number(), "{s}");
    assert_eq!(s["requests"]["total"], 3, "{s}");
    assert_eq!(s["requests"]["success"], 3, "{s}");
    assert_eq!(s["requests"]["failure"], 0, "{s}");
    assert_eq!(s["requests"]["rate_limited"], 0, "{s}");
    for q in ["p50", "p90", "p99"] {
        let v = s["latency_ms"][q]
            .as_f64()
            .unwrap_or_else(|| panic!("latency_ms.{q} missing: {s}"));
        assert!(
            v > 0.0,
            "latency_ms.{q} should be positive after requests: {s}"
        );
    }
    let p50 = s["latency_ms"]["p50"].as_f64().unwrap();
    let p99 = s["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p50 <= p99, "{s}");

    let backends = s["backends"].as_object().expect("backends object");
    assert_eq!(backends.len(), 2, "{s}");
    let mut total = 0;
    for (up, addr) in [(&a, a.addr_str()), (&b, b.addr_str())] {
        let e = &backends[&addr];
        for f in [
            "requests_total",
            "failures_total",
            "bytes_sent",
            "bytes_received",
            "active_connections",
        ] {
            assert!(e[f].is_number(), "backends[{addr}].{f} missing: {s}");
        }
        assert_eq!(e["requests_total"], up.hits() as u64, "{s}");
        assert_eq!(e["failures_total"], 0, "{s}");
        total += e["requests_total"].as_u64().unwrap();
    }
    assert_eq!(total, 3);
    assert_eq!(
        (a.hits(), b.hits()),
        (2, 1),
        "round robin from the first backend"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn drain_and_undrain_a_backend() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let fast = Upstream::new("fast").start().await;
    let (sa, fa) = (slow.addr_str(), fast.addr_str());
    let gw = gateway(&backends_yaml(&[&sa, &fa], "")).await;

    // An in-flight request to the backend about to be drained (round robin starts at it).
    let url = gw.url("/in-flight");
    let in_flight = actix_rt::spawn(async move { fetch(awc::Client::default().get(url)).await });
    eventually(
        "the slow backend received the in-flight request",
        || async { slow.hits() == 1 },
    )
    .await;

    let r = gw
        .admin_send("POST", &format!("/backends/{sa}/drain"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = gw.admin_get("/backends").await.json();
    assert_eq!(find_backend(&list, &sa)["draining"], true, "{list}");
    assert_eq!(find_backend(&list, &fa)["draining"], false, "{list}");

    for i in 0..4 {
        assert_eq!(
            get_backend(&gw, &format!("/while-drained/{i}")).await,
            "fast"
        );
    }
    assert_eq!(slow.hits(), 1, "a drained backend gets no new requests");

    let done = in_flight.await.expect("in-flight task");
    assert_eq!(
        done.status, 200,
        "the in-flight request finished despite the drain: {}",
        done.body
    );
    assert_eq!(done.json()["backend"], "slow");

    let r = gw
        .admin_send("DELETE", &format!("/backends/{sa}/drain"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = gw.admin_get("/backends").await.json();
    assert_eq!(find_backend(&list, &sa)["draining"], false, "{list}");
    let mut got = vec![
        get_backend(&gw, "/back/1").await,
        get_backend(&gw, "/back/2").await,
    ];
    got.sort();
    assert_eq!(
        got,
        ["fast", "slow"],
        "back in rotation: requests alternate again"
    );
    assert_eq!(slow.hits(), 2);

    for method in ["POST", "DELETE"] {
        let r = gw
            .admin_send(method, "/backends/10.255.255.1:1234/drain")
            .await;
        assert_eq!(r.status, 404, "{method} unknown backend: {}", r.body);
        assert!(
            r.json()["error"].is_string(),
            "404 is a JSON error: {}",
            r.body
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn config_shows_generation_and_config() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let r = gw.admin_get("/config").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["generation"], 1, "{c}");
    assert_eq!(
        c["config"]["server"]["backends"][0]["addr"],
        a.addr_str(),
        "{c}"
    );
    for f in ["file", "loaded_at", "last_reload"] {
        assert!(
            c.as_object().unwrap().contains_key(f),
            "field {f} missing: {c}"
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn admin_token_guards_everything_but_health_and_ready() {
    let a = Upstream::new("a").start().await;
    let addr = a.addr_str();
    let gw = gateway(&backends_yaml(&[&addr], "  admin: {token: \"s3cret\"}\n")).await;
    let client = awc::Client::default();
    let req = |method: &str, path: &str, auth: Option<&str>| {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client.request(m, gw.admin_url(path));
        match auth {
            Some(v) => r.insert_header(("Authorization", v)),
            None => r,
        }
    };

    for path in ["/health", "/ready"] {
        assert_eq!(
            fetch(req("GET", path, None)).await.status,
            200,
            "{path} is open without a token"
        );
    }

    let drain = format!("/backends/{addr}/drain");
    let guarded = [
        ("GET", "/stats"),
        ("GET", "/backends"),
        ("GET", "/config"),
        ("POST", drain.as_str()),
        ("DELETE", drain.as_str()),
    ];
    for (method, path) in guarded {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Basic czNjcmV0"),
        ] {
            let r = fetch(req(method, path, auth)).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert!(
                r.json()["error"].is_string(),
                "401 is a JSON error: {}",
                r.body
            );
        }
        let r = fetch(req(method, path, Some("Bearer s3cret"))).await;
        assert_eq!(
            r.status, 200,
            "{method} {path} with the right token: {}",
            r.body
        );
    }

    let r = fetch(req("GET", "/config", Some("Bearer s3cret"))).await;
    assert_eq!(
        r.json()["config"]["server"]["admin"]["token"],
        "<redacted>",
        "{}",
        r.body
    );
    assert!(
        !r.body.contains("s3cret"),
        "the token leaks in /config: {}",
        r.body
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn ready_turns_503_while_draining_and_health_stays_200() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  shutdown: {drainTimeout: 5s}\n",
    ))
    .await;
    let (admin, tcp) = (gw.admin, gw.tcp.unwrap());
    let get = move |path: &'static str| async move {
        fetch(awc::Client::default().get(format!("http://{admin}{path}")))
            .await
            .status
    };
    assert_eq!(get("/ready").await, 200);
    // An open L4 session holds the drain open.
    let mut session = tokio::net::TcpStream::connect(gw.tcp.unwrap())
        .await
        .unwrap();
    session.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    eventually("the L4 session is active", || async {
        gw.admin_get("/stats").await.json()["connections"]["active"] == 1
    })
    .await;

    let stopping = actix_rt::spawn(gw.stop());
    eventually("/ready answers 503 while draining", || async {
        get("/ready").await == 503
    })
    .await;
    assert_eq!(get("/health").await, 200, "liveness holds during the drain");
    assert!(
        !stopping.is_finished(),
        "shutdown waited for the open session"
    );
    // No new L4 connections are taken during the drain.
    match tokio::net::TcpStream::connect(tcp).await {
        Err(_) => {}
        Ok(mut s) => {
            let mut buf = [0u8; 8];
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                other => panic!("a new L4 connection was served during the drain: {other:?}"),
            }
        }
    }

    drop(session);
    tokio::time::timeout(Duration::from_secs(4), stopping)
        .await
        .expect("shutdown finished once the session closed")
        .unwrap();
}

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label in {line:?}"));
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn has_sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[actix_rt::test]
async fn metrics_endpoint_exposes_the_contract_families() {
    let a = Upstream::new("a").start().await;
    let addr = a.addr_str();
    let gw = gateway(&backends_yaml(&[&addr], "")).await;
    assert_eq!(get_backend(&gw, "/m").await, "a");
    // One L4 session too (through to the HTTP upstream), so both listeners have traffic.
    let mut s = tokio::net::TcpStream::connect(gw.tcp.unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /l4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .expect("L4 reply")
        .unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    drop(s);

    let metrics_res = fetch(awc::Client::default().get(gw.metrics_url())).await;
    assert_eq!(metrics_res.status, 200);
    let ct = metrics_res
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");

    // Wait for the L4 session to be recorded (at session end).
    eventually("the tcp session is counted", || async {
        has_sample(
            &parse_samples(&gw.metrics_text().await),
            "gogate_requests_total",
            &[("listener", "tcp"), ("status", "success")],
        ) == Some(1.0)
    })
    .await;
    let text = gw.metrics_text().await;
    let samples = parse_samples(&text);

    let types = [
        ("gogate_requests_total", "counter"),
        ("gogate_http_responses_total", "counter"),
        ("gogate_request_duration_seconds", "histogram"),
        ("gogate_connections_total", "counter"),
        ("gogate_connections_active", "gauge"),
        ("gogate_backend_connections_active", "gauge"),
        ("gogate_backend_healthy", "gauge"),
        ("gogate_uptime_seconds", "gauge"),
        ("gogate_config_reloads_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ];
    for (name, ty) in types {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {ty}")),
            "no `# TYPE {name} {ty}` in:\n{text}"
        );
        let sample_name = if ty == "histogram" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(
            samples.iter().any(|s| s.name == sample_name),
            "no sample of {sample_name} in:\n{text}"
        );
    }

    let v = |name: &str, labels: &[(&str, &str)]| {
        has_sample(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
    };
    assert_eq!(
        v(
            "gogate_requests_total",
            &[
                ("listener", "http"),
                ("route", "default"),
                ("backend", &addr),
                ("status", "success")
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            "gogate_requests_total",
            &[
                ("listener", "tcp"),
                ("route", "default"),
                ("backend", &addr),
                ("status", "success")
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            "gogate_http_responses_total",
            &[("route", "default"), ("code", "200")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "gogate_request_duration_seconds_count",
            &[("listener", "http"), ("route", "default")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "gogate_request_duration_seconds_count",
            &[("listener", "tcp"), ("route", "default")]
        ),
        1.0
    );
    assert!(v("gogate_connections_total", &[("listener", "http")]) >= 1.0);
    assert_eq!(v("gogate_connections_total", &[("listener", "tcp")]), 1.0);
    assert_eq!(v("gogate_connections_active", &[("listener", "tcp")]), 0.0);
    assert_eq!(
        v(
            "gogate_backend_healthy",
            &[("upstream", "default"), ("backend", &addr)]
        ),
        1.0
    );
    assert_eq!(
        v(
            "gogate_backend_connections_active",
            &[("upstream", "default"), ("backend", &addr)]
        ),
        0.0
    );
    assert!(v("gogate_uptime_seconds", &[]) > 0.0);
    assert_eq!(
        v("gogate_config_reloads_total", &[("result", "success")]),
        0.0
    );
    assert_eq!(
        v("gogate_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    assert!(v("process_resident_memory_bytes", &[]) > 0.0);

    promtool_check(&text);
    gw.stop().await;
}

/// `promtool check metrics` must report no problems (DESIGN B7); skipped when promtool is absent.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("note: promtool not on PATH; skipping `promtool check metrics`");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{stdout}{stderr}",
        out.status
    );
    assert!(
        stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool reported problems:\n{stdout}{stderr}"
    );
}
