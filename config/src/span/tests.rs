use super::*;

const YAML: &str = "\
# comment
server:
  listen: \":8080\"
  backends:
    - addr: \"a:1\"
    - addr: \"b:2\"   # second
      weight: 3
  health: {interval: 5s, \"timeout\": 1s}
  trustedProxies: [10.0.0.0/8, \"::1\"]
  headers:
    key: |
      text: not a key
      - not an item
routes:
- name: api
  match:
    pathPrefix: /api
upstreams:
  v2.canary:
    backends: [{addr: \"c:3\", weight: 1}, {addr: 'd:4'}]
";

/// The line and column of the node at `path`, and the text its blank range covers.
fn at(path: &str) -> Option<((usize, usize), &'static str)> {
    find(YAML, path).map(|n| (line_col(YAML, n.at), &YAML[n.blank]))
}

#[test]
fn finds_block_entries_and_items() {
    assert_eq!(at("server.listen"), Some(((3, 3), "listen: \":8080\"")));
    assert_eq!(
        at("server.backends[1]"),
        Some(((6, 5), "- addr: \"b:2\"   # second\n      weight: 3"))
    );
    assert_eq!(
        at("server.backends[1].addr"),
        Some(((6, 7), "addr: \"b:2\"   # second"))
    );
    assert_eq!(at("server.backends[1].weight"), Some(((7, 7), "weight: 3")));
    assert_eq!(at("server.backends[2]"), None);
    assert_eq!(at("server.headers.key.text"), None, "inside a block scalar");
}

#[test]
fn finds_unindented_sequences_and_dotted_keys() {
    assert_eq!(
        at("routes[0].match.pathPrefix"),
        Some(((17, 5), "pathPrefix: /api"))
    );
    assert_eq!(at("routes[0]").map(|a| a.0), Some((15, 1)));
    assert_eq!(
        at("upstreams.v2.canary.backends[1].addr").map(|a| a.0),
        Some((20, 43))
    );
}

#[test]
fn finds_flow_entries_with_their_comma() {
    assert_eq!(
        at("server.health.interval"),
        Some(((8, 12), "interval: 5s,"))
    );
    assert_eq!(
        at("server.health.timeout"),
        Some(((8, 26), "\"timeout\": 1s"))
    );
    assert_eq!(
        at("server.trustedProxies[0]"),
        Some(((9, 20), "10.0.0.0/8,"))
    );
    assert_eq!(
        at("upstreams.v2.canary.backends[0]"),
        Some(((20, 16), "{addr: \"c:3\", weight: 1},"))
    );
}

#[test]
fn blanking_keeps_positions_and_the_rest_parses() {
    let mut text = YAML.to_string();
    for path in [
        "upstreams.v2.canary.backends[0]",
        "server.health.timeout",
        "server.backends[0].addr",
    ] {
        let node = find(&text, path).expect(path);
        blank(&mut text, node.blank);
    }
    assert_eq!(text.lines().count(), YAML.lines().count());
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("still YAML");
    assert_eq!(v["server"]["health"]["interval"], "5s");
    assert!(v["server"]["health"].get("timeout").is_none());
    assert_eq!(v["server"]["backends"][0], serde_yaml::Value::Null);
    assert_eq!(v["upstreams"]["v2.canary"]["backends"][0]["addr"], "d:4");
    assert_eq!(
        find(&text, "server.backends[1].weight").map(|n| line_col(&text, n.at)),
        Some((7, 7))
    );
}

#[test]
fn duplicates_and_aliases() {
    let text = "server:\n  listen: \":1\"\n  backends: []\n  listenAddr: \":2\"\n";
    let n = find_duplicate(text, "server", "listenAddr").expect("second spelling");
    assert_eq!(line_col(text, n.at), (4, 3));
    let text = "a: 1\nb: 2\na: 3\n";
    assert_eq!(
        find_duplicate(text, "", "a").map(|n| line_col(text, n.at)),
        Some((3, 1))
    );
}

#[test]
fn unsupported_syntax_finds_nothing() {
    assert_eq!(find("? a\n: 1\n", "a"), None);
    assert_eq!(find("x: [a: 1]\n", "x[0]"), None);
    assert_eq!(find("", "a"), None);
}
