//! Hot reload (DESIGN A2, B3, B6, B10) against a real gateway started from a file: each kind of
//! change applies live, bad files change nothing, kept backends keep their state, and the file
//! watcher sees atomic renames and ConfigMap-style symlink swaps.
mod common;
use common::config_file::*;
use common::*;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// YAML with `addrs` as the default upstream, health checks off, plus `extra` (indented for
/// `server:`) and `tail` (top-level keys).
fn yaml(addrs: &[&str], extra: &str, tail: &str) -> String {
    format!("{}{tail}", backends_yaml(addrs, extra))
}

/// Which backends answered `n` GETs of `path`, by name.
async fn spread(gw: &TestGateway, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let name = r.json()["backend"].as_str().unwrap_or("?").to_string();
        *out.entry(name).or_default() += 1;
    }
    out
}

async fn reload(gw: &TestGateway) -> Resp {
    gw.admin_send("POST", "/reload").await
}

/// `POST /reload` after the file was written: 200, and `changed` as expected. The file watcher
/// may have applied the new file first (on a busy machine it often does); the reload then
/// finds nothing new, and the watcher's own reload of this generation is the proof instead.
async fn reload_ok(gw: &TestGateway, changed: bool) -> u64 {
    let r = reload(gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let generation = j["generation"].as_u64().expect("generation");
    if changed && j["changed"] == false {
        let by_watcher = gw.logs.with_msg("configuration reloaded").iter().any(|l| {
            l["changed"] == true && l["generation"] == generation && l["trigger"] != "api"
        });
        assert!(
            by_watcher,
            "the reload changed nothing and no watcher reload applied generation {generation}: {j}"
        );
    } else {
        assert_eq!(j["changed"], changed, "{j}");
    }
    generation
}

fn reloads_metric(text: &str, result: &str) -> f64 {
    let prefix = format!("gogate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in metrics"))
}

async fn start(dir: &TempDir, text: &str) -> (TestGateway, std::path::PathBuf) {
    let path = dir.path("gogate.yaml");
    write_config(&path, text);
    (gateway_from_file(&path).await, path)
}

#[actix_rt::test]
async fn added_and_removed_backends_apply_live() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    assert_eq!(spread(&gw, "/", 4).await, BTreeMap::from([("a".into(), 4)]));

    write_config(&path, &yaml(&[&a.addr_str(), &b.addr_str()], "", ""));
    assert_eq!(reload_ok(&gw, true).await, 2);
    assert_eq!(
        spread(&gw, "/", 4).await,
        BTreeMap::from([("a".into(), 2), ("b".into(), 2)])
    );

    write_config(&path, &yaml(&[&b.addr_str()], "", ""));
    assert_eq!(reload_ok(&gw, true).await, 3);
    assert_eq!(spread(&gw, "/", 4).await, BTreeMap::from([("b".into(), 4)]));
    let list = gw.admin_get("/backends").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    gw.stop().await;
}

#[actix_rt::test]
async fn route_changes_apply_live() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let up = format!(
        "upstreams:\n  api:\n    backends: [{{addr: \"{}\"}}]\n",
        b.addr_str()
    );
    let route = |prefix: &str| {
        format!("{up}routes:\n  - name: api\n    match: {{pathPrefix: \"{prefix}\"}}\n    upstreams: [{{name: api}}]\n")
    };
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", &route("/api"))).await;
    assert_eq!(
        spread(&gw, "/api/x", 1).await,
        BTreeMap::from([("b".into(), 1)])
    );
    assert_eq!(
        spread(&gw, "/v2/x", 1).await,
        BTreeMap::from([("a".into(), 1)])
    );

    write_config(&path, &yaml(&[&a.addr_str()], "", &route("/v2")));
    reload_ok(&gw, true).await;
    assert_eq!(
        spread(&gw, "/api/x", 1).await,
        BTreeMap::from([("a".into(), 1)])
    );
    assert_eq!(
        spread(&gw, "/v2/x", 1).await,
        BTreeMap::from([("b".into(), 1)])
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn balancer_and_weight_changes_apply_live() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let cfg = |lb: &str, wa: u32| {
        format!(
            "server:\n  backends: [{{addr: \"{}\", weight: {wa}}}, {{addr: \"{}\"}}]\n  health: {{enabled: false}}\n  loadBalancer: {lb}\n",
            a.addr_str(),
            b.addr_str()
        )
    };
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &cfg("round_robin", 3)).await;
    assert_eq!(
        spread(&gw, "/", 8).await,
        BTreeMap::from([("a".into(), 4), ("b".into(), 4)])
    );
    write_config(&path, &cfg("weighted_round_robin", 3));
    reload_ok(&gw, true).await;
    assert_eq!(
        spread(&gw, "/", 8).await,
        BTreeMap::from([("a".into(), 6), ("b".into(), 2)])
    );
    // A weight change keeps the backend (its counters go on).
    let before = a.hits();
    write_config(&path, &cfg("weighted_round_robin", 1));
    reload_ok(&gw, true).await;
    assert_eq!(
        spread(&gw, "/", 8).await,
        BTreeMap::from([("a".into(), 4), ("b".into(), 4)])
    );
    let list = gw.admin_get("/backends").await.json();
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|x| x["addr"] == a.addr_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(entry["weight"], 1, "{list}");
    assert_eq!(entry["requests_total"], (before + 4) as u64, "{list}");
    gw.stop().await;
}

#[actix_rt::test]
async fn rate_limit_changes_apply_live() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    for _ in 0..5 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    let limited = "  rateLimit: {enabled: true, rate: 1, burst: 1}\n";
    write_config(&path, &yaml(&[&a.addr_str()], limited, ""));
    reload_ok(&gw, true).await;
    assert_eq!(gw.get("/").await.status, 200);
    assert_eq!(gw.get("/").await.status, 429);
    gw.stop().await;
}

#[actix_rt::test]
async fn logging_level_changes_apply_live() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let level = |l: &str| yaml(&[&a.addr_str()], "", &format!("logging: {{level: {l}}}\n"));
    let (gw, path) = start(&dir, &level("error")).await;
    // The level handle reaches the config actor asynchronously: wait until info is filtered.
    eventually("info lines filtered", || async {
        let n = gw.logs.with_msg("request completed").len();
        gw.get("/").await;
        gw.logs.with_msg("request completed").len() == n
    })
    .await;
    write_config(&path, &level("info"));
    reload_ok(&gw, true).await;
    let n = gw.logs.with_msg("request completed").len();
    assert_eq!(gw.get("/").await.status, 200);
    eventually("access line logged at info", || async {
        gw.logs.with_msg("request completed").len() > n
    })
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn watcher_reloads_on_atomic_rename() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    assert_eq!(spread(&gw, "/", 2).await, BTreeMap::from([("a".into(), 2)]));
    write_config(&path, &yaml(&[&b.addr_str()], "", ""));
    eventually("the watcher applied the new file", || async {
        gw.get("/").await.json()["backend"] == "b"
    })
    .await;
    let info = gw.admin_get("/config").await.json();
    assert_eq!(info["generation"], 2, "{info}");
    assert_eq!(info["last_reload"]["result"], "success", "{info}");
    gw.stop().await;
}

/// A log written beside the config while clients keep sending (the reported scenario: `gogate
/// -config ./gw.yaml > ./gw.log`): the watcher must not wait for the directory to fall quiet.
#[actix_rt::test]
async fn watcher_reloads_while_a_log_is_written_beside_the_config() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), dir.path("gw.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&log).expect("create log");
            // Bounded: 20 s at most, a line every 5 ms.
            for i in 0..4000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let _ = writeln!(f, "{{\"msg\":\"request completed\",\"n\":{i}}}");
                let _ = f.flush();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (url, stop) = (gw.url("/"), stop.clone());
            actix_rt::spawn(async move {
                let client = awc::Client::default();
                for _ in 0..2000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let _ = fetch(client.get(&url)).await;
                }
            })
        })
        .collect();
    assert_eq!(spread(&gw, "/", 2).await, BTreeMap::from([("a".into(), 2)]));
    write_config(&path, &yaml(&[&b.addr_str()], "", ""));
    eventually(
        "the watcher applied the new file despite the busy directory",
        || async { gw.get("/").await.json()["backend"] == "b" },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("log writer");
    for c in clients {
        let _ = c.await;
    }
    gw.stop().await;
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

#[actix_rt::test]
async fn watcher_reloads_on_configmap_symlink_swap() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    for (v, up) in [("..v1", &a), ("..v2", &b)] {
        std::fs::create_dir(dir.path(v)).expect("mkdir");
        write_config(
            &dir.path(v).join("config.yaml"),
            &yaml(&[&up.addr_str()], "", ""),
        );
    }
    symlink("..v1", &dir.path("..data"));
    symlink("..data/config.yaml", &dir.path("config.yaml"));
    let gw = gateway_from_file(&dir.path("config.yaml")).await;
    assert_eq!(spread(&gw, "/", 2).await, BTreeMap::from([("a".into(), 2)]));

    // What the kubelet does: a new `..data` link beside the old one, renamed over it.
    symlink("..v2", &dir.path("..data_tmp"));
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).expect("swap ..data");
    eventually("the watcher followed the symlink swap", || async {
        gw.get("/").await.json()["backend"] == "b"
    })
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn bad_reload_keeps_old_config() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    let good = std::fs::read_to_string(&path).expect("read config");
    // Each bad file with the errors it has, one line each: a file with three lists all three,
    // sorted by line.
    let three = good.replace(
        "server:\n",
        "server:\n  loadBalancer: fastest\n  frobnicate: 1\n",
    ) + "routes:\n  - upstreams: [{name: nope}]\n";
    let last = three.lines().count();
    let bad = [
        (
            "server:\n  backends: [\n".to_string(),
            vec!["gogate.yaml".to_string()],
        ),
        (
            good.replace("server:\n", "server:\n  frobnicate: 1\n"),
            vec!["frobnicate".into()],
        ),
        (
            good.replace("server:\n", "server:\n  loadBalancer: fastest\n"),
            vec!["fastest".into()],
        ),
        (
            three,
            vec![
                "gogate.yaml:2:3: server.loadBalancer: invalid loadBalancer \"fastest\"".into(),
                "gogate.yaml:3:3: server: unknown field `frobnicate`".into(),
                format!(
                    "gogate.yaml:{last}:18: routes[0].upstreams[0].name: unknown upstream \"nope\""
                ),
            ],
        ),
    ];
    for (i, (text, needles)) in bad.iter().enumerate() {
        write_raw(&path, text);
        let r = reload(&gw).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let err = r.json()["error"].as_str().unwrap_or_default().to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), needles.len(), "{err}");
        for (line, needle) in lines.iter().zip(needles) {
            assert!(
                line.contains(needle.as_str()),
                "error {line:?} should name {needle}"
            );
        }
        assert!(
            err.contains("gogate.yaml"),
            "error {err:?} should name the file"
        );
        assert_eq!(spread(&gw, "/", 2).await, BTreeMap::from([("a".into(), 2)]));
        let info = gw.admin_get("/config").await.json();
        assert_eq!(info["generation"], 1, "{info}");
        assert_eq!(info["last_reload"]["result"], "failure", "{info}");
        assert_eq!(info["last_reload"]["error"], err.as_str(), "{info}");
        let text = gw.metrics_text().await;
        // The watcher may count the same bad file too (it is told about every write).
        assert!(reloads_metric(&text, "failure") >= (i + 1) as f64, "{text}");
        assert_eq!(reloads_metric(&text, "success"), 0.0);
    }
    let failures = gw.logs.with_msg("configuration reload failed");
    assert!(
        failures
            .iter()
            .any(|l| l["error"].as_str().is_some_and(|e| e.lines().count() == 3)),
        "the log line of a failed reload lists every error: {failures:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn generation_increases_only_when_content_changes() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    assert_eq!(reload_ok(&gw, false).await, 1);
    let same = std::fs::read_to_string(&path).expect("read config");
    write_raw(&path, &format!("# a comment only\n{same}"));
    assert_eq!(reload_ok(&gw, false).await, 1);
    write_config(&path, &yaml(&[&b.addr_str()], "", ""));
    assert_eq!(reload_ok(&gw, true).await, 2);
    let text = gw.metrics_text().await;
    assert!(reloads_metric(&text, "success") >= 3.0, "{text}");
    let info = gw.admin_get("/config").await.json();
    assert_eq!(info["generation"], 2, "{info}");
    assert!(info["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("gogate.yaml")));
    assert!(info["loaded_at"].is_string(), "{info}");
    gw.stop().await;
}

#[actix_rt::test]
async fn shared_admin_listener_changes_are_reported_not_ignored() {
    let a = Upstream::new("a").start().await;
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str()], "", "")).await;
    assert_eq!(gw.get("/").await.status, 200);
    // Listeners move live (tests/reload_listeners.rs), but not admin and metrics sharing one
    // (as they do here: both pinned to 127.0.0.1:0).
    let moved = with_server(
        &yaml(&[&a.addr_str()], "", ""),
        &[("admin.listenAddr", "127.0.0.1:1")],
    );
    write_raw(&path, &moved);
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["restart_required"],
        serde_json::json!(["server.admin.listenAddr"]),
        "{}",
        r.body
    );
    assert!(!gw.logs.with_msg("some changes need a restart").is_empty());
    // The rest applies and the old listener keeps serving; a later reload still reports it.
    assert_eq!(gw.get("/").await.status, 200);
    let again = reload(&gw).await.json();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(
        again["restart_required"][0], "server.admin.listenAddr",
        "{again}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn health_settings_apply_live() {
    let a = Upstream::new("a").start().await;
    let dead = dead_addr();
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&a.addr_str(), &dead], "", "")).await;
    let healthy = |list: Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|b| b["addr"] == dead.as_str()).cloned())
            .map(|b| b["healthy"].clone())
    };
    assert_eq!(
        healthy(gw.admin_get("/backends").await.json()),
        Some(true.into())
    );
    let checked = format!(
        "server:\n  backends: [{{addr: \"{}\"}}, {{addr: \"{dead}\"}}]\n  health: {{interval: 100ms, timeout: 80ms, unhealthyThreshold: 1}}\n",
        a.addr_str()
    );
    write_config(&path, &checked);
    reload_ok(&gw, true).await;
    eventually("the new health checks mark the dead backend", || async {
        healthy(gw.admin_get("/backends").await.json()) == Some(false.into())
    })
    .await;
    gw.stop().await;
}

#[actix_rt::test]
async fn request_timeout_and_retry_changes_apply_live() {
    // A 300 ms upstream: with request 100ms the gateway answers 504; after a reload to 2s, 200.
    let slow = Upstream::new("slow")
        .delay(std::time::Duration::from_millis(300))
        .start()
        .await;
    let dir = TempDir::new();
    let tight = yaml(&[&slow.addr_str()], "  timeouts: {request: 100ms}\n", "");
    let (gw, path) = start(&dir, &tight).await;
    assert_eq!(gw.get("/").await.status, 504);

    write_config(
        &path,
        &yaml(&[&slow.addr_str()], "  timeouts: {request: 2s}\n", ""),
    );
    reload_ok(&gw, true).await;
    assert_eq!(gw.get("/").await.status, 200);

    // Retry: with [dead, live] and attempts 0 every other request fails; after a reload to 1,
    // none does.
    let live = Upstream::new("live").start().await;
    let dead = dead_addr();
    let no_retry = yaml(&[&dead, &live.addr_str()], "  retry: {attempts: 0}\n", "");
    write_config(&path, &no_retry);
    reload_ok(&gw, true).await;
    let mut failed = 0;
    for _ in 0..6 {
        if gw.get("/").await.status == 502 {
            failed += 1;
        }
    }
    assert_eq!(failed, 3, "round robin over [dead, live] without retries");
    write_config(
        &path,
        &yaml(&[&dead, &live.addr_str()], "  retry: {attempts: 1}\n", ""),
    );
    reload_ok(&gw, true).await;
    for _ in 0..6 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn circuit_breaker_enabled_by_reload_opens_on_failures() {
    // Breaker off: a failing backend keeps receiving traffic. After a reload that enables it,
    // failureThreshold failures open it and traffic fails over to the healthy backend.
    let bad = Upstream::new("bad").status(500).start().await;
    let good = Upstream::new("good").start().await;
    let dir = TempDir::new();
    let (gw, path) = start(&dir, &yaml(&[&bad.addr_str(), &good.addr_str()], "", "")).await;
    for _ in 0..6 {
        gw.get("/").await;
    }
    assert_eq!(
        bad.hits(),
        3,
        "breaker off: round robin keeps using the failing backend"
    );

    let breaker = "  circuitBreaker: {enabled: true, failureThreshold: 2, successThreshold: 1, timeout: 60s}\n";
    write_config(
        &path,
        &yaml(&[&bad.addr_str(), &good.addr_str()], breaker, ""),
    );
    reload_ok(&gw, true).await;
    for _ in 0..4 {
        gw.get("/").await;
    }
    eventually("the breaker of the failing backend opens", || async {
        let list = gw.admin_get("/backends").await.json();
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|b| b["addr"] == bad.addr_str() && b["circuit_breaker"] == "open")
        })
    })
    .await;
    let before = bad.hits();
    for _ in 0..6 {
        assert_eq!(gw.get("/").await.status, 200);
    }
    assert_eq!(bad.hits(), before, "an open breaker gets no traffic");
    gw.stop().await;
}
