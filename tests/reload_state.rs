//! Reloads and registry events keep what they do not change (B9): kept backends keep their
//! drain flag and health verdict, registry backends survive reloads, and traffic running through
//! reloads that add and remove backends sees no failed request.
mod common;
use common::config_file::*;
use common::*;

use gogate_actors::config_actor::{RegistryRemove, RegistryUpsert};
use serde_json::Value;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

async fn backends(gw: &TestGateway) -> Vec<Value> {
    let r = gw.admin_get("/backends").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

fn entry<'a>(list: &'a [Value], addr: &str) -> &'a Value {
    list.iter()
        .find(|b| b["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in {list:?}"))
}

async fn names(gw: &TestGateway, n: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for _ in 0..n {
        let r = gw.get("/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.insert(r.json()["backend"].as_str().unwrap_or("?").to_string());
    }
    out
}

async fn reload(gw: &TestGateway) {
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[actix_rt::test]
async fn kept_backends_keep_drain_and_health_across_reloads() {
    let (a, b, c) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
        Upstream::new("c").start().await,
    );
    let dead = dead_addr();
    let cfg = |addrs: &[&str]| {
        let mut y = String::from("server:\n  backends:\n");
        for x in addrs {
            y.push_str(&format!("    - addr: \"{x}\"\n"));
        }
        y + "  health: {interval: 100ms, timeout: 80ms, unhealthyThreshold: 1, healthyThreshold: 1}\n"
    };
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &cfg(&[&a.addr_str(), &b.addr_str(), &dead]));
    let gw = gateway_from_file(&path).await;
    let r = gw
        .admin_send("POST", &format!("/backends/{}/drain", a.addr_str()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the dead backend is marked unhealthy", || async {
        entry(&backends(&gw).await, &dead)["healthy"] == false
    })
    .await;

    write_config(
        &path,
        &cfg(&[&a.addr_str(), &b.addr_str(), &dead, &c.addr_str()]),
    );
    reload(&gw).await;
    let list = backends(&gw).await;
    assert_eq!(entry(&list, &a.addr_str())["draining"], true, "{list:?}");
    assert_eq!(entry(&list, &dead)["healthy"], false, "{list:?}");
    assert_eq!(names(&gw, 6).await, set(&["b", "c"]));
    // Still so after a few more probe rounds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = backends(&gw).await;
    assert_eq!(entry(&list, &dead)["healthy"], false, "{list:?}");
    assert_eq!(entry(&list, &a.addr_str())["draining"], true, "{list:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn registry_backends_get_traffic_survive_reloads_and_drain_on_removal() {
    let (a, b, c) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
        Upstream::new("c").start().await,
    );
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &backends_yaml(&[&a.addr_str()], ""));
    let gw = gateway_from_file(&path).await;
    let actor = gw.gw.as_ref().expect("running").reload_handle();
    let upsert = |id: &str, addr: String| RegistryUpsert {
        id: id.into(),
        name: "svc".into(),
        addr,
        weight: 1,
    };
    actor.send(upsert("r1", b.addr_str())).await.expect("actor");
    // Same address as the static backend: the same backend, no duplicate.
    actor.send(upsert("r2", a.addr_str())).await.expect("actor");
    let list = backends(&gw).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(entry(&list, &b.addr_str())["source"], "registry");
    assert_eq!(entry(&list, &a.addr_str())["source"], "static");
    assert_eq!(names(&gw, 4).await, set(&["a", "b"]));

    // A reload that changes the static set keeps the registry backend.
    write_config(&path, &backends_yaml(&[&a.addr_str(), &c.addr_str()], ""));
    reload(&gw).await;
    assert_eq!(names(&gw, 6).await, set(&["a", "b", "c"]));

    actor
        .send(RegistryRemove { id: "r1".into() })
        .await
        .expect("actor");
    actor
        .send(RegistryRemove { id: "r2".into() })
        .await
        .expect("actor");
    let list = backends(&gw).await;
    assert_eq!(list.len(), 2, "static backends stay: {list:?}");
    assert_eq!(names(&gw, 6).await, set(&["a", "c"]));
    gw.stop().await;
}

#[actix_rt::test]
async fn reloads_under_load_fail_no_request() {
    let ups = [
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
        Upstream::new("c").start().await,
    ];
    let addrs: Vec<String> = ups.iter().map(|u| u.addr_str()).collect();
    let sets: [&[usize]; 4] = [&[0, 1], &[0, 2], &[1, 2], &[2]];
    let cfg = |set: &[usize]| {
        let list: Vec<&str> = set.iter().map(|&i| addrs[i].as_str()).collect();
        backends_yaml(&list, "")
    };
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &cfg(sets[0]));
    let gw = Rc::new(gateway_from_file(&path).await);

    let stop = Rc::new(AtomicBool::new(false));
    let (ok, failed) = (Rc::new(AtomicUsize::new(0)), Rc::new(AtomicUsize::new(0)));
    let client = {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        actix_rt::spawn(async move {
            // One client: its connection to the gateway is kept alive across requests.
            let http = awc::Client::default();
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 2000 {
                n += 1;
                let outcome = match http.get(gw.url("/")).send().await {
                    Ok(mut r) => match r.body().await {
                        Ok(_) if r.status() == 200 => Ok(()),
                        Ok(_) => Err(format!("status {}", r.status())),
                        Err(e) => Err(format!("body: {e}")),
                    },
                    Err(e) => Err(format!("send: {e}")),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed request: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    let mut reloads = 0;
    for round in 1..=12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        write_config(&path, &cfg(sets[round % sets.len()]));
        reload(&gw).await;
        reloads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    client.await.expect("client task");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 50, "too few requests to mean anything: {ok}");
    assert_eq!(reloads, 12);
    let hits: Vec<usize> = ups.iter().map(|u| u.hits()).collect();
    assert!(
        hits.iter().all(|&h| h > 0),
        "every backend served: {hits:?}"
    );
    if let Ok(gw) = Rc::try_unwrap(gw) {
        gw.stop().await;
    }
}

#[actix_rt::test]
async fn removed_backend_finishes_in_flight_requests() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(400))
        .start()
        .await;
    let fast = Upstream::new("fast").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &backends_yaml(&[&slow.addr_str()], ""));
    let gw = Rc::new(gateway_from_file(&path).await);
    let in_flight = {
        let gw = gw.clone();
        actix_rt::spawn(async move { gw.get("/").await })
    };
    eventually("the slow request reached its backend", || async {
        slow.hits() == 1
    })
    .await;
    write_config(&path, &backends_yaml(&[&fast.addr_str()], ""));
    reload(&gw).await;
    assert_eq!(names(&gw, 2).await, set(&["fast"]));
    let r = in_flight.await.expect("request task");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["backend"], "slow");
    if let Ok(gw) = Rc::try_unwrap(gw) {
        gw.stop().await;
    }
}

#[actix_rt::test]
async fn registry_changes_keep_rate_limit_buckets() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let limited = "  rateLimit: {enabled: true, rate: 0.5, burst: 1}\n";
    write_config(&path, &backends_yaml(&[&a.addr_str()], limited));
    let gw = gateway_from_file(&path).await;
    assert_eq!(gw.get("/").await.status, 200);
    assert_eq!(gw.get("/").await.status, 429);
    let actor = gw.gw.as_ref().expect("running").reload_handle();
    let upsert = RegistryUpsert {
        id: "r1".into(),
        name: "svc".into(),
        addr: b.addr_str(),
        weight: 1,
    };
    actor.send(upsert).await.expect("actor");
    assert_eq!(backends(&gw).await.len(), 2);
    assert_eq!(gw.get("/").await.status, 429, "the bucket was refilled");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_backend_readded_while_draining_keeps_its_state() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(600))
        .start()
        .await;
    let fast = Upstream::new("fast").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let both = backends_yaml(&[&slow.addr_str(), &fast.addr_str()], "");
    write_config(&path, &both);
    let gw = Rc::new(gateway_from_file(&path).await);
    let in_flight = {
        let gw = gw.clone();
        actix_rt::spawn(async move { gw.get("/").await })
    };
    eventually("the slow request reached its backend", || async {
        slow.hits() == 1
    })
    .await;
    write_config(&path, &backends_yaml(&[&fast.addr_str()], ""));
    reload(&gw).await;
    write_config(&path, &both);
    reload(&gw).await;
    let list = backends(&gw).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let s = entry(&list, &slow.addr_str());
    assert_eq!(s["requests_total"], 1, "state kept: {list:?}");
    assert_eq!(s["draining"], false, "back in rotation: {list:?}");
    assert_eq!(in_flight.await.expect("task").status, 200);
    // Still in rotation after the drain task would have retired it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        entry(&backends(&gw).await, &slow.addr_str())["draining"],
        false
    );
    if let Ok(gw) = Rc::try_unwrap(gw) {
        gw.stop().await;
    }
}
