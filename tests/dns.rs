//! Backends given by host name (DESIGN B11 "DNS"): each resolved address is a backend; the name
//! is re-resolved every `server.dnsRefresh`, a changed answer moves traffic (a vanished address
//! drains, a kept one keeps its state), a failed lookup keeps the last good set, a name that
//! does not resolve at start does not stop the gateway, and no lookup happens per request or
//! connection. A test resolver maps names to the addresses of real upstreams on 127.0.0.1; one
//! test uses the system resolver with `localhost`.
mod common;
use common::config_file::*;
use common::resolver::MapResolver;
use common::*;

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const SVC: &str = "svc.test:80";

/// The default upstream is `names`, refreshed every 200 ms, health checks off unless `extra`
/// (indented for `server:`) says otherwise.
fn yaml(names: &[&str], extra: &str) -> String {
    backends_yaml(names, &format!("  dnsRefresh: 200ms\n{extra}"))
}

/// Which backends answered `n` GETs, by name.
async fn spread(gw: &TestGateway, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = gw.get("/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let name = r.json()["backend"].as_str().unwrap_or("?").to_string();
        *out.entry(name).or_default() += 1;
    }
    out
}

/// `GET /backends`, by `addr`.
async fn backends(gw: &TestGateway) -> BTreeMap<String, Value> {
    let r = gw.admin_get("/backends").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|b| (b["addr"].as_str().unwrap_or("").to_string(), b.clone()))
        .collect()
}

async fn backend_addrs(gw: &TestGateway) -> Vec<String> {
    backends(gw).await.into_keys().collect()
}

fn sorted(addrs: &[SocketAddr]) -> Vec<String> {
    let mut v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    v.sort();
    v
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[actix_rt::test]
async fn traffic_reaches_every_resolved_address() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, b.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;

    let seen = spread(&gw, 10).await;
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");

    let list = backends(&gw).await;
    assert_eq!(
        list.keys().cloned().collect::<Vec<_>>(),
        sorted(&[a.addr, b.addr])
    );
    for (addr, b) in &list {
        assert_eq!(b["hostname"], SVC, "{b}");
        assert_eq!(b["id"], format!("default/{addr}"), "{b}");
        assert_eq!(b["source"], "static", "{b}");
    }
    // Metric labels are the resolved addresses, and the lookups are counted.
    let text = gw.metrics_text().await;
    let label = format!(
        "gogate_requests_total{{backend=\"{}\",listener=\"http\",route=\"default\",status=\"success\"}} ",
        a.addr
    );
    assert_eq!(metric(&text, &label), Some(5.0), "{text}");
    let ok = metric(&text, "gogate_dns_resolutions_total{result=\"success\"} ");
    assert!(ok.is_some_and(|n| n >= 1.0), "{text}");
    gw.stop().await;
}

#[actix_rt::test]
async fn changed_answer_moves_traffic_and_kept_addresses_keep_their_state() {
    let (a, b, c) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
        Upstream::new("c").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, b.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;
    spread(&gw, 4).await;
    let before = backends(&gw).await[&b.addr_str()]["requests_total"]
        .as_u64()
        .expect("requests_total");
    assert_eq!(before, 2);

    // One address leaves the answer, one joins.
    dns.set(SVC, &[b.addr, c.addr]);
    let want = sorted(&[b.addr, c.addr]);
    eventually("the backends follow the new answer", || async {
        backend_addrs(&gw).await == want
    })
    .await;
    let hits_a = a.hits();
    let seen = spread(&gw, 10).await;
    assert_eq!(
        a.hits(),
        hits_a,
        "the removed address got traffic: {seen:?}"
    );
    assert_eq!(
        (seen.get("b"), seen.get("c")),
        (Some(&5), Some(&5)),
        "{seen:?}"
    );
    // The kept backend is the same backend: its counters went on from where they were.
    let kept = &backends(&gw).await[&b.addr_str()];
    assert_eq!(kept["requests_total"].as_u64(), Some(before + 5), "{kept}");
    assert!(
        gw.logs
            .with_msg("backend removed; draining")
            .iter()
            .any(|l| l["backend"] == a.addr_str()),
        "the removed address was not drained"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn removed_address_finishes_its_in_flight_request() {
    let slow = Upstream::new("slow")
        .delay(Duration::from_millis(800))
        .start()
        .await;
    let fresh = Upstream::new("fresh").start().await;
    let dns = MapResolver::new();
    dns.set(SVC, &[slow.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;
    let url = gw.url("/");
    let in_flight = actix_rt::spawn(async move { fetch(awc::Client::default().get(url)).await });
    eventually("the slow request is in flight", || async {
        slow.hits() == 1
    })
    .await;

    dns.set(SVC, &[fresh.addr]);
    let want = vec![fresh.addr_str()];
    eventually("the answer moved to the fresh address", || async {
        backend_addrs(&gw).await == want
    })
    .await;
    let r = gw.get("/").await;
    assert_eq!(
        (r.status, r.json()["backend"].clone()),
        (200, "fresh".into())
    );
    let done = in_flight.await.expect("request task");
    assert_eq!(
        done.status, 200,
        "the draining backend cut its request: {}",
        done.body
    );
    assert_eq!(done.json()["backend"], "slow");
    gw.stop().await;
}

#[actix_rt::test]
async fn failed_or_empty_resolution_keeps_the_last_good_set() {
    let a = Upstream::new("a").start().await;
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;
    assert_eq!(gw.get("/").await.status, 200);

    for (what, broken) in [("failing", true), ("empty", false)] {
        if broken {
            dns.fail(SVC);
        } else {
            dns.set(SVC, &[]);
        }
        let start = dns.lookups(SVC);
        eventually(&format!("three {what} lookups"), || async {
            dns.lookups(SVC) >= start + 3
        })
        .await;
        let r = gw.get("/").await;
        assert_eq!(
            (r.status, r.json()["backend"].clone()),
            (200, "a".into()),
            "{what}"
        );
        assert_eq!(backend_addrs(&gw).await, vec![a.addr_str()], "{what}");
        dns.set(SVC, &[a.addr]);
        let ok = dns.lookups(SVC);
        eventually("a good lookup again", || async { dns.lookups(SVC) > ok }).await;
    }
    // One warning per failure streak, not one per period.
    let warnings = gw
        .logs
        .with_msg("dns resolution failed; keeping the last good addresses");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["name"], SVC);
    let text = gw.metrics_text().await;
    let failures = metric(&text, "gogate_dns_resolutions_total{result=\"failure\"} ");
    assert!(failures.is_some_and(|n| n >= 6.0), "{text}");
    gw.stop().await;
}

#[actix_rt::test]
async fn name_unresolved_at_start_is_503_until_it_resolves() {
    let a = Upstream::new("a").start().await;
    let dns = MapResolver::new();
    // Resolved every 30 s once it resolves, but retried faster while it never has.
    let yaml = backends_yaml(&[SVC], "  dnsRefresh: 30s\n");
    let gw = gateway_with_resolver(&yaml, dns.dyn_arc()).await;
    let r = gw.get("/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(backend_addrs(&gw).await.is_empty());
    // L4: closed at once, as with no eligible backend.
    let tcp = gw.tcp.expect("l4 listener");
    let out = raw_exchange(
        tcp,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(out, "", "L4 answered without a backend");
    assert!(
        !gw.logs
            .with_msg("dns resolution failed; keeping the last good addresses")
            .is_empty(),
        "no warning for a name that does not resolve"
    );

    dns.set(SVC, &[a.addr]);
    // Within the short retry (5 s), well before dnsRefresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let r = gw.get("/").await;
        if r.status == 200 {
            assert_eq!(r.json()["backend"], "a");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            std::time::Instant::now() < deadline,
            "the name never got served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn requests_and_connections_do_no_lookups() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, b.addr]);
    let yaml = backends_yaml(&[SVC], "  dnsRefresh: 1h\n  tcpPool: {enabled: false}\n");
    let gw = gateway_with_resolver(&yaml, dns.dyn_arc()).await;
    assert_eq!(dns.total(), 1, "one lookup at start");
    // Every request on a new client connection and a new upstream connection, over L7 and L4.
    spread(&gw, 20).await;
    let tcp = gw.tcp.expect("l4 listener");
    for _ in 0..10 {
        let out = raw_exchange(
            tcp,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    assert_eq!(dns.total(), 1, "lookups happened on the request path");
    gw.stop().await;
}

#[actix_rt::test]
async fn l4_listener_forwards_to_the_resolved_addresses() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, b.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;
    let tcp = gw.tcp.expect("l4 listener");
    let mut seen = BTreeMap::<String, usize>::new();
    for _ in 0..6 {
        let out = raw_exchange(
            tcp,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let name = if out.contains("\"backend\":\"a\"") {
            "a"
        } else {
            "b"
        };
        *seen.entry(name.into()).or_default() += 1;
    }
    assert_eq!(
        (seen.get("a"), seen.get("b")),
        (Some(&3), Some(&3)),
        "{seen:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn host_header_is_the_configured_name_when_host_is_not_preserved() {
    let a = Upstream::new("a").start().await;
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr]);
    let extra = "routes:\n  - name: api\n    match: {pathPrefix: /api}\n    upstreams: [{name: default}]\n    preserveHost: false\n";
    let gw = gateway_with_resolver(&format!("{}{extra}", yaml(&[SVC], "")), dns.dyn_arc()).await;
    assert_eq!(gw.get("/api/x").await.status, 200);
    assert_eq!(a.last().header("host"), Some(SVC));
    gw.stop().await;
}

#[actix_rt::test]
async fn http_health_probes_send_the_configured_name_and_check_each_address() {
    let a = Upstream::new("a").start().await;
    let dead: SocketAddr = dead_addr().parse().expect("socket address");
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, dead]);
    let health = "  health: {enabled: true, interval: 100ms, timeout: 100ms, checkType: http, unhealthyThreshold: 1}\n";
    let y = format!("server:\n  backends: [{{addr: \"{SVC}\"}}]\n  dnsRefresh: 200ms\n{health}");
    let gw = gateway_with_resolver(&y, dns.dyn_arc()).await;
    let dead_s = dead.to_string();
    eventually("the dead address is unhealthy", || async {
        backends(&gw)
            .await
            .get(&dead_s)
            .is_some_and(|b| b["healthy"] == false)
    })
    .await;
    assert_eq!(backends(&gw).await[&a.addr_str()]["healthy"], true);
    let probe = a
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path == "/health")
        .cloned();
    assert_eq!(probe.expect("a probe").header("host"), Some(SVC));
    gw.stop().await;
}

#[actix_rt::test]
async fn drain_by_name_drains_every_address_and_new_ones_too() {
    let (a, b, c) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
        Upstream::new("c").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[a.addr, b.addr]);
    let gw = gateway_with_resolver(&yaml(&[SVC], ""), dns.dyn_arc()).await;

    // One resolved address, by itself.
    let r = gw
        .admin_send("POST", &format!("/backends/{}/drain", a.addr))
        .await;
    assert_eq!(
        (r.status, r.json()["backends"].clone()),
        (200, 1.into()),
        "{}",
        r.body
    );
    assert_eq!(spread(&gw, 4).await.get("b"), Some(&4));
    let r = gw
        .admin_send("DELETE", &format!("/backends/{}/drain", a.addr))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The name: every address it resolves to, and one that joins later.
    let r = gw
        .admin_send("POST", &format!("/backends/{SVC}/drain"))
        .await;
    assert_eq!(
        (r.status, r.json()["backends"].clone()),
        (200, 2.into()),
        "{}",
        r.body
    );
    assert_eq!(gw.get("/").await.status, 503);
    dns.set(SVC, &[a.addr, b.addr, c.addr]);
    eventually("the new address joins", || async {
        backend_addrs(&gw).await.len() == 3
    })
    .await;
    assert_eq!(backends(&gw).await[&c.addr_str()]["draining"], true);
    assert_eq!(gw.get("/").await.status, 503);
    assert_eq!(c.hits(), 0);

    let r = gw
        .admin_send("DELETE", &format!("/backends/{SVC}/drain"))
        .await;
    assert_eq!(
        (r.status, r.json()["backends"].clone()),
        (200, 3.into()),
        "{}",
        r.body
    );
    assert_eq!(spread(&gw, 3).await.len(), 3);
    gw.stop().await;
}

#[actix_rt::test]
async fn ip_backends_are_never_looked_up_and_show_no_hostname() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dns = MapResolver::new();
    dns.set(SVC, &[b.addr]);
    let gw = gateway_with_resolver(&yaml(&[&a.addr_str(), SVC], ""), dns.dyn_arc()).await;
    let list = backends(&gw).await;
    assert_eq!(list[&a.addr_str()]["hostname"], Value::Null);
    assert_eq!(list[&b.addr_str()]["hostname"], SVC);
    assert_eq!(dns.lookups(&a.addr_str()), 0);
    assert_eq!(spread(&gw, 4).await.len(), 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn reload_resolves_a_new_name_before_applying_it_and_drops_the_removed_one() {
    let (a, b) = (
        Upstream::new("a").start().await,
        Upstream::new("b").start().await,
    );
    let dns = MapResolver::new();
    dns.set("one.test:80", &[a.addr]);
    dns.set("two.test:80", &[b.addr]);
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let slow = "  dnsRefresh: 1h\n";
    write_config(&path, &backends_yaml(&["one.test:80"], slow));
    let gw = gateway_from_file_with(&path, Some(dns.dyn_arc())).await;
    assert_eq!(backend_addrs(&gw).await, vec![a.addr_str()]);

    write_config(&path, &backends_yaml(&["two.test:80"], slow));
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Resolved as part of the reload (dnsRefresh is an hour): served as soon as it answers.
    assert_eq!(backend_addrs(&gw).await, vec![b.addr_str()]);
    assert_eq!(spread(&gw, 2).await.get("b"), Some(&2));
    assert_eq!(dns.lookups("two.test:80"), 1);
    assert_eq!(
        dns.lookups("one.test:80"),
        1,
        "the removed name was looked up again"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn system_resolver_serves_localhost() {
    let a = Upstream::new("a").start().await;
    let name = format!("localhost:{}", a.addr.port());
    // Retries let a request that picks an address nobody listens on (::1) fail over.
    let gw = gateway(&backends_yaml(&[&name], "  retry: {attempts: 2}\n")).await;
    let want = format!("127.0.0.1:{}", a.addr.port());
    let list = backends(&gw).await;
    let v4 = list
        .get(&want)
        .unwrap_or_else(|| panic!("{want} not in {list:?}"));
    assert_eq!(v4["hostname"], name.as_str());
    for _ in 0..4 {
        let r = gw.get("/").await;
        assert_eq!(
            (r.status, r.json()["backend"].clone()),
            (200, "a".into()),
            "{}",
            r.body
        );
    }
    gw.stop().await;
}
