//! The pure part of a reload: which backends the gateway should have (static ones from the
//! config plus registry registrations), what must change to get there from the current set, and
//! which changed keys cannot be applied live. No actix, no I/O: unit-tested below.
//!
//! A backend is identified by `upstream/addr`. Same id before and after = the same backend: it
//! keeps its state (health verdict, breaker, counters, drain flag); only its weight may change.

use crate::backend::state::Source;
use crate::build::backend_id;
use crate::reload::listeners::control_shared;
use gogate_config::{Config, DEFAULT_UPSTREAM};
use std::collections::BTreeMap;

/// A service registered in the TTL registry, as the config actor remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The upstream it asks to join (`default` when no upstream has that name).
    pub name: String,
    pub addr: String,
    pub weight: u32,
}

/// One backend the gateway should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub upstream: String,
    pub addr: String,
    pub weight: u32,
    pub source: Source,
}

/// Every backend implied by `config` and the registrations, by id. A registration whose address
/// equals a static backend of the same upstream is that backend (the static weight wins).
pub fn desired_backends(
    config: &Config,
    registrations: &BTreeMap<String, Registration>,
) -> BTreeMap<String, Desired> {
    let mut out = BTreeMap::new();
    for name in config.upstream_names() {
        for b in config.upstream_settings(&name).backends {
            out.entry(backend_id(&name, &b.addr)).or_insert(Desired {
                upstream: name.clone(),
                addr: b.addr.clone(),
                weight: b.weight,
                source: Source::Static,
            });
        }
    }
    for r in registrations.values() {
        let upstream = registry_upstream(config, &r.name);
        out.entry(backend_id(&upstream, &r.addr))
            .or_insert_with(|| Desired {
                upstream,
                addr: r.addr.clone(),
                weight: r.weight,
                source: Source::Registry,
            });
    }
    out
}

/// The upstream a registered service named `name` joins.
pub fn registry_upstream(config: &Config, name: &str) -> String {
    if config.upstreams.contains_key(name) {
        name.to_string()
    } else {
        DEFAULT_UPSTREAM.to_string()
    }
}

/// What to do to the current backends (id → weight) to reach the desired set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendPlan {
    /// New ids: create a state and an actor.
    pub add: Vec<String>,
    /// Ids no longer wanted: drain, then retire.
    pub remove: Vec<String>,
    /// Kept ids whose weight changes.
    pub reweight: Vec<(String, u32)>,
    /// Kept ids, weight unchanged.
    pub keep: usize,
}

impl BackendPlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.reweight.is_empty()
    }
}

pub fn plan_backends(
    current: &BTreeMap<String, u32>,
    desired: &BTreeMap<String, Desired>,
) -> BackendPlan {
    let mut plan = BackendPlan::default();
    for (id, d) in desired {
        match current.get(id) {
            None => plan.add.push(id.clone()),
            Some(&w) if w != d.weight => plan.reweight.push((id.clone(), d.weight)),
            Some(_) => plan.keep += 1,
        }
    }
    plan.remove = current
        .keys()
        .filter(|id| !desired.contains_key(*id))
        .cloned()
        .collect();
    plan
}

/// Keys whose change needs a restart (a reload applies everything else and names these).
/// `live_listeners`: listener addresses are moved live (see `reload::listeners`), so they are
/// not named, except the admin and metrics ones when they shared a listener at start; the
/// settings the servers are built with still are.
pub fn restart_required(old: &Config, new: &Config, live_listeners: bool) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let live_control = live_listeners && !control_shared(old);
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(
        !live_listeners && o.listen_addr != n.listen_addr,
        "server.listenAddr",
    );
    check(
        !live_listeners && o.http_listen_addr != n.http_listen_addr,
        "server.httpListenAddr",
    );
    check(o.tls != n.tls, "server.tls");
    check(
        !live_control && o.admin.listen_addr != n.admin.listen_addr,
        "server.admin.listenAddr",
    );
    check(o.admin.enabled != n.admin.enabled, "server.admin.enabled");
    check(o.admin.token != n.admin.token, "server.admin.token");
    let mut metrics = n.metrics.clone();
    if live_control {
        metrics.listen_addr = o.metrics.listen_addr.clone();
    }
    check(o.metrics != metrics, "server.metrics");
    check(
        o.limits.max_connections != n.limits.max_connections,
        "server.limits.maxConnections",
    );
    check(
        o.limits.header_timeout != n.limits.header_timeout,
        "server.limits.headerTimeout",
    );
    check(o.timeouts.idle != n.timeouts.idle, "server.timeouts.idle");
    check(old.logging.format != new.logging.format, "logging.format");
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Config {
        gogate_config::load_str(yaml, None).expect("valid test config")
    }

    fn weights(d: &BTreeMap<String, Desired>) -> BTreeMap<String, u32> {
        d.iter().map(|(k, v)| (k.clone(), v.weight)).collect()
    }

    const BASE: &str = "server:\n  backends: [{addr: \"127.0.0.1:1\"}, {addr: \"127.0.0.1:2\", weight: 2}]\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:3\"}]\n";

    #[test]
    fn unchanged_config_plans_nothing() {
        let d = desired_backends(&cfg(BASE), &BTreeMap::new());
        let plan = plan_backends(&weights(&d), &d);
        assert!(plan.is_empty());
        assert_eq!(plan.keep, 3);
    }

    #[test]
    fn adds_removes_and_reweights_by_id() {
        let old = desired_backends(&cfg(BASE), &BTreeMap::new());
        let new = cfg("server:\n  backends: [{addr: \"127.0.0.1:2\", weight: 5}, {addr: \"127.0.0.1:4\"}]\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:3\"}]\n");
        let plan = plan_backends(&weights(&old), &desired_backends(&new, &BTreeMap::new()));
        assert_eq!(plan.add, ["default/127.0.0.1:4"]);
        assert_eq!(plan.remove, ["default/127.0.0.1:1"]);
        assert_eq!(plan.reweight, [("default/127.0.0.1:2".to_string(), 5)]);
        assert_eq!(plan.keep, 1);
    }

    #[test]
    fn moving_a_backend_to_another_upstream_is_a_new_backend() {
        let old = desired_backends(&cfg(BASE), &BTreeMap::new());
        let new = cfg("server:\n  backends: [{addr: \"127.0.0.1:1\"}, {addr: \"127.0.0.1:2\", weight: 2}]\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:1\"}]\n");
        let plan = plan_backends(&weights(&old), &desired_backends(&new, &BTreeMap::new()));
        assert_eq!(plan.add, ["api/127.0.0.1:1"]);
        assert_eq!(plan.remove, ["api/127.0.0.1:3"]);
    }

    #[test]
    fn registrations_join_their_upstream_or_default_and_merge_with_static_backends() {
        let config = cfg(BASE);
        let reg = |name: &str, addr: &str| Registration {
            name: name.into(),
            addr: addr.into(),
            weight: 7,
        };
        let regs = BTreeMap::from([
            ("a".to_string(), reg("api", "127.0.0.1:9")),
            ("b".to_string(), reg("unknown", "127.0.0.1:8")),
            ("c".to_string(), reg("default", "127.0.0.1:1")),
        ]);
        let d = desired_backends(&config, &regs);
        assert_eq!(d.len(), 5, "{d:?}");
        assert_eq!(d["api/127.0.0.1:9"].source, Source::Registry);
        assert_eq!(d["default/127.0.0.1:8"].source, Source::Registry);
        let merged = &d["default/127.0.0.1:1"];
        assert_eq!((merged.source, merged.weight), (Source::Static, 1));
        // A reload that drops the upstream `api` moves its registrations to `default`.
        let smaller = cfg("server:\n  backends: [{addr: \"127.0.0.1:1\"}]\n");
        let d2 = desired_backends(&smaller, &regs);
        assert!(d2.contains_key("default/127.0.0.1:9"), "{d2:?}");
    }

    #[test]
    fn listener_changes_are_named() {
        let old = cfg(BASE);
        let mut new = old.clone();
        assert!(restart_required(&old, &new, false).is_empty());
        new.server.http_listen_addr = "127.0.0.1:1234".into();
        new.server.rate_limit.enabled = true;
        assert_eq!(
            restart_required(&old, &new, false),
            ["server.httpListenAddr"]
        );
        // Moved live: not named, unless admin and metrics shared a listener at start.
        new.server.admin.listen_addr = "127.0.0.1:1235".into();
        assert!(restart_required(&old, &new, true).is_empty());
        let mut shared = old.clone();
        shared.server.admin.enabled = true;
        shared.server.metrics.enabled = true;
        shared.server.metrics.listen_addr = shared.server.admin.listen_addr.clone();
        assert_eq!(
            restart_required(&shared, &new, true),
            ["server.admin.listenAddr", "server.metrics"]
        );
    }
}
