//! The pure part of a reload: which backends the gateway should have (static ones from the
//! config, each host name expanded into the addresses it last resolved to, plus registry
//! registrations), what must change to get there from the current set, and which changed keys
//! cannot be applied live. No actix, no I/O: unit-tested below.
//!
//! A backend is identified by `upstream/addr`, `addr` being the resolved `ip:port` for a host
//! name. Same id before and after = the same backend: it keeps its state (health verdict,
//! breaker, counters, drain flag); only its weight (and the name it came from) may change. So a
//! changed DNS answer is applied exactly like a reload: vanished addresses drain and retire.

use crate::backend::state::Source;
use crate::build::backend_id;
use crate::dns::{is_host_name, DnsTable};
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
    /// The configured `host:port` this address was resolved from; `None` for IP literals and
    /// registrations.
    pub hostname: Option<String>,
}

/// Every backend implied by `config`, the last good DNS answers and the registrations, by id.
/// A host name contributes one backend per address in `dns` (none while it never resolved),
/// each with the configured weight. Where two entries of one upstream give the same address
/// (an IP listed and also resolved, two names resolving alike, a registration of a static
/// address), the first in file order is that backend (registrations come last).
pub fn desired_backends(
    config: &Config,
    registrations: &BTreeMap<String, Registration>,
    dns: &DnsTable,
) -> BTreeMap<String, Desired> {
    let mut out = BTreeMap::new();
    for name in config.upstream_names() {
        for b in config.upstream_settings(&name).backends {
            let (addrs, hostname) = if is_host_name(&b.addr) {
                let resolved = dns.addrs(&b.addr).iter().map(|a| a.to_string());
                (resolved.collect(), Some(b.addr.clone()))
            } else {
                (vec![b.addr.clone()], None)
            };
            for addr in addrs {
                out.entry(backend_id(&name, &addr)).or_insert(Desired {
                    upstream: name.clone(),
                    addr,
                    weight: b.weight,
                    source: Source::Static,
                    hostname: hostname.clone(),
                });
            }
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
                hostname: None,
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
    check(
        !live_listeners && o.tls.active_addr() != n.tls.active_addr(),
        "server.tls.listenAddr",
    );
    // The HTTPS listener is built with the protocol versions of the start; certificates
    // reload live (`tls::CertStore`).
    check(
        o.tls.min_version.trim() != n.tls.min_version.trim(),
        "server.tls.minVersion",
    );
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
    // The registry actor binds to its store at start (rate limits follow reloads live).
    let (oc, nc) = (&old.cluster, &new.cluster);
    let registry = o.registry.enabled || n.registry.enabled;
    check(
        registry && oc.shares_registry() != nc.shares_registry(),
        "cluster.registry",
    );
    check(
        registry && nc.shares_registry() && (oc.store != nc.store || oc.ca_file != nc.ca_file),
        "cluster.store",
    );
    check(
        registry && nc.shares_registry() && oc.key_prefix != nc.key_prefix,
        "cluster.keyPrefix",
    );
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
        let d = desired_backends(&cfg(BASE), &BTreeMap::new(), &DnsTable::default());
        let plan = plan_backends(&weights(&d), &d);
        assert!(plan.is_empty());
        assert_eq!(plan.keep, 3);
    }

    #[test]
    fn adds_removes_and_reweights_by_id() {
        let old = desired_backends(&cfg(BASE), &BTreeMap::new(), &DnsTable::default());
        let new = cfg("server:\n  backends: [{addr: \"127.0.0.1:2\", weight: 5}, {addr: \"127.0.0.1:4\"}]\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:3\"}]\n");
        let plan = plan_backends(
            &weights(&old),
            &desired_backends(&new, &BTreeMap::new(), &DnsTable::default()),
        );
        assert_eq!(plan.add, ["default/127.0.0.1:4"]);
        assert_eq!(plan.remove, ["default/127.0.0.1:1"]);
        assert_eq!(plan.reweight, [("default/127.0.0.1:2".to_string(), 5)]);
        assert_eq!(plan.keep, 1);
    }

    #[test]
    fn moving_a_backend_to_another_upstream_is_a_new_backend() {
        let old = desired_backends(&cfg(BASE), &BTreeMap::new(), &DnsTable::default());
        let new = cfg("server:\n  backends: [{addr: \"127.0.0.1:1\"}, {addr: \"127.0.0.1:2\", weight: 2}]\nupstreams:\n  api:\n    backends: [{addr: \"127.0.0.1:1\"}]\n");
        let plan = plan_backends(
            &weights(&old),
            &desired_backends(&new, &BTreeMap::new(), &DnsTable::default()),
        );
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
        let d = desired_backends(&config, &regs, &DnsTable::default());
        assert_eq!(d.len(), 5, "{d:?}");
        assert_eq!(d["api/127.0.0.1:9"].source, Source::Registry);
        assert_eq!(d["default/127.0.0.1:8"].source, Source::Registry);
        let merged = &d["default/127.0.0.1:1"];
        assert_eq!((merged.source, merged.weight), (Source::Static, 1));
        // A reload that drops the upstream `api` moves its registrations to `default`.
        let smaller = cfg("server:\n  backends: [{addr: \"127.0.0.1:1\"}]\n");
        let d2 = desired_backends(&smaller, &regs, &DnsTable::default());
        assert!(d2.contains_key("default/127.0.0.1:9"), "{d2:?}");
    }

    fn sa(s: &str) -> std::net::SocketAddr {
        s.parse().expect("socket address")
    }

    const DNS: &str = "server:\n  backends: [{addr: \"10.0.0.9:80\"}, {addr: \"api.internal:8080\", weight: 3}]\nupstreams:\n  other:\n    backends: [{addr: \"api.internal:8080\"}]\n";

    fn answer(t: &mut DnsTable, addrs: Result<&[&str], &str>) {
        let e = t.begin();
        let result = addrs
            .map(|a| a.iter().map(|s| sa(s)).collect())
            .map_err(str::to_string);
        t.apply("api.internal:8080", e, result, std::time::Instant::now());
    }

    #[test]
    fn a_host_name_is_one_backend_per_resolved_address_with_the_configured_weight() {
        let config = cfg(DNS);
        let mut t = DnsTable::default();
        let none = desired_backends(&config, &BTreeMap::new(), &t);
        assert_eq!(none.keys().collect::<Vec<_>>(), ["default/10.0.0.9:80"]);
        assert_eq!(none["default/10.0.0.9:80"].hostname, None);

        answer(
            &mut t,
            Ok(&["10.0.0.2:8080", "10.0.0.1:8080", "10.0.0.9:80"]),
        );
        let d = desired_backends(&config, &BTreeMap::new(), &t);
        let ids: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            [
                "default/10.0.0.1:8080",
                "default/10.0.0.2:8080",
                "default/10.0.0.9:80",
                "other/10.0.0.1:8080",
                "other/10.0.0.2:8080",
                "other/10.0.0.9:80"
            ]
        );
        let r = &d["default/10.0.0.2:8080"];
        assert_eq!((r.addr.as_str(), r.weight), ("10.0.0.2:8080", 3));
        assert_eq!(r.hostname.as_deref(), Some("api.internal:8080"));
        assert_eq!(r.source, Source::Static);
        // The IP listed first in file order is that backend, not a resolved duplicate.
        assert_eq!(d["default/10.0.0.9:80"].hostname, None);
        assert_eq!(d["other/10.0.0.9:80"].weight, 1);
    }

    #[test]
    fn a_changed_answer_retires_vanished_addresses_and_keeps_the_others() {
        let config = cfg(DNS);
        let mut t = DnsTable::default();
        answer(&mut t, Ok(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        let before = desired_backends(&config, &BTreeMap::new(), &t);
        answer(&mut t, Ok(&["10.0.0.2:8080", "10.0.0.3:8080"]));
        let after = desired_backends(&config, &BTreeMap::new(), &t);
        let plan = plan_backends(&weights(&before), &after);
        assert_eq!(plan.add, ["default/10.0.0.3:8080", "other/10.0.0.3:8080"]);
        assert_eq!(
            plan.remove,
            ["default/10.0.0.1:8080", "other/10.0.0.1:8080"]
        );
        assert_eq!(plan.keep, 3, "{plan:?}");
        // A failed lookup keeps the last good set: nothing to do.
        answer(&mut t, Err("SERVFAIL"));
        let failed = desired_backends(&config, &BTreeMap::new(), &t);
        assert!(plan_backends(&weights(&after), &failed).is_empty());
        answer(&mut t, Ok(&[]));
        let empty = desired_backends(&config, &BTreeMap::new(), &t);
        assert!(plan_backends(&weights(&after), &empty).is_empty());
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
