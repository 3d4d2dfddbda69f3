//! Every error of a file in one run, each at its own line and column, sorted by line (DESIGN B3,
//! B11): unknown keys, bad enum values, durations and types found by the parser together with
//! the value checks, none reported twice and none that is only a consequence of another.

use gogate_config::{load_str, ConfigErrors};
use std::path::Path;

fn errors(name: &str, text: &str) -> ConfigErrors {
    load_str(text, Some(Path::new(name))).expect_err("the file has mistakes")
}

fn lines(e: &ConfigErrors) -> Vec<String> {
    e.to_string().lines().map(str::to_string).collect()
}

/// (line, column, key path) of each error, in order.
fn spots(e: &ConfigErrors) -> Vec<(usize, usize, &str)> {
    e.0.iter()
        .map(|e| {
            let at = (e.line, e.column);
            let (Some(line), Some(col)) = at else {
                panic!("{e} has no line and column");
            };
            (line, col, e.path.as_str())
        })
        .collect()
}

/// One mistake of each kind: a misspelt key, a bad address, a bad enum value, a bad duration, a
/// path prefix without its slash and an unknown upstream.
const SIX_MISTAKES: &str = "\
server:
  listenAddr: \":8080\"
  backends:
    - addr: \"127.0.0.1:9001\"
  loadBalancer: \"round_robbin\"
  health:
    intervall: 5s
  timeouts:
    connect: \"5 seconds\"
upstreams:
  api:
    backends:
      - addr: \"nope\"
routes:
  - name: api
    match:
      pathPrefix: \"api\"
    upstreams:
      - name: apii
";

#[test]
fn six_mistakes_are_reported_in_one_run_each_on_its_line_sorted() {
    let e = errors("six.yaml", SIX_MISTAKES);
    assert_eq!(
        spots(&e),
        [
            (5, 3, "server.loadBalancer"),
            (7, 5, "server.health"),
            (9, 5, "server.timeouts.connect"),
            (13, 9, "upstreams.api.backends[0].addr"),
            (17, 7, "routes[0].match.pathPrefix"),
            (19, 9, "routes[0].upstreams[0].name"),
        ],
        "{e}"
    );
    assert_eq!(
        lines(&e),
        [
            "six.yaml:5:3: server.loadBalancer: invalid loadBalancer \"round_robbin\"; allowed: round_robin, weighted_round_robin, least_connections",
            "six.yaml:7:5: server.health: unknown field `intervall`, expected one of `enabled`, `interval`, `timeout`, `unhealthyThreshold`, `unhealthy_threshold`, `healthyThreshold`, `healthy_threshold`, `checkType`, `check_type`, `httpPath`, `http_path`",
            "six.yaml:9:5: server.timeouts.connect: unknown unit \" seconds\" in duration \"5 seconds\"; allowed units: ms, s, m, h",
            "six.yaml:13:9: upstreams.api.backends[0].addr: invalid backend address \"nope\"; expected \"host:port\", e.g. \"127.0.0.1:9001\"",
            "six.yaml:17:7: routes[0].match.pathPrefix: \"api\" must start with '/' and contain no '?', '#' or spaces",
            "six.yaml:19:9: routes[0].upstreams[0].name: unknown upstream \"apii\"; defined: default, api",
        ]
    );
}

/// The `bad.yaml` of the README's "Configuration" section, whose output the README shows.
const README_BAD_YAML: &str = "\
server:
  httpListenAddr: \":8081\"
  health:
    intervall: 5s
    timeout: 2s
  backends:
    - addr: \"127.0.0.1:9001\"
      weight: 2
    - addr: \"nope\"
";

#[test]
fn the_readme_example_is_what_validate_prints() {
    let out = lines(&errors("bad.yaml", README_BAD_YAML));
    assert_eq!(
        out,
        [
            "bad.yaml:4:5: server.health: unknown field `intervall`, expected one of `enabled`, `interval`, `timeout`, `unhealthyThreshold`, `unhealthy_threshold`, `healthyThreshold`, `healthy_threshold`, `checkType`, `check_type`, `httpPath`, `http_path`",
            "bad.yaml:9:7: server.backends[1].addr: invalid backend address \"nope\"; expected \"host:port\", e.g. \"127.0.0.1:9001\"",
        ]
    );
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(readme_path).expect("README.md");
    let shown = format!(
        "$ gogate validate -config bad.yaml\n{}\n```",
        out.join("\n")
    );
    assert!(readme.contains(&shown), "README.md should show:\n{shown}");
    let file = format!("```yaml\n{README_BAD_YAML}```\n");
    assert!(
        readme.contains(&file),
        "README.md should show the file:\n{file}"
    );
}

#[test]
fn errors_in_several_sections_are_all_reported() {
    let text = "\
server:
  backends:
    - addr: \"127.0.0.1:9001\"
  tcp_pool:
    maxIdle: -3
  limits: {maxConnections: 0, headerTimeout: soon}
upstreams:
  v2:
    backends: [{addr: \"127.0.0.1:9002\", weight: 20000}]
    load_balancer: fastest
    health: {checkType: udp}
routes:
  - upstreams: [{name: v2}]
    sticky: \"query:x\"
  - match: {methods: [GET], pathPrefix: /a}
    upstreams: [{name: default, weight: 1}]
    stripPrefix: true
    rate_limit: {keyBy: cookie}
logging:
  level: loud
";
    let e = errors("s.yaml", text);
    assert_eq!(
        spots(&e),
        [
            (5, 5, "server.tcp_pool.maxIdle"),
            (6, 12, "server.limits.maxConnections"),
            (6, 31, "server.limits.headerTimeout"),
            (9, 41, "upstreams.v2.backends[0].weight"),
            (10, 5, "upstreams.v2.load_balancer"),
            (11, 14, "upstreams.v2.health.checkType"),
            (14, 5, "routes[0].sticky"),
            (18, 18, "routes[1].rate_limit.keyBy"),
            (20, 3, "logging.level"),
        ],
        "{e}"
    );
    let text = e.to_string();
    for needle in [
        "expected u32",
        "out of range; allowed 1 to 1000000",
        "expected a number before each unit",
        "too large; allowed 0 to 10000",
        "allowed: round_robin, weighted_round_robin, least_connections",
        "expected `tcp` or `http`",
        "cookie:NAME, header:NAME",
        "allowed: global, ip, header:NAME",
        "expected one of `debug`, `info`, `warn`, `warning`, `error`",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
}

#[test]
fn unknown_keys_inside_sequence_items_are_each_reported() {
    let text = "\
server:
  backends:
    - addr: \"127.0.0.1:9001\"
      wieght: 2
    - adress: \"127.0.0.1:9002\"
    - addr: \"127.0.0.1:9003\"
      weight: 1
      drain: true
routes:
  - upstreams: [{name: default, wieght: 2}]
    matchs: {path: /x}
";
    let e = errors("q.yaml", text);
    assert_eq!(
        spots(&e),
        [
            (4, 7, "server.backends[0]"),
            (5, 7, "server.backends[1]"),
            (8, 7, "server.backends[2]"),
            (10, 33, "routes[0].upstreams[0]"),
            (11, 5, "routes[0]"),
        ],
        "{e}"
    );
    for (err, key) in
        e.0.iter()
            .zip(["wieght", "adress", "drain", "wieght", "matchs"])
    {
        assert!(
            err.message
                .starts_with(&format!("unknown field `{key}`, expected")),
            "{err}"
        );
    }
}

#[test]
fn consequences_of_a_removed_entry_are_not_reported() {
    // The only backend has a misspelt key: no "missing field `addr`" for it, no "the L4
    // listener forwards to server.backends, which is empty", no "no backends" for the route.
    let e = errors(
        "c.yaml",
        "server:\n  backends:\n    - adr: \"127.0.0.1:9001\"\nroutes:\n  - upstreams: [{name: default}]\n",
    );
    assert_eq!(spots(&e), [(3, 7, "server.backends[0]")], "{e}");
    // A route's only upstream misspelt, an upstream of the wrong type, a jwt block with a bad
    // key: each reported once, not as a route without upstreams, an unknown upstream, or a
    // route whose `auth: jwt` has no policy.
    let e = errors(
        "c.yaml",
        "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\nupstreams:\n  v2: 5\nroutes:\n  - upstreams: [{nme: default}]\n  - upstreams: [{name: v2}]\n    auth: jwt\njwt:\n  algorithms: [RS256]\n  publicKeyFile: k.pem\n  leeway: [1]\n",
    );
    assert_eq!(
        spots(&e),
        [
            (4, 3, "upstreams.v2"),
            (6, 18, "routes[0].upstreams[0]"),
            (12, 3, "jwt.leeway"),
        ],
        "{e}"
    );
    // A list whose only item has the wrong type is not also reported empty.
    let e = errors(
        "c.yaml",
        "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\ncors:\n  allowedOrigins: [[\"https://a.test\"]]\n",
    );
    assert_eq!(spots(&e), [(4, 20, "cors.allowedOrigins[0]")], "{e}");
    // A value of the wrong type is reported, and the `missing field` its removal leaves is not.
    let e = errors(
        "c.yaml",
        "server:\n  backends:\n    - addr: [\"127.0.0.1:9001\"]\n",
    );
    assert_eq!(spots(&e), [(3, 7, "server.backends[0].addr")], "{e}");
}

#[test]
fn items_after_a_removed_item_keep_their_own_index() {
    let e = errors(
        "i.yaml",
        "server:\n  backends:\n    - weight: 1\n    - addr: x\n    - adr: y\n    - addr: z\n",
    );
    assert_eq!(
        spots(&e),
        [
            (3, 5, "server.backends[0]"),
            (4, 7, "server.backends[1].addr"),
            (5, 7, "server.backends[2]"),
            (6, 7, "server.backends[3].addr"),
        ],
        "{e}"
    );
    assert!(e.0[0].message.starts_with("missing field `addr`"), "{e}");
}

#[test]
fn an_inherited_bad_value_is_reported_once() {
    let e = errors(
        "d.yaml",
        "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\n  health:\n    healthyThreshold: 0\nupstreams:\n  v2:\n    backends: [{addr: \"127.0.0.1:9002\"}]\n  v3:\n    backends: [{addr: \"127.0.0.1:9003\"}]\n    health: {healthyThreshold: 0}\n",
    );
    assert_eq!(
        spots(&e),
        [
            (4, 5, "server.health.healthyThreshold"),
            (10, 14, "upstreams.v3.health.healthyThreshold"),
        ],
        "{e}"
    );
}

#[test]
fn a_duplicate_key_is_reported_at_its_second_spelling() {
    let e = errors(
        "k.yaml",
        "server:\n  listen: \":7000\"\n  backends: [{addr: \"127.0.0.1:9001\"}]\n  listenAddr: \":7001\"\n  loadBalancer: x\n",
    );
    assert_eq!(
        spots(&e),
        [(4, 3, "server"), (5, 3, "server.loadBalancer")],
        "{e}"
    );
    assert!(
        e.0[0].message.contains("duplicate field `listenAddr`"),
        "{e}"
    );
    // The first spelling stays, and is checked; a third is a second error.
    let e = errors(
        "k.yaml",
        "server:\n  backends: [{addr: \"127.0.0.1:9001\"}]\n  listenAddr: \"nope\"\n  listenAddr: \":1\"\n  listen: \":2\"\n",
    );
    assert_eq!(
        spots(&e),
        [
            (3, 3, "server.listenAddr"),
            (4, 3, "server"),
            (5, 3, "server")
        ],
        "{e}"
    );
}

#[test]
fn a_syntax_error_is_the_one_error() {
    let e = errors("y.yaml", "server:\n  listenAddr: [\n  bogus: 1\n");
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(e.0[0].line.is_some(), "{e}");
}

#[test]
fn a_file_of_many_mistakes_stops_after_the_bound() {
    let text: String = (0..120).map(|i| format!("key{i}: 1\n")).collect();
    let e = errors("m.yaml", &text);
    assert_eq!(e.0.len(), 101, "{e}");
    assert_eq!((e.0[99].line, e.0[99].column), (Some(100), Some(1)), "{e}");
    assert!(e.0[100].line.is_none() && e.0[100].message.contains("more than 100 errors"));
}

#[test]
fn crlf_line_endings_comments_and_a_document_marker_change_nothing() {
    let lf = errors("six.yaml", SIX_MISTAKES);
    let crlf = SIX_MISTAKES.replace('\n', "\r\n");
    assert_eq!(errors("six.yaml", &crlf), lf);
    let marked = format!(
        "--- # one document\n{}",
        SIX_MISTAKES
            .replace("server:\n", "server: # the default upstream\n")
            .replace("      - name: apii\n", "      - name: apii # typo\n")
    );
    let moved: Vec<_> = spots(&errors("six.yaml", &marked))
        .into_iter()
        .map(|(l, c, p)| (l - 1, c, p.to_string()))
        .collect();
    let want: Vec<_> = spots(&lf)
        .into_iter()
        .map(|(l, c, p)| (l, c, p.to_string()))
        .collect();
    assert_eq!(moved, want);
}
