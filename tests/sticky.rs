//! Traffic splitting with `sticky` (DESIGN B3): a 90/10 split holds within ±2 percentage points
//! over 10,000 requests (random without the sticky value, hashed with distinct values), the same
//! cookie or header value always lands on the same upstream, different values spread across
//! both, and the landing spot is the documented FNV-1a hash, so every replica agrees.
mod common;
use common::*;

use gogate_actors::split::{index_at, sticky_point};

/// Two named upstreams `a` and `b` (one backend each) behind one route splitting by weight.
async fn split_gateway(
    wa: u32,
    wb: u32,
    sticky: &str,
) -> (TestGateway, RunningUpstream, RunningUpstream) {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let yaml = format!(
        "server:\n  listenAddr: \"\"\n  backends: []\n  health: {{enabled: false}}\n\
         upstreams:\n  a:\n    backends: [{{addr: \"{}\"}}]\n  b:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - name: split\n    upstreams: [{{name: a, weight: {wa}}}, {{name: b, weight: {wb}}}]\n    sticky: \"{sticky}\"\n",
        a.addr_str(),
        b.addr_str()
    );
    (gateway(&yaml).await, a, b)
}

/// Which upstream served a request carrying `headers`.
async fn served_by(client: &awc::Client, gw: &TestGateway, headers: &[(&str, String)]) -> String {
    let mut req = client.get(gw.url("/"));
    for (k, v) in headers {
        req = req.insert_header((*k, v.as_str()));
    }
    let r = fetch(req).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.header("x-upstream")
        .unwrap_or_else(|| panic!("no x-upstream: {r:?}"))
        .to_string()
}

/// Sends `n` requests (`headers(i)` for the i-th) from 8 concurrent clients; returns how many
/// `b` served.
async fn count_b<F>(gw: &TestGateway, n: usize, headers: F) -> usize
where
    F: Fn(usize) -> Vec<(&'static str, String)> + Clone + 'static,
{
    const CLIENTS: usize = 8;
    let tasks = (0..CLIENTS).map(|c| {
        let headers = headers.clone();
        async move {
            let client = awc::Client::default();
            let mut b = 0;
            for i in (c..n).step_by(CLIENTS) {
                if served_by(&client, gw, &headers(i)).await == "b" {
                    b += 1;
                }
            }
            b
        }
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .sum()
}

fn assert_share(b: usize, n: usize, want_pct: f64) {
    let pct = b as f64 * 100.0 / n as f64;
    assert!(
        (pct - want_pct).abs() <= 2.0,
        "upstream b got {pct:.2}% of {n} requests; want {want_pct}% ± 2 points"
    );
}

#[actix_rt::test]
async fn split_without_the_sticky_value_is_weighted_random_within_two_points() {
    let (gw, a, b) = split_gateway(90, 10, "cookie:sid").await;
    let n = 10_000;
    let to_b = count_b(&gw, n, |_| Vec::new()).await;
    assert_share(to_b, n, 10.0);
    assert_eq!(a.hits() + b.hits(), n);
    gw.stop().await;
}

#[actix_rt::test]
async fn split_over_distinct_sticky_values_lands_within_two_points() {
    let (gw, _a, _b) = split_gateway(90, 10, "cookie:sid").await;
    let n = 10_000;
    let to_b = count_b(&gw, n, |i| {
        vec![("cookie", format!("theme=dark; sid=session-{i}"))]
    })
    .await;
    assert_share(to_b, n, 10.0);
    gw.stop().await;
}

#[actix_rt::test]
async fn the_same_cookie_value_always_lands_on_the_same_upstream() {
    let (gw, _a, _b) = split_gateway(50, 50, "cookie:sid").await;
    let client = awc::Client::default();
    let mut seen = std::collections::BTreeSet::new();
    for v in 0..40 {
        let h = [("cookie", format!("sid=user-{v}"))];
        let first = served_by(&client, &gw, &h).await;
        for _ in 0..10 {
            assert_eq!(
                served_by(&client, &gw, &h).await,
                first,
                "sid=user-{v} moved"
            );
        }
        // The documented hash: FNV-1a + fmix64 onto the cumulative weights [a: 50, b: 50].
        let want = ["a", "b"]
            [index_at([50, 50], sticky_point(format!("user-{v}").as_bytes(), 100)).unwrap()];
        assert_eq!(first, want, "sid=user-{v}");
        seen.insert(first);
    }
    assert_eq!(
        seen.len(),
        2,
        "different values spread across both upstreams"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn the_same_header_value_always_lands_on_the_same_upstream() {
    let (gw, _a, _b) = split_gateway(50, 50, "header:X-User").await;
    let client = awc::Client::default();
    let mut seen = std::collections::BTreeSet::new();
    for v in 0..40 {
        let h = [("x-user", format!("u{v}"))];
        let first = served_by(&client, &gw, &h).await;
        for _ in 0..10 {
            assert_eq!(
                served_by(&client, &gw, &h).await,
                first,
                "X-User: u{v} moved"
            );
        }
        seen.insert(first);
    }
    assert_eq!(
        seen.len(),
        2,
        "different values spread across both upstreams"
    );
    // Without the header the choice is random again: both upstreams serve.
    let to_b = count_b(&gw, 200, |_| Vec::new()).await;
    assert!((40..=160).contains(&to_b), "{to_b} of 200 went to b");
    gw.stop().await;
}
