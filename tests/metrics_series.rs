//! Metric series follow the configuration (DESIGN B7, issue 9): the byte counters of a backend
//! grow with its traffic and never go down across reloads, and the series of an address no
//! backend has any more are deleted.
mod common;
use common::config_file::*;
use common::*;

use std::collections::BTreeMap;

/// `a` is the default upstream; with `api`, upstream `api` (route `/api`) also has `a`.
fn config(a: &str, api: bool) -> String {
    let mut y = backends_yaml(&[a], "");
    if api {
        y.push_str(&format!(
            "upstreams:\n  api:\n    backends: [{{addr: \"{a}\"}}]\n\
             routes:\n  - name: api\n    match: {{pathPrefix: \"/api\"}}\n    upstreams: [{{name: api}}]\n"
        ));
    }
    y
}

/// Every `*_total` sample of a scrape, by its series (name and labels).
fn totals(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series
                .split('{')
                .next()
                .is_some_and(|n| n.ends_with("_total"))
        })
        .filter_map(|(series, v)| Some((series.to_string(), v.parse().ok()?)))
        .collect()
}

fn assert_monotonic(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> usize {
    let mut common = 0;
    for (series, v) in before {
        if let Some(w) = after.get(series) {
            assert!(w >= v, "{series} went down from {v} to {w}");
            common += 1;
        }
    }
    common
}

async fn traffic(gw: &TestGateway, n: usize) {
    for i in 0..n {
        let path = if i % 2 == 0 { "/api/x" } else { "/x" };
        assert_eq!(gw.get(path).await.status, 200, "GET {path}");
    }
}

async fn reload(gw: &TestGateway) {
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[actix_rt::test]
async fn totals_never_go_down_and_removed_addresses_lose_their_series() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &config(&a.addr_str(), true));
    let gw = gateway_from_file(&path).await;
    let recv_a = format!(
        "gogate_backend_bytes_received_total{{backend=\"{}\"}}",
        a.addr_str()
    );

    traffic(&gw, 8).await;
    // The bytes of an exchange are added when its response body is done.
    eventually("the responses' bytes are counted", || async {
        totals(&gw.metrics_text().await)
            .get(&recv_a)
            .is_some_and(|v| *v > 0.0)
    })
    .await;
    let s1 = totals(&gw.metrics_text().await);

    // `a` leaves upstream `api` but stays in the default upstream: its bytes must not drop.
    write_config(&path, &config(&a.addr_str(), false));
    reload(&gw).await;
    traffic(&gw, 4).await;
    let s2 = totals(&gw.metrics_text().await);
    assert!(
        assert_monotonic(&s1, &s2) >= 3,
        "few series in common: {s1:?} {s2:?}"
    );
    assert!(s2.contains_key(&recv_a));

    // `a` goes away entirely: its byte series are deleted, the other counters keep growing.
    write_config(&path, &config(&b.addr_str(), false));
    reload(&gw).await;
    traffic(&gw, 4).await;
    let s3 = totals(&gw.metrics_text().await);
    assert!(!s3.contains_key(&recv_a), "{s3:?}");
    assert!(!s3
        .keys()
        .any(|k| k.starts_with("gogate_backend_bytes_") && k.contains(&a.addr_str())));
    assert_monotonic(&s2, &s3);
    gw.stop().await;
}

/// Routes and backend addresses that leave the configuration take their request series with
/// them: a gateway whose backends keep changing (registry churn, DNS, reloads) scrapes a
/// bounded number of series, not one more set per address it ever had.
#[actix_rt::test]
async fn series_of_removed_routes_and_addresses_are_deleted_under_churn() {
    let first = Upstream::new("u0").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    write_config(&path, &config(&first.addr_str(), true));
    let gw = gateway_from_file(&path).await;
    traffic(&gw, 6).await;
    let count = |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    let text = gw.metrics_text().await;
    assert!(count(&text, "route=\"api\"") > 0, "{text}");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let mut sizes = Vec::new();
    let mut old = first;
    for round in 0..6 {
        // A new address every round, and the `api` route only on even rounds.
        let next = Upstream::new(&format!("u{}", round + 1)).start().await;
        write_config(&path, &config(&next.addr_str(), round % 2 == 1));
        reload(&gw).await;
        traffic(&gw, 6).await;
        let text = gw.metrics_text().await;
        assert_eq!(
            count(&text, &format!("backend=\"{}\"", old.addr_str())),
            0,
            "round {round}: series of a removed address remain"
        );
        if round % 2 == 0 {
            assert_eq!(
                count(&text, "route=\"api\""),
                0,
                "round {round}: series of the removed route remain"
            );
        }
        sizes.push(series(&text));
        old = next;
    }
    // Rounds with the same shape scrape the same number of series.
    assert_eq!(sizes[2], sizes[4], "{sizes:?}");
    assert_eq!(sizes[3], sizes[5], "{sizes:?}");
    gw.stop().await;
}
