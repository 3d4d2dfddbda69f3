//! What a reload changes, as operators read it (DESIGN B11): routes and upstreams added,
//! removed or changed (with the keys that changed), backends added and removed and weights
//! changed (per upstream, as configured: a host name is one entry), listeners moved, and every
//! other setting by key path. Pure: two validated configurations in, a [`ConfigDiff`] out.
//! Values are never copied into the diff (only key paths), so secrets cannot leak through it.
//!
//! Keys are those of the YAML (camelCase, the serialised form of [`Config`]); a changed list
//! (`methods`, `upstreams`, `trustedProxies`, ...) is named as a whole.

use crate::{Config, DEFAULT_UPSTREAM};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Everything one reload changed; empty when the configuration is the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub routes: Changes,
    /// Named upstreams (`upstreams:`); their backends are under `backends`.
    pub upstreams: Changes,
    pub backends: BackendChanges,
    pub listeners: Vec<ListenerMove>,
    /// Other changed keys, by path (`server.health.interval`, `logging.level`, `jwt.issuer`).
    pub settings: Vec<String>,
}

/// Named things added, removed or changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
}

/// One kept route or upstream and the keys of it that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendChanges {
    pub added: Vec<BackendEntry>,
    pub removed: Vec<BackendEntry>,
    pub weights: Vec<WeightChange>,
}

/// A configured backend of an upstream (`default` = `server.backends`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendEntry {
    pub upstream: String,
    pub addr: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightChange {
    pub upstream: String,
    pub addr: String,
    pub from: u32,
    pub to: u32,
}

/// A listener whose address changed (`""` = disabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerMove {
    /// `tcp`, `http`, `https`, `admin` or `metrics`.
    pub listener: &'static str,
    pub from: String,
    pub to: String,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// One line for logs: `routes +a -b ~c; backends +1 -0 weight 1; settings logging.level`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no change".into();
        }
        let names = |c: &Changes| {
            let mut v: Vec<String> = c.added.iter().map(|n| format!("+{n}")).collect();
            v.extend(c.removed.iter().map(|n| format!("-{n}")));
            v.extend(c.changed.iter().map(|n| format!("~{}", n.name)));
            v.join(" ")
        };
        let mut parts = Vec::new();
        if self.routes != Changes::default() {
            parts.push(format!("routes {}", names(&self.routes)));
        }
        if self.upstreams != Changes::default() {
            parts.push(format!("upstreams {}", names(&self.upstreams)));
        }
        let b = &self.backends;
        if *b != BackendChanges::default() {
            parts.push(format!(
                "backends +{} -{} weights {}",
                b.added.len(),
                b.removed.len(),
                b.weights.len()
            ));
        }
        for l in &self.listeners {
            parts.push(format!(
                "listener {} {:?} -> {:?}",
                l.listener, l.from, l.to
            ));
        }
        if !self.settings.is_empty() {
            parts.push(format!("settings {}", self.settings.join(" ")));
        }
        parts.join("; ")
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let (o, n) = (as_json(old), as_json(new));
    ConfigDiff {
        routes: named_changes(&routes_by_name(&o), &routes_by_name(&n)),
        upstreams: named_changes(&upstreams_by_name(&o), &upstreams_by_name(&n)),
        backends: backend_changes(old, new),
        listeners: listener_moves(old, new),
        settings: setting_changes(o, n),
    }
}

fn as_json(c: &Config) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn routes_by_name(c: &Value) -> BTreeMap<String, Value> {
    let list = c.get("routes").and_then(Value::as_array).cloned();
    list.unwrap_or_default()
        .into_iter()
        .map(|r| {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            (name.to_string(), r)
        })
        .collect()
}

/// Named upstreams without their backends (reported per backend instead).
fn upstreams_by_name(c: &Value) -> BTreeMap<String, Value> {
    let map = c.get("upstreams").and_then(Value::as_object).cloned();
    map.unwrap_or_default()
        .into_iter()
        .map(|(name, mut u)| {
            if let Some(obj) = u.as_object_mut() {
                obj.remove("backends");
            }
            (name, u)
        })
        .collect()
}

fn named_changes(old: &BTreeMap<String, Value>, new: &BTreeMap<String, Value>) -> Changes {
    let mut out = Changes::default();
    for (name, n) in new {
        match old.get(name) {
            None => out.added.push(name.clone()),
            Some(o) if o != n => {
                let mut keys = Vec::new();
                changed_paths(o, n, "", &mut keys);
                out.changed.push(Changed {
                    name: name.clone(),
                    keys,
                });
            }
            Some(_) => {}
        }
    }
    out.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    out
}

/// Key paths under `prefix` where `a` and `b` differ: objects are compared key by key,
/// anything else (lists, scalars) as a whole.
fn changed_paths(a: &Value, b: &Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => changed_paths(p, q, &path, out),
                    (p, q) if p != q => out.push(path),
                    _ => {}
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

fn backend_list(c: &Config) -> BTreeMap<(String, String), u32> {
    let mut out = BTreeMap::new();
    for b in &c.server.backends {
        out.entry((DEFAULT_UPSTREAM.to_string(), b.addr.clone()))
            .or_insert(b.weight);
    }
    for (name, u) in &c.upstreams {
        for b in &u.backends {
            out.entry((name.clone(), b.addr.clone()))
                .or_insert(b.weight);
        }
    }
    out
}

fn backend_changes(old: &Config, new: &Config) -> BackendChanges {
    let (o, n) = (backend_list(old), backend_list(new));
    let entry = |(upstream, addr): &(String, String), weight: u32| BackendEntry {
        upstream: upstream.clone(),
        addr: addr.clone(),
        weight,
    };
    let mut out = BackendChanges::default();
    for (key, &w) in &n {
        match o.get(key) {
            None => out.added.push(entry(key, w)),
            Some(&from) if from != w => out.weights.push(WeightChange {
                upstream: key.0.clone(),
                addr: key.1.clone(),
                from,
                to: w,
            }),
            Some(_) => {}
        }
    }
    out.removed = o
        .iter()
        .filter(|(k, _)| !n.contains_key(*k))
        .map(|(k, &w)| entry(k, w))
        .collect();
    out
}

/// Each listener's effective address (`""` when disabled).
fn listener_addrs(c: &Config) -> [(&'static str, String); 5] {
    let s = &c.server;
    let on = |enabled: bool, addr: &str| {
        if enabled {
            addr.to_string()
        } else {
            String::new()
        }
    };
    [
        ("tcp", s.listen_addr.clone()),
        ("http", s.http_listen_addr.clone()),
        ("https", s.tls.active_addr().to_string()),
        ("admin", on(s.admin.enabled, &s.admin.listen_addr)),
        ("metrics", on(s.metrics.enabled, &s.metrics.listen_addr)),
    ]
}

fn listener_moves(old: &Config, new: &Config) -> Vec<ListenerMove> {
    listener_addrs(old)
        .into_iter()
        .zip(listener_addrs(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((listener, from), (_, to))| ListenerMove { listener, from, to })
        .collect()
}

/// Every changed key outside routes, upstreams, backends and listener addresses.
fn setting_changes(mut o: Value, mut n: Value) -> Vec<String> {
    for v in [&mut o, &mut n] {
        if let Some(obj) = v.as_object_mut() {
            obj.remove("routes");
            obj.remove("upstreams");
        }
        if let Some(server) = v.get_mut("server").and_then(Value::as_object_mut) {
            for key in ["backends", "listenAddr", "httpListenAddr"] {
                server.remove(key);
            }
            for block in ["tls", "admin", "metrics"] {
                if let Some(b) = server.get_mut(block).and_then(Value::as_object_mut) {
                    // Both are the listener's address (a disabled listener has none).
                    b.remove("listenAddr");
                    b.remove("enabled");
                }
            }
        }
    }
    let mut out = Vec::new();
    changed_paths(&o, &n, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Config {
        crate::load_str(yaml, None).expect("valid test config")
    }

    const BASE: &str = r#"
server:
  httpListenAddr: ":8081"
  backends: [{addr: "127.0.0.1:1"}, {addr: "127.0.0.1:2", weight: 2}]
  health: {interval: 5s}
  admin: {token: "old-secret"}
upstreams:
  api: {backends: [{addr: "127.0.0.1:3"}]}
  old: {backends: [{addr: "127.0.0.1:4"}]}
routes:
  - name: a
    match: {pathPrefix: /a}
    upstreams: [{name: api}]
  - name: gone
    match: {pathPrefix: /g}
    upstreams: [{name: api}]
logging: {level: info}
"#;

    #[test]
    fn the_same_configuration_has_an_empty_diff() {
        let d = diff(&cfg(BASE), &cfg(BASE));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.summary(), "no change");
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let new = r#"
server:
  httpListenAddr: ":9081"
  backends: [{addr: "127.0.0.1:1", weight: 5}, {addr: "svc.internal:80"}]
  health: {interval: 7s}
  admin: {token: "new-secret"}
upstreams:
  api: {backends: [{addr: "127.0.0.1:3"}], loadBalancer: least_connections}
  fresh: {backends: [{addr: "127.0.0.1:5"}]}
routes:
  - name: a
    match: {pathPrefix: /a2, methods: [GET]}
    upstreams: [{name: api}]
    stripPrefix: true
  - name: b
    match: {pathPrefix: /b}
    upstreams: [{name: fresh}]
logging: {level: debug}
"#;
        let d = diff(&cfg(BASE), &cfg(new));
        assert_eq!(d.routes.added, vec!["b"]);
        assert_eq!(d.routes.removed, vec!["gone"]);
        assert_eq!(
            d.routes.changed,
            vec![Changed {
                name: "a".into(),
                keys: vec![
                    "match.methods".into(),
                    "match.pathPrefix".into(),
                    "stripPrefix".into()
                ]
            }]
        );
        assert_eq!(d.upstreams.added, vec!["fresh"]);
        assert_eq!(d.upstreams.removed, vec!["old"]);
        assert_eq!(d.upstreams.changed[0].keys, vec!["loadBalancer"]);
        let added: Vec<(&str, &str)> = d
            .backends
            .added
            .iter()
            .map(|b| (b.upstream.as_str(), b.addr.as_str()))
            .collect();
        assert_eq!(
            added,
            vec![("default", "svc.internal:80"), ("fresh", "127.0.0.1:5")]
        );
        let removed: Vec<&str> = d.backends.removed.iter().map(|b| b.addr.as_str()).collect();
        assert_eq!(removed, vec!["127.0.0.1:2", "127.0.0.1:4"]);
        assert_eq!(
            d.backends.weights,
            vec![WeightChange {
                upstream: "default".into(),
                addr: "127.0.0.1:1".into(),
                from: 1,
                to: 5
            }]
        );
        assert_eq!(
            d.listeners,
            vec![ListenerMove {
                listener: "http",
                from: ":8081".into(),
                to: ":9081".into()
            }]
        );
        assert_eq!(
            d.settings,
            vec![
                "logging.level",
                "server.admin.token",
                "server.health.interval"
            ]
        );
        let text = serde_json::to_string(&d).expect("json");
        assert!(
            !text.contains("secret"),
            "values never enter the diff: {text}"
        );
        assert!(
            d.summary().contains("routes +b -gone ~a"),
            "{}",
            d.summary()
        );
    }

    #[test]
    fn disabling_a_listener_is_a_move_to_nothing() {
        let off = BASE.replace(
            "  admin: {token: \"old-secret\"}",
            "  admin: {token: \"old-secret\", enabled: false}",
        );
        let d = diff(&cfg(BASE), &cfg(&off));
        assert_eq!(d.listeners.len(), 1, "{d:?}");
        assert_eq!(
            (d.listeners[0].listener, d.listeners[0].to.as_str()),
            ("admin", "")
        );
        assert!(d.settings.is_empty(), "{d:?}");
    }
}
