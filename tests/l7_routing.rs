//! L7 routing, load balancing, traffic split and header rules (DESIGN B3, B4, B10), through a
//! real gateway and real upstreams.
mod common;
use common::*;

use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// `server:` with L4 off and an empty default upstream, plus one named upstream per entry
/// (each with a single backend).
fn named_yaml(ups: &[(&str, &RunningUpstream)], routes: &str) -> String {
    let mut y = String::from(
        "server:\n  listenAddr: \"\"\n  backends: []\n  health: {enabled: false}\nupstreams:\n",
    );
    for (name, u) in ups {
        y.push_str(&format!(
            "  {name}:\n    backends: [{{addr: \"{}\"}}]\n",
            u.addr_str()
        ));
    }
    y.push_str("routes:\n");
    y.push_str(routes);
    y
}

/// Default upstream with weighted backends and the given algorithm.
fn weighted_yaml(backends: &[(&RunningUpstream, u32)], lb: &str) -> String {
    let mut y = String::from("server:\n  backends:\n");
    for (u, w) in backends {
        y.push_str(&format!(
            "    - addr: \"{}\"\n      weight: {w}\n",
            u.addr_str()
        ));
    }
    y.push_str(&format!(
        "  loadBalancer: \"{lb}\"\n  health: {{enabled: false}}\n"
    ));
    y
}

async fn get_host(gw: &TestGateway, path: &str, host: &str) -> Resp {
    fetch(
        awc::Client::default()
            .get(gw.url(path))
            .insert_header(("host", host)),
    )
    .await
}

/// The `x-upstream` header of a successful response (which fake upstream served it).
fn served_by(r: &Resp) -> String {
    assert_eq!(r.status, 200, "expected a proxied 200, got {r:?}");
    r.header("x-upstream")
        .unwrap_or_else(|| panic!("no x-upstream header: {r:?}"))
        .to_string()
}

fn all_values<'a>(r: &'a Resp, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// In-flight request count of a backend as the admin API reports it.
async fn active_of(gw: &TestGateway, addr: &str) -> i64 {
    let stats = gw.admin_get("/stats").await;
    assert_eq!(stats.status, 200, "GET /stats: {stats:?}");
    stats.json()["backends"][addr]["active_connections"]
        .as_i64()
        .unwrap_or_else(|| panic!("no active_connections for {addr} in {}", stats.body))
}

// ---------------------------------------------------------------------------------------------
// 1. route choice
// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn exact_host_beats_wildcard_host_beats_no_host_route() {
    let none = Upstream::new("none").start().await;
    let wild = Upstream::new("wild").start().await;
    let exact = Upstream::new("exact").start().await;
    // Least specific first, so file order alone would pick the wrong route.
    let routes = r#"
  - name: no-host
    match: {pathPrefix: "/"}
    upstreams: [{name: none}]
  - name: wildcard
    match: {host: "*.example.com"}
    upstreams: [{name: wild}]
  - name: exact
    match: {host: "api.example.com"}
    upstreams: [{name: exact}]
"#;
    let gw = gateway(&named_yaml(
        &[("none", &none), ("wild", &wild), ("exact", &exact)],
        routes,
    ))
    .await;

    assert_eq!(
        served_by(&get_host(&gw, "/", "api.example.com").await),
        "exact"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/x", "foo.example.com").await),
        "wild"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/x", "a.b.example.com").await),
        "wild"
    );
    assert_eq!(served_by(&get_host(&gw, "/x", "other.org").await), "none");
    gw.stop().await;
}

#[actix_rt::test]
async fn wildcard_host_does_not_match_the_apex_domain() {
    let none = Upstream::new("none").start().await;
    let wild = Upstream::new("wild").start().await;
    let routes = r#"
  - name: wildcard
    match: {host: "*.example.com"}
    upstreams: [{name: wild}]
  - name: no-host
    match: {}
    upstreams: [{name: none}]
"#;
    let gw = gateway(&named_yaml(&[("none", &none), ("wild", &wild)], routes)).await;
    assert_eq!(served_by(&get_host(&gw, "/", "example.com").await), "none");
    assert_eq!(
        served_by(&get_host(&gw, "/", "notexample.com").await),
        "none"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/", "www.example.com").await),
        "wild"
    );
    assert_eq!(wild.hits(), 1);
    gw.stop().await;
}

#[actix_rt::test]
async fn host_matching_ignores_port_and_case() {
    let none = Upstream::new("none").start().await;
    let wild = Upstream::new("wild").start().await;
    let exact = Upstream::new("exact").start().await;
    let routes = r#"
  - name: exact
    match: {host: "api.example.com"}
    upstreams: [{name: exact}]
  - name: wildcard
    match: {host: "*.example.com"}
    upstreams: [{name: wild}]
  - name: no-host
    match: {}
    upstreams: [{name: none}]
"#;
    let gw = gateway(&named_yaml(
        &[("none", &none), ("wild", &wild), ("exact", &exact)],
        routes,
    ))
    .await;
    assert_eq!(
        served_by(&get_host(&gw, "/", "api.example.com:8080").await),
        "exact"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/", "API.Example.COM").await),
        "exact"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/", "Api.EXAMPLE.com:443").await),
        "exact"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/", "WWW.EXAMPLE.COM:9000").await),
        "wild"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/", "example.com:80").await),
        "none"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn host_specificity_beats_path_specificity() {
    let path = Upstream::new("path").start().await;
    let host = Upstream::new("host").start().await;
    let routes = r#"
  - name: long-path-no-host
    match: {pathPrefix: "/api/v1"}
    upstreams: [{name: path}]
  - name: host-only
    match: {host: "api.example.com"}
    upstreams: [{name: host}]
"#;
    let gw = gateway(&named_yaml(&[("path", &path), ("host", &host)], routes)).await;
    assert_eq!(
        served_by(&get_host(&gw, "/api/v1/users", "api.example.com").await),
        "host"
    );
    assert_eq!(
        served_by(&get_host(&gw, "/api/v1/users", "other.example.com").await),
        "path"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn exact_path_beats_longer_prefix_beats_shorter_prefix() {
    let short = Upstream::new("short").start().await;
    let long = Upstream::new("long").start().await;
    let exact = Upstream::new("exact").start().await;
    let routes = r#"
  - name: short
    match: {pathPrefix: "/a"}
    upstreams: [{name: short}]
  - name: long
    match: {pathPrefix: "/a/b"}
    upstreams: [{name: long}]
  - name: exact
    match: {path: "/a/b/c"}
    upstreams: [{name: exact}]
"#;
    let gw = gateway(&named_yaml(
        &[("short", &short), ("long", &long), ("exact", &exact)],
        routes,
    ))
    .await;
    assert_eq!(served_by(&gw.get("/a/b/c").await), "exact");
    assert_eq!(served_by(&gw.get("/a/b/c?x=1").await), "exact");
    assert_eq!(served_by(&gw.get("/a/b/c/d").await), "long");
    assert_eq!(served_by(&gw.get("/a/b").await), "long");
    assert_eq!(served_by(&gw.get("/a/b/x").await), "long");
    assert_eq!(served_by(&gw.get("/a/bc").await), "short");
    assert_eq!(served_by(&gw.get("/a/x").await), "short");
    assert_eq!(served_by(&gw.get("/a").await), "short");
    gw.stop().await;
}

#[actix_rt::test]
async fn path_prefix_is_segment_aware() {
    let dflt = Upstream::new("default").start().await;
    let api = Upstream::new("api").start().await;
    let yaml = format!(
        "{}upstreams:\n  api:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - name: api\n    match: {{pathPrefix: \"/api\"}}\n    upstreams: [{{name: api}}]\n",
        backends_yaml(&[&dflt.addr_str()], ""),
        api.addr_str()
    );
    let gw = gateway(&yaml).await;
    assert_eq!(served_by(&gw.get("/api").await), "api");
    assert_eq!(served_by(&gw.get("/api/x").await), "api");
    assert_eq!(served_by(&gw.get("/api/x/y?z=1").await), "api");
    assert_eq!(served_by(&gw.get("/apiary").await), "default");
    assert_eq!(served_by(&gw.get("/ap").await), "default");
    assert_eq!(api.hits(), 3);
    assert_eq!(dflt.hits(), 2);
    gw.stop().await;
}

#[actix_rt::test]
async fn method_and_header_conditions_beat_unconditioned_routes() {
    let plain = Upstream::new("plain").start().await;
    let post = Upstream::new("post").start().await;
    let canary = Upstream::new("canary").start().await;
    // The unconditioned route comes first in the file.
    let routes = r#"
  - name: plain
    match: {pathPrefix: "/x"}
    upstreams: [{name: plain}]
  - name: post-only
    match: {pathPrefix: "/x", methods: ["POST"]}
    upstreams: [{name: post}]
  - name: canary
    match: {pathPrefix: "/x", headers: {X-Canary: "true"}}
    upstreams: [{name: canary}]
"#;
    let gw = gateway(&named_yaml(
        &[("plain", &plain), ("post", &post), ("canary", &canary)],
        routes,
    ))
    .await;
    let c = awc::Client::default();
    assert_eq!(served_by(&fetch(c.get(gw.url("/x"))).await), "plain");
    assert_eq!(
        served_by(&send(c.post(gw.url("/x")), Some(b"hi".to_vec())).await),
        "post"
    );
    assert_eq!(served_by(&fetch(c.put(gw.url("/x"))).await), "plain");
    assert_eq!(
        served_by(&fetch(c.get(gw.url("/x/y")).insert_header(("X-Canary", "true"))).await),
        "canary"
    );
    assert_eq!(
        served_by(&fetch(c.get(gw.url("/x")).insert_header(("X-Canary", "false"))).await),
        "plain"
    );
    // Both conditioned routes match: file order decides.
    assert_eq!(
        served_by(
            &send(
                c.post(gw.url("/x")).insert_header(("X-Canary", "true")),
                Some(b"hi".to_vec())
            )
            .await
        ),
        "post"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn file_order_breaks_ties_between_equally_specific_routes() {
    let first = Upstream::new("first").start().await;
    let second = Upstream::new("second").start().await;
    // Names sort the other way round, so only file order can explain the winner.
    let routes = r#"
  - name: zeta
    match: {pathPrefix: "/t", methods: ["GET"]}
    upstreams: [{name: first}]
  - name: alpha
    match: {pathPrefix: "/t", methods: ["GET"]}
    upstreams: [{name: second}]
"#;
    let gw = gateway(&named_yaml(
        &[("first", &first), ("second", &second)],
        routes,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(served_by(&gw.get("/t/1").await), "first");
    }
    assert_eq!(second.hits(), 0);
    gw.stop().await;
}

#[actix_rt::test]
async fn unmatched_request_goes_to_the_default_upstream() {
    let dflt = Upstream::new("default").start().await;
    let only = Upstream::new("only").start().await;
    let yaml = format!(
        "{}upstreams:\n  only:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - name: only\n    match: {{pathPrefix: \"/only\"}}\n    upstreams: [{{name: only}}]\n",
        backends_yaml(&[&dflt.addr_str()], ""),
        only.addr_str()
    );
    let gw = gateway(&yaml).await;
    let r = gw.get("/elsewhere?q=2").await;
    assert_eq!(served_by(&r), "default");
    assert_eq!(r.json()["path"], "/elsewhere?q=2");
    assert_eq!(served_by(&gw.get("/only/x").await), "only");
    gw.stop().await;
}

#[actix_rt::test]
async fn unmatched_request_with_empty_default_upstream_is_404_json_with_request_id() {
    let only = Upstream::new("only").start().await;
    let routes = r#"
  - name: only
    match: {pathPrefix: "/only"}
    upstreams: [{name: only}]
"#;
    let gw = gateway(&named_yaml(&[("only", &only)], routes)).await;

    let r = gw.get("/nope").await;
    assert_eq!(r.status, 404, "{r:?}");
    let body = r.json();
    assert!(
        body["error"].is_string() && !body["error"].as_str().unwrap().is_empty(),
        "{}",
        r.body
    );
    let rid = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request_id: {}", r.body));
    assert!(is_hex32(rid), "generated request id {rid:?}");
    assert_eq!(r.header("x-request-id"), Some(rid));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type: {:?}",
        r.header("content-type")
    );

    // A sane client id is the one reported.
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/nope"))
            .insert_header(("x-request-id", "trace-42")),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["request_id"], "trace-42");
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    assert_eq!(only.hits(), 0);
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 2. load balancing
// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn round_robin_starts_with_the_first_backend_and_rotates() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let c = Upstream::new("c").start().await;
    let gw = gateway(&weighted_yaml(&[(&a, 1), (&b, 1), (&c, 1)], "round_robin")).await;
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(served_by(&gw.get("/").await));
    }
    assert_eq!(got, ["a", "b", "c", "a", "b", "c", "a"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn round_robin_alternates_between_two_backends() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str(), &b.addr_str()],
        "  loadBalancer: round_robin\n",
    ))
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(served_by(&gw.get("/").await));
    }
    assert_eq!(got, ["a", "b", "a", "b", "a", "b"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn weighted_round_robin_5_1_1_is_smooth() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let c = Upstream::new("c").start().await;
    let gw = gateway(&weighted_yaml(
        &[(&a, 5), (&b, 1), (&c, 1)],
        "weighted_round_robin",
    ))
    .await;
    let mut got = Vec::new();
    for _ in 0..14 {
        got.push(served_by(&gw.get("/").await));
    }
    assert_eq!(&got[..7], ["a", "a", "b", "a", "c", "a", "a"]);
    assert_eq!(
        &got[7..],
        ["a", "a", "b", "a", "c", "a", "a"],
        "the cycle repeats"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn least_connections_avoids_the_backend_with_a_request_in_flight() {
    let a = Upstream::new("a")
        .delay(Duration::from_millis(1500))
        .start()
        .await;
    let b = Upstream::new("b").start().await;
    let gw = gateway(&weighted_yaml(&[(&a, 1), (&b, 1)], "least_connections")).await;
    let url = gw.url("/slow");

    // Get one request in flight on A (if an idle tie sends one to B first, it returns at once).
    let mut slow = None;
    for attempt in 0..4 {
        let before = a.hits() + b.hits();
        let u = url.clone();
        let h = actix_rt::spawn(async move { fetch(awc::Client::default().get(u)).await });
        eventually("the spawned request reaches an upstream", || async {
            a.hits() + b.hits() > before
        })
        .await;
        if a.hits() == 1 {
            slow = Some(h);
            break;
        }
        let r = h.await.unwrap();
        assert_eq!(served_by(&r), "b", "attempt {attempt}");
    }
    let slow = slow.expect("a request reached A");
    let a_addr = a.addr_str();
    let b_addr = b.addr_str();
    eventually("A has one request in flight", || async {
        active_of(&gw, &a_addr).await == 1
    })
    .await;

    for i in 0..5 {
        eventually("B is idle", || async { active_of(&gw, &b_addr).await == 0 }).await;
        let r = gw.get(&format!("/fast/{i}")).await;
        assert_eq!(served_by(&r), "b", "request {i} while A is busy");
    }
    // The B requests above really overlapped A's request.
    assert_eq!(
        active_of(&gw, &a_addr).await,
        1,
        "A's request still in flight"
    );
    assert_eq!(a.hits(), 1);

    let r = slow.await.unwrap();
    assert_eq!(served_by(&r), "a");
    gw.stop().await;
}

#[actix_rt::test]
async fn zero_weight_backend_is_never_picked_by_any_algorithm() {
    for lb in ["round_robin", "weighted_round_robin", "least_connections"] {
        let a = Upstream::new("a").start().await;
        let z = Upstream::new("zero").start().await;
        let c = Upstream::new("c").start().await;
        let gw = gateway(&weighted_yaml(&[(&a, 1), (&z, 0), (&c, 1)], lb)).await;
        for _ in 0..12 {
            let who = served_by(&gw.get("/").await);
            assert_ne!(who, "zero", "{lb} picked the weight-0 backend");
        }
        assert_eq!(z.hits(), 0, "{lb}");
        assert_eq!(a.hits() + c.hits(), 12, "{lb}");
        assert!(
            a.hits() > 0 && c.hits() > 0,
            "{lb}: a={} c={}",
            a.hits(),
            c.hits()
        );
        gw.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. traffic split
// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn traffic_split_80_20_over_1000_requests() {
    let a = Upstream::new("a").start().await;
    let b = Upstream::new("b").start().await;
    let routes = r#"
  - name: split
    match: {pathPrefix: "/"}
    upstreams: [{name: a, weight: 80}, {name: b, weight: 20}]
"#;
    let gw = gateway(&named_yaml(&[("a", &a), ("b", &b)], routes)).await;
    let client = awc::Client::default();
    let mut count_a = 0usize;
    let mut count_b = 0usize;
    for _batch in 0..20 {
        let futs = (0..50).map(|_| fetch(client.get(gw.url("/s"))));
        for r in futures_util::future::join_all(futs).await {
            match served_by(&r).as_str() {
                "a" => count_a += 1,
                "b" => count_b += 1,
                other => panic!("unexpected upstream {other}"),
            }
        }
    }
    assert_eq!(count_a + count_b, 1000);
    assert!(
        (750..=850).contains(&count_a),
        "a got {count_a} of 1000 (b {count_b}); want 80% ± 5 points"
    );
    assert_eq!(a.hits(), count_a);
    assert_eq!(b.hits(), count_b);
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. header rules
// ---------------------------------------------------------------------------------------------

#[actix_rt::test]
async fn hop_by_hop_and_connection_listed_headers_are_not_forwarded() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let req = b"GET /hop HTTP/1.1\r\n\
Host: hop.example\r\n\
Connection: close, X-Foo\r\n\
X-Foo: 1\r\n\
Keep-Alive: timeout=5\r\n\
TE: trailers\r\n\
Trailer: X-Checksum\r\n\
Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
Proxy-Connection: keep-alive\r\n\
Upgrade: h2c\r\n\
X-Keep: yes\r\n\
\r\n";
    let resp = raw_exchange(gw.http.unwrap(), req, Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "response: {resp}");
    assert_eq!(a.hits(), 1);
    let seen = a.last();
    assert_eq!(seen.path, "/hop");
    for h in [
        "x-foo",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            seen.header(h).is_none(),
            "{h} was forwarded: {:?}",
            seen.headers
        );
    }
    // Whatever Connection header the gateway's own client sends, it is not the client's.
    for v in seen.header_all("connection") {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("x-foo") && !v.contains("close"),
            "client's Connection forwarded: {v}"
        );
    }
    assert_eq!(seen.header("x-keep"), Some("yes"));
    assert_eq!(seen.header("host"), Some("hop.example"));
    gw.stop().await;
}

#[actix_rt::test]
async fn headers_named_in_keep_alive_connection_headers_are_dropped() {
    // awc writes its own Connection header, so the client side is raw. Two pipelined requests:
    // the first keeps the connection alive (names spread over two Connection lines), the second
    // closes it so the exchange ends without waiting for a timeout.
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let req = b"GET /first HTTP/1.1\r\n\
Host: ka.example\r\n\
Connection: keep-alive, X-Secret\r\n\
Connection: X-Other\r\n\
X-Secret: s3cret\r\n\
X-Other: o\r\n\
X-Public: p\r\n\
\r\n\
GET /second HTTP/1.1\r\n\
Host: ka.example\r\n\
Connection: close\r\n\
X-Public: q\r\n\
\r\n";
    let resp = raw_exchange(gw.http.unwrap(), req, Duration::from_secs(3)).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "response: {resp}");
    let seen = a.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let first = &seen[0];
    assert_eq!(first.path, "/first");
    assert!(first.header("x-secret").is_none(), "{:?}", first.headers);
    assert!(first.header("x-other").is_none(), "{:?}", first.headers);
    assert_eq!(first.header_all("x-public"), ["p"]);
    for v in first.header_all("connection") {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("x-secret") && !v.contains("x-other"),
            "client's Connection forwarded: {v}"
        );
    }
    assert_eq!(seen[1].path, "/second");
    assert_eq!(seen[1].header_all("x-public"), ["q"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn untrusted_client_x_forwarded_for_is_replaced_by_peer_ip() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/"))
            .insert_header(("x-forwarded-for", "6.6.6.6, 7.7.7.7"))
            .insert_header(("x-real-ip", "6.6.6.6")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_all("x-real-ip"), ["127.0.0.1"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn trusted_proxy_x_forwarded_for_is_kept_and_peer_appended() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  trustedProxies: [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n",
    ))
    .await;
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/"))
            .insert_header(("x-forwarded-for", "203.0.113.7, 198.51.100.2, 10.1.2.3")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.7, 198.51.100.2, 10.1.2.3, 127.0.0.1"]
    );
    // Right-most entry that is not a trusted proxy.
    assert_eq!(seen.header_all("x-real-ip"), ["198.51.100.2"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn trusted_proxy_without_x_forwarded_for_gets_peer_as_client() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(
        &[&a.addr_str()],
        "  trustedProxies: [\"127.0.0.1/32\"]\n",
    ))
    .await;
    assert_eq!(gw.get("/").await.status, 200);
    let seen = a.last();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_all("x-real-ip"), ["127.0.0.1"]);

    let r = fetch(
        awc::Client::default()
            .get(gw.url("/"))
            .insert_header(("x-forwarded-for", "203.0.113.9")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last();
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(seen.header_all("x-real-ip"), ["203.0.113.9"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn forwarded_proto_is_http_and_forwarded_host_is_the_original_host() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/p"))
            .insert_header(("host", "shop.example.com:8443"))
            // An untrusted client cannot choose these.
            .insert_header(("x-forwarded-proto", "https"))
            .insert_header(("x-forwarded-host", "evil.example")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last();
    assert_eq!(seen.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(
        seen.header_all("x-forwarded-host"),
        ["shop.example.com:8443"]
    );
    // Host is preserved by default.
    assert_eq!(seen.header_all("host"), ["shop.example.com:8443"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn host_is_preserved_by_default_and_is_the_backend_address_with_preserve_host_false() {
    let a = Upstream::new("a").start().await;
    let routes = r#"
  - name: rewrite
    match: {pathPrefix: "/rewrite"}
    preserveHost: false
    upstreams: [{name: default}]
  - name: keep
    match: {pathPrefix: "/keep"}
    upstreams: [{name: default}]
"#;
    let yaml = format!("{}routes:{routes}", backends_yaml(&[&a.addr_str()], ""));
    let gw = gateway(&yaml).await;

    assert_eq!(
        get_host(&gw, "/keep", "public.example.com").await.status,
        200
    );
    assert_eq!(a.last().header_all("host"), ["public.example.com"]);

    assert_eq!(
        get_host(&gw, "/other", "public.example.com").await.status,
        200
    );
    assert_eq!(
        a.last().header_all("host"),
        ["public.example.com"],
        "default route preserves Host"
    );

    assert_eq!(
        get_host(&gw, "/rewrite", "public.example.com").await.status,
        200
    );
    let seen = a.last();
    assert_eq!(seen.path, "/rewrite");
    assert_eq!(seen.header_all("host"), [a.addr_str()]);
    assert_eq!(seen.header_all("x-forwarded-host"), ["public.example.com"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn sane_client_request_id_is_forwarded_and_echoed() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let id = "req-123_abc.DEF:456";
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/"))
            .insert_header(("x-request-id", id)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(all_values(&r, "x-request-id"), [id]);
    assert_eq!(a.last().header_all("x-request-id"), [id]);

    // Exactly 128 visible characters is still sane.
    let long = "r".repeat(128);
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/"))
            .insert_header(("x-request-id", long.as_str())),
    )
    .await;
    assert_eq!(all_values(&r, "x-request-id"), [long.as_str()]);
    assert_eq!(a.last().header_all("x-request-id"), [long.as_str()]);
    gw.stop().await;
}

#[actix_rt::test]
async fn missing_or_insane_request_id_is_replaced_by_a_generated_one() {
    let a = Upstream::new("a").start().await;
    let gw = gateway(&backends_yaml(&[&a.addr_str()], "")).await;
    let too_long = "x".repeat(129);
    let mut ids = Vec::new();
    for bad in [None, Some("has spaces in it"), Some(too_long.as_str())] {
        let mut req = awc::Client::default().get(gw.url("/"));
        if let Some(v) = bad {
            req = req.insert_header(("x-request-id", v));
        }
        let r = fetch(req).await;
        assert_eq!(r.status, 200, "{bad:?}");
        let on_response = all_values(&r, "x-request-id");
        assert_eq!(on_response.len(), 1, "{bad:?}: {:?}", r.headers);
        let id = on_response[0].to_string();
        assert!(is_hex32(&id), "{bad:?}: generated id {id:?}");
        assert_eq!(
            a.last().header_all("x-request-id"),
            [id.as_str()],
            "{bad:?}: upstream and response agree"
        );
        ids.push(id);
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "ids are unique: {ids:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn route_request_header_rules_set_add_and_remove() {
    let a = Upstream::new("a").start().await;
    let routes = r#"
  - name: rules
    match: {pathPrefix: "/"}
    upstreams: [{name: a}]
    requestHeaders:
      set: {X-Set: "gateway", X-New: "fresh"}
      add: {X-Add: "gateway"}
      remove: ["X-Remove", "Cookie"]
"#;
    let gw = gateway(&named_yaml(&[("a", &a)], routes)).await;
    let r = fetch(
        awc::Client::default()
            .get(gw.url("/h"))
            .insert_header(("x-set", "client"))
            .insert_header(("x-add", "client"))
            .insert_header(("x-remove", "bye"))
            .insert_header(("cookie", "session=1"))
            .insert_header(("x-untouched", "same")),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = a.last();
    assert_eq!(seen.header_all("x-set"), ["gateway"]);
    assert_eq!(seen.header_all("x-new"), ["fresh"]);
    assert_eq!(seen.header_all("x-add"), ["client", "gateway"]);
    assert!(seen.header("x-remove").is_none(), "{:?}", seen.headers);
    assert!(seen.header("cookie").is_none(), "{:?}", seen.headers);
    assert_eq!(seen.header_all("x-untouched"), ["same"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn route_response_header_rules_set_add_and_remove() {
    let a = Upstream::new("a")
        .header("x-resp-set", "upstream")
        .header("x-resp-add", "upstream")
        .header("x-resp-remove", "upstream")
        .header("x-resp-keep", "upstream")
        .start()
        .await;
    let routes = r#"
  - name: rules
    match: {pathPrefix: "/"}
    upstreams: [{name: a}]
    responseHeaders:
      set: {X-Resp-Set: "gateway", X-Resp-New: "fresh"}
      add: {X-Resp-Add: "gateway"}
      remove: ["X-Resp-Remove"]
"#;
    let gw = gateway(&named_yaml(&[("a", &a)], routes)).await;
    let r = gw.get("/").await;
    assert_eq!(served_by(&r), "a");
    assert_eq!(all_values(&r, "x-resp-set"), ["gateway"]);
    assert_eq!(all_values(&r, "x-resp-new"), ["fresh"]);
    assert_eq!(all_values(&r, "x-resp-add"), ["upstream", "gateway"]);
    assert!(r.header("x-resp-remove").is_none(), "{:?}", r.headers);
    assert_eq!(all_values(&r, "x-resp-keep"), ["upstream"]);
    assert_eq!(r.json()["backend"], "a", "body intact");
    gw.stop().await;
}

#[actix_rt::test]
async fn strip_prefix_forwards_the_rest_of_the_path_and_keeps_the_query() {
    let a = Upstream::new("a").start().await;
    let routes = r#"
  - name: api
    match: {pathPrefix: "/api"}
    stripPrefix: true
    upstreams: [{name: a}]
"#;
    let gw = gateway(&named_yaml(&[("a", &a)], routes)).await;

    assert_eq!(gw.get("/api/users?q=1").await.status, 200);
    assert_eq!(a.last().path, "/users?q=1");

    assert_eq!(gw.get("/api").await.status, 200);
    assert_eq!(a.last().path, "/");

    assert_eq!(gw.get("/api?x=2").await.status, 200);
    assert_eq!(a.last().path, "/?x=2");

    assert_eq!(gw.get("/api/").await.status, 200);
    assert_eq!(a.last().path, "/");

    assert_eq!(gw.get("/api/a/b/c").await.status, 200);
    assert_eq!(a.last().path, "/a/b/c");
    gw.stop().await;
}

#[actix_rt::test]
async fn without_strip_prefix_the_path_is_forwarded_unchanged() {
    let a = Upstream::new("a").start().await;
    let routes = r#"
  - name: api
    match: {pathPrefix: "/api"}
    upstreams: [{name: a}]
"#;
    let gw = gateway(&named_yaml(&[("a", &a)], routes)).await;
    assert_eq!(gw.get("/api/users?q=1").await.status, 200);
    assert_eq!(a.last().path, "/api/users?q=1");
    gw.stop().await;
}
