//! Checks of `routes:`: matchers, the upstreams a route splits over, header rules, auth,
//! rate limits and CORS.

use super::{is_header_value, is_token, Validator, MAX_WEIGHT};
use crate::model::*;
use std::collections::{BTreeMap, HashSet};

pub(super) fn routes(v: &mut Validator, cfg: &Config) {
    let mut names = HashSet::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if !names.insert(r.name.as_str()) {
            v.err(
                format!("{p}.name"),
                format!("route name {:?} is used twice", r.name),
            );
        }
        let m = &r.matcher;
        if !m.host.is_empty() && !valid_host_pattern(&m.host) {
            v.err(format!("{p}.match.host"), format!("invalid host {:?}; expected a host name such as \"api.example.com\" or \"*.example.com\" (no port)", m.host));
        }
        if !m.path.is_empty() && !m.path_prefix.is_empty() {
            v.err(
                format!("{p}.match.path"),
                "set either path (exact) or pathPrefix, not both",
            );
        }
        for (key, val) in [("path", &m.path), ("pathPrefix", &m.path_prefix)] {
            if !val.is_empty() && (!val.starts_with('/') || val.contains(['?', '#', ' '])) {
                v.err(
                    format!("{p}.match.{key}"),
                    format!("{val:?} must start with '/' and contain no '?', '#' or spaces"),
                );
            } else if !val.is_empty() && !is_normal_path(val) {
                v.err(
                    format!("{p}.match.{key}"),
                    format!("{val:?} can never match: requests are matched on their normalised path, which has no '//', no '.' or '..' segment, no ';' parameters and no '\\'"),
                );
            }
        }
        for (j, meth) in m.methods.iter().enumerate() {
            if !is_token(meth) {
                v.err(
                    format!("{p}.match.methods[{j}]"),
                    format!("{meth:?} is not an HTTP method"),
                );
            }
        }
        header_map(v, &format!("{p}.match.headers"), &m.headers);
        if r.strip_prefix
            && m.path_prefix.is_empty()
            && !v.incomplete(&format!("{p}.match.pathPrefix"))
        {
            v.err(
                format!("{p}.stripPrefix"),
                "needs match.pathPrefix (the prefix to strip)",
            );
        }
        let mut total = 0u64;
        let mut seen = HashSet::new();
        for (j, u) in r.upstreams.iter().enumerate() {
            if u.name != "default"
                && !cfg.upstreams.contains_key(&u.name)
                && !v.incomplete(&format!("upstreams.{}", u.name))
            {
                let known: Vec<&str> = std::iter::once("default")
                    .chain(cfg.upstreams.keys().map(String::as_str))
                    .collect();
                v.err(
                    format!("{p}.upstreams[{j}].name"),
                    format!(
                        "unknown upstream {:?}; defined: {}",
                        u.name,
                        known.join(", ")
                    ),
                );
            }
            if u.name == "default"
                && cfg.server.backends.is_empty()
                && !cfg.server.registry.enabled
                && !v.incomplete("server.backends")
            {
                v.err(
                    format!("{p}.upstreams[{j}].name"),
                    "the default upstream (server.backends) has no backends",
                );
            }
            if u.weight > MAX_WEIGHT {
                v.err(
                    format!("{p}.upstreams[{j}].weight"),
                    format!("{} is too large; allowed 0 to {MAX_WEIGHT}", u.weight),
                );
            }
            if !seen.insert(u.name.as_str()) {
                v.err(
                    format!("{p}.upstreams[{j}].name"),
                    format!("upstream {:?} is listed twice", u.name),
                );
            }
            total += u64::from(u.weight);
        }
        if v.incomplete(&format!("{p}.upstreams")) {
            // An item was removed: neither "empty" nor "weights add up to 0" would be true.
        } else if r.upstreams.is_empty() {
            v.err(
                format!("{p}.upstreams"),
                "a route needs at least one upstream, e.g. [{name: default}]",
            );
        } else if total == 0 {
            v.err(
                format!("{p}.upstreams"),
                "the weights add up to 0; at least one must be positive",
            );
        }
        header_rules(v, &format!("{p}.requestHeaders"), &r.request_headers);
        header_rules(v, &format!("{p}.responseHeaders"), &r.response_headers);
        match r.auth.as_deref() {
            None | Some("") => {}
            Some(a) if a.eq_ignore_ascii_case("jwt") => {
                if cfg.jwt.is_none() && !v.incomplete("jwt") {
                    v.err(
                        format!("{p}.auth"),
                        "auth: jwt needs the top-level jwt: block (algorithms and keys)",
                    );
                }
            }
            Some(other) => v.err(
                format!("{p}.auth"),
                format!("unknown auth {other:?}; allowed: jwt (or leave it unset for none)"),
            ),
        }
        if let Some(rl) = &r.rate_limit {
            let errors = RateLimitConfig::from(rl).check(&format!("{p}.rateLimit"));
            v.errors.extend(errors);
        }
        if r.cors == Some(true) && cfg.cors.is_none() && !v.incomplete("cors") {
            v.err(
                format!("{p}.cors"),
                "needs the top-level cors: block (the policy to apply), e.g. cors: {allowedOrigins: [\"https://app.example.com\"]}",
            );
        }
    }
}

/// A route path in the form requests are matched in (see `gogate_actors::path`).
fn is_normal_path(path: &str) -> bool {
    let body = path.strip_suffix('/').unwrap_or(path);
    !path.contains(['\\', ';'])
        && (body.is_empty() || body[1..].split('/').all(|s| !matches!(s, "" | "." | "..")))
}

fn valid_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn header_map(v: &mut Validator, path: &str, map: &BTreeMap<String, String>) {
    for (name, value) in map {
        if !is_token(name) {
            v.err(format!("{path}.{name}"), "is not a valid header name");
        }
        if !is_header_value(value) {
            v.err(
                format!("{path}.{name}"),
                "value must be visible ASCII without line breaks",
            );
        }
    }
}

fn header_rules(v: &mut Validator, path: &str, rules: &HeaderRules) {
    header_map(v, &format!("{path}.set"), &rules.set);
    header_map(v, &format!("{path}.add"), &rules.add);
    for (i, name) in rules.remove.iter().enumerate() {
        if !is_token(name) {
            v.err(
                format!("{path}.remove[{i}]"),
                format!("{name:?} is not a valid header name"),
            );
        }
    }
}
