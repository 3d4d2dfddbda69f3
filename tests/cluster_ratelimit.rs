//! Rate limits with `scope: global` (DESIGN B11 "Cluster"): two gateway replicas sharing one
//! real `redis-server` draw from one bucket; a store that stops answering falls back as
//! `onStoreDown` says; one that comes back is used again.
mod common;
use common::redis::RedisServer;
use common::*;

/// A replica whose route `api` has `limit`; replicas with the same `cluster.keyPrefix`
/// (here `local:` or `deny:`, after `on_down`) and route share buckets.
fn yaml(up: &str, store: &str, limit: &str, on_down: &str) -> String {
    format!(
        "{}routes:\n  - name: api\n    match: {{pathPrefix: /}}\n    upstreams: [{{name: default}}]\n    rateLimit: {limit}\n\
         cluster:\n  store: \"{store}\"\n  timeout: 200ms\n  onStoreDown: {on_down}\n  keyPrefix: \"{on_down}:\"\n",
        backends_yaml(&[up], "  listenAddr: \"\"\n")
    )
}

/// Statuses of `n` requests sent alternately to the replicas (keep-alive clients).
async fn alternate(gws: &[&TestGateway], n: usize) -> Vec<u16> {
    let clients: Vec<awc::Client> = gws.iter().map(|_| awc::Client::default()).collect();
    let mut out = Vec::new();
    for i in 0..n {
        let k = i % gws.len();
        out.push(fetch(clients[k].get(gws[k].url("/x"))).await.status);
    }
    out
}

/// Two replicas with route `api` limited by `limit` (`onStoreDown: deny`), each connected to the
/// store, and the store emptied of what their warm-up took.
async fn two_replicas(
    redis: &RedisServer,
    up: &RunningUpstream,
    limit: &str,
) -> (TestGateway, TestGateway) {
    let a = gateway(&yaml(&up.addr_str(), &redis.url(), limit, "deny")).await;
    let b = gateway(&yaml(&up.addr_str(), &redis.url(), limit, "deny")).await;
    // With deny, a request made before a worker's connection is up is a 503, not a local
    // token: wait for both connections.
    for gw in [&a, &b] {
        eventually("the replica's store connection is up", || async {
            gw.get("/warm").await.status != 503
        })
        .await;
    }
    redis.cli(&["FLUSHALL"]);
    (a, b)
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|s| **s == code).count()
}

#[actix_rt::test]
async fn two_replicas_share_one_bucket() {
    let redis = RedisServer::start();
    let up = Upstream::new("up").start().await;
    // Almost no refill: exactly `burst` requests pass in all.
    let limit = "{rate: 0.001, burst: 10, keyBy: global, scope: global}";
    let (a, b) = two_replicas(&redis, &up, limit).await;
    let statuses = alternate(&[&a, &b], 30).await;
    assert_eq!(count(&statuses, 200), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 20, "{statuses:?}");
    // A 429 from the shared bucket carries the same headers as a local one.
    let r = a.get("/x").await;
    assert_eq!(r.status, 429);
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{r:?}"
    );
    assert_eq!(r.header("ratelimit-limit"), Some("10"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let m = a.metrics_text().await;
    assert!(
        m.contains("gogate_rate_limit_rejected_total{listener=\"http\",route=\"api\"}"),
        "{m}"
    );
    // Explain says the bucket is the shared one (and does not pretend to know its tokens).
    let e = a.admin_get("/explain?path=/x").await.json();
    assert_eq!(e["rate_limit"]["shared"], true, "{e:#}");
    assert!(e["rate_limit"]["tokens"].is_null(), "{e:#}");
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_rate_across_two_replicas_is_the_rate_not_twice_it() {
    let redis = RedisServer::start();
    let up = Upstream::new("up").start().await;
    let limit = "{rate: 20, burst: 20, keyBy: ip, scope: global}";
    let (a, b) = two_replicas(&redis, &up, limit).await;
    // Four clients, two per replica, as fast as they can for 2 s.
    let started = std::time::Instant::now();
    let window = std::time::Duration::from_secs(2);
    let run = |gw: &TestGateway| {
        let url = gw.url("/x");
        async move {
            let client = awc::Client::default();
            let (mut ok, mut limited) = (0usize, 0usize);
            for _ in 0..20_000 {
                if started.elapsed() >= window {
                    break;
                }
                match fetch(client.get(&url)).await.status {
                    200 => ok += 1,
                    429 => limited += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            (ok, limited)
        }
    };
    let results = futures_util::future::join_all([run(&a), run(&a), run(&b), run(&b)]).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok: usize = results.iter().map(|r| r.0).sum();
    let limited: usize = results.iter().map(|r| r.1).sum();
    // The shared bucket: burst 20 plus 20 per second. Two local buckets would let twice that.
    let expected = 20.0 + 20.0 * elapsed;
    assert!(limited > 0, "the clients outran the limit: {results:?}");
    assert!(
        (ok as f64) <= expected + 3.0 && (ok as f64) >= expected * 0.75,
        "{ok} allowed in {elapsed:.2}s, about {expected:.0} expected (not {:.0}): {results:?}",
        2.0 * expected
    );
    a.stop().await;
    b.stop().await;
}

#[actix_rt::test]
async fn a_store_that_stops_answering_falls_back_as_configured_and_is_used_again() {
    let mut redis = RedisServer::start();
    let up = Upstream::new("up").start().await;
    let limit = "{rate: 0.001, burst: 3, keyBy: global, scope: global}";
    let local = gateway(&yaml(&up.addr_str(), &redis.url(), limit, "local")).await;
    let deny = gateway(&yaml(
        &up.addr_str(),
        &redis.url(),
        "{rate: 1000, burst: 1000, scope: global}",
        "deny",
    ))
    .await;
    for gw in [&local, &deny] {
        eventually("the replica's store connection is up", || async {
            gw.get("/warm").await.status == 200
        })
        .await;
    }
    redis.stop();
    // local: the replica's own bucket (burst 3, never used before) decides.
    let statuses = alternate(&[&local], 6).await;
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    // deny: 503 naming the cause, never a silent pass.
    let r = deny.get("/x").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], "rate limit store unavailable");
    let m = deny.metrics_text().await;
    let errors = m
        .lines()
        .find_map(|l| l.strip_prefix("gogate_store_errors_total{op=\"ratelimit\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{m}");
    // /ready stays 200 while the store is down.
    assert_eq!(deny.admin_get("/ready").await.status, 200);

    redis.restart();
    eventually("the store is used again after it comes back", || async {
        deny.get("/x").await.status == 200
    })
    .await;
    local.stop().await;
    deny.stop().await;
}

/// A reload that takes the store out of the configuration closes the connections to it (the
/// workers' and the monitor's), rather than leaving them reconnecting for ever.
#[actix_rt::test]
async fn a_reload_without_the_store_closes_its_connections() {
    use common::config_file::*;
    let redis = RedisServer::start();
    let up = Upstream::new("up").start().await;
    let dir = TempDir::new();
    let file = dir.path("gogate.yaml");
    let limit = "{rate: 1000, burst: 1000, keyBy: global, scope: global}";
    write_config(&file, &yaml(&up.addr_str(), &redis.url(), limit, "deny"));
    let gw = gateway_from_file(&file).await;
    let clients = || {
        redis
            .cli(&["INFO", "clients"])
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .unwrap_or(-1)
    };
    assert_eq!(gw.get("/x").await.status, 200);
    // The worker's connection and the monitor's (redis-cli itself is one more).
    eventually("the gateway is connected to the store", || async {
        clients() >= 3
    })
    .await;
    let no_store = yaml(
        &up.addr_str(),
        "",
        "{rate: 1000, burst: 1000, keyBy: global}",
        "deny",
    );
    write_config(&file, &no_store);
    assert_eq!(gw.admin_send("POST", "/reload").await.status, 200);
    assert_eq!(gw.get("/x").await.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while clients() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(clients(), 1, "only redis-cli is left connected");
    gw.stop().await;
}
