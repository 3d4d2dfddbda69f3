//! Route matching: for any set of `match:` blocks and any request, the route found matches the
//! request, a request some route matches always finds one, and `stripPrefix` of a matched
//! prefix leaves a path that still starts with `/`.
#![no_main]
use gogate_actors::routing::{strip_prefix, RequestFacts, RouteRule, RouteTable};
use gogate_config::MatchConfig;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug)]
struct Rule {
    host: String,
    wildcard: bool,
    prefix: bool,
    path: String,
    methods: Vec<String>,
    header: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    rules: Vec<Rule>,
    host: Option<String>,
    path: String,
    method: String,
    headers: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let mut entries = Vec::new();
    for (i, r) in input.rules.iter().take(16).enumerate() {
        let host = if r.wildcard && !r.host.is_empty() {
            format!("*.{}", r.host)
        } else {
            r.host.clone()
        };
        // Validation guarantees paths start with '/'; the matcher relies on it.
        let path = format!("/{}", r.path.trim_start_matches('/'));
        let m = MatchConfig {
            host,
            path_prefix: if r.prefix { path.clone() } else { String::new() },
            path: if r.prefix { String::new() } else { path },
            methods: r.methods.iter().take(4).cloned().collect(),
            headers: r.header.iter().cloned().collect::<BTreeMap<_, _>>(),
        };
        entries.push((RouteRule::new(&m, i), i));
    }
    let table = RouteTable::new(entries.clone());
    let headers = &input.headers;
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let req = RequestFacts {
        host: input.host.as_deref(),
        path: &input.path,
        method: &input.method,
        header: &lookup,
    };
    let any = entries.iter().any(|(rule, _)| rule.matches(&req));
    match table.find(&req) {
        Some((rule, _)) => {
            assert!(rule.matches(&req));
            if let Some(p) = rule.prefix() {
                let rest = strip_prefix(p, req.path);
                if req.path.starts_with('/') {
                    assert!(rest.starts_with('/'), "{p:?} {:?} -> {rest:?}", req.path);
                }
            }
        }
        None => assert!(!any, "a route matches but none was found"),
    }
});
