//! The provisioned Grafana dashboard (deployments/docker/grafana/dashboards/gogate.json) queries
//! only metrics a real gateway exposes (DESIGN B7): every metric name in every panel query,
//! and the label names its matchers and `by (...)` clauses use, must be in a live scrape of a
//! gateway running the compose stack's own configuration (deployments/docker/compose/
//! gogate.yaml, backend host names replaced by real upstreams) after traffic that gives every
//! queried family a series: L7 requests on the split route, a rate limit that rejects, an L4
//! session, a reload. The dashboard must also have the panels issue 9 lists.
mod common;
use common::config_file::*;
use common::*;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric selectors and grouping labels of an expression.

/// Aggregation operators, binary operators and other keywords: identifiers that are never
/// metric names even when no `(` follows them (`sum by (x) (...)`, `a and b`, `offset 5m`).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "bool",
    "inf",
    "nan",
];
/// Keywords followed by a parenthesised list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

#[derive(Debug, Default, PartialEq)]
struct Scan {
    /// `(metric name, label names of its {...} matchers)`, in order of appearance.
    selectors: Vec<(String, Vec<String>)>,
    /// Label names of every `by`/`without`/`on`/`ignoring`/`group_*` list.
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the string literal starting at `i` (`"`, `'` with escapes; raw `` ` ``).
fn skip_string(s: &[char], i: usize) -> Result<usize, String> {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err(format!("unterminated string at {i}"))
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Label names of the matcher block `{...}` starting at `i`; the index after its `}`.
fn matchers(s: &[char], i: usize) -> Result<(Vec<String>, usize), String> {
    let mut labels = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_ws(s, j);
        match s.get(j) {
            None => return Err(format!("unterminated {{ at {i}")),
            Some('}') => return Ok((labels, j + 1)),
            Some(',') => j += 1,
            Some('"') | Some('\'') | Some('`') => j = skip_string(s, j)?,
            Some(&c) if is_ident_start(c) => {
                let start = j;
                while j < s.len() && is_ident(s[j]) {
                    j += 1;
                }
                labels.push(s[start..j].iter().collect());
            }
            Some('=') | Some('!') | Some('~') => j += 1,
            Some(c) => return Err(format!("unexpected {c:?} in matchers at {j}")),
        }
    }
}

/// The label names of the `( a, b )` list starting at `i`; the index after its `)`.
fn label_list(s: &[char], i: usize) -> Result<(Vec<String>, usize), String> {
    let close = s[i..]
        .iter()
        .position(|&c| c == ')')
        .ok_or_else(|| format!("unterminated label list at {i}"))?;
    let text: String = s[i + 1..i + close].iter().collect();
    let labels = text
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    Ok((labels, i + close + 1))
}

/// Metric selectors and grouping labels of a PromQL expression (with Grafana's `$variables`).
/// Identifiers inside strings, `{...}` matchers and `[...]` ranges are not metrics; neither are
/// functions (an identifier followed by `(`), keywords, numbers and durations.
fn scan(expr: &str) -> Result<Scan, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Scan::default();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i)?;
        } else if c == '[' {
            // A range or subquery: `[5m]`, `[$__rate_interval]`, `[1h:1m]`.
            let close = s[i..]
                .iter()
                .position(|&c| c == ']')
                .ok_or_else(|| format!("unterminated [ at {i}"))?;
            i += close + 1;
        } else if c == '{' {
            // A selector without a name (`{__name__="x"}`): nothing this test can check.
            return Err(format!("selector without a metric name at {i}: {expr}"));
        } else if c == '$' {
            i += 1;
            if s.get(i) == Some(&'{') {
                i += s[i..].iter().position(|&c| c == '}').unwrap_or(s.len() - i) + 1;
            } else {
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations: 0.99, 1e-3, 0x1f, 5m, 1h30m.
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let next = skip_ws(&s, i);
            if GROUPING.contains(&lower.as_str()) {
                if s.get(next) == Some(&'(') {
                    let (labels, j) = label_list(&s, next)?;
                    out.grouping.extend(labels);
                    i = j;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || s.get(next) == Some(&'(') {
                // An operator or a function call (`rate(`, `histogram_quantile(`).
            } else if s.get(next) == Some(&'{') {
                let (labels, j) = matchers(&s, next)?;
                out.selectors.push((word, labels));
                i = j;
            } else {
                out.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1; // operators, parentheses, commas
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The exposition format: sample names, their label names, and the families' types.

#[derive(Debug, Default)]
struct Scrape {
    /// `# TYPE` of each family.
    types: BTreeMap<String, String>,
    /// Every sample name with the union of its label names.
    samples: BTreeMap<String, BTreeSet<String>>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                scrape.types.insert(name.into(), kind.into());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let end = chars
            .iter()
            .position(|&c| !is_ident(c))
            .unwrap_or(chars.len());
        let name: String = chars[..end].iter().collect();
        let labels = scrape.samples.entry(name).or_default();
        if chars.get(end) == Some(&'{') {
            let (names, _) = matchers(&chars, end).expect("a well-formed scrape");
            labels.extend(names);
        }
    }
    scrape
}

impl Scrape {
    /// The family a sample name belongs to: itself, or a histogram's (summary's) family for
    /// `_bucket`, `_sum` and `_count`.
    fn family(&self, name: &str) -> Option<String> {
        if self.types.contains_key(name) {
            return Some(name.to_string());
        }
        for (suffix, kinds) in [
            ("_bucket", &["histogram"][..]),
            ("_sum", &["histogram", "summary"][..]),
            ("_count", &["histogram", "summary"][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self
                    .types
                    .get(base)
                    .is_some_and(|k| kinds.contains(&k.as_str()))
                {
                    return Some(base.to_string());
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The dashboard.

/// `(panel title, expr)` of every query of every panel (rows' nested panels included).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.clone(), expr.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Everything wrong with the dashboard's queries against `scrape`; empty when all is well.
fn problems(dashboard: &Value, scrape: &Scrape) -> Vec<String> {
    let mut problems = Vec::new();
    let qs = queries(dashboard);
    if qs.is_empty() {
        problems.push("the dashboard has no queries".into());
    }
    for (title, expr) in &qs {
        let found = match scan(expr) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{title}: cannot read {expr:?}: {e}"));
                continue;
            }
        };
        if found.selectors.is_empty() {
            problems.push(format!("{title}: {expr:?} queries no metric"));
        }
        let mut expr_labels = BTreeSet::new();
        for (name, labels) in &found.selectors {
            let Some(family) = scrape.family(name) else {
                problems.push(format!("{title}: metric {name} is not in the scrape"));
                continue;
            };
            let Some(has) = scrape.samples.get(name) else {
                problems.push(format!(
                    "{title}: {name} (family {family}, a {}) has no samples of that name",
                    scrape.types[&family]
                ));
                continue;
            };
            expr_labels.extend(has.iter().cloned());
            for l in labels.iter().filter(|l| *l != "__name__") {
                if !has.contains(l) {
                    problems.push(format!("{title}: {name} has no label {l} (it has {has:?})"));
                }
            }
        }
        for l in &found.grouping {
            if !expr_labels.contains(l) {
                problems.push(format!(
                    "{title}: grouping label {l} is on none of the metrics of {expr:?}"
                ));
            }
        }
    }
    problems
}

/// The panels issue 9 asks for, by the metrics (and labels) they query.
fn missing_panels(dashboard: &Value) -> Vec<&'static str> {
    let scans: Vec<(String, Scan)> = queries(dashboard)
        .into_iter()
        .filter_map(|(_, e)| scan(&e).ok().map(|s| (e.split_whitespace().collect(), s)))
        .collect();
    let queries_metric = |m: &str| {
        scans
            .iter()
            .any(|(_, s)| s.selectors.iter().any(|(n, _)| n == m))
    };
    let mut missing = Vec::new();
    let by_route_and_code = scans.iter().any(|(_, s)| {
        s.selectors
            .iter()
            .any(|(n, _)| n == "gogate_http_responses_total")
            && ["route", "code"]
                .iter()
                .all(|l| s.grouping.iter().any(|g| g == l))
    });
    if !by_route_and_code {
        missing.push("request rate by route and code");
    }
    for q in ["0.5", "0.99"] {
        let quantile = scans.iter().any(|(text, s)| {
            text.contains(&format!("histogram_quantile({q},"))
                && s.selectors
                    .iter()
                    .any(|(n, _)| n == "gogate_request_duration_seconds_bucket")
                && s.grouping.iter().any(|g| g == "le")
        });
        if !quantile {
            missing.push(if q == "0.5" {
                "p50 latency"
            } else {
                "p99 latency"
            });
        }
    }
    for (metric, panel) in [
        ("gogate_backend_healthy", "backend health"),
        ("gogate_circuit_breaker_state", "breaker state"),
        ("gogate_connections_active", "active connections"),
        ("gogate_rate_limit_rejected_total", "rate-limit rejections"),
        ("gogate_backend_bytes_sent_total", "bytes sent"),
        ("gogate_backend_bytes_received_total", "bytes received"),
        ("gogate_config_reloads_total", "reloads"),
    ] {
        if !queries_metric(metric) {
            missing.push(panel);
        }
    }
    missing
}

/// The datasource uid of the provisioning file (`grafana/provisioning/datasources/`).
fn provisioned_datasource_uid() -> String {
    let text = read("deployments/docker/grafana/provisioning/datasources/prometheus.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("datasource YAML parses");
    doc["datasources"][0]["uid"]
        .as_str()
        .expect("the provisioned datasource has a uid")
        .to_string()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deployments/docker/grafana/dashboards/gogate.json"))
        .expect("the dashboard is JSON")
}

// ---------------------------------------------------------------------------------------------
// Tests without a gateway.

#[test]
fn scanner_finds_metrics_and_labels_only() {
    let s = scan(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(gogate_request_duration_seconds_bucket{listener="http", route!~"x_total|y"}[$__rate_interval])))"#,
    )
    .unwrap();
    assert_eq!(
        s.selectors,
        vec![(
            "gogate_request_duration_seconds_bucket".to_string(),
            vec!["listener".to_string(), "route".to_string()]
        )]
    );
    assert_eq!(s.grouping, vec!["le", "route"]);

    let s = scan(
        "sum(rate(a_total{code=~\"5..\"}[5m] offset 1h)) / ignoring(code) group_left sum without (x) (b_total) > bool 0.5 and on() vector(1) or c",
    )
    .unwrap();
    let names: Vec<&str> = s.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a_total", "b_total", "c"]);
    assert_eq!(s.grouping, vec!["code", "x"]);

    // Strings, durations, numbers, Grafana variables and SUM BY in capitals are not metrics.
    let s = scan("SUM BY (job) (increase(m{a='b\\'c_total'}[1h30m:${__interval}])) * 1e3 + $x")
        .unwrap();
    assert_eq!(s.selectors.len(), 1, "{s:?}");
    assert_eq!(s.selectors[0].0, "m");
    assert!(scan("{__name__=\"x\"}").is_err());
    assert!(scan("rate(m{a=\"b}[5m])").is_err());
}

#[test]
fn dashboard_has_the_issue_panels_and_uses_the_provisioned_datasource() {
    let d = dashboard();
    assert_eq!(missing_panels(&d), Vec::<&str>::new());
    let uid = provisioned_datasource_uid();
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {p}"
        );
        assert_eq!(p["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], uid.as_str(), "panel {}", p["title"]);
        }
    }
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 39, "schemaVersion {schema} predates Grafana 11");
    assert_eq!(d["uid"], "gogate");

    // The check notices a panel that disappears.
    let mut broken = d.clone();
    for p in broken["panels"].as_array_mut().unwrap() {
        for t in p["targets"].as_array_mut().unwrap() {
            let e = t["expr"]
                .as_str()
                .unwrap()
                .replace("gogate_circuit_breaker_state", "vector");
            t["expr"] = e.into();
        }
    }
    assert_eq!(missing_panels(&broken), vec!["breaker state"]);
}

// ---------------------------------------------------------------------------------------------
// Against a live gateway.

/// The compose stack's configuration with its backends replaced by `stable` (web-1, web-2)
/// and `canary` (web-canary).
fn compose_config(stable: &[String; 2], canary: &str) -> String {
    let yaml = read("deployments/docker/compose/gogate.yaml");
    for host in ["web-1:8000", "web-2:8000", "web-canary:8000"] {
        assert!(
            yaml.contains(host),
            "compose/gogate.yaml no longer names {host}"
        );
    }
    yaml.replace("web-1:8000", &stable[0])
        .replace("web-2:8000", &stable[1])
        .replace("web-canary:8000", canary)
}

/// One HTTP/1.0 exchange through the L4 listener.
async fn l4_exchange(gw: &TestGateway) {
    let mut s = tokio::net::TcpStream::connect(gw.tcp.expect("L4 listener enabled"))
        .await
        .expect("connect to L4");
    s.write_all(b"GET /l4 HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.0 200"),
        "L4 answer: {}",
        String::from_utf8_lossy(&out)
    );
}

#[actix_rt::test]
async fn every_dashboard_query_uses_metrics_a_live_gateway_exposes() {
    let web1 = Upstream::new("web-1").start().await;
    let web2 = Upstream::new("web-2").start().await;
    let canary = Upstream::new("web-canary").start().await;
    let dir = TempDir::new();
    let path = dir.path("gogate.yaml");
    let stable = [web1.addr_str(), web2.addr_str()];
    write_config(&path, &compose_config(&stable, &canary.addr_str()));
    let gw = gateway_from_file(&path).await;

    // L7 on the split route until the canary has had its share, and on the default upstream.
    let mut n = 0;
    while canary.hits() == 0 {
        assert!(n < 500, "the canary got none of {n} requests");
        assert_eq!(gw.get("/api/x").await.status, 200);
        n += 1;
    }
    for _ in 0..4 {
        assert_eq!(gw.get("/other").await.status, 200);
    }
    // The "limited" route (rate 5, burst 5) rejects within a few requests.
    let mut rejected = false;
    for _ in 0..20 {
        if gw.get("/limited").await.status == 429 {
            rejected = true;
            break;
        }
    }
    assert!(rejected, "the limited route never answered 429");
    l4_exchange(&gw).await;
    let r = gw.admin_send("POST", "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Counters of an exchange are added when it is done; wait for the slowest (bytes).
    let d = dashboard();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (text, scrape) = loop {
        let text = gw.metrics_text().await;
        let scrape = parse_scrape(&text);
        let found = problems(&d, &scrape);
        if found.is_empty() {
            break (text, scrape);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{found:#?}\nscrape:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reloads = text
        .lines()
        .find(|l| l.starts_with("gogate_config_reloads_total{result=\"success\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok());
    assert!(
        reloads.is_some_and(|v| v >= 1.0),
        "no reload counted:\n{text}"
    );

    // The same check fails for a metric renamed to one that does not exist, and for a label
    // the metric does not have.
    let renamed = serde_json::to_string(&d)
        .unwrap()
        .replace("gogate_backend_healthy", "gogate_backend_up");
    let found = problems(&serde_json::from_str(&renamed).unwrap(), &scrape);
    assert!(
        found
            .iter()
            .any(|p| p.contains("gogate_backend_up is not in the scrape")),
        "{found:?}"
    );
    let relabeled = serde_json::to_string(&d)
        .unwrap()
        .replace("by (route, code)", "by (route, status_code)");
    let found = problems(&serde_json::from_str(&relabeled).unwrap(), &scrape);
    assert!(found.iter().any(|p| p.contains("status_code")), "{found:?}");
    // A histogram's family name alone has no samples: the query must say _bucket/_sum/_count.
    let bare = serde_json::to_string(&d).unwrap().replace(
        "gogate_request_duration_seconds_bucket",
        "gogate_request_duration_seconds",
    );
    let found = problems(&serde_json::from_str(&bare).unwrap(), &scrape);
    assert!(
        found.iter().any(|p| p.contains("has no samples")),
        "{found:?}"
    );
    gw.stop().await;
}
