//! Route choice: specificity order, segment-aware prefixes, and the index against a scan.
use super::*;
use std::collections::BTreeMap;

fn m(host: &str, prefix: &str, path: &str) -> MatchConfig {
    MatchConfig {
        host: host.into(),
        path_prefix: prefix.into(),
        path: path.into(),
        ..MatchConfig::default()
    }
}

fn table(rules: Vec<MatchConfig>) -> RouteTable<usize> {
    RouteTable::new(
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| (RouteRule::new(r, i), i))
            .collect(),
    )
}

fn find(t: &RouteTable<usize>, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
    let none = |_: &str| None;
    let req = RequestFacts {
        host,
        path,
        method,
        header: &none,
    };
    t.find(&req).map(|(_, i)| *i)
}

#[test]
fn prefix_is_segment_aware() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api", "/api/v1"));
    assert!(!prefix_matches("/api", "/apiary"));
    assert!(prefix_matches("/", "/anything"));
    let t = table(vec![m("", "/api/", "")]);
    assert_eq!(find(&t, None, "/api", "GET"), Some(0));
    assert_eq!(find(&t, None, "/apix", "GET"), None);
}

#[test]
fn strip_prefix_keeps_a_leading_slash() {
    assert_eq!(strip_prefix("/api", "/api/users"), "/users");
    assert_eq!(strip_prefix("/api", "/api"), "/");
    assert_eq!(strip_prefix("/", "/x"), "/x");
}

#[test]
fn host_exact_beats_wildcard_beats_none() {
    let t = table(vec![
        m("", "/", ""),
        m("*.example.com", "/", ""),
        m("api.example.com", "/", ""),
    ]);
    assert_eq!(find(&t, Some("API.example.com"), "/", "GET"), Some(2));
    assert_eq!(find(&t, Some("a.b.example.com"), "/", "GET"), Some(1));
    assert_eq!(find(&t, Some("example.com"), "/", "GET"), Some(0));
    assert_eq!(find(&t, None, "/", "GET"), Some(0));
}

#[test]
fn host_beats_path_specificity() {
    let t = table(vec![m("", "/api/v1", ""), m("api.example.com", "/", "")]);
    assert_eq!(
        find(&t, Some("api.example.com"), "/api/v1/x", "GET"),
        Some(1)
    );
}

#[test]
fn exact_path_beats_longer_prefix_beats_shorter() {
    let t = table(vec![
        m("", "/a", ""),
        m("", "/a/b", ""),
        m("", "", "/a/b/c"),
    ]);
    assert_eq!(find(&t, None, "/a/b/c", "GET"), Some(2));
    assert_eq!(find(&t, None, "/a/b/d", "GET"), Some(1));
    assert_eq!(find(&t, None, "/a/x", "GET"), Some(0));
    assert_eq!(find(&t, None, "/b", "GET"), None);
}

/// The index narrows a lookup without changing its answer: over random tables and
/// requests, `matching` equals a full scan of the rank-sorted rules.
#[test]
fn the_index_finds_what_a_full_scan_finds() {
    let hosts = [
        "",
        "a.example.com",
        "B.example.com",
        "*.example.com",
        "*.b.example.com",
    ];
    let prefixes = ["", "/", "/api", "/api/v1", "/apiary", "/b"];
    let exact = ["", "/api/x", "/", "/b/c"];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        // Below and above INDEX_FROM: scanned and indexed tables alike.
        let rules: Vec<MatchConfig> = (0..rng.usize(1..60))
            .map(|_| {
                let mut m = m(
                    hosts[rng.usize(..hosts.len())],
                    prefixes[rng.usize(..prefixes.len())],
                    exact[rng.usize(..exact.len())],
                );
                if rng.bool() {
                    m.methods = vec!["POST".into()];
                }
                m.host = m.host.to_ascii_lowercase();
                m
            })
            .collect();
        let t = table(rules);
        for _ in 0..50 {
            let host = [
                None,
                Some("a.example.com"),
                Some("A.EXAMPLE.com"),
                Some("x.b.example.com"),
                Some("b.example.com"),
                Some("other.test"),
            ][rng.usize(..6)];
            let path = [
                "/",
                "/api",
                "/api/",
                "/api/v1/z",
                "/apiary",
                "/api/x",
                "/b/c",
                "/b",
                "/z",
                "*",
            ][rng.usize(..10)];
            let method = ["GET", "POST"][rng.usize(..2)];
            let none = |_: &str| None;
            let req = RequestFacts {
                host,
                path,
                method,
                header: &none,
            };
            let got: Vec<usize> = t.matching(&req).map(|(rank, _, _)| rank).collect();
            let want: Vec<usize> = t
                .entries
                .iter()
                .enumerate()
                .filter(|(_, (r, _))| r.matches(&req))
                .map(|(i, _)| i + 1)
                .collect();
            assert_eq!(got, want, "{host:?} {path} {method}");
        }
    }
}

/// A host with more matching wildcard suffixes than the lookup tracks at once (eight)
/// still gets every one, in rank order.
#[test]
fn a_host_with_many_wildcard_suffixes_matches_them_all() {
    let host = "x.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.example.com";
    let labels: Vec<&str> = host.split('.').collect();
    let mut rules: Vec<MatchConfig> = (1..labels.len() - 1)
        .map(|k| m(&format!("*.{}", labels[k..].join(".")), "", ""))
        .collect();
    let n = rules.len();
    assert!(n > 8);
    // Enough other routes that the table is indexed.
    rules.extend((0..INDEX_FROM).map(|i| m("", &format!("/other{i}"), "")));
    let t = table(rules);
    let none = |_: &str| None;
    let req = RequestFacts {
        host: Some(host),
        path: "/",
        method: "GET",
        header: &none,
    };
    let got: Vec<usize> = t.matching(&req).map(|(_, _, i)| *i).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>(), "longest suffix first");
}

#[test]
fn matching_lists_every_match_in_rank_order_find_takes_the_first() {
    let t = table(vec![
        m("", "/a", ""),
        m("", "/a/b", ""),
        m("h.example", "/", ""),
    ]);
    let none = |_: &str| None;
    let req = RequestFacts {
        host: Some("h.example"),
        path: "/a/b/c",
        method: "GET",
        header: &none,
    };
    let all: Vec<(usize, usize)> = t.matching(&req).map(|(rank, _, i)| (rank, *i)).collect();
    assert_eq!(all, vec![(1, 2), (2, 1), (3, 0)]);
    let (first, _) = t.find(&req).expect("a route matches");
    let (_, second, _) = t.matching(&req).nth(1).expect("two match");
    assert_eq!(first.beats(second), "a more specific host");
    assert_eq!(first.specificity()[0], "exact host h.example");
}

#[test]
fn conditions_beat_no_conditions_then_file_order() {
    let mut with_method = m("", "/x", "");
    with_method.methods = vec!["POST".into()];
    let mut with_header = m("", "/x", "");
    with_header.headers = BTreeMap::from([("X-Canary".to_string(), "true".to_string())]);
    let t = table(vec![
        m("", "/x", ""),
        with_method,
        m("", "/x", ""),
        with_header,
    ]);
    assert_eq!(find(&t, None, "/x", "POST"), Some(1));
    assert_eq!(find(&t, None, "/x", "GET"), Some(0));
    let canary = |k: &str| (k == "x-canary").then_some("true");
    let req = RequestFacts {
        host: None,
        path: "/x",
        method: "GET",
        header: &canary,
    };
    assert_eq!(t.find(&req).map(|(_, i)| *i), Some(3));
}
